# ResNet-50 on ImageNet-1k at the SR-STE reference recipe: dense baseline
# (SR-STE reference top-1: 77.3).
# Data: ImageNet-1k at data/imagenet/ (mmpretrain's layout: train/, val/ and
# meta/{train,val}.txt). Metric: top-1 / top-5 accuracy.
# Recipe (the paper's reference code): 120 epochs, SGD lr 0.1 for a total
# batch of 256 (8 GPUs x 32), momentum 0.9, weight decay 5e-5, 5 linear
# warm-up epochs then cosine, no label smoothing, no pretrained weights.
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-5))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=5,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=115,
        eta_min=0.0,
        by_epoch=True,
        begin=5,
        end=120,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=120)
