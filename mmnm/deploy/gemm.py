"""The one GEMM behind every 2:4 inference layer: ``y = x @ W^T + b`` with
``W`` ``(out, K)`` stored 2:4-compressed (CUTLASS ``values`` + ``meta``).

The sparse kernels take the sparse matrix as the *first* operand, so the
product is computed as ``y^T = W @ x^T``. Where they apply (fp16/bf16, the
shape multiples below, the GPUs named below) PyTorch's kernels run:

* ``'cusparselt'`` (``torch._cslt_sparse_mm``): its compressed buffer is
  opaque and version dependent, so it is made from the decompressed weight
  on the device at first use and cached; the algorithm id is searched once
  per (shape, dtype, device) where the search exists. CUDA devices of
  capability >= 8.0.
* ``'cutlass'`` (``torch._sparse_semi_structured_(add)mm``): reads the stored
  ``values``/``meta`` directly. PyTorch builds these kernels for sm8x only
  (``TORCH_CHECK(dprops->major == 8)``): not on Hopper (sm90) or ROCm.

Every backend returns a row-major ``(rows, out)`` result.

Elsewhere (CPU, older GPUs) the weight is decompressed once, cached, and
multiplied by a dense GEMM (in fp32 on the CPU, rounded to the layer's
dtype, as tensor cores accumulate). Convolutions reach this function through
the same lowering on every device (:mod:`mmnm.deploy.lowering`), so CPU runs
test the code that GPUs run up to the kernel call.
"""
import functools
import logging
import os
import warnings
import weakref
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor

from mmnm.ops import decompress_sparse24

#: Accepted by :func:`set_sparse24_backend` and ``MMNM_SPARSE24_BACKEND``.
#: ``'auto'`` picks cuSPARSELt, then CUTLASS, then dense.
BACKENDS = ('auto', 'cusparselt', 'cutlass', 'dense')

#: Sparse-operand multiples that both kernels accept for fp16/bf16: CUTLASS
#: needs rows % 32 and K % 64 (cuSPARSELt only 16 and 16). Layers are
#: converted only when they meet them, so every converted layer can run
#: either kernel.
SPARSE_ROW_MULTIPLE = 32
SPARSE_COL_MULTIPLE = 64

#: The dense operand's row count (batch x pixels) is padded to this.
DENSE_ROW_MULTIPLE = 8

#: Dtypes the sparse tensor-core kernels run for fp inputs.
KERNEL_DTYPES = (torch.float16, torch.bfloat16)

#: The environment variable read (at the first GEMM) for the backend.
BACKEND_ENV = 'MMNM_SPARSE24_BACKEND'

# None: not chosen yet, read from BACKEND_ENV when first needed (a bad value
# is an error there, not at ``import mmnm``)
_backend: Optional[str] = None

# (backend, out, K, padded rows, dtype, has bias, device): cuSPARSELt alg id
_ALG_IDS: Dict[Tuple, int] = {}
# same key: a kernel that raised for it once, so the dense path is used
_FAILED: Dict[Tuple, str] = {}


def get_sparse24_backend() -> str:
    """The backend requested for 2:4 GEMMs (see :data:`BACKENDS`): the one
    set by :func:`set_sparse24_backend`, else ``MMNM_SPARSE24_BACKEND``,
    else ``'auto'``; ``ValueError`` naming the variable if it is invalid."""
    global _backend
    if _backend is None:
        name = os.environ.get(BACKEND_ENV, 'auto')
        if name not in BACKENDS:
            raise ValueError(f'{BACKEND_ENV}={name!r} is not a 2:4 GEMM '
                             f'backend: expected one of {BACKENDS}')
        _backend = name
    return _backend


def set_sparse24_backend(name: str) -> str:
    """Request a backend for all 2:4 GEMMs; returns the previous one.

    A requested kernel that cannot run a GEMM (CPU, dtype, shape) falls
    back to the dense path; :attr:`Sparse24Cache.last_backend` of each layer
    tells which one ran.
    """
    global _backend
    if name not in BACKENDS:
        raise ValueError(f'unknown 2:4 GEMM backend {name!r}, expected one '
                         f'of {BACKENDS}')
    previous = _backend if _backend is not None else os.environ.get(
        BACKEND_ENV, 'auto')
    _backend = name
    return previous


@contextmanager
def sparse24_backend(name: str) -> Iterator[None]:
    """``with sparse24_backend('dense'): ...`` runs with that backend."""
    global _backend
    previous = _backend  # None: the environment's, read when needed
    set_sparse24_backend(name)
    try:
        yield
    finally:
        _backend = previous


@functools.lru_cache(maxsize=None)
def _capability(device: torch.device) -> Tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def _cusparselt_available() -> bool:
    backend = getattr(torch.backends, 'cusparselt', None)
    return (backend is not None and backend.is_available()
            and hasattr(torch, '_cslt_sparse_mm'))


