# ResNet-50 on ImageNet-1k at the SR-STE reference recipe: trained 2:4 sparse
# from scratch with SR-STE (SR-STE reference top-1: 77.0).
# Data: ImageNet-1k at data/imagenet/. Metric: top-1 / top-5 accuracy.
# Only the sparse parts are added to the dense baseline; the 7x7 stem
# (3 input channels) stays dense by its shape, the final fc by choice.
_base_ = './resnet50_dense_8xb32-120e_in1k.py'

custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)

# N:M sparse training in one place: which layers, the pattern, the SR-STE
# term and its schedule. Derived configs change single keys of it.
nm_exclude = ['head.fc']
default_hooks = dict(
    nm_sparsity=dict(
        type='NMSparsityHook',
        interval=100,
        sparsity=dict(pattern='2:4', exclude=nm_exclude),
        lambda_w=2e-4,
        sparse_start_iter=0,
        freeze_mask_iter=None))
optim_wrapper = dict(type='SRSTEOptimWrapper')
