"""N:M attention, deformable and adaptive-padding convs against their
plain counterparts run with independently masked weights.

Every expected value comes from the stock layer (``nn.MultiheadAttention``,
``mmcv.ops.DeformConv2dPack``, ...) holding weights masked by
:func:`tests.nm_reference.reference_mask` (a stable sort, not mmnm's
kernels).
"""
import copy

import pytest
import torch
from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
from mmcv.cnn.bricks.transformer import MultiheadAttention as MMCVAttention
from mmcv.ops import (DeformConv2d, DeformConv2dPack, ModulatedDeformConv2d,
                      ModulatedDeformConv2dPack)
from nm_reference import reference_mask
from torch import nn

from mmnm.conversion import export_state_dict, sparsify_model
from mmnm.engine.optimizers import SRSTEOptimWrapper
from mmnm.layers import (NMSparseMixin, SparseConvAdaptivePadding,
                         SparseDeformConv2d, SparseDeformConv2dPack,
                         SparseLinear, SparseModulatedDeformConv2d,
                         SparseModulatedDeformConv2dPack,
                         SparseMultiheadAttention)

E, HEADS = 16, 4


def seeded_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter with N(0, 1) values (no ties, no zeros)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen))
    return module


def masked_copy(plain: nn.Module, keys) -> nn.Module:
    """A deep copy of ``plain`` with the parameters ``keys`` masked by the
    reference mask, as new leaf parameters."""
    ref = copy.deepcopy(plain)
    for key in keys:
        owner, _, attr = key.rpartition('.')
        module = ref.get_submodule(owner)
        weight = getattr(module, attr)
        setattr(module, attr,
                nn.Parameter(weight.detach() * reference_mask(weight)))
    return ref


# --------------------------------------------------------------------------
# multi-head attention
# --------------------------------------------------------------------------
def make_attention(batch_first, seed=0, **kwargs):
    plain = seeded_(
        nn.MultiheadAttention(E, HEADS, batch_first=batch_first, **kwargs),
        seed)
    model = nn.Sequential(copy.deepcopy(plain))
    sparsify_model(model)
    return plain, model[0]


def attention_inputs(batch_first, seed=1, length=5, batch=3):
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, length, E) if batch_first else (length, batch, E)
    query = torch.randn(shape, generator=gen)
    key = torch.randn(shape, generator=gen)
    padding = torch.zeros(batch, length, dtype=torch.bool)
    padding[0, -2:] = True
    return query, key, padding


ATTENTION_WEIGHTS = ('in_proj_weight', 'out_proj.weight')


@pytest.mark.parametrize('batch_first', [False, True])
@pytest.mark.parametrize('need_weights', [False, True])
@pytest.mark.parametrize('training', [True, False])
def test_attention_forward_is_plain_attention_on_masked_weights(
        batch_first, need_weights, training):
    plain, sparse = make_attention(batch_first)
    assert isinstance(sparse, SparseMultiheadAttention)
    assert isinstance(sparse.out_proj, SparseLinear)
    ref = masked_copy(plain, ATTENTION_WEIGHTS)
    sparse.train(training)
    ref.train(training)
    query, key, padding = attention_inputs(batch_first)
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    kwargs = dict(
        key_padding_mask=padding, need_weights=need_weights, attn_mask=mask)
    # eval under no_grad takes PyTorch's fused inference path
    with torch.set_grad_enabled(training):
        out, weights = sparse(query, key, key, **kwargs)
        want, want_weights = ref(query, key, key, **kwargs)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)
    if need_weights:
        torch.testing.assert_close(weights, want_weights)
    else:
        assert weights is None and want_weights is None
    assert torch.equal(sparse.mask, reference_mask(plain.in_proj_weight))
    assert torch.equal(sparse.out_proj.mask,
                       reference_mask(plain.out_proj.weight))
    # and it differs from the dense attention: the masks matter
    dense_out = plain.train(training)(query, key, key, **kwargs)[0]
    assert not torch.allclose(out, dense_out, atol=1e-3)


