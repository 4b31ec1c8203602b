"""N:M sparse multi-head attention (``nn.MultiheadAttention``, which mmcv's
``MultiheadAttention`` and the DETR, ViT and Mask2Former families wrap).

The packed input projection ``in_proj_weight`` (``3E x E``: q, k and v
stacked) is a Linear weight: its groups run along the input features, the
GEMM's reduction. The output projection ``out_proj`` is a Linear layer of
its own, but ``nn.MultiheadAttention`` reads its weight directly instead of
calling it, so an N:M ``out_proj`` (a :class:`SparseLinear`) only takes
effect inside this layer, which masks both for the plain forward (training
and PyTorch's fused inference path alike).
"""
from contextlib import ExitStack, contextmanager
from typing import Iterator

from torch import Tensor, nn

from mmnm.registry import MODELS
from .sparse_layer import NMSparseMixin


@MODELS.register_module()
class SparseMultiheadAttention(NMSparseMixin, nn.MultiheadAttention):
    """``nn.MultiheadAttention`` with an N:M masked packed input projection
    (and output projection, when ``out_proj`` is a :class:`SparseLinear`).

    State_dict keys are those of ``nn.MultiheadAttention``
    (``in_proj_weight``, ``out_proj.weight``, ...). Only the packed layout
    (``kdim == vdim == embed_dim``) is supported.
    """

    plain_type = nn.MultiheadAttention
    weight_key = 'in_proj_weight'

    @property
    def weight(self) -> Tensor:
        """The masked parameter: the packed input projection."""
        return self.in_proj_weight

    @contextmanager
    def masked_parameters(self) -> Iterator:
        with ExitStack() as stack:
            stack.enter_context(super().masked_parameters())
            if isinstance(self.out_proj, NMSparseMixin):
                stack.enter_context(self.out_proj.masked_parameters())
            yield
