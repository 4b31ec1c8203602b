"""Model-level conversion between dense and N:M sparse layers."""
from .sparsify import (SPARSE_COUNTERPARTS, LayerDecision, SparsityReport,
                       sparsify_model)

__all__ = [
    'LayerDecision', 'SPARSE_COUNTERPARTS', 'SparsityReport', 'sparsify_model'
]
