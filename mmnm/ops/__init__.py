"""Tensor-level operations behind N:M sparsity, compiled in ``mmnm._ext``
where built, in pure PyTorch otherwise."""
from .cpu_cache import last_level_cache_bytes
from .ext_loader import ext_available, ext_has_cuda, ext_status
from .nm_mask import (MaskedWeightBuffer, check_deferred_masks,
                      count_nm_violations, group_view, nm_mask, nm_mask_torch,
                      reduction_size, register_check_failure_hook,
                      selection_network)
from .sparse24 import (SPARSE24_LAYOUTS, Sparse24Layout, compress_sparse24,
                       compress_sparse24_torch, decompress_sparse24,
                       decompress_sparse24_torch, sparse24_layout)
from .sr_ste import (add_sr_ste_term_, fused_sgd_step_unavailable,
                     sr_ste_sgd_step_, stream_stores_available)
from .straight_through import straight_through

__all__ = [
    'MaskedWeightBuffer', 'SPARSE24_LAYOUTS', 'Sparse24Layout',
    'add_sr_ste_term_', 'check_deferred_masks', 'compress_sparse24',
    'compress_sparse24_torch', 'count_nm_violations', 'decompress_sparse24',
    'decompress_sparse24_torch', 'ext_available', 'fused_sgd_step_unavailable',
    'ext_has_cuda', 'ext_status', 'group_view', 'last_level_cache_bytes',
    'nm_mask', 'nm_mask_torch', 'reduction_size',
    'register_check_failure_hook', 'selection_network', 'sparse24_layout',
    'sr_ste_sgd_step_', 'straight_through', 'stream_stores_available'
]
