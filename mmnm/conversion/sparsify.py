"""Make the eligible Conv2d/Linear layers of any model N:M sparse."""
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Type

from torch import nn

from mmnm.layers import (NMSparseMixin, gemm_weight_shape, ineligibility,
                         no_counterpart_reason, sparse_counterpart,
                         weight_reader)
from mmnm.pattern import NMPattern, PatternLike
from .surgery import first_match, parents, replace_layers, weighted_layers


@dataclass
class LayerDecision:
    """What happened to one weighted layer, and why."""

    name: str
    type: str
    shape: Tuple[int, ...]
    pattern: Optional[NMPattern]
    note: str

    @property
    def numel(self) -> int:
        count = 1
        for size in self.shape:
            count *= size
        return count

    @property
    def zeros(self) -> int:
        """Weights that the pattern forces to zero."""
        if self.pattern is None:
            return 0
        return self.numel - self.numel * self.pattern.n // self.pattern.m


@dataclass
class SparsityReport:
    """The decisions of :func:`sparsify_model`, printable as a table."""

    layers: List[LayerDecision]
    total_params: int

    @property
    def sparse_layers(self) -> List[LayerDecision]:
        return [layer for layer in self.layers if layer.pattern is not None]

    @property
    def zero_ratio(self) -> float:
        """Share of all weighted layers' weights that are zero."""
        numel = sum(layer.numel for layer in self.layers)
        return sum(layer.zeros for layer in self.layers) / max(numel, 1)

    def table(self) -> str:
        """One row per layer, then a summary line."""
        header = ('layer', 'type', 'weight shape', 'N:M', 'note')
        rows = [(layer.name, layer.type, 'x'.join(map(str, layer.shape)),
                 str(layer.pattern) if layer.pattern else 'dense', layer.note)
                for layer in self.layers]
        widths = [
            max(len(row[col]) for row in rows + [header])
            for col in range(len(header))
        ]

        def line(cells: Sequence[str]) -> str:
            return '  '.join(
                cell.ljust(width) for cell, width in zip(cells, widths))

        return '\n'.join(
            [line(header), line(['-' * w for w in widths])] +
            [line(row) for row in rows] + [self.summary()])

    def summary(self) -> str:
        """The line under the table."""
        zeros = sum(layer.zeros for layer in self.layers)
        return (
            f'{len(self.sparse_layers)}/{len(self.layers)} weighted layers '
            f'N:M sparse; {zeros}/{sum(d.numel for d in self.layers)} of '
            'their '
            f'weights zero ({100 * self.zero_ratio:.2f}%), '
            f'{100 * zeros / max(self.total_params, 1):.2f}% of all '
            f'{self.total_params} model parameters')


def sparsify_model(model: nn.Module,
                   pattern: PatternLike = '2:4',
                   orientation: str = 'channel',
                   include: Sequence[str] = ('*', ),
                   exclude: Sequence[str] = (),
                   overrides: Optional[Mapping[str, PatternLike]] = None,
                   hardware_shapes_only: bool = False) -> SparsityReport:
    """Replace the eligible layers of ``model`` in place by N:M layers
    that share their parameters (``nn.Conv2d`` -> :class:`SparseConv`,
    ``nn.Linear`` -> :class:`SparseLinear`, ``nn.MultiheadAttention`` ->
    :class:`SparseMultiheadAttention`, mmcv's deformable and
    adaptive-padding convs; see :data:`mmnm.layers.SPARSE_COUNTERPARTS`).
    Every other weighted layer stays dense, its reason in the report.

    Every layer is decided first and the model changed only when all
    decisions stand, so an error leaves ``model`` as it was. Layer names are
    matched with shell-style globs (``fnmatch``), e.g.
    ``'backbone.layer1.*'``.

    Args:
        pattern: default N:M pattern, ``'2:4'`` or ``dict(n=2, m=4)``.
        orientation: ``'channel'`` (hardware) or ``'flat'`` (see
            :mod:`mmnm.pattern`).
        include: layers to consider; ineligible ones stay dense with the
            reason in the report (e.g. the 3-channel stem conv).
        exclude: layers kept dense, e.g. the final classifier.
        overrides: ``{glob: pattern}``; a matched layer gets that pattern
            even if excluded, and an error if it cannot take it.
        hardware_shapes_only: also keep layers dense whose shapes NVIDIA ASP
            skips (out % 8 or in % 16 non-zero).

    Raises:
        ValueError: a glob matches no weighted layer, or an override names
            a layer that cannot take its pattern (every such layer named).
    """
    default = NMPattern.parse(pattern, orientation)
    forced = {
        glob: NMPattern.parse(spec, orientation)
        for glob, spec in (overrides or {}).items()
    }
    include, exclude = list(include), list(exclude)
    globs = dict(include=include, exclude=exclude, overrides=list(forced))
    layers = weighted_layers(model, 'sparsify_model', globs, 'sparsity')

    held_by = parents(model)
    planned: Dict[nn.Module, _LayerPlan] = {}
    plans = []
    for name, module in layers:
        plan = _plan(name, module, default, include, exclude, forced,
                     hardware_shapes_only)
        reader = weight_reader(module, held_by.get(module))
        if reader is not None and plan.new_type is not None:
            masked_by_reader = isinstance(reader, NMSparseMixin) or (
                reader in planned and planned[reader].new_type is not None)
            plan = _read_by_parent(name, module, plan, masked_by_reader)
        planned[module] = plan
        plans.append(plan)
    errors = [plan.error for plan in plans if plan.error]
    if errors:
        raise ValueError('\n'.join(errors))
    # built only now: a new N:M layer registers itself for the optim
    # wrappers (sparse_layers_of), so none may exist for a failed plan
    replace_layers(
        model, {
            module:
            plan.new_type.from_dense(module, plan.decision.pattern.n,
                                     plan.decision.pattern.m,
                                     plan.decision.pattern.orientation, name)
            for (name, module), plan in zip(layers, plans)
            if plan.new_type is not None
        })
    for (name, module), plan in zip(layers, plans):
        if not isinstance(module, NMSparseMixin):
            continue
        if plan.decision.pattern != module.nm:  # built sparse, overridden
            nm = plan.decision.pattern
            module.init_sparsity(nm.n, nm.m, nm.orientation, name)
        module.nm_name = name
    total = sum(p.numel() for p in model.parameters())
    return SparsityReport([plan.decision for plan in plans], total)


