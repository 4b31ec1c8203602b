"""Tests of SparseConv / SparseLinear against hand-written dense references.

The reference mask is a brute-force loop over explicit group index lists
(REFERENCE.md section 2), independent of ``mmnm.ops``.
"""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmnm  # noqa: F401  (registers the layers)
from mmnm.layers import SparseConv, SparseLinear, invalidate_masks


# --------------------------------------------------------------------------
# brute-force reference mask
# --------------------------------------------------------------------------
def ref_mask(weight, n, m, orientation='channel'):
    """Keep the n largest |w| of every group of m; ties keep lowest index.

    'channel': m consecutive input channels at each (out, kernel tap).
    'flat': m consecutive entries of weight[k].flatten().
    """
    values = weight.detach().double()
    shape = tuple(weight.shape)
    mask = torch.zeros(shape, dtype=torch.bool)
    groups = []
    if orientation == 'channel':
        taps = list(itertools.product(*[range(d) for d in shape[2:]]))
        for k in range(shape[0]):
            for tap in taps:
                for g in range(shape[1] // m):
                    groups.append([(k, g * m + t) + tap for t in range(m)])
    else:
        row = list(itertools.product(*[range(d) for d in shape[1:]]))
        for k in range(shape[0]):
            for g in range(len(row) // m):
                groups.append([(k, ) + row[g * m + t] for t in range(m)])
    for group in groups:
        mags = [abs(values[idx].item()) for idx in group]
        for t in sorted(range(m), key=lambda t: -mags[t])[:n]:
            mask[group[t]] = True
    return mask


def seeded(seed):
    return torch.Generator().manual_seed(seed)


def make_conv(seed=0, **kwargs):
    args = dict(in_channels=8, out_channels=4, kernel_size=3, padding=1)
    args.update(kwargs)
    torch.manual_seed(seed)
    return SparseConv(**args)


def conv_ref(layer, x, weight):
    return F.conv2d(x, weight, layer.bias, layer.stride, layer.padding,
                    layer.dilation, layer.groups)


# --------------------------------------------------------------------------
# 1. forward equals a hand-made masked dense forward
# --------------------------------------------------------------------------
CONV_CONFIGS = [
    dict(n=2, m=4),
    dict(n=1, m=4, stride=2, bias=False),
    dict(n=2, m=8, in_channels=16, dilation=2, padding=2),
    dict(
        n=1, m=4, orientation='flat', in_channels=4, kernel_size=1, padding=0),
    dict(
        n=2,
        m=4,
        orientation='flat',
        in_channels=3,
        kernel_size=(2, 2),
        padding=0),
    dict(n=1, m=16, in_channels=16, kernel_size=1, padding=0),
]


@pytest.mark.parametrize('cfg', CONV_CONFIGS)
@pytest.mark.parametrize('train', [True, False])
def test_conv_forward_matches_masked_dense(cfg, train):
    cfg = dict(cfg)
    n, m = cfg['n'], cfg['m']
    orientation = cfg.get('orientation', 'channel')
    layer = make_conv(seed=1, **cfg).train(train)
    assert (layer.nm.n, layer.nm.m, layer.nm.orientation) == (n, m,
                                                              orientation)
    x = torch.randn(2, layer.in_channels, 7, 7, generator=seeded(2))
    out = layer(x)
    mask = ref_mask(layer.weight, n, m, orientation)
    expected = conv_ref(layer, x, layer.weight.detach() * mask)
    assert torch.equal(out, expected)
    # sanity: sparsity matters for this input
    assert not torch.allclose(out, conv_ref(layer, x, layer.weight))


@pytest.mark.parametrize('n,m,orientation', [(2, 4, 'channel'), (1, 4, 'flat'),
                                             (4, 8, 'channel')])
@pytest.mark.parametrize('train', [True, False])
def test_linear_forward_matches_masked_dense(n, m, orientation, train):
    torch.manual_seed(3)
    layer = SparseLinear(16, 5, n=n, m=m, orientation=orientation)
    layer.train(train)
    x = torch.randn(3, 16, generator=seeded(4))
    out = layer(x)
    mask = ref_mask(layer.weight, n, m, orientation)
    assert torch.equal(out,
                       F.linear(x,
                                layer.weight.detach() * mask, layer.bias))


def test_linear_keeps_bias_and_trains_it():
    torch.manual_seed(5)
    layer = SparseLinear(8, 3, n=2, m=4)
    assert layer.bias is not None
    x = torch.randn(4, 8, generator=seeded(6))
    out = layer(x)
    with torch.no_grad():
        layer.bias.add_(1.5)
    shifted = layer(x)
    assert torch.allclose(shifted, out + 1.5)
    g = torch.randn(4, 3, generator=seeded(7))
    (shifted * g).sum().backward()
    assert layer.bias.grad is not None
    assert torch.allclose(layer.bias.grad, g.sum(0))
    no_bias = SparseLinear(8, 3, bias=False, n=2, m=4)
    assert no_bias.bias is None


# --------------------------------------------------------------------------
# 2. straight-through gradient
# --------------------------------------------------------------------------
@pytest.mark.parametrize('cfg', CONV_CONFIGS[:4])
def test_conv_straight_through_gradient(cfg):
    cfg = dict(cfg)
    layer = make_conv(seed=8, **cfg)
    x = torch.randn(
        2, layer.in_channels, 6, 6, generator=seeded(9), requires_grad=True)
    out = layer(x)
    g = torch.randn(out.shape, generator=seeded(10))
    (out * g).sum().backward()

    mask = ref_mask(layer.weight, cfg['n'], cfg['m'],
                    cfg.get('orientation', 'channel'))
    masked = (layer.weight.detach() * mask).requires_grad_()
    bias = None if layer.bias is None else \
        layer.bias.detach().clone().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    ref = F.conv2d(x_ref, masked, bias, layer.stride, layer.padding,
                   layer.dilation)
    (ref * g).sum().backward()

    assert torch.allclose(layer.weight.grad, masked.grad, rtol=1e-6, atol=1e-6)
    # not multiplied by the mask: pruned weights get a gradient too
    assert (layer.weight.grad[~mask] != 0).any()
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-6, atol=1e-6)
    if bias is not None:
        assert torch.allclose(layer.bias.grad, bias.grad, rtol=1e-6, atol=1e-6)


def test_linear_straight_through_gradient():
    torch.manual_seed(11)
    layer = SparseLinear(16, 6, n=1, m=4)
    x = torch.randn(5, 16, generator=seeded(12))
    g = torch.randn(5, 6, generator=seeded(13))
    (layer(x) * g).sum().backward()
    mask = ref_mask(layer.weight, 1, 4)
    masked = (layer.weight.detach() * mask).requires_grad_()
    (F.linear(x, masked, layer.bias.detach()) * g).sum().backward()
    assert torch.allclose(layer.weight.grad, masked.grad, rtol=1e-6, atol=1e-6)
    # the dense-weight gradient of a linear layer is g^T x: full, unmasked
    assert torch.allclose(layer.weight.grad, g.t() @ x, rtol=1e-5, atol=1e-5)
    assert (layer.weight.grad[~mask] != 0).all()


# --------------------------------------------------------------------------
# 3. mask cache and recomputation
# --------------------------------------------------------------------------
def pruned_index(mask):
    return tuple(int(i) for i in (~mask).nonzero()[0])


def test_mask_after_forward():
    layer = make_conv(seed=14)
    assert layer.mask is None
    x = torch.randn(1, 8, 5, 5, generator=seeded(15))
    expected = ref_mask(layer.weight, 2, 4)
    # the mask of the current weight after every forward, train and eval
    for mode in (True, True, False, False):
        layer.train(mode)
        with torch.set_grad_enabled(mode):
            layer(x)
        assert torch.equal(layer.mask, expected)
    assert torch.equal(layer.masked_weight(), layer.weight.detach() * expected)


def test_forward_that_raises_leaves_the_dense_weight_in_place():
    """The masked weight is swapped in only for the plain forward: after an
    error inside it the layer's parameter is the dense weight again."""
    layer = make_conv(seed=16)
    weight = layer.weight
    with pytest.raises(RuntimeError):
        layer(torch.randn(1, 3, 5, 5))  # 3 input channels, not 8
    assert layer._parameters['weight'] is weight
    assert layer.weight is weight
    assert [p for p in layer.parameters()][0] is weight
    # one substitution per block: entering it twice is an error, not a
    # weight left masked for good
    masked = layer.masked_parameters()
    with masked:
        assert layer._parameters['weight'] is not weight
        with pytest.raises(RuntimeError, match='not reentrant'):
            masked.__enter__()
    assert layer._parameters['weight'] is weight


@pytest.mark.parametrize('train', [True, False])
def test_mask_recomputed_after_inplace_change(train):
    layer = make_conv(seed=16).train(train)
    x = torch.randn(1, 8, 5, 5, generator=seeded(17))
    layer(x)
    old = layer.mask.clone()
    idx = pruned_index(old)
    with torch.no_grad():
        layer.weight.mul_(-1)
        layer.weight[idx] = 1e3
    out = layer(x)
    new_ref = ref_mask(layer.weight, 2, 4)
    assert new_ref[idx] and not torch.equal(new_ref, old)
    assert torch.equal(layer.mask, new_ref)
    assert torch.equal(out, conv_ref(layer, x,
                                     layer.weight.detach() * new_ref))


def test_mask_recomputed_after_optimizer_step():
    layer = make_conv(seed=18)
    opt = torch.optim.SGD(layer.parameters(), lr=10.0)
    x = torch.randn(2, 8, 5, 5, generator=seeded(19))
    changed = False
    for _ in range(3):
        opt.zero_grad()
        # the layer rewrites its mask in place: keep a copy
        before = None if layer.mask is None else layer.mask.clone()
        layer(x).pow(2).mean().backward()
        opt.step()
        out = layer(x)
        expected = ref_mask(layer.weight, 2, 4)
        assert torch.equal(layer.mask, expected)
        assert torch.equal(
            out, conv_ref(layer, x,
                          layer.weight.detach() * expected))
        if before is not None and not torch.equal(before, expected):
            changed = True
    assert changed, 'lr too small to flip any mask entry'


@pytest.mark.parametrize('train', [True, False])
def test_mask_recomputed_after_load_state_dict(train):
    layer = make_conv(seed=20).train(train)
    x = torch.randn(1, 8, 5, 5, generator=seeded(21))
    layer(x)
    other = nn.Conv2d(8, 4, 3, padding=1)
    layer.load_state_dict(other.state_dict())
    layer(x)
    assert torch.equal(layer.mask, ref_mask(other.weight, 2, 4))


def test_data_write_seen_after_the_next_optimizer_step():
    """A write through ``.data`` (EMA/teacher updates) is seen once any
    optimizer has stepped since the last mask, as after every training
    step."""
    layer = make_conv(seed=22)
    x = torch.randn(1, 8, 5, 5, generator=seeded(23))
    layer(x)
    idx = pruned_index(layer.mask)
    layer.weight.data[idx] = 1e3
    other = nn.Parameter(torch.zeros(1))  # a step of any optimizer
    other.grad = torch.ones(1)
    torch.optim.SGD([other], lr=0.1).step()
    layer(x)
    assert torch.equal(layer.mask, ref_mask(layer.weight, 2, 4))
    assert layer.mask[idx]


def test_eval_data_write_seen_after_invalidate_masks():
    """EMAHook's parameter swap writes through ``.data``: mmnm's hook
    calls invalidate_masks() at each evaluation's first batch and end;
    code writing ``.data`` by hand calls it too."""
    layer = make_conv(seed=22).eval()
    x = torch.randn(1, 8, 5, 5, generator=seeded(23))
    with torch.no_grad():
        layer(x)
    idx = pruned_index(layer.mask)
    layer.weight.data[idx] = 1e3
    invalidate_masks()
    with torch.no_grad():
        out = layer(x)
    expected = ref_mask(layer.weight, 2, 4)
    assert torch.equal(layer.mask, expected)
    assert torch.equal(out, conv_ref(layer, x,
                                     layer.weight.detach() * expected))


def test_ema_model_mask_follows_averaged_weight():
    from mmengine.model import ExponentialMovingAverage
    torch.manual_seed(24)
    model = nn.Sequential(SparseConv(8, 4, 3, padding=1, n=2, m=4))
    ema = ExponentialMovingAverage(model, momentum=0.9).eval()
    x = torch.randn(1, 8, 5, 5, generator=seeded(25))
    ema.update_parameters(model)  # step 0: plain copy
    with torch.no_grad():
        ema(x)
    avg = ema.module[0]
    old_mask = avg.mask.clone()
    old_weight = model[0].weight.detach().clone()
    # a training step, then the average as EMAHook.after_train_iter does
    model[0].weight.grad = -torch.randn(
        model[0].weight.shape, generator=seeded(26))
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    ema.update_parameters(model)  # avg = 0.1 * old + 0.9 * new
    expected_weight = 0.1 * old_weight + 0.9 * model[0].weight.detach()
    assert torch.allclose(avg.weight, expected_weight, atol=1e-6)
    expected = ref_mask(avg.weight, 2, 4)
    assert not torch.equal(expected, old_mask)
    with torch.no_grad():
        out = ema(x)
    assert torch.equal(avg.mask, expected)
    assert torch.equal(out, conv_ref(avg, x, avg.weight.detach() * expected))


# --------------------------------------------------------------------------
# 4. eval mode against a plain nn.Conv2d
# --------------------------------------------------------------------------
def test_eval_equals_dense_conv_with_masked_weight():
    layer = make_conv(seed=27, stride=2).eval()
    mask = ref_mask(layer.weight, 2, 4)
    dense = nn.Conv2d(8, 4, 3, padding=1, stride=2).eval()
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    state['weight'] = state['weight'] * mask
    dense.load_state_dict(state, strict=True)
    x = torch.randn(2, 8, 9, 9, generator=seeded(28))
    with torch.no_grad():
        assert torch.equal(layer(x), dense(x))


def test_eval_linear_equals_dense_linear_with_masked_weight():
    torch.manual_seed(29)
    layer = SparseLinear(12, 4, n=1, m=3).eval()
    dense = nn.Linear(12, 4)
    dense.load_state_dict({
        'weight':
        layer.weight.detach() * ref_mask(layer.weight, 1, 3),
        'bias':
        layer.bias.detach()
    })
    x = torch.randn(3, 12, generator=seeded(30))
    with torch.no_grad():
        assert torch.equal(layer(x), dense(x))


# --------------------------------------------------------------------------
# 5. state_dict round trip
# --------------------------------------------------------------------------
@pytest.mark.parametrize('bias', [True, False])
def test_state_dict_keys_and_round_trip(bias):
    sparse = make_conv(seed=31, bias=bias)
    dense = nn.Conv2d(8, 4, 3, padding=1, bias=bias)
    assert list(sparse.state_dict()) == list(dense.state_dict())
    x = torch.randn(1, 8, 5, 5, generator=seeded(32))
    sparse(x)  # a mask exists now
    assert not any('mask' in key for key in sparse.state_dict())

    # dense -> sparse
    sparse.load_state_dict(dense.state_dict(), strict=True)
    assert torch.equal(sparse.weight, dense.weight)
    # sparse -> dense
    other = make_conv(seed=33, bias=bias)
    dense.load_state_dict(other.state_dict(), strict=True)
    assert torch.equal(dense.weight, other.weight)
    if bias:
        assert torch.equal(dense.bias, other.bias)


def test_linear_state_dict_keys():
    assert list(SparseLinear(8, 2).state_dict()) == \
        list(nn.Linear(8, 2).state_dict())
    dense = nn.Linear(8, 2)
    sparse = SparseLinear(8, 2)
    sparse.load_state_dict(dense.state_dict(), strict=True)
    assert torch.equal(sparse.bias, dense.bias)


# --------------------------------------------------------------------------
# 6. from_dense
# --------------------------------------------------------------------------
@pytest.mark.parametrize('training', [True, False])
@pytest.mark.parametrize('bias', [True, False])
def test_conv_from_dense_shares_parameters(training, bias):
    torch.manual_seed(34)
    conv = nn.Conv2d(8, 4, 3, stride=2, padding=1, dilation=1, bias=bias)
    conv.train(training)
    sparse = SparseConv.from_dense(conv, 2, 4, name='x')
    assert isinstance(sparse, SparseConv)
    assert sparse.weight is conv.weight
    assert sparse.bias is conv.bias
    assert sparse.training == training
    assert sparse.nm_name == 'x'
    assert (sparse.nm.n, sparse.nm.m) == (2, 4)
    assert (sparse.stride, sparse.padding, sparse.dilation, sparse.groups) \
        == (conv.stride, conv.padding, conv.dilation, conv.groups)
    assert [p for p in sparse.parameters()] == \
        [p for p in conv.parameters()]
    x = torch.randn(2, 8, 7, 7, generator=seeded(35))
    mask = ref_mask(conv.weight, 2, 4)
    out = sparse(x)
    assert torch.equal(
        out, F.conv2d(x,
                      conv.weight.detach() * mask, conv.bias, 2, 1))
    out.sum().backward()
    assert conv.weight.grad is not None


def test_conv_from_dense_padding_mode_and_orientation():
    torch.manual_seed(36)
    conv = nn.Conv2d(2, 3, 2, padding=1, padding_mode='reflect')
    sparse = SparseConv.from_dense(conv, 1, 4, orientation='flat')
    x = torch.randn(1, 2, 5, 5, generator=seeded(37))
    masked = conv.weight.detach() * ref_mask(conv.weight, 1, 4, 'flat')
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode='reflect'), masked, conv.bias)
    assert torch.equal(sparse(x), ref)


