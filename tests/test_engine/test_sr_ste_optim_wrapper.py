"""Tests of the SR-STE optim wrappers (mmnm.engine.optimizers).

Every expected value is derived by hand in this file: a brute-force N:M
mask, the STE gradient from a separate functional forward on the masked
weight, the SR-STE term ``lambda_w * (1 - E) * W`` and PyTorch's SGD update
rule written out, then compared with what the wrappers produce when driven
the way mmengine drives them (``BaseModel.train_step``).
"""
import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, build_optim_wrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn

import mmnm  # noqa: F401  (registers the wrappers)
from mmnm.engine.optimizers import (AmpSRSTEOptimWrapper, SRSTEOptimWrapper,
                                    sr_ste_optim_wrapper)
from mmnm.layers import SparseConv, SparseLinear
from mmnm.ops import ext_available

N, M = 2, 4
NAMES = ('conv.weight', 'conv.bias', 'fc.weight', 'fc.bias')
SPARSE = ('conv.weight', 'fc.weight')


# --------------------------------------------------------------------------
# The model and its independent reference
# --------------------------------------------------------------------------
class TinyNet(BaseModel):
    """SparseConv(4->8, 3x3) -> tanh -> global mean -> SparseLinear(8->4);
    mean squared error loss. No BatchNorm, so accumulation is exact."""

    def __init__(self, dtype=torch.float64, seed=0):
        super().__init__()
        self.conv = SparseConv(4, 8, 3, padding=1, n=N, m=M, dtype=dtype)
        self.fc = SparseLinear(8, 4, n=N, m=M, dtype=dtype)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype))

    def forward(self, inputs, targets=None, mode='loss'):
        out = self.fc(torch.tanh(self.conv(inputs)).mean((2, 3)))
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        return out


