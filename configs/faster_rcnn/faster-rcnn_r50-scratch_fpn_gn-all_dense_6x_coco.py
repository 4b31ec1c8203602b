# Faster R-CNN R50-FPN (GroupNorm, from scratch, 6x schedule) on COCO
# detection: dense baseline, trained from scratch.
# Data: COCO 2017 at data/coco/ (train2017, val2017, annotations/). Metric:
# bbox mAP.
# No download: GroupNorm from scratch (mmdet's scratch recipe). To start from a
# local ImageNet backbone instead, add
#   --cfg-options model.backbone.init_cfg.type=Pretrained \
#                 model.backbone.init_cfg.checkpoint=/path/to/resnet50.pth
_base_ = 'mmdet::scratch/faster-rcnn_r50-scratch_fpn_gn-all_6x_coco.py'
