"""mmnm: N:M fine-grained structured sparsity (SR-STE) for OpenMMLab.

``custom_imports = dict(imports=['mmnm'])`` registers the sparse layers,
the SR-STE optim wrappers and the sparsity hook, and lets checkpoints load
under PyTorch's ``weights_only`` loading.
"""
from .utils.checkpoint import register_checkpoint_safe_globals
from .version import __version__

register_checkpoint_safe_globals()

from . import conversion, deploy, engine, layers, ops  # noqa: E402,F401
from .pattern import NMPattern  # noqa: E402

__all__ = ['NMPattern', '__version__']
