"""The CUDA N:M mask kernel of mmnm._ext against the CPU reference.

Skipped without a CUDA device and an extension built with its CUDA kernels
(``FORCE_CUDA=1``); the GPU check (.dev_scripts/gpu_checks) runs it. The
reference is the pure-PyTorch path on the CPU (:func:`nm_mask_torch`),
itself tested against a brute-force sort in test_nm_mask.py.
"""
import pytest
import torch

from mmnm.ops import MaskedWeightBuffer, group_view, nm_mask, nm_mask_torch
from mmnm.ops.ext_loader import ext_has_cuda, load_ext

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and ext_has_cuda()),
    reason='needs a CUDA device and mmnm._ext built with CUDA kernels')

# every group size with a kernel, and N from 1 to M - 1
PATTERNS = [(1, 2), (2, 3), (1, 4), (2, 4), (3, 4), (3, 5), (2, 6), (2, 8),
            (4, 8), (1, 16), (7, 16), (8, 32)]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def tied_weight(shape, dtype, seed):
    """Few distinct magnitudes (ties in most groups, signed zeros), plus
    noise on half the entries."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randint(-3, 4, shape, generator=gen).to(dtype)
    noise = torch.randn(shape, generator=gen).to(dtype)
    return weight + noise * (torch.rand(shape, generator=gen) < 0.5)


def cpu_reference(weight, n, m, orientation):
    grouped = group_view(weight, m, orientation)
    keep = nm_mask_torch(grouped, n)
    return keep.view(weight.shape), (grouped * keep).view(weight.shape)


@pytest.mark.parametrize('n,m', PATTERNS)
@pytest.mark.parametrize('orientation', ['channel', 'flat'])
@pytest.mark.parametrize('dtype', DTYPES)
def test_cuda_kernel_equals_cpu_reference(n, m, orientation, dtype):
    # conv (strided groups), linear and 1x1 (contiguous groups), and one
    # of many blocks
    shapes = [(8, 2 * m, 3, 3), (16, 4 * m), (5, m, 1, 1), (96, 64 * m, 3, 3)]
    ext = load_ext()
    for i, shape in enumerate(shapes):
        weight = tied_weight(shape, dtype, seed=n * 100 + m + i)
        want_keep, want_masked = cpu_reference(weight, n, m, orientation)
        on_gpu = weight.cuda()
        grouped = group_view(on_gpu, m, orientation).contiguous()
        keep, masked = ext.nm_mask_forward(grouped, n, True)
        assert keep.is_cuda and masked.is_cuda
        assert torch.equal(keep.cpu().view(shape), want_keep), shape
        assert torch.equal(masked.cpu().view(shape), want_masked), shape
        # the public op runs the kernel for CUDA tensors
        mask, masked_out = nm_mask(
            on_gpu, n, m, orientation, return_masked=True)
        assert torch.equal(mask.cpu(), want_keep), shape
        assert torch.equal(masked_out.cpu(), want_masked), shape


@pytest.mark.parametrize('orientation', ['channel', 'flat'])
def test_cuda_kernel_grid_stride_loop(orientation):
    """More groups (20.5M) than one grid of 65536 blocks of 256 threads
    covers: each thread also takes groups of later passes. Compared with
    the CPU kernel (tested against the PyTorch path elsewhere)."""
    weight = torch.randn(5000, 16384, dtype=torch.float16)
    ext = load_ext()
    want_keep, want_masked = ext.nm_mask_forward(
        group_view(weight, 4, orientation).contiguous(), 2, True)
    keep, masked = ext.nm_mask_forward(
        group_view(weight.cuda(), 4, orientation).contiguous(), 2, True)
    assert keep.numel() // 4 > 65536 * 256
    assert torch.equal(keep.cpu(), want_keep)
    assert torch.equal(masked.cpu(), want_masked)


def test_cuda_kernel_writes_into_given_buffers():
    """The buffer a sparse layer reuses step after step: rewritten in
    place, on the weight's device."""
    weight = torch.nn.Parameter(
        tied_weight((64, 32, 3, 3), torch.float32, 3).cuda())
    buffer = MaskedWeightBuffer(weight, 2, 4, 'channel', 'backbone.conv1')
    for step in range(3):
        mask, masked = buffer.update('backbone.conv1')
        assert mask.is_cuda and masked.is_cuda
        want_keep, want_masked = cpu_reference(weight.detach().cpu(), 2, 4,
                                               'channel')
        assert torch.equal(mask.cpu(), want_keep), step
        assert torch.equal(masked.cpu(), want_masked), step
        with torch.no_grad():
            weight.mul_(-1.5).add_(torch.randn_like(weight))


