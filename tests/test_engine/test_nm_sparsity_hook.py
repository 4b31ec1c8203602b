"""NMSparsityHook with mmengine's real Runner on a small model: SAD values
against masks recorded independently, N:M verification, resume."""
import copy
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from toy_models import MaskRecorder, toy_runner_cfg


def flips(a: dict, b: dict) -> int:
    return sum(int((a[name] != b[name]).sum()) for name in a)


def build_runner(cfg: dict, *hooks: Hook):
    runner = Runner.from_cfg(Config(copy.deepcopy(cfg)))
    for hook in hooks:
        runner.register_hook(hook)
    return runner


def history(runner, key: str) -> list:
    return list(
        runner.message_hub.get_scalar(f'train/sparsity/{key}')._log_history)


def test_logged_sad_matches_recorded_masks(tmp_path):
    recorder = MaskRecorder()
    cfg = toy_runner_cfg(str(tmp_path), max_iters=6)
    cfg['custom_hooks'][0]['per_layer'] = True
    runner = build_runner(cfg, recorder)
    runner.train()

    masks = recorder.masks  # masks[i]: after iteration i + 1
    entries = sum(mask.numel() for mask in masks[0].values())
    expected_sad = [
        flips(masks[1], masks[0]),
        flips(masks[3], masks[1]),
        flips(masks[5], masks[3])
    ]
    expected_total = [flips(masks[i], masks[0]) for i in (1, 3, 5)]
    assert expected_total[-1] > 0, 'the run should flip some mask entries'
    assert history(runner, 'sad') == expected_sad
    assert history(runner, 'sad_total') == expected_total
    assert history(runner, 'sad_norm') == pytest.approx(
        [s / entries for s in expected_sad])
    assert history(runner, 'sad_total_norm') == pytest.approx(
        [s / entries for s in expected_total])
    # 2:4 masks: at least half of each effective weight is zero
    assert all(z >= 0.5 for z in history(runner, 'zero_ratio'))
    conv_mask = masks[5]['conv']
    assert history(runner, 'conv/sad_norm')[-1] == pytest.approx(
        int((conv_mask != masks[3]['conv']).sum()) / conv_mask.numel())
    # the values reach the log file that LoggerHook writes ...
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'sparsity/sad_total' in log and 'sparsity/zero_ratio' in log
    # ... and the visualizer backends (LocalVisBackend: scalars.json)
    scalars = [
        json.loads(line)
        for line in open(osp.join(runner.log_dir, 'vis_data', 'scalars.json'))
    ]
    logged = [
        row['sparsity/sad_total'] for row in scalars
        if 'sparsity/sad_total' in row
    ]
    assert logged == expected_total


def test_non_nm_weight_stops_the_run_naming_the_layer(tmp_path, monkeypatch):
    runner = build_runner(toy_runner_cfg(str(tmp_path), max_iters=2))
    # a broken mask op (keeps everything) must not go unnoticed
    from mmnm.ops import MaskedWeightBuffer
    real_update = MaskedWeightBuffer.update

    def keep_all_in_conv(buffer, name=None, *args):
        if name != "layer 'conv'":
            return real_update(buffer, name, *args)
        buffer.masked.copy_(buffer.weight)
        return torch.ones_like(buffer.weight, dtype=torch.bool), buffer.masked

    # ... also where the fused SGD step computes the next mask
    real_written = MaskedWeightBuffer.written_by_kernel
    conv_weight = runner.model.conv.weight

    def keep_all_of_conv_in_step(buffer, finite):
        real_written(buffer, finite)
        if buffer.weight.data_ptr() == conv_weight.data_ptr():
            buffer.mask.fill_(True)
            buffer.masked.copy_(buffer.weight)

    monkeypatch.setattr(MaskedWeightBuffer, 'update', keep_all_in_conv)
    monkeypatch.setattr(MaskedWeightBuffer, 'written_by_kernel',
                        keep_all_of_conv_in_step)
    with pytest.raises(RuntimeError, match=r"layer 'conv' is not 2:4"):
        runner.train()


def test_resume_continues_sad_and_reproduces_masks(tmp_path):
    full_recorder, resumed_recorder = MaskRecorder(), MaskRecorder()
    full_cfg = toy_runner_cfg(str(tmp_path / 'full'), max_iters=6)
    full = build_runner(full_cfg, full_recorder)
    full.train()

    # a run stopped after iteration 4 (its last checkpoint), then resumed
    short = build_runner(toy_runner_cfg(str(tmp_path / 'part'), max_iters=4))
    short.train()
    resumed_cfg = toy_runner_cfg(
        str(tmp_path / 'part'),
        max_iters=6,
        resume=True,
        load_from=str(tmp_path / 'part' / 'iter_4.pth'))
    resumed = build_runner(resumed_cfg, resumed_recorder)
    resumed.train()

    assert len(resumed_recorder.masks) == 2  # iterations 5 and 6
    for name, mask in full_recorder.masks[-1].items():
        assert torch.equal(resumed_recorder.masks[-1][name], mask), name
    assert history(resumed, 'sad_total')[-1] == history(full, 'sad_total')[-1]
    assert history(resumed, 'sad')[-1] == history(full, 'sad')[-1]