def kernel_backends(device: torch.device, dtype: torch.dtype, out: int,
                    k: int) -> Tuple[str, ...]:
    """The sparse kernels that can multiply an ``(out, k)`` 2:4 weight of
    ``dtype`` on ``device``, in order of preference (empty: dense only).

    cuSPARSELt runs on capability >= 8.0; PyTorch's CUTLASS kernels only on
    sm8x (Ampere/Ada) CUDA devices, not sm90 or ROCm."""
    if device.type != 'cuda' or dtype not in KERNEL_DTYPES:
        return ()
    capability = _capability(device)
    if capability < (8, 0):
        return ()
    found = []
    if _cusparselt_available() and out % 16 == 0 and k % 16 == 0:
        found.append('cusparselt')
    if hasattr(torch, '_sparse_semi_structured_addmm') and \
            capability[0] == 8 and torch.version.hip is None and \
            out % SPARSE_ROW_MULTIPLE == 0 and k % SPARSE_COL_MULTIPLE == 0:
        found.append('cutlass')
    return tuple(found)


def resolve_backend(device: torch.device, dtype: torch.dtype, out: int,
                    k: int) -> str:
    """The backend a GEMM with this weight runs under the current request."""
    requested = get_sparse24_backend()
    available = kernel_backends(device, dtype, out, k)
    if requested == 'dense' or not available:
        return 'dense'
    if requested == 'auto':
        return available[0]
    return requested if requested in available else 'dense'


class Sparse24Cache:
    """What a layer prepares once per backend from its compressed weight
    (the dense weight, the cuSPARSELt buffer), rebuilt when ``values`` or
    ``meta`` change: other tensor objects (``.to()``, ``.cuda()``,
    ``_apply``; compared by identity, as a new tensor may reuse the old
    one's address) or in-place writes (``load_state_dict``; ``_version``)."""

    def __init__(self) -> None:
        self._entries: Dict[str, Tuple[Tuple, Tensor]] = {}
        #: the backend of the last GEMM, for benchmarks and tests
        self.last_backend: Optional[str] = None

    def get(self, kind: str, values: Tensor, meta: Tensor,
            build: Callable[[], Tensor]) -> Tensor:
        entry = self._entries.get(kind)
        if entry is not None:
            (values_ref, values_version, meta_ref, meta_version), built = entry
            if values_ref() is values and meta_ref() is meta and \
                    values._version == values_version and \
                    meta._version == meta_version:
                return built
        built = build()
        self._entries[kind] = ((weakref.ref(values), values._version,
                                weakref.ref(meta), meta._version), built)
        return built

    def clear(self) -> None:
        self._entries.clear()


def sparse24_linear(x: Tensor,
                    values: Tensor,
                    meta: Tensor,
                    bias: Optional[Tensor],
                    cache: Sparse24Cache,
                    name: str = 'weight') -> Tensor:
    """``x @ W^T + bias`` for ``x`` ``(rows, K)`` and the 2:4 weight ``W``
    ``(out, K)`` given by ``values`` ``(out, K/2)`` and ``meta``.

    ``x`` and ``bias`` must have ``values``' dtype and device
    (``ValueError`` naming ``name`` otherwise). The result ``(rows, out)`` is
    row-major on every backend.

    A kernel that raises a ``RuntimeError`` for a shape (one this PyTorch
    build lacks) is logged once and the dense path is used for that shape
    from then on (cuSPARSELt refusing a problem included); out-of-memory
    and other CUDA errors propagate.
    """
    out, k = values.shape[0], 2 * values.shape[1]
    _check_operands(x, values, bias, name)
    backend = resolve_backend(values.device, values.dtype, out, k)
    rows = x.shape[0]
    padded = -(-rows // DENSE_ROW_MULTIPLE) * DENSE_ROW_MULTIPLE
    key = (backend, out, k, padded, values.dtype, bias
           is not None, values.device)
    if backend != 'dense' and rows and key not in _FAILED:
        x_padded = F.pad(x, (0, 0, 0, padded - rows)) if padded != rows \
            else x
        try:
            if backend == 'cusparselt':
                y = _cusparselt_linear(x_padded.contiguous(), values, meta,
                                       bias, cache, key, name)
            else:
                y = _cutlass_linear(x_padded.contiguous(), values, meta, bias)
        except RuntimeError as err:
            if not _kernel_unsupported(err):
                raise
            _FAILED[key] = str(err)
            print_log(
                f'{name}: {backend} 2:4 GEMM failed for {key[1:4]} '
                f'{values.dtype}, using the dense path: {err}',
                logger='current',
                level=logging.WARNING)
        else:
            cache.last_backend = backend
            # CUTLASS writes y^T: copy the rows kept into row-major order
            return y[:rows].contiguous()
    cache.last_backend = 'dense'
    # CPUs multiply fp16/bf16 slowly and without tensor cores' fp32
    # accumulation: compute in fp32 there and round the result
    dtype = values.dtype if values.is_cuda else torch.float32
    weight = cache.get(
        'dense', values, meta,
        lambda: decompress_sparse24(values, meta, name).to(dtype))
    y = F.linear(x.to(dtype), weight, None if bias is None else bias.to(dtype))
    return y.to(values.dtype)


def _check_operands(x: Tensor, values: Tensor, bias: Optional[Tensor],
                    name: str) -> None:
    """``ValueError`` naming the layer unless ``x`` (and ``bias``) fit the
    ``(out, K/2)`` ``values``: wrong inputs are errors, not dense
    fallbacks."""
    out, k = values.shape[0], 2 * values.shape[1]
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != k:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x)
        raise ValueError(f'{name}: 2:4 GEMM with a ({out}, {k}) weight got '
                         f'input of shape {shape}, expected (rows, {k})')
    for what, tensor in (('input', x), ('bias', bias)):
        if tensor is None:
            continue
        if tensor.dtype != values.dtype or tensor.device != values.device:
            raise ValueError(f'{name}: 2:4 GEMM {what} is {tensor.dtype} on '
                             f'{tensor.device}, the weight {values.dtype} on '
                             f'{values.device}; they must match')
    if bias is not None and tuple(bias.shape) != (out, ):
        raise ValueError(f'{name}: 2:4 GEMM bias of shape '
                         f'{tuple(bias.shape)}, expected ({out},)')