def test_attention_gradients_pass_straight_through():
    plain, sparse = make_attention(batch_first=True)
    ref = masked_copy(plain, ATTENTION_WEIGHTS)
    query, key, padding = attention_inputs(True)
    sparse(query, key, key, key_padding_mask=padding)[0].square().sum() \
        .backward()
    ref(query, key, key, key_padding_mask=padding)[0].square().sum() \
        .backward()
    # STE: the dense weights get the gradient of the masked ones, pruned
    # entries included (they keep learning)
    torch.testing.assert_close(sparse.in_proj_weight.grad,
                               ref.in_proj_weight.grad)
    torch.testing.assert_close(sparse.out_proj.weight.grad,
                               ref.out_proj.weight.grad)
    assert sparse.in_proj_weight.grad[~sparse.mask].abs().sum() > 0
    torch.testing.assert_close(sparse.in_proj_bias.grad, ref.in_proj_bias.grad)


def test_attention_with_dense_out_proj_and_bias_kv():
    plain, _ = make_attention(batch_first=False, add_bias_kv=True)
    model = nn.Sequential(copy.deepcopy(plain))
    report = sparsify_model(model, exclude=['0.out_proj'])
    sparse = model[0]
    assert type(sparse.out_proj) is \
        nn.modules.linear.NonDynamicallyQuantizableLinear
    assert report.layers[1].note == "excluded by '0.out_proj'"
    ref = masked_copy(plain, ['in_proj_weight'])
    query, key, _ = attention_inputs(False)
    torch.testing.assert_close(
        sparse(query, key, key)[0],
        ref(query, key, key)[0])


def test_attention_state_dict_keys_and_round_trip():
    plain, sparse = make_attention(batch_first=False)
    assert list(sparse.state_dict()) == list(plain.state_dict())
    # a dense checkpoint loads into the sparse layer ...
    other = seeded_(nn.MultiheadAttention(E, HEADS), seed=5)
    sparse.load_state_dict(other.state_dict())
    assert torch.equal(sparse.in_proj_weight, other.in_proj_weight)
    assert torch.equal(
        sparse.mask_for(sparse.in_proj_weight),
        reference_mask(other.in_proj_weight))
    # ... and the exported one into the dense layer, computing the same
    state = export_state_dict(nn.Sequential(sparse))
    assert torch.equal(
        state['0.in_proj_weight'],
        other.in_proj_weight * reference_mask(other.in_proj_weight))
    fresh = nn.MultiheadAttention(E, HEADS)
    fresh.load_state_dict({k[2:]: v for k, v in state.items()})
    query, key, _ = attention_inputs(False)
    torch.testing.assert_close(
        fresh(query, key, key)[0],
        sparse(query, key, key)[0])
    # to_dense gives the stock layer with the masked weights
    dense = sparse.to_dense()
    assert type(dense) is nn.MultiheadAttention
    assert torch.equal(dense.in_proj_weight, state['0.in_proj_weight'])


def test_mmcv_attention_wrapper_is_covered():
    model = nn.Sequential(seeded_(MMCVAttention(E, HEADS)))
    report = sparsify_model(model)
    assert isinstance(model[0].attn, SparseMultiheadAttention)
    assert [(row.name, str(row.pattern))
            for row in report.layers] == [('0.attn', '2:4'),
                                          ('0.attn.out_proj', '2:4')]
    assert report.zero_ratio == 0.5


def test_separate_projections_stay_dense_with_reason():
    model = nn.Sequential(nn.MultiheadAttention(E, HEADS, kdim=8, vdim=12))
    report = sparsify_model(model)
    assert type(model[0]) is nn.MultiheadAttention
    first, second = report.layers
    assert first.shape == (E, E + 8 + 12)
    assert 'separate q/k/v' in first.note
    assert "the attention '0' that reads this weight stays dense" in \
        second.note
    with pytest.raises(
            ValueError, match="'0.out_proj' cannot be 2:4.*"
            "reads this weight"):
        sparsify_model(model, overrides={'0.out_proj': '2:4'})
    assert type(model[0].out_proj) is \
        nn.modules.linear.NonDynamicallyQuantizableLinear


