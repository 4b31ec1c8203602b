"""NMSparsityHook(sparsity=...) makes the model sparse when a run starts,
before weight init, checkpoint loading and the first iteration."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from torch import nn
from toy_models import ToyConvNet, toy_runner_cfg

from mmnm.layers import SparseConv, SparseLinear


def build(cfg: dict):
    return Runner.from_cfg(Config(copy.deepcopy(cfg)))


def with_sparsity(work_dir, sparsity: dict, **overrides) -> dict:
    cfg = toy_runner_cfg(str(work_dir), **overrides)
    cfg['custom_hooks'][0]['sparsity'] = sparsity
    return cfg


def test_model_is_sparsified_and_table_logged(tmp_path):
    runner = build(toy_runner_cfg(str(tmp_path), max_iters=1))
    runner.train()
    model = runner.model
    assert type(model.stem) is nn.Conv2d  # 3 input channels: stays dense
    assert isinstance(model.conv, SparseConv)
    assert isinstance(model.head, SparseLinear)
    # the optimizer built before the conversion holds the same parameters
    params = {
        id(p)
        for group in runner.optim_wrapper.optimizer.param_groups
        for p in group['params']
    }
    assert id(model.conv.weight) in params and id(model.head.bias) in params
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'N:M sparsity of the model' in log
    assert 'reduction size 3 not divisible by M=4' in log


def test_test_run_is_sparse_too(tmp_path):
    """``runner.test()`` converts the model as well (stock tools/test.py)."""
    cfg = toy_runner_cfg(str(tmp_path))
    runner = build(cfg)
    runner.call_hook('before_run')
    assert isinstance(runner.model.conv, SparseConv)


def test_pattern_and_overrides_from_config(tmp_path):
    runner = build(
        with_sparsity(tmp_path, dict(pattern='1:4', overrides={'head':
                                                               '2:8'})))
    runner.call_hook('before_run')
    model = runner.model
    assert (model.conv.nm.n, model.conv.nm.m) == (1, 4)
    assert (model.head.nm.n, model.head.nm.m) == (2, 8)


def test_glob_matching_no_layer_is_an_error(tmp_path):
    runner = build(
        with_sparsity(tmp_path, dict(pattern='2:4', exclude=['neck.*'])))
    with pytest.raises(ValueError, match=r"exclude pattern 'neck\.\*'"):
        runner.train()


def test_unknown_sparsity_key_names_it(tmp_path):
    runner = build(with_sparsity(tmp_path, dict(patern='2:4')))
    with pytest.raises(TypeError, match='patern'):
        runner.train()


def test_without_sparsity_a_dense_model_is_an_error(tmp_path):
    cfg = toy_runner_cfg(str(tmp_path))
    del cfg['custom_hooks'][0]['sparsity']
    with pytest.raises(RuntimeError, match='no N:M sparse layer'):
        build(cfg).train()


def test_dense_checkpoint_loads_into_sparse_run(tmp_path):
    """A dense model's checkpoint (same keys) is a valid ``load_from``."""
    dense = ToyConvNet()
    path = str(tmp_path / 'dense.pth')
    torch.save(dict(state_dict=dense.state_dict()), path)
    runner = build(
        toy_runner_cfg(str(tmp_path / 'run'), load_from=path, max_iters=1))
    runner.train()  # converts, loads, then trains one iteration
    assert isinstance(runner.model.conv, SparseConv)
    runner2 = build(toy_runner_cfg(str(tmp_path / 'run2')))
    runner2.call_hook('before_run')
    runner2.load_checkpoint(path)
    assert torch.equal(runner2.model.conv.weight, dense.conv.weight)
