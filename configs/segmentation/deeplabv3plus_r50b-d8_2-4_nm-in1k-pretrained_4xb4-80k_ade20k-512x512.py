# DeepLabV3+ R50-D8 (ResNet-50 v1b, as the classifier) on ADE20K, mmseg's
# 80k-iteration schedule, 2:4 sparse with SR-STE, the backbone initialised from
# the 2:4 ImageNet classifier of
# configs/classification/resnet50_2-4_8xb32-120e_in1k.py instead of dense
# torchvision weights: the classifier's masked weights load into the N:M
# backbone, so its first masks are the classifier's (NMSparsityHook checks the
# file fits and logs which layers keep their masks). Nothing is downloaded:
# train the classifier first, or give its checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
# mmseg's ResNetV1c (deep stem) has other keys than mmpretrain's ResNet-50,
# so the backbone is mmseg's plain ResNet (v1b), as in mmseg's r50b configs.
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py'

custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)

nm_in1k_checkpoint = 'work_dirs/resnet50_2-4_8xb32-120e_in1k/epoch_120.pth'
model = dict(
    pretrained=None,
    backbone=dict(
        type='ResNet',
        init_cfg=dict(
            type='Pretrained',
            checkpoint=nm_in1k_checkpoint,
            prefix='backbone.')))

# N:M sparse training in one place: which layers, the pattern, the SR-STE
# term and its schedule. Derived configs change single keys of it.
nm_exclude = [
    'decode_head.conv_seg',
    'auxiliary_head.conv_seg',
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
