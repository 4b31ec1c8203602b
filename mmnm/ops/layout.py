"""Memory layouts that the compiled kernels can run over as flat memory."""
from torch import Tensor


def same_dense_layout(tensor: Tensor, ref: Tensor) -> bool:
    """Whether ``tensor`` lies in memory as ``ref`` does, without gaps or
    overlaps: both contiguous, or the same shape and strides over dense
    memory (both channels_last, say). An elementwise kernel can then run
    over the raw memory of both at once."""
    if tensor.shape != ref.shape:
        return False
    if tensor.is_contiguous() and ref.is_contiguous():
        return True
    if tensor.stride() != ref.stride():
        return False
    expected = 1  # strides of the non-trivial dims, smallest first
    for stride, size in sorted((stride, size)
                               for stride, size in zip(ref.stride(), ref.shape)
                               if size != 1):
        if stride != expected:
            return False
        expected *= size
    return True
