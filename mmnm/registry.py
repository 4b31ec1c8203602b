"""Registries that mmnm registers into.

mmnm serves mmdet, mmseg and any other OpenMMLab codebase, so its parts go
into mmengine's root registries: every downstream registry falls back to
them, and ``type='SparseConv'`` or ``type='SRSTEOptimWrapper'`` resolve
whatever ``default_scope`` a config sets.
"""
from mmengine.registry import HOOKS, MODELS, OPTIM_WRAPPERS

__all__ = ['HOOKS', 'MODELS', 'OPTIM_WRAPPERS']
