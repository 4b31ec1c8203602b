"""Which Conv/Linear layers 2:4 inference can take, and why not."""
from typing import Optional

from torch import Tensor, nn

from mmnm.layers import ineligibility, layer_kind
from mmnm.ops import count_nm_violations
from .gemm import SPARSE_COL_MULTIPLE, SPARSE_ROW_MULTIPLE


def structure_ineligibility(module: nn.Module) -> Optional[str]:
    """Why ``module``'s type or shape keeps it off the 2:4 kernels whatever
    its weights, or ``None``."""
    if getattr(module, 'transposed', False):
        return 'transposed conv: no 2:4 lowering'
    if layer_kind(module) is None:
        return (f'{type(module).__name__}: no 2:4 inference counterpart '
                '(only exact Conv2d/Linear forwards are lowered)')
    reason = ineligibility(module, 4)  # groups, reduction size % 4
    if reason is not None:
        return reason
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != 'zeros':
            return f"padding_mode={module.padding_mode!r} (only 'zeros')"
        if isinstance(module.padding, str):
            return f'padding={module.padding!r} (only explicit padding)'
    weight = module.weight
    out, k = weight.shape[0], weight[0].numel()
    if out % SPARSE_ROW_MULTIPLE:
        return (f'{out} output channels/features, not a multiple of '
                f'{SPARSE_ROW_MULTIPLE} (2:4 kernels)')
    if k % SPARSE_COL_MULTIPLE:
        return (f'GEMM reduction size {k}, not a multiple of '
                f'{SPARSE_COL_MULTIPLE} (2:4 kernels)')
    return None


def pattern_ineligibility(weight: Tensor) -> Optional[str]:
    """Why ``weight`` is not 2:4 along input channels, or ``None``."""
    bad = count_nm_violations(weight, 2, 4, 'channel')
    if bad:
        groups = weight.numel() // 4
        return (f'not 2:4: {bad}/{groups} groups of 4 input channels hold '
                'more than 2 non-zeros')
    return None
