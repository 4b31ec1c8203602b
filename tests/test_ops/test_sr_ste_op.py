"""add_sr_ste_term_: grad += lambda * (1 - mask) * weight, compiled and
PyTorch paths."""
import re

import pytest
import torch

from mmnm.ops import add_sr_ste_term_, ext_available


@pytest.mark.parametrize(
    'dtype', [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize('contiguous', [True, False])
def test_matches_hand_computation(dtype, contiguous):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(70, 36, generator=gen).to(dtype)
    grad = torch.randn(70, 36, generator=gen).to(dtype)
    mask = torch.rand(70, 36, generator=gen) < 0.5
    if not contiguous:  # takes the PyTorch path
        weight, grad, mask = weight.t(), grad.t(), mask.t()
    expected = (grad.double() + 0.1 *
                (~mask).double() * weight.double()).to(dtype)
    out = add_sr_ste_term_(grad, weight, mask, 0.1)
    assert out is grad
    tol = dict(rtol=0, atol=0) if dtype == torch.float64 else {}
    torch.testing.assert_close(grad, expected, **tol)
    # kept entries are untouched (bit for bit)
    assert torch.equal(grad[mask], expected[mask])


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_kernel_rejects_mismatched_inputs():
    from mmnm.ops.ext_loader import load_ext
    ext = load_ext()
    with pytest.raises(
            RuntimeError,
            match=re.escape("sr_ste_add_: grad of shape (4, 4), not the "
                            "weight's (4, 8)")):
        ext.sr_ste_add_(
            torch.zeros(4, 4), torch.zeros(4, 8),
            torch.zeros(4, 8, dtype=torch.bool), 1.0)
    with pytest.raises(
            RuntimeError, match='sr_ste_add_: a torch.float32 mask'):
        ext.sr_ste_add_(
            torch.zeros(4, 4), torch.zeros(4, 4), torch.zeros(4, 4), 1.0)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
@pytest.mark.parametrize('numel', [7, 8, 4099, 3 * 32768 + 5])
def test_kernel_rounds_as_pytorch_on_every_instruction_set(cpu_isa, numel):
    """float32 grad + (lambda * pruned) * weight, bit for bit, on the
    vectorised and scalar kernels alike (tails, several threads)."""
    gen = torch.Generator().manual_seed(numel)
    weight = torch.randn(numel, generator=gen)
    grad = torch.randn(numel, generator=gen)
    mask = torch.rand(numel, generator=gen) < 0.5
    expected = grad + (3e-3 * (~mask).float()) * weight
    add_sr_ste_term_(grad, weight, mask, 3e-3)
    assert torch.equal(grad, expected)
