"""N:M sparse fully connected layer."""
from typing import Optional

import torch.nn.functional as F
from torch import Tensor, nn

from mmnm.registry import MODELS
from .sparse_layer import NMSparseMixin


@MODELS.register_module()
class SparseLinear(NMSparseMixin, nn.Linear):
    """``nn.Linear`` (bias kept) whose forward uses an N:M masked weight;
    groups run along the input features."""

    plain_type = nn.Linear

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 bias: bool = True,
                 n: int = 2,
                 m: int = 4,
                 orientation: str = 'channel',
                 name: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(in_features, out_features, bias, **kwargs)
        self.init_sparsity(n, m, orientation, name)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.ste_weight(), self.bias)
