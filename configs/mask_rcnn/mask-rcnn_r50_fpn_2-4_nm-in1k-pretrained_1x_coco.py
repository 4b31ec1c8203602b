# Mask R-CNN R50-FPN on COCO, mmdet's 1x schedule (12 epochs), 2:4 sparse with
# SR-STE, the backbone initialised from the 2:4 ImageNet classifier of
# configs/classification/resnet50_2-4_8xb32-120e_in1k.py instead of dense
# torchvision weights: the classifier's masked weights load into the N:M
# backbone, so its first masks are the classifier's (NMSparsityHook checks the
# file fits and logs which layers keep their masks). Nothing is downloaded:
# train the classifier first, or give its checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)

nm_in1k_checkpoint = 'work_dirs/resnet50_2-4_8xb32-120e_in1k/epoch_120.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained',
            checkpoint=nm_in1k_checkpoint,
            prefix='backbone.')))

# N:M sparse training in one place: which layers, the pattern, the SR-STE
# term and its schedule. Derived configs change single keys of it.
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
