"""N:M checkpoints as ``init_cfg=dict(type='Pretrained', ...)``: a sparse
classifier's backbone initialising a sparse detector or segmentor.

mmengine's ``PretrainedInit`` loads non-strictly: a checkpoint of another
depth or width only logs warnings and the run trains from random weights.
An mmnm checkpoint stores every sparse weight masked, so the loaded weights
are exactly N:M and the first forward computes the classifier's masks from
them; :func:`check_pretrained_init` makes the hand-off safe, before the
weights are initialised: the file is there, every key of the module is in
it with its shape, and it says which layers keep the checkpoint's masks
and which the checkpoint held dense.
"""
import fnmatch
import os.path as osp
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from mmnm.layers import NMSparseMixin
from mmnm.pattern import NMPattern
from mmnm.utils import read_checkpoint
from .checkpoint import checkpoint_patterns


def pretrained_inits(model: nn.Module) -> Iterator[Tuple[str, str, dict]]:
    """``(module name, config key, init_cfg)`` of each ``Pretrained``
    ``init_cfg`` with a checkpoint in ``model`` (``backbone``,
    ``model.backbone.init_cfg``, ...)."""
    for name, module in model.named_modules():
        cfgs = getattr(module, 'init_cfg', None)
        key = f'model.{name}.init_cfg' if name else 'model.init_cfg'
        listed = isinstance(cfgs, (list, tuple))
        for index, cfg in enumerate(cfgs if listed else [cfgs]):
            if isinstance(cfg, Mapping) and cfg.get('type') == 'Pretrained' \
                    and cfg.get('checkpoint'):
                yield name, f'{key}.{index}' if listed else key, dict(cfg)


def check_pretrained_init(model: nn.Module,
                          name: str,
                          key: str,
                          init_cfg: dict,
                          missing_ok: Sequence[str] = None) -> List[str]:
    """Check that ``init_cfg['checkpoint']`` fits ``model``'s module
    ``name`` and return lines that say what the N:M layers take from it.

    Args:
        model: the model, its layers already N:M where the run wants them.
        name: the module the ``init_cfg`` belongs to (``'backbone'``).
        key: the config key of the ``init_cfg``, for messages.
        init_cfg: ``dict(type='Pretrained', checkpoint=..., prefix=...)``.
        missing_ok: patterns (``fnmatch``) of module keys the checkpoint may
            lack, e.g. ``['*.conv_offset.*']`` for layers that the model
            adds and initialises itself.

    Raises:
        FileNotFoundError: a local checkpoint path that is no file.
        ValueError: the file does not load, no key has the prefix, or a key
            of the module is missing or has another shape (the message names
            the first one).
    """
    path = init_cfg['checkpoint']
    if '://' in path:  # torchvision://, open-mmlab://, http(s)://
        return [
            f'{key}: {path} is not a local file; mmnm checks only local '
            'N:M checkpoints (the first masks come from its weights)'
        ]
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{key}.checkpoint: no such file {path!r}; give the N:M '
            f'classifier checkpoint with --cfg-options {key}.checkpoint=PATH')
    try:
        checkpoint = read_checkpoint(path)
    except ValueError as err:
        raise ValueError(f'{key}.checkpoint: {err}') from None
    source, prefix = _prefixed(checkpoint, init_cfg.get('prefix'), path, key)
    module = model.get_submodule(name) if name else model
    target = module.state_dict()
    unused = [k for k in source if k not in target]
    _check_keys(source, target, prefix, path,
                f'{type(module).__name__} {name!r}', missing_ok,
                _extra_parts(module, unused))
    lines = [f'{key}: {path} fits {name or "the model"} ({len(target)} keys)']
    if unused:
        lines.append(f'  {len(unused)} checkpoint keys not used (parts the '
                     f'module does not have), e.g. {prefix}{unused[0]}')
    patterns = checkpoint_patterns(checkpoint)
    if patterns is None:
        return lines + [
            '  no mmnm N:M record: a dense checkpoint; the first masks come '
            "from its weights' magnitudes"
        ]
    return lines + _mask_hand_off(model, name, prefix, patterns)


def _prefixed(checkpoint: Mapping, prefix: str, path: str,
              key: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """The checkpoint's weights under ``prefix``, the prefix stripped."""
    state = checkpoint.get('state_dict', checkpoint)
    if not prefix:
        return dict(state), ''
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    source = {
        k[len(prefix):]: v
        for k, v in state.items() if k.startswith(prefix)
    }
    if not source:
        raise ValueError(
            f'{key}.prefix: no key of {path} starts with {prefix!r} (its '
            f'keys start e.g. {next(iter(state), "<none>")!r})')
    return source, prefix


def _extra_parts(module: nn.Module, unused: Sequence[str]) -> List[str]:
    """The unused checkpoint keys that lie inside a part the module has
    (``layer1.2.*`` for a module whose ``layer1`` has 2 blocks): a deeper
    network. Keys of whole parts it lacks (``layer4.*`` for a 3-stage
    backbone) are not."""
    names = {name for name, _ in module.named_modules()}
    extra = []
    for k in unused:
        parts = k.split('.')[:-1]
        depth = next((i for i in range(len(parts))
                      if '.'.join(parts[:i + 1]) not in names), len(parts))
        if depth > 0:
            extra.append(k)
    return extra


def _check_keys(source: Mapping, target: Mapping, prefix: str, path: str,
                module: str, missing_ok: Optional[Sequence[str]],
                extra: Sequence[str]) -> None:
    """Raise naming the first key of ``target`` that ``source`` lacks or
    holds with another shape, or else the first of ``extra``."""
    bad = []
    for k, value in target.items():
        if k not in source:
            if not any(fnmatch.fnmatch(k, p) for p in missing_ok or ()):
                bad.append(f'{k!r} is not in the checkpoint')
        elif source[k].shape != value.shape:
            bad.append(f'{prefix + k!r} is {tuple(source[k].shape)} in the '
                       f'checkpoint, {tuple(value.shape)} in the model')
    bad += [
        f'{prefix + k!r} is in the checkpoint, not in the model' for k in extra
    ]
    if bad:
        raise ValueError(
            f'{path} does not fit {module}: {bad[0]} (first of {len(bad)} '
            'mismatched keys). A backbone of another depth or width? Train '
            'the classifier with this backbone, or point the init_cfg at a '
            'checkpoint that has it.')


def _mask_hand_off(model: nn.Module, name: str, prefix: str,
                   patterns: Mapping[str, NMPattern]) -> List[str]:
    """Which N:M layers of module ``name`` keep the checkpoint's masks."""
    kept, other, dense = [], [], []
    start = f'{name}.' if name else ''
    for layer_name, layer in model.named_modules():
        if not isinstance(layer, NMSparseMixin) or \
                not layer_name.startswith(start):
            continue
        local = layer_name[len(start):]
        pattern = patterns.get(prefix + local)
        if pattern is None:
            dense.append(local)
        elif pattern != layer.nm:
            other.append(f'{local} ({pattern} there, {layer.nm} here)')
        else:
            kept.append(local)
    lines = [f'  {len(kept)} N:M layers keep the checkpoint\'s masks']
    if other:
        lines.append(f'  {len(other)} were N:M in another pattern; their '
                     'first masks come from the weights: ' + ', '.join(other))
    if dense:
        lines.append(f'  {len(dense)} were dense in the checkpoint; their '
                     'first masks come from the weights: ' + ', '.join(dense))
    return lines
