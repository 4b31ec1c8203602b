"""Make the eligible Conv2d/Linear layers of any model N:M sparse."""
import fnmatch
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Type

from mmcv.cnn.bricks import wrappers as mmcv_wrappers
from torch import nn

from mmnm.layers import NMSparseMixin, SparseConv, SparseLinear, ineligibility
from mmnm.pattern import NMPattern, PatternLike

#: Dense layer types and their sparse counterparts. Other subclasses (e.g.
#: weight standardised convs) change the forward pass and are left dense.
#: mmcv's ``Conv2d``/``Linear`` wrappers (mask heads, ...) differ from
#: PyTorch's only for empty inputs on PyTorch < 1.5, below our minimum.
SPARSE_COUNTERPARTS: Dict[Type[nn.Module], Type[NMSparseMixin]] = {
    nn.Conv2d: SparseConv,
    nn.Linear: SparseLinear,
    mmcv_wrappers.Conv2d: SparseConv,
    mmcv_wrappers.Linear: SparseLinear,
}

_WEIGHTED_TYPES = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass
class LayerDecision:
    """What happened to one Conv/Linear layer, and why."""

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
        """Share of all Conv/Linear weights that are zero."""
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
            f'{len(self.sparse_layers)}/{len(self.layers)} Conv/Linear layers '
            f'N:M sparse; {zeros}/{sum(d.numel for d in self.layers)} of '
            'their '
            f'weights zero ({100 * self.zero_ratio:.2f}%), '
            f'{100 * zeros / max(self.total_params, 1):.2f}% of all '
            f'{self.total_params} model parameters')


def _first_match(name: str, patterns: Sequence[str]) -> Optional[str]:
    return next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)


def sparsify_model(model: nn.Module,
                   pattern: PatternLike = '2:4',
                   orientation: str = 'channel',
                   include: Sequence[str] = ('*', ),
                   exclude: Sequence[str] = (),
                   overrides: Optional[Mapping[str, PatternLike]] = None,
                   hardware_shapes_only: bool = False) -> SparsityReport:
    """Replace the eligible ``nn.Conv2d``/``nn.Linear`` layers of ``model``
    in place by :class:`SparseConv`/:class:`SparseLinear` that share their
    parameters.

    Layer names are matched with shell-style globs (``fnmatch``), e.g.
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
        ValueError: a glob matches no Conv/Linear layer, or an override names
            a layer that cannot take its pattern.
    """
    default = NMPattern.parse(pattern, orientation)
    forced = {
        glob: NMPattern.parse(spec, orientation)
        for glob, spec in (overrides or {}).items()
    }
    if isinstance(model, _WEIGHTED_TYPES):
        raise ValueError(
            f'sparsify_model converts the layers inside a model, got a bare '
            f'{type(model).__name__}; use SparseConv.from_dense or '
            'SparseLinear.from_dense for a single layer')
    include, exclude = list(include), list(exclude)
    slots = [(name, module)
             for name, module in model.named_modules(remove_duplicate=False)
             if isinstance(module, _WEIGHTED_TYPES)]
    _check_globs(
        model, [name for name, _ in slots],
        dict(include=include, exclude=exclude, overrides=list(forced)))

    replaced: Dict[int, nn.Module] = {}
    decisions = []
    for name, module in slots:
        if id(module) not in replaced:
            decision, new = _decide(name, module, default, include, exclude,
                                    forced, hardware_shapes_only)
            replaced[id(module)] = new
            decisions.append(decision)
        if replaced[id(module)] is not module:
            parent, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent), child, replaced[id(module)])
    total = sum(p.numel() for p in model.parameters())
    return SparsityReport(decisions, total)


def _check_globs(model: nn.Module, names: List[str],
                 globs: Dict[str, List[str]]) -> None:
    for key, patterns in globs.items():
        for glob in patterns:
            if not any(fnmatch.fnmatchcase(n, glob) for n in names):
                examples = ', '.join(names[:5]) or 'none'
                raise ValueError(
                    f'sparsity {key} pattern {glob!r} matches no Conv/Linear '
                    f'layer of {type(model).__name__} (layers are named like: '
                    f'{examples})')


def _decide(name: str, module: nn.Module, default: NMPattern,
            include: List[str], exclude: List[str], forced: Dict[str,
                                                                 NMPattern],
            hardware_shapes_only: bool) -> Tuple[LayerDecision, nn.Module]:
    """The decision for one layer and the module to put in its place."""
    shape = tuple(module.weight.shape)

    def dense(note: str) -> Tuple[LayerDecision, nn.Module]:
        return LayerDecision(name,
                             type(module).__name__, shape, None, note), module

    override = _first_match(name, list(forced))
    if isinstance(module, NMSparseMixin):
        note = 'built sparse'
        if override is not None:  # validates, raising with the layer name
            pattern = forced[override]
            module.init_sparsity(pattern.n, pattern.m, pattern.orientation,
                                 name)
            note = f'override {override!r}'
        module.nm_name = name
        return LayerDecision(name,
                             type(module).__name__, shape, module.nm,
                             note), module
    if override is not None:
        pattern, note = forced[override], f'override {override!r}'
    elif _first_match(name, exclude) is not None:
        return dense(f'excluded by {_first_match(name, exclude)!r}')
    elif _first_match(name, include) is None:
        return dense('not included')
    else:
        pattern, note = default, 'default'

    sparse_type = SPARSE_COUNTERPARTS.get(type(module))
    reason = ineligibility(module, pattern.m, pattern.orientation) \
        if sparse_type else \
        f'no sparse counterpart for {type(module).__name__}'
    if reason is None and hardware_shapes_only:
        out_size, in_size = shape[0], shape[1]
        if out_size % 8 or in_size % 16:
            reason = f'shape {out_size}x{in_size} off the hardware multiples' \
                     ' (out % 8, in % 16)'
    if reason is not None:
        if override is not None:
            raise ValueError(f'layer {name!r} cannot be {pattern} sparse as '
                             f'{note} asks: {reason}')
        return dense(reason)
    new = sparse_type.from_dense(module, pattern.n, pattern.m,
                                 pattern.orientation, name)
    return LayerDecision(name, sparse_type.__name__, shape, pattern, note), new


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
