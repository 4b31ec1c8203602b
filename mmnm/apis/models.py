"""Models from configs: dense, N:M sparse as the config says, with a
checkpoint loaded strictly (the mmnm counterpart of mmdet's
``init_detector`` / mmseg's ``init_model``)."""
import contextlib
import os
import os.path as osp
from typing import Iterator, Optional, Union

import torch
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch import nn

from mmnm.conversion import SparsityReport, sparsify_model
from .config import ConfigType, config_sparsity, load_config


def build_model(config: ConfigType,
                cfg_options: Optional[dict] = None) -> nn.Module:
    """The model of ``config`` as the config builds it (dense, unless it
    names sparse layers itself), with the config's top-level
    ``data_preprocessor`` (mmpretrain's configs put it there) as the Runner
    gives it."""
    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope'))
    model = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model)


def build_sparse_model(config: ConfigType,
                       cfg_options: Optional[dict] = None,
                       return_report: bool = False):
    """The model of ``config``, made N:M sparse as its ``NMSparsityHook``
    says (what a training run does in ``before_run``).

    Returns:
        The model, or ``(model, SparsityReport)`` with ``return_report``.

    Raises:
        ValueError: the config has no ``NMSparsityHook`` with ``sparsity``.
    """
    cfg = load_config(config, cfg_options)
    sparsity = config_sparsity(cfg)
    if sparsity is None:
        name = config if isinstance(config, str) else cfg.filename
        raise ValueError(f'{name}: no NMSparsityHook with `sparsity` in '
                         'default_hooks or custom_hooks, so no layer is N:M '
                         'sparse')
    model = build_model(cfg)
    report: SparsityReport = sparsify_model(model, **sparsity)
    return (model, report) if return_report else model


def load_weights(model: nn.Module,
                 checkpoint: str,
                 model_name: Optional[str] = None) -> nn.Module:
    """Load ``checkpoint`` strictly into ``model`` (on the CPU);
    ``model_name`` (default: its type) is what messages call the model.

    Raises:
        FileNotFoundError: no such file.
        ValueError: it does not load (unreadable, keys or shapes differ);
            the message names the file and what differs.
    """
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {checkpoint}')
    try:
        load_checkpoint(
            model,
            checkpoint,
            map_location='cpu',
            strict=True,
            logger='silent')
    except Exception as err:  # noqa: B902 (unpickling, keys, shapes, ...)
        raise ValueError(f'{checkpoint}: does not load into '
                         f'{model_name or type(model).__name__}: '
                         f'{type(err).__name__}: {err}') from None
    return model


def check_output_file(out: str) -> None:
    """Raise ``IsADirectoryError`` before any work if ``out`` is a folder."""
    if osp.isdir(out):
        raise IsADirectoryError(f'{out}: is a folder; give the file to write')


@contextlib.contextmanager
def writing(out: str) -> Iterator[None]:
    """Create the folder of ``out``, and turn the ``RuntimeError`` of a
    failed ``torch.save`` into an ``OSError`` naming ``out``."""
    check_output_file(out)
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    try:
        yield
    except RuntimeError as err:
        raise OSError(f'{out}: cannot write the checkpoint: {err}') from None


def init_nm_model(config: ConfigType,
                  checkpoint: Optional[str] = None,
                  device: Union[str, torch.device] = 'cpu',
                  cfg_options: Optional[dict] = None) -> nn.Module:
    """The model of ``config`` for inference: N:M sparse if the config has
    an ``NMSparsityHook`` (dense otherwise), SyncBN reverted, ``checkpoint``
    loaded strictly, in eval mode on ``device``.

    Example:
        >>> from mmnm.apis import init_nm_model, verify_nm_sparsity
        >>> model = init_nm_model(
        ...     'configs/demo/mask-rcnn_r18_fpn_2-4_shapes-64x64.py',
        ...     'work_dirs/demo/.../iter_300.pth')
        >>> layers = verify_nm_sparsity(model)
    """
    cfg = load_config(config, cfg_options)
    model = build_sparse_model(cfg) if config_sparsity(cfg) else \
        build_model(cfg)
    model = revert_sync_batchnorm(model)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.to(device).eval()