@dataclass
class _LayerPlan:
    """What one layer becomes: its table row, the N:M layer type to put in
    its place (``None``: unchanged) or why the requested change is
    impossible."""

    decision: LayerDecision
    new_type: Optional[Type[NMSparseMixin]] = None
    error: Optional[str] = None


def _plan(name: str, module: nn.Module, default: NMPattern, include: List[str],
          exclude: List[str], forced: Dict[str, NMPattern],
          hardware_shapes_only: bool) -> _LayerPlan:
    """Decide one layer without changing it."""
    shape = gemm_weight_shape(module)

    def row(pattern: Optional[NMPattern],
            note: str,
            type_name: str = type(module).__name__) -> LayerDecision:
        return LayerDecision(name, type_name, shape, pattern, note)

    override = first_match(name, list(forced))
    if isinstance(module, NMSparseMixin):
        if override is None:
            return _LayerPlan(row(module.nm, 'built sparse'))
        pattern, note = forced[override], f'override {override!r}'
        reason = ineligibility(module, pattern.m, pattern.orientation)
        return _LayerPlan(
            row(pattern, note),
            error=reason and f'layer {name!r} cannot be {pattern} sparse as '
            f'{note} asks: {reason}')
    if override is not None:
        pattern, note = forced[override], f'override {override!r}'
    elif first_match(name, exclude) is not None:
        return _LayerPlan(
            row(None, f'excluded by {first_match(name, exclude)!r}'))
    elif first_match(name, include) is None:
        return _LayerPlan(row(None, 'not included'))
    else:
        pattern, note = default, 'default'

    sparse_type = sparse_counterpart(module)
    reason = ineligibility(module, pattern.m, pattern.orientation) \
        if sparse_type else \
        no_counterpart_reason(module)
    if reason is None and hardware_shapes_only:
        out_size, in_size = shape[0], shape[1]
        if out_size % 8 or in_size % 16:
            reason = f'shape {out_size}x{in_size} off the hardware multiples' \
                     ' (out % 8, in % 16)'
    if reason is not None:
        if override is not None:
            return _LayerPlan(
                row(None, reason),
                error=f'layer {name!r} cannot be {pattern} sparse as {note} '
                f'asks: {reason}')
        return _LayerPlan(row(None, reason))
    return _LayerPlan(row(pattern, note, sparse_type.__name__), sparse_type)


def _read_by_parent(name: str, module: nn.Module, plan: _LayerPlan,
                    masked_by_reader: bool) -> _LayerPlan:
    """The plan of a layer whose weight its parent reads (an attention's
    ``out_proj``): N:M only if the parent is or becomes an N:M layer, which
    masks it; otherwise dense, and an error if an override asked for it."""
    if masked_by_reader:
        return plan
    decision = plan.decision
    reason = (f'the attention {name.rpartition(".")[0]!r} that reads this '
              'weight stays dense: make it N:M to mask its out_proj')
    error = None
    if decision.note.startswith('override'):
        error = (f'layer {name!r} cannot be {decision.pattern} sparse as '
                 f'{decision.note} asks: {reason}')
    return _LayerPlan(
        LayerDecision(name,
                      type(module).__name__, decision.shape, None, reason),
        error=error)


def sparse_layer_slots(model: nn.Module) -> Dict[str, NMSparseMixin]:
    """Every name under which ``model`` holds an N:M sparse layer,
    shared layers included (RTMDet's heads share convs across levels, and
    the state_dict holds their weight under each name)."""
    return {
        name: module
        for name, module in model.named_modules(remove_duplicate=False)
        if isinstance(module, NMSparseMixin)
    }


def find_sparse_layers(model: nn.Module) -> List[NMSparseMixin]:
    """The N:M sparse layers of ``model`` (wrapped or not), each named."""
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, NMSparseMixin):
            if not module.nm_name:
                module.nm_name = name[len('module.'):] if name.startswith(
                    'module.') else name
            layers.append(module)
    return layers
