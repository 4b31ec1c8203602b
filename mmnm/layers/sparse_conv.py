"""N:M sparse 2D convolution."""
from typing import Optional

from torch import Tensor, nn

from mmnm.registry import MODELS
from .sparse_layer import NMSparseMixin


@MODELS.register_module()
class SparseConv(NMSparseMixin, nn.Conv2d):
    """``nn.Conv2d`` whose forward uses an N:M masked weight.

    Built like ``nn.Conv2d`` plus ``n``, ``m`` and ``orientation``, so
    ``conv_cfg=dict(type='SparseConv', n=2, m=4)`` works wherever mmcv's
    ``build_conv_layer`` is used. Parameter names match ``nn.Conv2d``: dense
    checkpoints load into it and its checkpoints load into a dense conv.
    """

    plain_type = nn.Conv2d

    def __init__(self,
                 *args,
                 n: int = 2,
                 m: int = 4,
                 orientation: str = 'channel',
                 name: Optional[str] = None,
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_sparsity(n, m, orientation, name)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.ste_weight(), self.bias)
