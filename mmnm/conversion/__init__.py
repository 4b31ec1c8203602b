"""Model-level conversion between dense and N:M sparse layers, and export
of exactly N:M checkpoints."""
from .export import (check_nm_state_dict, export_state_dict,
                     save_nm_checkpoint, sparse_weight_patterns)
from .sparsify import (SPARSE_COUNTERPARTS, LayerDecision, SparsityReport,
                       find_sparse_layers, sparsify_model)
from .verify import LayerSparsity, measure_sparsity, verify_nm_sparsity

__all__ = [
    'check_nm_state_dict', 'export_state_dict', 'save_nm_checkpoint',
    'sparse_weight_patterns',
    'LayerDecision', 'LayerSparsity', 'SPARSE_COUNTERPARTS', 'SparsityReport',
    'find_sparse_layers', 'measure_sparsity', 'sparsify_model',
    'verify_nm_sparsity'
]
