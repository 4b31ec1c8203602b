# DeiT-S on ImageNet-1k at mmpretrain's DeiT recipe (300 epochs, AdamW,
# total batch 1024, Mixup/CutMix, label smoothing): dense baseline.
# Data: ImageNet-1k at data/imagenet/. Metric: top-1 / top-5 accuracy.
# No pretrained weights: the stock config trains from scratch.
_base_ = 'mmpretrain::deit/deit-small_4xb256_in1k.py'
