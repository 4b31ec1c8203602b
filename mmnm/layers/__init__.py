"""N:M sparse layers, registered in ``MODELS``, and the tables of layer
types that mmnm converts."""
from .layer_types import (DEFORM_CONV_NAMES, DEFORM_CONVS_UNAVAILABLE,
                          PLAIN_LAYER_KINDS, SPARSE_COUNTERPARTS,
                          SPARSE_LAYERS, layer_kind, no_counterpart_reason,
                          sparse_counterpart, weight_reader)
from .sparse_attention import SparseMultiheadAttention
from .sparse_conv import SparseConv, SparseConvAdaptivePadding
from .sparse_layer import (NMSparseMixin, gemm_weight, gemm_weight_shape,
                           ineligibility, layer_args, sparse_layers_of)
from .sparse_linear import SparseLinear
from .weight_updates import invalidate_masks

__all__ = [
    'NMSparseMixin', 'PLAIN_LAYER_KINDS', 'SPARSE_COUNTERPARTS',
    'SPARSE_LAYERS', 'SparseConv', 'SparseConvAdaptivePadding', 'SparseLinear',
    'SparseMultiheadAttention', 'gemm_weight', 'gemm_weight_shape',
    'ineligibility', 'invalidate_masks', 'layer_args', 'layer_kind',
    'no_counterpart_reason', 'sparse_counterpart', 'sparse_layers_of',
    'weight_reader'
]
if DEFORM_CONVS_UNAVAILABLE is None:
    __all__ += list(DEFORM_CONV_NAMES)


def __getattr__(name: str):
    """The N:M deformable convs (:mod:`.sparse_deform_conv`), which need
    mmcv's compiled ops: where those are missing (mmcv-lite) the rest of
    mmnm works, and asking for one of these says why it is missing."""
    if name in DEFORM_CONV_NAMES:
        if DEFORM_CONVS_UNAVAILABLE is not None:
            raise ImportError(f'{name}: {DEFORM_CONVS_UNAVAILABLE}')
        from . import sparse_deform_conv
        return getattr(sparse_deform_conv, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
