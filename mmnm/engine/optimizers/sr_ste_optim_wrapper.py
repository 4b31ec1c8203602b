"""SR-STE optim wrappers: the sparse-refined gradient term of Zhou et al.
(ICLR 2021) and the N:M schedule, on top of mmengine's optim wrappers."""
from contextlib import contextmanager
from typing import List, Optional

import torch
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from mmnm.conversion import find_sparse_layers
from mmnm.layers import NMSparseMixin
from mmnm.ops import add_sr_ste_term_
from mmnm.registry import OPTIM_WRAPPERS


class SRSTEMixin:
    """Adds ``lambda_w * (1 - mask) * W`` to every sparse weight's gradient
    once per optimizer step, on the unscaled gradient and before clipping,
    and runs the N:M schedule.

    The wrapper finds the sparse layers in the model that mmengine passes to
    :meth:`optim_context` on every training iteration.

    Args:
        lambda_w (float): SR-STE decay of the pruned weights; 0 gives plain
            STE. Defaults to 2e-4, the reference code's value.
        sparse_start_iter (int): iterations trained dense before the masks
            switch on. Defaults to 0 (sparse from scratch).
        freeze_mask_iter (int, optional): from this iteration the masks stay
            fixed and the pruned weights at zero (fixed-mask fine-tuning as
            in NVIDIA ASP). Defaults to None (masks follow the weights).
    """

    def __init__(self,
                 *args,
                 lambda_w: float = 2e-4,
                 sparse_start_iter: int = 0,
                 freeze_mask_iter: Optional[int] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if lambda_w < 0:
            raise ValueError(f'lambda_w must be >= 0, got {lambda_w}')
        if sparse_start_iter < 0:
            raise ValueError('sparse_start_iter must be >= 0, got '
                             f'{sparse_start_iter}')
        if freeze_mask_iter is not None and \
                freeze_mask_iter < sparse_start_iter:
            raise ValueError(f'freeze_mask_iter ({freeze_mask_iter}) comes '
                             f'before sparse_start_iter ({sparse_start_iter})')
        self.lambda_w = lambda_w
        self.sparse_start_iter = sparse_start_iter
        self.freeze_mask_iter = freeze_mask_iter
        self.sparse_layers: List[NMSparseMixin] = []
        self._bound_model: Optional[int] = None

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Bind the model's sparse layers and set their schedule state for
        the coming forward pass."""
        if self._bound_model != id(model):
            self.bind(model)
        self._apply_schedule()
        with super().optim_context(model):
            yield

    def bind(self, model: nn.Module) -> None:
        """Use the sparse layers of ``model``."""
        self.sparse_layers = find_sparse_layers(model)
        if not self.sparse_layers:
            raise RuntimeError(
                f'{type(self).__name__}: {type(model).__name__} has no N:M '
                "sparse layer. Add dict(type='NMSparsityHook', "
                "sparsity=dict(pattern='2:4')) to custom_hooks, or build "
                "layers with conv_cfg=dict(type='SparseConv').")
        self._bound_model = id(model)

    def _apply_schedule(self) -> None:
        if self._inner_count % self._accumulative_counts:
            return  # never switch inside a gradient accumulation window
        step = self._inner_count
        sparse = step >= self.sparse_start_iter
        frozen = self.freeze_mask_iter is not None and \
            step >= self.freeze_mask_iter
        for layer in self.sparse_layers:
            layer.sparse_enabled = sparse
            if frozen and not layer.mask_frozen:
                layer.freeze_mask()

    @torch.no_grad()
    def add_sr_ste_term(self) -> None:
        """``grad += lambda_w * (1 - mask) * W`` for every sparse weight
        whose mask is active."""
        if self.lambda_w == 0:
            return
        for layer in self.sparse_layers:
            weight, mask = layer.weight, layer.mask
            if mask is None or weight.grad is None:
                continue
            add_sr_ste_term_(weight.grad, weight, mask, self.lambda_w)

    def _after_step(self) -> None:
        """Keep the pruned weights of frozen masks at zero."""
        for layer in self.sparse_layers:
            if layer.mask_frozen:
                layer.apply_mask_()


@OPTIM_WRAPPERS.register_module()
class SRSTEOptimWrapper(SRSTEMixin, OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` with SR-STE.

    Example:
        >>> optim_wrapper = dict(
        >>>     type='SRSTEOptimWrapper', lambda_w=2e-4,
        >>>     optimizer=dict(type='SGD', lr=0.02, momentum=0.9))
    """

    def step(self, **kwargs) -> None:
        self.add_sr_ste_term()
        super().step(**kwargs)
        self._after_step()


@OPTIM_WRAPPERS.register_module()
class AmpSRSTEOptimWrapper(SRSTEMixin, AmpOptimWrapper):
    """:class:`~mmengine.optim.AmpOptimWrapper` with SR-STE: the gradients
    are unscaled before the SR-STE term is added, so the term does not
    depend on the loss scale."""

    def step(self, **kwargs) -> None:
        self.loss_scaler.unscale_(self.optimizer)
        self.add_sr_ste_term()
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)
        self._after_step()


#: The AMP counterpart of each optim wrapper type, for ``--amp``.
AMP_OPTIM_WRAPPERS = {
    'OptimWrapper': 'AmpOptimWrapper',
    'AmpOptimWrapper': 'AmpOptimWrapper',
    'SRSTEOptimWrapper': 'AmpSRSTEOptimWrapper',
    'AmpSRSTEOptimWrapper': 'AmpSRSTEOptimWrapper',
}


def enable_amp(optim_wrapper: dict) -> dict:
    """Switch an ``optim_wrapper`` config to its AMP counterpart in place
    (dynamic loss scale unless one is set); mmdet's own ``--amp`` accepts
    only ``OptimWrapper``."""
    kind = optim_wrapper.get('type', 'OptimWrapper')
    if kind not in AMP_OPTIM_WRAPPERS:
        raise ValueError(f'--amp: no AMP counterpart for optim_wrapper type '
                         f'{kind!r}; known: {sorted(AMP_OPTIM_WRAPPERS)}')
    optim_wrapper['type'] = AMP_OPTIM_WRAPPERS[kind]
    optim_wrapper.setdefault('loss_scale', 'dynamic')
    return optim_wrapper
