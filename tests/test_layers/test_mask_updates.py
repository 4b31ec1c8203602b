"""Masks are computed once per weight update and never stale.

Every forward of these tests is checked by ``ForwardRecorder``: its mask
equals an independent N:M mask of the weight it ran on, its output the
plain op with that masked weight. ``mask_calls`` counts the masks the
layers compute."""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from nm_reference import (STEP_COMPUTES_MASKS, ForwardRecorder, plain_forward,
                          reference_mask)
from torch import nn

from mmnm.engine import SRSTEOptimWrapper
from mmnm.layers import SparseConv, SparseLinear, invalidate_masks
from mmnm.ops import ext_available, sr_ste_sgd_step_
from mmnm.pattern import NMPattern


class Net(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.conv = SparseConv(8, 8, 3, padding=1, name='conv')
        self.fc = SparseLinear(8, 4, name='fc')

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def inputs(device: str = 'cpu') -> torch.Tensor:
    return torch.randn(2, 8, 5, 5, device=device)


def train_micro_batches(model,
                        wrapper,
                        count: int,
                        device: str = 'cpu') -> None:
    for _ in range(count):
        with wrapper.optim_context(model):
            loss = model(inputs(device)).square().mean()
        wrapper.update_params(loss)


@pytest.mark.parametrize('accumulation', [1, 4])
@pytest.mark.parametrize('fused', [None, False])
def test_one_mask_per_optimizer_step(mask_calls, accumulation, fused):
    model = Net()
    recorder = ForwardRecorder(model)
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        accumulative_counts=accumulation,
        fused_sgd_step=fused)
    train_micro_batches(model, wrapper, 3 * accumulation)
    assert len(recorder.records) == 2 * 3 * accumulation
    if fused is None and STEP_COMPUTES_MASKS:
        assert wrapper.fusion_report.endswith('2 of 2 sparse weights')
        # the first forward computes, then each fused SGD step computes
        # the mask of the weight it writes (the recorder checks that the
        # forwards after it use that mask, not a stale one)
        assert mask_calls == {"layer 'conv'": 1 + 3, "layer 'fc'": 1 + 3}
    else:
        # the first forward of each window computes; the step makes it
        # stale
        assert mask_calls == {"layer 'conv'": 3, "layer 'fc'": 3}


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
@pytest.mark.parametrize('accumulation', [1, 4])
def test_cuda_one_mask_per_optimizer_step(mask_calls, accumulation):
    """On the GPU (where no step computes masks: the fused SR-STE step is a
    CPU kernel) the first forward after each step computes the mask, on
    the weight's device, and the recorder checks every forward."""
    model = Net().cuda()
    recorder = ForwardRecorder(model)
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        accumulative_counts=accumulation)
    train_micro_batches(model, wrapper, 3 * accumulation, device='cuda')
    assert len(recorder.records) == 2 * 3 * accumulation
    assert all(mask.is_cuda for _, _, mask in recorder.records)
    assert wrapper.fusion_report.startswith(
        'SRSTEOptimWrapper: SR-STE term fused into the SGD step of 0 of 2')
    assert mask_calls == {"layer 'conv'": 3, "layer 'fc'": 3}


def test_steps_change_the_masks(mask_calls):
    """The cache is exercised for real: the steps flip masks, so a stale one
    would have failed the recorder's check."""
    model = Net()
    ForwardRecorder(model)
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=5.0))
    masks = []
    for _ in range(3):
        train_micro_batches(model, wrapper, 1)
        masks.append(model.conv.mask.clone())
    assert not torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[1], masks[2])


def test_evaluation_computes_one_mask_for_all_batches(mask_calls):
    model = Net().eval()
    recorder = ForwardRecorder(model)
    with torch.no_grad():
        for _ in range(5):
            model(inputs())
    assert len(recorder.records) == 10
    assert mask_calls == {"layer 'conv'": 1, "layer 'fc'": 1}


