from .checkpoint import read_checkpoint, register_checkpoint_safe_globals
from .dist import prepare_cpu_distributed
from .numerics import relative_error

__all__ = [
    'prepare_cpu_distributed', 'read_checkpoint',
    'register_checkpoint_safe_globals', 'relative_error'
]
