"""2:4 compression (mmnm.ops.sparse24) against torch's CUTLASS converter,
the compiled kernels against the pure-PyTorch path, and input checks."""
import pytest
import torch
from torch.sparse._semi_structured_conversions import \
    sparse_semi_structured_from_dense_cutlass as reference_compress
from torch.sparse._semi_structured_conversions import \
    sparse_semi_structured_to_dense_cutlass as reference_decompress

from mmnm.ops import (compress_sparse24, compress_sparse24_torch,
                      decompress_sparse24, decompress_sparse24_torch, nm_mask,
                      nm_mask_torch)
from mmnm.ops.ext_loader import ext_has_cuda, load_ext
from mmnm.ops.nm_mask import group_view

DTYPES = [torch.float16, torch.bfloat16, torch.int8]
SHAPES = {
    torch.float16: [(32, 32), (64, 96), (96, 256)],
    torch.bfloat16: [(32, 64), (128, 160)],
    torch.int8: [(16, 64), (48, 128), (32, 320)],
}
ext = load_ext()
needs_ext = pytest.mark.skipif(ext is None, reason='mmnm._ext not built')
needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='no CUDA device')


def random_sparse24(shape, dtype, seed, max_nonzeros=2):
    """Random weight with 0..max_nonzeros non-zeros per group of 4 at
    random columns, -0.0 in some of the zeros, and every one of the 11
    valid non-zero patterns in its first row block."""
    gen = torch.Generator().manual_seed(seed)
    rows, cols = shape
    if dtype == torch.int8:
        dense = torch.randint(1, 128, shape, generator=gen)
        dense *= torch.randint(0, 2, shape, generator=gen) * 2 - 1
    else:
        dense = torch.randn(shape, generator=gen) + 0.1
    groups = dense.reshape(rows, cols // 4, 4)
    order = torch.rand(groups.shape, generator=gen).argsort(2)
    count = torch.randint(
        0, max_nonzeros + 1, (rows, cols // 4, 1), generator=gen)
    keep = torch.zeros_like(
        groups, dtype=torch.bool).scatter(2, order,
                                          torch.arange(4) < count)
    patterns = [p for p in range(16) if bin(p).count('1') <= max_nonzeros]
    for i, p in enumerate(patterns):  # all patterns, whatever the draw
        keep[i // (cols // 4), i % (cols // 4)] = torch.tensor(
            [bool(p >> j & 1) for j in range(4)])
    dense = (groups * keep).to(dtype)
    if dtype != torch.int8:
        negative_zero = (~keep) & (
            torch.rand(groups.shape, generator=gen) < 0.5)
        dense[negative_zero] = -0.0
    return dense.reshape(shape)


def bits(tensor):
    """The raw bits, so that -0.0 and 0.0 differ."""
    return tensor.view({1: torch.uint8, 2: torch.int16}[tensor.element_size()])


def ext_compress(dense, name='tensor'):
    values, meta, num_bad = ext.sparse24_compress(dense)
    assert int(num_bad) == 0
    return values, meta


def ext_decompress(values, meta, name='tensor'):
    dense, num_bad = ext.sparse24_decompress(values, meta)
    assert int(num_bad) == 0
    return dense


IMPLS = [
    pytest.param((compress_sparse24_torch, decompress_sparse24_torch),
                 id='torch'),
    pytest.param((compress_sparse24, decompress_sparse24), id='public'),
    pytest.param((ext_compress, ext_decompress), id='ext', marks=needs_ext),
]


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('dtype', DTYPES)
def test_bit_identical_to_torch_cutlass_converter(impl, dtype):
    compress, decompress = impl
    for seed, shape in enumerate(SHAPES[dtype]):
        dense = random_sparse24(shape, dtype, seed)
        values, meta = compress(dense)
        ref_values, ref_meta = reference_compress(dense)
        assert values.dtype == dtype and meta.dtype == ref_meta.dtype
        assert torch.equal(bits(values), bits(ref_values)), shape
        assert torch.equal(meta, ref_meta), shape
        restored = decompress(values, meta)
        assert torch.equal(
            bits(restored), bits(reference_decompress(values, meta))), shape
        # round trip up to the sign of zeros
        assert torch.equal(restored, dense), shape


@pytest.mark.parametrize('impl', IMPLS)
def test_values_are_the_nonzeros_in_column_order(impl):
    """An independent check of the values: with exactly 2 non-zeros per
    group, each row of values lists the row's non-zeros in order."""
    compress, _ = impl
    gen = torch.Generator().manual_seed(7)
    dense = torch.randn(32, 64, generator=gen).abs().add(1).half()
    mask = nm_mask_torch(group_view(dense.float(), 4, 'flat'), 2)
    dense = dense * mask.view(dense.shape)
    values, _ = compress(dense)
    assert torch.equal(values, dense[dense != 0].view(32, 32))


@pytest.mark.parametrize('impl', IMPLS)
def test_meta_word_layout_on_a_single_group(impl):
    """One non-trivial group: row 9, cols 4..7 = [0, a, 0, b] has code
    1 | 3 << 2 = 0b1101 in nibble 1 of logical word (9, 0); every other
    group is empty and codes (2, 3) = 0b1110. Row 9 = 8 * 1 + 1 moves to
    slot 1 * 4 + 1 = 5, which is odd, so the 2x2 transpose sends it to
    (4, 1): flat offset 0 * 64 + 2 * 4 + 1 = 9."""
    compress, decompress = impl
    dense = torch.zeros(32, 32, dtype=torch.float16)
    dense[9, 5], dense[9, 7] = 3, -2
    values, meta = compress(dense)
    empty = 0b1110 * 0x1111 - (1 << 16)  # four empty codes, as int16
    expected = torch.full((32 * 2, ), empty, dtype=torch.int16)
    expected[9] = (0b1110 | 0b1101 << 4 | 0b1110 << 8 | 0b1110 << 12) - \
        (1 << 16)
    assert torch.equal(meta.view(-1), expected)
    assert values[9, 2:4].tolist() == [3, -2]
    assert int(values.ne(0).sum()) == 2
    assert torch.equal(decompress(values, meta), dense)


@pytest.mark.parametrize('compress',
                         [compress_sparse24_torch, compress_sparse24])
def test_too_many_nonzeros_names_the_layer(compress):
    dense = random_sparse24((64, 64), torch.float16, 3, max_nonzeros=1)
    dense[5, 12:15] = 1  # 3 non-zeros
    dense[40, 0:4] = 2  # 4 non-zeros
    with pytest.raises(
            ValueError,
            match=r'backbone\.fc: 2 group\(s\).*more than 2 '
            r'non-zeros.*row 5, cols 12\.\.15, 3 non-zeros'):
        compress(dense, name='backbone.fc')
    # the torch converter would silently have dropped them
    reference_compress(dense)


@pytest.mark.parametrize('compress',
                         [compress_sparse24_torch, compress_sparse24])
def test_rejects_bad_dense_input(compress):
    with pytest.raises(ValueError, match='head: .*2-D'):
        compress(torch.zeros(32, 32, 1, dtype=torch.half), 'head')
    for shape, dtype in [((16, 32), torch.half), ((32, 48), torch.bfloat16),
                         ((8, 64), torch.int8), ((16, 96), torch.int8),
                         ((0, 32), torch.half)]:
        with pytest.raises(ValueError, match=r'head: shape .* does not fit'):
            compress(torch.zeros(shape, dtype=dtype), 'head')
    with pytest.raises(ValueError, match=r'rows % 32 == 0 and cols % 32'):
        compress(torch.zeros(16, 32, dtype=torch.half))
    with pytest.raises(ValueError, match=r'rows % 16 == 0 and cols % 64'):
        compress(torch.zeros(16, 96, dtype=torch.int8))
    for dtype in (torch.float32, torch.float64, torch.int32):
        with pytest.raises(ValueError, match=f'head: .*got {dtype}'):
            compress(torch.zeros(32, 32, dtype=dtype), 'head')


@pytest.mark.parametrize('decompress',
                         [decompress_sparse24_torch, decompress_sparse24])
def test_rejects_bad_meta(decompress):
    values, meta = compress_sparse24_torch(
        random_sparse24((32, 64), torch.float16, 5))
    with pytest.raises(ValueError, match=r'neck: .*int16 of shape \(32, 4\)'):
        decompress(values, meta.int(), 'neck')
    with pytest.raises(
            ValueError, match=r'neck: .*got torch.int16 of shape '
            r'\(32, 2\)'):
        decompress(values, meta[:, :2], 'neck')
    with pytest.raises(ValueError, match='neck: .*2-D'):
        decompress(values, meta.view(-1), 'neck')
    with pytest.raises(ValueError, match='neck: .*got torch.float32'):
        decompress(values.float(), meta, 'neck')
    with pytest.raises(ValueError, match='neck: .*rows % 32 == 0'):
        decompress(values[:16], meta[:16], 'neck')
    bad = meta.clone()
    bad.view(
        -1)[3] = 0b0110_0100_0101_0000  # codes (0, 0), (1, 1), (0, 1), (2, 1)
    with pytest.raises(ValueError, match='neck: 2:4 meta holds 3 invalid'):
        decompress(values, bad, 'neck')


@needs_ext
def test_ext_counts_bad_groups_and_codes():
    dense = torch.ones(32, 32, dtype=torch.bfloat16)
    dense[:, ::4] = 0  # 3 non-zeros in every group
    _, _, num_bad = ext.sparse24_compress(dense)
    assert int(num_bad) == 32 * 8
    values = torch.ones(32, 16, dtype=torch.bfloat16)
    _, num_bad = ext.sparse24_decompress(values,
                                         torch.zeros(32, 2, dtype=torch.int16))
    assert int(num_bad) == 32 * 8  # code 0: idx0 == idx1 == 0
    with pytest.raises(RuntimeError, match='sparse24'):
        ext.sparse24_compress(torch.zeros(32, 30, dtype=torch.half))


@needs_cuda
@pytest.mark.parametrize('dtype', DTYPES)
def test_cuda_compress_equals_cpu(dtype):
    dense = random_sparse24(SHAPES[dtype][-1], dtype, 11)
    values, meta = compress_sparse24(dense)
    for compress, decompress in [(compress_sparse24, decompress_sparse24),
                                 (compress_sparse24_torch,
                                  decompress_sparse24_torch)]:
        values_cuda, meta_cuda = compress(dense.cuda())
        assert values_cuda.is_cuda and meta_cuda.is_cuda
        assert torch.equal(bits(values_cuda.cpu()), bits(values))
        assert torch.equal(meta_cuda.cpu(), meta)
        assert torch.equal(decompress(values_cuda, meta_cuda).cpu(), dense)
    bad = dense.cuda()
    bad[3, 4:8] = 1
    with pytest.raises(ValueError, match='fc: 1 group.*row 3, cols 4..7'):
        compress_sparse24(bad, 'fc')


@needs_cuda
@pytest.mark.parametrize(
    'dtype', [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize('n,m', [(2, 4), (1, 4), (4, 8), (2, 16)])
def test_cuda_nm_mask_equals_cpu(dtype, n, m):
    gen = torch.Generator().manual_seed(n * 31 + m)
    for shape in [(64, 4 * m, 3, 3), (96, 8 * m), (7, m, 1, 1)]:
        weight = torch.randint(-3, 4, shape, generator=gen).to(dtype)  # ties
        weight += torch.randn(
            shape, generator=gen).to(dtype) * (
                torch.rand(shape, generator=gen) < 0.5)
        for orientation in ('channel', 'flat'):
            mask, masked = nm_mask(
                weight, n, m, orientation, return_masked=True)
            mask_cuda, masked_cuda = nm_mask(
                weight.cuda(), n, m, orientation, return_masked=True)
            assert torch.equal(mask_cuda.cpu(), mask)
            assert torch.equal(masked_cuda.cpu(), masked)


@needs_cuda
def test_cuda_nm_mask_reports_non_finite():
    weight = torch.randn(8, 16, device='cuda')
    weight[2, 5] = float('nan')
    with pytest.raises(ValueError, match='layer1: weight holds 1 NaN/Inf'):
        nm_mask(weight, 2, 4, name='layer1')


@needs_cuda
def test_ext_cuda_kernels_built():
    assert ext is not None and ext_has_cuda(ext), \
        'a CUDA device but mmnm._ext without CUDA kernels'
