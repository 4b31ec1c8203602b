"""The hook that runs N:M sparsity in an mmengine run: it makes the model
sparse, logs sparsity and Sparse Architecture Divergence (SAD) during
training, and stops the run if a layer's effective weight is not N:M."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmengine.runner import find_latest_checkpoint
from torch import Tensor

from mmnm.conversion import (NM_CHECKPOINT_KEY, LayerSparsity,
                             check_pretrained_init, decode_nm_checkpoint,
                             find_sparse_layers, pack_mask, pretrained_inits,
                             sparsify_model, unpack_mask)
from mmnm.deploy import sparse24_layer_names
from mmnm.layers import NMSparseMixin, invalidate_masks
from mmnm.ops import group_view
from mmnm.registry import HOOKS
from ..optimizers import SR_STE_DEFAULTS, SRSTEMixin
from .nm_checkpoint_hook import NMCheckpointHook


@HOOKS.register_module()
class NMSparsityHook(Hook):
    """The whole sparse-training set-up of a run: which layers are N:M and
    how (``sparsity``), the SR-STE term and schedule (``lambda_w``,
    ``sparse_start_iter``, ``freeze_mask_iter``), sparsity and SAD logging,
    and checkpoints that are exactly N:M.

    With ``sparsity`` set, the hook converts the model when the run starts
    (``before_run``, for training, validation and testing alike, before
    weights are initialised or a checkpoint is loaded) and logs one table
    row per Conv/Linear layer: its pattern or why it stays dense. The
    converted layers share the original parameters, so the optimizer and
    a DDP wrapper built earlier keep working. Without ``sparsity``, the
    model must already hold sparse layers (e.g. built with
    ``conv_cfg=dict(type='SparseConv')``).

    The SR-STE settings go to the run's SR-STE optim wrapper. A training
    run whose parts disagree stops before the first iteration: an optim
    wrapper that adds no SR-STE term (``OptimWrapper``, ``AmpOptimWrapper``,
    e.g. from mmdet's ``--amp``) unless ``lambda_w=0`` asks for plain STE,
    a schedule without an SR-STE wrapper to run it, a setting given
    differently here and in the wrapper. Configs put the hook in
    ``default_hooks`` so that a derived config changes one key::

        custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)
        default_hooks = dict(
            nm_sparsity=dict(
                type='NMSparsityHook',
                sparsity=dict(pattern='2:4', exclude=['*.fc_cls']),
                lambda_w=2e-4))
        optim_wrapper = dict(type='SRSTEOptimWrapper')

    Logged under ``sparsity/`` (text log and every visualizer backend):

    - ``sad``: mask entries flipped since the last log (SAD of Zhou et al.,
      ICLR 2021), ``sad_norm``: the same divided by the number of entries;
    - ``sad_total``, ``sad_total_norm``: flips since the first sparse
      iteration;
    - ``zero_ratio``: share of zeros in the effective (masked) weights.

    With ``per_layer=True`` each layer's ``sad_norm`` and ``zero_ratio``
    are logged too. With ``verify=True`` (default) every effective weight is
    checked to hold at most N non-zeros per group; a layer that does not
    stops the run with an error naming it.

    Checkpoints: the hook registers :class:`NMCheckpointHook`, which stores
    every sparse weight masked, so the stock dense model of the config
    loads exactly the trained sparse model. Loading (``load_from``,
    ``--resume``, ``tools/test.py``) restores the dense weights SR-STE
    needs, the SAD references and frozen masks (on resume), and stops with
    a message for a file that cannot be trained from (a 2:4 inference
    checkpoint; an export given to ``--resume``).

    Pretrained weights: an N:M classifier checkpoint given as a module's
    ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
    (the ``*_nm-in1k-pretrained*`` configs) is checked when training starts:
    a missing file, or a key of the module that the checkpoint lacks or
    holds in another shape, stops the run naming the first one; the log
    says which N:M layers keep the checkpoint's masks and which it held
    dense (see :func:`mmnm.conversion.check_pretrained_init`).

    Args:
        sparsity (dict, optional): arguments of
            :func:`mmnm.conversion.sparsify_model`, e.g.
            ``dict(pattern='2:4', exclude=[...])``. Defaults to None.
        lambda_w (float, optional): SR-STE decay of the pruned weights; 0
            is plain STE. Defaults to None (the wrapper's, else 2e-4).
        sparse_start_iter (int, optional): dense iterations before the
            masks switch on. Defaults to None (the wrapper's, else 0).
        freeze_mask_iter (int, optional): iteration from which masks stay
            fixed. Defaults to None (the wrapper's, else never).
        interval (int): log every ``interval`` iterations. Defaults to 50.
        per_layer (bool): also log per-layer values. Defaults to False.
        verify (bool): check the N:M pattern when logging. Defaults to True.
        pretrained_missing_ok (Sequence[str]): patterns of module keys a
            ``Pretrained`` init_cfg's checkpoint may lack (layers the model
            adds, e.g. ``'*.conv_offset.*'``); any other missing key stops a
            training run. Defaults to None (none).
    """

    # before hooks that copy the model (EMA) and before LoggerHook writes
    priority = 'VERY_HIGH'
    checkpoint_key = NM_CHECKPOINT_KEY

    def __init__(self,
                 sparsity: Optional[dict] = None,
                 lambda_w: Optional[float] = None,
                 sparse_start_iter: Optional[int] = None,
                 freeze_mask_iter: Optional[int] = None,
                 interval: int = 50,
                 per_layer: bool = False,
                 verify: bool = True,
                 pretrained_missing_ok: Sequence[str] = None) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.sparsity = dict(sparsity) if sparsity is not None else None
        self.sr_ste = dict(
            lambda_w=lambda_w,
            sparse_start_iter=sparse_start_iter,
            freeze_mask_iter=freeze_mask_iter)
        self.interval = interval
        self.per_layer = per_layer
        self.verify = verify
        self.pretrained_missing_ok = tuple(pretrained_missing_ok or ())
        self.layers: Dict[str, NMSparseMixin] = {}
        # the sparse layers whose weight no optimizer of the run updates
        self.untrained: List[NMSparseMixin] = []
        self.start_masks: Dict[str, Tensor] = {}
        self.last_masks: Dict[str, Tensor] = {}
        # (the nm_sparsity record, resume?) of a checkpoint loaded before
        # the model was converted (FlexibleRunner loads before before_run)
        self._loaded: Optional[Tuple[dict, bool]] = None

    # ------------------------------------------------------------------
    # start of the run
    # ------------------------------------------------------------------
    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if self.sparsity is not None:
            try:
                report = sparsify_model(model, **self.sparsity)
            except TypeError as err:
                raise TypeError(f'NMSparsityHook sparsity: {err}') from None
            runner.logger.info('N:M sparsity of the model:\n' + report.table())
        self.layers = {
            layer.nm_name: layer
            for layer in find_sparse_layers(model)
        }
        if not self.layers:
            raise RuntimeError(
                f'NMSparsityHook: {type(model).__name__} has no N:M sparse '
                "layer; give the hook sparsity=dict(pattern='2:4') or build "
                "layers with conv_cfg=dict(type='SparseConv')")
        self._set_up_optim_wrappers(runner)
        if not any(
                isinstance(hook, NMCheckpointHook) for hook in runner.hooks):
            runner.register_hook(NMCheckpointHook(), priority='LOWEST')
        if _built_optim_wrappers(runner):  # training: weights get initialised
            self._check_pretrained(runner, model)
        if self._loaded is not None:
            self._restore_run_state(runner)

    def _check_pretrained(self, runner, model) -> None:
        """Stop before a ``Pretrained`` init_cfg loads a checkpoint that
        does not fit (mmengine would only warn); log what the N:M layers
        take from it."""
        for name, key, init_cfg in pretrained_inits(model):
            lines = check_pretrained_init(model, name, key, init_cfg,
                                          self.pretrained_missing_ok)
            runner.logger.info('\n'.join(lines))

    def _set_up_optim_wrappers(self, runner) -> None:
        """Hand the SR-STE settings to the SR-STE wrappers; stop if a
        wrapper that cannot run them updates sparse weights."""
        wrappers = _built_optim_wrappers(runner)
        sparse = {
            id(layer.weight): name
            for name, layer in self.layers.items()
        }
        settings = {k: v for k, v in self.sr_ste.items() if v is not None}
        trained = {
            id(p)
            for wrapper in wrappers.values()
            for group in wrapper.optimizer.param_groups
            for p in group['params'] if p.requires_grad
        }
        self.untrained = [
            layer for layer in self.layers.values()
            if id(layer.weight) not in trained
        ]
        for key, wrapper in wrappers.items():
            owned = [
                sparse[id(p)] for group in wrapper.optimizer.param_groups
                for p in group['params'] if id(p) in sparse
            ]
            if isinstance(wrapper, SRSTEMixin):
                wrapper.configure('NMSparsityHook', **settings)
                runner.logger.info(f'{key} ({type(wrapper).__name__}): '
                                   f'{wrapper.describe_settings()}')
            elif owned:
                self._check_plain_wrapper(runner, key, wrapper, owned,
                                          settings)

    @staticmethod
    def _check_plain_wrapper(runner, key: str, wrapper: OptimWrapper,
                             owned: List[str], settings: dict) -> None:
        values = dict(SR_STE_DEFAULTS, **settings)
        scheduled = [
            f'{k}={values[k]}'
            for k in ('sparse_start_iter', 'freeze_mask_iter') if values[k]
        ]
        kind = type(wrapper).__name__
        if values['lambda_w'] == 0 and not scheduled:
            runner.logger.info(f'{key} ({kind}): plain STE (lambda_w=0) for '
                               f'{len(owned)} N:M layers')
            return
        wanted = (f'SR-STE (lambda_w={values["lambda_w"]:g})'
                  if values['lambda_w'] else 'plain STE') + \
            ''.join(f', {item}' for item in scheduled)
        amp = 'AmpSRSTEOptimWrapper' if 'Amp' in kind else \
            'SRSTEOptimWrapper'
        raise RuntimeError(
            f'NMSparsityHook asks for {wanted}, but {key} ({kind}) adds no '
            f'SR-STE term and runs no schedule for its {len(owned)} N:M '
            f'layers (e.g. {owned[0]!r}). Set {key}.type={amp!r} (mmdet\'s '
            "--amp replaces the type by AmpOptimWrapper; mmnm's "
            'tools/train.py --amp keeps SR-STE), or lambda_w=0 in the '
            'NMSparsityHook (and no schedule) for plain STE.')

    # ------------------------------------------------------------------
    # training: sparsity and SAD
    # ------------------------------------------------------------------
    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        # weights no optimizer updates (a teacher, frozen stages) change
        # only through .data writes of later hooks (mean teacher, EMA)
        for layer in self.untrained:
            layer.invalidate_mask()
        masks = {
            name: layer.mask
            for name, layer in self.layers.items() if layer.mask is not None
        }
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
            layer_zeros = LayerSparsity.of(
                name, weight, layer.nm, check=False).zeros
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

    # ------------------------------------------------------------------
    # evaluation: one mask per layer, of the weights evaluated
    # ------------------------------------------------------------------
    # Hooks such as EMAHook swap weights through ``.data`` in
    # ``before_*_epoch`` and ``after_*_epoch``, which no mask cache can see:
    # the masks are recomputed at the first batch (after every swap-in)
    # and once the evaluation has ended (after every swap-back).
    def before_val_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if batch_idx == 0:
            invalidate_masks()

    def after_val(self, runner) -> None:
        invalidate_masks()

    def before_test_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None) -> None:
        if batch_idx == 0:
            invalidate_masks()

    def after_test(self, runner) -> None:
        invalidate_masks()

    # ------------------------------------------------------------------
    # checkpoints
    # ------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """The SAD references; the weights are NMCheckpointHook's."""
        record = checkpoint.setdefault(self.checkpoint_key, {})
        record['sad'] = {
            name:
            dict(
                shape=list(mask.shape),
                start=pack_mask(mask),
                last=pack_mask(self.last_masks[name]))
            for name, mask in self.start_masks.items()
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Check the file can be trained from, restore its dense weights
        (before EMAHook moves them), and the run state on resume."""
        source = _checkpoint_source(runner)
        resume = bool(getattr(runner, '_resume', False))
        _check_trainable(checkpoint, source, resume)
        version = decode_nm_checkpoint(checkpoint, source)
        if version == 0:
            runner.logger.warning(
                f'{source} was written by mmnm before checkpoint format 1: '
                'its state_dict holds the dense SR-STE weights (the stock '
                'inference APIs see no N:M model in it). mmnm loads them as '
                'they are; checkpoints this run writes are N:M.')
        self._loaded = (checkpoint.get(self.checkpoint_key) or {}, resume)
        if self.layers:
            self._restore_run_state(runner)

    def _restore_run_state(self, runner) -> None:
        """On resume: the SAD references and the frozen masks."""
        record, resume = self._loaded
        self._loaded = None
        if not resume:
            return  # SAD references belong to the run they came from
        # mmnm before format 1 kept only the SAD references, by layer name
        legacy = 'format' not in record and 'sad' not in record
        sad = record if legacy else record.get('sad', {})
        for name, entry in sad.items():
            if name not in self.layers:
                continue  # a layer this model does not make sparse
            layer = self._layer_of_shape(name, entry['shape'])
            device = layer.weight.device
            self.start_masks[name] = unpack_mask(entry['start'],
                                                 entry['shape']).to(device)
            self.last_masks[name] = unpack_mask(entry['last'],
                                                entry['shape']).to(device)
        for name, info in ({} if legacy else record.get('layers', {})).items():
            if info.get('state') == 'frozen' and name in self.layers:
                layer = self._layer_of_shape(name, info['shape'])
                layer.set_frozen_mask(
                    unpack_mask(info['frozen_mask'], info['shape']))

    def _layer_of_shape(self, name: str, shape: List[int]) -> NMSparseMixin:
        layer = self.layers[name]
        if torch.Size(shape) != layer.weight.shape:
            raise ValueError(
                f'checkpoint key {self.checkpoint_key!r}: mask of layer '
                f'{name!r} has shape {tuple(shape)}, the layer '
                f'{tuple(layer.weight.shape)}')
        return layer


def _built_optim_wrappers(runner) -> Dict[str, OptimWrapper]:
    """The optim wrappers of a training run by config key; none in a
    validation or test run (they stay configs there)."""
    wrapper = getattr(runner, 'optim_wrapper', None)
    if isinstance(wrapper, OptimWrapperDict):
        return {
            f'optim_wrapper.{key}': value
            for key, value in wrapper.items()
        }
    if isinstance(wrapper, OptimWrapper):
        return {'optim_wrapper': wrapper}
    return {}


def _checkpoint_source(runner) -> str:
    """The file a runner is loading, for messages."""
    resume = getattr(runner, '_resume', False)
    if isinstance(resume, str):
        return resume  # FlexibleRunner(resume=PATH)
    load_from = getattr(runner, '_load_from', None)
    if load_from:
        return load_from
    if resume:
        return find_latest_checkpoint(runner.work_dir) or \
            'the latest checkpoint'
    return 'the loaded checkpoint'


def _check_trainable(checkpoint: dict, source: str, resume: bool) -> None:
    """Stop before a run would train from the wrong weights."""
    state = checkpoint.get('state_dict', checkpoint)
    if isinstance(state, dict) and sparse24_layer_names(state):
        raise ValueError(
            f'{source} is a 2:4 inference checkpoint (compressed weights, '
            'from tools/deploy/convert_sparse24.py): it holds no weights an '
            'N:M model can load or train. Use the training checkpoint it came '
            'from (iter_*.pth / epoch_*.pth) or its N:M export; run it with '
            'mmnm.apis.load_sparse24_model.')
    meta = checkpoint.get('meta') or {}
    if resume and 'nm_patterns' in meta and 'message_hub' not in checkpoint:
        raise ValueError(
            f'{source} is an N:M export (masked weights, no optimizer or '
            'training state) and cannot be resumed. Resume from the '
            'training checkpoint it was exported from, or fine-tune from it '
            f'with load_from={source!r} and no --resume.')
