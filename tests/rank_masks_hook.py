"""Test helper imported by a config (``custom_imports``): each rank records
the masks its sparse layers used in every training iteration, so a test can
compare ranks."""
import os.path as osp

import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmnm.conversion import find_sparse_layers
from mmnm.registry import HOOKS


@HOOKS.register_module()
class SaveRankMasksHook(Hook):
    """Writes ``masks_rank<rank>.pth``: one ``{layer name: mask}`` per
    training iteration (the mask of that iteration's forward), and the masks
    of the final weights under ``'final'``."""

    def before_run(self, runner) -> None:
        self.per_iter = []

    def _layers(self, runner):
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        return find_sparse_layers(model)

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        self.per_iter.append({
            layer.nm_name: layer.mask.detach().cpu()
            for layer in self._layers(runner)
        })

    def after_run(self, runner) -> None:
        final = {
            layer.nm_name: layer.update_mask().cpu()
            for layer in self._layers(runner)
        }
        torch.save(
            dict(per_iter=self.per_iter, final=final),
            osp.join(runner.work_dir, f'masks_rank{get_rank()}.pth'))
