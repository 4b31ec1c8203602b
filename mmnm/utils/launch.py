"""What the tools share: common arguments, the config with the command
line applied, the runner, and the sparse model of a config."""
import argparse
import os
import os.path as osp
from typing import Dict, Optional, Union

from mmengine.config import Config, DictAction
from mmengine.registry import MODELS, RUNNERS, init_default_scope
from mmengine.runner import Runner
from torch import nn

from mmnm.conversion import sparsify_model
from .dist import prepare_cpu_distributed

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher``, ``--local-rank``."""
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. '
        'default_hooks.nm_sparsity.sparsity.pattern=4:8')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args: argparse.Namespace) -> Config:
    """``args.config`` with the common arguments applied; the work dir
    defaults to ``./work_dirs/<config name>``."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def check_data_roots(cfg: Config, loaders=LOADERS) -> None:
    """Stop with the config key and path when a dataset folder is missing,
    before any model is built."""
    for key in loaders:
        dataset = (cfg.get(key) or {}).get('dataset') or {}
        root = dataset.get('data_root')
        if root and not osp.isdir(root):
            raise SystemExit(f'{key}.dataset.data_root: no such folder '
                             f'{root!r} (set it with --cfg-options '
                             f'{key}.dataset.data_root=PATH)')


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


def build_runner(cfg: Config) -> Runner:
    """The runner of ``cfg`` (``runner_type`` honoured), after the CPU
    torchrun set-up where it applies."""
    prepare_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


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


def build_model(config: Union[str, Config]) -> nn.Module:
    """The (dense) model of ``config``, a path or a loaded config."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    init_default_scope(cfg.get('default_scope'))
    return MODELS.build(cfg.model)


def build_sparse_model(config: Union[str, Config]) -> nn.Module:
    """The model of ``config``, made sparse as its ``NMSparsityHook`` says
    (for tools that work on checkpoints without a runner)."""
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    sparsity = config_sparsity(cfg)
    if sparsity is None:
        name = config if isinstance(config, str) else cfg.filename
        raise SystemExit(f'{name}: no NMSparsityHook with `sparsity` in '
                         'default_hooks or custom_hooks, so no layer is N:M '
                         'sparse')
    model = build_model(cfg)
    sparsify_model(model, **sparsity)
    return model
