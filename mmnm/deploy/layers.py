"""Inference layers holding a 2:4-compressed weight.

The compressed weight is two buffers, ``weight_values`` (``(out, K/2)``,
fp16/bf16) and ``weight_meta`` (int16, CUTLASS layout), so ``state_dict``
saves it; ``bias`` is a buffer of the same dtype. Inputs of another dtype
are cast to it and the output is cast back (except under autocast, where it
stays in the layer's dtype), so a converted layer can sit in an fp32 model;
run the model in the same dtype (``model.half()``) or under autocast to
avoid casts. Casting the model to fp32/fp64 (``model.float()``) is refused
by these layers with an error naming them.
"""
from typing import Callable, Dict, Optional, Tuple, Type, Union

import torch
from torch import Tensor, nn

from mmnm.layers import layer_args, layer_kind
from mmnm.ops import compress_sparse24, decompress_sparse24, sparse24_layout
from mmnm.registry import MODELS
from .eligibility import structure_ineligibility
from .gemm import KERNEL_DTYPES, Sparse24Cache, sparse24_linear
from .lowering import conv2d_as_gemm, kcrs_weight, krsc_matrix


def _pair(value: Union[int, Tuple[int, ...]]) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _autocast_on(x: Tensor) -> bool:
    try:
        return torch.is_autocast_enabled(x.device.type)
    except TypeError:  # PyTorch < 2.4: one flag per device type
        return torch.is_autocast_cpu_enabled() if x.device.type == 'cpu' \
            else torch.is_autocast_enabled()


def _restore_dtype(y: Tensor, x: Tensor) -> Tensor:
    """The output in the input's dtype, except under autocast, where it
    stays in the layer's dtype as an autocast conv/linear output would."""
    if y.dtype == x.dtype or _autocast_on(x):
        return y
    return y.to(x.dtype)


