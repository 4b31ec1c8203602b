# RTMDet-tiny trained dense from scratch on the generated shapes data
# (python tools/demo.py --config ... writes it to data/demo/shapes), with
# mmdet's EMA of the weights (EMAHook, ExpMomentumEMA) as RTMDet trains it:
# the EMA weights are what is validated and saved. The dense root of
# rtmdet-tiny_2-4_shapes-64x64.py. Stock RTMDet-tiny with plain BN instead
# of SyncBN, no ImageNet backbone, 3 classes and 64x64 images.
_base_ = 'mmdet::rtmdet/rtmdet_tiny_8xb32-300e_coco.py'

# ShapesCocoDataset (mmnm/datasets): the shapes data as mmdet's CocoDataset
# with its class names and palette; `import mmnm` alone does not register it
custom_imports = dict(imports=['mmnm.datasets'], allow_failed_imports=False)

norm_cfg = dict(type='BN')
model = dict(
    backbone=dict(norm_cfg=norm_cfg, init_cfg=None),
    neck=dict(norm_cfg=norm_cfg),
    bbox_head=dict(norm_cfg=norm_cfg, num_classes=3),
    test_cfg=dict(nms_pre=1000, max_per_img=20))

# --- data: generated shapes, COCO format
# --------------------------------------
data_root = 'data/demo/shapes'
image_size = (64, 64)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
dataset = dict(type='ShapesCocoDataset', data_root=data_root)
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        **dataset,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        **dataset,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='images/val/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + '/annotations/instances_val.json',
    metric='bbox',
    proposal_nums=(100, 1, 10),
    format_only=False)
test_evaluator = val_evaluator

# --- schedule: iterations; EMA kept, the epoch-based pipeline switch dropped
# --
max_iters = 300
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=0.004))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=20,
        end=max_iters,
        eta_min=2e-4)
]
custom_hooks = [
    dict(
        type='EMAHook',
        ema_type='ExpMomentumEMA',
        momentum=0.0002,
        update_buffers=True,
        priority=49)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook',
        by_epoch=False,
        interval=max_iters,
        max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
