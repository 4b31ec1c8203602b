"""What every N:M sparse layer shares: its pattern, its current mask and
the straight-through masked weight."""
import weakref
from typing import ContextManager, Iterable, List, Optional, Tuple

import torch
from torch import Tensor, nn

from mmnm.ops import (MaskedWeightBuffer, nm_mask, reduction_size,
                      straight_through)
from mmnm.ops.straight_through import is_compiling
from mmnm.pattern import NMPattern
from .weight_updates import weight_stamp

#: The constructor arguments, besides ``bias``, that rebuild a conv's or a
#: linear layer's configuration (those of ``nn.Conv2d`` / ``nn.Linear``).
CONV2D_ARGS = ('in_channels', 'out_channels', 'kernel_size', 'stride',
               'padding', 'dilation', 'groups', 'padding_mode')
LINEAR_ARGS = ('in_features', 'out_features')


def layer_args(module: nn.Module) -> dict:
    """The ``nn.Conv2d`` / ``nn.Linear`` constructor arguments of
    ``module``'s configuration, ``bias`` as a flag: what builds an
    equivalent layer of another type (sparse, plain, 2:4)."""
    names = CONV2D_ARGS if hasattr(module, 'in_channels') else LINEAR_ARGS
    args = {name: getattr(module, name) for name in names}
    args['bias'] = module.bias is not None
    return args


def gemm_weight(module: nn.Module) -> Optional[Tensor]:
    """The weight that ``module``'s GEMM or convolution multiplies by:
    ``weight``, or the packed ``in_proj_weight`` of a multi-head
    attention (``None`` where its q/k/v projections are separate)."""
    if isinstance(module, nn.MultiheadAttention):
        return module.in_proj_weight
    return module.weight


def gemm_weight_shape(module: nn.Module) -> Tuple[int, ...]:
    """The shape of :func:`gemm_weight`; for separate q/k/v projections
    ``(E, E + kdim + vdim)``, their weights side by side."""
    weight = gemm_weight(module)
    if weight is not None:
        return tuple(weight.shape)
    return (module.embed_dim, module.embed_dim + module.kdim + module.vdim)


def ineligibility(module: nn.Module,
                  m: int,
                  orientation: str = 'channel') -> Optional[str]:
    """Why ``module`` cannot be made N:M sparse with group size ``m``, or
    ``None`` when it can."""
    if getattr(module, 'groups', 1) != 1:
        return (f'grouped conv (groups={module.groups}): no sparse kernels '
                'for grouped/depthwise convs')
    weight = gemm_weight(module)
    if weight is None:
        return ('separate q/k/v projection weights (kdim/vdim differ from '
                'embed_dim): only the packed in_proj_weight is masked')
    size = reduction_size(weight.shape, orientation)
    if size % m:
        return f'reduction size {size} not divisible by M={m}'
    return None


#: Every N:M sparse layer alive in this process, so that an optim wrapper
#: can find the layers of its parameters without being handed the model.
_LIVE_LAYERS: 'weakref.WeakSet[NMSparseMixin]' = weakref.WeakSet()


def sparse_layers_of(params: Iterable[Tensor]) -> List['NMSparseMixin']:
    """The live N:M sparse layers whose ``weight`` is one of ``params``, in
    the order of ``params``."""
    by_weight = {id(layer.weight): layer for layer in list(_LIVE_LAYERS)}
    layers, seen = [], set()
    for param in params:
        layer = by_weight.get(id(param))
        if layer is not None and id(layer) not in seen:
            seen.add(id(layer))
            layers.append(layer)
    return layers


def retyped(module: nn.Module, cls: type) -> nn.Module:
    """A module of class ``cls`` holding ``module``'s state: the same
    parameters, buffers, submodules and hooks (the containers copied, their
    contents shared). Swaps a layer for its sparse or plain counterpart
    without knowing its constructor."""
    new = cls.__new__(cls)
    new.__dict__.update({
        key:
        type(value)(value) if isinstance(value, dict) else value
        for key, value in module.__dict__.items()
    })
    return new


