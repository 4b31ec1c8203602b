"""Tensor-level operations behind N:M sparsity."""
from .nm_mask import (count_nm_violations, group_view, nm_mask,
                      reduction_size, selection_network)

__all__ = [
    'count_nm_violations', 'group_view', 'nm_mask', 'reduction_size',
    'selection_network'
]
