"""Training parts: SR-STE optim wrappers, the sparsity/SAD hook and the
sparsifying runner."""
from .hooks import NMSparsityHook
from .optimizers import (AmpSRSTEOptimWrapper, SRSTEOptimWrapper,
                         find_sparse_layers)
from .runner import NMSparseRunner

__all__ = [
    'AmpSRSTEOptimWrapper', 'NMSparseRunner', 'NMSparsityHook',
    'SRSTEOptimWrapper', 'find_sparse_layers'
]
