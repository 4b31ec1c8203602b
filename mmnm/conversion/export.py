"""Plain checkpoints whose sparse weights are exactly N:M (masks applied),
loadable by the dense model of the stock config."""
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional

import torch
from torch import Tensor, nn

from mmnm.pattern import NMPattern
from mmnm.version import __version__
from .sparsify import find_sparse_layers, sparse_layer_slots
from .verify import LayerSparsity, state_dict_sparsity


def sparse_weight_patterns(model: nn.Module) -> Dict[str, NMPattern]:
    """``{state_dict key of a sparse weight: its pattern}``, every key of a
    shared layer included."""
    return {
        f'{name}.{layer.weight_key}': layer.nm
        for name, layer in sparse_layer_slots(model).items()
    }


def export_state_dict(model: nn.Module) -> 'OrderedDict[str, Tensor]':
    """``model``'s state_dict with every sparse weight replaced by its
    masked weight (exact zeros), on the CPU."""
    state = OrderedDict((key, value.detach().cpu())
                        for key, value in model.state_dict().items())
    find_sparse_layers(model)  # names the layers for messages
    for name, layer in sparse_layer_slots(model).items():
        state[f'{name}.{layer.weight_key}'] = layer.masked_weight().cpu()
    return state


def check_nm_state_dict(
        state_dict: Mapping[str, Tensor],
        patterns: Mapping[str, NMPattern]) -> List[LayerSparsity]:
    """The sparsity of every key of ``patterns`` in ``state_dict``; raise
    ``ValueError`` naming every key that is missing or not N:M there."""
    problems = [f'{key}: missing' for key in patterns if key not in state_dict]
    layers = state_dict_sparsity(state_dict, {
        k: p
        for k, p in patterns.items() if k in state_dict
    })
    problems += [
        f'{layer.name}: {layer.violations} groups hold more than '
        f'{layer.pattern.n} non-zeros (expected {layer.pattern})'
        for layer in layers if layer.violations
    ]
    if problems:
        raise ValueError('not N:M sparse:\n  ' + '\n  '.join(problems))
    return layers


def save_nm_checkpoint(state_dict: Mapping[str, Tensor],
                       patterns: Mapping[str, NMPattern],
                       out: str,
                       source: Optional[str] = None) -> List[LayerSparsity]:
    """Verify ``state_dict`` is N:M where ``patterns`` say, then save it as a
    plain mmengine checkpoint (``meta`` + ``state_dict``, no optimizer).
    Returns the sparsity of its sparse weights."""
    layers = check_nm_state_dict(state_dict, patterns)
    meta = dict(
        mmnm_version=__version__,
        nm_patterns={
            key: f'{p}/{p.orientation}'
            for key, p in patterns.items()
        })
    if source is not None:
        meta['source'] = source
    torch.save(dict(meta=meta, state_dict=dict(state_dict)), out)
    return layers
