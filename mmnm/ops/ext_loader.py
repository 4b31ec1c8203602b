"""Access to ``mmnm._ext``, the compiled ops, with a pure-PyTorch fallback
when it was not built (``MMNM_WITH_OPS=0``) or does not load."""
import importlib
from types import ModuleType
from typing import Optional

_ext: Optional[ModuleType] = None
_load_error: Optional[str] = None


def load_ext() -> Optional[ModuleType]:
    """The extension module, or ``None`` if it is not available."""
    global _ext, _load_error
    if _ext is None and _load_error is None:
        try:
            _ext = importlib.import_module('mmnm._ext')
        except ImportError as err:
            _load_error = str(err)
    return _ext


def ext_available() -> bool:
    """Whether mmnm's ops run compiled code (else pure PyTorch)."""
    return load_ext() is not None


def ext_has_cuda(ext: Optional[ModuleType] = None) -> bool:
    """Whether the extension (``ext``, else the loaded one) was built with
    its CUDA kernels."""
    ext = load_ext() if ext is None else ext
    return ext is not None and bool(getattr(ext, 'with_cuda', bool)())


def ext_status() -> str:
    """One line saying which implementation the ops use, and why."""
    if ext_available():
        isa = getattr(_ext, 'cpu_isa', None)
        cpu = f'{isa().upper()} CPU kernels' if isa is not None else \
            'CPU kernels of an older build (rebuild: pip install -e .)'
        if ext_has_cuda():
            return f'mmnm._ext (compiled C++ ops, {cpu}, with CUDA kernels)'
        return (f'mmnm._ext (compiled C++ ops, {cpu}; no CUDA kernels: '
                'CUDA tensors use the PyTorch path)')
    return f'pure PyTorch (mmnm._ext not loaded: {_load_error})'
