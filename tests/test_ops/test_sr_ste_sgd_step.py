"""sr_ste_sgd_step_: one torch.optim.SGD step on the SR-STE gradient
``grad + lambda * (1 - mask) * weight``, compiled (one pass) and PyTorch
paths, against the update rule written out by hand."""
import itertools
import platform
import re

import pytest
import torch
from nm_reference import reference_mask

from mmnm.layers.weight_updates import weight_stamp
from mmnm.ops import (MaskedWeightBuffer, ext_available,
                      fused_sgd_step_unavailable, sr_ste_sgd_step_,
                      stream_stores_available)
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
@pytest.mark.parametrize('layout', ['contiguous', 'transposed', 'mixed'])
def test_float64_matches_hand_computation(settings, layout):
    weight, grads, mask = inputs(torch.float64)
    if layout != 'contiguous':  # all transposed: one dense memory layout
        weight, mask = weight.t(), mask.t()
        grads = [g.t() for g in grads]
    if layout == 'mixed':  # gradients laid out otherwise: the PyTorch path
        grads = [g.contiguous() for g in grads]
        reason = fused_sgd_step_unavailable(weight, grads[0], mask, None)
        assert reason == ('grad not laid out in memory as weight (strides '
                          '(70, 1), not (1, 36))'
                          if ext_available() else 'mmnm._ext is not loaded')
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
    # the kernel raises the reason fused_sgd_step_unavailable gives
    for grad, mask, buffer, reason in [
        (torch.zeros(4, 8), keep, ok.clone(),
         "grad of shape (4, 8), not the weight's (4, 4)"),
        (ok.clone(), ok.clone(), ok.clone(), 'a torch.float32 mask'),
        (ok.clone(), keep, torch.zeros(0),
         "momentum buffer of shape (0,), not the weight's (4, 4)"),
        (ok.clone(), keep, ok.t().contiguous().t(),
         'momentum buffer not laid out in memory as weight (strides (1, 4), '
         'not (4, 1))'),
    ]:
        assert fused_sgd_step_unavailable(ok, grad, mask, buffer) == reason
        with pytest.raises(
                RuntimeError, match=re.escape(f'sr_ste_sgd_step_: {reason}')):
            ext.sr_ste_sgd_step_(ok, grad, mask, buffer, *args)
    # without momentum the kernel does not read the buffer (an empty one)
    ext.sr_ste_sgd_step_(ok, ok.clone(), keep, torch.zeros(0), 1.0, 0.1, 0.0,
                         0.0, 0.0, False, False, False)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_unavailable_names_the_reason():
    weight, grads, mask = inputs(torch.float32)
    assert 'float64' in fused_sgd_step_unavailable(weight, grads[0].double(),
                                                   mask, None)
    assert 'mask' in fused_sgd_step_unavailable(weight, grads[0], mask.float(),
                                                None)
    assert fused_sgd_step_unavailable(weight, grads[0].to_sparse(), mask,
                                      None) == 'a sparse gradient'
    every_other = weight[:, ::2]
    assert fused_sgd_step_unavailable(
        every_other, grads[0][:, ::2], mask[:, ::2],
        None) == (f'weight not dense in memory (strides '
                  f'{every_other.stride()})')
    # one weight, its gradient and mask channels_last alike: taken
    conv = torch.randn(8, 4, 3, 3).to(memory_format=torch.channels_last)
    assert fused_sgd_step_unavailable(conv, torch.zeros_like(conv),
                                      torch.zeros_like(conv, dtype=bool),
                                      torch.zeros_like(conv)) is None


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_checked_runs_the_kernel_which_still_checks():
    """``checked=True`` skips the Python check (the wrapper has just made
    it) but not the kernel's: tensors it cannot take raise, nothing falls
    back silently and nothing is written."""
    weight, grads, mask = inputs(torch.float32)
    expected = weight.clone()
    sr_ste_sgd_step_(expected, grads[0], mask, None, 0.1, 0.5)
    checked = weight.clone()
    sr_ste_sgd_step_(checked, grads[0], mask, None, 0.1, 0.5, checked=True)
    assert torch.equal(checked, expected)
    before = weight.clone()
    with pytest.raises(RuntimeError, match='a torch.float32 mask'):
        sr_ste_sgd_step_(
            weight, grads[0], mask.float(), None, 0.1, 0.5, checked=True)
    with pytest.raises(
            RuntimeError,
            match=re.escape('dtypes differ (torch.float32, torch.float64)')):
        sr_ste_sgd_step_(
            weight, grads[0].double(), mask, None, 0.1, 0.5, checked=True)
    assert torch.equal(weight, before)


