"""Test helper imported by a config (``custom_imports``): each rank saves the
masks of its sparse layers when the run ends, so a test can compare ranks."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmnm.conversion import find_sparse_layers
from mmnm.registry import HOOKS


@HOOKS.register_module()
class SaveRankMasksHook(Hook):
    """Writes ``masks_rank<rank>.pth``: ``{layer name: mask}`` of the final
    weights."""

    def after_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        masks = {layer.nm_name: layer.update_mask().cpu()
                 for layer in find_sparse_layers(model)}
        torch.save(masks,
                   osp.join(runner.work_dir, f'masks_rank{get_rank()}.pth'))
