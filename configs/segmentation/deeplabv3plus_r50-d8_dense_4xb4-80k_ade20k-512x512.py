# DeepLabV3+ R50-D8 on ADE20K (512x512 crops, 80k iterations): dense baseline,
# trained from scratch.
# Data: ADE20K at data/ade/ADEChallengeData2016/. Metric: mIoU.
# No download: the ImageNet-pretrained backbone of the stock config is
# dropped. To start from a local one, add
#   --cfg-options model.pretrained=/path/to/resnet50_v1c.pth
_base_ = 'mmseg::deeplabv3plus/deeplabv3plus_r50-d8_4xb4-80k_ade20k-512x512.py'

model = dict(pretrained=None)
