"""The straight-through weight of a training forward (the masked weight,
with the dense weight's gradient) is made before the forward, in the SR-STE
optim wrapper's loop over its layers, where the fused SGD step has computed
the mask; the forward takes it once and only while it is current. Every
gradient is checked against the plain conv on the masked weight (computed
independently here)."""
import gc
import importlib
import weakref

import pytest
import torch
import torch.nn.functional as F
from nm_reference import STEP_COMPUTES_MASKS, reference_mask

from mmnm.engine import SRSTEOptimWrapper
from mmnm.layers import SparseConv

sparse_layer = importlib.import_module('mmnm.layers.sparse_layer')


@pytest.fixture
def made(monkeypatch):
    """The straight-through weights the layers make, in a list."""
    calls = []
    real = sparse_layer.straight_through

    def counted(weight, masked):
        calls.append(weight)
        return real(weight, masked)

    monkeypatch.setattr(sparse_layer, 'straight_through', counted)
    return calls


def loss_of(out: torch.Tensor) -> torch.Tensor:
    return out.square().sum()


def reference_grad(conv: SparseConv,
                   x: torch.Tensor,
                   calls: int = 1) -> torch.Tensor:
    """The weight gradient of ``loss_of`` of the plain conv with the masked
    weight, the conv called ``calls`` times and the outputs summed."""
    weight = conv.weight.detach() * reference_mask(conv.weight)
    weight.requires_grad_()
    out = sum(
        F.conv2d(x, weight, conv.bias.detach(), padding=1)
        for _ in range(calls))
    loss_of(out).backward()
    return weight.grad


def trained_conv():
    """A conv after two SR-STE steps (fused where the extension is
    built), its wrapper and an input."""
    torch.manual_seed(0)
    conv = SparseConv(8, 8, 3, padding=1, name='conv')
    x = torch.randn(2, 8, 5, 5)
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9))
    for _ in range(2):
        with wrapper.optim_context(conv):
            loss = loss_of(conv(x))
        wrapper.update_params(loss)
    return conv, wrapper, x


def test_made_before_the_forward_after_a_fused_step(made):
    conv, wrapper, x = trained_conv()
    made.clear()
    with wrapper.optim_context(conv):
        prepared = len(made)
        loss = loss_of(conv(x))
    assert prepared == (1 if STEP_COMPUTES_MASKS else 0)
    assert len(made) == 1  # the forward made none where it was prepared
    loss.backward()
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x))


def test_taken_once(made):
    """A second forward makes its own (the prepared one is not kept: it
    would hold the weight's autograd node past the iteration); gradients
    of both reach the weight."""
    conv, wrapper, x = trained_conv()
    made.clear()
    with wrapper.optim_context(conv):
        loss = loss_of(conv(x) + conv(x))
    assert len(made) == 2
    loss.backward()
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x, 2))
    assert conv._ste is None


@pytest.mark.parametrize('change', ['no_grad', 'weight', 'frozen', 'swap'])
def test_not_taken_when_stale(made, change):
    """Whatever changed between preparing and the forward, the forward
    computes with a straight-through weight of the current mask, weight
    tensor and grad mode."""
    if not STEP_COMPUTES_MASKS:
        pytest.skip('no step mask to prepare a forward with')
    conv, wrapper, x = trained_conv()
    with wrapper.optim_context(conv):
        assert conv._ste is not None
        if change == 'no_grad':
            with torch.no_grad():
                assert conv(x).grad_fn is None
            loss = loss_of(conv(x))
        elif change == 'weight':
            with torch.no_grad():
                conv.weight.mul_(-1.5).add_(torch.randn_like(conv.weight))
            loss = loss_of(conv(x))
        elif change == 'frozen':
            conv.requires_grad_(False)
            assert not conv(x).requires_grad
            conv.requires_grad_(True)
            loss = loss_of(conv(x))
        else:  # a parameter swap keeps the tensor's id, version and data
            swap = torch.__future__.get_swap_module_params_on_conversion()
            torch.__future__.set_swap_module_params_on_conversion(True)
            try:
                conv.float()
            finally:
                torch.__future__.set_swap_module_params_on_conversion(swap)
            loss = loss_of(conv(x))
    loss.backward()
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x))


def test_a_trained_layer_with_a_reference_cycle_is_collected():
    """Nothing mmnm keeps between iterations holds the weight's autograd
    node, which would make the parameter untraversable for the garbage
    collector and a cycle through it (here a gradient hook that refers to
    the layer) a leak."""
    conv, wrapper, x = trained_conv()
    conv.weight.register_hook(lambda grad, conv=conv: grad)
    with wrapper.optim_context(conv):
        loss = loss_of(conv(x))
    wrapper.update_params(loss)
    with wrapper.optim_context(conv):  # prepared, not run
        pass
    collected = weakref.ref(conv)
    del conv, wrapper, loss
    gc.collect()
    assert collected() is None
