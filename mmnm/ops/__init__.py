"""Tensor-level operations behind N:M sparsity."""
from .nm_mask import group_view, nm_mask, reduction_size, selection_network

__all__ = ['group_view', 'nm_mask', 'reduction_size', 'selection_network']
