# FCN R50-D8 at 1:4, from the 1:4 ImageNet classifier of
# configs/classification/resnet50_1-4_8xb32-120e_in1k.py.
_base_ = './fcn_r50b-d8_2-4_nm-in1k-pretrained_4xb2-80k_cityscapes-512x1024.py'

model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='work_dirs/resnet50_1-4_8xb32-120e_in1k/epoch_120.pth'))
)
default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='1:4')))
