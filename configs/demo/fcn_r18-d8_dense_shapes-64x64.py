# Dense baseline of fcn_r18-d8_2-4_shapes-64x64.py: the same model, data and
# schedule trained without N:M sparsity, for side-by-side comparison.
_base_ = './fcn_r18-d8_2-4_shapes-64x64.py'

optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer={{_base_.optim_wrapper.optimizer}})
custom_hooks = []
