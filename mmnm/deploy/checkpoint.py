"""Save a 2:4 inference model, and load the compressed checkpoint into a
model built from the same config."""
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import Tensor, nn

from mmnm.conversion import replace_layers
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


def prepare_sparse24_structure(model: nn.Module,
                               state_dict: Mapping[str, Tensor]) -> List[str]:
    """Replace, in place, the dense layers that ``state_dict`` holds 2:4
    weights for by empty 2:4 layers of its dtype, so that it loads
    strictly. Every layer is checked before any is replaced. Returns their
    names."""
    names = sparse24_layer_names(state_dict)
    modules = dict(model.named_modules(remove_duplicate=False))
    replacements: Dict[nn.Module, nn.Module] = {}
    for name in names:
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
                module, dtype, name)
    replace_layers(model, replacements)
    return names


def load_sparse24_checkpoint(model: nn.Module, checkpoint: str) -> nn.Module:
    """Load the compressed ``checkpoint`` (made by
    :func:`save_sparse24_checkpoint`) strictly into ``model``, built from
    the same config as the converted model, its 2:4 layers put in place
    first. Returns ``model``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: it holds no 2:4 layer, or does not fit ``model`` (the
            message names the file and the first layer or key in question).
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    saved = torch.load(checkpoint, map_location='cpu')
    state = saved.get('state_dict', saved)
    if not sparse24_layer_names(state):
        raise ValueError(f'{checkpoint}: no 2:4 layer (no *{_VALUES} key); '
                         'convert it with tools/deploy/convert_sparse24.py')
    try:
        prepare_sparse24_structure(model, state)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f'{checkpoint}: {err}') from None
    return model
