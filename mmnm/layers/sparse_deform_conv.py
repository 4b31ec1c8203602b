"""N:M sparse deformable convolutions (mmcv's DCN and DCNv2).

A deformable conv samples its input at learned offsets and then reduces,
like a plain conv, over input channels x kernel taps (im2col of the
sampled columns times the weight), so its N:M groups are the plain conv's:
M consecutive input channels at each output channel and kernel tap. The
offset (and modulation) convs inside the ``*Pack`` modules are ordinary
``nn.Conv2d`` layers, decided on their own.

Importing this module needs mmcv's compiled ops; where they are missing
(mmcv-lite), :mod:`mmnm.layers` goes on without these layers (see
``layer_types.DEFORM_CONVS_UNAVAILABLE``).
"""
from mmcv.ops import (DeformConv2d, DeformConv2dPack, ModulatedDeformConv2d,
                      ModulatedDeformConv2dPack)

from mmnm.registry import MODELS
from .sparse_layer import NMSparseMixin


@MODELS.register_module()
class SparseDeformConv2d(NMSparseMixin, DeformConv2d):
    """``mmcv.ops.DeformConv2d`` (offsets given) with an N:M masked
    weight."""

    plain_type = DeformConv2d
    contiguous_masked_weight = True  # mmcv's DCN kernels need it


@MODELS.register_module()
class SparseDeformConv2dPack(NMSparseMixin, DeformConv2dPack):
    """``mmcv.ops.DeformConv2dPack`` (``DCN``: offsets from its own conv)
    with an N:M masked weight."""

    plain_type = DeformConv2dPack
    contiguous_masked_weight = True


@MODELS.register_module()
class SparseModulatedDeformConv2d(NMSparseMixin, ModulatedDeformConv2d):
    """``mmcv.ops.ModulatedDeformConv2d`` (offsets and modulation given)
    with an N:M masked weight."""

    plain_type = ModulatedDeformConv2d
    contiguous_masked_weight = True


@MODELS.register_module()
class SparseModulatedDeformConv2dPack(NMSparseMixin,
                                      ModulatedDeformConv2dPack):
    """``mmcv.ops.ModulatedDeformConv2dPack`` (``DCNv2``) with an N:M
    masked weight."""

    plain_type = ModulatedDeformConv2dPack
    contiguous_masked_weight = True


#: The N:M deformable convs (importing this module needs mmcv's ops).
SPARSE_DEFORM_CONVS = (SparseDeformConv2d, SparseDeformConv2dPack,
                       SparseModulatedDeformConv2d,
                       SparseModulatedDeformConv2dPack)
