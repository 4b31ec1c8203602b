# DeiT-S on ImageNet-1k at mmpretrain's DeiT recipe: trained 2:4 sparse from
# scratch with SR-STE. Every Linear of the 12 blocks is 2:4: the attention
# projections (qkv, proj) and the MLP (fc1, fc2). Dense: the 16x16 patch
# embedding (3 input channels, by its shape) and the classifier (by choice).
# Data: ImageNet-1k at data/imagenet/. Metric: top-1 / top-5 accuracy.
_base_ = './deit-small_dense_4xb256_in1k.py'

custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)

nm_exclude = ['head.layers.head']
default_hooks = dict(
    nm_sparsity=dict(
        type='NMSparsityHook',
        interval=100,
        sparsity=dict(pattern='2:4', exclude=nm_exclude),
        lambda_w=2e-4,
        sparse_start_iter=0,
        freeze_mask_iter=None))
optim_wrapper = dict(type='SRSTEOptimWrapper')
