"""Unit tests of :func:`mmnm.conversion.sparsify_model` on small hand-built
models: which layers become sparse, the report, and what the converted
model computes (checked against a brute-force N:M mask written here)."""
import itertools
import re
from collections import OrderedDict

import pytest
import torch
from torch import nn

from mmnm.conversion import LayerDecision, SparsityReport, sparsify_model
from mmnm.layers import NMSparseMixin, SparseConv, SparseLinear
from mmnm.pattern import NMPattern


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def brute_force_mask(weight: torch.Tensor,
                     n: int,
                     m: int,
                     orientation: str = 'channel') -> torch.Tensor:
    """Keep the ``n`` largest |w| of every group of ``m``; ties keep the
    lowest index. Written with plain Python loops on purpose.

    channel: M consecutive input channels at each (out, kh, kw) (Linear:
    M consecutive inputs); flat: M consecutive entries of the flattened
    (C, kh, kw) row."""
    w = weight.detach().clone()
    mask = torch.zeros_like(w, dtype=torch.bool)
    if orientation == 'flat':
        rows, rows_mask = w.reshape(w.shape[0], -1), \
            mask.view(w.shape[0], -1)
        for o in range(rows.shape[0]):
            for start in range(0, rows.shape[1], m):
                idx = list(range(start, start + m))
                keep = sorted(idx, key=lambda i: (-abs(rows[o, i].item()), i))
                for i in keep[:n]:
                    rows_mask[o, i] = True
        return mask
    assert orientation == 'channel'
    out_ch, in_ch = w.shape[:2]
    taps = list(itertools.product(*[range(s) for s in w.shape[2:]]))
    for o in range(out_ch):
        for tap in taps:
            for start in range(0, in_ch, m):
                idx = list(range(start, start + m))
                keep = sorted(
                    idx, key=lambda c: (-abs(w[(o, c) + tap].item()), c))
                for c in keep[:n]:
                    mask[(o, c) + tap] = True
    return mask


def decision(report: SparsityReport, name: str) -> LayerDecision:
    matches = [layer for layer in report.layers if layer.name == name]
    assert len(matches) == 1, [layer.name for layer in report.layers]
    return matches[0]


def small_net() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(3, 8, 3, padding=1),
            act=nn.ReLU(),
            body=nn.Conv2d(8, 16, 3, padding=1),
            act2=nn.ReLU(),
            pool=nn.AdaptiveAvgPool2d(1),
            flat=nn.Flatten(),
            fc=nn.Linear(16, 8),
            head=nn.Linear(8, 4)))


class Nested(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1))
        self.neck = nn.Conv2d(8, 8, 1)
        self.cls = nn.Linear(8, 4)

    def forward(self, x):
        x = self.neck(self.backbone(x))
        return self.cls(x.mean((2, 3)))


# --------------------------------------------------------------------------
# default include / exclude
# --------------------------------------------------------------------------
def test_default_sparsifies_every_eligible_layer():
    model = small_net()
    report = sparsify_model(model)
    assert [layer.name for layer in report.layers] == \
        ['stem', 'body', 'fc', 'head']
    # 3 input channels: not divisible by 4
    assert isinstance(model.stem, nn.Conv2d)
    assert not isinstance(model.stem, NMSparseMixin)
    stem = decision(report, 'stem')
    assert stem.pattern is None
    assert '3 not divisible' in stem.note
    assert type(model.body) is SparseConv
    assert type(model.fc) is SparseLinear
    assert type(model.head) is SparseLinear
    for name in ('body', 'fc', 'head'):
        layer = decision(report, name)
        assert layer.pattern == NMPattern(2, 4, 'channel')
        assert layer.note == 'default'
        assert getattr(model, name).nm == NMPattern(2, 4)
        assert getattr(model, name).nm_name == name
    assert decision(report, 'body').type == 'SparseConv'
    assert decision(report, 'stem').type == 'Conv2d'
    assert decision(report, 'body').shape == (16, 8, 3, 3)


def test_include_and_exclude_globs():
    model = Nested()
    report = sparsify_model(
        model, include=['backbone.*', 'cls'], exclude=['backbone.2'])
    assert isinstance(model.backbone[0], SparseConv)
    assert not isinstance(model.backbone[2], NMSparseMixin)
    assert not isinstance(model.neck, NMSparseMixin)
    assert isinstance(model.cls, SparseLinear)
    assert decision(report, 'backbone.2').note == \
        "excluded by 'backbone.2'"
    assert decision(report, 'neck').note == 'not included'
    assert decision(report, 'backbone.2').pattern is None
    assert decision(report, 'neck').pattern is None


