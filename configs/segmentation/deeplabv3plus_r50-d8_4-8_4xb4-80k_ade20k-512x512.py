# DeepLabV3+ R50-D8 on ADE20K (512x512 crops, 80k iterations): trained 4:8
# sparse from scratch with SR-STE.
# Data: ADE20K at data/ade/ADEChallengeData2016/. Metric: mIoU.
_base_ = './deeplabv3plus_r50-d8_2-4_4xb4-80k_ade20k-512x512.py'

default_hooks = dict(nm_sparsity=dict(sparsity=dict(pattern='4:8')))
