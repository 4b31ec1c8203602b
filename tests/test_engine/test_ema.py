"""N:M sparsity with mmdet's EMAHook (ExpMomentumEMA, as RTMDet trains):
the real RTMDet-tiny config trained a few iterations on the demo data. The
averaged weights, which are validated, tested and saved, are N:M in every
weight set of the checkpoint; the stock API computes what was validated;
resuming restores both weight sets exactly."""
import copy
import os.path as osp
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import EMAHook
from mmengine.runner import Runner

import mmnm
from mmnm.apis import redirect_data_root
from mmnm.conversion import check_nm_state_dict, sparse_weight_patterns

REPO = osp.dirname(osp.dirname(mmnm.__file__))
CONFIG = osp.join(REPO, 'configs', 'demo', 'rtmdet-tiny_2-4_shapes-64x64.py')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from mmnm.datasets import generate_shapes_dataset
    root = tmp_path_factory.mktemp('shapes')
    generate_shapes_dataset(str(root), splits={'train': 8, 'val': 4})
    return str(root)


def rtmdet_cfg(work_dir, data_root, iters, **extra) -> Config:
    cfg = Config.fromfile(CONFIG)
    redirect_data_root(cfg, data_root)
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = 1000  # no validation inside these runs
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 1
    cfg.train_dataloader.batch_size = 2
    cfg.param_scheduler = []
    # an average far from the raw weights, so both weight sets differ
    cfg.custom_hooks[0].update(momentum=0.5, gamma=1)
    cfg.experiment_name = f'rtmdet-{uuid.uuid4().hex}'
    cfg.merge_from_dict(extra)
    return cfg


def ema_hook(runner) -> EMAHook:
    return next(h for h in runner.hooks if isinstance(h, EMAHook))


def test_ema_weights_are_nm_everywhere_and_resume_exactly(tmp_path, data_root):
    cfg = rtmdet_cfg(tmp_path / 'full', data_root, iters=3)
    runner = Runner.from_cfg(copy.deepcopy(cfg))
    runner.train()
    sparsity = next(
        h for h in runner.hooks if type(h).__name__ == 'NMSparsityHook')
    assert len(sparsity.layers) > 40
    # every key of RTMDet's shared head convs included
    patterns = sparse_weight_patterns(runner.model)
    assert len(patterns) > len(sparsity.layers)

    path = osp.join(cfg.work_dir, 'iter_3.pth')
    checkpoint = torch.load(path)
    check_nm_state_dict(checkpoint['state_dict'], patterns)  # raises if not
    raw = {
        k[len('module.'):]: v
        for k, v in checkpoint['ema_state_dict'].items()
        if k.startswith('module.')
    }
    check_nm_state_dict(raw, patterns)
    assert any(not torch.equal(checkpoint['state_dict'][key], raw[key])
               for key in patterns), 'EMA and raw weights should differ'

    # what validation runs: the model with the EMA weights swapped in
    from mmdet.apis import init_detector
    stock = init_detector(cfg, path, device='cpu')
    assert not any(
        type(m).__name__.startswith('Sparse') for m in stock.modules())
    model = runner.model.eval()
    batch = model.data_preprocessor(
        dict(inputs=[
            torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)
            for _ in range(2)
        ]), False)
    ema_hook(runner).before_val_epoch(runner)
    validated = model(batch['inputs'], mode='tensor')
    ema_hook(runner).after_val_epoch(runner)
    served = stock(batch['inputs'], mode='tensor')
    for ours, theirs in zip(
            sum(map(list, validated), []), sum(map(list, served), [])):
        assert torch.equal(ours, theirs)

    # resume from iteration 2: both weight sets come back dense and exact
    part = rtmdet_cfg(tmp_path / 'part', data_root, iters=2)
    Runner.from_cfg(copy.deepcopy(part)).train()
    resumed = Runner.from_cfg(
        rtmdet_cfg(
            tmp_path / 'part',
            data_root,
            iters=3,
            resume=True,
            load_from=osp.join(part.work_dir, 'iter_2.pth')))
    resumed.train()
    full_ema = ema_hook(runner).ema_model.state_dict()
    for key, value in ema_hook(resumed).ema_model.state_dict().items():
        assert torch.equal(value, full_ema[key]), key
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, runner.model.state_dict()[key]), key
