"""Plain checkpoints whose sparse weights are exactly N:M (masks applied),
loadable by the dense model of the stock config."""
from collections import OrderedDict
from typing import Dict, Mapping, Optional

import torch
from torch import Tensor, nn

from mmnm.ops import count_nm_violations
from mmnm.pattern import NMPattern
from mmnm.version import __version__
from .sparsify import find_sparse_layers, sparse_layer_slots


def sparse_weight_patterns(model: nn.Module) -> Dict[str, NMPattern]:
    """``{state_dict key of a sparse weight: its pattern}``, every key of a
    shared layer included."""
    return {
        f'{name}.weight': layer.nm
        for name, layer in sparse_layer_slots(model).items()
    }


def export_state_dict(model: nn.Module) -> 'OrderedDict[str, Tensor]':
    """``model``'s state_dict with every sparse weight replaced by its
    masked weight (exact zeros), on the CPU."""
    state = OrderedDict((key, value.detach().cpu())
                        for key, value in model.state_dict().items())
    find_sparse_layers(model)  # names the layers for messages
    for name, layer in sparse_layer_slots(model).items():
        state[f'{name}.weight'] = layer.effective_weight().cpu()
    return state


def check_nm_state_dict(state_dict: Mapping[str, Tensor],
                        patterns: Mapping[str, NMPattern]) -> None:
    """Raise ``ValueError`` naming every key of ``patterns`` that is missing
    from ``state_dict`` or not N:M there."""
    problems = []
    for key, nm in patterns.items():
        if key not in state_dict:
            problems.append(f'{key}: missing')
            continue
        bad = count_nm_violations(state_dict[key], nm.n, nm.m, nm.orientation)
        if bad:
            problems.append(f'{key}: {bad} groups hold more than {nm.n} '
                            f'non-zeros (expected {nm})')
    if problems:
        raise ValueError('not N:M sparse:\n  ' + '\n  '.join(problems))


def save_nm_checkpoint(state_dict: Mapping[str, Tensor],
                       patterns: Mapping[str, NMPattern],
                       out: str,
                       source: Optional[str] = None) -> None:
    """Verify ``state_dict`` is N:M where ``patterns`` say, then save it as a
    plain mmengine checkpoint (``meta`` + ``state_dict``, no optimizer)."""
    check_nm_state_dict(state_dict, patterns)
    meta = dict(
        mmnm_version=__version__,
        nm_patterns={
            key: f'{p}/{p.orientation}'
            for key, p in patterns.items()
        })
    if source is not None:
        meta['source'] = source
    torch.save(dict(meta=meta, state_dict=dict(state_dict)), out)
