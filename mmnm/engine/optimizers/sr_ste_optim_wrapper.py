"""SR-STE optim wrappers: the sparse-refined gradient term of Zhou et al.
(ICLR 2021) and the N:M schedule, on top of mmengine's optim wrappers."""
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import torch
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import Tensor, nn

from mmnm.conversion import find_sparse_layers
from mmnm.layers import NMSparseMixin, sparse_layers_of
from mmnm.ops import (add_sr_ste_term_, check_deferred_masks,
                      fused_sgd_step_unavailable, last_level_cache_bytes,
                      sr_ste_sgd_step_, stream_stores_available)
from mmnm.registry import OPTIM_WRAPPERS


class FusedStep(NamedTuple):
    """One sparse weight's SGD step with the SR-STE term fused in: what the
    wrapper checked before stepping, and steps with."""
    layer: NMSparseMixin
    weight: Tensor
    grad: Tensor
    mask: Tensor
    group: dict
    momentum_buffer: Optional[Tensor]


#: What an SR-STE run uses where neither the NMSparsityHook nor the optim
#: wrapper sets a value: the reference code's lambda_w, sparse from the
#: first iteration, masks never frozen.
SR_STE_DEFAULTS: Dict[str, Any] = dict(
    lambda_w=2e-4, sparse_start_iter=0, freeze_mask_iter=None)


