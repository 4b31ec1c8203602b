"""Training parts: SR-STE optim wrappers and the hook that makes a model
N:M sparse and logs its sparsity and SAD."""
from .hooks import NMSparsityHook
from .optimizers import AmpSRSTEOptimWrapper, SRSTEOptimWrapper

__all__ = ['AmpSRSTEOptimWrapper', 'NMSparsityHook', 'SRSTEOptimWrapper']
