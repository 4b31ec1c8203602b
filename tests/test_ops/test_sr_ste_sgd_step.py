"""sr_ste_sgd_step_: one torch.optim.SGD step on the SR-STE gradient
``grad + lambda * (1 - mask) * weight``, compiled (one pass) and PyTorch
paths, against the update rule written out by hand."""
import itertools

import pytest
import torch

from mmnm.layers.weight_updates import weight_stamp
from mmnm.ops import (ext_available, fused_sgd_step_unavailable,
                      sr_ste_sgd_step_)
from mmnm.ops.ext_loader import load_ext

LAM, LR = 0.1, 0.05
SETTINGS = [
    dict(
        momentum=mu,
        dampening=damp,
        weight_decay=wd,
        nesterov=nest,
        maximize=maxi) for mu, damp, wd, nest, maxi in itertools.product((
            0.0, 0.9), (0.0, 0.3), (0.0, 1e-2), (False, True), (False, True))
    if not (nest and (mu == 0 or damp != 0))  # torch's Nesterov condition
]


def hand_steps(weight, grads, mask, momentum, dampening, weight_decay,
               nesterov, maximize):
    """The SGD update of torch.optim.SGD's documentation, in float64, on
    the SR-STE gradient, over ``grads`` one step each."""
    w, buf = weight.double(), None
    for grad in grads:
        d = grad.double() + LAM * (~mask).double() * w
        if maximize:
            d = -d
        d = d + weight_decay * w
        if momentum:
            buf = d if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        w = w - LR * d
    return w, buf


def run_steps(weight, grads, mask, **settings):
    weight, buf = weight.clone(), None
    for grad in grads:
        before = grad.clone()
        buf = sr_ste_sgd_step_(weight, grad, mask, buf, LAM, LR, **settings)
        assert torch.equal(grad, before)  # the gradient is left as it is
    return weight, buf


def inputs(dtype, shape=(70, 36), steps=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=gen).to(dtype)
    grads = [torch.randn(shape, generator=gen).to(dtype) for _ in range(steps)]
    mask = torch.rand(shape, generator=gen) < 0.5
    return weight, grads, mask


@pytest.mark.parametrize('settings', SETTINGS)
@pytest.mark.parametrize('contiguous', [True, False])
def test_float64_matches_hand_computation(settings, contiguous):
    weight, grads, mask = inputs(torch.float64)
    if not contiguous:  # the PyTorch path
        weight, mask = weight.t(), mask.t()
        grads = [g.t() for g in grads]
        assert fused_sgd_step_unavailable(weight, grads[0], mask,
                                          None) == 'not contiguous'
    elif ext_available():
        assert fused_sgd_step_unavailable(weight, grads[0], mask, None) is None
    w, buf = run_steps(weight, grads, mask, **settings)
    w_ref, buf_ref = hand_steps(weight, grads, mask, **settings)
    torch.testing.assert_close(w, w_ref, rtol=1e-13, atol=1e-15)
    if settings['momentum']:
        torch.testing.assert_close(buf, buf_ref, rtol=1e-13, atol=1e-15)
    else:
        assert buf is None
    # the step moved the weight, and the SR-STE term is part of it
    assert not torch.allclose(w, weight)
    lam0, _ = hand_steps(weight, [g - weight * (~mask) * LAM for g in grads],
                         mask, **settings)
    assert not torch.allclose(w, lam0, atol=1e-6)


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-6),
                                       (torch.bfloat16, 2e-2),
                                       (torch.float16, 2e-3)])
def test_low_precision_is_close_to_float64(dtype, tol):
    settings = dict(
        momentum=0.9,
        dampening=0.0,
        weight_decay=1e-2,
        nesterov=True,
        maximize=False)
    weight, grads, mask = inputs(dtype)
    w, buf = run_steps(weight, grads, mask, **settings)
    w_ref, _ = hand_steps(weight, grads, mask, **settings)
    assert w.dtype == buf.dtype == dtype
    torch.testing.assert_close(w.double(), w_ref, rtol=tol, atol=tol)