class SRSTEMixin:
    """Adds ``lambda_w * (1 - mask) * W`` to every sparse weight's gradient
    once per optimizer step, on the unscaled gradient and before clipping,
    and runs the N:M schedule.

    It works whatever drives it: mmengine's Runner, ``update_params`` with
    or without :meth:`optim_context`, ``backward`` + ``step`` by hand, with
    gradient accumulation and AMP. Its sparse layers are those whose weight
    its optimizer updates; they are found on first use (the model mmengine
    passes to :meth:`optim_context`, else every live sparse layer). A
    schedule that starts dense needs to be in place before the first
    forward: use :meth:`optim_context` or call :meth:`bind` before
    training.

    With a ``torch.optim.SGD`` optimizer on CPU, the term is fused into the
    SGD step of each sparse weight (``fused_sgd_step``): one pass over its
    memory instead of one for the term and several for the step, with the
    same update. The weight's ``.grad`` then stays without the term; the
    log says which weights are fused and why the others are not.

    Each setting left ``None`` comes from the run's ``NMSparsityHook``
    (the one place configs set them), else :data:`SR_STE_DEFAULTS`.

    Args:
        lambda_w (float, optional): SR-STE decay of the pruned weights; 0
            gives plain STE. Defaults to None (2e-4, the reference code's).
        sparse_start_iter (int, optional): iterations trained dense before
            the masks switch on. Defaults to None (0: sparse from scratch).
        freeze_mask_iter (int, optional): from this iteration the masks stay
            fixed and the pruned weights at zero (fixed-mask fine-tuning as
            in NVIDIA ASP). Defaults to None (masks follow the weights).
        fused_sgd_step (bool, optional): ``None`` fuses the term into the
            SGD step wherever :meth:`why_not_fused` allows, ``True``
            requires it (an error says what stops it), ``False`` always
            adds the term to ``.grad`` before ``optimizer.step()``.
            Defaults to None.
        stream_next_masks (bool, optional): whether the fused steps write
            the next masks past the caches (see :meth:`streams_next_masks`;
            ``None``: where the masked weights exceed the last-level
            cache). Defaults to None.
        defer_finite_checks (bool, optional): whether the masks that
            training forwards compute leave their NaN/Inf check to this
            wrapper's step, which makes them all with one wait, instead of
            each mask waiting for its kernel (on a GPU, a host sync per
            sparse layer and iteration); a weight holding NaN or Inf then
            raises at the step, before anything is updated, naming its
            layer. ``None``: for weights on a GPU. Applied to the layers
            when the wrapper binds them. Defaults to None.
    """

    #: whether this wrapper's step may fuse the term into the SGD step
    fuses_sgd_step = True

    def __init__(self,
                 *args,
                 lambda_w: Optional[float] = None,
                 sparse_start_iter: Optional[int] = None,
                 freeze_mask_iter: Optional[int] = None,
                 fused_sgd_step: Optional[bool] = None,
                 stream_next_masks: Optional[bool] = None,
                 defer_finite_checks: Optional[bool] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fused_sgd_step = fused_sgd_step
        self.stream_next_masks = stream_next_masks
        self.defer_finite_checks = defer_finite_checks
        self._fusion_report: Optional[str] = None
        self._streaming: Optional[bool] = None  # the choice logged last
        # (stream_next_masks, masked bytes) it was made for
        self._stream_key: Optional[Tuple[Optional[bool], int]] = None
        self._fusion_counts: Optional[Tuple[int, int]] = None
        # id(param) -> (its param group, its index there)
        self._param_positions: Dict[int, Tuple[dict, int]] = {}
        given = dict(
            lambda_w=lambda_w,
            sparse_start_iter=sparse_start_iter,
            freeze_mask_iter=freeze_mask_iter)
        self._given = {k: v for k, v in given.items() if v is not None}
        self._configured_by: Optional[str] = None
        self._runner_driven = False
        # forwards run inside optim_context, which applies the schedule
        self._context_driven = False
        self.sparse_layers: List[NMSparseMixin] = []
        self._bound_model: Optional[int] = None
        self._resolve_settings()

    # ------------------------------------------------------------------
    # settings
    # ------------------------------------------------------------------
    def configure(self, source: str, **settings) -> None:
        """Take ``settings`` (``lambda_w``, ``sparse_start_iter``,
        ``freeze_mask_iter``; ``None`` values ignored) from ``source``, e.g.
        the NMSparsityHook. A value set differently in both places is a
        ``ValueError`` naming both."""
        for key, value in settings.items():
            if key not in SR_STE_DEFAULTS:
                raise TypeError(f'{source}: unknown SR-STE setting {key!r}')
            if value is None:
                continue
            if key in self._given and self._given[key] != value:
                raise ValueError(
                    f'{key} is set twice: {value!r} by {source} and '
                    f'{self._given[key]!r} by optim_wrapper '
                    f'({type(self).__name__}); set it in one place, '
                    f'{source}')
            self._given[key] = value
        self._configured_by = source
        self._resolve_settings()

    def _resolve_settings(self) -> None:
        values = dict(SR_STE_DEFAULTS, **self._given)
        lambda_w = values['lambda_w']
        start = values['sparse_start_iter']
        freeze = values['freeze_mask_iter']
        if lambda_w < 0:
            raise ValueError(f'lambda_w must be >= 0, got {lambda_w}')
        if start < 0:
            raise ValueError(f'sparse_start_iter must be >= 0, got {start}')
        if freeze is not None and freeze < start:
            raise ValueError(f'freeze_mask_iter ({freeze}) comes before '
                             f'sparse_start_iter ({start})')
        self.lambda_w = float(lambda_w)
        self.sparse_start_iter = int(start)
        self.freeze_mask_iter = None if freeze is None else int(freeze)

    def describe_settings(self) -> str:
        """One line for the log: the term and the schedule."""
        text = 'plain STE (lambda_w=0)' if self.lambda_w == 0 else \
            f'SR-STE lambda_w={self.lambda_w:g}'
        if self.sparse_start_iter:
            text += f', dense until iteration {self.sparse_start_iter}'
        if self.freeze_mask_iter is not None:
            text += f', masks frozen from iteration {self.freeze_mask_iter}'
        return text

    # ------------------------------------------------------------------
    # the sparse layers
    # ------------------------------------------------------------------
    def initialize_count_status(self, model: nn.Module, init_counts: int,
                                max_counts: int) -> None:
        """mmengine's runners call this before training starts."""
        super().initialize_count_status(model, init_counts, max_counts)
        self._runner_driven = True

    @contextmanager
    def optim_context(self, model: nn.Module):
        """Bind the model's sparse layers and set their schedule state for
        the coming forward pass (and prepare it: see
        ``NMSparseMixin.prepare_forward``)."""
        if self._bound_model != id(model):
            self.bind(model)
        self._context_driven = True
        self._apply_schedule()
        try:
            for layer in self.sparse_layers:
                layer.prepare_forward()
            with super().optim_context(model):
                yield
        finally:  # what the forward did not take (a layer it did not run)
            for layer in self.sparse_layers:
                layer.discard_prepared()

    def bind(self, model: Optional[nn.Module] = None) -> None:
        """Use the sparse layers (of ``model``, or any live ones) whose
        weights this wrapper's optimizer updates, and set their schedule
        state for the next forward pass."""
        self._bind(model, before_forward=True)

    def _bind(self, model: Optional[nn.Module], before_forward: bool) -> None:
        candidates = find_sparse_layers(model) if model is not None \
            else None
        params = [
            p for group in self.optimizer.param_groups for p in group['params']
        ]
        layers = sparse_layers_of(params)
        if candidates is not None:
            ids = {id(layer) for layer in candidates}
            layers = [layer for layer in layers if id(layer) in ids]
        name = type(self).__name__
        if not layers:
            what = type(model).__name__ if model is not None else \
                'the model being trained'
            raise RuntimeError(
                f'{name}: {what} has no N:M sparse layer whose weight this '
                "optimizer updates. Add dict(type='NMSparsityHook', "
                "sparsity=dict(pattern='2:4')) to the config (default_hooks "
                "or custom_hooks), or build layers with "
                "conv_cfg=dict(type='SparseConv').")
        if self._runner_driven and self._configured_by is None:
            raise RuntimeError(
                f'{name} trains in a runner without an NMSparsityHook: its '
                'checkpoints would hold the dense SR-STE weights, so the '
                'stock inference APIs would load a model that was never '
                "trained. Add dict(type='NMSparsityHook') to the config "
                '(with sparsity=dict(...) unless the layers are built '
                'sparse).')
        if 0 < self._max_counts <= max(self.sparse_start_iter,
                                       self.freeze_mask_iter or 0):
            raise ValueError(
                f'{name}: the run ends after {self._max_counts} iterations, '
                f'before its schedule acts (sparse_start_iter='
                f'{self.sparse_start_iter}, freeze_mask_iter='
                f'{self.freeze_mask_iter}): lower them or train longer')
        if not before_forward and self.sparse_start_iter > 0 and \
                any(layer.mask is not None for layer in layers):
            raise RuntimeError(
                f'{name}: the first forward ran N:M sparse, but '
                f'sparse_start_iter={self.sparse_start_iter} asks for dense '
                'iterations first. Run the forward inside '
                'optim_wrapper.optim_context(model), or call '
                'optim_wrapper.bind(model) before training.')
        for layer in layers:
            layer.defer_finite_check = self.defer_finite_checks
        self.sparse_layers = layers
        self._bound_model = id(model) if model is not None else None
        self._apply_schedule()

    def _apply_schedule(self) -> None:
        """Set each layer's state for the next forward pass."""
        if self._inner_count % self._accumulative_counts:
            return  # never switch inside a gradient accumulation window
        step = self._inner_count
        sparse = step >= self.sparse_start_iter
        frozen = self.freeze_mask_iter is not None and \
            step >= self.freeze_mask_iter
        for layer in self.sparse_layers:
            if layer.sparse_enabled != sparse:
                layer.sparse_enabled = sparse
            if frozen and not layer.mask_frozen:
                layer.freeze_mask()

    # ------------------------------------------------------------------
    # the step
    # ------------------------------------------------------------------
    def add_sr_ste_term(self, skip: Tuple[NMSparseMixin, ...] = ()) -> None:
        """``grad += lambda_w * (1 - mask) * W`` for every sparse weight
        whose mask is active (except the layers in ``skip``)."""
        if self.lambda_w == 0:
            return
        skipped = {id(layer) for layer in skip}
        for layer in self.sparse_layers:
            if id(layer) in skipped or layer.weight.grad is None:
                continue
            mask = layer.mask
            if mask is not None:
                add_sr_ste_term_(layer.weight.grad, layer.weight, mask,
                                 self.lambda_w)

    def why_not_fused(self,
                      step_kwargs: Optional[dict] = None) -> Optional[str]:
        """Why no weight's term can be fused into this step's SGD update
        (``None`` if they can, tensor by tensor)."""
        if self.fused_sgd_step is False:
            return 'fused_sgd_step=False'
        if not self.fuses_sgd_step:
            return (f'{type(self).__name__} unscales and checks the '
                    'gradients before the step')
        if type(self.optimizer) is not torch.optim.SGD:
            return (f'the optimizer is {type(self.optimizer).__name__}, '
                    'not torch.optim.SGD')
        if self.clip_grad_kwargs:
            return 'clip_grad is set (clipping must see the term)'
        if step_kwargs:
            return 'step() got arguments (a closure?)'
        return None

    def _fused_layers(self,
                      step_kwargs: Optional[dict] = None) -> List[FusedStep]:
        """The sparse layers whose term this step fuses into the SGD update,
        each with what its step reads (:class:`FusedStep`); logs the choice
        when it changes."""
        blocker = self.why_not_fused(step_kwargs)
        state = self.optimizer.state
        fused, unfused, num_active = [], {}, 0
        for layer in self.sparse_layers:
            mask = layer.mask
            weight = layer.weight
            grad = weight.grad
            if mask is None or grad is None:
                continue
            num_active += 1
            reason = blocker
            if reason is None:
                group = self._param_group_of(weight)
                buffer = state.get(weight, {}).get('momentum_buffer')
                reason = self._why_not_fused_layer(weight, grad, mask, group,
                                                   buffer)
            if reason is None:
                fused.append(
                    FusedStep(layer, weight, grad, mask, group, buffer))
            else:
                unfused.setdefault(reason, []).append(layer.describe())
        if num_active:
            self._report_fusion(len(fused), num_active, unfused)
        return fused

    def _param_group_of(self, weight: Tensor) -> Optional[dict]:
        """The optimizer's param group holding ``weight`` (``None`` if no
        group does), from a map of where each parameter sits, checked at
        every look-up and made again when it no longer holds."""
        groups = self.optimizer.param_groups
        at = self._param_positions.get(id(weight))
        if at is None or not self._still_at(weight, at, groups):
            self._param_positions = {
                id(p): (group, index)
                for group in groups
                for index, p in enumerate(group['params'])
            }
            at = self._param_positions.get(id(weight))
        return None if at is None else at[0]

    @staticmethod
    def _still_at(weight: Tensor, at: Tuple[dict, int],
                  groups: List[dict]) -> bool:
        """Whether ``weight`` still sits at ``at`` (group, index), the
        group still one of ``groups``."""
        group, index = at
        params = group['params']
        return index < len(params) and params[index] is weight and \
            any(g is group for g in groups)

    def _why_not_fused_layer(
            self, weight: Tensor, grad: Tensor, mask: Tensor,
            group: Optional[dict],
            momentum_buffer: Optional[Tensor]) -> Optional[str]:
        """Why ``weight`` (with its ``grad``, ``mask``, param ``group`` and
        ``momentum_buffer``) cannot take the fused step (``None`` if it
        can)."""
        if group is None:
            return "not in the optimizer's param groups"
        if group.get('differentiable'):
            return 'its param group is differentiable'
        return fused_sgd_step_unavailable(weight, grad, mask, momentum_buffer)

    @property
    def fusion_report(self) -> Optional[str]:
        """The last logged line on which weights have the term fused into
        the SGD step (``None`` before the first sparse step)."""
        return self._fusion_report

    def _report_fusion(self, num_fused: int, num_active: int,
                       unfused: Dict[str, List[str]]) -> None:
        if not unfused and self._fusion_counts == (num_fused, num_active):
            return  # the line logged last (built only when it may change)
        self._fusion_counts = None if unfused else (num_fused, num_active)
        name = type(self).__name__
        report = (f'{name}: SR-STE term fused into the SGD step of '
                  f'{num_fused} of {num_active} sparse weights')
        for reason, layers in unfused.items():
            shown = ', '.join(layers[:3]) + \
                (f' and {len(layers) - 3} more' if len(layers) > 3 else '')
            report += (f'; added to .grad before optimizer.step() for '
                       f'{shown}: {reason}')
        if unfused and self.fused_sgd_step:
            raise ValueError(
                f'{report}. fused_sgd_step=True requires every sparse weight '
                'to be fused: fix the above or set fused_sgd_step=None')
        if report != self._fusion_report:
            self._fusion_report = report
            print_log(report, logger='current')

    def streams_next_masks(self) -> bool:
        """Whether the fused steps write the next masks past the caches
        (``stream_remask`` of :func:`~mmnm.ops.sr_ste_sgd_step_`): as
        ``stream_next_masks`` says, else where the masked weights of the
        wrapper's sparse layers together are more than the last-level
        cache holds. Between a layer's step and its next forward, the step
        writes and the forward reads every other masked weight, so then
        none is still in cache when its forward reads it, and a plain store
        would only read its memory in first. Decided again when the
        setting or the masked weights' size changes; logs the choice, and
        why, when it changes."""
        masked = sum(layer.weight.nbytes for layer in self.sparse_layers)
        key = (self.stream_next_masks, masked)
        if key != self._stream_key:
            self._stream_key = key
            stream, why = self._stream_choice(masked)
            if stream != self._streaming:
                where = 'past the caches (non-temporal stores)' if stream \
                    else 'through the caches'
                print_log(
                    f'{type(self).__name__}: the fused SGD steps write the '
                    f'next masks {where}: {why}',
                    logger='current')
            self._streaming = stream
        return self._streaming

    def _stream_choice(self, masked: int) -> Tuple[bool, str]:
        """:meth:`streams_next_masks`'s choice for ``masked`` bytes of
        masked weights, and the reason for it."""
        if not stream_stores_available():
            return False, 'mmnm._ext has no non-temporal stores (not x86-64)'
        if self.stream_next_masks is not None:
            return bool(self.stream_next_masks), \
                f'stream_next_masks={self.stream_next_masks}'
        cache = last_level_cache_bytes()
        if cache is None:
            return False, ('the last-level cache size is unknown (Linux '
                           'sysfs does not describe it); set '
                           'stream_next_masks to choose')
        return masked > cache, (
            f'the masked weights take {masked / 2**20:.1f} MiB together, '
            f'the last-level cache holds {cache / 2**20:.1f} MiB')

    @contextmanager
    def _sgd_step_fused_for(self, steps: List[FusedStep]) -> Iterator[None]:
        """Run ``steps`` (the term fused into each weight's SGD update, its
        next mask computed in the same pass), then hide their gradients
        from the optimizer's own step inside the block; after it, the
        layers take the new masks."""
        hidden = []
        stream = bool(steps) and self.streams_next_masks()
        try:
            for step in steps:
                group = step.group
                weight = step.weight
                buffer = sr_ste_sgd_step_(
                    weight,
                    step.grad,
                    step.mask,
                    step.momentum_buffer,
                    lambda_w=self.lambda_w,
                    lr=float(group['lr']),
                    momentum=group['momentum'],
                    dampening=group['dampening'],
                    weight_decay=group['weight_decay'],
                    nesterov=group['nesterov'],
                    maximize=group.get('maximize', False),
                    remask=step.layer.mask_buffer_for_step(),
                    stream_remask=stream,
                    checked=True)
                # made by this step (without momentum: None, and a buffer of
                # earlier steps stays, as torch.optim.SGD keeps it)
                if buffer is not None and buffer is not step.momentum_buffer:
                    self.optimizer.state[weight]['momentum_buffer'] = buffer
                hidden.append((weight, step.grad))
                weight.grad = None
            yield
            # the optimizer's step skipped these weights (no .grad), so
            # the masks computed with their update are current
            for step in steps:
                step.layer.take_mask_of_step()
        finally:
            for weight, grad in hidden:
                weight.grad = grad

    def _before_step(self,
                     step_kwargs: Optional[dict] = None) -> List[FusedStep]:
        """Find the layers if nothing has yet (no optim_context), make the
        NaN/Inf checks the forward deferred (see ``defer_finite_checks``),
        add the SR-STE term to the gradients it is not fused for, and
        return the fused steps."""
        if not self.sparse_layers:
            self._bind(None, before_forward=False)
        check_deferred_masks()
        fused = self._fused_layers(step_kwargs)
        self.add_sr_ste_term(skip=tuple(step.layer for step in fused))
        return fused

    def _after_step(self) -> None:
        """Keep the pruned weights of frozen masks at zero; without
        optim_context, set the schedule state for the next forward pass."""
        for layer in self.sparse_layers:
            if layer.mask_frozen:
                layer.apply_mask_()
        if not self._context_driven:
            self._apply_schedule()


@OPTIM_WRAPPERS.register_module()
class SRSTEOptimWrapper(SRSTEMixin, OptimWrapper):
    """:class:`~mmengine.optim.OptimWrapper` with SR-STE.

    Example:
        >>> optim_wrapper = dict(
        >>>     type='SRSTEOptimWrapper',
        >>>     optimizer=dict(type='SGD', lr=0.02, momentum=0.9))
    """

    def step(self, **kwargs) -> None:
        fused = self._before_step(kwargs)
        with self._sgd_step_fused_for(fused):
            super().step(**kwargs)
        self._after_step()


@OPTIM_WRAPPERS.register_module()
class AmpSRSTEOptimWrapper(SRSTEMixin, AmpOptimWrapper):
    """:class:`~mmengine.optim.AmpOptimWrapper` with SR-STE: the gradients
    are unscaled before the SR-STE term is added, so the term does not
    depend on the loss scale. The term is not fused into the SGD step: the
    loss scaler decides after unscaling whether the step runs at all."""

    fuses_sgd_step = False

    def step(self, **kwargs) -> None:
        self.loss_scaler.unscale_(self.optimizer)
        self._before_step()
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
