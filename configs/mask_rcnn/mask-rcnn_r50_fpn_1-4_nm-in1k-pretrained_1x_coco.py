# Mask R-CNN R50-FPN at 1:4, from the 1:4 ImageNet classifier of
# configs/classification/resnet50_1-4_8xb32-120e_in1k.py.
_base_ = './mask-rcnn_r50_fpn_2-4_nm-in1k-pretrained_1x_coco.py'

model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='work_dirs/resnet50_1-4_8xb32-120e_in1k/epoch_120.pth'))
)
default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='1:4')))
