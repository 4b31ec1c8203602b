"""Training checkpoints whose weights are exactly N:M, and that still
resume SR-STE training exactly.

SR-STE trains dense weights: the pruned ones keep learning and can come
back. A checkpoint that held them as they are would give the stock dense
model of the config (``init_detector``, ``init_model``, inferencers,
mmdeploy) a model that was never trained. So in every weight set of a
checkpoint (``state_dict`` and, with EMA, ``ema_state_dict``) each sparse
weight is stored masked, exactly what the sparse layer's forward uses, and
the pruned values go under ``checkpoint['nm_sparsity']``::

    nm_sparsity = dict(
        format=1, mmnm_version='...',
        layers={name: dict(pattern='2:4', orientation='channel',
                           shape=[...], state='sparse' | 'frozen' | 'dense',
                           weight='weight' | 'in_proj_weight',
                           frozen_mask=<packed bits, if frozen>)},
        pruned={'state_dict': {name: dict(mask=<packed bits>,
                                          values=<the pruned weights>)},
                'ema_state_dict': {...}},
        sad={name: dict(start=<packed bits>, last=<packed bits>)})

:func:`decode_nm_checkpoint` puts the pruned values back, bit for bit, so
resuming continues the uninterrupted run exactly. A layer in its dense
warm-up (``state='dense'``) is stored dense: that is the model trained so
far.
"""
import math
from typing import Dict, Mapping, Optional

import torch
from torch import Tensor

from mmnm.layers import NMSparseMixin
from mmnm.ops import nm_mask
from mmnm.pattern import NMPattern
from mmnm.version import __version__

#: The checkpoint key mmnm writes.
NM_CHECKPOINT_KEY = 'nm_sparsity'
#: The version of the layout above; 0 stands for checkpoints of mmnm
#: before it (dense weights, SAD references only).
NM_CHECKPOINT_FORMAT = 1
#: The weight sets a checkpoint may hold, and the prefix their keys carry
#: in front of the model's own state_dict keys (mmengine's EMAHook keeps
#: the averaged model as ``module.<key>``).
WEIGHT_SETS: Dict[str, str] = {'state_dict': '', 'ema_state_dict': 'module.'}

_BITS = 1 << torch.arange(8, dtype=torch.uint8)


def pack_mask(mask: Tensor) -> Tensor:
    """Bool tensor -> uint8 tensor of its bits, on the CPU (8x smaller)."""
    flat = mask.detach().flatten().cpu()
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 8)])
    return (flat.view(-1, 8).to(torch.uint8) * _BITS).sum(1, dtype=torch.uint8)


def unpack_mask(packed: Tensor, shape) -> Tensor:
    """The inverse of :func:`pack_mask`: a CPU bool tensor of ``shape``."""
    bits = packed.cpu().unsqueeze(1).bitwise_and(_BITS).ne(0).flatten()
    return bits[:math.prod(shape)].view(tuple(shape))


def nm_checkpoint_format(checkpoint: Mapping) -> Optional[int]:
    """The mmnm format of ``checkpoint``: ``None`` if mmnm did not write
    it, 0 for mmnm's checkpoints from before format 1."""
    record = checkpoint.get(NM_CHECKPOINT_KEY)
    if not isinstance(record, Mapping):
        return None
    return int(record.get('format', 0))


def encode_nm_checkpoint(checkpoint: dict,
                         layers: Mapping[str, NMSparseMixin]) -> None:
    """Store every sparse weight of every weight set of ``checkpoint``
    masked, and its pruned values under ``checkpoint['nm_sparsity']``.

    ``layers`` maps state_dict names (``backbone.layer1.0.conv1``) to the
    sparse layers. Entries are replaced, never changed in place: mmengine's
    checkpoint dicts share storage with the live parameters.
    """
    record = checkpoint.setdefault(NM_CHECKPOINT_KEY, {})
    record.update(format=NM_CHECKPOINT_FORMAT, mmnm_version=__version__)
    record['layers'] = {}
    for name, layer in layers.items():
        info = dict(
            pattern=f'{layer.nm.n}:{layer.nm.m}',
            orientation=layer.nm.orientation,
            shape=list(layer.weight.shape),
            state=layer.nm_state,
            weight=layer.weight_key)
        if info['state'] == 'frozen':
            info['frozen_mask'] = pack_mask(layer.mask)
        record['layers'][name] = info
    record['pruned'] = {}
    for set_key, prefix in WEIGHT_SETS.items():
        weights = checkpoint.get(set_key)
        if not isinstance(weights, dict):
            continue
        pruned = {}
        for name, layer in layers.items():
            key = f'{prefix}{name}.{layer.weight_key}'
            if key not in weights:
                continue
            weight = weights[key]
            mask = layer.mask_for(weight)
            if mask is None:
                continue  # dense warm-up: the model trained so far is dense
            weights[key] = weight * mask
            pruned[name] = dict(
                mask=pack_mask(mask), values=weight[~mask].detach().clone())
        record['pruned'][set_key] = pruned


