"""Model-level conversion between dense and N:M sparse layers."""
from .sparsify import (SPARSE_COUNTERPARTS, LayerDecision, SparsityReport,
                       find_sparse_layers, sparsify_model)
from .verify import LayerSparsity, measure_sparsity, verify_nm_sparsity

__all__ = [
    'LayerDecision', 'LayerSparsity', 'SPARSE_COUNTERPARTS', 'SparsityReport',
    'find_sparse_layers', 'measure_sparsity', 'sparsify_model',
    'verify_nm_sparsity'
]