@pytest.mark.parametrize('orientation', ['channel', 'flat'])
def test_cuda_channels_last_weight(orientation):
    """A channels_last conv weight (channels_last training, AMP's usual
    layout): channel groups read in place, outputs channels_last; flat
    groups copied out, outputs contiguous; masks as on the CPU."""
    weight = tied_weight((64, 32, 3, 3), torch.float16,
                         5).contiguous(memory_format=torch.channels_last)
    want_keep, want_masked = cpu_reference(weight.contiguous(), 2, 4,
                                           orientation)
    layout = torch.channels_last if orientation == 'channel' else \
        torch.contiguous_format
    on_gpu = torch.nn.Parameter(weight.cuda())
    buffer = MaskedWeightBuffer(on_gpu, 2, 4, orientation)
    mask, masked = buffer.update()
    public = nm_mask(on_gpu, 2, 4, orientation, return_masked=True)
    for keep, values in ((mask, masked), public):
        assert keep.is_contiguous(memory_format=layout)
        assert values.is_contiguous(memory_format=layout)
        assert torch.equal(keep.cpu(), want_keep)
        assert torch.equal(values.cpu(), want_masked)


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
@pytest.mark.parametrize('dtype', DTYPES)
def test_cuda_kernel_reports_non_finite_with_layer_name(bad, dtype):
    weight = torch.randn(16, 8, 3, 3).to(dtype)
    weight[5, 2, 1, 1] = bad
    with pytest.raises(ValueError, match='neck.conv: weight holds 1 NaN/Inf'):
        nm_mask(weight.cuda(), 2, 4, name='neck.conv')
    # the flag is per call: a finite weight afterwards passes
    assert nm_mask(torch.randn(16, 8, 3, 3).to(dtype).cuda(), 2, 4).is_cuda


def test_cuda_kernel_flag_without_waiting():
    """Given a flag, the kernel reports NaN/Inf there and the op does not
    wait for it (PyTorch's sync debug mode raises on a host sync)."""
    weight = torch.randn(16, 8, 3, 3, device='cuda')
    weight[5, 2, 1, 1] = float('nan')
    grouped = group_view(weight, 4).contiguous()
    flag = torch.full((), 7, dtype=torch.int32, device='cuda')
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        load_ext().nm_mask_forward(grouped, 2, True, None, None, flag)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert flag.item() == 1
    weight[5, 2, 1, 1] = 0.5
    load_ext().nm_mask_forward(
        group_view(weight, 4).contiguous(), 2, True, None, None, flag)
    assert flag.item() == 0


def test_cuda_training_forward_leaves_the_checks_to_the_step():
    """The SR-STE wrapper's training forward computes the masks of its CUDA
    layers without a host sync per layer (sync debug mode raises on one);
    its step makes the checks at once, and raises for a NaN weight naming
    its layer, before it updates anything."""
    from mmnm.engine.optimizers import SRSTEOptimWrapper
    from mmnm.layers import SparseConv, SparseLinear
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        SparseConv(16, 32, 3, padding=1, name='conv'), torch.nn.Flatten(),
        SparseLinear(32 * 8 * 8, 8, name='fc')).cuda()
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    x = torch.randn(2, 16, 8, 8, device='cuda')
    for _ in range(2):  # the second forward: masks of stepped weights
        with wrapper.optim_context(model):
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode('error')
            try:
                loss = model(x).square().mean()
            finally:
                torch.cuda.set_sync_debug_mode('default')
        wrapper.update_params(loss)
    for layer in (model[0], model[2]):
        expected = cpu_reference(layer.weight.detach().cpu(), 2, 4,
                                 'channel')[0]
        assert torch.equal(layer.update_mask().cpu(), expected)
    with torch.no_grad():
        model[0].weight[3, 1, 0, 2] = float('nan')
    before = [p.detach().clone() for p in model.parameters()]
    with wrapper.optim_context(model):
        loss = model(x).square().mean()
    with pytest.raises(ValueError, match="layer 'conv': weight holds 1 NaN"):
        wrapper.update_params(loss)
    for p, old in zip(model.parameters(), before):
        torch.testing.assert_close(p, old, rtol=0, atol=0, equal_nan=True)
