"""Measure and verify the N:M sparsity of a model's sparse layers."""
from dataclasses import dataclass
from typing import List

from torch import nn

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


def measure_sparsity(model: nn.Module) -> List[LayerSparsity]:
    """One entry per N:M sparse layer of ``model``, from the weights that
    inference uses (masked)."""
    result = []
    for layer in find_sparse_layers(model):
        name = layer.nm_name
        weight = layer.effective_weight()
        nm = layer.nm
        result.append(
            LayerSparsity(
                name, nm, weight.numel(), int((weight == 0).sum()),
                count_nm_violations(weight, nm.n, nm.m, nm.orientation)))
    return result


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
