"""Small models and data for tests that drive mmengine's real Runner."""
import uuid
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from torch import nn
from torch.utils.data import Dataset

from mmnm.layers import NMSparseMixin


@MODELS.register_module(force=True)
class ToyConvNet(BaseModel):
    """Conv -> conv -> linear regression net; no BatchNorm, so gradients of
    a split batch average to those of the whole batch."""

    def __init__(self,
                 dtype: str = 'float32',
                 conv_cfg: Optional[dict] = None,
                 frozen_head: bool = False) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        # conv_cfg=dict(type='SparseConv'): built N:M sparse, no hook needed
        self.conv = build_conv_layer(conv_cfg, 8, 16, 3, padding=1)
        self.head = nn.Linear(16, 4)
        self.head.requires_grad_(not frozen_head)
        self.to(getattr(torch, dtype))

    def forward(self, inputs, targets=None, mode='loss'):
        inputs = torch.stack(inputs) if isinstance(inputs, list) else inputs
        inputs = inputs.to(self.head.weight.dtype)
        features = F.relu(self.conv(F.relu(self.stem(inputs))))
        out = self.head(features.mean((2, 3)))
        if mode == 'loss':
            targets = torch.stack(targets) if isinstance(targets,
                                                         list) else targets
            return dict(loss=F.mse_loss(out, targets.to(out.dtype)))
        return out


@DATASETS.register_module(force=True)
class ToyDataset(Dataset):
    """Deterministic random images and regression targets."""

    def __init__(self, length: int = 16, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(length, 3, 6, 6, generator=gen)
        self.targets = torch.randn(length, 4, generator=gen) * 3

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=self.inputs[index], targets=self.targets[index])


@METRICS.register_module(force=True)
class ToyMSE(BaseMetric):
    """Mean squared error of :class:`ToyConvNet`'s predictions."""

    def process(self, data_batch, data_samples) -> None:
        targets = torch.stack(data_batch['targets'])
        self.results.append(
            float(
                F.mse_loss(
                    torch.stack(data_samples).float(),
                    targets,
                    reduction='sum')))

    def compute_metrics(self, results) -> dict:
        return dict(mse=sum(results))


def toy_runner_cfg(work_dir: str, max_iters: int = 6, **overrides) -> dict:
    """Config of an iteration-based sparse run of :class:`ToyConvNet`."""
    cfg = dict(
        model=dict(type='ToyConvNet'),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=dict(type='ToyDataset'),
            batch_size=4,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True, seed=0)),
        optim_wrapper=dict(
            type='SRSTEOptimWrapper',
            lambda_w=2e-4,
            optimizer=dict(type='SGD', lr=0.5, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        custom_hooks=[
            dict(
                type='NMSparsityHook',
                interval=2,
                sparsity=dict(pattern='2:4'))
        ],
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=2),
            checkpoint=dict(type='CheckpointHook', interval=2,
                            by_epoch=False)),
        randomness=dict(seed=0),
        env_cfg=dict(dist_cfg=dict(backend='gloo')),
        default_scope=None,
        # runners share the MessageHub of their experiment name, which
        # defaults to the start second: keep the runs of one test apart
        experiment_name=f'toy-{uuid.uuid4().hex}',
    )
    cfg.update(overrides)
    return cfg


class MaskRecorder(Hook):
    """Copies every sparse layer's mask after each training iteration."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.masks = []

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None):
        self.masks.append({
            name: module.mask.clone()
            for name, module in runner.model.named_modules()
            if isinstance(module, NMSparseMixin)
        })
