"""Tensor-level operations behind N:M sparsity, compiled in ``mmnm._ext``
where built, in pure PyTorch otherwise."""
from .ext_loader import ext_available, ext_status
from .nm_mask import (count_nm_violations, group_view, nm_mask, nm_mask_torch,
                      reduction_size, selection_network)
from .sr_ste import add_sr_ste_term_

__all__ = [
    'add_sr_ste_term_', 'count_nm_violations', 'ext_available', 'ext_status', 'group_view',
    'nm_mask', 'nm_mask_torch', 'reduction_size', 'selection_network'
]