def test_linear_from_dense():
    torch.manual_seed(38)
    linear = nn.Linear(8, 3).eval()
    sparse = SparseLinear.from_dense(linear, 1, 4, name='head.fc')
    assert sparse.weight is linear.weight and sparse.bias is linear.bias
    assert not sparse.training and sparse.nm_name == 'head.fc'
    x = torch.randn(2, 8, generator=seeded(39))
    masked = linear.weight.detach() * ref_mask(linear.weight, 1, 4)
    assert torch.equal(sparse(x), F.linear(x, masked, linear.bias))


def test_from_dense_error_names_layer():
    conv = nn.Conv2d(3, 8, 3)
    with pytest.raises(ValueError, match='backbone.stem'):
        SparseConv.from_dense(conv, 2, 4, name='backbone.stem')


# --------------------------------------------------------------------------
# 7. registry
# --------------------------------------------------------------------------
def _build_with_registry():
    from mmengine.registry import MODELS
    return MODELS.build(
        dict(
            type='SparseConv',
            in_channels=8,
            out_channels=4,
            kernel_size=3,
            n=1,
            m=4))


def _build_with_mmcv_conv_cfg():
    from mmcv.cnn import build_conv_layer
    return build_conv_layer(dict(type='SparseConv', n=1, m=4), 8, 4, 3)


