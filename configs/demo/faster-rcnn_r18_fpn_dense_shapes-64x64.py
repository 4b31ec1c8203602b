# Faster R-CNN with a ResNet-18 FPN, trained dense from scratch on the
# generated shapes data (python tools/demo.py --task det writes it to
# data/demo/shapes), evaluated with the COCO bbox metric: the dense root of
# faster-rcnn_r18_fpn_2-4_shapes-64x64.py. A few minutes on a 2-core CPU.
# The model is mmdet's R50-FPN Faster R-CNN shrunk to fit 64x64 images: the
# first 3 stages of ResNet-18, a 64-channel FPN on strides 4-16, 16-64 px
# anchors.
_base_ = [
    'mmdet::_base_/models/faster-rcnn_r50_fpn.py',
    'mmdet::_base_/default_runtime.py'
]

# ShapesCocoDataset (mmnm/datasets): the shapes data as mmdet's CocoDataset
# with its class names and palette; `import mmnm` alone does not register it
custom_imports = dict(imports=['mmnm.datasets'], allow_failed_imports=False)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.04, momentum=0.9, weight_decay=1e-4),
    clip_grad=dict(max_norm=10, norm_type=2))

# --- model: from scratch, sized for 64x64 images, 3 classes ------------------
strides = [4, 8, 16]
model = dict(
    data_preprocessor=dict(pad_size_divisor=16),
    backbone=dict(
        depth=18,
        num_stages=3,
        out_indices=(0, 1, 2),
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        frozen_stages=-1,
        norm_eval=False,
        init_cfg=None),
    neck=dict(in_channels=[64, 128, 256], out_channels=64, num_outs=3),
    rpn_head=dict(
        in_channels=64,
        feat_channels=64,
        anchor_generator=dict(scales=[4], strides=strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64, featmap_strides=strides),
        bbox_head=dict(in_channels=64, fc_out_channels=256, num_classes=3)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=100), rcnn=dict(max_per_img=20)))

# --- data: generated shapes, COCO format
# --------------------------------------
data_root = 'data/demo/shapes'
image_size = (64, 64)  # Resize is a no-op here; it records scale_factor
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
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
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
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
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
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
    format_only=False)
test_evaluator = val_evaluator

# --- schedule
# -----------------------------------------------------------------
max_iters = 300
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(
        type='CosineAnnealingLR',
        by_epoch=False,
        begin=20,
        end=max_iters,
        eta_min=1e-4)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
