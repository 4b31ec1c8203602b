"""Checkpoints of an mmnm run with mmengine's real Runner: the stock dense
model loads exactly the trained sparse model; load_from and resume get the
dense SR-STE weights back; files that cannot be trained from stop the run
with a message naming them."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import FlexibleRunner, Runner
from nm_reference import reference_mask
from toy_models import MaskRecorder, ToyConvNet, toy_runner_cfg

from mmnm.conversion import (export_state_dict, save_nm_checkpoint,
                             sparse_weight_patterns, unpack_mask)
from mmnm.layers import NMSparseMixin

SPARSE_KEYS = ('conv.weight', 'head.weight')


def build(cfg: dict, *hooks: Hook, runner_type=Runner):
    runner = runner_type.from_cfg(Config(copy.deepcopy(cfg)))
    for hook in hooks:
        runner.register_hook(hook)
    return runner


class ParamRecorder(Hook):
    """The model's parameters when training starts (after any loading)."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        self.params = {
            k: v.detach().clone()
            for k, v in runner.model.named_parameters()
        }


def trained(tmp_path, iters=2, **overrides):
    runner = build(toy_runner_cfg(str(tmp_path), max_iters=iters, **overrides))
    runner.train()
    return runner


def test_checkpoint_is_the_trained_sparse_model_for_the_stock_model(tmp_path):
    runner = trained(tmp_path)
    model = runner.model
    checkpoint = torch.load(osp.join(tmp_path, 'iter_2.pth'))
    state = checkpoint['state_dict']
    for key in SPARSE_KEYS:
        dense = model.get_parameter(key).detach()
        expected = dense * reference_mask(dense)
        assert torch.equal(state[key], expected), key
        # the run trained dense weights: the pruned ones are not zero
        assert (dense[~reference_mask(dense)] != 0).all(), key

    stock = ToyConvNet()  # no mmnm layer, no hook
    stock.load_state_dict(state, strict=True)
    inputs = torch.randn(5, 3, 6, 6)
    model.eval()
    assert torch.equal(
        stock(inputs, mode='tensor'), model(inputs, mode='tensor'))


def test_load_from_restores_the_dense_weights(tmp_path):
    first = trained(tmp_path / 'a')
    dense = {k: v.detach().clone() for k, v in first.model.named_parameters()}
    recorder = ParamRecorder()
    second = build(
        toy_runner_cfg(
            str(tmp_path / 'b'),
            max_iters=1,
            load_from=str(tmp_path / 'a' / 'iter_2.pth')), recorder)
    second.train()
    for key, value in dense.items():
        assert torch.equal(recorder.params[key], value), key


def test_dense_checkpoint_in_load_from_gives_its_own_masks(tmp_path):
    """Prune-then-fine-tune: a plain dense checkpoint, masks from it."""
    plain = ToyConvNet()
    path = str(tmp_path / 'dense.pth')
    torch.save(dict(state_dict=plain.state_dict()), path)
    recorder = MaskRecorder()
    runner = build(
        toy_runner_cfg(str(tmp_path), max_iters=1, load_from=path), recorder)
    runner.train()
    assert torch.equal(recorder.masks[0]['conv'],
                       reference_mask(plain.conv.weight.detach()))
    assert torch.equal(recorder.masks[0]['head'],
                       reference_mask(plain.head.weight.detach()))


def test_legacy_checkpoint_resumes_as_the_uninterrupted_run(tmp_path):
    full_recorder, recorder = MaskRecorder(), MaskRecorder()
    build(toy_runner_cfg(str(tmp_path / 'full'), max_iters=3),
          full_recorder).train()
    trained(tmp_path / 'old')
    # what mmnm wrote before format 1: dense weights, SAD references only
    new = torch.load(tmp_path / 'old' / 'iter_2.pth')
    old = copy.deepcopy(new)
    record = old.pop('nm_sparsity')
    for set_key, pruned in record['pruned'].items():
        for name, entry in pruned.items():
            key = f'{name}.weight'
            mask = unpack_mask(entry['mask'], old[set_key][key].shape)
            old[set_key][key] = old[set_key][key].clone()
            old[set_key][key][~mask] = entry['values']
    old['nm_sparsity'] = record['sad']
    legacy = str(tmp_path / 'old' / 'legacy.pth')
    torch.save(old, legacy)

    resumed = build(
        toy_runner_cfg(
            str(tmp_path / 'old'), max_iters=3, resume=True, load_from=legacy),
        recorder)
    resumed.train()
    log = open(osp.join(resumed.log_dir, f'{resumed.timestamp}.log')).read()
    assert 'before checkpoint format 1' in log and 'legacy.pth' in log
    for name, mask in full_recorder.masks[-1].items():
        assert torch.equal(recorder.masks[-1][name], mask), name


def test_export_cannot_be_resumed_but_fine_tunes(tmp_path):
    runner = trained(tmp_path)
    export = str(tmp_path / 'export.pth')
    save_nm_checkpoint(
        export_state_dict(runner.model), sparse_weight_patterns(runner.model),
        export)
    resumed = build(
        toy_runner_cfg(
            str(tmp_path), max_iters=3, resume=True, load_from=export))
    with pytest.raises(
            ValueError, match=f'{export} is an N:M export.*'
            'cannot be resumed'):
        resumed.train()
    assert not osp.exists(tmp_path / 'iter_3.pth')
    # fine-tuning from it (load_from without resume) is what it is for
    recorder = MaskRecorder()
    build(
        toy_runner_cfg(str(tmp_path / 'ft'), max_iters=1, load_from=export),
        recorder).train()
    conv = torch.load(export)['state_dict']['conv.weight']
    assert torch.equal(recorder.masks[0]['conv'], reference_mask(conv))