def _kernel_unsupported(err: RuntimeError) -> bool:
    """Whether a sparse kernel's ``err`` says it cannot run this problem
    (fall back to dense), rather than that the device failed (out of
    memory, a CUDA error that later calls would also see: re-raise)."""
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return False
    accelerator_error = getattr(torch, 'AcceleratorError', None)
    if accelerator_error is not None and isinstance(err, accelerator_error):
        return False
    message = str(err)
    if any(sign in message for sign in _DEVICE_FAILURES):
        return False
    # cuSPARSELt's status errors read "CUDA error: <status> when calling
    # `cusparseLt...`" (TORCH_CUDASPARSE_CHECK): a status that says the
    # library refused the problem falls back; any other (allocation or
    # execution failed, internal error) propagates
    if 'when calling `cusparseLt' in message:
        return any(status in message for status in _REFUSALS)
    return 'CUDA error' not in message and 'CUBLAS_STATUS' not in message


#: cuSPARSE statuses (cusparseGetErrorString) that refuse a problem.
_REFUSALS = ('not supported', 'invalid value', 'architecture mismatch')

#: Messages of errors that later calls on the device would also see.
_DEVICE_FAILURES = ('out of memory', 'illegal memory', 'device-side assert',
                    'unspecified launch failure', 'misaligned address',
                    'illegal instruction')


def _cutlass_linear(x: Tensor, values: Tensor, meta: Tensor,
                    bias: Optional[Tensor]) -> Tensor:
    """CUTLASS: ``(out, rows) = W @ x^T``, returned transposed (a view)."""
    if bias is None:
        y_t = torch._sparse_semi_structured_mm(values, meta, x.t())
    else:
        y_t = torch._sparse_semi_structured_addmm(bias, values, meta, x.t())
    return y_t.t()


def _cusparselt_linear(x: Tensor, values: Tensor, meta: Tensor,
                       bias: Optional[Tensor], cache: Sparse24Cache,
                       key: Tuple, name: str) -> Tensor:
    """cuSPARSELt: ``W @ x^T`` with the transpose fused, ``(rows, out)``."""
    compressed = cache.get(
        'cusparselt', values, meta,
        lambda: torch._cslt_compress(decompress_sparse24(values, meta, name)))
    if key not in _ALG_IDS:
        _ALG_IDS[key] = _search_alg_id(compressed, x, bias)
    return torch._cslt_sparse_mm(
        compressed,
        x.t(),
        bias=bias,
        transpose_result=True,
        alg_id=_ALG_IDS[key])


def _search_alg_id(compressed: Tensor, x: Tensor,
                   bias: Optional[Tensor]) -> int:
    """cuSPARSELt's fastest algorithm for this product (0 where this
    PyTorch has no search)."""
    search = getattr(torch, '_cslt_sparse_mm_search', None)
    if search is None:
        return 0
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # deprecated in some releases
        try:
            return int(
                search(compressed, x.t(), bias=bias, transpose_result=True))
        except RuntimeError as err:
            if not _kernel_unsupported(err):
                raise
            return 0


def clear_sparse24_caches() -> None:
    """Forget searched algorithm ids and failed kernels (e.g. between
    benchmark runs)."""
    _ALG_IDS.clear()
    _FAILED.clear()
