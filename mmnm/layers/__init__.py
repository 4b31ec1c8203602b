"""N:M sparse layers, registered in ``MODELS``."""
from .sparse_conv import SparseConv
from .sparse_layer import NMSparseMixin, ineligibility, sparse_layers_of
from .sparse_linear import SparseLinear

__all__ = [
    'NMSparseMixin', 'SparseConv', 'SparseLinear', 'ineligibility',
    'sparse_layers_of'
]
