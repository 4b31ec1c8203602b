"""Turn a trained or exported N:M model into a 2:4 inference model."""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmengine.logging import MMLogger, print_log
from torch import nn

from mmnm.conversion import (LayerDecision, SparsityReport, first_match,
                             parents, replace_layers, weighted_layers)
from mmnm.layers import (NMSparseMixin, gemm_weight, gemm_weight_shape,
                         weight_reader)
from mmnm.pattern import NMPattern
from .eligibility import pattern_ineligibility, structure_ineligibility
from .layers import Sparse24Conv2d, Sparse24Mixin, sparse24_layer_type

_PATTERN = NMPattern(2, 4)


@dataclass
class Sparse24Report(SparsityReport):
    """The decisions of :func:`convert_to_sparse24`, printable as a table
    (``N:M`` says ``2:4`` for converted layers, the note why others stay
    dense)."""

    dtype: torch.dtype = torch.float16
    #: bytes of the converted layers' compressed weights (values + meta)
    stored_bytes: int = 0

    def summary(self) -> str:
        converted = self.sparse_layers
        numel = sum(layer.numel for layer in converted)
        size = torch.empty(0, dtype=self.dtype).element_size()
        return (f'{len(converted)}/{len(self.layers)} weighted layers '
                f'run 2:4 kernels in {self.dtype}; their {numel} weights are '
                f'stored in {self.stored_bytes} bytes (values + meta) '
                f'instead of {numel * size} dense')


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
    exclude, force = list(exclude), list(force)
    layers = weighted_layers(model, 'convert_to_sparse24',
                             dict(exclude=exclude, force=force),
                             '2:4 conversion')

    decisions: List[LayerDecision] = []
    replacements: Dict[nn.Module, nn.Module] = {}
    errors = []
    held_by = parents(model)
    for name, module in layers:
        forced = first_match(name, force)
        reason = _reason(name, module, exclude, forced, min_weight_numel,
                         held_by.get(module))
        shape = gemm_weight_shape(module)
        if reason is None:
            weight = module.masked_weight() if isinstance(
                module, NMSparseMixin) else module.weight.detach()
            layer = sparse24_layer_type(module).compress(
                module, dtype, weight, name).train(module.training)
            if isinstance(layer, Sparse24Conv2d):
                layer.channels_last_output = channels_last
            replacements[module] = layer
            decisions.append(
                LayerDecision(
                    name,
                    type(layer).__name__, shape, _PATTERN,
                    f'forced by {forced!r}' if forced else 'converted'))
            continue
        if forced is not None:
            errors.append(f'{name!r} (forced by {forced!r}): {reason}')
        if isinstance(module, NMSparseMixin):
            replacements[module] = module.to_dense()
        decisions.append(
            LayerDecision(name,
                          type(module).__name__, shape, None, reason))
    report = Sparse24Report(
        decisions, sum(p.numel() for p in model.parameters()), dtype,
        sum(layer.compressed_bytes for layer in replacements.values()
            if isinstance(layer, Sparse24Mixin)))
    if errors:
        raise ValueError('cannot convert to 2:4 inference:\n  ' +
                         '\n  '.join(errors))
    if not report.sparse_layers:
        raise ValueError(f'no weighted layer of {type(model).__name__} '
                         'can run 2:4 kernels:\n' + report.table())
    replace_layers(model, replacements)
    if logger is not None:
        print_log('2:4 inference conversion\n' + report.table(), logger)
    return report


def _reason(name: str, module: nn.Module, exclude: List[str],
            forced: Optional[str], min_weight_numel: int,
            parent: Optional[nn.Module]) -> Optional[str]:
    """Why the layer stays dense, or ``None`` to convert it."""
    if forced is None and first_match(name, exclude) is not None:
        return f'excluded by {first_match(name, exclude)!r}'
    if weight_reader(module, parent) is not None:
        return (f'{type(parent).__name__} reads this weight itself instead '
                'of calling the layer: no 2:4 lowering inside it')
    reason = structure_ineligibility(module)
    if reason is not None:
        return reason
    weight = module.masked_weight() if isinstance(
        module, NMSparseMixin) else gemm_weight(module).detach()
    reason = pattern_ineligibility(weight)
    if reason is None and forced is None and weight.numel() < min_weight_numel:
        reason = (f'{weight.numel()} weights < min_weight_numel='
                  f'{min_weight_numel} (dense is faster for small GEMMs)')
    return reason
