// 2:4 compression into the CUTLASS sparse-GEMM layout, shared by the CPU
// and CUDA kernels. mmnm/ops/sparse24.py writes the same rules in PyTorch.
//
// A group is 4 consecutive entries of a row; its meta code idx0 | idx1 << 2
// gives the columns (idx0 < idx1) of the 2 entries kept in `values`. The
// codes of kGroupsPerWord consecutive groups fill one meta word, low bits
// first, and the (rows, words) word matrix is stored permuted (see
// sparse24_meta_offset). Elements are handled as raw bits, so float16 and
// bfloat16 share one instantiation and copies are bit-exact.
#ifndef MMNM_SPARSE24_UTILS_H
#define MMNM_SPARSE24_UTILS_H

#include <cstdint>

#include "host_device.h"

namespace mmnm {

// Layout of a weight whose elements have the raw type elem_t.
template <typename elem_t>
struct Sparse24Layout;

template <>
struct Sparse24Layout<uint16_t> {  // float16, bfloat16
  using meta_t = int16_t;
  static constexpr int kGroupsPerWord = 4;
  static constexpr int kInterleave = 4;
  static constexpr uint32_t kMagnitudeBits = 0x7FFF;  // -0.0 is a zero
};

template <>
struct Sparse24Layout<uint8_t> {  // int8
  using meta_t = int32_t;
  static constexpr int kGroupsPerWord = 8;
  static constexpr int kInterleave = 2;
  static constexpr uint32_t kMagnitudeBits = 0xFF;
};

// Calls fn with a value of the raw element type of a weight whose elements
// take element_size bytes (1: int8, 2: float16 and bfloat16).
template <typename Fn>
inline void dispatch_sparse24_elem(int64_t element_size, Fn&& fn) {
  if (element_size == 1) {
    fn(uint8_t());
  } else {
    fn(uint16_t());
  }
}

// Meta code of a group whose non-zero entries are the set bits of pattern.
// Two non-zeros: their columns. Fewer: the choice of torch's CUTLASS
// converter (a single non-zero at column 0 or 1 pairs with column 2, else
// columns 2 and 3). More (invalid, counted by the callers): the first two.
MMNM_HOST_DEVICE inline uint32_t sparse24_code(uint32_t pattern) {
  int first = -1;
  int second = -1;
  for (int j = 0; j < 4; ++j) {
    if ((pattern >> j) & 1u) {
      if (first < 0) {
        first = j;
      } else if (second < 0) {
        second = j;
      }
    }
  }
  if (second >= 0) return first | second << 2;
  if (first == 0 || first == 1) return first | 2 << 2;
  return 2 | 3 << 2;
}

// Flat offset in the stored meta of word (row, col) of the row-major
// (rows, words) word matrix: rows are permuted within blocks of
// 8 * interleave, row 8 * h + l (l < 8) going to slot l * interleave + h;
// the 2x2 tiles of (row pair, column pair) are transposed; and the matrix
// is stored as column pairs, each row-major (CUTLASS's
// ColumnMajorInterleaved<2>).
MMNM_HOST_DEVICE inline int64_t sparse24_meta_offset(int64_t row, int64_t col,
                                                     int64_t rows,
                                                     int interleave) {
  const int64_t block = 8 * interleave;
  int64_t r = row / block * block + (row % 8) * interleave + row % block / 8;
  int64_t c = col;
  const int64_t swap = (r ^ c) & 1;  // off the diagonal of its 2x2 tile
  r ^= swap;
  c ^= swap;
  return (c >> 1) * 2 * rows + 2 * r + (c & 1);
}

// The entry idx (0..3) of a group held in registers (no dynamic indexing,
// which would put the group in local memory on GPUs).
template <typename elem_t>
MMNM_HOST_DEVICE inline elem_t sparse24_pick(const elem_t (&group)[4],
                                             uint32_t idx) {
  elem_t out = group[0];
  for (int j = 1; j < 4; ++j) {
    out = idx == static_cast<uint32_t>(j) ? group[j] : out;
  }
  return out;
}

// Compresses the kGroupsPerWord groups of dense[0, 4 * kGroupsPerWord)
// into values[0, 2 * kGroupsPerWord) and returns their meta word. Adds the
// number of groups with more than 2 non-zeros to *num_bad.
template <typename elem_t>
MMNM_HOST_DEVICE inline typename Sparse24Layout<elem_t>::meta_t
sparse24_compress_word(const elem_t* dense, elem_t* values, int* num_bad) {
  using Layout = Sparse24Layout<elem_t>;
  uint32_t word = 0;
  for (int g = 0; g < Layout::kGroupsPerWord; ++g) {
    elem_t group[4];
    uint32_t pattern = 0;
    int nonzeros = 0;
    for (int j = 0; j < 4; ++j) {
      group[j] = dense[4 * g + j];
      const bool nonzero = (group[j] & Layout::kMagnitudeBits) != 0;
      pattern |= static_cast<uint32_t>(nonzero) << j;
      nonzeros += nonzero;
    }
    *num_bad += nonzeros > 2;
    const uint32_t code = sparse24_code(pattern);
    values[2 * g] = sparse24_pick(group, code & 3u);
    values[2 * g + 1] = sparse24_pick(group, code >> 2);
    word |= code << (4 * g);
  }
  // two's complement wrap of the top bit into the signed meta type
  return static_cast<typename Layout::meta_t>(word);
}

// Restores the kGroupsPerWord groups of one meta word into
// dense[0, 4 * kGroupsPerWord), zeros where nothing was kept. Returns the
// number of invalid codes (idx0 >= idx1).
template <typename elem_t>
MMNM_HOST_DEVICE inline int sparse24_decompress_word(
    typename Sparse24Layout<elem_t>::meta_t word, const elem_t* values,
    elem_t* dense) {
  using Layout = Sparse24Layout<elem_t>;
  const uint32_t codes = static_cast<uint32_t>(word);
  int num_bad = 0;
  for (int g = 0; g < Layout::kGroupsPerWord; ++g) {
    const uint32_t code = (codes >> (4 * g)) & 0xFu;
    const uint32_t idx0 = code & 3u;
    const uint32_t idx1 = code >> 2;
    num_bad += idx0 >= idx1;
    const elem_t first = values[2 * g];
    const elem_t second = values[2 * g + 1];
    for (int j = 0; j < 4; ++j) {
      const uint32_t col = static_cast<uint32_t>(j);
      dense[4 * g + j] =
          col == idx0 ? first : (col == idx1 ? second : elem_t(0));
    }
  }
  return num_bad;
}

}  // namespace mmnm

#endif  // MMNM_SPARSE24_UTILS_H
