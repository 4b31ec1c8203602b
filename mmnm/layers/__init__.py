"""N:M sparse layers, registered in ``MODELS``, and the table of layer types
that mmnm converts."""
from .layer_types import (PLAIN_LAYER_KINDS, SPARSE_LAYERS, layer_kind,
                          sparse_counterpart)
from .sparse_conv import SparseConv
from .sparse_layer import (NMSparseMixin, ineligibility, layer_args,
                           sparse_layers_of)
from .sparse_linear import SparseLinear
from .weight_updates import invalidate_masks

__all__ = [
    'NMSparseMixin', 'PLAIN_LAYER_KINDS', 'SPARSE_LAYERS', 'SparseConv',
    'SparseLinear', 'ineligibility', 'invalidate_masks', 'layer_args',
    'layer_kind', 'sparse_counterpart', 'sparse_layers_of'
]
