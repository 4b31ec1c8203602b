"""Measure and verify the N:M sparsity of a model's sparse layers."""
from dataclasses import dataclass
from typing import List, Mapping, Sequence

from torch import Tensor, nn

from mmnm.ops import count_nm_violations
from mmnm.pattern import NMPattern
from .sparsify import find_sparse_layers


@dataclass
class LayerSparsity:
    """Zeros and pattern violations of one sparse layer's effective
    weight."""

    name: str
    pattern: NMPattern
    numel: int
    zeros: int
    violations: int

    @classmethod
    def of(cls,
           name: str,
           weight: Tensor,
           pattern: NMPattern,
           check: bool = True) -> 'LayerSparsity':
        """Count the zeros of ``weight`` and (with ``check``) its groups
        holding more than N non-zeros."""
        violations = count_nm_violations(weight, pattern.n, pattern.m,
                                         pattern.orientation) if check else 0
        return cls(name, pattern, weight.numel(), int((weight == 0).sum()),
                   violations)


@dataclass
class SparsitySummary:
    """Totals over the sparse layers of a model or checkpoint."""

    layers: Sequence[LayerSparsity]

    @property
    def numel(self) -> int:
        return sum(layer.numel for layer in self.layers)

    @property
    def zeros(self) -> int:
        return sum(layer.zeros for layer in self.layers)

    @property
    def zero_ratio(self) -> float:
        return self.zeros / max(self.numel, 1)

    @property
    def patterns(self) -> str:
        """The patterns in use, e.g. ``'2:4'`` or ``'2:4, 4:8'``."""
        return ', '.join(sorted({str(layer.pattern) for layer in self.layers}))

    def line(self) -> str:
        """E.g. ``25 layers (2:4); zeros: 1943552/3887104 (50.00%)``."""
        return (f'{len(self.layers)} layers ({self.patterns}); zeros: '
                f'{self.zeros}/{self.numel} ({100 * self.zero_ratio:.2f}%)')


def measure_sparsity(model: nn.Module) -> List[LayerSparsity]:
    """One entry per N:M sparse layer of ``model``, from the weights that
    inference uses (masked)."""
    return [
        LayerSparsity.of(layer.nm_name, layer.masked_weight(), layer.nm)
        for layer in find_sparse_layers(model)
    ]


def state_dict_sparsity(
        state_dict: Mapping[str, Tensor],
        patterns: Mapping[str, NMPattern]) -> List[LayerSparsity]:
    """One entry per key of ``patterns`` (see
    :func:`~mmnm.conversion.sparse_weight_patterns`), from the weights in
    ``state_dict``; ``KeyError`` naming a missing key."""
    missing = [key for key in patterns if key not in state_dict]
    if missing:
        raise KeyError(f'not in the state_dict: {", ".join(missing)}')
    return [
        LayerSparsity.of(key, state_dict[key], nm)
        for key, nm in patterns.items()
    ]


def verify_nm_sparsity(model: nn.Module) -> List[LayerSparsity]:
    """:func:`measure_sparsity`, raising ``ValueError`` naming every layer
    whose effective weight is not N:M (or if there is no sparse layer)."""
    layers = measure_sparsity(model)
    if not layers:
        raise ValueError(f'{type(model).__name__} has no N:M sparse layer')
    bad = [
        f'{layer.name} ({layer.violations} groups over {layer.pattern})'
        for layer in layers if layer.violations
    ]
    if bad:
        raise ValueError('not N:M sparse: ' + ', '.join(bad))
    return layers
