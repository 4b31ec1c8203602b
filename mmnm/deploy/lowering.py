"""Conv2d as a GEMM in the channel (KRSC) orientation of 2:4 groups.

The 2:4 groups of a conv weight ``(K, C, R, S)`` run over input channels at
each ``(k, r, s)``. The GEMM's reduction axis must therefore be ordered
``(r, s, c)`` with ``c`` fastest: the weight becomes ``(K, R*S*C)`` (KRSC)
and the input is read in NHWC. (``F.unfold`` on NCHW orders it ``(c, r, s)``
and would break every group.) A 1x1 stride-1 unpadded conv on NHWC needs no
im2col at all: its input matrix is ``(N*H*W, C)``, a view when the input is
channels_last.
"""
from typing import Callable, Tuple

import torch.nn.functional as F
from torch import Tensor

Pair = Tuple[int, int]


def krsc_matrix(weight: Tensor) -> Tensor:
    """``(K, C, R, S)`` conv weight as the ``(K, R*S*C)`` GEMM matrix."""
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)


def kcrs_weight(matrix: Tensor, in_channels: int, kernel_size: Pair) -> Tensor:
    """Inverse of :func:`krsc_matrix`."""
    return matrix.reshape(matrix.shape[0], *kernel_size,
                          in_channels).permute(0, 3, 1, 2)


def conv_output_size(size: Pair, kernel_size: Pair, stride: Pair,
                     padding: Pair, dilation: Pair) -> Pair:
    """Spatial output size of a Conv2d, as PyTorch computes it."""
    return tuple((size[i] + 2 * padding[i] - dilation[i] *
                  (kernel_size[i] - 1) - 1) // stride[i] + 1 for i in range(2))


def im2col_nhwc(x: Tensor,
                kernel_size: Pair,
                stride: Pair,
                padding: Pair,
                dilation: Pair,
                name: str = 'Conv2d') -> Tuple[Tensor, Pair]:
    """Patches of the NCHW tensor ``x`` as ``(N*Ho*Wo, R*S*C)`` rows with
    the reduction axis ordered ``(r, s, c)``, and ``(Ho, Wo)``.

    1x1 stride-1 unpadded convs take the NHWC input as is (no copy for a
    channels_last ``x``); others read the zero-padded NHWC input through
    one strided view and copy it once. Errors name the layer ``name``.
    """
    n, c, h, w = x.shape
    out_h, out_w = conv_output_size((h, w), kernel_size, stride, padding,
                                    dilation)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f'{name}: conv input {h}x{w} is too small for kernel '
                         f'{kernel_size}, dilation {dilation}, padding '
                         f'{padding}')
    nhwc = x.permute(0, 2, 3, 1)
    if kernel_size == (1, 1) and stride == (1, 1) and padding == (0, 0):
        return nhwc.reshape(n * h * w, c), (h, w)
    if padding != (0, 0):
        nhwc = F.pad(nhwc,
                     (0, 0, padding[1], padding[1], padding[0], padding[0]))
    nhwc = nhwc.contiguous()
    s_n, s_h, s_w, s_c = nhwc.stride()
    patches = nhwc.as_strided(
        (n, out_h, out_w, kernel_size[0], kernel_size[1], c),
        (s_n, s_h * stride[0], s_w * stride[1], s_h * dilation[0],
         s_w * dilation[1], s_c))
    return patches.reshape(n * out_h * out_w, -1), (out_h, out_w)


def conv2d_as_gemm(x: Tensor,
                   gemm: Callable[[Tensor], Tensor],
                   kernel_size: Pair,
                   stride: Pair,
                   padding: Pair,
                   dilation: Pair,
                   name: str = 'Conv2d') -> Tensor:
    """A Conv2d (groups=1, zero padding) of NCHW ``x`` through ``gemm``,
    which maps ``(rows, R*S*C)`` patches to ``(rows, K)`` outputs (the
    patches times the KRSC weight matrix transposed, plus bias).

    The result is NCHW with channels_last memory (no copy back to NCHW).
    ``gemm`` should return a row-major matrix (as
    :func:`~mmnm.deploy.gemm.sparse24_linear` does); another layout is
    copied into one. Errors name the layer ``name``.
    """
    if x.dim() != 4:
        raise ValueError(f'{name}: Conv2d lowering needs an NCHW input, got '
                         f'shape {tuple(x.shape)}')
    cols, (out_h, out_w) = im2col_nhwc(x, kernel_size, stride, padding,
                                       dilation, name)
    y = gemm(cols).contiguous()  # a no-op for a row-major result
    return y.view(x.shape[0], out_h, out_w, y.shape[1]).permute(0, 3, 1, 2)
