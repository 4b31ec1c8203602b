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
from nm_reference import ForwardRecorder, plain_forward, reference_mask
from torch import nn

from mmnm.engine import SRSTEOptimWrapper
from mmnm.layers import SparseConv, SparseLinear, invalidate_masks
from mmnm.pattern import NMPattern


class Net(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.conv = SparseConv(8, 8, 3, padding=1, name='conv')
        self.fc = SparseLinear(8, 4, name='fc')

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def inputs() -> torch.Tensor:
    return torch.randn(2, 8, 5, 5)


def train_micro_batches(model, wrapper, count: int) -> None:
    for _ in range(count):
        with wrapper.optim_context(model):
            loss = model(inputs()).square().mean()
        wrapper.update_params(loss)


@pytest.mark.parametrize('accumulation', [1, 4])
def test_one_mask_per_optimizer_step(mask_calls, accumulation):
    model = Net()
    recorder = ForwardRecorder(model)
    wrapper = SRSTEOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        accumulative_counts=accumulation)
    train_micro_batches(model, wrapper, 3 * accumulation)
    assert len(recorder.records) == 2 * 3 * accumulation
    # the first forward of each window computes; the step makes it stale
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
    # the original's one mask, the copy's two (one per step)
    assert mask_calls == {"layer 'conv'": 3, "layer 'fc'": 3}
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
    assert mask_calls == {"layer 'conv'": 3, "layer 'fc'": 3}
