"""Access to ``mmnm._ext``, the compiled ops, with a pure-PyTorch fallback
when it was not built (``MMNM_WITH_OPS=0``), does not load, or was built
from other sources than this mmnm's."""
import importlib
import warnings
from types import ModuleType
from typing import Optional

from .ext_sources import CSRC_DIR, sources_digest

#: The functions of ``mmnm._ext`` that this version of mmnm calls: a build
#: lacking one (made from older sources, e.g. an editable install not
#: rebuilt after an update) is not used.
REQUIRED_OPS = ('nm_mask_forward', 'term_inputs_unsupported', 'sr_ste_add_',
                'sr_ste_sgd_step_', 'straight_through', 'sparse24_compress',
                'sparse24_decompress', 'cpu_isa', 'set_cpu_isa', 'with_cuda')

_ext: Optional[ModuleType] = None
_load_error: Optional[str] = None


def load_ext() -> Optional[ModuleType]:
    """The extension module, or ``None`` if it is not available."""
    global _ext, _load_error
    if _ext is None and _load_error is None:
        try:
            module = importlib.import_module('mmnm._ext')
        except ImportError as err:
            _load_error = str(err)
            return None
        _load_error = _why_not_usable(module)
        if _load_error is not None:
            warnings.warn(
                f'mmnm._ext is not used: {_load_error}; the ops run their '
                'pure-PyTorch versions, slower',
                stacklevel=2)
            return None
        _ext = module
    return _ext


def _why_not_usable(module: ModuleType) -> Optional[str]:
    """Why a loaded ``mmnm._ext`` does not fit this mmnm (``None`` if it
    does): an op missing, or C++ sources beside the package that differ
    from those it was built from."""
    rebuild = 'rebuild it with "pip install -e ." or "python setup.py ' \
        'build_ext --inplace"'
    missing = [op for op in REQUIRED_OPS if not hasattr(module, op)]
    if missing:
        return (f'{module.__file__} was built from older sources (it lacks '
                f'{", ".join(missing)}): {rebuild}')
    current = sources_digest()
    built = getattr(module, 'sources_digest', None)
    if current and built != current:
        return (f'{module.__file__} was built from other C++ sources than '
                f'{CSRC_DIR} holds now (edited or updated since): {rebuild}')
    return None


def ext_available() -> bool:
    """Whether mmnm's ops run compiled code (else pure PyTorch)."""
    return load_ext() is not None


def ext_has_cuda(ext: Optional[ModuleType] = None) -> bool:
    """Whether the extension (``ext``, else the loaded one) was built with
    its CUDA kernels."""
    ext = load_ext() if ext is None else ext
    return ext is not None and bool(ext.with_cuda())


def ext_status() -> str:
    """One line saying which implementation the ops use, and why."""
    if ext_available():
        cpu = f'{_ext.cpu_isa().upper()} CPU kernels'
        if ext_has_cuda():
            return f'mmnm._ext (compiled C++ ops, {cpu}, with CUDA kernels)'
        return (f'mmnm._ext (compiled C++ ops, {cpu}; no CUDA kernels: '
                'CUDA tensors use the PyTorch path)')
    return f'pure PyTorch (mmnm._ext not loaded: {_load_error})'