def test_exclude_wins_over_include():
    model = Nested()
    report = sparsify_model(model, include=['*'], exclude=['back*'])
    assert decision(report, 'backbone.0').note.startswith('excluded by')
    assert not isinstance(model.backbone[0], NMSparseMixin)
    assert isinstance(model.neck, SparseConv)


@pytest.mark.parametrize('pattern', ['1:4', (1, 4), dict(n=1, m=4)])
def test_pattern_spellings(pattern):
    model = Nested()
    report = sparsify_model(model, pattern)
    assert model.neck.nm == NMPattern(1, 4)
    assert all(layer.pattern == NMPattern(1, 4) for layer in report.layers)


# --------------------------------------------------------------------------
# overrides
# --------------------------------------------------------------------------
def test_override_forces_pattern_even_when_excluded():
    model = Nested()
    report = sparsify_model(
        model, '2:4', exclude=['neck', 'cls'], overrides={'neck': '1:8'})
    assert isinstance(model.neck, SparseConv)
    assert model.neck.nm == NMPattern(1, 8)
    neck = decision(report, 'neck')
    assert neck.pattern == NMPattern(1, 8)
    assert neck.note == "override 'neck'"
    assert not isinstance(model.cls, NMSparseMixin)
    assert model.backbone[2].nm == NMPattern(2, 4)


def test_override_on_ineligible_layer_names_it():
    model = small_net()
    with pytest.raises(ValueError, match=r"layer 'stem'") as err:
        sparsify_model(model, overrides={'st*': '2:4'})
    assert 'not divisible' in str(err.value)
    # model left untouched when failing on the first layer
    assert not isinstance(model.stem, NMSparseMixin)


def test_override_on_layer_without_counterpart_raises():
    model = nn.Sequential(nn.Conv1d(8, 8, 3), nn.Flatten(), nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"layer '0'.*no sparse counterpart"):
        sparsify_model(model, overrides={'0': '2:4'})


@pytest.mark.parametrize('key', ['include', 'exclude', 'overrides'])
def test_glob_matching_nothing_names_the_glob(key):
    model = Nested()
    value = {'headz.*': '2:4'} if key == 'overrides' else ['headz.*']
    with pytest.raises(ValueError, match=re.escape("'headz.*'")) as err:
        sparsify_model(model, **{key: value})
    assert key in str(err.value)
    # nothing converted before the error
    assert not any(isinstance(mod, NMSparseMixin) for mod in model.modules())


def test_glob_matching_a_non_weighted_module_is_an_error():
    model = small_net()
    with pytest.raises(ValueError, match="'act'"):
        sparsify_model(model, exclude=['act'])


# --------------------------------------------------------------------------
# eligibility
# --------------------------------------------------------------------------
def test_flat_orientation_eligibility():
    three = nn.Sequential(nn.Conv2d(3, 8, 3))  # flat row 27: dense
    four = nn.Sequential(nn.Conv2d(4, 8, 3))  # flat row 36: sparse
    report3 = sparsify_model(three, '2:4', orientation='flat')
    report4 = sparsify_model(four, '2:4', orientation='flat')
    assert not isinstance(three[0], NMSparseMixin)
    assert report3.layers[0].pattern is None
    assert '27 not divisible' in report3.layers[0].note
    assert isinstance(four[0], SparseConv)
    assert four[0].nm == NMPattern(2, 4, 'flat')
    assert report4.layers[0].pattern == NMPattern(2, 4, 'flat')
    # a 6-channel 2x2 conv: flat row 24 is divisible by 4, 6 channels not
    six = nn.Sequential(nn.Conv2d(6, 8, 2))
    assert sparsify_model(six, orientation='flat').layers[0].pattern
    six = nn.Sequential(nn.Conv2d(6, 8, 2))
    assert sparsify_model(six).layers[0].pattern is None


def test_grouped_conv_stays_dense():
    model = nn.Sequential(
        nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 16, 3, groups=2),
        nn.Conv2d(16, 8, 1))
    report = sparsify_model(model)
    for index in (0, 1):
        assert not isinstance(model[index], NMSparseMixin)
        assert 'grouped' in report.layers[index].note
        assert report.layers[index].pattern is None
    assert isinstance(model[2], SparseConv)


