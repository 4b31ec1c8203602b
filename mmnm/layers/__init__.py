"""N:M sparse layers, registered in ``MODELS``, and the tables of layer
types that mmnm converts."""
from .layer_types import (PLAIN_LAYER_KINDS, SPARSE_COUNTERPARTS,
                          SPARSE_LAYERS, layer_kind, no_counterpart_reason,
                          sparse_counterpart, weight_reader)
from .sparse_attention import SparseMultiheadAttention
from .sparse_conv import SparseConv, SparseConvAdaptivePadding
from .sparse_deform_conv import (SparseDeformConv2d, SparseDeformConv2dPack,
                                 SparseModulatedDeformConv2d,
                                 SparseModulatedDeformConv2dPack)
from .sparse_layer import (NMSparseMixin, gemm_weight, gemm_weight_shape,
                           ineligibility, layer_args, sparse_layers_of)
from .sparse_linear import SparseLinear
from .weight_updates import invalidate_masks

__all__ = [
    'NMSparseMixin', 'PLAIN_LAYER_KINDS', 'SPARSE_COUNTERPARTS',
    'SPARSE_LAYERS', 'SparseConv', 'SparseConvAdaptivePadding',
    'SparseDeformConv2d', 'SparseDeformConv2dPack', 'SparseLinear',
    'SparseModulatedDeformConv2d', 'SparseModulatedDeformConv2dPack',
    'SparseMultiheadAttention', 'gemm_weight', 'gemm_weight_shape',
    'ineligibility', 'invalidate_masks', 'layer_args', 'layer_kind',
    'no_counterpart_reason', 'sparse_counterpart', 'sparse_layers_of',
    'weight_reader'
]