@pytest.mark.parametrize('build',
                         [_build_with_registry, _build_with_mmcv_conv_cfg])
def test_registry_builds_conv(build):
    layer = build()
    assert type(layer) is SparseConv
    assert (layer.nm.n, layer.nm.m) == (1, 4)
    assert tuple(layer.weight.shape) == (4, 8, 3, 3)
    x = torch.randn(1, 8, 5, 5, generator=seeded(40))
    masked = layer.weight.detach() * ref_mask(layer.weight, 1, 4)
    assert torch.equal(layer(x), conv_ref(layer, x, masked))


def test_registry_builds_linear():
    from mmengine.registry import MODELS
    layer = MODELS.build(
        dict(type='SparseLinear', in_features=8, out_features=4, n=1, m=4))
    assert type(layer) is SparseLinear
    assert (layer.nm.n, layer.nm.m) == (1, 4)


# --------------------------------------------------------------------------
# 8. errors
# --------------------------------------------------------------------------
def test_error_not_divisible():
    with pytest.raises(ValueError, match='not divisible'):
        SparseConv(6, 4, 3, n=2, m=4)
    with pytest.raises(ValueError, match='not divisible'):
        SparseLinear(6, 4, n=2, m=4)
    with pytest.raises(ValueError, match='not divisible'):
        SparseConv(3, 4, 1, n=2, m=4, orientation='flat')


