"""What the deploy tests share: random 2:4 weights made without mmnm, and
the independent rule for which layers the 2:4 kernels take."""
import torch
from torch import nn

from mmnm.utils import relative_error  # noqa: F401 (the tests import it here)


def random_24_weight(shape, seed: int = 0) -> torch.Tensor:
    """Random Conv2d ``(K, C, R, S)`` or Linear ``(out, in)`` weight with
    exactly 2 non-zeros in every group of 4 consecutive input channels at
    each ``(k, r, s)``, at random positions."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(shape, generator=gen)
    channels_last = weight.movedim(1, -1)  # (K, R, S, C) or (out, in)
    groups = channels_last.reshape(-1, 4)
    order = torch.rand(groups.shape, generator=gen).argsort(1)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, order[:, :2], True)
    mask = keep.reshape(channels_last.shape).movedim(-1, 1)
    return weight * mask


def kernel_eligible(module: nn.Module) -> bool:
    """A plain Conv2d/Linear the 2:4 kernels can take by shape: ungrouped,
    input channels divisible by 4, out % 32 == 0, GEMM K % 64 == 0."""
    if type(module) not in (nn.Conv2d, nn.Linear):
        return False
    if getattr(module, 'groups', 1) != 1:
        return False
    weight = module.weight
    k = weight[0].numel()
    return weight.shape[1] % 4 == 0 and weight.shape[0] % 32 == 0 and \
        k % 64 == 0