class DenseNet(BaseModel):
    """No N:M sparse layer at all."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, inputs, targets=None, mode='loss'):
        return dict(loss=self.fc(inputs).pow(2).mean())


def make_data(batch=4, dtype=torch.float64, seed=1, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, 5, 5, generator=gen, dtype=dtype)
    y = scale * torch.randn(batch, 4, generator=gen, dtype=dtype)
    return dict(inputs=x, targets=y)


def ref_mask(weight, n=N, m=M):
    """Brute force: in every group of m consecutive input channels (at each
    output / kernel tap), keep the n largest magnitudes, ties to the lowest
    index."""
    w = weight.detach()
    w4 = w[:, :, None, None] if w.dim() == 2 else w
    mask4 = torch.zeros(w4.shape, dtype=torch.bool)
    out_ch, in_ch, kh, kw = w4.shape
    for k, r, s, g in itertools.product(
            range(out_ch), range(kh), range(kw), range(in_ch // m)):
        chans = range(g * m, (g + 1) * m)
        ranked = sorted(chans, key=lambda c: (-abs(float(w4[k, c, r, s])), c))
        for c in ranked[:n]:
            mask4[k, c, r, s] = True
    return mask4.view(w.shape)


def params_of(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def ref_forward(P, inputs, masks=None):
    """Functional forward of TinyNet with explicit (possibly masked)
    weights."""
    wc, wf = P['conv.weight'], P['fc.weight']
    if masks is not None:
        wc, wf = wc * masks['conv.weight'], wf * masks['fc.weight']
    h = torch.tanh(F.conv2d(inputs, wc, P['conv.bias'], padding=1))
    return F.linear(h.mean((2, 3)), wf, P['fc.bias'])


def ref_grads(P, data, lam, sparse=True, sr_times=1):
    """STE gradient (gradient w.r.t. the *masked* weight, computed on a
    separate leaf) plus ``sr_times`` SR-STE terms. Returns (grads, masks)."""
    masks = {k: ref_mask(P[k]) for k in SPARSE} if sparse else None
    leaves = {}
    for k in NAMES:
        t = P[k] * masks[k] if (sparse and k in SPARSE) else P[k]
        leaves[k] = t.clone().requires_grad_(True)
    out = ref_forward(leaves, data['inputs'])
    loss = ((out - data['targets'])**2).mean()
    grads = dict(zip(NAMES, torch.autograd.grad(loss, list(leaves.values()))))
    if sparse:
        for k in SPARSE:
            # (bool mask * python float would be float32: multiply P first)
            grads[k] = grads[k] + P[k] * (~masks[k]) * (sr_times * lam)
    return grads, masks


def ref_sgd(P, grads, bufs, lr, momentum=0.0, weight_decay=0.0):
    """torch.optim.SGD (dampening 0, no Nesterov) written out."""
    new = {}
    for k in NAMES:
        d = grads[k] + weight_decay * P[k]
        if momentum:
            bufs[k] = d.clone() if k not in bufs else momentum * bufs[k] + d
            d = bufs[k]
        new[k] = P[k] - lr * d
    return new


def spy_grads(wrapper, model):
    """Record the gradients the optimizer sees at each ``step``."""
    seen = []
    names = {id(p): k for k, p in model.named_parameters()}
    inner = wrapper.optimizer.step

    def step(*args, **kwargs):
        seen.append({
            names[id(p)]: p.grad.detach().clone()
            for g in wrapper.optimizer.param_groups
            for p in g['params'] if p.grad is not None
        })
        return inner(*args, **kwargs)

    wrapper.optimizer.step = step
    return seen


def assert_params_close(model, expected, **tol):
    tol = tol or dict(rtol=1e-12, atol=1e-13)
    for k, p in model.named_parameters():
        assert torch.allclose(p.detach(), expected[k], **tol), \
            f'{k}: max diff {(p.detach() - expected[k]).abs().max():.3e}'


def params_differ(a, b, atol=1e-9):
    return any(not torch.allclose(a[k], b[k], rtol=0, atol=atol)
               for k in NAMES)


def sgd(model, **kw):
    return torch.optim.SGD(model.parameters(), **kw)


@pytest.mark.parametrize('fused', [None, False])
def test_momentum_buffers_kept_while_momentum_is_zero(fused):
    """Momentum scheduled to 0 (or set so on resume): the buffers stay in
    the optimizer's state as torch.optim.SGD keeps them, fused weights and
    the rest alike."""
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.05, momentum=0.9),
        lambda_w=0.1,
        fused_sgd_step=fused)
    model.train_step(make_data(seed=1), wrapper)
    state = wrapper.optimizer.state
    kept = {
        k: state[p]['momentum_buffer'].clone()
        for k, p in model.named_parameters()
    }
    wrapper.optimizer.param_groups[0]['momentum'] = 0.0
    model.train_step(make_data(seed=2), wrapper)
    for k, p in model.named_parameters():
        assert torch.equal(state[p]['momentum_buffer'], kept[k]), k


# --------------------------------------------------------------------------
# 0. The reference itself is sound (guards against a vacuous comparison)
# --------------------------------------------------------------------------
def test_reference_mask_and_model_agree():
    model = TinyNet()
    data = make_data()
    P = params_of(model)
    out = model(**data, mode='predict')
    masks = {k: ref_mask(P[k]) for k in SPARSE}
    assert torch.equal(model.conv.mask, masks['conv.weight'])
    assert torch.equal(model.fc.mask, masks['fc.weight'])
    assert torch.allclose(
        out, ref_forward(P, data['inputs'], masks), rtol=1e-13, atol=1e-14)
    # exactly N kept per group of M along the input channels
    assert (masks['fc.weight'].view(4, 2, M).sum(-1) == N).all()
    conv = masks['conv.weight'].permute(0, 2, 3, 1).reshape(-1, M)
    assert (conv.sum(-1) == N).all()


# --------------------------------------------------------------------------
# 1. Two full SGD steps (momentum + weight decay) vs the hand computation
# --------------------------------------------------------------------------
@pytest.mark.parametrize('fused', [None, False])
@pytest.mark.parametrize('lam', [2e-4, 0.1])
def test_two_sgd_steps_match_hand_computation(lam, fused):
    lr, mu, wd = 0.05, 0.9, 1e-4
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=lr, momentum=mu, weight_decay=wd),
        lambda_w=lam,
        fused_sgd_step=fused)
    batches = [make_data(seed=1), make_data(seed=2)]

    P, bufs, masks_seen = params_of(model), {}, []
    for data in batches:
        grads, masks = ref_grads(P, data, lam)
        masks_seen.append(masks)
        P = ref_sgd(P, grads, bufs, lr, mu, wd)

    for i, data in enumerate(batches):
        model.train_step(data, wrapper)
        for k, layer in (('conv.weight', model.conv), ('fc.weight', model.fc)):
            assert torch.equal(layer.mask, masks_seen[i][k])
    assert_params_close(model, P)
    fused_weights = 0 if fused is False or not ext_available() else 2
    assert wrapper.fusion_report.startswith(
        f'SRSTEOptimWrapper: SR-STE term fused into the SGD step of '
        f'{fused_weights} of 2 sparse weights')
    # the optimizer keeps the momentum buffers of fused weights too
    for k, p in model.named_parameters():
        assert torch.allclose(
            wrapper.optimizer.state[p]['momentum_buffer'],
            bufs[k],
            rtol=1e-12,
            atol=1e-14)

    # the SR-STE term matters: without it the result is measurably different
    P0, bufs0 = params_of(TinyNet()), {}
    for data in batches:
        P0 = ref_sgd(P0, ref_grads(P0, data, 0.0)[0], bufs0, lr, mu, wd)
    assert params_differ(P, P0, atol=1e-9 if lam < 1e-3 else 1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
@pytest.mark.parametrize('accumulation', [1, 2])
def test_cuda_sgd_steps_match_hand_computation(accumulation):
    """The same steps on the GPU (masks, STE gradients, SR-STE term added
    to ``.grad``: the fused step is a CPU kernel) against the float64 hand
    computation on the CPU."""
    lr, mu, wd, lam = 0.05, 0.9, 1e-4, 0.1
    model = TinyNet().cuda()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=lr, momentum=mu, weight_decay=wd),
        lambda_w=lam,
        accumulative_counts=accumulation)
    batches = [make_data(seed=seed) for seed in (1, 2, 3, 4)]

    P, bufs = params_of(TinyNet()), {}
    for first in range(0, len(batches), accumulation):
        window = batches[first:first + accumulation]
        # mmengine divides each micro-batch's loss by the window's size;
        # the term is added once per optimizer step
        grads = {k: 0.0 for k in NAMES}
        for data in window:
            micro, masks = ref_grads(P, data, 0.0)
            grads = {k: grads[k] + micro[k] / accumulation for k in NAMES}
        for k in SPARSE:
            grads[k] = grads[k] + P[k] * (~masks[k]) * lam
        P = ref_sgd(P, grads, bufs, lr, mu, wd)
        for data in window:
            model.train_step({k: v.cuda() for k, v in data.items()}, wrapper)
        for k in SPARSE:
            layer = model.get_submodule(k[:-len('.weight')])
            assert layer.mask.is_cuda
            assert torch.equal(layer.mask.cpu(), masks[k]), k
    got = {k: p.detach().cpu() for k, p in model.named_parameters()}
    for k in NAMES:
        torch.testing.assert_close(got[k], P[k], rtol=1e-10, atol=1e-12)
    assert wrapper.fusion_report.startswith(
        'SRSTEOptimWrapper: SR-STE term fused into the SGD step of 0 of 2')


def forward_masks(model):
    """The mask each sparse layer's forwards run with, by weight name,
    recorded at every forward."""
    seen = {}

    def record(name):

        def hook(layer, args, output):
            seen.setdefault(name, []).append(layer.mask.clone())

        return hook

    for name in SPARSE:
        layer = model.get_submodule(name.rsplit('.', 1)[0])
        layer.register_forward_hook(record(name))
    return seen


@pytest.mark.parametrize('fused_step', [None, False])
def test_mask_follows_weights_between_steps(fused_step):
    """The second step's mask is recomputed from the updated weight."""
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=3.0), lambda_w=0., fused_sgd_step=fused_step)
    seen = forward_masks(model)
    data = make_data()
    model.train_step(data, wrapper)
    P1 = params_of(model)
    model.train_step(data, wrapper)
    for name in SPARSE:
        assert torch.equal(seen[name][1], ref_mask(P1[name]))
        # after the step, the layer's mask is that of its current weight
        # (computed by the fused step, or at the next forward)
        assert torch.equal(
            model.get_submodule(name[:-7]).update_mask(),
            ref_mask(params_of(model)[name]))


