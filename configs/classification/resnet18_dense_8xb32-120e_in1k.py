# ResNet-18 on ImageNet-1k at the SR-STE reference recipe: dense baseline
# (SR-STE reference top-1: 71.3).
# Data: ImageNet-1k at data/imagenet/ (mmpretrain's layout: train/, val/ and
# meta/{train,val}.txt). Metric: top-1 / top-5 accuracy.
# Recipe (the paper's reference code): 120 epochs, SGD lr 0.1 for a total
# batch of 256 (8 GPUs x 32), momentum 0.9, weight decay 5e-5, 5 linear
# warm-up epochs then cosine, no label smoothing, no pretrained weights.
# The recipe is ResNet-50's; only the depth differs (mmpretrain's
# resnet18_8xb32_in1k.py model).
_base_ = './resnet50_dense_8xb32-120e_in1k.py'

model = dict(backbone=dict(depth=18), head=dict(in_channels=512))
