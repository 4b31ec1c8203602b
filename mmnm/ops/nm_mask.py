"""N:M magnitude masks: keep the N largest-magnitude weights of each group.

The weight is viewed as ``(out, groups, M, rest)`` so that each group lies
along dimension 2 (a view, no copy, in both orientations). The compiled
kernel (``mmnm._ext``) ranks each group in one pass over memory. The
pure-PyTorch fallback finds the N-th largest magnitude of every group with a
pruned Batcher selection network of element-wise min/max, compares against
it, and resolves the rare ties at that threshold in a second pass. Both keep
the lowest index among ties, so masks are deterministic, identical, and hold
exactly N entries per group.
"""
import functools
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from mmnm.pattern import NMPattern
from .ext_loader import ext_has_cuda, load_ext
from .layout import same_dense_layout

#: Group sizes M the compiled kernel is instantiated for
#: (``dispatch_group_size`` in csrc/common/nm_mask_utils.h).
EXT_GROUP_SIZES = frozenset((2, 3, 4, 5, 6, 8, 16, 32))

Comparator = Tuple[int, int, bool, bool]


def reduction_size(weight_shape: Sequence[int], orientation: str) -> int:
    """Length of the axis that N:M groups run along."""
    if len(weight_shape) < 2:
        raise ValueError('N:M masks need a weight with at least 2 dims, got '
                         f'shape {tuple(weight_shape)}')
    if orientation == 'channel':
        return int(weight_shape[1])
    return int(torch.Size(weight_shape[1:]).numel())


