"""convert_to_sparse24 on small models: which layers convert and why the
others stay dense, N:M layers judged by their masks, forced layers, the
threshold, shared modules, and the logged table."""
import logging

import pytest
import torch
from deploy_helpers import random_24_weight, relative_error
from mmengine.logging import MMLogger
from torch import nn

from mmnm.conversion import sparsify_model
from mmnm.deploy import Sparse24Conv2d, Sparse24Linear, convert_to_sparse24
from mmnm.layers import NMSparseMixin, SparseConv


def with_24(module: nn.Module, seed: int = 0) -> nn.Module:
    with torch.no_grad():
        module.weight.copy_(random_24_weight(module.weight.shape, seed))
    return module


class Net(nn.Module):
    """One layer for each decision."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, padding=1)  # 3 input channels
        self.body = with_24(nn.Conv2d(64, 64, 3, padding=1))
        self.dense = nn.Conv2d(64, 64, 1)  # random: not 2:4
        self.grouped = with_24(nn.Conv2d(64, 64, 3, padding=1, groups=4))
        self.narrow = with_24(nn.Conv2d(64, 48, 1))  # 48 rows
        self.up = nn.ConvTranspose2d(48, 64, 2, stride=2)
        self.small = with_24(nn.Conv2d(64, 32, 1))  # 2048 weights
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = with_24(nn.Linear(32, 32))  # K = 32
        self.head = with_24(nn.Linear(32 * 16 * 16, 32))

    def forward(self, x):
        x = self.grouped(self.dense(self.body(self.stem(x))))
        x = self.small(self.up(self.narrow(x)))
        return self.head(x.flatten(1)), self.fc(self.pool(x).flatten(1))


EXPECTED_DENSE = {
    'stem': 'reduction size 3 not divisible by M=4',
    'dense': 'not 2:4: 1024/1024 groups',  # 64 x 64 / 4
    'grouped': 'grouped conv (groups=4)',
    'narrow': '48 output channels/features, not a multiple of 32',
    'up': 'transposed conv',
    'fc': 'GEMM reduction size 32, not a multiple of 64',
}


def decisions(report):
    return {layer.name: layer for layer in report.layers}


def test_each_layer_converts_or_says_why_not():
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = net(x)
    report = convert_to_sparse24(net, torch.float16, logger=None)
    by_name = decisions(report)
    assert set(by_name) == set(EXPECTED_DENSE) | {'body', 'small', 'head'}
    for name, note in EXPECTED_DENSE.items():
        assert by_name[name].pattern is None
        assert note in by_name[name].note, (name, by_name[name].note)
        assert type(net.get_submodule(name)) in (nn.Conv2d, nn.Linear,
                                                 nn.ConvTranspose2d)
    assert isinstance(net.body, Sparse24Conv2d)
    assert isinstance(net.small, Sparse24Conv2d)
    assert isinstance(net.head, Sparse24Linear)
    assert {layer.name for layer in report.sparse_layers} == \
        {'body', 'small', 'head'}
    with torch.no_grad():
        result = net(x)
    for got, want in zip(result, expected):
        assert relative_error(got, want) < 5e-3


def test_table_is_logged():
    logger = MMLogger.get_instance('test_deploy_table')
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger.addHandler(handler)
    convert_to_sparse24(Net(), logger=logger)
    (table, ) = records
    assert 'transposed conv' in table and 'Sparse24Conv2d' in table
    assert '3/9 weighted layers run 2:4 kernels' in table


def test_threshold_exclude_and_force():
    report = convert_to_sparse24(
        Net(), min_weight_numel=4096, exclude=['head'], logger=None)
    by_name = decisions(report)
    assert 'min_weight_numel=4096' in by_name['small'].note  # 2048 weights
    assert by_name['head'].note == "excluded by 'head'"
    assert {layer.name for layer in report.sparse_layers} == {'body'}

    net = Net()
    report = convert_to_sparse24(
        net, min_weight_numel=4096, force=['small'], logger=None)
    assert isinstance(net.small, Sparse24Conv2d)
    assert decisions(report)['small'].note == "forced by 'small'"


def test_forcing_an_unconvertible_layer_fails_before_changing_the_model():
    net = Net()
    with pytest.raises(ValueError) as err:
        convert_to_sparse24(net, force=['dense', 'narrow'], logger=None)
    message = str(err.value)
    assert "'dense' (forced by 'dense'): not 2:4" in message
    assert "'narrow' (forced by 'narrow'): 48 output" in message
    assert type(net.body) is nn.Conv2d  # untouched


def test_errors_for_bad_globs_bare_layers_and_nothing_to_convert():
    with pytest.raises(ValueError, match="force pattern 'nope' matches no"):
        convert_to_sparse24(Net(), force=['nope'], logger=None)
    with pytest.raises(ValueError, match='bare Conv2d'):
        convert_to_sparse24(nn.Conv2d(64, 64, 1))
    with pytest.raises(
            ValueError,
            match='no weighted layer of Sequential '
            'can run 2:4 kernels') as err:
        convert_to_sparse24(nn.Sequential(nn.Conv2d(64, 64, 1)), logger=None)
    assert 'not 2:4' in str(err.value)  # the table comes with it


def test_nm_layers_are_judged_by_their_masks():
    """A trained 2:4 layer converts from its masked weight; a 2:4 layer the
    kernels cannot take (K = 32 * 9) becomes a plain conv holding its
    masked weight; a 4:8 layer converts only where its mask happens to be
    2:4 (never, for random weights)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(64, 64, 3, padding=1), nn.Conv2d(64, 32, 3, padding=1),
        nn.Conv2d(32, 64, 3, padding=1), nn.Conv2d(64, 64, 1)).eval()
    sparsify_model(net, '2:4', overrides={'3': '4:8'})
    x = torch.randn(1, 64, 6, 6)
    with torch.no_grad():
        expected = net(x)
    masked = [layer.masked_weight() for layer in net]
    assert isinstance(net[0], SparseConv)
    assert not torch.equal(masked[0], net[0].weight)  # dense underneath
    report = convert_to_sparse24(net, logger=None)
    by_name = decisions(report)
    assert {layer.name for layer in report.sparse_layers} == {'0', '1'}
    assert 'reduction size 288' in by_name['2'].note
    assert 'not 2:4' in by_name['3'].note
    assert not any(isinstance(m, NMSparseMixin) for m in net.modules())
    assert type(net[2]) is nn.Conv2d and torch.equal(net[2].weight, masked[2])
    assert torch.equal(net[0].weight, masked[0].half())
    with torch.no_grad():
        assert relative_error(net(x), expected) < 5e-3


