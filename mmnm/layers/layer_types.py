"""The one table of layer types that mmnm converts: plain convolutions and
linear layers, by kind, and the N:M sparse layer of each kind."""
from typing import Dict, Optional, Type

from mmcv.cnn.bricks import wrappers as mmcv_wrappers
from torch import nn

from .sparse_conv import SparseConv
from .sparse_layer import NMSparseMixin
from .sparse_linear import SparseLinear

#: Types whose forward is exactly ``F.conv2d`` / ``F.linear`` of their
#: weight, by kind: PyTorch's and mmcv's wrappers (which differ from
#: PyTorch's only for empty inputs on PyTorch < 1.5, below our minimum).
#: Matched by exact type: subclasses (weight standardised convs, ...) change
#: the forward and stay dense.
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
    kind = PLAIN_LAYER_KINDS.get(type(module))
    return None if kind is None else SPARSE_LAYERS[kind]
