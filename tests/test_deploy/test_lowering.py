"""Conv2d lowered to NHWC im2col + KRSC GEMM against F.conv2d and F.unfold:
the reduction axis is ordered (r, s, c) so that 2:4 groups of input
channels stay contiguous."""
import pytest
import torch
import torch.nn.functional as F
from deploy_helpers import random_24_weight

from mmnm.deploy import conv2d_as_gemm, im2col_nhwc, kcrs_weight, krsc_matrix

# (in, out, kernel, stride, padding, dilation, input HxW)
CASES = {
    '1x1': (64, 32, (1, 1), (1, 1), (0, 0), (1, 1), (6, 5)),
    '1x1_stride2': (64, 32, (1, 1), (2, 2), (0, 0), (1, 1), (7, 6)),
    '3x3_stride2_pad1': (64, 64, (3, 3), (2, 2), (1, 1), (1, 1), (9, 8)),
    '3x3_dilation2': (64, 32, (3, 3), (1, 1), (2, 2), (2, 2), (7, 7)),
    'non_square': (64, 32, (1, 3), (2, 1), (0, 1), (1, 2), (5, 9)),
    '7x7_stride2_pad3': (64, 32, (7, 7), (2, 2), (3, 3), (1, 1), (11, 13)),
}


def conv_args(case):
    cin, cout, kernel, stride, padding, dilation, size = CASES[case]
    x = torch.randn(2, cin, *size)
    weight = random_24_weight((cout, cin, *kernel), seed=1)
    return x, weight, dict(stride=stride, padding=padding, dilation=dilation)


@pytest.mark.parametrize('case', sorted(CASES))
def test_im2col_orders_the_reduction_r_s_c(case):
    """Each row of the patches equals F.unfold's column re-ordered from
    (c, r, s) to (r, s, c)."""
    x, weight, kw = conv_args(case)
    kernel = tuple(weight.shape[2:])
    cols, (out_h, out_w) = im2col_nhwc(x, kernel, kw['stride'], kw['padding'],
                                       kw['dilation'])
    unfolded = F.unfold(x, kernel, kw['dilation'], kw['padding'],
                        kw['stride'])  # (N, C*R*S, L), (c, r, s) order
    n, c = x.shape[:2]
    expected = unfolded.reshape(n, c, *kernel, -1).permute(0, 4, 2, 3, 1)
    assert cols.shape == (n * out_h * out_w, c * kernel[0] * kernel[1])
    assert torch.equal(cols, expected.reshape(cols.shape))


@pytest.mark.parametrize('case', sorted(CASES))
def test_conv_as_gemm_equals_conv2d(case):
    """Dense fp32 GEMM through the lowering equals F.conv2d, and the KRSC
    matrix keeps every 2:4 group in 4 consecutive GEMM columns."""
    x, weight, kw = conv_args(case)
    bias = torch.randn(weight.shape[0])
    matrix = krsc_matrix(weight)
    assert bool(((matrix.reshape(-1, 4) != 0).sum(1) == 2).all())
    y = conv2d_as_gemm(x, lambda cols: F.linear(cols, matrix, bias),
                       tuple(weight.shape[2:]), kw['stride'], kw['padding'],
                       kw['dilation'])
    expected = F.conv2d(x, weight, bias, **kw)
    assert y.shape == expected.shape
    assert torch.allclose(y, expected, atol=1e-4, rtol=1e-4)


def test_unfold_order_would_break_the_groups():
    """The reason for the NHWC lowering: a weight flattened in F.unfold's
    (c, r, s) order has groups of 4 that mix kernel taps."""
    weight = random_24_weight((32, 64, 3, 3), seed=2)
    crs = weight.reshape(32, -1)
    assert bool(((crs.reshape(-1, 4) != 0).sum(1) > 2).any())
    assert bool(((krsc_matrix(weight).reshape(-1, 4) != 0).sum(1) == 2).all())


def test_kcrs_inverts_krsc():
    weight = torch.randn(32, 16, 3, 5)
    assert torch.equal(kcrs_weight(krsc_matrix(weight), 16, (3, 5)), weight)


def test_pointwise_conv_needs_no_copy():
    """1x1 stride-1 on a channels_last input: the GEMM reads the input's
    own memory, and the output comes back channels_last."""
    x = torch.randn(2, 64, 5, 7).to(memory_format=torch.channels_last)
    cols, size = im2col_nhwc(x, (1, 1), (1, 1), (0, 0), (1, 1))
    assert size == (5, 7) and cols.data_ptr() == x.data_ptr()
    matrix = torch.randn(32, 64)
    y = conv2d_as_gemm(x, lambda c: c @ matrix.t(), (1, 1), (1, 1), (0, 0),
                       (1, 1))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y, F.conv2d(x, matrix[:, :, None, None]), atol=1e-4)


def test_too_small_input_is_an_error():
    with pytest.raises(ValueError, match='too small'):
        im2col_nhwc(torch.randn(1, 64, 2, 2), (3, 3), (1, 1), (0, 0), (1, 1))


def test_result_is_channels_last_for_a_transposed_gemm_result():
    """A GEMM returning a transposed view (as CUTLASS writes y^T) must not
    make the NCHW result CNHW-strided."""
    x, weight, kwargs = conv_args('3x3_stride2_pad1')
    matrix = krsc_matrix(weight)

    def transposed_gemm(cols):
        return (matrix @ cols.t()).t()  # (rows, out), column-major

    y = conv2d_as_gemm(x, transposed_gemm, (3, 3), **kwargs)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y, F.conv2d(x, weight, **kwargs), atol=1e-4)


def test_errors_name_the_layer():
    x, weight, kwargs = conv_args('1x1')
    with pytest.raises(ValueError, match='neck.conv: .*NCHW input'):
        conv2d_as_gemm(x[0], None, (1, 1), **kwargs, name='neck.conv')
    with pytest.raises(ValueError, match='neck.conv: conv input .*too small'):
        conv2d_as_gemm(x, None, (9, 9), **kwargs, name='neck.conv')
