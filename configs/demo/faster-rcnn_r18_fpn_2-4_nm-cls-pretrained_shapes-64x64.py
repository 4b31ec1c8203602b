# The 2:4 Faster R-CNN R18-FPN of faster-rcnn_r18_fpn_2-4_shapes-64x64.py,
# its backbone initialised from the 2:4 shapes classifier of
# resnet18_2-4_shapes-cls-64x64.py instead of random weights: the demo of the
# classifier -> detector hand-off that the *_nm-in1k-pretrained* configs make
# with ImageNet checkpoints. The classifier's masked weights load into the
# detector's N:M backbone, so its first masks are the classifier's; the
# classifier's 4th stage is left out (this detector uses 3). Run
#   python tools/demo.py --task cls
#   python tools/demo.py --config \
#       configs/demo/faster-rcnn_r18_fpn_2-4_nm-cls-pretrained_shapes-64x64.py
# or give another classifier checkpoint with
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = './faster-rcnn_r18_fpn_2-4_shapes-64x64.py'

model = dict(
    backbone=dict(
        init_cfg=dict(
            _delete_=True,  # the dense root's is None
            type='Pretrained',
            checkpoint='work_dirs/demo/resnet18_2-4_shapes-cls-64x64/'
            'iter_1260.pth',
            prefix='backbone.')))
