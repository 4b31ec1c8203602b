"""Configs: load one, find its N:M set-up, derive its stock dense twin,
check and redirect its data folders."""
import os.path as osp
from typing import Dict, Optional, Sequence, Union

from mmengine.config import Config

#: The dataloader keys of an OpenMMLab config.
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')

ConfigType = Union[str, Config]


def load_config(config: ConfigType,
                cfg_options: Optional[dict] = None) -> Config:
    """``config`` (a path or a loaded config; a loaded one is copied) with
    ``cfg_options`` (``--cfg-options`` style keys) merged in.

    Raises:
        FileNotFoundError: no config file at the path.
    """
    if isinstance(config, Config):
        cfg = config.copy()
    else:
        if not osp.isfile(config):
            raise FileNotFoundError(f'config not found: {config}')
        cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def sparsity_hook_cfgs(cfg: Config) -> Dict[str, dict]:
    """The ``NMSparsityHook`` entries of ``cfg`` by where they stand:
    ``default_hooks.<name>`` (where mmnm's configs put it, so derived
    configs change single keys) or ``custom_hooks.<index>``."""
    found = {
        f'default_hooks.{name}': hook
        for name, hook in (cfg.get('default_hooks') or {}).items()
        if isinstance(hook, dict) and hook.get('type') == 'NMSparsityHook'
    }
    found.update({
        f'custom_hooks.{index}': hook
        for index, hook in enumerate(cfg.get('custom_hooks') or [])
        if hook.get('type') == 'NMSparsityHook'
    })
    return found


def config_sparsity(cfg: Config) -> Optional[dict]:
    """The ``sparsity`` of the config's ``NMSparsityHook``, or ``None``."""
    hooks = [
        hook for hook in sparsity_hook_cfgs(cfg).values()
        if hook.get('sparsity')
    ]
    return hooks[0]['sparsity'] if hooks else None


def without_sparsity(cfg: Config) -> Config:
    """A copy of ``cfg`` without its ``NMSparsityHook``: the stock dense
    model and run of the config."""
    dense = cfg.copy()
    for where in sparsity_hook_cfgs(cfg):
        group, key = where.split('.')
        if group == 'default_hooks':
            dense.default_hooks = {
                k: v
                for k, v in dense.default_hooks.items() if k != key
            }
    dense.custom_hooks = [
        hook for hook in dense.get('custom_hooks') or []
        if hook.get('type') != 'NMSparsityHook'
    ]
    return dense


def check_data_roots(cfg: Config, loaders: Sequence[str] = LOADERS) -> None:
    """Raise ``FileNotFoundError`` naming the config key and the path when
    a dataset folder of ``loaders`` is missing, before any model is built."""
    for key in loaders:
        dataset = (cfg.get(key) or {}).get('dataset') or {}
        root = dataset.get('data_root')
        if root and not osp.isdir(root):
            raise FileNotFoundError(
                f'{key}.dataset.data_root: no such folder {root!r} (set it '
                f'with --cfg-options {key}.dataset.data_root=PATH)')


def redirect_data_root(cfg: Config, root: str) -> None:
    """Point every dataloader of ``cfg``, and every evaluator annotation file
    under the config's ``data_root``, to ``root`` instead."""
    old = cfg.get('data_root')
    for key in LOADERS:
        if cfg.get(key):
            cfg[key].dataset.data_root = root
    for key in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(key) or []
        if isinstance(evaluators, dict):
            evaluators = [evaluators]
        for evaluator in evaluators:
            ann_file = evaluator.get('ann_file')
            if old and ann_file and ann_file.startswith(old):
                evaluator['ann_file'] = root + ann_file[len(old):]
    cfg.data_root = root