def _step(optimizer_type, **kwargs):

    def change(model):
        optimizer = optimizer_type(model.parameters(), lr=2.0, **kwargs)
        model(inputs()).square().mean().backward()
        optimizer.step()

    return change


def _load_state_dict(assign: bool):

    def change(model):
        other = Net().state_dict()
        model.load_state_dict(other, assign=assign)

    return change


def _in_place(model):
    with torch.no_grad():
        for layer in (model.conv, model.fc):
            layer.weight.copy_(torch.randn_like(layer.weight))


def _data_assignment(model):
    for layer in (model.conv, model.fc):
        layer.weight.data = torch.randn_like(layer.weight)


def _data_write_and_invalidate(model):
    for layer in (model.conv, model.fc):
        layer.weight.data.copy_(torch.randn_like(layer.weight))
    invalidate_masks()


def _to_double(model):
    model.double()


#: Every way these weights change; after each, the next forward must run on
#: the mask of the new weights.
WEIGHT_CHANGES = {
    'SGD step': _step(torch.optim.SGD, foreach=False),
    'SGD foreach step': _step(torch.optim.SGD, foreach=True),
    'Adam fused step (no version bump)': _step(torch.optim.Adam, fused=True),
    'AdamW foreach step': _step(torch.optim.AdamW, foreach=True),
    'load_state_dict': _load_state_dict(assign=False),
    'load_state_dict(assign=True)': _load_state_dict(assign=True),
    'in-place write': _in_place,
    '.data assignment': _data_assignment,
    '.data write + invalidate_masks()': _data_write_and_invalidate,
    'dtype change': _to_double,
}


@pytest.mark.parametrize('name', WEIGHT_CHANGES)
def test_next_forward_uses_the_mask_of_the_new_weights(mask_calls, name):
    model = Net()
    recorder = ForwardRecorder(model)
    model(inputs())
    model(inputs())
    assert mask_calls == {"layer 'conv'": 1, "layer 'fc'": 1}
    before = model.conv.mask.clone()
    WEIGHT_CHANGES[name](model)
    model(inputs().to(model.conv.weight.dtype))  # checked by the recorder
    assert mask_calls == {"layer 'conv'": 2, "layer 'fc'": 2}
    # new values, new mask (a dtype change keeps the values)
    assert torch.equal(model.conv.mask, before) == (name == 'dtype change')
    assert recorder.records[-1][0] == 'fc'  # the last forward was checked


def test_frozen_mask_survives_steps_and_is_restored(mask_calls):
    model = Net()
    recorder = ForwardRecorder(model)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=5.0))
    model(inputs())
    model.conv.freeze_mask()
    frozen = model.conv.mask.clone()
    for _ in range(3):
        wrapper.update_params(model(inputs()).square().mean())
        model.conv.apply_mask_()
    model(inputs())
    assert torch.equal(model.conv.mask, frozen)
    assert not model.conv.weight[~frozen].any()
    # a mask restored from a checkpoint replaces the cached one
    restored = reference_mask(torch.randn_like(model.conv.weight))
    model.conv.set_frozen_mask(restored)
    model(inputs())
    assert torch.equal(model.conv.mask, restored)
    assert len(recorder.records) == 2 * 6


def test_dense_phase_then_sparse_recomputes(mask_calls):
    model = Net()
    recorder = ForwardRecorder(model)
    model(inputs())
    model.conv.sparse_enabled = False
    model(inputs())
    assert model.conv.mask is None
    model.conv.sparse_enabled = True
    model(inputs())
    assert mask_calls["layer 'conv'"] == 2
    assert len(recorder.records) == 6


def test_a_new_pattern_gets_a_new_mask(mask_calls):
    """Setting ``layer.nm`` (the weights unchanged) recomputes the mask
    with the new pattern at the next forward."""
    model = Net()
    recorder = ForwardRecorder(model)
    model(inputs())
    model.conv.nm = NMPattern(1, 4)
    model(inputs())  # checked by the recorder against a 1:4 mask
    assert mask_calls == {"layer 'conv'": 2, "layer 'fc'": 1}
    assert int(recorder.records[-2][2].sum()) == model.conv.weight.numel() // 4