# --------------------------------------------------------------------------
# 2. lambda_w = 0 is plain STE; the term only touches pruned positions
# --------------------------------------------------------------------------
def test_lambda_zero_is_plain_ste():
    lr = 0.1
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=lr), lambda_w=0., fused_sgd_step=False)
    seen = spy_grads(wrapper, model)
    data = make_data()
    P = params_of(model)
    grads, _ = ref_grads(P, data, lam=0.)
    model.train_step(data, wrapper)
    for k in NAMES:
        assert torch.allclose(seen[0][k], grads[k], rtol=1e-12, atol=1e-14)
    assert_params_close(model, ref_sgd(P, grads, {}, lr))


def test_sr_term_only_touches_pruned_positions():
    lam = 0.1
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.1), lambda_w=lam, fused_sgd_step=False)
    seen = spy_grads(wrapper, model)
    data = make_data()
    P = params_of(model)
    ste, masks = ref_grads(P, data, lam=0.)
    model.train_step(data, wrapper)
    g = seen[0]
    for k in SPARSE:
        keep = masks[k]
        # kept positions: the STE gradient, untouched
        assert torch.allclose(g[k][keep], ste[k][keep], rtol=1e-12, atol=1e-14)
        # pruned positions: STE gradient + lambda * W
        assert torch.allclose(
            g[k][~keep],
            ste[k][~keep] + lam * P[k][~keep],
            rtol=1e-12,
            atol=1e-14)
        assert not torch.allclose(g[k][~keep], ste[k][~keep], atol=1e-6)
    for k in ('conv.bias', 'fc.bias'):  # biases: never an SR term
        assert torch.allclose(g[k], ste[k], rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------
# 3. Gradient accumulation: same as the full batch; SR term once per step
# --------------------------------------------------------------------------
def test_gradient_accumulation_matches_full_batch_and_adds_term_once():
    lr, mu, wd, lam = 0.05, 0.9, 1e-4, 0.1
    full = [make_data(batch=4, seed=s) for s in (1, 2)]
    halves = [{
        k: v[sl]
        for k, v in d.items()
    } for d in full for sl in (slice(0, 2), slice(2, 4))]

    acc_model = TinyNet()
    acc = SRSTEOptimWrapper(
        optimizer=sgd(acc_model, lr=lr, momentum=mu, weight_decay=wd),
        lambda_w=lam,
        accumulative_counts=2)
    calls = []
    inner_add = acc.add_sr_ste_term
    acc.add_sr_ste_term = lambda **kw: (calls.append(acc._inner_count),
                                        inner_add(**kw))[1]
    before = params_of(acc_model)
    for i, data in enumerate(halves):
        acc_model.train_step(data, acc)
        if i % 2 == 0:  # first micro-batch: no step yet
            assert not params_differ(params_of(acc_model), before, atol=0)
        before = params_of(acc_model)
    assert calls == [2, 4]  # once per optimizer step, at the step

    full_model = TinyNet()
    one = SRSTEOptimWrapper(
        optimizer=sgd(full_model, lr=lr, momentum=mu, weight_decay=wd),
        lambda_w=lam,
        accumulative_counts=1)
    for data in full:
        full_model.train_step(data, one)
    assert_params_close(acc_model, params_of(full_model))

    # hand computation: term added once ...
    P, bufs = params_of(TinyNet()), {}
    P2, bufs2 = dict(P), {}
    for data in full:
        P = ref_sgd(P, ref_grads(P, data, lam)[0], bufs, lr, mu, wd)
        P2 = ref_sgd(P2,
                     ref_grads(P2, data, lam, sr_times=2)[0], bufs2, lr, mu,
                     wd)
    assert_params_close(acc_model, P)
    # ... and adding it per micro-batch (twice) would be visibly different
    assert params_differ(P, P2, atol=1e-5)


# --------------------------------------------------------------------------
# 4. Clipping sees the SR term
# --------------------------------------------------------------------------
def test_clip_grad_includes_sr_term():
    lr, lam, max_norm = 1.0, 1.0, 1e-3
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=lr),
        lambda_w=lam,
        clip_grad=dict(max_norm=max_norm))
    data = make_data()
    P = params_of(model)
    g_sr, _ = ref_grads(P, data, lam)  # g + SR term
    g_ste, masks = ref_grads(P, data, 0.)  # g alone
    model.train_step(data, wrapper)
    update = torch.cat([(P[k] - p.detach()).flatten() / lr
                        for k, p in model.named_parameters()])
    expected = torch.cat(
        [g_sr[k].flatten() for k, _ in model.named_parameters()])
    assert expected.norm() > 100 * max_norm  # clipping is active
    # the clipped gradient has norm max_norm ...
    assert torch.allclose(
        update.norm(), torch.tensor(max_norm, dtype=update.dtype), rtol=1e-5)
    # ... and the direction of g + SR term
    assert torch.allclose(
        update / update.norm(),
        expected / expected.norm(),
        rtol=1e-10,
        atol=1e-12)
    # had the term been added after clipping, the update would differ
    g_flat = torch.cat(
        [g_ste[k].flatten() for k, _ in model.named_parameters()])
    late = g_flat * max_norm / g_flat.norm() + torch.cat(
        [(P[k] * (~masks[k]) *
          lam).flatten() if k in SPARSE else torch.zeros_like(P[k]).flatten()
         for k, _ in model.named_parameters()])
    assert not torch.allclose(update, late, atol=1e-6)