# ----------------------------------------------------------------------
# the next mask, computed in the same pass (``remask``)
# ----------------------------------------------------------------------
REMASK_CASES = [
    # shape, n, m, orientation, dtype
    ((16, 8, 3, 3), 2, 4, 'channel', torch.float32),  # strided groups
    ((8, 16, 1, 1), 1, 4, 'channel', torch.float32),  # contiguous groups
    ((12, 32), 2, 4, 'channel', torch.float32),  # a Linear
    ((8, 4, 3, 3), 2, 4, 'flat', torch.float32),
    ((6, 16, 3, 3), 2, 8, 'channel', torch.float32),  # the scalar path
    ((16, 8, 3, 3), 2, 4, 'channel', torch.float64),
    ((16, 8, 3, 3), 2, 4, 'channel', torch.bfloat16),
    ((16, 8, 3, 3), 2, 4, 'channel', torch.float16),
    # rows of 4 * 144 values: blocks of one row
    ((8, 8, 12, 12), 2, 4, 'channel', torch.float32),
    # several threads, and blocks that end inside a parallel chunk
    ((256, 64, 3, 3), 2, 4, 'channel', torch.float32),
]


def expected_mask(weight, n, m, orientation):
    """The brute-force reference; flat groups are those of the flattened
    rows read as a Linear's."""
    if orientation == 'flat':
        return reference_mask(weight.reshape(weight.shape[0], -1), n,
                              m).view(weight.shape)
    return reference_mask(weight, n, m)


def remask_inputs(shape, n, m, orientation, dtype):
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(shape, generator=gen).to(dtype)
    # a large step, so that many masks change
    grads = [torch.randn(shape, generator=gen).to(dtype) for _ in range(2)]
    buffer = MaskedWeightBuffer(weight, n, m, orientation)
    buffer.update()
    return weight, grads, buffer


def remask_step(weight, grad, buffer, stream=False):
    """A plain SGD step (lr 1, no momentum) of ``weight`` on the SR-STE
    gradient under ``buffer``'s mask, writing the next one into it."""
    sr_ste_sgd_step_(
        weight,
        grad,
        buffer.mask,
        None,
        1.0,
        1.0,
        remask=buffer,
        stream_remask=stream)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
@pytest.mark.parametrize('shape,n,m,orientation,dtype', REMASK_CASES)
@pytest.mark.parametrize('stream', [False, True])
def test_remask_is_the_mask_of_the_updated_weight(shape, n, m, orientation,
                                                  dtype, stream):
    """The step is the same with and without ``remask``; the buffer then
    holds the brute-force mask of the updated weight and the weight times
    it, although the step read its old mask from the same tensor; written
    through the caches or past them (``stream_remask``)."""
    weight, grads, buffer = remask_inputs(shape, n, m, orientation, dtype)
    plain, plain_buf, buf = weight.clone(), None, None
    for grad in grads:
        mask = buffer.mask  # the step reads it and writes the next one
        plain_mask = expected_mask(plain, n, m, orientation)
        plain_buf = sr_ste_sgd_step_(plain, grad, plain_mask, plain_buf, 1.0,
                                     1.0, 0.9, 0.0, 1e-2, True)
        buf = sr_ste_sgd_step_(
            weight,
            grad,
            mask,
            buf,
            1.0,
            1.0,
            0.9,
            0.0,
            1e-2,
            True,
            remask=buffer,
            stream_remask=stream)
        assert torch.equal(weight, plain)
        assert torch.equal(buf, plain_buf)
        assert buffer.version == weight._version
        want = expected_mask(weight, n, m, orientation)
        assert torch.equal(buffer.mask, want)
        assert torch.equal(buffer.masked, weight * want)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
