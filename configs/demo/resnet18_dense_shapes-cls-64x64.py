# ResNet-18 classifier (mmpretrain), trained dense from scratch on the
# generated shapes classification data (python tools/demo.py --task cls
# writes it to data/demo/shapes_cls: 8 classes, 2000 train / 800 val images),
# evaluated with top-1 accuracy: the dense root of
# resnet18_{2-4,1-4}_shapes-cls-64x64.py. A few minutes on a 2-core CPU.
# The recipe is the ImageNet one of configs/classification (SGD 0.1,
# momentum 0.9, wd 5e-5, linear warm-up then cosine, no label smoothing, fc
# dense) on a short schedule; its backbone is the one the
# *_nm-in1k-pretrained* detection demo starts from.
_base_ = [
    'mmpretrain::_base_/models/resnet18.py',
    'mmpretrain::_base_/default_runtime.py'
]

# ShapesClsDataset (mmnm/datasets): the shapes classification data as
# mmpretrain's CustomDataset with its class names; `import mmnm` alone does
# not register it
custom_imports = dict(imports=['mmnm.datasets'], allow_failed_imports=False)

model = dict(head=dict(num_classes=8, topk=(1, )))
data_preprocessor = dict(
    num_classes=8,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# --- data: generated shapes, mmpretrain's ImageNet layout -------------------
data_root = 'data/demo/shapes_cls'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
loader = dict(batch_size=32, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader,
    dataset=dict(
        type='ShapesClsDataset',
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    **loader,
    dataset=dict(
        type='ShapesClsDataset',
        data_root=data_root,
        split='val',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# --- schedule: the reference recipe, shortened to 1260 iterations (20 epochs
# of 63), by iteration as in the other demos ----------------------------------
max_iters = 1260
warmup_iters = 63
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-5))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=False,
        begin=0,
        end=warmup_iters),
    dict(
        type='CosineAnnealingLR',
        T_max=max_iters - warmup_iters,
        eta_min=0.0,
        by_epoch=False,
        begin=warmup_iters,
        end=max_iters),
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=100, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
