"""Turn a trained or exported N:M model into a 2:4 inference model."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import Tensor, nn

from mmnm.conversion import LayerDecision, SparsityReport
from mmnm.conversion.sparsify import (_WEIGHTED_TYPES, _check_globs,
                                      _first_match)
from mmnm.layers import NMSparseMixin
from mmnm.pattern import NMPattern
from .eligibility import pattern_ineligibility, structure_ineligibility
from .layers import Sparse24Conv2d, sparse24_layer_type

_PATTERN = NMPattern(2, 4)


@dataclass
class Sparse24Report(SparsityReport):
    """The decisions of :func:`convert_to_sparse24`, printable as a table
    (``N:M`` says ``2:4`` for converted layers, the note why others stay
    dense)."""

    dtype: torch.dtype = torch.float16

    def summary(self) -> str:
        converted = self.sparse_layers
        numel = sum(layer.numel for layer in converted)
        size = torch.empty(0, dtype=self.dtype).element_size()
        # values: half the entries; meta: 4 bits per group of 4 entries
        stored = numel // 2 * size + numel // 8
        return (f'{len(converted)}/{len(self.layers)} Conv/Linear layers '
                f'run 2:4 kernels in {self.dtype}; their {numel} weights are '
                f'stored in {stored} bytes (values + meta) instead of '
                f'{numel * size} dense')


def convert_to_sparse24(
        model: nn.Module,
        dtype: torch.dtype = torch.float16,
        exclude: Sequence[str] = (),
        force: Sequence[str] = (),
        min_weight_numel: int = 0,
        channels_last: bool = False,
        logger: Union[str, MMLogger, None] = 'current') -> Sparse24Report:
    """Replace, in place, the Conv2d/Linear layers of ``model`` whose
    weights are 2:4 along input channels by :class:`Sparse24Conv2d` /
    :class:`Sparse24Linear` of ``dtype``, and log a table of every
    Conv/Linear layer: converted, or why not.

    N:M layers (:class:`~mmnm.layers.SparseConv`, ...) are judged by their
    masked weight; the ones left dense become plain layers holding it, so
    the result computes what the masked model computes. Plain layers (a
    dense model loaded from an exported checkpoint) convert when their
    weights already are 2:4. Layer names match shell-style globs.

    Args:
        dtype: ``torch.float16`` or ``torch.bfloat16``.
        exclude: layers kept dense.
        force: layers that must convert; ``ValueError`` if one cannot.
        min_weight_numel: keep layers with fewer weights (out x K) dense.
            Small GEMMs run slower on the sparse kernels than dense
            (pytorch/pytorch#111339); e.g. ``2**18`` keeps layers below
            512x512 dense. Forced layers ignore it.
        channels_last: converted convs return their output channels_last
            (saves a copy per conv; only where every consumer handles
            channels_last memory, which mmcv's RoIAlign on the CPU does not).
        logger: where the table goes (``None``: nowhere).

    Raises:
        ValueError: a glob matches no layer, a forced layer cannot convert,
            or no layer converts at all.
    """
    if isinstance(model, _WEIGHTED_TYPES):
        raise ValueError(
            f'convert_to_sparse24 converts the layers inside a model, got a '
            f'bare {type(model).__name__}; use Sparse24Conv2d.from_dense or '
            'Sparse24Linear.from_dense for a single layer')
    slots = [(name, module)
             for name, module in model.named_modules(remove_duplicate=False)
             if isinstance(module, _WEIGHTED_TYPES)]
    exclude, force = list(exclude), list(force)
    _check_globs(model, [name for name, _ in slots],
                 dict(exclude=exclude, force=force))

    plans: Dict[int, Tuple[str, nn.Module, Tensor, Optional[str]]] = {}
    decisions: List[LayerDecision] = []
    errors = []
    for name, module in slots:
        if id(module) in plans:
            continue
        weight = module.effective_weight() if isinstance(
            module, NMSparseMixin) else module.weight.detach()
        forced = _first_match(name, force)
        reason = _reason(name, module, weight, exclude, forced,
                         min_weight_numel)
        if reason is not None and forced is not None:
            errors.append(f'{name!r} (forced by {forced!r}): {reason}')
        plans[id(module)] = (name, module, weight, reason)
        shape = tuple(module.weight.shape)
        if reason is None:
            decisions.append(
                LayerDecision(
                    name,
                    sparse24_layer_type(module).__name__, shape, _PATTERN,
                    f'forced by {forced!r}' if forced else 'converted'))
        else:
            decisions.append(
                LayerDecision(name,
                              type(module).__name__, shape, None, reason))
    report = Sparse24Report(decisions,
                            sum(p.numel() for p in model.parameters()), dtype)
    if errors:
        raise ValueError('cannot convert to 2:4 inference:\n  ' +
                         '\n  '.join(errors))
    if not report.sparse_layers:
        raise ValueError(f'no Conv/Linear layer of {type(model).__name__} '
                         'can run 2:4 kernels:\n' + report.table())

    replaced: Dict[int, nn.Module] = {}
    for id_, (name, module, weight, reason) in plans.items():
        if reason is None:
            layer = sparse24_layer_type(module).from_dense(
                module, dtype, weight, name).train(module.training)
            if isinstance(layer, Sparse24Conv2d):
                layer.channels_last_output = channels_last
            replaced[id_] = layer
        elif isinstance(module, NMSparseMixin):
            replaced[id_] = _plain_layer(module, weight)
    for name, module in slots:
        if id(module) in replaced:
            parent, _, child = name.rpartition('.')
            setattr(model.get_submodule(parent), child, replaced[id(module)])
    if logger is not None:
        print_log('2:4 inference conversion\n' + report.table(), logger)
    return report


def _reason(name: str, module: nn.Module, weight: Tensor, exclude: List[str],
            forced: Optional[str], min_weight_numel: int) -> Optional[str]:
    """Why the layer stays dense, or ``None`` to convert it."""
    if forced is None and _first_match(name, exclude) is not None:
        return f'excluded by {_first_match(name, exclude)!r}'
    reason = structure_ineligibility(module) or pattern_ineligibility(weight)
    if reason is None and forced is None and weight.numel() < min_weight_numel:
        reason = (f'{weight.numel()} weights < min_weight_numel='
                  f'{min_weight_numel} (dense is faster for small GEMMs)')
    return reason


def _plain_layer(layer: NMSparseMixin, weight: Tensor) -> nn.Module:
    """The plain Conv2d/Linear computing what the N:M ``layer`` computes
    (its masked ``weight``), for layers left dense."""
    if isinstance(layer, nn.Conv2d):
        plain = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            layer.bias is not None,
            layer.padding_mode,
            device='meta')
    else:
        plain = nn.Linear(
            layer.in_features,
            layer.out_features,
            layer.bias is not None,
            device='meta')
    plain.weight = nn.Parameter(
        weight.clone(), requires_grad=layer.weight.requires_grad)
    plain.bias = layer.bias
    return plain.train(layer.training)
