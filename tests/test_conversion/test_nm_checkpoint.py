"""The N:M checkpoint format (mmnm.conversion.checkpoint): every sparse
weight of every weight set stored masked, checked against a brute-force
mask; the dense weights restored bit for bit; tampering detected."""
import itertools

import pytest
import torch
from torch import nn

from mmnm.conversion import (NM_CHECKPOINT_FORMAT, decode_nm_checkpoint,
                             encode_nm_checkpoint, find_sparse_layers,
                             nm_checkpoint_format, pack_mask,
                             sparse_layer_slots, sparsify_model, unpack_mask)
from mmnm.layers import SparseConv, SparseLinear


def brute_force_mask(weight: torch.Tensor, n: int = 2, m: int = 4):
    """Keep the n largest |w| of every m consecutive input channels at each
    (k, r, s); ties to the lowest index."""
    w4 = weight[:, :, None, None] if weight.dim() == 2 else weight
    mask = torch.zeros(w4.shape, dtype=torch.bool)
    out_ch, in_ch, kh, kw = w4.shape
    for k, r, s, g in itertools.product(
            range(out_ch), range(kh), range(kw), range(in_ch // m)):
        chans = sorted(
            range(g * m, (g + 1) * m),
            key=lambda c: (-abs(float(w4[k, c, r, s])), c))
        for c in chans[:n]:
            mask[k, c, r, s] = True
    return mask.view(weight.shape)


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = SparseConv(8, 8, 3, padding=1, name='conv')
        self.fc = SparseLinear(8, 4, name='fc')
        self.head = nn.Linear(4, 2)


def make():
    net = Net()
    layers = {layer.nm_name: layer for layer in find_sparse_layers(net)}
    return net, layers


def snapshot(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@pytest.mark.parametrize('numel', [1, 7, 8, 9, 100])
def test_pack_unpack_round_trip(numel):
    mask = torch.rand(numel) > 0.5
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-numel // 8)
    assert torch.equal(unpack_mask(packed, [numel]), mask)


def test_weights_stored_masked_and_restored_bit_for_bit():
    net, layers = make()
    before = snapshot(net)
    checkpoint = dict(state_dict=net.state_dict())  # shares storage
    encode_nm_checkpoint(checkpoint, layers)

    state = checkpoint['state_dict']
    for key in ('conv.weight', 'fc.weight'):
        expected = before[key] * brute_force_mask(before[key])
        assert torch.equal(state[key], expected), key
        groups = (state[key].movedim(1, -1).reshape(-1, 4) != 0).sum(-1)
        assert (groups <= 2).all()
    for key in ('conv.bias', 'fc.bias', 'head.weight', 'head.bias'):
        assert torch.equal(state[key], before[key]), key
    # the model itself is untouched: entries were replaced, not changed
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    record = checkpoint['nm_sparsity']
    assert record['format'] == NM_CHECKPOINT_FORMAT
    assert record['layers']['conv'] == dict(
        pattern='2:4',
        orientation='channel',
        shape=[8, 8, 3, 3],
        state='sparse',
        weight='weight')

    assert decode_nm_checkpoint(checkpoint, 'ckpt.pth') == 1
    for key, value in before.items():
        assert torch.equal(checkpoint['state_dict'][key], value), key
    # a second decode changes nothing
    decode_nm_checkpoint(checkpoint, 'ckpt.pth')
    assert torch.equal(checkpoint['state_dict']['conv.weight'],
                       before['conv.weight'])


def test_a_shared_layer_is_masked_under_every_name():
    """RTMDet's heads share convs across levels: the state_dict holds the
    weight under each name, and loading takes the last one."""
    net = Net()
    net.again = net.conv  # the same layer under a second name
    checkpoint = dict(state_dict=net.state_dict())
    encode_nm_checkpoint(checkpoint, sparse_layer_slots(net))
    weight = net.conv.weight.detach()
    for key in ('conv.weight', 'again.weight'):
        assert torch.equal(checkpoint['state_dict'][key],
                           weight * brute_force_mask(weight)), key
    plain = Net()
    plain.conv = plain.again = nn.Conv2d(8, 8, 3, padding=1)
    plain.load_state_dict(checkpoint['state_dict'])
    assert torch.equal(plain.conv.weight, weight * brute_force_mask(weight))


def test_ema_weight_set_masked_by_its_own_weights():
    net, layers = make()
    ema = {
        f'module.{k}': v + 0.3 * torch.randn_like(v)
        for k, v in net.state_dict().items()
    }
    ema['steps'] = torch.tensor(5)
    ema_before = {k: v.clone() for k, v in ema.items()}
    checkpoint = dict(state_dict=net.state_dict(), ema_state_dict=ema)
    encode_nm_checkpoint(checkpoint, layers)
    for name in ('conv', 'fc'):
        key = f'module.{name}.weight'
        own = brute_force_mask(ema_before[key])
        assert not torch.equal(
            own, brute_force_mask(net.state_dict()[f'{name}.weight']))
        assert torch.equal(checkpoint['ema_state_dict'][key],
                           ema_before[key] * own)
    decode_nm_checkpoint(checkpoint, 'ckpt.pth')
    for key, value in ema_before.items():
        assert torch.equal(checkpoint['ema_state_dict'][key], value), key


def test_dense_warmup_layer_stays_dense_and_frozen_mask_is_kept():
    net, layers = make()
    net.fc.sparse_enabled = False  # dense warm-up: the model is dense
    net.conv.freeze_mask()
    frozen = net.conv.mask.clone()
    with torch.no_grad():  # a mask of the weights would now keep these
        net.conv.weight[~frozen] = 10.0
    assert not torch.equal(brute_force_mask(net.conv.weight.detach()), frozen)
    before = snapshot(net)
    checkpoint = dict(state_dict=net.state_dict())
    encode_nm_checkpoint(checkpoint, layers)
    state, record = checkpoint['state_dict'], checkpoint['nm_sparsity']
    assert torch.equal(state['fc.weight'], before['fc.weight'])
    assert torch.equal(state['conv.weight'], before['conv.weight'] * frozen)
    assert record['layers']['fc']['state'] == 'dense'
    assert record['layers']['conv']['state'] == 'frozen'
    assert torch.equal(
        unpack_mask(record['layers']['conv']['frozen_mask'], frozen.shape),
        frozen)
    decode_nm_checkpoint(checkpoint, 'ckpt.pth')
    assert torch.equal(checkpoint['state_dict']['conv.weight'],
                       before['conv.weight'])


def test_changed_weights_are_an_error_naming_file_and_key():
    net, layers = make()
    checkpoint = dict(state_dict=net.state_dict())
    encode_nm_checkpoint(checkpoint, layers)
    weight = checkpoint['state_dict']['fc.weight'].clone()
    weight[weight == 0] = 1.0  # a value where the mask prunes
    bad = dict(
        checkpoint,
        state_dict=dict(checkpoint['state_dict'], **{'fc.weight': weight}))
    with pytest.raises(ValueError, match=r"a\.pth: state_dict\['fc\.weight'"):
        decode_nm_checkpoint(bad, 'a.pth')

    checkpoint = dict(state_dict=net.state_dict())
    encode_nm_checkpoint(checkpoint, layers)
    weight = checkpoint['state_dict']['conv.weight'].clone()
    weight[weight != 0] *= 1e-6  # kept weights now lose to the pruned ones
    checkpoint['state_dict']['conv.weight'] = weight
    with pytest.raises(ValueError, match='other masks'):
        decode_nm_checkpoint(checkpoint, 'b.pth')


def test_format_detection():
    net, layers = make()
    assert nm_checkpoint_format(dict(state_dict={})) is None
    legacy = dict(nm_sparsity={'conv': dict(shape=[1], start=0, last=0)})
    assert nm_checkpoint_format(legacy) == 0
    assert decode_nm_checkpoint(legacy, 'old.pth') == 0  # nothing to do
    newer = dict(state_dict={}, nm_sparsity=dict(format=99))
    with pytest.raises(ValueError, match='new.pth.*format 99.*upgrade'):
        decode_nm_checkpoint(newer, 'new.pth')


def test_attention_weights_stored_masked_under_their_own_keys():
    net = nn.Sequential(nn.MultiheadAttention(16, 4))
    sparsify_model(net)
    layers = {layer.nm_name: layer for layer in find_sparse_layers(net)}
    assert set(layers) == {'0', '0.out_proj'}
    before = snapshot(net)
    checkpoint = dict(state_dict=net.state_dict())
    encode_nm_checkpoint(checkpoint, layers)
    record = checkpoint['nm_sparsity']
    assert record['layers']['0']['weight'] == 'in_proj_weight'
    for key in ('0.in_proj_weight', '0.out_proj.weight'):
        assert torch.equal(checkpoint['state_dict'][key],
                           before[key] * brute_force_mask(before[key])), key
    assert decode_nm_checkpoint(checkpoint, 'ckpt.pth') == 1
    for key, value in before.items():
        assert torch.equal(checkpoint['state_dict'][key], value), key