def group_view(weight: Tensor, m: int, orientation: str = 'channel') -> Tensor:
    """View ``weight`` as ``(out, groups, m, rest)``, one N:M group per
    ``[o, g, :, r]`` slice.

    ``'channel'``: for Conv2d ``(K, C, R, S)`` the groups are M consecutive
    input channels at each ``(k, r, s)``; for Linear ``(out, in)`` M
    consecutive inputs. ``'flat'``: M consecutive entries of the flattened
    ``(C, R, S)`` row. The result is a view whenever ``weight`` is
    contiguous.
    """
    size = reduction_size(weight.shape, orientation)
    if size % m:
        axis = 'input channels' if orientation == 'channel' else \
            'flattened row length'
        raise ValueError(f'reduction size {size} ({axis}) is not divisible '
                         f'by M={m}')
    # the kernel taps (1 for Linear) or nothing; explicit, not -1, which
    # an empty weight leaves undetermined
    rest = math.prod(weight.shape[2:]) if orientation == 'channel' else 1
    return weight.reshape(weight.shape[0], size // m, m, rest)


@functools.lru_cache(maxsize=None)
def _odd_even_merge_sort(size: int) -> Tuple[Tuple[int, int], ...]:
    """Comparators (i, j), i < j, of Batcher's odd-even merge sort; after
    them, wire i holds the i-th smallest input. Valid for any ``size``."""
    comparators = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        comparators.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(comparators)


@functools.lru_cache(maxsize=None)
def selection_network(size: int, rank: int) -> Tuple[Comparator, ...]:
    """The comparators of the sorting network that wire ``rank`` depends on.

    Each entry is ``(i, j, keep_min, keep_max)``: wire i takes the minimum
    and wire j the maximum, each only when a later comparator (or the output)
    reads it.
    """
    needed = {rank}
    kept: List[Comparator] = []
    for i, j in reversed(_odd_even_merge_sort(size)):
        need_min, need_max = i in needed, j in needed
        if need_min or need_max:
            kept.append((i, j, need_min, need_max))
            needed.update((i, j))
    return tuple(reversed(kept))


def _kth_smallest(wires: Sequence[Tensor], rank: int) -> Tensor:
    """Element-wise ``rank``-th smallest of equally shaped tensors."""
    wires = list(wires)
    for i, j, need_min, need_max in selection_network(len(wires), rank):
        low, high = wires[i], wires[j]
        if need_min:
            wires[i] = torch.minimum(low, high)
        if need_max:
            wires[j] = torch.maximum(low, high)
    return wires[rank]


def nm_mask(
        weight: Tensor,
        n: int,
        m: int,
        orientation: str = 'channel',
        name: Optional[str] = None,
        return_masked: bool = False,
        out: Optional[Tensor] = None) -> Union[Tensor, Tuple[Tensor, Tensor]]:
    """Boolean mask keeping the ``n`` largest-magnitude weights of every
    group of ``m`` (see :func:`group_view` for the groups); with
    ``return_masked`` also ``weight * mask``, computed in the same pass and
    written into ``out`` if given (a tensor of the weight's shape, dtype
    and device, contiguous or laid out as the weight, see below; reused
    so that no new memory is touched; its version is bumped, so a
    graph that saved it fails loudly instead of using the new values).

    Ties keep the lowest index. Runs the compiled kernel of ``mmnm._ext``
    where it applies, else :func:`nm_mask_torch`; both give identical
    masks. Where the groups lie next to each other in the weight's memory
    (see :func:`memory_group_view`: contiguous weights, and the channel
    groups of channels_last convs) the outputs have the weight's layout
    and ``out`` may have it too; elsewhere the groups are copied out and
    the outputs are contiguous. Raises ``ValueError`` (prefixed with
    ``name``) for an invalid pattern, a shape that cannot be grouped, or a
    weight holding NaN or Inf.
    """
    prefix = f'{name}: ' if name else ''
    grouped = _grouped_checked(weight, n, m, orientation, prefix)
    in_memory = memory_group_view(weight.detach(), m, orientation)
    if out is not None:
        if not return_masked or out.shape != weight.shape or \
                out.dtype != weight.dtype or out.device != weight.device \
                or not (out.is_contiguous() or in_memory is not None
                        and same_dense_layout(out, weight)):
            raise ValueError(f'{prefix}out must be a tensor of the weight\'s '
                             'shape, dtype and device, contiguous or laid out '
                             'as the weight, given with return_masked=True')
        if not same_dense_layout(out, weight):
            in_memory = None  # a contiguous out for a channels_last weight
    # the groups read in place, or copied out (then contiguous outputs)
    grouped = grouped.contiguous() if in_memory is None else in_memory
    keep = _empty_output(weight, in_memory is not None, torch.bool)
    masked = None
    if return_masked:
        masked = out if out is not None else _empty_output(
            weight, in_memory is not None)
    _select(
        grouped, n, return_masked, None if masked is None else _outputs_view(
            masked, grouped, m, orientation), weight, prefix,
        _outputs_view(keep, grouped, m, orientation))
    if out is not None:
        torch.autograd.graph.increment_version(out)
    return (keep, masked) if return_masked else keep


def _empty_output(weight: Tensor,
                  in_memory: bool,
                  dtype: Optional[torch.dtype] = None) -> Tensor:
    """A new tensor of the weight's shape for the mask (``dtype`` bool) or
    masked weight: laid out as the weight where its groups are read in
    place (``in_memory``), else contiguous like the copied-out groups."""
    dtype = weight.dtype if dtype is None else dtype
    if in_memory:
        return torch.empty_like(weight, dtype=dtype)
    return torch.empty(weight.shape, dtype=dtype, device=weight.device)


def _outputs_view(output: Tensor, grouped: Tensor, m: int,
                  orientation: str) -> Tensor:
    """``output`` (a tensor of the weight's shape) as the groups of
    ``grouped``: its memory group view where it has the weight's layout,
    else (contiguous, for copied-out groups) a plain view."""
    if output.is_contiguous():
        return output.view(grouped.shape)
    return memory_group_view(output, m, orientation)


def memory_group_view(weight: Tensor,
                      m: int,
                      orientation: str = 'channel') -> Optional[Tensor]:
    """The groups of :func:`group_view` as a contiguous ``(A, G, M, B)``
    view of ``weight``'s own memory, or ``None`` where its layout has none
    (the groups must then be copied out). For a contiguous weight that is
    :func:`group_view` itself; for a channels_last conv weight with
    ``'channel'`` groups, ``(K * R * S, C / M, M, 1)``: its input channels
    lie next to each other in memory. ``weight`` must be groupable (see
    :func:`group_view`)."""
    if weight.is_contiguous():
        return group_view(weight, m, orientation)
    if orientation == 'channel' and weight.dim() == 4 and \
            weight.is_contiguous(memory_format=torch.channels_last):
        out, channels, height, width = weight.shape
        return weight.permute(0, 2, 3, 1).view(out * height * width,
                                               channels // m, m, 1)
    return None


def _grouped_checked(weight: Tensor, n: int, m: int, orientation: str,
                     prefix: str) -> Tensor:
    """The grouped view of ``weight``; ``ValueError`` (prefixed) for an
    invalid pattern or a shape that cannot be grouped."""
    try:
        NMPattern(n, m, orientation)
        return group_view(weight.detach(), m, orientation)
    except (TypeError, ValueError) as err:
        raise type(err)(f'{prefix}{err}') from None


def _select(grouped: Tensor,
            n: int,
            return_masked: bool,
            grouped_out: Optional[Tensor],
            weight: Tensor,
            prefix: str,
            keep_out: Optional[Tensor] = None,
            non_finite_out: Optional[Tensor] = None) -> List[Tensor]:
    """``[keep]`` or ``[keep, masked]`` of a contiguous grouped view, from
    the compiled kernel where it applies, else from :func:`nm_mask_torch`;
    ``masked`` is written into ``grouped_out`` and ``keep`` into
    ``keep_out`` if given. A weight holding NaN or Inf raises, or with
    ``non_finite_out`` (an int32 scalar on its device) sets it to 1 (else
    0), without waiting for a GPU."""
    ext = load_ext()
    # (an empty weight takes the PyTorch path: its empty outputs may share
    # the weight's null data pointer, which the kernel would refuse)
    if ext is not None and grouped.shape[2] in EXT_GROUP_SIZES and \
            grouped.numel() and \
            (grouped.device.type == 'cpu' or ext_has_cuda(ext)):
        try:
            return ext.nm_mask_forward(grouped, n, return_masked, grouped_out,
                                       keep_out, non_finite_out)
        except RuntimeError as err:
            if 'NaN/Inf' not in str(err):
                raise
            raise _non_finite_error(weight, prefix) from None
    if non_finite_out is not None:
        if grouped.numel():
            non_finite_out.copy_(~torch.isfinite(grouped.abs().amax()))
        else:
            non_finite_out.zero_()
    elif grouped.numel() and not torch.isfinite(grouped.abs().amax()):
        raise _non_finite_error(weight, prefix)
    keep = nm_mask_torch(grouped, n)
    if keep_out is not None:
        keep = keep_out.copy_(keep)
    return [keep, torch.mul(grouped, keep, out=grouped_out)] \
        if return_masked else [keep]


class MaskedWeightBuffer:
    """The N:M mask and masked copy of one weight tensor, recomputed on
    request into the same two buffers (a new tensor of a weight's size
    costs more in page faults than the mask itself).

    The checks and views are made once, at construction, so that a
    training step's recomputation is one kernel call. :meth:`serves` says
    whether the buffer still fits a (possibly replaced) weight.

    Args:
        weight (Tensor): the weight (a parameter; only read).
        n (int): weights kept per group.
        m (int): the group size.
        orientation (str): the grouping (see :func:`group_view`).
        name (str, optional): the layer's name, prefixed to the errors of
            a pattern or shape that cannot be grouped.
        keep_layout (bool): give the mask and masked weight the weight's
            memory layout where its groups lie next to each other there
            (see :func:`memory_group_view`); ``False``: always contiguous
            outputs, for ops that take only contiguous weights (mmcv's
            deformable convs). Defaults to True.
    """

    def __init__(self,
                 weight: Tensor,
                 n: int,
                 m: int,
                 orientation: str = 'channel',
                 name: Optional[str] = None,
                 keep_layout: bool = True) -> None:
        prefix = f'{name}: ' if name else ''
        self.n, self.m, self.orientation = n, m, orientation
        self.weight = weight.detach()
        # what serves() compares (the detached tensor's never changes)
        self._layout = self._layout_of(self.weight)
        grouped = _grouped_checked(self.weight, n, m, orientation, prefix)
        #: the groups as a contiguous view of the weight's memory; where
        #: its layout has none (``None``), every update copies them out
        self.grouped = memory_group_view(self.weight, m, orientation) \
            if keep_layout or self.weight.is_contiguous() else None
        self._regroup = self.grouped is None
        # outputs in the weight's layout (channels_last stays so), or
        # contiguous ones viewed as the copied-out groups
        self.masked = _empty_output(self.weight, not self._regroup)
        self.mask = _empty_output(self.weight, not self._regroup, torch.bool)
        self._grouped_out = _outputs_view(self.masked, grouped, m, orientation)
        self._keep_out = _outputs_view(self.mask, grouped, m, orientation)
        self._inference = torch.is_inference_mode_enabled()
        #: whether a compiled kernel that writes the weight can also write
        #: this buffer's mask (see :meth:`kernel_outputs`)
        self.kernel_writable = load_ext() is not None and \
            self.weight.device.type == 'cpu' and not self._regroup and \
            m in EXT_GROUP_SIZES
        #: ``weight._version`` of the values whose N:M mask the buffer holds
        #: (``None``: not known to hold one, e.g. after a failed update)
        self.version: Optional[int] = None
        # a deferred NaN/Inf check: the kernel's flag (an int32 scalar on
        # the weight's device) and the error's prefix while it is pending
        self._non_finite: Optional[Tensor] = None
        self._check_prefix: Optional[str] = None
        self._kernel_outputs = None if not self.kernel_writable else (
            self.mask, self.masked, n, m, self.grouped.shape[3])

    def serves(self, weight: Tensor, pattern: Tuple[int, int, str]) -> bool:
        """Whether ``weight`` is the tensor this buffer was made for (same
        memory, shape, strides, dtype and device), ``pattern``
        ``(n, m, orientation)`` its pattern, and the inference mode the same
        (a buffer made under ``torch.inference_mode`` cannot serve
        autograd)."""
        return pattern == (self.n, self.m, self.orientation) and \
            self._layout_of(weight) == self._layout and \
            torch.is_inference_mode_enabled() == self._inference

    @staticmethod
    def _layout_of(weight: Tensor) -> tuple:
        """The memory, shape, strides, dtype and device of ``weight``."""
        return (weight.data_ptr(), weight.shape, weight.stride(), weight.dtype,
                weight.device)

    def update(self,
               name: Optional[str] = None,
               defer_check: bool = False) -> Tuple[Tensor, Tensor]:
        """``(mask, masked)`` of the weight's current values, both rewritten
        in place (the masked weight's version bumped, so that a graph
        holding the old values fails at backward); clone the mask to keep
        it past the next update. ``name`` prefixes the error for a weight
        holding NaN or Inf.

        That error needs the kernel's result, which on a GPU means waiting
        for it. With ``defer_check`` the update does not wait: the check
        is left pending, for :func:`check_deferred_masks` to make for all
        pending weights at once (or for :meth:`check_finite`, or this
        buffer's next update).
        """
        self.check_finite()  # a deferred check nothing has made yet
        grouped = group_view(self.weight, self.m, self.orientation) \
            .contiguous() if self._regroup else self.grouped
        prefix = f'{name}: ' if name else ''
        flag = None
        if defer_check:
            if self._non_finite is None or \
                    self._non_finite.device != self.weight.device:
                self._non_finite = torch.zeros((),
                                               dtype=torch.int32,
                                               device=self.weight.device)
            flag = self._non_finite
        self.version = None
        try:
            _select(grouped, self.n, True, self._grouped_out, self.weight,
                    prefix, self._keep_out, flag)
        finally:  # also after a partial write (a NaN weight raises)
            torch.autograd.graph.increment_version(self.masked)
        if defer_check:
            self._check_prefix = prefix
            _DEFERRED_CHECKS[id(self)] = self
        self.version = self.weight._version
        return self.mask, self.masked

    @property
    def check_pending(self) -> bool:
        """Whether the last :meth:`update` deferred its NaN/Inf check and
        nothing has made it yet."""
        return self._check_prefix is not None

    def check_finite(self) -> None:
        """Make the check the last :meth:`update` deferred (nothing if it
        made its own): raise ``ValueError``, prefixed with the name given
        there, if the weight held NaN or Inf. Reads the kernel's flag (on
        a GPU, waits for the kernel)."""
        prefix = self._check_prefix
        if prefix is None:
            return
        self._check_made()
        if self._non_finite.item():
            self.version = None  # holds no mask
            for hook in _CHECK_FAILURE_HOOKS:
                hook()
            raise _non_finite_error(self.weight, prefix)

    def _check_made(self) -> None:
        """The deferred check is no longer pending."""
        self._check_prefix = None
        _DEFERRED_CHECKS.pop(id(self), None)

    def apply(self, mask: Tensor) -> Tensor:
        """The masked weight under a given (frozen) ``mask``, rewritten in
        place."""
        self.version = None
        torch.mul(self.weight, mask, out=self.masked)
        return self.masked

    def kernel_outputs(self, weight: Tensor) -> Optional[tuple]:
        """The arguments with which a compiled kernel that has just written
        ``weight`` (the fused SR-STE SGD step) writes the mask and masked
        weight into this buffer, in the order of the kernel's last
        parameters: ``next_keep``, ``next_masked`` and the grouping ``n``,
        ``m``, ``inner``; ``None`` where it cannot (another tensor, or not
        :attr:`kernel_writable`). The kernel's caller reports back through
        :meth:`written_by_kernel`."""
        if self._kernel_outputs is None or \
                self._layout_of(weight) != self._layout:
            return None
        return self._kernel_outputs

    def written_by_kernel(self, finite: bool) -> None:
        """Record a kernel's write of :meth:`kernel_outputs`: the mask of
        the weight's current values if ``finite``, else of nothing (a NaN
        or Inf weight; the next :meth:`update` raises for it)."""
        torch.autograd.graph.increment_version(self.masked)
        self.version = self.weight._version if finite else None


#: The buffers whose last update left its NaN/Inf check pending, by id
#: (held until the check is made, so that none is lost).
_DEFERRED_CHECKS: Dict[int, 'MaskedWeightBuffer'] = {}
#: Called after a deferred check found NaN/Inf (see
#: :func:`register_check_failure_hook`).
_CHECK_FAILURE_HOOKS: List[Callable[[], None]] = []


def register_check_failure_hook(hook: Callable[[], None]) -> None:
    """Call ``hook()`` whenever a deferred NaN/Inf check fails. The N:M
    layers' mask caches (:mod:`mmnm.layers.weight_updates`) drop every
    mask then: none keeps serving a mask computed from NaN/Inf after the
    error (caught, say, by a loop that skips a bad batch), so the next
    forward computes it again, and the error comes again."""
    _CHECK_FAILURE_HOOKS.append(hook)


def check_deferred_masks() -> None:
    """Make every NaN/Inf check that :meth:`MaskedWeightBuffer.update`
    deferred (``defer_check``): raise ``ValueError``, naming the weight,
    for one that held NaN or Inf. One read of all the pending flags of a
    device, so on a GPU one wait for their kernels instead of one per
    weight."""
    buffers = list(_DEFERRED_CHECKS.values())
    if not buffers:
        return
    flags = {}
    for buffer in buffers:
        flags.setdefault(buffer._non_finite.device,
                         []).append(buffer._non_finite)
    if not any(bool(torch.stack(same).any()) for same in flags.values()):
        for buffer in buffers:  # all finite
            buffer._check_made()
        return
    for buffer in buffers:  # raises for the first that held NaN or Inf
        buffer.check_finite()


def _non_finite_error(weight: Tensor, prefix: str) -> ValueError:
    bad = int((~torch.isfinite(weight.detach())).sum())
    if not bad:  # a deferred check, of values rewritten since
        return ValueError(f'{prefix}weight held NaN/Inf values when its N:M '
                          'mask was last computed (it has been rewritten '
                          'since); that mask is meaningless')
    return ValueError(f'{prefix}weight holds {bad} NaN/Inf value(s); an N:M '
                      'mask of it would be meaningless')


def nm_mask_torch(grouped: Tensor, n: int) -> Tensor:
    """Pure-PyTorch mask of a finite ``(A, G, M, B)`` grouped view: the
    N-th largest magnitude of each group from a selection network, then a
    comparison against it."""
    m = grouped.shape[2]
    magnitude = grouped.abs()
    if magnitude.numel() == 0:
        return torch.ones_like(magnitude, dtype=torch.bool)
    threshold = _kth_smallest(magnitude.unbind(2), m - n).unsqueeze(2)
    keep = magnitude >= threshold
    if keep.sum() != n * keep.numel() // m:
        keep = _break_ties(magnitude, threshold, n)
    return keep


def _break_ties(magnitude: Tensor, threshold: Tensor, n: int) -> Tensor:
    """Keep everything above the threshold, then the lowest-index entries
    equal to it until each group holds ``n``."""
    above = magnitude > threshold
    tied = magnitude == threshold
    missing = n - above.sum(2, keepdim=True)
    return above | (tied & (tied.cumsum(2) <= missing))


def count_nm_violations(weight: Tensor,
                        n: int,
                        m: int,
                        orientation: str = 'channel') -> int:
    """Number of groups of ``weight`` holding more than ``n`` non-zeros."""
    nonzeros = group_view(weight.detach(), m, orientation).ne(0).sum(2)
    return int((nonzeros > n).sum())