class substituted:
    """Within the block, ``module``'s parameter ``key`` reads as
    ``tensor``: the plain forward of a layer then runs on the masked
    weight, whatever it does with it (padding, deformable sampling, weight
    normalisation, attention).

    A class rather than a ``contextlib.contextmanager`` generator: every
    sparse forward enters one, and a generator's set-up costs several times
    more.
    """

    __slots__ = ('_params', '_key', '_tensor', '_original')

    def __init__(self, module: nn.Module, key: str, tensor: Tensor) -> None:
        self._params = module._parameters
        self._key = key
        self._tensor = tensor
        self._original = None

    def __enter__(self) -> None:
        if self._original is not None:
            raise RuntimeError('substituted() is not reentrant: make one '
                               'per with-block')
        self._original = self._params[self._key]
        self._params[self._key] = self._tensor

    def __exit__(self, *exc_info) -> None:
        self._params[self._key] = self._original
        self._original = None


class NMSparseMixin:
    """N:M masking for a layer with a ``weight`` parameter.

    The dense ``weight`` stays the trained parameter (same state_dict keys as
    the dense layer). Forward passes use ``weight * mask``, the mask holding
    the N largest magnitudes of each group of the current weight. Mask and
    masked weight are computed once per weight update (optimizer step,
    checkpoint load, ...; see :mod:`mmnm.layers.weight_updates`) and reused
    by the forwards in between (gradient accumulation, evaluation); the
    SR-STE wrapper's fused SGD step computes them with the weight's update
    (:meth:`mask_buffer_for_step`, :meth:`take_mask_of_step`), so that the
    next forward computes none. :attr:`mask` is the mask of the last
    forward, read by the SR-STE optim wrapper and the sparsity hook. Mask
    and masked weight live in buffers that later updates rewrite in place
    (two of them, taking turns, where the fused step computes the masks):
    ``layer.mask.clone()`` keeps one.

    A sparse layer is its plain layer type (:attr:`plain_type`) with
    N:M masking: built like it plus ``n``, ``m``, ``orientation`` and
    ``name`` (so ``conv_cfg=dict(type='SparseConv', n=2, m=4)`` works), and
    its forward is the plain forward run on the masked weight.

    Attributes:
        nm (NMPattern): the pattern and its orientation.
        nm_name (str, optional): the layer's name in its model, for messages.
        sparse_enabled (bool): ``False`` runs the dense weight (dense warm-up).
        mask_frozen (bool): keep the current mask instead of recomputing it.
        defer_finite_check (bool, optional): whether a mask computed in a
            forward with autograd on leaves its NaN/Inf check pending for
            the optimizer step (:func:`~mmnm.ops.check_deferred_masks`,
            which the SR-STE optim wrapper makes for all its layers with
            one wait) instead of waiting for the mask kernel on a GPU;
            ``None``: for weights on a GPU. Set by the SR-STE optim wrapper
            (its ``defer_finite_checks``); ``False`` until then.
    """

    weight: nn.Parameter

    #: the plain layer type this layer masks (``nn.Conv2d``, ...)
    plain_type: type
    #: the name of the masked parameter (state_dict key suffix)
    weight_key: str = 'weight'
    #: whether the plain forward takes only a contiguous weight (mmcv's
    #: deformable convs): the masked weight is then contiguous whatever
    #: the weight's layout (see ``MaskedWeightBuffer``'s ``keep_layout``)
    contiguous_masked_weight: bool = False
    #: the mask cache and its empty values, rebuilt by the next forward
    #: (copies and pickles leave it out): the masked weight, the stamp it
    #: was computed under, its buffer, the buffer a fused optimizer step
    #: writes the next mask into, whether the stamp is that mask's (the
    #: next forward swaps the two buffers), and the straight-through
    #: weight made for the next forward with what it was made for
    #: (:meth:`prepare_forward`)
    _MASK_CACHE = dict(
        _masked=None,
        _mask_stamp=None,
        _mask_buffer=None,
        _step_buffer=None,
        _step_mask_taken=False,
        _ste=None,
        _ste_made_for=None)
    #: the attributes :meth:`init_sparsity` sets (dropped by ``to_dense``)
    SPARSITY_STATE = ('nm', 'nm_name', 'sparse_enabled', 'mask_frozen',
                      'defer_finite_check', 'mask') + tuple(_MASK_CACHE)
    #: plain attributes (never parameters, buffers or submodules), set at
    #: every forward and optimizer step: stored without the checks of
    #: ``nn.Module.__setattr__`` (microseconds each)
    _PLAIN_STATE = frozenset(SPARSITY_STATE)

    def __init__(self,
                 *args,
                 n: int = 2,
                 m: int = 4,
                 orientation: str = 'channel',
                 name: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_sparsity(n, m, orientation, name)

    def __setattr__(self, name: str, value) -> None:
        if name in self._PLAIN_STATE:
            self.__dict__[name] = value
        else:
            super().__setattr__(name, value)

    def forward(self, *args, **kwargs):
        """The plain layer's forward on the masked weight (straight-through
        gradient to the dense one)."""
        with self.masked_parameters():
            return self.plain_type.forward(self, *args, **kwargs)

    def masked_parameters(self) -> ContextManager:
        """Within the block, the layer's weight reads as its masked
        weight."""
        return substituted(self, self.weight_key, self.ste_weight())

    def init_sparsity(self,
                      n: int,
                      m: int,
                      orientation: str = 'channel',
                      name: Optional[str] = None) -> None:
        """Set the pattern; raises ``ValueError`` naming the layer if the
        weight cannot be grouped."""
        self.nm_name = name
        try:
            self.nm = NMPattern(n, m, orientation)
        except (TypeError, ValueError) as err:
            raise type(err)(f'{self.describe()}: {err}') from None
        reason = ineligibility(self, m, orientation)
        if reason is not None:
            raise ValueError(f'{self.describe()} cannot be {self.nm} sparse: '
                             f'{reason}')
        self.sparse_enabled = True
        self.mask_frozen = False
        self.defer_finite_check: Optional[bool] = False
        self.mask: Optional[Tensor] = None
        self.__dict__.update(self._MASK_CACHE)
        _LIVE_LAYERS.add(self)

    def __getstate__(self) -> dict:
        """Copies and pickles (``copy.deepcopy``, ``torch.save(model)``)
        leave out the mask cache (:meth:`__setstate__` drops it anyway)
        and the deferral of NaN/Inf checks."""
        state = self.__dict__.copy()
        if 'nm' in state:
            state.update(self._MASK_CACHE)
            # no optimizer steps a copy until a wrapper binds it (an EMA or
            # teacher copy would otherwise defer checks nothing makes)
            state['defer_finite_check'] = False
        return state

    def __setstate__(self, state: dict) -> None:
        """A copy (``copy.deepcopy``, unpickling) is a live layer of its
        own, with its own mask cache (rebuilt on its first forward)."""
        super().__setstate__(state)
        if 'nm' in state:
            self.__dict__.update(self._MASK_CACHE)
            # (pickled before mmnm had the setting)
            self.__dict__.setdefault('defer_finite_check', False)
            _LIVE_LAYERS.add(self)

    @classmethod
    def from_dense(cls,
                   dense: nn.Module,
                   n: int,
                   m: int,
                   orientation: str = 'channel',
                   name: Optional[str] = None) -> 'NMSparseMixin':
        """An N:M layer sharing ``dense``'s parameters, buffers and
        submodules (not copies) and mode: the optimizer and any wrapper
        built on them keep working."""
        sparse = retyped(dense, cls)
        sparse.init_sparsity(n, m, orientation, name)
        return sparse

    def describe(self) -> str:
        """The layer's model name, or its type and shape."""
        if getattr(self, 'nm_name', None):
            return f'layer {self.nm_name!r}'
        return (f'{type(self).__name__} with weight shape '
                f'{tuple(self.weight.shape)}')

    def update_mask(self) -> Tensor:
        """The mask of the current weight (computed if it may have changed
        since the last one), or the frozen mask."""
        return self._current_mask()[0]

    def invalidate_mask(self) -> None:
        """Recompute the mask at the next forward (see
        :mod:`mmnm.layers.weight_updates` for when this is needed)."""
        self._mask_stamp = None

    def _current_mask(self) -> Tuple[Tensor, Tensor]:
        """The mask and the masked weight, both detached: cached, and
        recomputed only when :func:`weight_stamp` says the weight may have
        changed (or :attr:`nm` was set to another pattern), so that gradient
        accumulation and evaluation compute one mask per weight update. The
        cache holds one masked copy of the weight, rewritten in place (a
        graph still holding the old values fails loudly at backward)."""
        stamp = (weight_stamp(self.weight), self.nm)
        if stamp == self._mask_stamp and self.mask is not None:
            if self._step_mask_taken:  # computed by the last optimizer step
                self._step_mask_taken = False
                self._mask_buffer, self._step_buffer = \
                    self._step_buffer, self._mask_buffer
                self.mask = self._mask_buffer.mask
                self._masked = self._mask_buffer.masked
            elif self._mask_buffer.check_pending and \
                    not self._defers_check():
                # a training forward deferred the check and no step made
                # it: a forward that does not defer makes it now
                self._mask_buffer.check_finite()
            return self.mask, self._masked
        self._step_mask_taken = False
        buffer = self._mask_buffer
        if not self._serves(buffer):
            buffer = self._mask_buffer = self._new_buffer()
        if self.mask_frozen and self.mask is not None:
            self.mask = self.mask.to(buffer.weight.device)
            self._masked = buffer.apply(self.mask)
        else:
            self.mask, self._masked = buffer.update(self.describe(),
                                                    self._defers_check())
        self._mask_stamp = stamp
        return self.mask, self._masked

    def _defers_check(self) -> bool:
        """Whether the mask computed now leaves its NaN/Inf check pending
        (see :attr:`defer_finite_check`): only with autograd on, in a
        training forward that an optimizer step follows; evaluation checks
        at once."""
        defer = self.defer_finite_check
        if defer is False or not torch.is_grad_enabled():
            return False
        return self.weight.is_cuda if defer is None else True

    def _serves(self, buffer: Optional[MaskedWeightBuffer]) -> bool:
        """Whether ``buffer`` is one of the current weight and pattern."""
        nm = self.nm
        return buffer is not None and \
            buffer.serves(self.weight, (nm.n, nm.m, nm.orientation))

    def _new_buffer(self) -> MaskedWeightBuffer:
        nm = self.nm
        return MaskedWeightBuffer(
            self.weight,
            nm.n,
            nm.m,
            nm.orientation,
            self.describe(),
            keep_layout=not self.contiguous_masked_weight)

    def mask_buffer_for_step(self) -> Optional[MaskedWeightBuffer]:
        """The buffer into which an optimizer step that rewrites the weight
        may compute its next mask (see ``remask`` of
        :func:`~mmnm.ops.sr_ste_sgd_step_`), or ``None`` while the mask is
        disabled, frozen or not yet computed, or where no compiled kernel
        can write it (see :meth:`MaskedWeightBuffer.kernel_outputs`). It is
        a second buffer (made on first use, the weight's size again), so
        that :attr:`mask` stays the mask of the last forward until the next
        one."""
        current = self._mask_buffer
        if current is None or not self.sparse_enabled or self.mask_frozen:
            return None
        spare = self._step_buffer
        if not self._serves(spare):
            if not current.kernel_writable or not self._serves(current):
                return None
            spare = self._step_buffer = self._new_buffer()
        return spare

    def take_mask_of_step(self) -> bool:
        """After an optimizer step that computed the next mask into
        :meth:`mask_buffer_for_step`, make it the cached mask of the current
        weight: the next forward uses it instead of computing one. Takes
        nothing (``False``) unless the buffer holds the mask of the weight's
        values as they are now (same version); call it only when nothing
        has written the weight through ``.data`` since that step."""
        spare = self._step_buffer
        weight = self.weight
        if spare is None or spare.version != weight._version or \
                not self.sparse_enabled or self.mask_frozen or \
                not self._serves(spare):
            return False
        self._mask_stamp = (weight_stamp(weight), self.nm)
        self._step_mask_taken = True
        return True

    def prepare_forward(self) -> None:
        """Take the mask that the last optimizer step computed
        (:meth:`take_mask_of_step`; :attr:`mask` becomes it) and make its
        straight-through weight for the next forward, which takes it if it
        is still current. The SR-STE optim wrapper calls this for all its
        layers in one loop when the forward starts (``optim_context``):
        there it costs several times less than in the forward, where the
        last layer's convolution has just flushed the caches."""
        if self._step_mask_taken and self.sparse_enabled and \
                not is_compiling():
            masked = self._current_mask()[1]  # swaps the buffers in
            self._ste = straight_through(self.weight, masked)
            self._ste_made_for = self._straight_through_key(masked)

    def discard_prepared(self) -> None:
        """Drop what :meth:`prepare_forward` made and no forward took: it
        holds the weight's autograd node, and with it the parameter (which
        the garbage collector then cannot look into)."""
        self._ste = None

    @property
    def nm_state(self) -> str:
        """``'dense'`` (sparsity disabled), ``'frozen'`` (fixed mask) or
        ``'sparse'`` (mask recomputed from the weight)."""
        if not self.sparse_enabled:
            return 'dense'
        return 'frozen' if self.mask_frozen and self.mask is not None \
            else 'sparse'

    @torch.no_grad()
    def mask_for(self, weight: Tensor) -> Optional[Tensor]:
        """The mask a forward pass would apply if ``weight`` (e.g. a copy
        of this layer's weight, or an EMA average of it) were the layer's
        weight: the frozen mask, the N:M mask of ``weight``, or ``None``
        while sparsity is disabled. Does not touch :attr:`mask`."""
        state = self.nm_state
        if state == 'dense':
            return None
        if state == 'frozen':
            return self.mask.to(weight.device)
        nm = self.nm
        return nm_mask(weight, nm.n, nm.m, nm.orientation, self.describe())

    def ste_weight(self) -> Tensor:
        """The weight a forward pass uses: masked, with a straight-through
        gradient; the dense weight while sparsity is disabled."""
        if not self.sparse_enabled:
            self.mask = None
            return self.weight
        return self._straight_through_of(self._current_mask()[1])

    def _straight_through_of(self, masked: Tensor) -> Tensor:
        """``straight_through(weight, masked)``: the one
        :meth:`prepare_forward` made if it is of the same weight tensor,
        masked weight (same tensor and version), grad mode and
        ``weight.requires_grad``, else a new one. Taken once: kept, it would
        hold the weight's autograd node (and the parameter with it) past
        the iteration."""
        ste = self._ste
        if ste is not None:  # (no write of the attribute otherwise)
            self._ste = None
            if not masked.is_inference() and not is_compiling() and \
                    self._straight_through_key(masked) == self._ste_made_for:
                return ste
        return straight_through(self.weight, masked)

    def _straight_through_key(self, masked: Tensor) -> tuple:
        """What a straight-through weight of ``masked`` depends on: the
        masked weight's tensor and version, the weight's tensor (its
        ``_cdata`` changes with ``torch.utils.swap_tensors``, its ``id``
        does not), grad mode and whether the weight requires a
        gradient."""
        weight = self.weight
        return (id(masked), masked._version, weight._cdata,
                torch.is_grad_enabled(), weight.requires_grad)

    @torch.no_grad()
    def freeze_mask(self) -> None:
        """Fix the current mask and zero the pruned weights (fixed-mask
        fine-tuning). The mask stays recoverable from the weight alone."""
        self.sparse_enabled = True
        self.weight.mul_(self.update_mask())
        self.mask_frozen = True

    def set_frozen_mask(self, mask: Tensor) -> None:
        """Fix ``mask`` (e.g. restored from a checkpoint) as the layer's
        mask."""
        if mask.shape != self.weight.shape:
            raise ValueError(f'{self.describe()}: frozen mask of shape '
                             f'{tuple(mask.shape)} for a weight of shape '
                             f'{tuple(self.weight.shape)}')
        self.mask = mask.to(device=self.weight.device, dtype=torch.bool)
        self.mask_frozen = True
        self.invalidate_mask()

    @torch.no_grad()
    def apply_mask_(self) -> None:
        """Zero the pruned weights in place."""
        if self.mask is not None:
            self.weight.mul_(self.mask)

    @torch.no_grad()
    def masked_weight(self) -> Tensor:
        """The weight that inference uses: masked, or dense if disabled."""
        if not self.sparse_enabled:
            return self.weight.detach().clone()
        return self._current_mask()[1].clone()

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.invalidate_mask()
        super()._load_from_state_dict(*args, **kwargs)

    def to_dense(self) -> nn.Module:
        """The plain layer (:attr:`plain_type`) computing what this layer
        computes now: a copy of its masked weight, everything else shared;
        the inverse of ``from_dense``."""
        weight = nn.Parameter(
            self.masked_weight(), requires_grad=self.weight.requires_grad)
        plain = retyped(self, self.plain_type)
        plain._parameters[self.weight_key] = weight
        for key in self.SPARSITY_STATE:
            plain.__dict__.pop(key, None)
        return plain

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, nm={self.nm}, ' \
               f'orientation={self.nm.orientation}'
