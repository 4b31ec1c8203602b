# DeepLabV3+ R50-D8 at 2:8, from the 2:8 ImageNet classifier of
# configs/classification/resnet50_2-8_8xb32-120e_in1k.py.
_base_ = './deeplabv3plus_r50b-d8_2-4_nm-in1k-pretrained_4xb4-80k_ade20k-512x512.py'  # noqa: E501

model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='work_dirs/resnet50_2-8_8xb32-120e_in1k/epoch_120.pth'))
)
default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='2:8')))
