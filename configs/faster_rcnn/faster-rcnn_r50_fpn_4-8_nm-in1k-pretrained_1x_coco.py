# Faster R-CNN R50-FPN at 4:8, from the 4:8 ImageNet classifier of
# configs/classification/resnet50_4-8_8xb32-120e_in1k.py.
_base_ = './faster-rcnn_r50_fpn_2-4_nm-in1k-pretrained_1x_coco.py'

model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='work_dirs/resnet50_4-8_8xb32-120e_in1k/epoch_120.pth'))
)
default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='4:8')))