def test_error_grouped():
    with pytest.raises(ValueError, match='grouped'):
        SparseConv(8, 8, 3, groups=2, n=2, m=4)
    with pytest.raises(ValueError, match='grouped'):
        SparseConv(8, 8, 3, groups=8, n=1, m=4)


@pytest.mark.parametrize('n,m,exc', [(4, 4, ValueError), (0, 4, ValueError),
                                     (5, 4, ValueError), (2.0, 4, TypeError)])
def test_error_bad_pattern(n, m, exc):
    with pytest.raises(exc, match='SparseConv'):
        SparseConv(8, 4, 3, n=n, m=m)
    with pytest.raises(exc, match='SparseLinear'):
        SparseLinear(8, 4, n=n, m=m)


@pytest.mark.parametrize('bad', [float('nan'), float('inf')])
def test_error_nonfinite_weight_at_forward(bad):
    layer = make_conv(seed=41)
    x = torch.randn(1, 8, 5, 5, generator=seeded(42))
    with torch.no_grad():
        layer.weight[1, 2, 0, 0] = bad
    with pytest.raises(ValueError, match='NaN'):
        layer(x)
    layer.nm_name = 'neck.conv'
    with pytest.raises(ValueError, match='NaN') as info:
        layer(x)
    assert 'neck.conv' in str(info.value)


