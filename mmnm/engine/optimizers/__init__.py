from .sr_ste_optim_wrapper import (AmpSRSTEOptimWrapper, SRSTEMixin,
                                   SRSTEOptimWrapper, find_sparse_layers)

__all__ = [
    'AmpSRSTEOptimWrapper', 'SRSTEMixin', 'SRSTEOptimWrapper',
    'find_sparse_layers'
]
