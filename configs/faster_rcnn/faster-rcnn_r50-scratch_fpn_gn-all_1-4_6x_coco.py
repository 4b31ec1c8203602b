# Faster R-CNN R50-FPN (GroupNorm, from scratch, 6x schedule) on COCO detection: trained 1:4 sparse from scratch with SR-STE.
# Data: COCO 2017 at data/coco/ (train2017, val2017, annotations/). Metric: bbox mAP.
_base_ = './faster-rcnn_r50-scratch_fpn_gn-all_2-4_6x_coco.py'

custom_hooks = [
    dict(
        type='NMSparsityHook',
        interval=50,
        sparsity=dict(pattern='1:4', exclude={{_base_.nm_exclude}}))
]