def test_hardware_shapes_only():
    model = nn.Sequential(
        nn.Linear(32, 16), nn.Linear(20, 8), nn.Linear(16, 4))
    report = sparsify_model(model)
    assert all(isinstance(layer, SparseLinear) for layer in model)
    model = nn.Sequential(
        nn.Linear(32, 16), nn.Linear(20, 8), nn.Linear(16, 4))
    report = sparsify_model(model, hardware_shapes_only=True)
    assert isinstance(model[0], SparseLinear)
    assert not isinstance(model[1], NMSparseMixin)
    assert not isinstance(model[2], NMSparseMixin)  # out 4 % 8
    assert 'hardware' in report.layers[1].note
    assert '8x20' in report.layers[1].note
    assert report.layers[0].pattern is not None


def test_conv1d_has_no_sparse_counterpart():
    model = nn.Sequential(nn.Conv1d(8, 8, 3), nn.Conv3d(8, 8, 1))
    report = sparsify_model(model)
    for index, kind in enumerate(('Conv1d', 'Conv3d')):
        assert type(model[index]).__name__ == kind
        assert report.layers[index].pattern is None
        assert 'no sparse counterpart' in report.layers[index].note
        assert kind in report.layers[index].note


def test_already_sparse_layer_is_kept_and_named():
    built = SparseConv(8, 8, 1, n=1, m=4)
    model = nn.Sequential(nn.Conv2d(8, 8, 1), built)
    report = sparsify_model(model, '2:4')
    assert model[1] is built
    assert built.nm_name == '1'
    assert report.layers[1].pattern == NMPattern(1, 4)
    assert report.layers[1].note == 'built sparse'


# --------------------------------------------------------------------------
# sharing
# --------------------------------------------------------------------------
class Twice(nn.Module):
    """The same conv object under two names."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(8, 8, 3, padding=1)
        self.blocks = nn.Sequential(nn.ReLU(), self.first)

    def forward(self, x):
        return self.blocks(self.first(x))


def test_module_used_twice_becomes_one_sparse_module():
    model = Twice()
    keys = list(model.state_dict())
    weight = model.first.weight
    x = torch.randn(1, 8, 5, 5)
    report = sparsify_model(model)
    assert isinstance(model.first, SparseConv)
    assert model.blocks[1] is model.first
    assert model.first.weight is weight
    assert [layer.name for layer in report.layers] == ['first']
    assert list(model.state_dict()) == keys
    # one shared layer: its weights counted once in the report
    assert sum(layer.numel for layer in report.layers) == weight.numel()
    out = model(x)
    masked = weight.detach() * brute_force_mask(weight, 2, 4)
    conv = nn.functional.conv2d
    bias = model.first.bias.detach()
    expected = conv(
        torch.relu(conv(x, masked, bias, padding=1)), masked, bias, padding=1)
    torch.testing.assert_close(out, expected)


def test_parameters_are_shared_not_copied():
    model = small_net()
    before = {name: p for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    sparsify_model(model)
    assert model.body.weight is before['body.weight']
    assert model.body.bias is before['body.bias']
    assert model.fc.weight is before['fc.weight']
    assert model.fc.bias is before['fc.bias']
    after = dict(model.named_parameters())
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    assert list(model.state_dict()) == keys
    # an optimizer built before conversion still trains the sparse layers
    assert all(isinstance(p, nn.Parameter) for p in after.values())


def test_training_mode_is_kept():
    model = small_net().eval()
    sparsify_model(model)
    assert not model.body.training and not model.fc.training
    model = small_net().train()
    sparsify_model(model)
    assert model.body.training


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------
def test_report_table_and_zero_ratio():
    model = nn.Sequential(
        OrderedDict(
            stem=nn.Conv2d(3, 8, 3),
            body=nn.Conv2d(8, 16, 3),
            dw=nn.Conv2d(16, 16, 3, groups=16),
            seq=nn.Conv1d(16, 16, 1),
            fc=nn.Linear(16, 8),
            head=nn.Linear(8, 4),
            norm=nn.BatchNorm1d(4)))
    weighted = [
        mod for mod in model.modules()
        if isinstance(mod, (nn.modules.conv._ConvNd, nn.Linear))
    ]
    total_weights = sum(mod.weight.numel() for mod in weighted)
    total_params = sum(p.numel() for p in model.parameters())
    report = sparsify_model(
        model, '2:4', exclude=['head'], overrides={'fc': '1:8'})
    expected_zeros = (16 * 8 * 9) * (1 - 2 / 4) + (8 * 16) * (1 - 1 / 8)
    assert report.zero_ratio == pytest.approx(expected_zeros / total_weights)
    assert report.total_params == total_params
    assert [layer.zeros for layer in report.layers] == \
        [0, 16 * 8 * 9 // 2, 0, 0, 8 * 16 * 7 // 8, 0]
    table = report.table()
    lines = table.splitlines()
    assert len(lines) == 2 + 6 + 1
    for name in ('stem', 'body', 'dw', 'seq', 'fc', 'head'):
        assert any(line.split()[0] == name for line in lines[2:-1]), name
    assert '2/6 weighted layers N:M sparse' in lines[-1]
    assert f'of all {total_params} model parameters' in lines[-1]
    assert f'({100 * report.zero_ratio:.2f}%)' in lines[-1]
    assert f'{int(expected_zeros)}/{total_weights}' in lines[-1]
    body = next(line for line in lines if line.startswith('body'))
    assert '16x8x3x3' in body and '2:4' in body and 'SparseConv' in body
    fc = next(line for line in lines if line.startswith('fc'))
    assert '1:8' in fc and "override 'fc'" in fc
    head = next(line for line in lines if line.startswith('head'))
    assert 'dense' in head and "excluded by 'head'" in head


# --------------------------------------------------------------------------
# what the sparse model computes
# --------------------------------------------------------------------------
def _quantised_(model: nn.Module) -> None:
    """Small integer weights: many ties, to check the tie rule too."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randint(-3, 4, p.shape, generator=gen).float() / 4)


