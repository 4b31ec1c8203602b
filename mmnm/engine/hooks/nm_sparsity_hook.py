"""The hook that runs N:M sparsity in an mmengine run: it makes the model
sparse, logs sparsity and Sparse Architecture Divergence (SAD) during
training, and stops the run if a layer's effective weight is not N:M."""
import math
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor

from mmnm.conversion import find_sparse_layers, sparsify_model
from mmnm.layers import NMSparseMixin
from mmnm.ops import group_view
from mmnm.registry import HOOKS

_BITS = 1 << torch.arange(8, dtype=torch.uint8)


def _pack(mask: Tensor) -> Tensor:
    """Bool tensor -> uint8 tensor of its bits (8x smaller checkpoints)."""
    flat = mask.detach().flatten().cpu()
    flat = torch.cat([flat, flat.new_zeros((-flat.numel()) % 8)])
    return (flat.view(-1, 8).to(torch.uint8) * _BITS).sum(1, dtype=torch.uint8)


def _unpack(packed: Tensor, shape: torch.Size) -> Tensor:
    bits = packed.cpu().unsqueeze(1).bitwise_and(_BITS).ne(0).flatten()
    return bits[:math.prod(shape)].view(shape)


@HOOKS.register_module()
class NMSparsityHook(Hook):
    """Make the model N:M sparse and log its sparsity and SAD every
    ``interval`` training iterations.

    With ``sparsity`` set, the hook converts the model when the run starts
    (``before_run``, for training, validation and testing alike, before
    weights are initialised or a checkpoint is loaded) and logs one table
    row per Conv/Linear layer: its pattern or why it stays dense. The
    converted layers share the original parameters, so the optimizer and
    a DDP wrapper built earlier keep working. Without ``sparsity``, the
    model must already hold sparse layers (e.g. built with
    ``conv_cfg=dict(type='SparseConv')``). This works with the stock
    ``tools/train.py`` and ``tools/test.py`` of mmdet and mmseg::

        custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)
        custom_hooks = [
            dict(type='NMSparsityHook', interval=50,
                 sparsity=dict(pattern='2:4', exclude=['*.fc_cls']))
        ]

    Logged under ``sparsity/`` (text log and every visualizer backend):

    - ``sad``: mask entries flipped since the last log (SAD of Zhou et al.,
      ICLR 2021), ``sad_norm``: the same divided by the number of entries;
    - ``sad_total``, ``sad_total_norm``: flips since the first sparse
      iteration;
    - ``zero_ratio``: share of zeros in the effective (masked) weights.

    With ``per_layer=True`` each layer's ``sad_norm`` and ``zero_ratio``
    are logged too. With ``verify=True`` (default) every effective weight is
    checked to hold at most N non-zeros per group; a layer that does not
    stops the run with an error naming it. The reference masks go into
    checkpoints, so SAD continues across a resume.

    Args:
        sparsity (dict, optional): arguments of
            :func:`mmnm.conversion.sparsify_model`, e.g.
            ``dict(pattern='2:4', exclude=[...])``. Defaults to None.
        interval (int): log every ``interval`` iterations. Defaults to 50.
        per_layer (bool): also log per-layer values. Defaults to False.
        verify (bool): check the N:M pattern when logging. Defaults to True.
    """

    # before hooks that copy the model (EMA) and before LoggerHook writes
    priority = 'VERY_HIGH'
    checkpoint_key = 'nm_sparsity'

    def __init__(self,
                 sparsity: Optional[dict] = None,
                 interval: int = 50,
                 per_layer: bool = False,
                 verify: bool = True) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.sparsity = dict(sparsity) if sparsity is not None else None
        self.interval = interval
        self.per_layer = per_layer
        self.verify = verify
        self.layers: Dict[str, NMSparseMixin] = {}
        self.start_masks: Dict[str, Tensor] = {}
        self.last_masks: Dict[str, Tensor] = {}

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if self.sparsity is not None:
            try:
                report = sparsify_model(model, **self.sparsity)
            except TypeError as err:
                raise TypeError(f'NMSparsityHook sparsity: {err}') from None
            runner.logger.info('N:M sparsity of the model:\n' +
                               report.table())
        self.layers = {layer.nm_name: layer
                       for layer in find_sparse_layers(model)}
        if not self.layers:
            raise RuntimeError(
                f'NMSparsityHook: {type(model).__name__} has no N:M sparse '
                "layer; give the hook sparsity=dict(pattern='2:4') or build "
                "layers with conv_cfg=dict(type='SparseConv')")

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        masks = {name: layer.mask for name, layer in self.layers.items()
                 if layer.mask is not None}
        if not masks:
            return  # dense warm-up
        for name, mask in masks.items():
            if name not in self.start_masks:
                self.start_masks[name] = mask.clone()
                self.last_masks[name] = mask.clone()
        if self.every_n_train_iters(runner, self.interval) or \
                self.is_last_train_iter(runner):
            self._log(runner, masks)

    def _log(self, runner, masks: Dict[str, Tensor]) -> None:
        flips = flips_total = entries = zeros = 0
        for name, mask in masks.items():
            layer = self.layers[name]
            if self.verify:
                self._verify(layer, mask)
            # the current weight under the mask of the last forward
            weight = layer.weight.detach() * mask
            layer_flips = int((mask != self.last_masks[name]).sum())
            layer_zeros = int((weight == 0).sum())
            flips += layer_flips
            flips_total += int((mask != self.start_masks[name]).sum())
            entries += mask.numel()
            zeros += layer_zeros
            self.last_masks[name] = mask.clone()
            if self.per_layer:
                self._update(runner, f'{name}/sad_norm',
                             layer_flips / mask.numel())
                self._update(runner, f'{name}/zero_ratio',
                             layer_zeros / mask.numel())
        self._update(runner, 'sad', flips)
        self._update(runner, 'sad_norm', flips / entries)
        self._update(runner, 'sad_total', flips_total)
        self._update(runner, 'sad_total_norm', flips_total / entries)
        self._update(runner, 'zero_ratio', zeros / entries)

    @staticmethod
    def _update(runner, key: str, value: float) -> None:
        runner.message_hub.update_scalar(f'train/sparsity/{key}', value)

    @staticmethod
    def _verify(layer: NMSparseMixin, mask: Tensor) -> None:
        """The mask the forward used keeps exactly N of every group."""
        nm = layer.nm
        kept = group_view(mask, nm.m, nm.orientation).sum(2)
        bad = int((kept != nm.n).sum())
        if bad:
            raise RuntimeError(
                f'{layer.describe()} is not {nm} sparse: {bad} of '
                f'{kept.numel()} groups keep other than {nm.n} weights')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[self.checkpoint_key] = {
            name: dict(
                shape=list(mask.shape),
                start=_pack(mask),
                last=_pack(self.last_masks[name]))
            for name, mask in self.start_masks.items()
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state: Optional[dict] = checkpoint.get(self.checkpoint_key)
        if not state or not getattr(runner, '_resume', False):
            return  # SAD references belong to the run they came from
        for name, entry in state.items():
            if name not in self.layers:
                continue  # a layer this model does not make sparse
            shape = torch.Size(entry['shape'])
            if shape != self.layers[name].weight.shape:
                raise ValueError(
                    f'checkpoint key {self.checkpoint_key!r}: mask of layer '
                    f'{name!r} has shape {tuple(shape)}, the layer '
                    f'{tuple(self.layers[name].weight.shape)}')
            device = self.layers[name].weight.device
            self.start_masks[name] = _unpack(entry['start'], shape).to(device)
            self.last_masks[name] = _unpack(entry['last'], shape).to(device)