# --------------------------------------------------------------------------
# 5. AMP on CPU: the term is added to the unscaled gradient
# --------------------------------------------------------------------------
def make_amp_wrapper(monkeypatch, model, init_scale, **kwargs):
    monkeypatch.setattr(
        'mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available',
        lambda: True)
    wrapper = AmpSRSTEOptimWrapper(
        optimizer=sgd(model, **kwargs.pop('sgd')), **kwargs)
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=init_scale)
    wrapper.bind(model)
    return wrapper


def run_steps(model, wrapper, batches):
    for data in batches:
        wrapper.update_params(model(**data)['loss'])


@pytest.mark.parametrize('clip', [None, dict(max_norm=1e-2)])
def test_amp_matches_fp32_and_term_is_not_scaled(monkeypatch, clip):
    lam, scale = 0.1, 2.**10
    sgd_kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-4)
    extra = dict(clip_grad=clip) if clip else {}
    batches = [make_data(dtype=torch.float32, seed=s) for s in (1, 2)]

    amp_model = TinyNet(dtype=torch.float32)
    amp = make_amp_wrapper(
        monkeypatch, amp_model, scale, sgd=sgd_kw, lambda_w=lam, **extra)
    assert amp.loss_scaler.get_scale() == scale
    run_steps(amp_model, amp, batches)
    assert amp.loss_scaler.get_scale() == scale  # no overflow, no growth yet

    def fp32_run(lambda_w):
        model = TinyNet(dtype=torch.float32)
        wrapper = SRSTEOptimWrapper(
            optimizer=sgd(model, **sgd_kw), lambda_w=lambda_w, **extra)
        wrapper.bind(model)
        run_steps(model, wrapper, batches)
        return params_of(model)

    expected = fp32_run(lam)
    assert_params_close(amp_model, expected, rtol=1e-5, atol=1e-6)
    # a term divided by the loss scale would give a different result
    assert params_differ(expected, fp32_run(lam / scale), atol=1e-4)


def test_amp_overflow_skips_step_and_lowers_scale(monkeypatch):
    model = TinyNet(dtype=torch.float32)
    amp = make_amp_wrapper(
        monkeypatch, model, 3e38, sgd=dict(lr=0.1, momentum=0.9), lambda_w=0.1)
    data = make_data(dtype=torch.float32, scale=100.)
    before = params_of(model)
    amp.update_params(model(**data)['loss'])
    after = params_of(model)
    for k in NAMES:
        assert torch.equal(before[k], after[k])
    assert amp.loss_scaler.get_scale() < 3e38
    assert amp.loss_scaler.get_scale() == pytest.approx(3e38 * 0.5, rel=1e-6)
    # nothing was stepped: no momentum state
    assert all(not s for s in amp.optimizer.state.values())


# --------------------------------------------------------------------------
# 5b. SR-STE whatever drives the wrapper: no optim_context, no bind
# --------------------------------------------------------------------------
class PlainNet(nn.Module):
    """TinyNet as a plain ``nn.Module``: a model of any training loop."""

    def __init__(self, dtype=torch.float64):
        super().__init__()
        tiny = TinyNet(dtype=dtype)
        self.conv, self.fc = tiny.conv, tiny.fc

    def forward(self, inputs):
        return self.fc(torch.tanh(self.conv(inputs)).mean((2, 3)))


def mse(model, data):
    return ((model(data['inputs']) - data['targets'])**2).mean()


def hand_sgd(batches, lam, lr, mu, dtype=torch.float64):
    P, bufs = params_of(TinyNet(dtype=dtype)), {}
    for data in batches:
        P = ref_sgd(P, ref_grads(P, data, lam)[0], bufs, lr, mu)
    return P


@pytest.mark.parametrize('drive', ['update_params', 'backward_step'])
def test_plain_loop_gets_the_sr_ste_update(drive):
    """The issue's case: three SGD steps, lambda_w=0.5, no optim_context;
    plain STE would be 1e-2 away."""
    lr, mu, lam = 0.1, 0.9, 0.5
    model = PlainNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=lr, momentum=mu), lambda_w=lam)
    batches = [make_data(seed=s) for s in (1, 2, 3)]
    for data in batches:
        loss = mse(model, data)
        if drive == 'update_params':
            wrapper.update_params(loss)
        else:
            wrapper.backward(loss)
            wrapper.step()
            wrapper.zero_grad()
    expected = hand_sgd(batches, lam, lr, mu)
    assert_params_close(model, expected)
    assert params_differ(expected, hand_sgd(batches, 0., lr, mu), atol=1e-3)


def test_plain_loop_accumulation_adds_the_term_once_per_step():
    lr, mu, lam = 0.05, 0.9, 0.1
    full = [make_data(batch=4, seed=s) for s in (1, 2)]
    halves = [{
        k: v[sl]
        for k, v in d.items()
    } for d in full for sl in (slice(0, 2), slice(2, 4))]
    model = PlainNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=lr, momentum=mu),
        lambda_w=lam,
        accumulative_counts=2)
    for data in halves:
        wrapper.update_params(mse(model, data))
    assert_params_close(model, hand_sgd(full, lam, lr, mu))


def test_plain_loop_amp_term_on_the_unscaled_gradient(monkeypatch):
    monkeypatch.setattr(
        'mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available',
        lambda: True)
    lr, mu, lam = 0.05, 0.9, 0.5
    model = PlainNet(dtype=torch.float32)
    wrapper = AmpSRSTEOptimWrapper(
        optimizer=sgd(model, lr=lr, momentum=mu), lambda_w=lam)
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.**12)
    batches = [make_data(dtype=torch.float32, seed=s) for s in (1, 2, 3)]
    for data in batches:
        wrapper.update_params(mse(model, data))
    assert_params_close(
        model,
        hand_sgd(batches, lam, lr, mu, torch.float32),
        rtol=1e-5,
        atol=1e-6)