def test_errors_name_the_layer():
    layer = make_conv(seed=43)
    with pytest.raises(ValueError, match='not divisible') as info:
        layer.init_sparsity(2, 3, name='neck.conv')
    assert 'neck.conv' in str(info.value)
    with pytest.raises(ValueError) as info:
        layer.init_sparsity(4, 4, name='neck.conv')
    assert 'neck.conv' in str(info.value)
    torch.manual_seed(44)
    linear = SparseLinear(8, 2)
    linear.nm_name = 'head.fc'
    with torch.no_grad():
        linear.weight[0, 0] = float('nan')
    with pytest.raises(ValueError, match='head.fc'):
        linear(torch.randn(1, 8))


# --------------------------------------------------------------------------
# 9. freeze_mask / sparse_enabled
# --------------------------------------------------------------------------
@pytest.mark.parametrize('forward_first', [True, False])
def test_freeze_mask(forward_first):
    layer = make_conv(seed=45)
    x = torch.randn(1, 8, 5, 5, generator=seeded(46))
    if forward_first:
        layer(x)
    dense_before = layer.weight.detach().clone()
    expected = ref_mask(dense_before, 2, 4)
    layer.freeze_mask()
    assert layer.mask_frozen
    assert torch.equal(layer.mask, expected)
    assert torch.equal(layer.weight.detach(), dense_before * expected)
    assert (layer.weight[~expected] == 0).all()
    assert torch.equal(layer.weight[expected], dense_before[expected])
    # the mask is recoverable from the frozen weight alone
    assert torch.equal(ref_mask(layer.weight, 2, 4), expected)

    frozen = layer.mask
    idx = pruned_index(expected)
    with torch.no_grad():
        layer.weight[idx] = 1e3
        layer.weight.mul_(-1)
    out = layer(x)
    assert layer.mask is frozen
    assert torch.equal(layer.mask, expected)
    assert torch.equal(out, conv_ref(layer, x,
                                     layer.weight.detach() * expected))


