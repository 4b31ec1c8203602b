"""2:4 compression into the CUTLASS sparse-GEMM layout, and its inverse.

A 2-D ``dense`` weight ``(rows, cols)`` with at most 2 non-zeros in each
group of 4 consecutive columns is stored as ``values`` ``(rows, cols // 2)``
(the 2 kept entries of every group, in column order) plus ``meta``, one
4-bit code ``idx0 | idx1 << 2`` per group (the column of each kept entry
within its group, ``idx0 < idx1``), packed low bits first into int16 words
(int32 for int8 weights) and then permuted into the interleaved order the
CUTLASS sparse tensor-core kernels read (``ColumnMajorInterleaved<2>``). The
result is bit-identical to
``torch.sparse._semi_structured_conversions.sparse_semi_structured_from_dense_cutlass``
on every valid input; unlike it, a group with more than 2 non-zeros is an
error rather than silently dropped.

The compiled kernels of ``mmnm._ext`` (CPU and CUDA) run where loaded, the
pure-PyTorch functions below otherwise; both share the layout rules written
out in :class:`Sparse24Layout` (and ``csrc/common/sparse24_utils.h``).
"""
import functools
from typing import Dict, NamedTuple, Tuple

import torch
from torch import Tensor

from .ext_loader import ext_has_cuda, load_ext


class Sparse24Layout(NamedTuple):
    """How the metadata of one weight dtype is packed and permuted.

    ``groups_per_word`` 4-bit codes fill one ``meta_dtype`` word. Rows are
    permuted within blocks of ``8 * interleave`` rows: row ``8 * h + l``
    (``h < interleave``, ``l < 8``) of a block moves to slot
    ``l * interleave + h``. The words of each 2x2 tile of (permuted row pair,
    column pair) are then transposed, and the matrix is stored in column
    pairs: word ``(r, c)`` lands at flat offset
    ``(c // 2) * 2 * rows + 2 * r + c % 2``.
    """
    meta_dtype: torch.dtype
    groups_per_word: int
    interleave: int

    @property
    def row_multiple(self) -> int:
        """Rows must fill whole permutation blocks."""
        return 8 * self.interleave

    @property
    def col_multiple(self) -> int:
        """Columns must fill whole column pairs of meta words."""
        return 2 * 4 * self.groups_per_word

    def check_shape(self, shape: Tuple[int, ...], dtype: torch.dtype,
                    name: str) -> None:
        """``ValueError`` naming ``name`` unless a ``(rows, cols)`` matrix of
        ``shape`` fills whole row blocks and column pairs."""
        rows, cols = shape
        if rows % self.row_multiple or cols % self.col_multiple or \
                not rows or not cols:
            raise ValueError(
                f'{name}: shape {tuple(shape)} does not fit the 2:4 layout '
                f'of {dtype}, which needs rows % {self.row_multiple} == 0 '
                f'and cols % {self.col_multiple} == 0 (both > 0)')


SPARSE24_LAYOUTS: Dict[torch.dtype, Sparse24Layout] = {
    torch.float16: Sparse24Layout(torch.int16, 4, 4),
    torch.bfloat16: Sparse24Layout(torch.int16, 4, 4),
    torch.int8: Sparse24Layout(torch.int32, 8, 2),
}


def _code_table() -> Tuple[int, ...]:
    """Meta code of each of the 16 non-zero patterns of a group (bit j set
    when entry j is non-zero). Two non-zeros: their columns. Fewer: the
    choice of the CUTLASS converter in torch, i.e. a single non-zero at
    column 0 or 1 pairs with column 2, anything else with columns 2 and 3.
    More than two (invalid, reported): the first two."""
    table = []
    for pattern in range(16):
        cols = [j for j in range(4) if pattern >> j & 1]
        if len(cols) >= 2:
            idx0, idx1 = cols[:2]
        elif len(cols) == 1 and cols[0] < 2:
            idx0, idx1 = cols[0], 2
        else:
            idx0, idx1 = 2, 3
        table.append(idx0 | idx1 << 2)
    return tuple(table)


#: ``_CODES[pattern]``: the meta code of a group's non-zero pattern.
_CODES = _code_table()


def sparse24_layout(dtype: torch.dtype,
                    name: str = 'tensor') -> Sparse24Layout:
    """The layout of ``dtype``; ``ValueError`` naming ``name`` if none."""
    if dtype not in SPARSE24_LAYOUTS:
        supported = ', '.join(str(d) for d in SPARSE24_LAYOUTS)
        raise ValueError(f'{name}: 2:4 compression supports {supported}, '
                         f'got {dtype}')
    return SPARSE24_LAYOUTS[dtype]


