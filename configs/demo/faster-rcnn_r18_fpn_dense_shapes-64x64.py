# Dense baseline of faster-rcnn_r18_fpn_2-4_shapes-64x64.py: the same Faster R-CNN,
# data and schedule trained without N:M sparsity, for side-by-side comparison.
_base_ = './faster-rcnn_r18_fpn_2-4_shapes-64x64.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer={{_base_.optim_wrapper.optimizer}},
    clip_grad={{_base_.optim_wrapper.clip_grad}})
custom_hooks = []
