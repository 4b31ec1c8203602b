# DeepLabV3+ R50-D8 on ADE20K (512x512 crops, 80k iterations): trained 2:4
# sparse from scratch with SR-STE.
# Data: ADE20K at data/ade/ADEChallengeData2016/. Metric: mIoU.
# Only the sparse parts are added to the dense baseline.
_base_ = './deeplabv3plus_r50-d8_dense_4xb4-80k_ade20k-512x512.py'

custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)

# N:M sparse training in one place: which layers, the pattern, the SR-STE
# term and its schedule. Derived configs change single keys of it.
# the 1x1 classifiers stay dense
nm_exclude = ['decode_head.conv_seg', 'auxiliary_head.conv_seg']
default_hooks = dict(
    nm_sparsity=dict(
        type='NMSparsityHook',
        interval=50,
        sparsity=dict(pattern='2:4', exclude=nm_exclude),
        lambda_w=2e-4,
        sparse_start_iter=0,
        freeze_mask_iter=None))
optim_wrapper = dict(type='SRSTEOptimWrapper')