def test_plain_loop_dense_warmup_needs_bind_before_the_first_forward():
    data = make_data()
    model = PlainNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.1), sparse_start_iter=2)
    with pytest.raises(
            RuntimeError,
            match='first forward ran N:M sparse.*'
            r'optim_wrapper.bind\(model\)'):
        wrapper.update_params(mse(model, data))

    model = PlainNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.1), sparse_start_iter=2, freeze_mask_iter=3)
    wrapper.bind(model)
    states = []
    for _ in range(4):
        loss = mse(model, data)
        states.append((model.conv.mask is not None, model.conv.mask_frozen))
        wrapper.update_params(loss)
    assert states == [(False, False), (False, False), (True, False),
                      (True, True)]


# --------------------------------------------------------------------------
# 6. Schedule: dense warm-up, then masks; frozen masks
# --------------------------------------------------------------------------
def test_dense_warmup_then_sparse():
    lam = 0.1
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.1),
        lambda_w=lam,
        sparse_start_iter=2,
        fused_sgd_step=False)
    seen = spy_grads(wrapper, model)
    data = make_data()
    for it in range(4):
        P = params_of(model)
        with wrapper.optim_context(model):
            out = model(**data, mode='predict')
            loss = ((out - data['targets'])**2).mean()
        if it < 2:
            assert model.fc.mask is None and model.conv.mask is None
            assert torch.allclose(
                out, ref_forward(P, data['inputs']), rtol=1e-13, atol=1e-14)
        else:
            masks = {k: ref_mask(P[k]) for k in SPARSE}
            assert torch.equal(model.conv.mask, masks['conv.weight'])
            assert torch.equal(model.fc.mask, masks['fc.weight'])
            assert torch.allclose(
                out,
                ref_forward(P, data['inputs'], masks),
                rtol=1e-13,
                atol=1e-14)
        wrapper.update_params(loss)
        # the grads the optimizer saw: dense (no SR term) or STE + SR term
        grads, _ = ref_grads(P, data, lam, sparse=it >= 2)
        for k in NAMES:
            assert torch.allclose(
                seen[it][k], grads[k], rtol=1e-12, atol=1e-14)


def test_schedule_switches_only_between_optimizer_steps():
    """With accumulative_counts=2 a switch at iteration 3 waits for the
    window that starts at iteration 4: one step never mixes dense and sparse
    micro-batches."""
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.1),
        sparse_start_iter=3,
        accumulative_counts=2)
    data = make_data()
    sparse_at = []
    for _ in range(6):
        with wrapper.optim_context(model):
            loss = ((model(**data, mode='predict') -
                     data['targets'])**2).mean()
        sparse_at.append(model.conv.mask is not None)
        wrapper.update_params(loss)
    assert sparse_at == [False, False, False, False, True, True]


def group_counts(weight):
    w = weight.detach()
    w4 = w[:, :, None, None] if w.dim() == 2 else w
    return (w4 != 0).permute(0, 2, 3, 1).reshape(-1, M).sum(-1)


def test_freeze_mask_keeps_mask_and_zeroes_pruned_weights():
    freeze_at = 3
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.5, momentum=0.9, weight_decay=1e-4),
        lambda_w=2e-4,
        sparse_start_iter=1,
        freeze_mask_iter=freeze_at)
    data = [make_data(seed=s) for s in range(8)]
    frozen = None
    for it, d in enumerate(data):
        P = params_of(model)
        if it == 6:
            # push the pruned weights far above the kept ones: an unfrozen
            # mask would flip, a frozen one must not
            with torch.no_grad():
                for layer in (model.conv, model.fc):
                    layer.weight[~layer.mask] = 10.
        model.train_step(d, wrapper)
        if it == freeze_at:
            frozen = {k: ref_mask(P[k]) for k in SPARSE}
        if it >= freeze_at:
            for k, layer in (('conv.weight', model.conv), ('fc.weight',
                                                           model.fc)):
                assert layer.mask_frozen
                assert torch.equal(layer.mask, frozen[k])
                # pruned weights are exactly zero after every step
                assert (layer.weight.detach()[~frozen[k]] == 0).all()
                # the kept ones still train
                assert not torch.equal(layer.weight.detach()[frozen[k]],
                                       P[k][frozen[k]])
                eff = layer.masked_weight()
                assert torch.equal(eff, layer.weight.detach())
                assert (group_counts(eff) <= N).all()
        else:
            assert not model.fc.mask_frozen
    # momentum buffers do hold non-zero values at pruned positions, so the
    # zeros above come from re-masking, not from a quiet optimizer
    buf = wrapper.optimizer.state[model.fc.weight]['momentum_buffer']
    assert (buf[~frozen['fc.weight']] != 0).any()


# --------------------------------------------------------------------------
# Masks must follow every optimizer implementation
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    'impl',
    [
        dict(foreach=False),
        dict(foreach=True),
        # fused optimizers update weights without bumping their version counter
        dict(fused=True),
    ])
@pytest.mark.parametrize('fused_step', [None, False])
def test_mask_recomputed_after_step_for_every_optimizer_impl(impl, fused_step):
    lr, lam = 3.0, 0.
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=lr, **impl),
        lambda_w=lam,
        fused_sgd_step=fused_step)
    seen = forward_masks(model)
    data = make_data()
    P = params_of(model)
    model.train_step(data, wrapper)
    P1 = ref_sgd(P, ref_grads(P, data, lam)[0], {}, lr)
    assert_params_close(model, P1)
    new = {k: ref_mask(P1[k]) for k in SPARSE}
    assert not torch.equal(new['conv.weight'], ref_mask(P['conv.weight']))
    model.train_step(data, wrapper)
    for name in SPARSE:
        assert torch.equal(seen[name][1], new[name])


