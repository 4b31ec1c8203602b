from .nm_sparse_runner import NMSparseRunner

__all__ = ['NMSparseRunner']
