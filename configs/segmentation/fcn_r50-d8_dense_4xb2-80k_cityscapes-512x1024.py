# FCN R50-D8 on Cityscapes (512x1024 crops, 80k iterations): dense baseline,
# trained from scratch.
# Data: Cityscapes at data/cityscapes/ (leftImg8bit/, gtFine/ with
# *_labelTrainIds.png). Metric: mIoU.
# No download: the ImageNet-pretrained backbone of the stock config is
# dropped. To start from a local one, add
#   --cfg-options model.pretrained=/path/to/resnet50_v1c.pth
_base_ = 'mmseg::fcn/fcn_r50-d8_4xb2-80k_cityscapes-512x1024.py'

model = dict(pretrained=None)
