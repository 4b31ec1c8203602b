"""When may a weight have changed since its N:M mask was computed?

An N:M layer computes its mask (and masked weight) once and reuses it until
the weight may have changed, so that gradient accumulation computes one
mask per optimizer step and an evaluation one per layer, not one per batch.
A cached mask is reused only while the :func:`weight_stamp` it was computed
under still holds. The stamp changes when

- any ``torch.optim`` optimizer steps (plain, ``foreach`` and ``fused``
  implementations alike; fused ones do not bump the tensor's version),
  through a global step post-hook registered on import;
- the weight is written in place through the parameter (``copy_``,
  ``mul_``, ``load_state_dict``: its version counter), replaced
  (``load_state_dict(assign=True)``, a new ``Parameter``), re-allocated
  (``.data = t``, ``.to()``, ``.half()``), reshaped or re-strided;
- a NaN/Inf check that a training forward deferred to the optimizer step
  fails there (``NMSparseMixin.defer_finite_check``);
- :func:`invalidate_masks` is called: ``NMSparsityHook`` does so around
  every validation and test (EMA hooks swap weights through ``.data``
  there); it also invalidates, after every training iteration, the layers
  whose weight no optimizer updates (``invalidate_mask``: teachers and
  frozen stages, which hooks rewrite through ``.data``).

Loading a state dict invalidates the layers it loads into, and a restored
frozen mask its layer.

The SR-STE wrapper's fused SGD step is the one update that also brings the
new mask: its kernel computes the mask and masked weight of each weight it
writes, in the same pass, into a second buffer of the layer; after the
optimizer's step (which skips those weights) the layer takes them as the
cache of the weight's new version (``NMSparseMixin.take_mask_of_step``),
swapped in at the next forward (or just before it, when the wrapper's
``optim_context`` prepares the layers: ``NMSparseMixin.prepare_forward``).
A write of the weight in between (a new version) makes the next forward
compute the mask instead.

Writes through ``weight.data`` in place (``layer.weight.data.copy_(t)``)
bypass the version counter and cannot be seen; code that writes weights
that way between two forwards without an optimizer step in between must
call :func:`invalidate_masks` afterwards.
"""
from typing import Hashable, Tuple

import torch
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook

from mmnm.ops import register_check_failure_hook

_generation = 0


def invalidate_masks() -> None:
    """Make every N:M layer recompute its mask at its next forward."""
    global _generation
    _generation += 1


def _after_optimizer_step(optimizer, args, kwargs) -> None:
    invalidate_masks()


register_optimizer_step_post_hook(_after_optimizer_step)
# a deferred NaN/Inf check that failed: no cached mask is of finite weights
register_check_failure_hook(invalidate_masks)


def weight_stamp(weight: Tensor) -> Tuple[Hashable, ...]:
    """What a cached mask of ``weight`` depends on; equal stamps mean the
    weight cannot have changed (except through ``.data`` in place)."""
    # a mask made under torch.inference_mode() cannot serve autograd
    return (_generation, id(weight), weight._version, weight.data_ptr(),
            weight.dtype, weight.device, weight.shape, weight.stride(),
            torch.is_inference_mode_enabled())
