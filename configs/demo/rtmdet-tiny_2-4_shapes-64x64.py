# RTMDet-tiny of rtmdet-tiny_dense_shapes-64x64.py trained 2:4 sparse from
# scratch with SR-STE, EMA included: the averaged weights that are validated
# and saved are N:M too.
_base_ = './rtmdet-tiny_dense_shapes-64x64.py'

# the list replaces the dense root's: mmnm.datasets (the dataset type) again
custom_imports = dict(
    imports=['mmnm', 'mmnm.datasets'], allow_failed_imports=False)

# N:M sparse training in one place: which layers, the pattern, the SR-STE
# term and its schedule (--cfg-options default_hooks.nm_sparsity.KEY=VALUE)
default_hooks = dict(
    nm_sparsity=dict(
        type='NMSparsityHook',
        interval=50,
        sparsity=dict(
            pattern='2:4',
            # the final prediction convs stay dense
            exclude=['bbox_head.rtm_cls.*', 'bbox_head.rtm_reg.*']),
        lambda_w=2e-4,
        sparse_start_iter=0,
        freeze_mask_iter=None))
optim_wrapper = dict(type='SRSTEOptimWrapper')