def test_channels_last_weights_get_their_own_buffer(mask_calls):
    """``model.to(memory_format=torch.channels_last)`` re-lays out the
    conv weight (same values, new strides): its mask is recomputed on the
    new tensor, the Linear's (untouched) is not."""
    model = Net()
    ForwardRecorder(model)
    model(inputs())
    before = model.conv.mask.clone()
    model.to(memory_format=torch.channels_last)
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    model(inputs().contiguous(memory_format=torch.channels_last))
    assert mask_calls == {"layer 'conv'": 2, "layer 'fc'": 1}
    assert torch.equal(model.conv.mask, before)


def test_a_deep_copy_trains_as_a_sparse_model_of_its_own(mask_calls):
    """A ``copy.deepcopy`` of a model (an EMA or teacher copy, a copy
    trained on its own) has live sparse layers: an SR-STE optim wrapper of
    the copy finds them, and their masks follow the copy's weights."""
    model = Net()
    model(inputs())
    copied = copy.deepcopy(model)
    ForwardRecorder(copied)
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(copied.parameters(), lr=5.0))
    train_micro_batches(copied, wrapper, 2)
    assert wrapper.sparse_layers == [copied.conv, copied.fc]
    # the original's one mask; the copy's: one per step (the fused SGD
    # step's, after its first forward's) or one per window's first forward
    copy_masks = 1 + 2 if STEP_COMPUTES_MASKS else 2
    assert mask_calls == {
        "layer 'conv'": 1 + copy_masks,
        "layer 'fc'": 1 + copy_masks
    }
    assert model.conv._mask_buffer is not copied.conv._mask_buffer
    assert not torch.equal(model.conv.mask, copied.conv.mask)


def test_copies_and_exports_do_not_share_the_cache():
    model = Net()
    model(inputs())
    masked = model.conv.masked_weight()
    masked.zero_()
    plain = model.conv.to_dense()
    with torch.no_grad():
        plain.weight.add_(1)
    copied = copy.deepcopy(model)
    with torch.no_grad():
        copied.conv.weight.mul_(-3)
    x = inputs()
    expected = model.conv.weight.detach() * reference_mask(model.conv.weight)
    torch.testing.assert_close(
        model.conv(x), plain_forward(model.conv, x, expected))
    torch.testing.assert_close(
        copied.conv(x), plain_forward(model.conv, x, -3 * expected))


def test_backward_through_a_rewritten_masked_weight_fails_loudly():
    """The masked weight is rewritten in place at the next weight update:
    a graph built before it cannot silently use the new values."""
    model = Net()
    stale_loss = model(inputs()).square().mean()
    with torch.no_grad():
        model.conv.weight.mul_(-2)
    model(inputs())
    with pytest.raises(RuntimeError, match='modified inplace'):
        stale_loss.backward()


def test_inference_mode_then_training(mask_calls):
    """Masks made under torch.inference_mode() are inference tensors:
    training afterwards gets new ones instead of failing on them."""
    model = Net()
    with torch.inference_mode():
        model(inputs())
        model(inputs())
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
    ForwardRecorder(model)
    train_micro_batches(model, wrapper, 2)
    # inference's; then one per step (the fused SGD step's, after the
    # first training forward's) or one per window's first forward
    training = 1 + 2 if STEP_COMPUTES_MASKS else 2
    assert mask_calls == {
        "layer 'conv'": 1 + training,
        "layer 'fc'": 1 + training
    }


