# The ResNet-18 classifier of resnet18_dense_shapes-cls-64x64.py trained 2:4
# sparse from scratch with SR-STE: the same data, schedule and seed.
_base_ = './resnet18_dense_shapes-cls-64x64.py'

# the list replaces the dense root's: mmnm.datasets (the dataset type) again
custom_imports = dict(
    imports=['mmnm', 'mmnm.datasets'], allow_failed_imports=False)

# N:M sparse training in one place: which layers, the pattern, the SR-STE
# term and its schedule (--cfg-options default_hooks.nm_sparsity.KEY=VALUE)
default_hooks = dict(
    nm_sparsity=dict(
        type='NMSparsityHook',
        interval=100,
        # the final fc stays dense, as in the paper's recipe; the 7x7 stem
        # (3 input channels) by its shape
        sparsity=dict(pattern='2:4', exclude=['head.fc']),
        lambda_w=2e-4,
        sparse_start_iter=0,
        freeze_mask_iter=None))
optim_wrapper = dict(type='SRSTEOptimWrapper')
