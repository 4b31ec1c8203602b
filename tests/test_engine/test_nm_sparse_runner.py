"""NMSparseRunner: the config's ``sparsity`` dict makes the model sparse
before weight init, optimizer and checkpoint loading."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import RUNNERS
from toy_models import toy_runner_cfg
from torch import nn

from mmnm.layers import SparseConv, SparseLinear


def build(cfg: dict):
    return RUNNERS.build(Config(copy.deepcopy(cfg)))


def test_model_is_sparsified_and_table_logged(tmp_path):
    runner = build(toy_runner_cfg(str(tmp_path)))
    model = runner.model
    assert type(model.stem) is nn.Conv2d  # 3 input channels: stays dense
    assert isinstance(model.conv, SparseConv)
    assert isinstance(model.head, SparseLinear)
    # the optimizer holds the very parameters of the sparse layers
    params = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
              for p in group['params']} if not isinstance(
                  runner.optim_wrapper, dict) else None
    runner.train()
    params = {id(p) for group in runner.optim_wrapper.optimizer.param_groups
              for p in group['params']}
    assert id(model.conv.weight) in params and id(model.head.bias) in params
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert 'N:M sparsity of the model' in log
    assert 'reduction size 3 not divisible by M=4' in log


def test_pattern_and_overrides_from_config(tmp_path):
    cfg = toy_runner_cfg(
        str(tmp_path),
        sparsity=dict(pattern='1:4', overrides={'head': '2:8'}))
    model = build(cfg).model
    assert (model.conv.nm.n, model.conv.nm.m) == (1, 4)
    assert (model.head.nm.n, model.head.nm.m) == (2, 8)


def test_missing_sparsity_key_is_a_clear_error(tmp_path):
    cfg = toy_runner_cfg(str(tmp_path))
    del cfg['sparsity']
    with pytest.raises(KeyError, match='no `sparsity` dict'):
        build(cfg)


def test_glob_matching_no_layer_is_an_error(tmp_path):
    cfg = toy_runner_cfg(
        str(tmp_path), sparsity=dict(pattern='2:4', exclude=['neck.*']))
    with pytest.raises(ValueError, match=r"exclude pattern 'neck\.\*'"):
        build(cfg)


def test_unknown_sparsity_key_names_it(tmp_path):
    cfg = toy_runner_cfg(str(tmp_path), sparsity=dict(patern='2:4'))
    with pytest.raises(TypeError, match='patern'):
        build(cfg)


def test_dense_checkpoint_loads_into_sparse_run(tmp_path):
    """A dense model's checkpoint (same keys) is a valid ``load_from``."""
    from toy_models import ToyConvNet
    dense = ToyConvNet()
    path = str(tmp_path / 'dense.pth')
    torch.save(dict(state_dict=dense.state_dict()), path)
    runner = build(toy_runner_cfg(str(tmp_path / 'run'), load_from=path,
                                  max_iters=1))
    runner.train()  # loads before the first iteration, then trains one
    runner2 = build(toy_runner_cfg(str(tmp_path / 'run2'), load_from=path))
    runner2.load_checkpoint(path)
    assert torch.equal(runner2.model.conv.weight, dense.conv.weight)
