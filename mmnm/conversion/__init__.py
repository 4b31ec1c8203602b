"""Model-level conversion between dense and N:M sparse layers, and export
of exactly N:M checkpoints."""
from .checkpoint import (NM_CHECKPOINT_FORMAT, NM_CHECKPOINT_KEY, WEIGHT_SETS,
                         checkpoint_patterns, decode_nm_checkpoint,
                         encode_nm_checkpoint, nm_checkpoint_format, pack_mask,
                         unpack_mask)
from .export import (check_nm_state_dict, export_state_dict,
                     save_nm_checkpoint, sparse_weight_patterns)
from .pretrained import check_pretrained_init, pretrained_inits
from .sparsify import (LayerDecision, SparsityReport, find_sparse_layers,
                       sparse_layer_slots, sparsify_model)
from .surgery import (WEIGHTED_LAYER_TYPES, check_globs, first_match,
                      is_weighted_layer, module_names, parents, replace_layers,
                      weighted_layers)
from .verify import (LayerSparsity, SparsitySummary, measure_sparsity,
                     state_dict_sparsity, verify_nm_sparsity)

__all__ = [
    'NM_CHECKPOINT_FORMAT', 'NM_CHECKPOINT_KEY', 'WEIGHT_SETS',
    'decode_nm_checkpoint', 'encode_nm_checkpoint', 'nm_checkpoint_format',
    'pack_mask', 'unpack_mask', 'check_nm_state_dict', 'export_state_dict',
    'save_nm_checkpoint', 'check_pretrained_init', 'checkpoint_patterns',
    'pretrained_inits', 'sparse_weight_patterns', 'LayerDecision',
    'LayerSparsity', 'SparsityReport', 'WEIGHTED_LAYER_TYPES', 'check_globs',
    'first_match', 'is_weighted_layer', 'module_names', 'parents',
    'replace_layers', 'weighted_layers', 'find_sparse_layers',
    'measure_sparsity', 'sparse_layer_slots', 'sparsify_model',
    'state_dict_sparsity', 'SparsitySummary', 'verify_nm_sparsity'
]