@pytest.mark.parametrize('orientation', ['channel', 'flat'])
@pytest.mark.parametrize('pattern', [(2, 4), (1, 4), (3, 8)])
def test_output_equals_brute_force_masked_dense(orientation, pattern):
    n, m = pattern
    dense = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 1),
        nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(),
        nn.Linear(16, 8))
    _quantised_(dense)
    x = torch.randn(2, 8, 4, 4)
    masks = {}
    for index in (0, 2, 5, 7):
        masks[index] = brute_force_mask(dense[index].weight, n, m, orientation)
        per_group = masks[index].sum() / masks[index].numel()
        assert per_group == pytest.approx(n / m)

    # dense forward with brute-force-masked weights
    def masked_forward(inp):
        out = inp
        for index, mod in enumerate(dense):
            if index in masks:
                weight = mod.weight.detach() * masks[index]
                if isinstance(mod, nn.Conv2d):
                    out = nn.functional.conv2d(out, weight, mod.bias,
                                               mod.stride, mod.padding)
                else:
                    out = nn.functional.linear(out, weight, mod.bias)
            else:
                out = mod(out)
        return out

    with torch.no_grad():
        expected = masked_forward(x)
    report = sparsify_model(dense, pattern, orientation=orientation)
    assert len(report.sparse_layers) == 4
    with torch.no_grad():
        out = dense(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    for index, mask in masks.items():
        assert torch.equal(dense[index].mask.bool(), mask), index
        torch.testing.assert_close(dense[index].masked_weight(),
                                   dense[index].weight.detach() * mask)


def test_gradient_reaches_dense_weight_straight_through():
    model = small_net()
    sparsify_model(model)
    x = torch.randn(2, 3, 6, 6)
    model(x).sum().backward()
    # straight-through: pruned weights also get gradients
    grad = model.body.weight.grad
    assert grad is not None
    pruned = ~model.body.mask.bool()
    assert pruned.any()
    assert grad[pruned].abs().sum() > 0


# --------------------------------------------------------------------------
# edge cases that once went wrong
# --------------------------------------------------------------------------
def test_root_layer_is_not_silently_left_dense():
    model = nn.Conv2d(8, 8, 3)
    keys = list(model.state_dict())
    try:
        report = sparsify_model(model)
    except ValueError:
        return  # refusing is a fine answer
    assert list(model.state_dict()) == keys
    for layer in report.sparse_layers:
        assert isinstance(model.get_submodule(layer.name), NMSparseMixin)


def test_override_on_built_sparse_layer_is_not_silently_ignored():
    built = SparseConv(8, 8, 1, n=2, m=4)
    model = nn.Sequential(built)
    try:
        report = sparsify_model(model, overrides={'0': '1:8'})
    except ValueError:
        return  # refusing is a fine answer
    assert model[0].nm == NMPattern(1, 8)
    assert report.layers[0].pattern == NMPattern(1, 8)


def test_mmcv_wrapper_layers_are_converted():
    """mmdet heads build mmcv's Conv2d/Linear wrappers (e.g. mask heads)."""
    from mmcv.cnn.bricks import wrappers
    model = nn.Sequential(
        wrappers.Conv2d(8, 8, 3), nn.Flatten(), wrappers.Linear(8, 4))
    report = sparsify_model(model, '2:4')
    assert isinstance(model[0], SparseConv)
    assert isinstance(model[2], NMSparseMixin)
    assert [layer.pattern is not None
            for layer in report.layers] == [True, True]