@pytest.mark.parametrize('shape', [(16, 8, 3, 3), (8, 16, 1, 1), (8, 20, 1, 1),
                                   (40, 24, 5, 5), (256, 64, 3, 3),
                                   (96, 16, 3, 4), (64, 32, 4, 4)])
@pytest.mark.parametrize('stream', [False, True])
def test_remask_on_every_instruction_set(cpu_isa, thread_counts, shape,
                                         stream):
    """The step reads the old mask from the tensor it writes the next one
    into, in blocks and threads that end at arbitrary rows; on AVX-512 the
    mask of a row of 9 to 15 positions (3x3, 3x4) writes past the row,
    into values that the next row's own step then rewrites. Streamed, each
    block's outputs go out in whole cache lines plus plain copies of the
    lines it shares with its neighbours."""
    for threads in thread_counts:
        torch.set_num_threads(threads)
        weight, grads, buffer = remask_inputs(shape, 2, 4, 'channel',
                                              torch.float32)
        plain = weight.clone()
        sr_ste_sgd_step_(plain, grads[0], buffer.mask.clone(), None, 1.0, 1.0)
        remask_step(weight, grads[0], buffer, stream)
        assert torch.equal(weight, plain), threads  # old mask read intact
        assert torch.equal(buffer.mask, reference_mask(weight)), threads
        assert torch.equal(buffer.masked, weight * buffer.mask), threads


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
@pytest.mark.parametrize('offset', [0, 1, 5, 13])
def test_streamed_next_mask_into_unaligned_memory(offset, thread_counts):
    """Streamed outputs that start anywhere in a cache line (views into
    larger tensors, ``offset`` values in) are exact, and the memory around
    them is left alone, on one thread and across threads."""
    for threads in thread_counts:
        torch.set_num_threads(threads)
        check_streamed_into_views(offset)


def check_streamed_into_views(offset):
    ext = load_ext()
    shape = (64, 32, 3, 3)
    weight, grads, _ = remask_inputs(shape, 2, 4, 'channel', torch.float32)
    numel = weight.numel()
    keep_store = torch.zeros(numel + 32, dtype=torch.bool)
    masked_store = torch.full((numel + 32, ), 7.0)
    keep = keep_store[offset:offset + numel].view(shape)
    masked = masked_store[offset:offset + numel].view(shape)
    mask = reference_mask(weight)
    plain = weight.clone()
    sr_ste_sgd_step_(plain, grads[0], mask, None, 1.0, 1.0)
    ext.sr_ste_sgd_step_(
        weight,
        grads[0],
        mask,
        weight.new_empty(0),
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
        False,
        False,
        False,
        keep,
        masked,
        2,
        4,
        9,
        stream_next=True)
    assert torch.equal(weight, plain)
    want = reference_mask(weight)
    assert torch.equal(keep, want)
    assert torch.equal(masked, weight * want)
    outside = torch.ones(numel + 32, dtype=torch.bool)
    outside[offset:offset + numel] = False
    assert not keep_store[outside].any()
    assert torch.all(masked_store[outside] == 7.0)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
