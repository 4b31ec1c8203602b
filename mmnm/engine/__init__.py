"""Training parts: SR-STE optim wrappers and the hook that makes a model
N:M sparse and logs its sparsity and SAD."""
from .hooks import NMSparsityHook
from .optimizers import (AmpSRSTEOptimWrapper, SRSTEOptimWrapper,
                         find_sparse_layers)

__all__ = [
    'AmpSRSTEOptimWrapper', 'NMSparsityHook',
    'SRSTEOptimWrapper', 'find_sparse_layers'
]