def test_matches_torch_sgd_on_the_sr_ste_gradient():
    """A second reference: torch.optim.SGD itself, given the gradient with
    the term added, over three steps (momentum state carried)."""
    weight, grads, mask = inputs(torch.float64)
    settings = dict(
        momentum=0.9,
        dampening=0.1,
        weight_decay=1e-3,
        nesterov=False,
        maximize=True)
    w, buf = run_steps(weight, grads, mask, **settings)
    param = torch.nn.Parameter(weight.clone())
    sgd = torch.optim.SGD([param], lr=LR, **settings)
    for grad in grads:
        # bool mask * python float is float32: multiply the weight first
        param.grad = grad + param.detach() * (~mask) * LAM
        sgd.step()
    torch.testing.assert_close(w, param.detach(), rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(
        buf, sgd.state[param]['momentum_buffer'], rtol=1e-13, atol=1e-15)


def test_the_weight_reads_as_changed():
    """The kernel writes through the data pointer; autograd and the mask
    caches must still see the write."""
    weight, grads, mask = inputs(torch.float32)
    version, stamp = weight._version, weight_stamp(weight)
    sr_ste_sgd_step_(weight, grads[0], mask, None, LAM, LR)
    assert weight._version > version
    assert weight_stamp(weight) != stamp


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
@pytest.mark.parametrize('numel', [7, 8, 4099, 3 * 32768 + 5])
@pytest.mark.parametrize('nesterov', [False, True])
def test_kernel_rounds_as_pytorch_on_every_instruction_set(
        cpu_isa, numel, nesterov):
    """float32, bit for bit: the same products and sums as the PyTorch
    expressions below, on the vectorised and scalar kernels alike (tails,
    several threads, first and later steps)."""
    mu, damp, wd = 0.9, 0.25, 1e-2
    weight, grads, mask = inputs(torch.float32, (numel, ), steps=2)
    w, buf = weight.clone(), None
    for grad in grads:
        buf = sr_ste_sgd_step_(w, grad, mask, buf, LAM, LR, mu, damp, wd,
                               nesterov)
    w_ref, buf_ref = weight.clone(), None
    pruned = (~mask).float()
    for grad in grads:
        d = grad + (LAM * pruned) * w_ref
        d = d + wd * w_ref
        buf_ref = d.clone() if buf_ref is None else \
            mu * buf_ref + (1 - damp) * d
        d = d + mu * buf_ref if nesterov else buf_ref
        w_ref = w_ref - LR * d
    assert torch.equal(buf, buf_ref)
    assert torch.equal(w, w_ref)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_kernel_rejects_mismatched_inputs():
    ext = load_ext()
    args = (1.0, 0.1, 0.9, 0.0, 0.0, False, False, False)
    ok = torch.zeros(4, 4)
    keep = torch.zeros(4, 4, dtype=torch.bool)
    with pytest.raises(RuntimeError, match='shapes differ'):
        ext.sr_ste_sgd_step_(ok, torch.zeros(4, 8), keep, ok.clone(), *args)
    with pytest.raises(RuntimeError, match='mask must be bool'):
        ext.sr_ste_sgd_step_(ok, ok.clone(), ok.clone(), ok.clone(), *args)
    with pytest.raises(RuntimeError, match='momentum_buffer must be'):
        ext.sr_ste_sgd_step_(ok, ok.clone(), keep, torch.zeros(0), *args)


def test_unavailable_names_the_reason():
    weight, grads, mask = inputs(torch.float32)
    assert 'float64' in fused_sgd_step_unavailable(weight, grads[0].double(),
                                                   mask, None)
    assert 'mask' in fused_sgd_step_unavailable(weight, grads[0], mask.float(),
                                                None)