def test_sparse_disabled_is_dense():
    layer = make_conv(seed=47)
    x = torch.randn(1, 8, 5, 5, generator=seeded(48))
    layer(x)
    layer.sparse_enabled = False
    out = layer(x)
    assert layer.mask is None
    assert torch.equal(out, conv_ref(layer, x, layer.weight.detach()))
    assert torch.equal(layer.masked_weight(), layer.weight.detach())
    out.sum().backward()
    assert layer.weight.grad is not None
    # re-enabled: masked again
    layer.sparse_enabled = True
    out = layer(x)
    mask = ref_mask(layer.weight, 2, 4)
    assert torch.equal(layer.mask, mask)
    assert torch.equal(out, conv_ref(layer, x, layer.weight.detach() * mask))


# --------------------------------------------------------------------------
# 10. masked_weight
# --------------------------------------------------------------------------
def test_effective_weight():
    layer = make_conv(seed=49, orientation='flat', in_channels=4)
    eff = layer.masked_weight()
    mask = ref_mask(layer.weight, 2, 4, 'flat')
    assert torch.equal(eff, layer.weight.detach() * mask)
    assert not eff.requires_grad
    assert (eff[~mask] == 0).all()
    # a copy, not an alias of the trained weight
    eff.zero_()
    assert layer.weight.abs().sum() > 0

    torch.manual_seed(50)
    linear = SparseLinear(8, 4, n=1, m=4)
    assert torch.equal(linear.masked_weight(),
                       linear.weight.detach() * ref_mask(linear.weight, 1, 4))


def test_extra_repr_mentions_pattern():
    text = repr(make_conv(seed=51, n=1, m=4))
    assert '1:4' in text and 'channel' in text