class AttentionNet(nn.Module):
    """One attention, mean squared output: for a hand-checked SGD step."""

    def __init__(self):
        super().__init__()
        self.attn = seeded_(nn.MultiheadAttention(E, HEADS, batch_first=True))

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0].square().mean()


def test_attention_sr_ste_step_matches_hand_derivation():
    lr, lam = 0.1, 0.5
    model = AttentionNet()
    ref = masked_copy(model.attn, ATTENTION_WEIGHTS)
    dense = {k: v.detach().clone() for k, v in model.attn.state_dict().items()}
    sparsify_model(model)
    wrapper = SRSTEOptimWrapper(
        torch.optim.SGD(model.parameters(), lr=lr), lambda_w=lam)
    x = attention_inputs(True)[0]
    wrapper.update_params(model(x))

    ref(x, x, x, need_weights=False)[0].square().mean().backward()
    for key, grad in (('in_proj_weight', ref.in_proj_weight.grad),
                      ('out_proj.weight', ref.out_proj.weight.grad)):
        pruned = ~reference_mask(dense[key])
        # W <- W - lr * (dL/dW~ + lambda_w * (1 - E) * W)
        expected = dense[key] - lr * (grad + lam * pruned * dense[key])
        torch.testing.assert_close(
            model.attn.state_dict()[key], expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        model.attn.in_proj_bias,
        dense['in_proj_bias'] - lr * ref.in_proj_bias.grad)


# --------------------------------------------------------------------------
# deformable and adaptive-padding convs
# --------------------------------------------------------------------------
def deform_inputs(plain, seed=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 8, 6, 6, generator=gen)
    packed = (DeformConv2dPack, ModulatedDeformConv2dPack,
              Conv2dAdaptivePadding)
    if isinstance(plain, packed):
        return (x, )
    offset = 0.5 * torch.randn(2, 18, 6, 6, generator=gen)
    if isinstance(plain, ModulatedDeformConv2d):
        return x, offset, torch.rand(2, 9, 6, 6, generator=gen)
    return x, offset


CONVS = [
    (lambda: DeformConv2d(8, 16, 3, padding=1), SparseDeformConv2d),
    (lambda: DeformConv2dPack(8, 16, 3, padding=1), SparseDeformConv2dPack),
    (lambda: ModulatedDeformConv2d(8, 16, 3, padding=1),
     SparseModulatedDeformConv2d),
    (lambda: ModulatedDeformConv2dPack(8, 16, 3, padding=1),
     SparseModulatedDeformConv2dPack),
    (lambda: Conv2dAdaptivePadding(8, 16, 3, stride=2),
     SparseConvAdaptivePadding),
]


@pytest.mark.parametrize('build,sparse_type', CONVS)
def test_special_conv_is_plain_conv_on_masked_weight(build, sparse_type):
    plain = seeded_(build())
    model = nn.Sequential(copy.deepcopy(plain))
    report = sparsify_model(model)
    sparse = model[0]
    assert type(sparse) is sparse_type
    assert report.layers[0].pattern is not None
    assert list(sparse.state_dict()) == list(plain.state_dict())
    # the offset conv of the *Pack modules is an ordinary layer of its own
    keys = ['weight'] + (['conv_offset.weight'] if hasattr(
        plain, 'conv_offset') else [])
    ref = masked_copy(plain, keys)
    inputs = deform_inputs(plain)
    out = sparse(*inputs)
    want = ref(*inputs)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, plain(*inputs), atol=1e-3)
    # straight-through gradient to the dense weight
    out.square().sum().backward()
    want.square().sum().backward()
    torch.testing.assert_close(
        sparse.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-5)
    # the exported weight loads into the stock layer, computing the same
    state = export_state_dict(model)
    fresh = build()
    fresh.load_state_dict({k[2:]: v for k, v in state.items()})
    torch.testing.assert_close(
        fresh(*inputs), out.detach(), rtol=1e-5, atol=1e-5)
    assert type(sparse.to_dense()) is type(plain)


