"""The straight-through estimator (STE) of N:M training: the forward pass
uses the masked weight, the backward pass gives its gradient to the dense
weight unchanged, so that pruned weights keep learning and can come back."""
from typing import Tuple

import torch
from torch import Tensor

from .ext_loader import load_ext

try:
    from torch.compiler import is_compiling
except ImportError:  # torch < 2.3
    from torch._dynamo import is_compiling


class _StraightThroughMask(torch.autograd.Function):
    """:func:`straight_through` in Python: the path without ``mmnm._ext``,
    and the one ``torch.compile`` traces."""

    @staticmethod
    def forward(ctx, weight: Tensor, masked: Tensor) -> Tensor:
        if weight.shape != masked.shape:
            raise RuntimeError(
                f'straight_through: weight and masked shapes differ '
                f'({list(weight.shape)} vs {list(masked.shape)})')
        return masked

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, None]:
        return grad, None


def straight_through(weight: Tensor, masked: Tensor) -> Tensor:
    """``masked`` (a view of it) in the forward pass; in the backward pass
    ``weight`` receives the gradient of the result unchanged, ``masked``
    none.

    A C++ autograd function in ``mmnm._ext``: no call into Python per
    forward and backward, about a quarter of what a small sparse layer
    adds to its dense step. The Python one without the extension and
    while ``torch.compile`` traces (which sees through it, not through
    compiled functions).

    Args:
        weight (Tensor): the dense weight (the parameter that learns).
        masked (Tensor): its masked copy, of the same shape.

    Returns:
        Tensor: a view of ``masked`` whose gradient goes to ``weight``.
    """
    ext = load_ext()
    if ext is None or is_compiling():
        return _StraightThroughMask.apply(weight, masked)
    return ext.straight_through(weight, masked)
