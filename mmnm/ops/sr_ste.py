"""The SR-STE gradient term, ``grad += lambda_w * (1 - mask) * weight``,
alone or fused into a ``torch.optim.SGD`` step."""
from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

from .ext_loader import load_ext

if TYPE_CHECKING:
    from .nm_mask import MaskedWeightBuffer


def _compiled_kernel_takes(
        weight: Tensor,
        grad: Tensor,
        mask: Tensor,
        momentum_buffer: Optional[Tensor] = None) -> Optional[str]:
    """``None`` if the compiled CPU kernels take these tensors, else why
    not (the extension's own checks: one call, a microsecond)."""
    ext = load_ext()
    if ext is None:
        return 'mmnm._ext is not loaded'
    return ext.term_inputs_unsupported(weight, grad, mask,
                                       momentum_buffer) or None


@torch.no_grad()
def add_sr_ste_term_(grad: Tensor, weight: Tensor, mask: Tensor,
                     lambda_w: float) -> Tensor:
    """Decay the pruned weights through their gradient, in place.

    One pass over memory in ``mmnm._ext`` for CPU tensors of one dense
    memory layout (see :func:`~mmnm.ops.layout.same_dense_layout`); a
    fused PyTorch ``addcmul_`` elsewhere. Returns ``grad``.
    """
    if _compiled_kernel_takes(weight, grad, mask) is None:
        load_ext().sr_ste_add_(grad, weight, mask, float(lambda_w))
        return grad
    return grad.addcmul_(weight, mask.logical_not(), value=lambda_w)


def fused_sgd_step_unavailable(
        param: Tensor, grad: Tensor, mask: Tensor,
        momentum_buffer: Optional[Tensor]) -> Optional[str]:
    """``None`` if :func:`sr_ste_sgd_step_` runs its one-pass compiled
    kernel on these tensors, else the reason it would not (for the log)."""
    return _compiled_kernel_takes(param, grad, mask, momentum_buffer)


def stream_stores_available() -> bool:
    """Whether :func:`sr_ste_sgd_step_`'s ``stream_remask`` writes with
    non-temporal stores: a compiled ``mmnm._ext`` for x86-64 (elsewhere it
    is a plain copy, which gains nothing)."""
    ext = load_ext()
    return ext is not None and bool(getattr(ext, 'has_stream_stores', False))


def sr_ste_sgd_step_(param: Tensor,
                     grad: Tensor,
                     mask: Tensor,
                     momentum_buffer: Optional[Tensor],
                     lambda_w: float,
                     lr: float,
                     momentum: float = 0.0,
                     dampening: float = 0.0,
                     weight_decay: float = 0.0,
                     nesterov: bool = False,
                     maximize: bool = False,
                     remask: Optional['MaskedWeightBuffer'] = None,
                     stream_remask: bool = False,
                     checked: bool = False) -> Optional[Tensor]:
    """One ``torch.optim.SGD`` step of ``param`` on the SR-STE gradient
    ``grad + lambda_w * (1 - mask) * param``, in place.

    Where :func:`fused_sgd_step_unavailable` says so, a single pass over
    memory in ``mmnm._ext`` that reads the mask instead of writing the
    term into ``grad`` first (``grad`` is left unchanged); elsewhere the
    same update in PyTorch ops. The arguments after ``lr`` are those of
    ``torch.optim.SGD`` and mean the same.

    Args:
        param (Tensor): the weight, updated in place.
        grad (Tensor): its gradient, without the SR-STE term.
        mask (Tensor): the bool N:M mask of ``param`` (True: kept).
        momentum_buffer (Tensor, optional): the optimizer's momentum buffer
            of ``param``, updated in place; ``None`` on the first step.
        lambda_w (float): the SR-STE decay of the pruned weights.
        lr (float): learning rate.
        remask (MaskedWeightBuffer, optional): a buffer of ``param``
            whose mask and masked weight the compiled kernel recomputes
            from the updated ``param`` in the same pass, while the values
            are in cache (its ``version`` then says they are current);
            ignored on the PyTorch path and where
            :meth:`~MaskedWeightBuffer.kernel_outputs` declines. It may
            hold ``mask`` itself: each value's old mask entry is read
            before its new one is written.
        stream_remask (bool): write ``remask``'s mask and masked weight
            with non-temporal stores, past the caches, which saves
            reading their memory in first: for training whose masked
            weights together exceed the last-level cache (see
            :func:`~mmnm.ops.last_level_cache_bytes`), where the next
            forward would find them evicted anyway; in a smaller one they
            stay in cache for it. Defaults to False.
        checked (bool): :func:`fused_sgd_step_unavailable` has just
            returned ``None`` for these tensors (the SR-STE optim wrapper
            asks before it steps, to log which weights are fused): run the
            compiled kernel without asking again. The kernel still checks
            its arguments, raising ``RuntimeError`` before it writes
            anything. Defaults to False.

    Returns:
        Tensor or None: the momentum buffer (new on the first step), or
        ``None`` without momentum.
    """
    init = momentum != 0 and momentum_buffer is None
    if init:
        momentum_buffer = torch.empty_like(param)
    if checked or fused_sgd_step_unavailable(param, grad, mask,
                                             momentum_buffer) is None:
        buffer = momentum_buffer if momentum != 0 else param.new_empty(0)
        outputs = None if remask is None else remask.kernel_outputs(param)
        finite = load_ext().sr_ste_sgd_step_(
            param, grad, mask, buffer, float(lambda_w), float(lr),
            float(momentum), float(dampening), float(weight_decay),
            bool(nesterov), bool(maximize), init,
            *(outputs or (None, None, 0, 0, 0)), bool(stream_remask))
        # the kernel writes through the data pointer: tell autograd (and
        # the mask caches) that param changed, as param.add_ would
        torch.autograd.graph.increment_version(param)
        if outputs is not None:
            remask.written_by_kernel(finite)
    else:
        _sr_ste_sgd_step_torch(param, grad, mask, momentum_buffer, init,
                               lambda_w, lr, momentum, dampening, weight_decay,
                               nesterov, maximize)
    return momentum_buffer if momentum != 0 else None


@torch.no_grad()
def _sr_ste_sgd_step_torch(param: Tensor, grad: Tensor, mask: Tensor,
                           momentum_buffer: Optional[Tensor], init: bool,
                           lambda_w: float, lr: float, momentum: float,
                           dampening: float, weight_decay: float,
                           nesterov: bool, maximize: bool) -> None:
    """:func:`sr_ste_sgd_step_` in PyTorch ops (several passes); the
    momentum buffer is given, set rather than updated if ``init``."""
    step = grad.addcmul(param, mask.logical_not(), value=lambda_w)
    if maximize:
        step.neg_()
    if weight_decay != 0:
        step.add_(param, alpha=weight_decay)
    if momentum != 0:
        if init:
            momentum_buffer.copy_(step)
        else:
            momentum_buffer.mul_(momentum).add_(step, alpha=1 - dampening)
        step = step.add_(momentum_buffer, alpha=momentum) if nesterov \
            else momentum_buffer
    param.add_(step, alpha=-lr)
