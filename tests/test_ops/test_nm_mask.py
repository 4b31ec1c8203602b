"""Tests of the N:M mask op against a brute-force reference.

The reference below never calls mmnm: it lists the weight indices of every
group explicitly (REFERENCE.md section 2) and keeps the N largest magnitudes
of each group, the lowest index winning ties.
"""
import itertools

import pytest
import torch

from mmnm.ops import (MaskedWeightBuffer, check_deferred_masks, group_view,
                      nm_mask, selection_network)
from mmnm.pattern import NMPattern

PATTERNS = [(1, 4), (2, 4), (2, 8), (4, 8), (1, 16)]
ODD_PATTERNS = [(1, 2), (3, 5), (2, 3)]
ALL_PATTERNS = PATTERNS + ODD_PATTERNS
ORIENTATIONS = ('channel', 'flat')


# --------------------------------------------------------------------------
# brute-force reference
# --------------------------------------------------------------------------
def ref_groups(shape, m, orientation):
    """Explicit index lists (tuples into the weight) of every N:M group."""
    shape = tuple(shape)
    out, chans, taps = shape[0], shape[1], shape[2:]
    groups = []
    if orientation == 'channel':
        # M consecutive input channels at each fixed (out, kernel tap).
        assert chans % m == 0
        for k in range(out):
            for tap in itertools.product(*[range(t) for t in taps]):
                for g in range(chans // m):
                    groups.append([(k, g * m + t) + tap for t in range(m)])
    elif orientation == 'flat':
        # M consecutive entries of weight[k].flatten() (last dim fastest).
        row = list(itertools.product(*[range(d) for d in shape[1:]]))
        assert len(row) % m == 0
        for k in range(out):
            for g in range(len(row) // m):
                groups.append([(k, ) + row[g * m + t] for t in range(m)])
    else:
        raise AssertionError(orientation)
    return groups


def ref_mask(weight, n, m, orientation):
    """Keep the n largest |w| of every group; ties keep the lowest index."""
    values = weight.detach().to(torch.float64).cpu()
    mask = torch.zeros(weight.shape, dtype=torch.bool)
    for group in ref_groups(weight.shape, m, orientation):
        mags = [abs(values[idx].item()) for idx in group]
        # sorted() is stable: among equal magnitudes the lower position wins
        order = sorted(range(m), key=lambda t: -mags[t])
        for t in order[:n]:
            mask[group[t]] = True
    return mask


def assert_n_per_group(mask, n, m, orientation):
    for group in ref_groups(mask.shape, m, orientation):
        assert sum(bool(mask[idx]) for idx in group) == n


def conv_shapes(m, orientation):
    shapes = [(3, 2 * m, 3, 3), (5, m, 1, 1), (2, 3 * m, 2, 3)]
    if orientation == 'flat':
        # channel count not divisible by m; the flattened row is
        shapes += [(3, 3, 1, m), (2, 1, 2 * m, 1)]
    return shapes


def linear_shapes(m):
    return [(4, 2 * m), (7, 3 * m), (1, m)]


# --------------------------------------------------------------------------
# 1. random weights against the reference
# --------------------------------------------------------------------------
@pytest.mark.parametrize('orientation', ORIENTATIONS)
@pytest.mark.parametrize('n,m', ALL_PATTERNS)
def test_matches_reference_conv(n, m, orientation):
    gen = torch.Generator().manual_seed(1000 * n + m)
    for shape in conv_shapes(m, orientation):
        weight = torch.randn(shape, generator=gen)
        mask = nm_mask(weight, n, m, orientation)
        assert mask.dtype == torch.bool
        assert mask.shape == weight.shape
        expected = ref_mask(weight, n, m, orientation)
        assert torch.equal(mask, expected), (shape, n, m, orientation)
        assert_n_per_group(mask, n, m, orientation)
        assert int(mask.sum()) == weight.numel() * n // m


@pytest.mark.parametrize('orientation', ORIENTATIONS)
@pytest.mark.parametrize('n,m', ALL_PATTERNS)
def test_matches_reference_linear(n, m, orientation):
    gen = torch.Generator().manual_seed(7 + 1000 * n + m)
    for shape in linear_shapes(m):
        weight = torch.randn(shape, generator=gen)
        mask = nm_mask(weight, n, m, orientation)
        expected = ref_mask(weight, n, m, orientation)
        assert torch.equal(mask, expected), (shape, n, m, orientation)
        assert_n_per_group(mask, n, m, orientation)


def test_orientations_really_differ():
    # a weight where channel groups and flat groups must pick differently
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(4, 8, 3, 3, generator=gen)
    channel = nm_mask(weight, 2, 4, 'channel')
    flat = nm_mask(weight, 2, 4, 'flat')
    assert not torch.equal(channel, flat)
    assert torch.equal(channel, ref_mask(weight, 2, 4, 'channel'))
    assert torch.equal(flat, ref_mask(weight, 2, 4, 'flat'))


def test_default_orientation_is_channel():
    gen = torch.Generator().manual_seed(4)
    weight = torch.randn(2, 8, 3, 3, generator=gen)
    assert torch.equal(
        nm_mask(weight, 2, 4), ref_mask(weight, 2, 4, 'channel'))


def test_kept_magnitudes_dominate_pruned():
    # property check independent of index bookkeeping: in every group the
    # smallest kept |w| is >= the largest pruned |w|
    gen = torch.Generator().manual_seed(5)
    weight = torch.randn(6, 16, 2, 2, generator=gen)
    mask = nm_mask(weight, 2, 8)
    for group in ref_groups(weight.shape, 8, 'channel'):
        kept = [abs(weight[i].item()) for i in group if mask[i]]
        pruned = [abs(weight[i].item()) for i in group if not mask[i]]
        assert len(kept) == 2
        assert min(kept) >= max(pruned)


# --------------------------------------------------------------------------
# 2. ties
# --------------------------------------------------------------------------
def tie_weights():
    gen = torch.Generator().manual_seed(11)
    yield torch.randint(-1, 2, (6, 8, 3, 3), generator=gen).float()
    yield torch.randint(-2, 3, (5, 16, 1, 2), generator=gen).float()
    yield torch.zeros(3, 8, 2, 2)
    yield torch.ones(3, 8, 2, 2)
    signed_zero = torch.zeros(4, 8, 3, 3)
    signs = torch.randint(0, 2, signed_zero.shape, generator=gen).bool()
    signed_zero[signs] = -0.0
    assert (torch.signbit(signed_zero)).any()
    yield signed_zero
    # equal magnitudes with opposite signs
    mixed = torch.full((3, 8, 2, 2), 0.5)
    mixed[torch.randint(0, 2, mixed.shape, generator=gen).bool()] = -0.5
    yield mixed


@pytest.mark.parametrize('orientation', ORIENTATIONS)
@pytest.mark.parametrize('n,m', [(1, 4), (2, 4), (2, 8), (4, 8), (1, 2),
                                 (3, 8)])
def test_ties_keep_lowest_index(n, m, orientation):
    for weight in tie_weights():
        if weight.shape[1] % m:
            continue
        mask = nm_mask(weight, n, m, orientation)
        assert torch.equal(mask, ref_mask(weight, n, m, orientation))
        assert_n_per_group(mask, n, m, orientation)
        # deterministic across calls
        for _ in range(3):
            assert torch.equal(nm_mask(weight, n, m, orientation), mask)


def test_all_zero_keeps_first_n():
    weight = torch.zeros(2, 8)
    mask = nm_mask(weight, 2, 4)
    expected = torch.tensor([[1, 1, 0, 0] * 2] * 2, dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_signed_zero_ties():
    # -0.0 and +0.0 are the same magnitude: lowest index wins
    weight = torch.tensor([[-0.0, 0.0, -0.0, 0.0, 0.0, -0.0, 0.0, -0.0]])
    assert torch.equal(
        nm_mask(weight, 1, 4), ref_mask(weight, 1, 4, 'channel'))
    assert nm_mask(weight, 1, 4).tolist() == [[
        True, False, False, False, True, False, False, False
    ]]


def test_partial_tie_at_threshold():
    # one clear winner plus a three-way tie for the second slot
    weight = torch.tensor([[0.1, -0.5, 0.5, 3.0, 0.5, 0.2, 0.2, 0.2]])
    mask = nm_mask(weight, 2, 4)
    assert torch.equal(mask, ref_mask(weight, 2, 4, 'channel'))
    assert mask.tolist() == [[
        False, True, False, True, True, True, False, False
    ]]


def test_ties_in_some_groups_only():
    # most groups are tie free; a few tie: the global fast path must not
    # hide a wrong count in one group
    gen = torch.Generator().manual_seed(12)
    weight = torch.randn(4, 16, 2, 2, generator=gen)
    weight[1, 4:8, 0, 0] = 1.0
    weight[3, 0:4, 1, 1] = torch.tensor([2.0, -2.0, 2.0, 0.0])
    for n in (1, 2, 3):
        mask = nm_mask(weight, n, 4)
        assert torch.equal(mask, ref_mask(weight, n, 4, 'channel'))
        assert_n_per_group(mask, n, 4, 'channel')


# --------------------------------------------------------------------------
# 3. half precision
# --------------------------------------------------------------------------
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('orientation', ORIENTATIONS)
@pytest.mark.parametrize('n,m', [(1, 4), (2, 4), (2, 8), (4, 8), (1, 16)])
def test_half_precision(dtype, orientation, n, m):
    gen = torch.Generator().manual_seed(21 + n + m)
    # low precision produces many exact ties (bf16 has 8 mantissa bits)
    weight = torch.randn(4, 2 * m, 3, 3, generator=gen).to(dtype)
    mask = nm_mask(weight, n, m, orientation)
    assert mask.dtype == torch.bool and mask.shape == weight.shape
    expected = ref_mask(weight.float(), n, m, orientation)
    assert torch.equal(mask, expected)
    assert torch.equal(mask, nm_mask(weight.float(), n, m, orientation))
    assert_n_per_group(mask, n, m, orientation)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_linear_with_ties(dtype):
    gen = torch.Generator().manual_seed(22)
    weight = (torch.randint(-3, 4, (6, 32), generator=gen) / 4).to(dtype)
    mask = nm_mask(weight, 2, 4)
    assert torch.equal(mask, ref_mask(weight.float(), 2, 4, 'channel'))


# --------------------------------------------------------------------------
# 4. non-contiguous weights
# --------------------------------------------------------------------------
@pytest.mark.parametrize('orientation', ORIENTATIONS)
@pytest.mark.parametrize('n,m', [(1, 4), (2, 4), (2, 8)])
def test_channels_last(orientation, n, m):
    gen = torch.Generator().manual_seed(31)
    for weight in (torch.randn(4, 16, 3, 3, generator=gen),
                   torch.randint(-1, 2, (4, 16, 3, 3), generator=gen).float()):
        cl = weight.to(memory_format=torch.channels_last)
        assert not cl.is_contiguous()
        mask = nm_mask(cl, n, m, orientation)
        assert mask.shape == weight.shape
        assert torch.equal(mask, nm_mask(weight, n, m, orientation))
        assert torch.equal(mask, ref_mask(weight, n, m, orientation))


def test_transposed_and_sliced_views():
    gen = torch.Generator().manual_seed(32)
    base = torch.randn(16, 6, generator=gen)
    view = base.t()  # (6, 16) linear weight, not contiguous
    assert not view.is_contiguous()
    assert torch.equal(nm_mask(view, 2, 4), nm_mask(view.contiguous(), 2, 4))
    assert torch.equal(nm_mask(view, 2, 4), ref_mask(view, 2, 4, 'channel'))

    big = torch.randn(8, 8, 3, 3, generator=gen)
    sliced = big[::2]  # every other output channel
    permuted = torch.randn(3, 3, 4, 8, generator=gen).permute(2, 3, 0, 1)
    for weight in (sliced, permuted):
        assert not weight.is_contiguous()
        for orientation in ORIENTATIONS:
            mask = nm_mask(weight, 2, 4, orientation)
            assert torch.equal(mask,
                               nm_mask(weight.contiguous(), 2, 4, orientation))
            assert torch.equal(mask, ref_mask(weight, 2, 4, orientation))


def test_does_not_modify_weight_or_track_grad():
    gen = torch.Generator().manual_seed(33)
    weight = torch.randn(4, 8, 3, 3, generator=gen, requires_grad=True)
    before = weight.detach().clone()
    version = weight._version
    mask = nm_mask(weight, 2, 4)
    assert not mask.requires_grad
    assert torch.equal(weight.detach(), before)
    assert weight._version == version


# --------------------------------------------------------------------------
# 5. selection network
# --------------------------------------------------------------------------
def apply_network(rows, comparators):
    """rows: (B, size). Apply (i, j, keep_min, keep_max) column-wise."""
    wires = [rows[:, c].clone() for c in range(rows.shape[1])]
    for i, j, keep_min, keep_max in comparators:
        low = torch.minimum(wires[i], wires[j])
        high = torch.maximum(wires[i], wires[j])
        if keep_min:
            wires[i] = low
        if keep_max:
            wires[j] = high
    return wires


@pytest.mark.parametrize('size', range(2, 17))
def test_selection_network_random(size):
    gen = torch.Generator().manual_seed(size)
    rows = torch.cat([
        torch.randn(300, size, generator=gen),
        torch.randint(0, 3, (300, size), generator=gen).float(),
    ])
    expected = torch.sort(rows, dim=1).values
    for rank in range(size):
        network = selection_network(size, rank)
        for i, j, keep_min, keep_max in network:
            assert 0 <= i < j < size
            assert keep_min or keep_max
        wires = apply_network(rows, network)
        assert torch.equal(wires[rank], expected[:, rank]), (size, rank)


@pytest.mark.parametrize('size', [4, 5])
def test_selection_network_exhaustive(size):
    perms = list(itertools.permutations(range(size)))
    with_ties = list(itertools.product(range(3), repeat=size))
    rows = torch.tensor(perms + with_ties, dtype=torch.float32)
    expected = torch.sort(rows, dim=1).values
    for rank in range(size):
        wires = apply_network(rows, selection_network(size, rank))
        assert torch.equal(wires[rank], expected[:, rank]), rank


def test_selection_network_is_pruned():
    # selecting the minimum of 16 needs far fewer comparators than sorting
    full_max = max(len(selection_network(16, rank)) for rank in range(16))
    assert len(selection_network(16, 0)) < full_max


# --------------------------------------------------------------------------
# 6. errors
# --------------------------------------------------------------------------
def _w(*shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(41))


ERROR_CASES = [
    (lambda: (_w(4, 8), 4, 4, 'channel'), ValueError, r'1 <= N < M'),
    (lambda: (_w(4, 8), 5, 4, 'channel'), ValueError, r'1 <= N < M'),
    (lambda: (_w(4, 8), 0, 4, 'channel'), ValueError, r'1 <= N < M'),
    (lambda: (_w(4, 8), -1, 4, 'channel'), ValueError, r'1 <= N < M'),
    (lambda: (_w(4, 8), 2.0, 4, 'channel'), TypeError, r'must be an int'),
    (lambda: (_w(4, 8), True, 4, 'channel'), TypeError, r'must be an int'),
    (lambda: (_w(4, 8), 2, 4.0, 'channel'), TypeError, r'must be an int'),
    (lambda: (_w(4, 8), 2, 4, 'row'), ValueError, r'unknown orientation'),
    (lambda: (_w(4, 6, 3, 3), 2, 4, 'channel'), ValueError, r'not divisible'),
    (lambda: (_w(4, 3, 1, 5), 2, 4, 'flat'), ValueError, r'not divisible'),
    (lambda: (_w(4, 6), 2, 4, 'channel'), ValueError, r'not divisible'),
    (lambda: (_w(8), 2, 4, 'channel'), ValueError, r'at least 2 dims'),
    (lambda: (_w(8), 2, 4, 'flat'), ValueError, r'at least 2 dims'),
]


def _nan_weight():
    w = _w(4, 8, 3, 3)
    w[2, 5, 1, 0] = float('nan')
    return w, 2, 4, 'channel'


def _inf_weight():
    w = _w(4, 8)
    w[0, 3] = float('inf')
    return w, 2, 4, 'channel'


def _neg_inf_weight():
    w = _w(4, 8).half()
    w[3, 7] = float('-inf')
    return w, 2, 4, 'flat'


ERROR_CASES += [
    (_nan_weight, ValueError, r'NaN'),
    (_inf_weight, ValueError, r'NaN/Inf'),
    (_neg_inf_weight, ValueError, r'NaN/Inf'),
]


@pytest.mark.parametrize('make,exc,pattern', ERROR_CASES)
def test_errors(make, exc, pattern):
    weight, n, m, orientation = make()
    with pytest.raises(exc, match=pattern):
        nm_mask(weight, n, m, orientation)
    with pytest.raises(exc, match=pattern) as info:
        nm_mask(weight, n, m, orientation, name='backbone.conv1')
    assert 'backbone.conv1' in str(info.value)


def test_n_equal_m_message_without_name_has_no_prefix():
    with pytest.raises(ValueError) as info:
        nm_mask(_w(4, 8), 4, 4)
    assert not str(info.value).startswith(':')
    assert '4:4' in str(info.value)


# --------------------------------------------------------------------------
# 7. group_view
# --------------------------------------------------------------------------
@pytest.mark.parametrize('shape,m,orientation',
                         [((4, 8, 3, 3), 4, 'channel'),
                          ((4, 8, 3, 3), 4, 'flat'), ((3, 2, 2, 4), 8, 'flat'),
                          ((4, 16), 8, 'channel'), ((4, 16), 4, 'flat'),
                          ((5, 16, 1, 1), 16, 'channel')])
def test_group_view_is_view_and_holds_groups(shape, m, orientation):
    weight = _w(*shape)
    view = group_view(weight, m, orientation)
    assert view.dim() == 4 and view.shape[2] == m
    assert view.data_ptr() == weight.data_ptr()
    assert view.untyped_storage().data_ptr() == \
        weight.untyped_storage().data_ptr()
    # every [o, g, :, r] slice is exactly one reference group, in order
    groups = ref_groups(shape, m, orientation)
    slices = view.permute(0, 1, 3, 2).reshape(-1, m)
    assert slices.shape[0] == len(groups)
    got = sorted(tuple(row) for row in slices.tolist())
    want = sorted(
        tuple(weight[idx].item() for idx in group) for group in groups)
    assert got == want
    # writes through the view reach the weight
    view[0, 0, 1, 0] = 123.0
    assert 123.0 in weight.flatten().tolist()


# --------------------------------------------------------------------------
# 8. NMPattern.parse
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    'spec',
    ['2:4', (2, 4), [2, 4],
     dict(n=2, m=4), NMPattern(2, 4)])
def test_parse_accepts(spec):
    pattern = NMPattern.parse(spec)
    assert isinstance(pattern, NMPattern)
    assert (pattern.n, pattern.m, pattern.orientation) == (2, 4, 'channel')
    assert pattern.density == 0.5
    assert str(pattern) == '2:4'


def test_parse_orientation():
    assert NMPattern.parse(
        '1:4', orientation='flat') == NMPattern(1, 4, 'flat')
    assert NMPattern.parse(dict(n=1, m=4, orientation='flat')).orientation \
        == 'flat'
    existing = NMPattern(2, 8, 'flat')
    assert NMPattern.parse(existing) is existing


@pytest.mark.parametrize('spec,exc', [
    ('2-4', ValueError),
    ('2:x', ValueError),
    ('2:4:8', ValueError),
    ('', ValueError),
    ('4:4', ValueError),
    (dict(n=2, m=4, k=1), ValueError),
    (dict(n=2), ValueError),
    (dict(n=2, m=4, orientation='row'), ValueError),
    ((2, 4, 8), TypeError),
    (2.5, TypeError),
])
def test_parse_rejects(spec, exc):
    with pytest.raises(exc):
        NMPattern.parse(spec)


def test_parse_error_messages():
    with pytest.raises(ValueError, match=r"cannot parse N:M pattern '2-4'"):
        NMPattern.parse('2-4')
    with pytest.raises(ValueError, match=r'cannot parse N:M pattern .*k'):
        NMPattern.parse(dict(n=2, m=4, k=1))


@pytest.fixture(params=['ext', 'torch'])
def mask_path(request, monkeypatch):
    """Runs a test on the compiled kernel and on the PyTorch path."""
    import importlib

    from mmnm.ops import ext_available
    module = importlib.import_module('mmnm.ops.nm_mask')
    if request.param == 'ext' and not ext_available():
        pytest.skip('mmnm._ext not built')
    if request.param == 'torch':
        monkeypatch.setattr(module, 'load_ext', lambda: None)
    return request.param


@pytest.mark.parametrize('shape', [(8, 16, 3, 3), (12, 32)])
def test_masked_weight_written_into_out(mask_path, shape):
    weight = torch.randn(shape)
    out = torch.full_like(weight, float('nan'))
    version = out._version
    mask, masked = nm_mask(weight, 2, 4, return_masked=True, out=out)
    assert masked.data_ptr() == out.data_ptr()
    assert torch.equal(out, weight * mask)
    assert torch.equal(mask, nm_mask(weight, 2, 4))
    # autograd sees the write: a graph that saved `out` cannot use it
    assert out._version > version


def test_out_that_does_not_fit_is_refused(mask_path):
    weight = torch.randn(8, 16)
    for bad in (torch.empty(8, 8), torch.empty(8, 16, dtype=torch.float64),
                torch.empty(16, 8).t()):
        with pytest.raises(ValueError, match='fc: out must be a tensor of'):
            nm_mask(weight, 2, 4, name='fc', return_masked=True, out=bad)
    with pytest.raises(ValueError, match='return_masked=True'):
        nm_mask(weight, 2, 4, out=torch.empty(8, 16))
    # channels_last: out laid out as the weight, but not for flat groups
    # (strided in its memory: copied out, contiguous outputs only)
    conv = torch.randn(8, 16, 3,
                       3).contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match='conv: out must be a tensor of'):
        nm_mask(conv, 2, 4, 'flat', 'conv', True, torch.empty_like(conv))


@pytest.mark.parametrize('shape', [(8, 8, 0, 3), (0, 8, 3, 3), (0, 8)])
def test_empty_weight(mask_path, shape):
    """Nothing to select: empty outputs (their data pointers may be the
    weight's null one, which the kernel would refuse as "the weight
    itself")."""
    from mmnm.ops import MaskedWeightBuffer
    weight = torch.randn(shape)
    mask, masked = nm_mask(weight, 2, 4, return_masked=True)
    assert mask.shape == masked.shape == weight.shape
    assert mask.dtype == torch.bool
    mask, masked = MaskedWeightBuffer(weight, 2, 4).update()
    assert mask.shape == masked.shape == weight.shape


@pytest.mark.parametrize('orientation', ['channel', 'flat'])
def test_channels_last_weight_keeps_its_layout(mask_path, orientation):
    """Channel groups of a channels_last conv lie next to each other in
    its memory: read in place, the outputs channels_last. Flat groups are
    strided there: copied out, the outputs contiguous. Either way the mask
    of the values, written into ``out`` of either layout."""
    weight = torch.randn(8, 16, 3,
                         3).contiguous(memory_format=torch.channels_last)
    want = ref_mask(weight, 2, 4, orientation)
    layout = torch.channels_last if orientation == 'channel' else \
        torch.contiguous_format
    mask, masked = nm_mask(weight, 2, 4, orientation, return_masked=True)
    assert torch.equal(mask, want) and torch.equal(masked, weight * want)
    assert mask.is_contiguous(memory_format=layout)
    assert masked.is_contiguous(memory_format=layout)
    assert torch.equal(nm_mask(weight, 2, 4, orientation), want)
    outs = [torch.empty(weight.shape)]
    if orientation == 'channel':
        outs.append(torch.empty_like(weight))
    for out in outs:
        mask, masked = nm_mask(weight, 2, 4, orientation, None, True, out)
        assert masked is out and torch.equal(out, weight * want)
        assert torch.equal(mask, want)


def test_out_must_not_be_the_weight():
    from mmnm.ops import ext_available
    from mmnm.ops.ext_loader import load_ext
    if not ext_available():
        pytest.skip('mmnm._ext not built')
    grouped = torch.randn(8, 4, 4, 1)
    with pytest.raises(RuntimeError, match='must not be the weight'):
        load_ext().nm_mask_forward(grouped, 2, True, grouped)
    for keep_out in (torch.zeros(8, 4, 4,
                                 1), torch.zeros(8, 4, 2, 2, dtype=torch.bool),
                     torch.zeros(8, 1, 4, 4, dtype=torch.bool).transpose(1,
                                                                         3)):
        with pytest.raises(RuntimeError, match='keep_out must be'):
            load_ext().nm_mask_forward(grouped, 2, False, None, keep_out)


@pytest.mark.parametrize('orientation', ['channel', 'flat'])
@pytest.mark.parametrize('channels_last', [False, True])
def test_masked_weight_buffer_follows_the_weight_in_place(
        mask_path, orientation, channels_last):
    """One buffer serves every update of its weight: the mask of the
    current values, the masked weight rewritten into the same memory, its
    version bumped. A channels_last weight's channel groups are read in
    place and its outputs are channels_last; its flat groups (strided in
    memory) are copied out at each update, the outputs contiguous."""
    from mmnm.ops import MaskedWeightBuffer
    weight = torch.randn(8, 16, 3, 3)
    if channels_last:
        weight = weight.contiguous(memory_format=torch.channels_last)
    buffer = MaskedWeightBuffer(weight, 2, 4, orientation, name='neck.conv')
    in_place = not channels_last or orientation == 'channel'
    assert buffer.kernel_writable == (in_place and mask_path == 'ext')
    layout = torch.channels_last if channels_last and in_place else \
        torch.contiguous_format
    address = buffer.masked.data_ptr()
    mask_address = buffer.mask.data_ptr()
    for step in range(3):
        version = buffer.masked._version
        mask, masked = buffer.update('neck.conv')
        assert torch.equal(mask, nm_mask(weight, 2, 4, orientation))
        assert torch.equal(mask, ref_mask(weight, 2, 4, orientation))
        assert torch.equal(masked, weight * mask)
        assert masked.data_ptr() == address
        assert masked.is_contiguous(memory_format=layout)
        assert mask.is_contiguous(memory_format=layout)
        assert mask.data_ptr() == mask_address and mask.dtype == torch.bool
        assert masked._version > version
        assert buffer.serves(weight, (2, 4, orientation))
        weight.mul_(-1.5).add_(torch.randn_like(weight))  # an update
    frozen = nm_mask(weight, 1, 4, orientation)
    assert torch.equal(buffer.apply(frozen), weight * frozen)


def test_masked_weight_buffer_knows_when_it_no_longer_fits(mask_path):
    from mmnm.ops import MaskedWeightBuffer
    weight = torch.randn(8, 16)
    buffer = MaskedWeightBuffer(weight, 2, 4)
    pattern = (2, 4, 'channel')
    assert buffer.serves(weight, pattern)
    assert buffer.serves(weight.detach(), pattern)
    for other in (weight.clone(), weight.double(), weight.t(),
                  weight.view(16, 8)):
        assert not buffer.serves(other, pattern)
    for other in ((1, 4, 'channel'), (2, 8, 'channel'), (2, 4, 'flat')):
        assert not buffer.serves(weight, other)
    with torch.inference_mode():
        assert not buffer.serves(weight, pattern)


def test_masked_weight_buffer_errors_name_the_layer(mask_path):
    from mmnm.ops import MaskedWeightBuffer
    with pytest.raises(ValueError, match='neck.fc: reduction size 10'):
        MaskedWeightBuffer(torch.randn(4, 10), 2, 4, name='neck.fc')
    weight = torch.randn(4, 8)
    buffer = MaskedWeightBuffer(weight, 2, 4, name='neck.fc')
    weight[1, 3] = float('nan')
    version = buffer.masked._version
    with pytest.raises(ValueError, match='neck.fc: weight holds 1 NaN'):
        buffer.update('neck.fc')
    # the buffer may hold a partial write: a graph built on it must fail
    assert buffer.masked._version > version


def test_deferred_check_reports_non_finite_at_check_time(mask_path):
    """``update(defer_check=True)`` computes the mask without the NaN/Inf
    check (on a GPU, without waiting for the kernel); check_deferred_masks
    then makes the checks of all pending buffers, raising for one that
    held NaN or Inf with its name, and that buffer holds no mask."""
    weights = [torch.randn(8, 16, 3, 3), torch.randn(16, 32)]
    buffers = [MaskedWeightBuffer(w, 2, 4) for w in weights]
    for buffer, name in zip(buffers, ('a', 'b')):
        mask, masked = buffer.update(name, defer_check=True)
        assert buffer.check_pending
        assert torch.equal(mask, ref_mask(buffer.weight, 2, 4, 'channel'))
    check_deferred_masks()  # all finite: nothing pending any more
    assert not any(buffer.check_pending for buffer in buffers)
    assert [buffer.version for buffer in buffers] == [0, 0]

    weights[1][3, 5] = float('nan')
    for buffer, name in zip(buffers, ('a', 'b')):
        buffer.update(name, defer_check=True)  # no error yet
    with pytest.raises(ValueError, match='b: weight holds 1 NaN/Inf'):
        check_deferred_masks()
    assert buffers[1].version is None and not buffers[1].check_pending
    check_deferred_masks()  # the rest was finite
    assert not buffers[0].check_pending and buffers[0].version is not None


def test_update_makes_a_pending_check_first(mask_path):
    """A deferred check nothing has made (no optimizer step after the
    forward) is made by the buffer's next update, even of rewritten values
    (a message that says so); a check that is not deferred raises at once,
    as always."""
    weight = torch.randn(8, 16)
    weight[0, 1] = float('inf')
    buffer = MaskedWeightBuffer(weight, 2, 4)
    buffer.update('c', defer_check=True)
    weight[0, 1] = 1.0
    with pytest.raises(ValueError, match='c: weight held NaN/Inf values'):
        buffer.update('c')
    mask, _ = buffer.update('c')  # the weight is finite now
    assert torch.equal(mask, ref_mask(weight, 2, 4, 'channel'))
    weight[2, 3] = float('nan')
    with pytest.raises(ValueError, match='c: weight holds 1 NaN/Inf'):
        buffer.update('c')
