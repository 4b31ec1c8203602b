"""Runs from configs: the runner of a config, and the evaluation of a
checkpoint, N:M or 2:4, with the config's own metric."""
from typing import Dict, Optional

from mmengine.config import Config
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmnm.deploy import load_sparse24_checkpoint
from mmnm.utils import prepare_cpu_distributed
from .config import ConfigType, load_config, without_sparsity
from .models import load_weights


def build_runner(cfg: Config) -> Runner:
    """The runner of ``cfg`` (``runner_type`` honoured), after the CPU
    torchrun set-up where it applies."""
    prepare_cpu_distributed(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def evaluate_checkpoint(
        config: ConfigType,
        checkpoint: str,
        sparse24: bool = False,
        stock_model: bool = False,
        experiment_name: Optional[str] = None,
        cfg_options: Optional[dict] = None) -> Dict[str, float]:
    """The test metrics of ``checkpoint`` on the config's test set.

    Args:
        checkpoint: a training checkpoint, an N:M export or (``sparse24``)
            a compressed 2:4 checkpoint; loaded strictly.
        sparse24: load it as a 2:4 inference model (the stock dense model
            of the config with its 2:4 layers in place).
        stock_model: evaluate in the stock dense model of the config (its
            ``NMSparsityHook`` removed), as mmdet's / mmseg's own tools
            would; implied by ``sparse24``.
        experiment_name: the run's name in the work dir.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_weights` /
            :func:`mmnm.deploy.load_sparse24_checkpoint`.
    """
    cfg = load_config(config, cfg_options)
    if stock_model or sparse24:
        cfg = without_sparsity(cfg)
    if experiment_name:
        cfg.experiment_name = experiment_name
    # nothing but the named file may be loaded (test() would load these)
    cfg.load_from, cfg.resume = None, False
    runner = build_runner(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else \
        runner.model
    if sparse24:
        load_sparse24_checkpoint(model, checkpoint)
    else:
        load_weights(model, checkpoint)
    return runner.test()
