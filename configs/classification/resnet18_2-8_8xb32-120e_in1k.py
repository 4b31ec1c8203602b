# ResNet-18 on ImageNet-1k at the SR-STE reference recipe: trained 2:8 sparse
# from scratch with SR-STE (no published SR-STE number).
# Data: ImageNet-1k at data/imagenet/. Metric: top-1 / top-5 accuracy.
_base_ = './resnet18_2-4_8xb32-120e_in1k.py'

default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='2:8')))
