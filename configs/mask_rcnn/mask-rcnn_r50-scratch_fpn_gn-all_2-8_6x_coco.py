# Mask R-CNN R50-FPN (GroupNorm, from scratch, 6x schedule) on COCO instance
# segmentation: trained 2:8 sparse from scratch with SR-STE.
# Data: COCO 2017 at data/coco/ (train2017, val2017, annotations/). Metric:
# bbox and segm mAP.
_base_ = './mask-rcnn_r50-scratch_fpn_gn-all_2-4_6x_coco.py'

default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='2:8')))