class Sparse24Mixin:
    """The compressed weight, its GEMM and the conversion check shared by
    :class:`Sparse24Linear` and :class:`Sparse24Conv2d`."""

    weight_values: Tensor
    weight_meta: Tensor
    bias: Optional[Tensor]

    def _init_compressed(self, out: int, k: int, bias: bool,
                         dtype: torch.dtype, name: Optional[str]) -> None:
        self.name = name
        if dtype not in KERNEL_DTYPES:
            raise ValueError(f'{self.describe()}: 2:4 inference layers hold '
                             f'fp16 or bf16 weights, got {dtype}')
        layout = sparse24_layout(dtype, self.describe())
        layout.check_shape((out, k), dtype, self.describe())
        # empty until loaded: all-zero meta is invalid, so a forward before
        # loading fails instead of returning zeros
        self.register_buffer('weight_values',
                             torch.zeros(out, k // 2, dtype=dtype))
        self.register_buffer(
            'weight_meta',
            torch.zeros(
                out,
                k // (4 * layout.groups_per_word),
                dtype=layout.meta_dtype))
        self.register_buffer('bias',
                             torch.zeros(out, dtype=dtype) if bias else None)
        self._cache = Sparse24Cache()

    def describe(self) -> str:
        """The layer's model name, or its type (for messages)."""
        return f'layer {self.name!r}' if self.name else type(self).__name__

    def _apply(self, fn: Callable, *args, **kwargs):
        """``nn.Module._apply`` (``.to()``, ``.cuda()``, ``.half()``, ...),
        refusing casts of the weight to a dtype the 2:4 kernels do not take
        (``model.float()``); the layer is left as it was then."""
        saved = dict(self._buffers)
        result = super()._apply(fn, *args, **kwargs)
        dtype = self.weight_values.dtype
        if dtype not in KERNEL_DTYPES:
            self._buffers.update(saved)
            raise TypeError(
                f'{self.describe()}: a 2:4 inference layer holds its weight '
                f'in fp16 or bf16, not {dtype}; cast the model with .half() '
                'or .bfloat16(), or keep it in fp32 and leave these layers as '
                'they are (they cast their inputs and outputs)')
        return result

    @torch.no_grad()
    def load_dense(self, matrix: Tensor, bias: Optional[Tensor]) -> None:
        """Compress the ``(out, K)`` GEMM matrix ``matrix`` (2:4 along K)
        into this layer; ``ValueError`` naming the layer if it is not."""
        dtype = self.weight_values.dtype
        values, meta = compress_sparse24(
            matrix.detach().to(self.weight_values.device, dtype),
            self.describe())
        self.weight_values.copy_(values)
        self.weight_meta.copy_(meta)
        if (bias is None) != (self.bias is None):
            raise ValueError(
                f'{self.describe()}: bias given/expected mismatch')
        if bias is not None:
            self.bias.copy_(bias.detach())

    @staticmethod
    def gemm_matrix(weight: Tensor) -> Tensor:
        """The ``(out, K)`` GEMM matrix of the layer's dense weight."""
        return weight

    def dense_matrix(self) -> Tensor:
        """The decompressed ``(out, K)`` GEMM matrix."""
        return decompress_sparse24(self.weight_values, self.weight_meta,
                                   self.describe())

    def gemm(self, x: Tensor) -> Tensor:
        """``x @ W^T + b`` for ``x`` ``(rows, K)`` of the layer's dtype."""
        return sparse24_linear(x, self.weight_values, self.weight_meta,
                               self.bias, self._cache, self.describe())

    @property
    def compressed_bytes(self) -> int:
        """Bytes of the compressed weight (values + meta)."""
        return self.weight_values.nbytes + self.weight_meta.nbytes

    @property
    def backend(self) -> Optional[str]:
        """The backend of the last forward (``'cusparselt'``,
        ``'cutlass'`` or ``'dense'``)."""
        return self._cache.last_backend

    @classmethod
    def empty_like(cls,
                   module: nn.Module,
                   dtype: torch.dtype,
                   name: Optional[str] = None) -> 'Sparse24Mixin':
        """An empty (unloaded) layer of ``dtype`` shaped like the dense
        ``module``, e.g. to load a compressed state_dict into."""
        return cls(**layer_args(module), dtype=dtype, name=name)

    @classmethod
    def compress(cls,
                 module: nn.Module,
                 dtype: torch.dtype = torch.float16,
                 weight: Optional[Tensor] = None,
                 name: Optional[str] = None) -> 'Sparse24Mixin':
        """A new layer holding the compressed weight of the dense ``module``
        (or ``weight``, e.g. an N:M layer's masked weight) and a copy of its
        bias; ``module`` is not changed. ``ValueError`` naming the layer if
        the 2:4 kernels cannot take it (the pattern is checked while
        compressing)."""
        weight = module.weight if weight is None else weight
        label = f'layer {name!r}' if name else type(module).__name__
        try:
            reason = structure_ineligibility(module)
            if reason is not None:
                raise ValueError(reason)
            layer = cls.empty_like(module, dtype, name)
            layer.to(weight.device).load_dense(
                cls.gemm_matrix(weight), module.bias)
        except ValueError as err:
            raise ValueError(f'{label} cannot be converted to 2:4 inference: '
                             f'{err}') from None
        return layer


@MODELS.register_module()
class Sparse24Linear(Sparse24Mixin, nn.Module):
    """``nn.Linear`` with a 2:4-compressed weight, for inference."""

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True,
                 dtype: torch.dtype = torch.float16,
                 name: Optional[str] = None) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self._init_compressed(out_features, in_features, bias, dtype, name)

    @property
    def weight(self) -> Tensor:
        """The decompressed weight (a copy, for inspection)."""
        return self.dense_matrix()

    def forward(self, x: Tensor) -> Tensor:
        dtype = self.weight_values.dtype
        y = self.gemm(x.reshape(-1, self.in_features).to(dtype))
        return _restore_dtype(y.reshape(*x.shape[:-1], self.out_features), x)

    def extra_repr(self) -> str:
        return (f'in_features={self.in_features}, '
                f'out_features={self.out_features}, '
                f'bias={self.bias is not None}, '
                f'dtype={self.weight_values.dtype}, 2:4')


@MODELS.register_module()
class Sparse24Conv2d(Sparse24Mixin, nn.Module):
    """``nn.Conv2d`` (groups=1, zero padding) with a 2:4-compressed KRSC
    weight, run as NHWC im2col + GEMM (see :mod:`mmnm.deploy.lowering`).

    The GEMM writes the output channels_last. By default it is copied to
    contiguous NCHW, because ops that read raw NCHW memory (mmcv's RoIAlign
    on the CPU, for one) would compute garbage from it; set
    ``channels_last_output`` (e.g. ``convert_to_sparse24(...,
    channels_last=True)``) where everything downstream handles
    channels_last, to save that copy.
    """

    #: keep the GEMM's channels_last output (no copy to contiguous NCHW)
    channels_last_output: bool = False

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: Union[int, Tuple[int, int]],
                 stride: Union[int, Tuple[int, int]] = 1,
                 padding: Union[int, Tuple[int, int]] = 0,
                 dilation: Union[int, Tuple[int, int]] = 1,
                 groups: int = 1,
                 bias: bool = True,
                 padding_mode: str = 'zeros',
                 dtype: torch.dtype = torch.float16,
                 name: Optional[str] = None) -> None:
        super().__init__()
        if groups != 1 or padding_mode != 'zeros':
            raise ValueError(
                f'{name or type(self).__name__}: 2:4 convs take groups=1 '
                f"and padding_mode='zeros', not {groups}, {padding_mode!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups, self.padding_mode = 1, 'zeros'
        k = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self._init_compressed(out_channels, k, bias, dtype, name)

    @staticmethod
    def gemm_matrix(weight: Tensor) -> Tensor:
        return krsc_matrix(weight)

    @property
    def weight(self) -> Tensor:
        """The decompressed ``(K, C, R, S)`` weight (a copy)."""
        return kcrs_weight(self.dense_matrix(), self.in_channels,
                           self.kernel_size)

    def forward(self, x: Tensor) -> Tensor:
        y = conv2d_as_gemm(
            x.to(self.weight_values.dtype), self.gemm, self.kernel_size,
            self.stride, self.padding, self.dilation, self.describe())
        if not self.channels_last_output:
            y = y.contiguous()
        return _restore_dtype(y, x)

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, '
                f'kernel_size={self.kernel_size}, stride={self.stride}, '
                f'padding={self.padding}, dilation={self.dilation}, '
                f'bias={self.bias is not None}, '
                f'dtype={self.weight_values.dtype}, 2:4')


#: The 2:4 inference layer of each layer kind (see
#: :func:`mmnm.layers.layer_kind`).
SPARSE24_LAYERS: Dict[str, Type[Sparse24Mixin]] = {
    'conv2d': Sparse24Conv2d,
    'linear': Sparse24Linear,
}


def sparse24_layer_type(module: nn.Module) -> Type[Sparse24Mixin]:
    """The 2:4 layer class for ``module`` (a plain or N:M Conv2d/Linear, see
    :data:`mmnm.layers.PLAIN_LAYER_KINDS`); ``ValueError`` otherwise."""
    kind = layer_kind(module)
    if kind is None:
        raise ValueError(f'{type(module).__name__}: no 2:4 inference '
                         'counterpart (only exact Conv2d/Linear forwards '
                         'are lowered)')
    return SPARSE24_LAYERS[kind]