# --------------------------------------------------------------------------
# The term fused into the SGD step
# --------------------------------------------------------------------------
def test_fused_step_leaves_the_term_out_of_the_gradient():
    """Fused, ``.grad`` stays the STE gradient and the update still has
    the term; unfused, the term is in ``.grad``."""
    lam, lr = 0.1, 0.05
    data = make_data()
    for fused in (None, False):
        model = TinyNet()
        wrapper = SRSTEOptimWrapper(
            optimizer=sgd(model, lr=lr), lambda_w=lam, fused_sgd_step=fused)
        P = params_of(model)
        ste, _ = ref_grads(P, data, 0.)
        sr, _ = ref_grads(P, data, lam)
        with wrapper.optim_context(model):
            loss = model(**data)['loss']
        wrapper.backward(loss)
        wrapper.step()
        expected = ste if fused is None and ext_available() else sr
        for k in NAMES:
            assert torch.allclose(
                model.get_parameter(k).grad,
                expected[k],
                rtol=1e-12,
                atol=1e-14), (fused, k)
        assert_params_close(model, ref_sgd(P, sr, {}, lr))


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_fused_and_unfused_steps_agree_and_share_optimizer_state():
    """Two param groups (Nesterov, maximize, dampening, own lr), fused for
    two steps then unfused for two, against unfused throughout: the
    momentum buffers carry over between the two paths."""

    def groups(model):
        return [
            dict(
                params=[model.conv.weight, model.conv.bias],
                lr=0.02,
                momentum=0.9,
                nesterov=True,
                weight_decay=1e-3),
            dict(
                params=[model.fc.weight, model.fc.bias],
                lr=0.05,
                momentum=0.8,
                dampening=0.2,
                maximize=True),
        ]

    batches = [make_data(seed=s) for s in range(4)]
    results = []
    for switch in (True, False):
        model = TinyNet()
        wrapper = SRSTEOptimWrapper(
            optimizer=torch.optim.SGD(groups(model), lr=0.1),
            lambda_w=0.1,
            fused_sgd_step=None if switch else False)
        for i, data in enumerate(batches):
            if switch and i == 2:
                assert 'fused into the SGD step of 2 of 2' in \
                    wrapper.fusion_report
                wrapper.fused_sgd_step = False
            model.train_step(data, wrapper)
        assert '0 of 2' in wrapper.fusion_report
        results.append(params_of(model))
    for k in NAMES:
        torch.testing.assert_close(
            results[0][k], results[1][k], rtol=1e-12, atol=1e-14)
    assert params_differ(results[0], params_of(TinyNet()))


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_next_masks_streamed_past_a_smaller_cache(monkeypatch):
    """Where the masked weights together are more than the last-level cache
    holds (or ``stream_next_masks=True`` says so), the fused steps write
    the next masks past the caches; the log says which at the first step,
    and why, and nothing more while it holds. The training is the same to
    the last bit either way; an unknown cache size never streams."""
    module = 'mmnm.engine.optimizers.sr_ste_optim_wrapper'
    streamed, logged = [], []
    step = sr_ste_optim_wrapper.sr_ste_sgd_step_

    def spy(*args, **kwargs):
        streamed.append(kwargs['stream_remask'])
        return step(*args, **kwargs)

    monkeypatch.setattr(f'{module}.sr_ste_sgd_step_', spy)
    monkeypatch.setattr(f'{module}.print_log',
                        lambda msg, **kwargs: logged.append(msg))
    model = TinyNet()
    # the bytes of the two masked weights (float64)
    masked = 8 * (model.conv.weight.numel() + model.fc.weight.numel())
    batches = [make_data(seed=s) for s in range(3)]
    cases = [  # cache size, stream_next_masks, streams, why
        (masked - 1, None, True, 'the masked weights take'),
        (masked, None, False, 'the masked weights take'),
        (None, None, False, 'the last-level cache size is unknown'),
        (1 << 30, True, True, 'stream_next_masks=True'),
        (1, False, False, 'stream_next_masks=False'),
    ]
    results = []
    for cache, setting, streams, why in cases:
        monkeypatch.setattr(
            f'{module}.last_level_cache_bytes', lambda cache=cache: cache)
        model = TinyNet()
        wrapper = SRSTEOptimWrapper(
            optimizer=sgd(model, lr=0.5, momentum=0.9),
            lambda_w=0.1,
            stream_next_masks=setting)
        seen = forward_masks(model)
        streamed.clear()
        logged.clear()
        run_steps(model, wrapper, batches)
        assert streamed == [streams] * 2 * len(batches), cache
        lines = [line for line in logged if 'next masks' in line]
        where = 'past the caches' if streams else 'through the caches'
        assert len(lines) == 1 and where in lines[0] and why in lines[0], \
            lines
        # the next forward's masks, computed by the last (streamed) step
        assert model.conv._step_mask_taken and model.fc._step_mask_taken
        for name in SPARSE:
            layer = model.get_submodule(name[:-len('.weight')])
            assert torch.equal(layer.update_mask(), ref_mask(layer.weight))
        results.append((params_of(model), seen))
    first_params, first_seen = results[0]
    for params, seen in results[1:]:
        for name in NAMES:
            assert torch.equal(params[name], first_params[name])
        for name in SPARSE:
            assert len(seen[name]) == len(batches)
            for got, want in zip(seen[name], first_seen[name]):
                assert torch.equal(got, want)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_stream_choice_follows_the_setting_and_the_weights(monkeypatch):
    """The choice is made again when ``stream_next_masks`` or the masked
    weights' size changes, and only then: a changed choice is logged once,
    a changed size that keeps it is not."""
    module = 'mmnm.engine.optimizers.sr_ste_optim_wrapper'
    logged, asked = [], []

    def cache_size():
        asked.append(True)
        return masked - 1  # a cache smaller than the masked weights

    monkeypatch.setattr(f'{module}.print_log',
                        lambda msg, **kwargs: logged.append(msg))
    monkeypatch.setattr(f'{module}.last_level_cache_bytes', cache_size)
    model = TinyNet()
    masked = 8 * (model.conv.weight.numel() + model.fc.weight.numel())
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.5, momentum=0.9), lambda_w=0.1)
    run_steps(model, wrapper, [make_data(seed=0)])
    choices = []
    for setting in (None, None, False, False, None):
        wrapper.stream_next_masks = setting
        choices.append(wrapper.streams_next_masks())
    assert choices == [True, True, False, False, True]
    lines = [line for line in logged if 'next masks' in line]
    assert [('past' in line, 'stream_next_masks=False' in line)
            for line in lines] == [(True, False), (False, True), (True, False)]
    assert len(asked) == 2  # the cache size read for the two None choices
    # a bigger masked weight is a new size: decided again, the same choice
    layer = model.conv
    layer.weight.data = torch.cat([layer.weight.data] * 2)
    assert wrapper.streams_next_masks() and len(asked) == 3
    assert len([line for line in logged if 'next masks' in line]) == 3


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
@pytest.mark.parametrize('case,reason', [
    ('clip', 'clip_grad is set'),
    ('adam', 'the optimizer is Adam, not torch.optim.SGD'),
    ('layout', 'momentum buffer not laid out in memory as weight'),
])
def test_unfused_weights_are_named_with_the_reason(case, reason):
    """``layout``: the conv weight made channels_last after a step, its
    momentum buffer still contiguous (what ``model.to(memory_format=...)``
    in the middle of training does)."""

    def model_and_optimizer():
        model = TinyNet(dtype=torch.float32)
        if case == 'adam':
            return model, torch.optim.Adam(model.parameters(), lr=1e-3)
        return model, sgd(model, lr=0.05, momentum=0.9)

    def relayout(model, wrapper):
        if case == 'layout':  # a first step makes the momentum buffers
            model.train_step(make_data(dtype=torch.float32), wrapper)
            model.conv.weight.data = model.conv.weight.data.contiguous(
                memory_format=torch.channels_last)

    kwargs = dict(lambda_w=0.1)
    if case == 'clip':
        kwargs['clip_grad'] = dict(max_norm=10.)
    model, optimizer = model_and_optimizer()
    wrapper = SRSTEOptimWrapper(optimizer=optimizer, **kwargs)
    relayout(model, wrapper)
    model.train_step(make_data(dtype=torch.float32), wrapper)
    report = wrapper.fusion_report
    fused = 1 if case == 'layout' else 0
    assert f'SGD step of {fused} of 2 sparse weights' in report
    assert reason in report and "layer 'conv'" in report
    assert ("layer 'fc'" in report) == (case != 'layout')
    # where fusion is required, the same step stops with that message
    model, optimizer = model_and_optimizer()
    strict = SRSTEOptimWrapper(
        optimizer=optimizer, fused_sgd_step=True, **kwargs)
    if case == 'layout':
        relayout(model, strict)
    initial = params_of(model)
    with pytest.raises(ValueError, match=reason):
        model.train_step(make_data(dtype=torch.float32), strict)
    assert not params_differ(params_of(model), initial, atol=0)  # no step


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_channels_last_conv_takes_the_fused_step():
    """A channels_last conv weight (its gradient, momentum buffer and
    mask buffers channels_last too) is stepped by the fused kernel, which
    also computes its next mask: the same values as the contiguous
    model's steps, and the mask of the weight it wrote."""
    lr, mu, wd, lam = 0.05, 0.9, 1e-4, 0.1
    results = []
    for layout in (torch.contiguous_format, torch.channels_last):
        model = TinyNet()
        model.conv.weight.data = model.conv.weight.data.contiguous(
            memory_format=layout)
        wrapper = SRSTEOptimWrapper(
            optimizer=sgd(model, lr=lr, momentum=mu, weight_decay=wd),
            lambda_w=lam)
        for seed in (1, 2, 3):
            model.train_step(make_data(seed=seed), wrapper)
            assert 'SGD step of 2 of 2 sparse weights' in \
                wrapper.fusion_report
        conv = model.conv
        assert conv.weight.is_contiguous(memory_format=layout)
        assert conv.mask.is_contiguous(memory_format=layout)
        # the step computed the mask of the weight it wrote
        assert conv.mask_buffer_for_step() is not None
        assert torch.equal(conv.update_mask(), ref_mask(conv.weight))
        results.append(params_of(model))
    for k in NAMES:
        torch.testing.assert_close(
            results[1][k], results[0][k], rtol=1e-12, atol=1e-14)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_fused_step_follows_regrouped_params():
    """A weight moved to a new param group after some steps is stepped
    with that group's settings (here lr=0: it stays where it is)."""
    model = TinyNet(dtype=torch.float32)
    optimizer = sgd(model, lr=0.05)
    wrapper = SRSTEOptimWrapper(optimizer=optimizer, lambda_w=0.1)
    model.train_step(make_data(dtype=torch.float32), wrapper)
    assert 'SGD step of 2 of 2' in wrapper.fusion_report
    group = optimizer.param_groups[0]
    group['params'] = [p for p in group['params'] if p is not model.fc.weight]
    optimizer.add_param_group(dict(params=[model.fc.weight], lr=0.0))
    before = params_of(model)
    model.train_step(make_data(dtype=torch.float32, seed=2), wrapper)
    after = params_of(model)
    assert 'SGD step of 2 of 2' in wrapper.fusion_report
    assert torch.equal(after['fc.weight'], before['fc.weight'])
    assert not torch.equal(after['conv.weight'], before['conv.weight'])
    # swapped in place (same list, same length) for a parameter the
    # layer does not use: the layer's weight is in no group any more
    optimizer.param_groups[1]['params'][0] = nn.Parameter(
        model.fc.weight.detach().clone())
    model.train_step(make_data(dtype=torch.float32, seed=3), wrapper)
    assert "not in the optimizer's param groups" in wrapper.fusion_report
    assert torch.equal(params_of(model)['fc.weight'], after['fc.weight'])


