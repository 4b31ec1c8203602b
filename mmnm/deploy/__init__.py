"""2:4 sparse inference: layers holding compressed weights, the GEMM they
share (PyTorch's CUTLASS/cuSPARSELt kernels on Ampere+ GPUs, a dense GEMM on
the decompressed weight elsewhere), model conversion and loading."""
from .checkpoint import (load_sparse24_checkpoint, plan_sparse24_structure,
                         prepare_sparse24_structure, save_sparse24_checkpoint,
                         sparse24_layer_names)
from .convert import Sparse24Report, convert_to_sparse24
from .eligibility import pattern_ineligibility, structure_ineligibility
from .gemm import (BACKENDS, Sparse24Cache, clear_sparse24_caches,
                   get_sparse24_backend, kernel_backends, resolve_backend,
                   set_sparse24_backend, sparse24_backend, sparse24_linear)
from .layers import Sparse24Conv2d, Sparse24Linear
from .lowering import conv2d_as_gemm, im2col_nhwc, kcrs_weight, krsc_matrix

__all__ = [
    'BACKENDS', 'Sparse24Cache', 'Sparse24Conv2d', 'Sparse24Linear',
    'Sparse24Report', 'clear_sparse24_caches', 'conv2d_as_gemm',
    'convert_to_sparse24', 'get_sparse24_backend', 'im2col_nhwc',
    'kcrs_weight', 'kernel_backends', 'krsc_matrix',
    'load_sparse24_checkpoint', 'pattern_ineligibility',
    'plan_sparse24_structure', 'prepare_sparse24_structure', 'resolve_backend',
    'save_sparse24_checkpoint', 'set_sparse24_backend', 'sparse24_backend',
    'sparse24_layer_names', 'sparse24_linear', 'structure_ineligibility'
]
