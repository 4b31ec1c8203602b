# FCN with a ResNet-18-D8 backbone, trained dense from scratch on the
# generated shapes data (python tools/demo.py --task seg writes it to
# data/demo/shapes), evaluated with mIoU: the dense root of
# fcn_r18-d8_2-4_shapes-64x64.py. A few minutes on a 2-core CPU.
_base_ = 'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py'

# ShapesSegDataset (mmnm/datasets): the shapes data as mmseg's BaseSegDataset
# with its class names, palette and suffixes; `import mmnm` alone does not
# register it
custom_imports = dict(imports=['mmnm.datasets'], allow_failed_imports=False)

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=5e-4))

# --- model: from scratch, plain BN, 4 classes -------------------------------
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (64, 64)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(num_classes=4, norm_cfg=norm_cfg),
    auxiliary_head=dict(num_classes=4, norm_cfg=norm_cfg))

# --- data: generated shapes --------------------------------------------------
data_root = 'data/demo/shapes'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
dataset = dict(_delete_=True, type='ShapesSegDataset', data_root=data_root)
loader = dict(batch_size=8, num_workers=0, persistent_workers=False)
train_dataloader = dict(
    **loader,
    dataset=dict(
        **dataset,
        data_prefix=dict(
            img_path='images/train', seg_map_path='seg_maps/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    **loader,
    dataset=dict(
        **dataset,
        data_prefix=dict(img_path='images/val', seg_map_path='seg_maps/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# --- schedule
# -----------------------------------------------------------------
max_iters = 300
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=20),
    dict(
        type='PolyLR',
        eta_min=1e-4,
        power=0.9,
        begin=20,
        end=max_iters,
        by_epoch=False),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters))
randomness = dict(seed=0)
