"""N:M masks computed independently of mmnm's kernels, and a recorder that
checks every forward of a model's sparse layers against them."""
import collections

import torch
import torch.nn.functional as F
from torch import nn

from mmnm.layers import NMSparseMixin, SparseConv
from mmnm.ops import ext_available

#: Whether the fused SR-STE SGD step computes each next mask with the
#: weight's update (its compiled kernel) rather than the next forward: the
#: mask counts then include the first forward's and every step's, also a
#: step whose mask no forward uses (the last one, one before validation).
STEP_COMPUTES_MASKS = ext_available()


def reference_mask(weight: torch.Tensor,
                   n: int = 2,
                   m: int = 4) -> torch.Tensor:
    """Top-``n`` |w| of every ``m`` consecutive input channels at each
    kernel tap (Linear: inputs), ties to the lowest index (a stable sort of
    -|w|)."""
    w = weight.detach().float().movedim(1, -1)
    groups = w.reshape(-1, m).abs()
    order = torch.sort(-groups, dim=1, stable=True).indices[:, :n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order, True)
    return keep.view(w.shape).movedim(-1, 1).contiguous()


def plain_forward(layer: NMSparseMixin, x: torch.Tensor,
                  weight: torch.Tensor) -> torch.Tensor:
    """What the plain conv / linear layer computes with ``weight``."""
    if isinstance(layer, SparseConv):
        return nn.Conv2d._conv_forward(layer, x, weight, layer.bias)
    return F.linear(x, weight, layer.bias)


class ForwardRecorder:
    """Checks every forward of the sparse layers of ``model``: its mask is
    the reference mask of the weight it ran on (or the frozen mask), its
    output the plain layer's with the masked weight. ``records`` holds
    ``(layer name, training?, mask)`` per forward."""

    def __init__(self, model: nn.Module) -> None:
        self.records = []
        for module in model.modules():
            if isinstance(module, NMSparseMixin):
                module.register_forward_hook(self._check)

    def _check(self, layer, args, output) -> None:
        weight = layer.weight.detach()
        if not layer.sparse_enabled:
            assert layer.mask is None
            expected = weight
        else:
            nm = layer.nm
            want = layer.mask if layer.mask_frozen else \
                reference_mask(weight, nm.n, nm.m)
            assert torch.equal(layer.mask, want), \
                f'{layer.describe()}: forward ran on a stale mask'
            expected = weight * want
        torch.testing.assert_close(output.detach(),
                                   plain_forward(layer, args[0], expected))
        self.records.append(
            (layer.nm_name, layer.training,
             None if layer.mask is None else layer.mask.clone()))


def count_mask_computations(monkeypatch) -> collections.Counter:
    """Counts, by layer name, the masks the sparse layers compute: their
    forwards' (``MaskedWeightBuffer.update``), ``mask_for``'s and those an
    SR-STE SGD step computed with the weight's update (counted when the
    layer takes them: ``take_mask_of_step``)."""
    import mmnm.layers.sparse_layer as sparse_layer
    from mmnm.ops import MaskedWeightBuffer
    calls = collections.Counter()
    compute, update = sparse_layer.nm_mask, MaskedWeightBuffer.update
    take = sparse_layer.NMSparseMixin.take_mask_of_step

    def counting_take(layer):
        taken = take(layer)
        calls[layer.describe()] += taken
        return taken

    def counting(weight, n, m, orientation, name=None, *args):
        calls[name] += 1
        return compute(weight, n, m, orientation, name, *args)

    def counting_update(buffer, name=None, *args):
        calls[name] += 1
        return update(buffer, name, *args)

    monkeypatch.setattr(sparse_layer, 'nm_mask', counting)
    monkeypatch.setattr(MaskedWeightBuffer, 'update', counting_update)
    monkeypatch.setattr(sparse_layer.NMSparseMixin, 'take_mask_of_step',
                        counting_take)
    return calls
