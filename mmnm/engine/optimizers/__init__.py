from .sr_ste_optim_wrapper import (AmpSRSTEOptimWrapper, SRSTEMixin,
                                   SRSTEOptimWrapper)

__all__ = ['AmpSRSTEOptimWrapper', 'SRSTEMixin', 'SRSTEOptimWrapper']