def test_shared_module_converts_once():
    conv = with_24(nn.Conv2d(64, 64, 1))
    net = nn.Sequential(conv, nn.ReLU(), conv)
    report = convert_to_sparse24(net, logger=None)
    assert len(report.layers) == 1
    assert isinstance(net[0], Sparse24Conv2d) and net[0] is net[2]


class AttentionNet(nn.Module):
    """An attention between two Linear layers that the kernels can take."""

    def __init__(self):
        super().__init__()
        self.fc_in = nn.Linear(64, 64)
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        self.fc_out = nn.Linear(64, 64)

    def forward(self, x):
        x = self.fc_in(x)
        return self.fc_out(self.attn(x, x, x, need_weights=False)[0])


def test_attention_becomes_a_stock_attention_holding_masked_weights():
    torch.manual_seed(0)
    net = AttentionNet().eval()
    sparsify_model(net)
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        expected = net(x)
    in_proj = net.attn.masked_weight()
    out_proj = net.attn.out_proj.masked_weight()
    report = convert_to_sparse24(net, logger=None)
    by_name = decisions(report)
    assert {layer.name for layer in report.sparse_layers} == \
        {'fc_in', 'fc_out'}
    assert 'MultiheadAttention: no 2:4 inference counterpart' in \
        by_name['attn'].note
    assert 'reads this weight itself' in by_name['attn.out_proj'].note
    assert type(net.attn) is nn.MultiheadAttention
    assert type(net.attn.out_proj) is nn.Linear
    assert torch.equal(net.attn.in_proj_weight, in_proj)
    assert torch.equal(net.attn.out_proj.weight, out_proj)
    with torch.no_grad():
        assert relative_error(net(x), expected) < 5e-3
