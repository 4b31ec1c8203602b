# The 2:4 classifier of resnet18_2-4_shapes-cls-64x64.py at 1:4 (75% zeros).
_base_ = './resnet18_2-4_shapes-cls-64x64.py'

default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='1:4')))
