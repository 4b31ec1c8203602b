# Mask R-CNN R50-FPN (GroupNorm, from scratch, 6x schedule) on COCO instance
# segmentation: trained 2:4 sparse from scratch with SR-STE.
# Data: COCO 2017 at data/coco/ (train2017, val2017, annotations/). Metric:
# bbox and segm mAP.
# Only the sparse parts are added to the dense baseline.
_base_ = './mask-rcnn_r50-scratch_fpn_gn-all_dense_6x_coco.py'

custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)

# N:M sparse training in one place: which layers, the pattern, the SR-STE
# term and its schedule. Derived configs change single keys of it.
# the final prediction layers stay dense
nm_exclude = [
    'rpn_head.rpn_cls',
    'rpn_head.rpn_reg',
    'roi_head.bbox_head.fc_cls',
    'roi_head.bbox_head.fc_reg',
    'roi_head.mask_head.conv_logits',
]
default_hooks = dict(
    nm_sparsity=dict(
        type='NMSparsityHook',
        interval=50,
        sparsity=dict(pattern='2:4', exclude=nm_exclude),
        lambda_w=2e-4,
        sparse_start_iter=0,
        freeze_mask_iter=None))
optim_wrapper = dict(type='SRSTEOptimWrapper')