@pytest.mark.parametrize('build,sparse_type', CONVS)
def test_special_conv_with_a_channels_last_weight(build, sparse_type):
    """A channels_last weight computes what the contiguous one does: the
    deformable convs get a contiguous masked weight (mmcv's kernels take
    no other), the adaptive-padding conv a channels_last one."""
    plain = seeded_(build())
    model = nn.Sequential(copy.deepcopy(plain))
    sparsify_model(model)
    sparse = model[0]
    inputs = deform_inputs(plain)
    want = sparse(*inputs)
    sparse.weight.data = sparse.weight.data.contiguous(
        memory_format=torch.channels_last)
    torch.testing.assert_close(sparse(*inputs), want, rtol=1e-5, atol=1e-5)
    layout = torch.contiguous_format if sparse.contiguous_masked_weight \
        else torch.channels_last
    assert sparse.masked_weight().is_contiguous(memory_format=layout)
    assert sparse.contiguous_masked_weight == (
        sparse_type is not SparseConvAdaptivePadding)


# --------------------------------------------------------------------------
# the table lists every weighted layer
# --------------------------------------------------------------------------
def test_every_weighted_module_is_in_the_table():
    from mmcv.cnn.bricks.conv_ws import ConvAWS2d, ConvWS2d

    class Custom(nn.Module):
        """A layer mmnm knows nothing about, holding a kernel weight."""

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(8, 8, 3, 3))

    model = nn.ModuleDict(
        dict(
            ws=ConvWS2d(8, 8, 3),
            aws=ConvAWS2d(8, 8, 3),
            up=nn.ConvTranspose2d(8, 8, 2, 2),
            embed=nn.Embedding(10, 8),
            custom=Custom(),
            norm=nn.LayerNorm(8),  # 1-D weight: not a weighted layer
            norm2d=nn.LayerNorm((4, 8)),  # 2-D, as GCNet's context block
            dcn=DeformConv2dPack(8, 8, 3, padding=1)))
    report = sparsify_model(model)
    notes = {row.name: row.note for row in report.layers}
    assert set(notes) == {
        'ws', 'aws', 'up', 'embed', 'custom', 'norm2d', 'dcn',
        'dcn.conv_offset'
    }
    assert 'standardises the weight' in notes['ws']
    assert 'standardises the weight' in notes['aws']
    assert 'transposed conv' in notes['up']
    assert 'lookup table' in notes['embed']
    assert 'not a GEMM weight' in notes['norm2d']
    assert notes['custom'] == 'no sparse counterpart for Custom'
    assert notes['dcn'] == 'default'
    dense = [row for row in report.layers if row.pattern is None]
    assert all(not isinstance(model[row.name], NMSparseMixin) for row in dense)


def test_attention_fused_inference_path_uses_masked_weights(monkeypatch):
    plain, sparse = make_attention(batch_first=True)
    ref = masked_copy(plain, ATTENTION_WEIGHTS).eval()
    sparse.eval()
    calls = []
    fused = torch._native_multi_head_attention

    def counted(*args, **kwargs):
        calls.append(1)
        return fused(*args, **kwargs)

    monkeypatch.setattr(torch, '_native_multi_head_attention', counted)
    query = attention_inputs(True)[0]
    with torch.no_grad():
        out = sparse(query, query, query, need_weights=False)[0]
        want = ref(query, query, query, need_weights=False)[0]
    assert len(calls) == 2  # both took PyTorch's fused path
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-6)


def test_sparsity_state_lists_what_init_sparsity_sets():
    """to_dense drops exactly the attributes init_sparsity adds."""
    plain = nn.Linear(8, 4)
    before = set(plain.__dict__)
    sparse = SparseLinear.from_dense(nn.Linear(8, 4), 2, 4)
    assert set(sparse.__dict__) - before == set(SparseLinear.SPARSITY_STATE)
    assert set(sparse.to_dense().__dict__) == before
