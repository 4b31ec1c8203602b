from .sr_ste_optim_wrapper import (AMP_OPTIM_WRAPPERS, SR_STE_DEFAULTS,
                                   AmpSRSTEOptimWrapper, SRSTEMixin,
                                   SRSTEOptimWrapper, enable_amp)

__all__ = [
    'AMP_OPTIM_WRAPPERS', 'SR_STE_DEFAULTS', 'AmpSRSTEOptimWrapper',
    'SRSTEMixin', 'SRSTEOptimWrapper', 'enable_amp'
]