def test_amp_wrapper_says_the_term_is_not_fused(monkeypatch):
    model = TinyNet(dtype=torch.float32)
    amp = make_amp_wrapper(
        monkeypatch, model, 2.**4, sgd=dict(lr=0.05), lambda_w=0.1)
    run_steps(model, amp, [make_data(dtype=torch.float32)])
    assert 'SGD step of 0 of 2 sparse weights' in amp.fusion_report
    assert 'unscales and checks the gradients' in amp.fusion_report


# --------------------------------------------------------------------------
# 7. Errors
# --------------------------------------------------------------------------
def test_model_without_sparse_layers_raises():
    model = DenseNet()
    wrapper = SRSTEOptimWrapper(optimizer=sgd(model, lr=0.1))
    with pytest.raises(RuntimeError, match='no N:M sparse layer'):
        with wrapper.optim_context(model):
            pass
    with pytest.raises(RuntimeError, match='no N:M sparse layer'):
        model.train_step(dict(inputs=torch.randn(2, 8)), wrapper)


@pytest.mark.parametrize('kwargs', [
    dict(lambda_w=-1e-4),
    dict(sparse_start_iter=-1),
    dict(sparse_start_iter=5, freeze_mask_iter=4),
])
def test_invalid_arguments_raise(kwargs):
    model = TinyNet()
    with pytest.raises(ValueError):
        SRSTEOptimWrapper(optimizer=sgd(model, lr=0.1), **kwargs)


