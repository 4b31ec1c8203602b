"""The SR-STE gradient term: ``grad += lambda_w * (1 - mask) * weight``."""
import torch
from torch import Tensor

from .ext_loader import load_ext


@torch.no_grad()
def add_sr_ste_term_(grad: Tensor, weight: Tensor, mask: Tensor,
                     lambda_w: float) -> Tensor:
    """Decay the pruned weights through their gradient, in place.

    One pass over memory in ``mmnm._ext`` for contiguous CPU tensors; a
    fused PyTorch ``addcmul_`` elsewhere. Returns ``grad``.
    """
    ext = load_ext()
    if ext is not None and grad.device.type == 'cpu' and \
            grad.is_contiguous() and weight.is_contiguous() and \
            mask.is_contiguous() and grad.dtype == weight.dtype and \
            mask.dtype == torch.bool:
        ext.sr_ste_add_(grad, weight, mask, float(lambda_w))
        return grad
    return grad.addcmul_(weight, mask.logical_not(), value=lambda_w)