@pytest.mark.parametrize('stream', [False, True])
def test_stream_remask_reaches_the_kernel(monkeypatch, stream):
    """``stream_remask`` is what the compiled kernel gets as
    ``stream_next`` (the outputs are the same either way, so only the
    call can show it); the extension has non-temporal stores on
    x86-64."""
    ext = load_ext()
    calls = []

    class Recording:

        def __getattr__(self, name):
            return getattr(ext, name)

        def sr_ste_sgd_step_(self, *args):
            calls.append(args[-1])  # stream_next, the last parameter
            return ext.sr_ste_sgd_step_(*args)

    monkeypatch.setattr('mmnm.ops.sr_ste.load_ext', lambda: Recording())
    weight, grads, buffer = remask_inputs((8, 8, 3, 3), 2, 4, 'channel',
                                          torch.float32)
    remask_step(weight, grads[0], buffer, stream)
    assert calls == [stream]
    assert torch.equal(buffer.mask, reference_mask(weight))
    assert stream_stores_available() == (
        platform.machine() in ('x86_64', 'AMD64'))


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_remask_of_a_non_finite_weight_holds_no_mask():
    """A step that makes the weight NaN leaves the buffer marked as holding
    no mask: the next forward's update raises, naming the layer."""
    weight, grads, buffer = remask_inputs((8, 8, 3, 3), 2, 4, 'channel',
                                          torch.float32)
    grads[0][3, 5, 1, 2] = float('nan')
    masked_version = buffer.masked._version
    remask_step(weight, grads[0], buffer)
    assert buffer.version is None
    assert buffer.masked._version > masked_version  # written: a graph fails
    with pytest.raises(ValueError, match="layer 'x': weight holds 1 NaN"):
        buffer.update("layer 'x'")


def test_remask_is_left_alone_where_the_kernel_does_not_run():
    """On the PyTorch path (here: a float mask) the buffer is not written
    and does not claim to hold the mask of the updated weight."""
    weight, grads, buffer = remask_inputs((8, 8, 3, 3), 2, 4, 'channel',
                                          torch.float32)
    before = buffer.mask.clone()
    sr_ste_sgd_step_(
        weight, grads[0], buffer.mask.float(), None, 1.0, 1.0, remask=buffer)
    assert buffer.version != weight._version
    assert torch.equal(buffer.mask, before)


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_kernel_rejects_bad_next_mask_arguments():
    ext = load_ext()
    args = (1.0, 0.1, 0.0, 0.0, 0.0, False, False, False)
    w, g = torch.zeros(4, 8), torch.zeros(4, 8)
    keep = torch.zeros(4, 8, dtype=torch.bool)
    with pytest.raises(RuntimeError, match='both next_keep and next_masked'):
        ext.sr_ste_sgd_step_(w, g, keep, w.new_empty(0), *args, keep.clone())
    with pytest.raises(RuntimeError, match='need 1 <= n < m'):
        ext.sr_ste_sgd_step_(w, g, keep, w.new_empty(0), *args, keep.clone(),
                             torch.zeros(4, 8), 4, 4, 1)
    with pytest.raises(RuntimeError, match='rows of m \\* inner'):
        ext.sr_ste_sgd_step_(w, g, keep, w.new_empty(0), *args, keep.clone(),
                             torch.zeros(4, 8), 2, 4, 3)
    with pytest.raises(RuntimeError, match='a tensor of its own'):
        ext.sr_ste_sgd_step_(w, g, keep, w.new_empty(0), *args, keep.clone(),
                             w, 2, 4, 1)
    with pytest.raises(RuntimeError, match='next_keep must be'):
        ext.sr_ste_sgd_step_(w, g, keep, w.new_empty(0), *args,
                             torch.zeros(4, 8), torch.zeros(4, 8), 2, 4, 1)
    # a group size without a mask kernel stops the op before it steps
    w7, g7 = torch.ones(4, 7), torch.ones(4, 7)
    keep7 = torch.zeros(4, 7, dtype=torch.bool)
    with pytest.raises(RuntimeError, match='no mask kernel for groups of m=7'):
        ext.sr_ste_sgd_step_(w7, g7, keep7, w7.new_empty(0), *args,
                             keep7.clone(), torch.zeros(4, 7), 2, 7, 1)
    assert torch.equal(w7, torch.ones(4, 7))