def test_freeze_at_start_is_valid():
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.1), sparse_start_iter=2, freeze_mask_iter=2)
    assert wrapper.freeze_mask_iter == 2


# --------------------------------------------------------------------------
# 8. Registry
# --------------------------------------------------------------------------
def test_registry_builds_wrapper_with_defaults():
    model = TinyNet()
    wrapper = OPTIM_WRAPPERS.build(
        dict(type='SRSTEOptimWrapper', optimizer=sgd(model, lr=0.1)))
    assert isinstance(wrapper, SRSTEOptimWrapper)
    assert isinstance(wrapper, OptimWrapper)
    assert wrapper.lambda_w == 2e-4
    assert wrapper.sparse_start_iter == 0
    assert wrapper.freeze_mask_iter is None
    assert OPTIM_WRAPPERS.get('AmpSRSTEOptimWrapper') is AmpSRSTEOptimWrapper


def test_build_optim_wrapper_from_config():
    model = TinyNet()
    cfg = dict(
        type='SRSTEOptimWrapper',
        lambda_w=1e-3,
        optimizer=dict(type='SGD', lr=0.1))
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg))
    assert isinstance(wrapper, SRSTEOptimWrapper)
    assert wrapper.lambda_w == 1e-3
    assert isinstance(wrapper.optimizer, torch.optim.SGD)
    wrapper = build_optim_wrapper(
        model,
        dict(type='SRSTEOptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    assert wrapper.lambda_w == 2e-4
    # it trains
    before = params_of(model)
    model.train_step(make_data(), wrapper)
    assert params_differ(before, params_of(model))


@pytest.mark.parametrize('fused', [None, False])
def test_deferred_finite_checks_raise_at_the_step_before_any_update(fused):
    """With ``defer_finite_checks`` (the default on a GPU, forced here on
    the CPU) a training forward does not wait to check the weights it
    masks: the wrapper's step checks them all at once and raises for a NaN
    weight, naming its layer, before it updates anything. Training with
    finite weights is the same to the last bit as with the checks made at
    once; evaluation forwards check at once."""
    batches = [make_data(seed=s) for s in range(3)]
    results = []
    for defer in (True, False):
        model = TinyNet()
        wrapper = SRSTEOptimWrapper(
            optimizer=sgd(model, lr=0.5, momentum=0.9),
            lambda_w=0.1,
            fused_sgd_step=fused,
            defer_finite_checks=defer)
        run_steps(model, wrapper, batches)
        results.append(params_of(model))
    for name in NAMES:
        assert torch.equal(results[0][name], results[1][name])

    with torch.no_grad():  # through the parameter: its mask is recomputed
        model.fc.weight[1, 2] = float('nan')
    wrapper.defer_finite_checks = True
    wrapper.bind(model)
    with torch.no_grad(), pytest.raises(ValueError, match='1 NaN/Inf'):
        model(**batches[0], mode='tensor')  # evaluation: at once
    loss = model(**batches[0])['loss']  # training: left to the step
    before = params_of(model)
    buffers = {
        id(p): state['momentum_buffer'].clone()
        for p, state in wrapper.optimizer.state.items()
    }
    with pytest.raises(ValueError, match="layer 'fc': weight holds 1 NaN/Inf"):
        wrapper.update_params(loss)
    for name, value in params_of(model).items():
        torch.testing.assert_close(
            value, before[name], rtol=0, atol=0, equal_nan=True)
    for p, state in wrapper.optimizer.state.items():
        assert torch.equal(state['momentum_buffer'], buffers[id(p)])


def test_deferred_check_not_lost_by_the_mask_cache():
    """A check that a training forward deferred and no step made is made by
    the next forward that does not defer (an evaluation, which takes the
    cached mask); a check that failed at the step (the error caught, say
    by a loop that skips a bad batch) fails again at the next step instead
    of letting the NaN weight train on. Copies of the model do not defer
    until a wrapper binds them."""
    model = TinyNet()
    wrapper = SRSTEOptimWrapper(
        optimizer=sgd(model, lr=0.5, momentum=0.9),
        lambda_w=0.1,
        defer_finite_checks=True)
    batch = make_data(seed=0)
    run_steps(model, wrapper, [batch])
    wrapper.bind(model)  # (names the layers)
    assert copy.deepcopy(model).fc.defer_finite_check is False
    assert model.fc.defer_finite_check is True
    with torch.no_grad():
        model.fc.weight[1, 2] = float('nan')
    model(**batch)  # a training forward, no step
    with torch.no_grad(), pytest.raises(ValueError, match="layer 'fc'"):
        model(**batch, mode='tensor')
    before = params_of(model)
    for _ in range(2):
        loss = model(**batch)['loss']
        with pytest.raises(ValueError, match="layer 'fc': weight holds 1"):
            wrapper.update_params(loss)
        wrapper.optimizer.zero_grad()
    for name, value in params_of(model).items():
        torch.testing.assert_close(
            value, before[name], rtol=0, atol=0, equal_nan=True)
