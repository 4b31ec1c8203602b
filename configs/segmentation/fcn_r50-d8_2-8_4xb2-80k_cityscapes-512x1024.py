# FCN R50-D8 on Cityscapes (512x1024 crops, 80k iterations): trained 2:8 sparse
# from scratch with SR-STE.
# Data: Cityscapes at data/cityscapes/ (leftImg8bit/, gtFine/ with
# *_labelTrainIds.png). Metric: mIoU.
_base_ = './fcn_r50-d8_2-4_4xb2-80k_cityscapes-512x1024.py'

default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='2:8')))
