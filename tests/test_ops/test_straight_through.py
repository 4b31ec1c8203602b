"""The straight-through estimator op: the masked weight forward, the dense
weight's gradient unchanged backward, on the compiled path (a C++ autograd
function in mmnm._ext) and on the Python one."""
import importlib

import pytest
import torch

from mmnm.layers import SparseConv
from mmnm.ops import ext_available, straight_through

module = importlib.import_module('mmnm.ops.straight_through')
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='no CUDA device')


@pytest.fixture(params=['ext', 'torch'])
def ste_path(request, monkeypatch):
    """Runs a test on the compiled function and on the Python one."""
    if request.param == 'ext' and not ext_available():
        pytest.skip('mmnm._ext not built')
    if request.param == 'torch':
        monkeypatch.setattr(module, 'load_ext', lambda: None)
    return request.param


def compiled_node(node) -> bool:
    """Whether an autograd node is the compiled function's (a C++ node
    named after its type), not the Python Function's."""
    name = node.name()
    return 'StraightThrough' in name and \
        name != '_StraightThroughMaskBackward'


def weights(shape=(8, 16, 3, 3), device='cpu'):
    weight = torch.randn(shape, device=device, requires_grad=True)
    keep = torch.rand(shape, device=device) < 0.5
    return weight, weight.detach() * keep


@pytest.mark.parametrize('device',
                         ['cpu', pytest.param('cuda', marks=needs_cuda)])
def test_forward_is_masked_and_gradient_reaches_weight_unchanged(
        ste_path, device):
    weight, masked = weights(device=device)
    out = straight_through(weight, masked)
    assert torch.equal(out, masked)
    assert out.data_ptr() == masked.data_ptr()  # a view, not a copy
    assert out.requires_grad
    if ste_path == 'ext':
        assert compiled_node(out.grad_fn), out.grad_fn.name()
    else:
        assert out.grad_fn.name() == '_StraightThroughMaskBackward'
    grad = torch.randn_like(masked)
    out.backward(grad)
    # the gradient of the masked weight, pruned entries included
    assert torch.equal(weight.grad, grad)
    assert not masked.requires_grad and masked.grad is None


def test_the_paths_agree_through_a_conv(monkeypatch):
    if not ext_available():
        pytest.skip('mmnm._ext not built')
    weight, masked = weights()
    x = torch.randn(2, 16, 6, 6)
    grads = []
    for use_ext in (True, False):
        if not use_ext:
            monkeypatch.setattr(module, 'load_ext', lambda: None)
        weight.grad = None
        out = torch.nn.functional.conv2d(x, straight_through(weight, masked))
        out.square().sum().backward()
        grads.append(weight.grad.clone())
    assert torch.equal(grads[0], grads[1])


def test_double_backward_passes_the_gradient_through(ste_path):
    weight, masked = weights((4, 8))
    grad = torch.randn(4, 8, requires_grad=True)
    out = straight_through(weight, masked)
    (first, ) = torch.autograd.grad(out, weight, grad, create_graph=True)
    assert torch.equal(first, grad)
    (second, ) = torch.autograd.grad(first.sum(), grad)
    assert torch.equal(second, torch.ones_like(grad))


def test_graph_fails_after_masked_weight_is_rewritten(ste_path):
    """A graph still holding the old masked values fails loudly at
    backward, as the sparse layers' mask cache relies on."""
    weight, masked = weights()
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    out = torch.nn.functional.conv2d(x, straight_through(weight, masked))
    masked.mul_(2)
    with pytest.raises(RuntimeError, match='modified inplace'):
        out.sum().backward()


def test_without_autograd_returns_the_masked_values(ste_path):
    weight, masked = weights()
    with torch.no_grad():
        out = straight_through(weight, masked)
    assert torch.equal(out, masked) and out.grad_fn is None
    with torch.inference_mode():  # a buffer made outside, as layers keep
        out = straight_through(weight, masked)
    assert torch.equal(out, masked) and out.grad_fn is None
    with torch.inference_mode():
        infer_masked = weight.detach() * 1
        out = straight_through(weight, infer_masked)
    assert torch.equal(out, infer_masked) and out.grad_fn is None


def test_frozen_weight_gets_no_gradient(ste_path):
    """A weight that does not require grad (a frozen backbone stage)."""
    weight, masked = weights()
    weight.requires_grad_(False)
    x = torch.randn(2, 16, 6, 6, requires_grad=True)
    out = torch.nn.functional.conv2d(x, straight_through(weight, masked))
    out.sum().backward()
    assert weight.grad is None and x.grad is not None


def test_weight_used_twice_gets_both_gradients(ste_path):
    """A shared layer (e.g. a head run on every FPN level): the gradients
    of both uses add up in the dense weight."""
    weight, masked = weights((4, 8))
    x1, x2 = torch.randn(3, 8), torch.randn(5, 8)
    out1 = torch.nn.functional.linear(x1, straight_through(weight, masked))
    out2 = torch.nn.functional.linear(x2, straight_through(weight, masked))
    (out1.sum() + 2 * out2.sum()).backward()
    expected = torch.ones(3, 4).t() @ x1 + 2 * torch.ones(5, 4).t() @ x2
    assert torch.allclose(weight.grad, expected, rtol=1e-6, atol=1e-6)


def test_shape_mismatch_is_an_error(ste_path):
    weight, masked = weights((8, 16))
    with pytest.raises(
            RuntimeError,
            match='straight_through: weight and '
            'masked shapes differ'):
        straight_through(weight, masked.t())


def test_torch_compile_traces_it_without_a_graph_break():
    """fullgraph=True fails on any graph break, such as a call into a
    compiled extension function that Dynamo cannot see through."""
    weight, masked = weights((4, 8))
    x = torch.randn(3, 8)
    compiled = torch.compile(
        lambda x, w, m: torch.nn.functional.linear(x, straight_through(w, m)),
        backend='eager',
        fullgraph=True)
    out = compiled(x, weight, masked)
    assert torch.equal(out, x @ masked.t())
    out.sum().backward()
    assert torch.equal(weight.grad, torch.ones(3, 4).t() @ x)


def test_sparse_layer_runs_the_op():
    """A sparse layer's forward goes through the op (compiled where
    built)."""
    layer = SparseConv(16, 8, 3, n=2, m=4)
    out = layer(torch.randn(1, 16, 5, 5))
    nodes, pending = [], [out.grad_fn]
    while pending:
        node = pending.pop()
        if node is not None:
            nodes.append(node)
            pending.extend(next_node for next_node, _ in node.next_functions)
    if ext_available():
        assert any(compiled_node(node) for node in nodes)
    else:
        assert '_StraightThroughMaskBackward' in [n.name() for n in nodes]
