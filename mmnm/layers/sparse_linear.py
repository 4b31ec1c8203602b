"""N:M sparse fully connected layer."""
from torch import nn

from mmnm.registry import MODELS
from .sparse_layer import NMSparseMixin


@MODELS.register_module()
class SparseLinear(NMSparseMixin, nn.Linear):
    """``nn.Linear`` (bias kept) whose forward uses an N:M masked weight;
    groups run along the input features. Built like ``nn.Linear`` plus
    ``n``, ``m``, ``orientation`` and ``name``."""

    plain_type = nn.Linear
