"""Save a 2:4 inference model, and load the compressed checkpoint into a
model built from the same config."""
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import Tensor, nn

from mmnm.conversion import replace_layers
from mmnm.utils import read_checkpoint
from mmnm.version import __version__
from .eligibility import structure_ineligibility
from .layers import sparse24_layer_type

_VALUES = '.weight_values'


def sparse24_layer_names(state_dict: Mapping[str, Tensor]) -> List[str]:
    """The layers a compressed state_dict holds 2:4 weights for."""
    return [key[:-len(_VALUES)] for key in state_dict if key.endswith(_VALUES)]


def save_sparse24_checkpoint(model: nn.Module,
                             path: str,
                             meta: Optional[Dict[str, Any]] = None) -> None:
    """``dict(meta, state_dict)`` of a converted model, tensors on the CPU;
    ``meta`` gains the mmnm version and the 2:4 layer names."""
    state = {
        key: value.detach().cpu()
        for key, value in model.state_dict().items()
    }
    meta = dict(
        meta or {},
        mmnm_version=__version__,
        sparse24_layers=sparse24_layer_names(state))
    torch.save(dict(meta=meta, state_dict=state), path)


def plan_sparse24_structure(
        model: nn.Module,
        state_dict: Mapping[str, Tensor]) -> Dict[nn.Module, nn.Module]:
    """``{dense layer: empty 2:4 layer}`` for the layers that ``state_dict``
    holds 2:4 weights for (dtype of the file; device and mode of the layer);
    checks every layer, changes nothing."""
    modules = dict(model.named_modules(remove_duplicate=False))
    replacements: Dict[nn.Module, nn.Module] = {}
    for name in sparse24_layer_names(state_dict):
        module = modules.get(name)
        if module is None:
            raise ValueError(f'2:4 layer {name!r} of the checkpoint is not in '
                             f'{type(model).__name__}')
        reason = structure_ineligibility(module)
        if reason is not None:
            raise ValueError(f'2:4 layer {name!r} of the checkpoint is a '
                             f'{type(module).__name__} in the model: {reason}')
        if module not in replacements:  # a shared layer: one 2:4 layer
            dtype = state_dict[name + _VALUES].dtype
            replacements[module] = sparse24_layer_type(module).empty_like(
                module, dtype,
                name).to(module.weight.device).train(module.training)
    return replacements


def prepare_sparse24_structure(model: nn.Module,
                               state_dict: Mapping[str, Tensor]) -> List[str]:
    """Replace, in place, the dense layers that ``state_dict`` holds 2:4
    weights for by empty 2:4 layers of its dtype, so that it loads
    strictly. Every layer is checked before any is replaced. Returns their
    names."""
    replace_layers(model, plan_sparse24_structure(model, state_dict))
    return sparse24_layer_names(state_dict)


def _mismatch(expected: Mapping[str, Tensor],
              given: Mapping[str, Tensor]) -> Optional[str]:
    """What keeps ``given`` from loading strictly where ``expected`` is the
    model's state_dict (the first keys of each kind), or ``None``."""
    problems = []
    missing = [key for key in expected if key not in given]
    unexpected = [key for key in given if key not in expected]
    shapes = [
        f'{key} {tuple(given[key].shape)} (model: '
        f'{tuple(expected[key].shape)})' for key in expected
        if key in given and given[key].shape != expected[key].shape
    ]
    for what, keys in (('missing keys', missing),
                       ('unexpected keys', unexpected), ('other shapes',
                                                         shapes)):
        if keys:
            more = f' and {len(keys) - 3} more' if len(keys) > 3 else ''
            problems.append(f'{what}: {", ".join(keys[:3])}{more}')
    return '; '.join(problems) or None


def load_sparse24_checkpoint(model: nn.Module, checkpoint: str) -> nn.Module:
    """Load the compressed ``checkpoint`` (made by
    :func:`save_sparse24_checkpoint`) strictly into ``model``, built from
    the same config as the converted model, its 2:4 layers put in place
    first (on the device of the layers they replace). ``model`` is left as
    it was when the file does not fit. Returns ``model``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: it is not a checkpoint, holds no 2:4 layer, or does not
            fit ``model`` (the message names the file and the first layers
            or keys in question).
    """
    saved = read_checkpoint(checkpoint)
    state = saved.get('state_dict', saved)
    if not sparse24_layer_names(state):
        raise ValueError(f'{checkpoint}: no 2:4 layer (no *{_VALUES} key); '
                         'convert it with tools/deploy/convert_sparse24.py')
    try:
        replacements = plan_sparse24_structure(model, state)
    except ValueError as err:
        raise ValueError(f'{checkpoint}: {err}') from None
    replace_layers(model, replacements)
    problem = _mismatch(model.state_dict(), state)
    if problem is not None:
        replace_layers(model, {new: old for old, new in replacements.items()})
        raise ValueError(f'{checkpoint}: does not fit '
                         f'{type(model).__name__}: {problem}')
    model.load_state_dict(state, strict=True)
    return model
