"""The tables of layer types that mmnm converts.

``PLAIN_LAYER_KINDS`` / ``SPARSE_LAYERS``: the types whose forward is
exactly ``conv2d`` / ``linear`` of their weight, by kind (what 2:4
inference lowers), and the N:M layer of each kind. ``SPARSE_COUNTERPARTS``:
every plain type that sparse training can take over, with its N:M layer.
All are matched by exact type: a subclass may change what the forward does
with the weight (weight standardisation, ...) and stays dense.
"""
from typing import Callable, Dict, Optional, Tuple, Type

from mmcv.cnn.bricks import conv_ws
from mmcv.cnn.bricks import wrappers as mmcv_wrappers
from torch import nn

from mmnm.registry import MODELS
from .sparse_attention import SparseMultiheadAttention
from .sparse_conv import SparseConv, SparseConvAdaptivePadding
from .sparse_layer import NMSparseMixin
from .sparse_linear import SparseLinear

#: The names of the N:M deformable convs (mmcv's DCN and DCNv2).
DEFORM_CONV_NAMES = ('SparseDeformConv2d', 'SparseDeformConv2dPack',
                     'SparseModulatedDeformConv2d',
                     'SparseModulatedDeformConv2dPack')


def _unavailable_layer(name: str, reason: str) -> Callable[..., nn.Module]:
    """What ``MODELS`` builds for ``type=name`` where the layer cannot
    exist: an error that says why, instead of "not in the registry"."""

    def build(*args, **kwargs) -> nn.Module:
        raise ImportError(f'{name}: {reason}')

    build.__name__ = name
    return build


#: Why the N:M deformable convs are missing, or ``None``.
DEFORM_CONVS_UNAVAILABLE: Optional[str] = None
try:
    from .sparse_deform_conv import SPARSE_DEFORM_CONVS
except ImportError as err:  # mmcv-lite: mmcv without its compiled ops
    SPARSE_DEFORM_CONVS: Tuple[Type[NMSparseMixin], ...] = ()
    DEFORM_CONVS_UNAVAILABLE = (
        f'the N:M deformable convs need mmcv\'s compiled ops, and '
        f'importing mmcv.ops failed ({err}); install the full mmcv (e.g. '
        f'"mim install mmcv"), not mmcv-lite')
    for _name in DEFORM_CONV_NAMES:
        MODELS.register_module(
            name=_name,
            module=_unavailable_layer(_name, DEFORM_CONVS_UNAVAILABLE))

#: Types whose forward is exactly ``F.conv2d`` / ``F.linear`` of their
#: weight, by kind: PyTorch's and mmcv's wrappers (which differ from
#: PyTorch's only for empty inputs on PyTorch < 1.5, below our minimum).
PLAIN_LAYER_KINDS: Dict[Type[nn.Module], str] = {
    nn.Conv2d: 'conv2d',
    mmcv_wrappers.Conv2d: 'conv2d',
    nn.Linear: 'linear',
    mmcv_wrappers.Linear: 'linear',
}

#: The N:M sparse layer of each kind.
SPARSE_LAYERS: Dict[str, Type[NMSparseMixin]] = {
    'conv2d': SparseConv,
    'linear': SparseLinear,
}

_SPECIAL_CONVS = (SparseConvAdaptivePadding, *SPARSE_DEFORM_CONVS)

#: Every plain type that sparse training replaces, and its N:M layer. The
#: output projection of ``nn.MultiheadAttention``
#: (``NonDynamicallyQuantizableLinear``) converts only together with its
#: attention (see :func:`weight_reader`).
SPARSE_COUNTERPARTS: Dict[Type[nn.Module], Type[NMSparseMixin]] = {
    **{
        plain: SPARSE_LAYERS[kind]
        for plain, kind in PLAIN_LAYER_KINDS.items()
    },
    nn.modules.linear.NonDynamicallyQuantizableLinear: SparseLinear,
    nn.MultiheadAttention: SparseMultiheadAttention,
    **{
        sparse.plain_type: sparse
        for sparse in _SPECIAL_CONVS
    },
}


def layer_kind(module: nn.Module) -> Optional[str]:
    """``'conv2d'`` or ``'linear'`` when ``module`` computes exactly that op
    of its (for N:M layers: masked) weight, else ``None``."""
    kind = PLAIN_LAYER_KINDS.get(type(module))
    if kind is not None:
        return kind
    return next((kind for kind, sparse_type in SPARSE_LAYERS.items()
                 if type(module) is sparse_type), None)


def sparse_counterpart(module: nn.Module) -> Optional[Type[NMSparseMixin]]:
    """The N:M sparse layer type that can take over the plain ``module``,
    or ``None`` (N:M layers themselves, other types)."""
    return SPARSE_COUNTERPARTS.get(type(module))


def weight_reader(module: nn.Module, parent: nn.Module) -> Optional[nn.Module]:
    """``parent`` when its forward reads ``module``'s weight directly
    instead of calling ``module`` (the ``out_proj`` of a multi-head
    attention), so that ``module`` computes nothing by itself; else
    ``None``."""
    if isinstance(parent, nn.MultiheadAttention) and \
            parent.out_proj is module:
        return parent
    return None


#: Why the weighted layer types that stay dense have no N:M counterpart
#: (checked in this order, by ``isinstance``).
_NO_COUNTERPART = (
    ((conv_ws.ConvWS2d, conv_ws.ConvAWS2d),
     'its forward standardises the weight per output channel, which would '
     'turn the zeros of a stored N:M weight non-zero in the stock model'),
    (nn.modules.conv._ConvTransposeNd,
     "a transposed conv's GEMM reduces over the weight's first dim (input "
     'channels); mmnm groups along the second'),
    (nn.Embedding, 'a lookup table, not a GEMM: N:M would save nothing'),
    ((nn.LayerNorm, nn.GroupNorm),
     "a normalisation's elementwise scale, not a GEMM weight"),
)


def no_counterpart_reason(module: nn.Module) -> str:
    """Why the weighted layer ``module`` has no N:M counterpart."""
    reason = next(
        (why for types, why in _NO_COUNTERPART if isinstance(module, types)),
        None)
    prefix = f'no sparse counterpart for {type(module).__name__}'
    return f'{prefix}: {reason}' if reason else prefix
