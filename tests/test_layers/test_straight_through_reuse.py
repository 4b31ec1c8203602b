"""A sparse layer makes the straight-through weight of its forwards (the
masked weight, with the dense weight's gradient) once per masked weight and
reuses it, and every gradient through it is the one of the plain layer on
the masked weight (computed independently here)."""
import importlib

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


def conv_and_input():
    torch.manual_seed(0)
    return SparseConv(8, 8, 3, padding=1, name='conv'), torch.randn(2, 8, 5, 5)


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


def test_forwards_of_one_weight_share_it(made):
    conv, x = conv_and_input()
    # gradient accumulation: three graphs run through the one node
    expected = torch.zeros_like(conv.weight)
    for _ in range(3):
        loss_of(conv(x)).backward()
        expected += reference_grad(conv, x)
    assert len(made) == 1
    torch.testing.assert_close(conv.weight.grad, expected)
    # a layer called twice in one forward: both gradients reach the weight
    conv.weight.grad = None
    loss_of(conv(x) + conv(x)).backward()
    assert len(made) == 1
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x, 2))


def test_a_new_weight_or_grad_mode_gets_a_new_one(made):
    conv, x = conv_and_input()
    with torch.no_grad():
        assert conv(x).grad_fn is None
    assert len(made) == 1
    # made without autograd: not reused when it records
    loss_of(conv(x)).backward()
    assert len(made) == 2
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x))
    with torch.no_grad():
        conv.weight.mul_(-1.5).add_(torch.randn_like(conv.weight))
    conv.weight.grad = None
    loss_of(conv(x)).backward()
    assert len(made) == 3
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x))
    # a frozen layer gets none; unfrozen, its gradient again
    conv.requires_grad_(False)
    assert not conv(x).requires_grad
    conv.requires_grad_(True)
    conv.weight.grad = None
    loss_of(conv(x)).backward()
    assert len(made) == 5
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x))


def test_inference_mode_makes_its_own_each_time(made):
    conv, x = conv_and_input()
    with torch.inference_mode():
        conv(x)
        conv(x)
    assert len(made) == 2  # inference tensors: nothing to reuse or check
    loss_of(conv(x)).backward()
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x))


def test_the_fused_step_makes_the_next_forwards(made):
    """Where the fused SGD step computes the next mask, it also makes the
    next forward's straight-through weight (in its loop over the layers,
    not in the forward); its gradient is the new masked weight's."""
    conv, x = conv_and_input()
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(conv.parameters(), lr=0.1, momentum=0.9))
    for _ in range(2):
        with wrapper.optim_context(conv):
            loss = loss_of(conv(x))
        wrapper.update_params(loss)
    made.clear()
    weight = conv.weight.detach().clone()
    with wrapper.optim_context(conv):
        loss = loss_of(conv(x))
    assert len(made) == (0 if STEP_COMPUTES_MASKS else 1)
    loss.backward()
    torch.testing.assert_close(conv.weight.grad, reference_grad(conv, x))
    assert torch.equal(conv.weight, weight)