def fused_conv_step(conv: SparseConv) -> None:
    """A fused SR-STE SGD step of ``conv`` on its gradient (then cleared)
    that computes the next mask into the layer's step buffer."""
    sr_ste_sgd_step_(
        conv.weight,
        conv.weight.grad,
        conv.mask,
        None,
        0.1,
        5.0,
        remask=conv.mask_buffer_for_step())
    conv.weight.grad = None


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_mask_computed_by_the_step_is_taken_only_while_current(mask_calls):
    """The fused SGD step writes the next mask into the layer's buffer;
    the layer takes it only if the weight is still what the step left."""
    model = Net()
    recorder = ForwardRecorder(model)
    conv = model.conv

    def fused_step():
        """Returns the mask the forward used."""
        model(inputs()).square().mean().backward()
        used = conv.mask.clone()
        fused_conv_step(conv)
        return used

    used = fused_step()
    assert conv.take_mask_of_step()
    # until the next forward, layer.mask is the mask that forward used
    assert torch.equal(conv.mask, used)
    model(inputs())  # the recorder checks it ran on the new weight's mask
    assert torch.equal(conv.mask, reference_mask(conv.weight))
    assert mask_calls["layer 'conv'"] == 1 + 1  # no computation in forward
    fused_step()
    with torch.no_grad():
        conv.weight.mul_(-2)  # e.g. a hook between step and take
    assert not conv.take_mask_of_step()
    model(inputs())
    assert mask_calls["layer 'conv'"] == 2 + 1
    # frozen or disabled masks are not the step's to compute
    conv.freeze_mask()
    assert conv.mask_buffer_for_step() is None
    conv.mask_frozen, conv.sparse_enabled = False, False
    assert conv.mask_buffer_for_step() is None
    assert len(recorder.records) == 2 * 4


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_a_step_mask_of_another_tensor_is_not_taken():
    """A weight replaced between the step and the take, at the very version
    the step's mask was computed for, gets no mask of the old tensor."""
    model = Net()
    conv = model.conv
    model(inputs()).square().mean().backward()
    fused_conv_step(conv)
    version = conv.weight._version
    replacement = nn.Parameter(torch.randn_like(conv.weight))
    with torch.no_grad():
        while replacement._version < version:
            replacement.add_(0)
    assert replacement._version == conv._step_buffer.version
    conv.weight = replacement
    assert not conv.take_mask_of_step()
    ForwardRecorder(model)
    model(inputs())  # the recorder checks the mask of the new weight
    assert torch.equal(conv.mask, reference_mask(replacement))


def test_no_step_buffer_where_no_kernel_writes_it():
    """A second mask buffer costs the weight's size again: none is made for
    a group size without a compiled kernel or for groups that are strided
    in the weight's memory (flat groups of a channels_last conv; the next
    forward computes those masks), nor without ``mmnm._ext``. The channel
    groups of a channels_last conv lie next to each other: the kernel
    writes those."""
    fc7 = SparseLinear(14, 4, n=1, m=7)
    flat = SparseConv(
        8, 8, 3, padding=1,
        orientation='flat').to(memory_format=torch.channels_last)
    channel = SparseConv(
        8, 8, 3, padding=1).to(memory_format=torch.channels_last)
    fc7(torch.randn(2, 14))
    for conv in (flat, channel):
        conv(inputs().to(memory_format=torch.channels_last))
    assert fc7.mask_buffer_for_step() is None
    assert flat.mask_buffer_for_step() is None
    assert fc7._step_buffer is None and flat._step_buffer is None
    assert (channel.mask_buffer_for_step() is not None) == ext_available()
    plain = SparseLinear(8, 4)
    plain(torch.randn(2, 8))
    assert (plain.mask_buffer_for_step() is not None) == ext_available()


def test_cache_state_is_no_parameter_buffer_or_module():
    """The mask cache is set without nn.Module's checks: it never enters
    the state_dict, the parameters or the buffers."""
    model = Net()
    train_micro_batches(
        model,
        SRSTEOptimWrapper(
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1)), 2)
    assert set(model.conv.state_dict()) == {'weight', 'bias'}
    assert [name for name, _ in model.conv.named_buffers()] == []
    assert model.conv.mask is model.conv.__dict__['mask']
    model.conv.weight = nn.Parameter(torch.zeros_like(model.conv.weight))
    assert model.conv._parameters['weight'] is model.conv.weight