def decode_nm_checkpoint(checkpoint: dict, source: str) -> Optional[int]:
    """Put the pruned values of a format-1 checkpoint back into its weight
    sets, in place, so they hold the dense weights SR-STE trains; returns
    the checkpoint's format (see :func:`nm_checkpoint_format`).

    Checks that the stored weights are still those mmnm wrote (zero where
    the mask prunes, and masks recomputed from the restored weights equal
    the stored ones) and raises ``ValueError`` naming ``source`` and the key
    otherwise. Decoding twice is a no-op.
    """
    version = nm_checkpoint_format(checkpoint)
    if not version:
        return version
    if version > NM_CHECKPOINT_FORMAT:
        raise ValueError(
            f'{source}: written in mmnm checkpoint format {version} by mmnm '
            f'{checkpoint[NM_CHECKPOINT_KEY].get("mmnm_version")}; this mmnm '
            f'({__version__}) reads up to format {NM_CHECKPOINT_FORMAT}: '
            'upgrade mmnm')
    record = checkpoint[NM_CHECKPOINT_KEY]
    layers = record.get('layers', {})
    for set_key, pruned in record.pop('pruned', {}).items():
        weights = checkpoint.get(set_key)
        for name, entry in pruned.items():
            weight_key = layers.get(name, {}).get('weight', 'weight')
            key = f'{WEIGHT_SETS[set_key]}{name}.{weight_key}'
            if not isinstance(weights, dict) or key not in weights:
                raise ValueError(f'{source}: {set_key} lacks {key!r}, whose '
                                 f'pruned weights {NM_CHECKPOINT_KEY!r} holds')
            weights[key] = _restore(weights[key], entry, layers.get(name),
                                    f'{source}: {set_key}[{key!r}]')
    return version


def _restore(masked: Tensor, entry: Mapping, layer: Optional[Mapping],
             where: str) -> Tensor:
    """The dense weight of one stored masked weight."""
    mask = unpack_mask(entry['mask'], masked.shape).to(masked.device)
    values = entry['values']
    if values.numel() != int((~mask).sum()) or \
            bool(masked[~mask].ne(0).any()):
        raise ValueError(f'{where} does not match its mask in '
                         f'{NM_CHECKPOINT_KEY!r}: the weights were changed '
                         'after mmnm wrote them')
    dense = masked.clone()
    dense[~mask] = values.to(dense)
    if layer is not None and layer.get('state') == 'sparse':
        n, m = map(int, layer['pattern'].split(':'))
        if not torch.equal(nm_mask(dense, n, m, layer['orientation']), mask):
            raise ValueError(f'{where}: the restored weights give other '
                             f'masks than {NM_CHECKPOINT_KEY!r} records')
    return dense


def checkpoint_patterns(checkpoint: Mapping) -> Optional[Dict[str, NMPattern]]:
    """``{layer name: pattern}`` of the layers an mmnm checkpoint holds N:M
    (a training checkpoint's ``nm_sparsity`` record or an export's
    ``meta['nm_patterns']``); ``None`` for other checkpoints."""
    record = (checkpoint.get(NM_CHECKPOINT_KEY) or {}).get('layers')
    if record is not None:
        return {
            name: NMPattern.parse(info['pattern'], info['orientation'])
            for name, info in record.items() if info.get('state') != 'dense'
        }
    exported = (checkpoint.get('meta') or {}).get('nm_patterns')
    if exported is not None:
        return {
            key.rsplit('.', 1)[0]: NMPattern.parse(*spec.split('/'))
            for key, spec in exported.items()
        }
    return None
