"""N:M sparse 2D convolutions: the plain one and mmcv's adaptive-padding
one (EfficientNet's), whose forward pads like TensorFlow's ``'SAME'`` and
then runs ``F.conv2d`` of the same weight."""
from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from torch import nn

from mmnm.registry import MODELS
from .sparse_layer import NMSparseMixin


@MODELS.register_module()
class SparseConv(NMSparseMixin, nn.Conv2d):
    """``nn.Conv2d`` whose forward uses an N:M masked weight.

    Built like ``nn.Conv2d`` plus ``n``, ``m`` and ``orientation``, so
    ``conv_cfg=dict(type='SparseConv', n=2, m=4)`` works wherever mmcv's
    ``build_conv_layer`` is used. Parameter names match ``nn.Conv2d``: dense
    checkpoints load into it and its checkpoints load into a dense conv.
    """

    plain_type = nn.Conv2d


@MODELS.register_module()
class SparseConvAdaptivePadding(NMSparseMixin, Conv2dAdaptivePadding):
    """mmcv's ``Conv2dAdaptivePadding`` with an N:M masked weight (groups
    along input channels, as for :class:`SparseConv`)."""

    plain_type = Conv2dAdaptivePadding
