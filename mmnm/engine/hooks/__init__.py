from .nm_checkpoint_hook import NMCheckpointHook
from .nm_sparsity_hook import NMSparsityHook

__all__ = ['NMCheckpointHook', 'NMSparsityHook']
