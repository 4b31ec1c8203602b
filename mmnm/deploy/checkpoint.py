"""Save a 2:4 inference model, and rebuild it from its config plus the
compressed checkpoint."""
import os.path as osp
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from torch import Tensor, nn

import mmnm
from mmnm.utils.launch import build_model
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
        mmnm_version=mmnm.__version__,
        sparse24_layers=sparse24_layer_names(state))
    torch.save(dict(meta=meta, state_dict=state), path)


def prepare_sparse24_structure(model: nn.Module,
                               state_dict: Mapping[str, Tensor]) -> List[str]:
    """Replace, in place, the dense layers that ``state_dict`` holds 2:4
    weights for by empty 2:4 layers of its dtype, so that it loads
    strictly. Returns their names."""
    names = sparse24_layer_names(state_dict)
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            raise ValueError(f'2:4 layer {name!r} of the checkpoint is not in '
                             f'{type(model).__name__}') from None
        reason = structure_ineligibility(module)
        if reason is not None:
            raise ValueError(f'2:4 layer {name!r} of the checkpoint is a '
                             f'{type(module).__name__} in the model: {reason}')
        dtype = state_dict[name + _VALUES].dtype
        layer = sparse24_layer_type(module).empty_like(module, dtype, name)
        parent, _, child = name.rpartition('.')
        setattr(model.get_submodule(parent), child, layer)
    return names


def load_sparse24_model(config: Union[str, Config],
                        checkpoint: str,
                        device: Union[str, torch.device] = 'cpu') -> nn.Module:
    """The inference model of ``config`` (built dense, SyncBN reverted)
    with the 2:4 layers of the compressed ``checkpoint`` in place, loaded
    strictly, in eval mode on ``device``."""
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    saved = torch.load(checkpoint, map_location='cpu')
    state = saved.get('state_dict', saved)
    if not sparse24_layer_names(state):
        raise ValueError(f'{checkpoint}: no 2:4 layer (no *{_VALUES} key); '
                         'convert it with tools/deploy/convert_2to4.py')
    model = revert_sync_batchnorm(build_model(config))
    try:
        prepare_sparse24_structure(model, state)
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f'{checkpoint}: {err}') from None
    return model.to(device).eval()