def _check_dense(dense: Tensor, name: str) -> Sparse24Layout:
    if not isinstance(dense, Tensor):
        raise ValueError(f'{name}: expected a Tensor, got {type(dense)}')
    if dense.dim() != 2:
        raise ValueError(f'{name}: 2:4 compression needs a 2-D (rows, cols) '
                         f'tensor, got shape {tuple(dense.shape)}')
    layout = sparse24_layout(dense.dtype, name)
    layout.check_shape(dense.shape, dense.dtype, name)
    return layout


def _check_compressed(values: Tensor, meta: Tensor,
                      name: str) -> Sparse24Layout:
    for what, tensor in (('values', values), ('meta', meta)):
        if not isinstance(tensor, Tensor) or tensor.dim() != 2:
            shape = tuple(tensor.shape) if isinstance(tensor, Tensor) \
                else type(tensor)
            raise ValueError(f'{name}: 2:4 {what} must be a 2-D tensor, got '
                             f'{shape}')
    layout = sparse24_layout(values.dtype, name)
    rows, half_cols = values.shape
    if rows % layout.row_multiple or half_cols % (layout.col_multiple // 2) \
            or not values.numel():
        raise ValueError(
            f'{name}: 2:4 values of shape {tuple(values.shape)} do not fit '
            'the '
            f'layout of {values.dtype}, which needs rows % '
            f'{layout.row_multiple} == 0 and cols % '
            f'{layout.col_multiple // 2} == 0 (both > 0)')
    words = half_cols * 2 // (4 * layout.groups_per_word)
    if meta.dtype != layout.meta_dtype or tuple(meta.shape) != (rows, words):
        raise ValueError(
            f'{name}: 2:4 meta for {values.dtype} values of shape '
            f'{tuple(values.shape)} must be {layout.meta_dtype} of shape '
            f'{(rows, words)}, got {meta.dtype} of shape {tuple(meta.shape)}')
    if meta.device != values.device:
        raise ValueError(f'{name}: 2:4 values on {values.device} but meta on '
                         f'{meta.device}')
    return layout


def _too_dense_error(dense: Tensor, num_bad: int, name: str) -> ValueError:
    """The error for groups holding more than 2 non-zeros, with the first
    one found in row-major order."""
    counts = dense.detach().reshape(dense.shape[0], -1, 4).ne(0).sum(2)
    row, group = (int(i) for i in (counts > 2).nonzero()[0])
    return ValueError(
        f'{name}: {num_bad} group(s) of 4 along cols hold more than 2 '
        f'non-zeros, so the weight is not 2:4 sparse (first: row {row}, cols '
        f'{4 * group}..{4 * group + 3}, {int(counts[row, group])} non-zeros)')


def _bad_meta_error(num_bad: int, name: str) -> ValueError:
    return ValueError(f'{name}: 2:4 meta holds {num_bad} invalid group '
                      'code(s) (each needs idx0 < idx1)')


@functools.lru_cache(maxsize=64)
def _meta_offsets(rows: int, words: int, interleave: int,
                  device: torch.device) -> Tensor:
    """Flat offset in the permuted meta of each word of the row-major
    ``(rows, words)`` meta matrix (see :class:`Sparse24Layout`)."""
    row = torch.arange(rows, device=device).unsqueeze(1)
    col = torch.arange(words, device=device).unsqueeze(0)
    block = 8 * interleave
    row = row // block * block + row % 8 * interleave + row % block // 8
    swap = (row ^ col) & 1  # off-diagonal word of its 2x2 tile
    row, col = row ^ swap, col ^ swap
    return (col // 2 * 2 * rows + 2 * row + col % 2).reshape(-1)


def _to_signed(words: Tensor, bits: int) -> Tensor:
    """Unsigned ``bits``-bit words held in int64 as two's-complement."""
    return torch.where(words >= 1 << (bits - 1), words - (1 << bits), words)


def compress_sparse24_torch(dense: Tensor,
                            name: str = 'tensor') -> Tuple[Tensor, Tensor]:
    """Pure-PyTorch :func:`compress_sparse24`, for CPU and CUDA tensors."""
    layout = _check_dense(dense, name)
    dense = dense.detach()
    rows, cols = dense.shape
    groups = dense.reshape(rows, cols // 4, 4)
    nonzero = groups.ne(0)
    num_bad = int((nonzero.sum(2) > 2).sum())
    if num_bad:
        raise _too_dense_error(dense, num_bad, name)
    pattern = (
        nonzero.to(torch.int64) << torch.arange(4, device=dense.device)).sum(2)
    codes = torch.tensor(_CODES, device=dense.device)[pattern]
    index = torch.stack((codes & 3, codes >> 2), dim=2)
    values = groups.gather(2, index).reshape(rows, cols // 2)
    per_word = layout.groups_per_word
    shifts = 4 * torch.arange(per_word, device=dense.device)
    words = (codes.reshape(rows, -1, per_word) << shifts).sum(2)
    bits = 4 * per_word
    words = _to_signed(words, bits).to(layout.meta_dtype)
    meta = torch.empty_like(words)
    offsets = _meta_offsets(rows, words.shape[1], layout.interleave,
                            dense.device)
    meta.view(-1)[offsets] = words.reshape(-1)
    return values, meta


def decompress_sparse24_torch(values: Tensor,
                              meta: Tensor,
                              name: str = 'tensor') -> Tensor:
    """Pure-PyTorch :func:`decompress_sparse24`, for CPU and CUDA tensors."""
    layout = _check_compressed(values, meta, name)
    rows, half_cols = values.shape
    offsets = _meta_offsets(rows, meta.shape[1], layout.interleave,
                            meta.device)
    words = meta.reshape(-1)[offsets].to(torch.int64).reshape(rows, -1, 1)
    shifts = 4 * torch.arange(layout.groups_per_word, device=meta.device)
    codes = ((words >> shifts) & 0xF).reshape(rows, -1)
    index = torch.stack((codes & 3, codes >> 2), dim=2)
    num_bad = int((index[..., 0] >= index[..., 1]).sum())
    if num_bad:
        raise _bad_meta_error(num_bad, name)
    dense = values.new_zeros(rows, half_cols // 2, 4)
    dense.scatter_(2, index, values.reshape(rows, -1, 2))
    return dense.reshape(rows, 2 * half_cols)


def _use_ext(tensor: Tensor):
    ext = load_ext()
    if ext is None:
        return None
    if tensor.device.type == 'cpu' or \
            (tensor.device.type == 'cuda' and ext_has_cuda(ext)):
        return ext
    return None


def compress_sparse24(dense: Tensor,
                      name: str = 'tensor') -> Tuple[Tensor, Tensor]:
    """Compress a 2:4-sparse 2-D weight into CUTLASS ``(values, meta)``.

    ``dense`` is ``(rows, cols)`` float16, bfloat16 or int8, with at most 2
    non-zeros (``-0.0`` counts as zero) in each group of 4 consecutive
    columns; rows must be a multiple of 32 (16 for int8) and cols of 32 (64
    for int8). Returns ``values`` ``(rows, cols // 2)`` of ``dense.dtype``
    and ``meta`` ``(rows, cols // 16)`` int16 (``(rows, cols // 32)`` int32
    for int8), bit-identical to torch's CUTLASS converter. Groups with fewer
    than 2 non-zeros store zeros picked as that converter does. Raises
    ``ValueError`` naming ``name`` for anything else. Note that torch's
    CUTLASS GEMMs further need cols to be a multiple of 64 (128 for int8).
    """
    ext = _use_ext(dense) if isinstance(dense, Tensor) else None
    if ext is None:
        return compress_sparse24_torch(dense, name)
    _check_dense(dense, name)
    values, meta, num_bad = ext.sparse24_compress(dense.detach().contiguous())
    num_bad = int(num_bad)
    if num_bad:
        raise _too_dense_error(dense, num_bad, name)
    return values, meta


def decompress_sparse24(values: Tensor,
                        meta: Tensor,
                        name: str = 'tensor') -> Tensor:
    """The dense ``(rows, 2 * values.shape[1])`` weight of a CUTLASS 2:4
    ``(values, meta)`` pair: the inverse of :func:`compress_sparse24`, with
    zeros where nothing was kept. Raises ``ValueError`` naming ``name`` for
    a dtype, shape or device mismatch or an invalid group code in ``meta``.
    """
    ext = _use_ext(values) if isinstance(values, Tensor) else None
    if ext is None:
        return decompress_sparse24_torch(values, meta, name)
    _check_compressed(values, meta, name)
    dense, num_bad = ext.sparse24_decompress(values.detach().contiguous(),
                                             meta.contiguous())
    num_bad = int(num_bad)
    if num_bad:
        raise _bad_meta_error(num_bad, name)
    return dense