def test_flexible_runner_writes_and_resumes_nm_checkpoints(tmp_path):
    """FlexibleRunner loads a checkpoint before before_run, i.e. before the
    hook converts the model: resuming must still get the dense weights."""
    full = MaskRecorder()
    build(
        toy_runner_cfg(str(tmp_path / 'full'), max_iters=3),
        full,
        runner_type=FlexibleRunner).train()
    part = build(
        toy_runner_cfg(str(tmp_path / 'part'), max_iters=2),
        runner_type=FlexibleRunner)
    part.train()
    state = torch.load(tmp_path / 'part' / 'iter_2.pth')['state_dict']
    conv = part.model.conv.weight.detach()
    assert torch.equal(state['conv.weight'], conv * reference_mask(conv))
    recorder = MaskRecorder()
    build(
        toy_runner_cfg(
            str(tmp_path / 'part'),
            max_iters=3,
            resume=str(tmp_path / 'part' / 'iter_2.pth')),
        recorder,
        runner_type=FlexibleRunner).train()
    for name, mask in full.masks[-1].items():
        assert torch.equal(recorder.masks[-1][name], mask), name


# --------------------------------------------------------------------------
# One set-up, checked as one
# --------------------------------------------------------------------------
def with_hook(tmp_path, max_iters=2, optim_type=None, **hook):
    cfg = toy_runner_cfg(str(tmp_path), max_iters=max_iters)
    cfg['custom_hooks'][0].update(hook)
    if optim_type is not None:
        cfg['optim_wrapper'] = dict(
            type=optim_type, optimizer=cfg['optim_wrapper']['optimizer'])
    return cfg


def test_plain_optim_wrapper_stops_the_run(tmp_path):
    runner = build(with_hook(tmp_path, optim_type='OptimWrapper'))
    with pytest.raises(
            RuntimeError,
            match=r"SR-STE \(lambda_w=0.0002\), "
            r"but optim_wrapper \(OptimWrapper\) adds no SR-STE "
            r"term.*'conv'.*optim_wrapper.type='SRSTEOptimWrapper'"
            r'.*lambda_w=0'):
        runner.train()
    assert not osp.exists(tmp_path / 'iter_1.pth')


def test_amp_optim_wrapper_stops_the_run_naming_the_amp_sr_ste_one(
        tmp_path, monkeypatch):
    """What mmdet's or mmseg's --amp would make of an SR-STE config whose
    wrapper type was plain: AmpOptimWrapper (built here without a GPU)."""
    monkeypatch.setattr(
        'mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available',
        lambda: True)
    runner = build(with_hook(tmp_path, optim_type='AmpOptimWrapper'))
    with pytest.raises(
            RuntimeError,
            match=r"\(AmpOptimWrapper\) adds no "
            r"SR-STE term.*type='AmpSRSTEOptimWrapper'"):
        runner.train()


def test_plain_ste_asked_for_explicitly_trains(tmp_path):
    runner = build(with_hook(tmp_path, optim_type='OptimWrapper', lambda_w=0))
    runner.train()
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'plain STE (lambda_w=0) for 2 N:M layers' in log


def test_schedule_without_sr_ste_wrapper_stops_the_run(tmp_path):
    runner = build(
        with_hook(
            tmp_path,
            optim_type='OptimWrapper',
            lambda_w=0,
            sparse_start_iter=1))
    with pytest.raises(RuntimeError, match='plain STE, sparse_start_iter=1'):
        runner.train()


def test_hook_settings_reach_the_wrapper(tmp_path):
    cfg = with_hook(
        tmp_path,
        optim_type='SRSTEOptimWrapper',
        lambda_w=1e-3,
        freeze_mask_iter=1)
    runner = build(cfg)
    runner.train()
    wrapper = runner.optim_wrapper
    assert (wrapper.lambda_w, wrapper.freeze_mask_iter) == (1e-3, 1)
    assert runner.model.conv.mask_frozen


def test_setting_given_twice_differently_stops_the_run(tmp_path):
    cfg = with_hook(tmp_path, lambda_w=1e-3)  # the wrapper sets 2e-4
    with pytest.raises(
            ValueError,
            match=r'lambda_w is set twice: 0.001 by '
            r'NMSparsityHook and 0.0002 by optim_wrapper'):
        build(cfg).train()


def test_schedule_past_the_end_of_the_run_stops_it(tmp_path):
    cfg = with_hook(tmp_path, max_iters=3, sparse_start_iter=3)
    with pytest.raises(
            ValueError,
            match='ends after 3 iterations, before '
            'its schedule acts'):
        build(cfg).train()


def test_sr_ste_wrapper_without_hook_stops_the_run(tmp_path):
    cfg = toy_runner_cfg(str(tmp_path), max_iters=1, custom_hooks=[])
    cfg['model'] = dict(type='ToyConvNet', conv_cfg=dict(type='SparseConv'))
    with pytest.raises(RuntimeError, match='without an NMSparsityHook'):
        build(cfg).train()
    # with the hook (no `sparsity`: the layers are built sparse) it trains
    cfg['custom_hooks'] = [dict(type='NMSparsityHook', interval=1)]
    runner = build(cfg)
    runner.train()
    assert isinstance(runner.model.conv, NMSparseMixin)
    state = torch.load(tmp_path / 'iter_1.pth')['state_dict']
    conv = runner.model.conv.weight.detach()
    assert torch.equal(state['conv.weight'], conv * reference_mask(conv))
