// CUDA kernels of 2:4 compression: one thread per meta word, the per-word
// code of csrc/common/sparse24_utils.h as on the CPU.
#ifndef MMNM_SPARSE24_CUDA_KERNEL_CUH
#define MMNM_SPARSE24_CUDA_KERNEL_CUH

#include "../sparse24_utils.h"
#include "common_cuda_helper.cuh"

namespace mmnm {

// dense (rows, words * 4 * kGroupsPerWord) -> values, permuted meta; adds
// the groups with more than 2 non-zeros to *num_bad.
template <typename elem_t>
__global__ void sparse24_compress_cuda_kernel(
    const elem_t* __restrict__ dense, elem_t* __restrict__ values,
    typename Sparse24Layout<elem_t>::meta_t* __restrict__ meta, int64_t rows,
    int64_t words, int* __restrict__ num_bad) {
  using Layout = Sparse24Layout<elem_t>;
  constexpr int kWordCols = 4 * Layout::kGroupsPerWord;
  MMNM_GRID_STRIDE_LOOP(item, rows * words) {
    const int64_t row = item / words;
    int bad = 0;
    meta[sparse24_meta_offset(row, item - row * words, rows,
                              Layout::kInterleave)] =
        sparse24_compress_word(dense + item * kWordCols,
                               values + item * (kWordCols / 2), &bad);
    if (bad) atomicAdd(num_bad, bad);  // only on invalid input
  }
}

// values, permuted meta -> dense; adds the invalid codes to *num_bad.
template <typename elem_t>
__global__ void sparse24_decompress_cuda_kernel(
    const elem_t* __restrict__ values,
    const typename Sparse24Layout<elem_t>::meta_t* __restrict__ meta,
    elem_t* __restrict__ dense, int64_t rows, int64_t words,
    int* __restrict__ num_bad) {
  using Layout = Sparse24Layout<elem_t>;
  constexpr int kWordCols = 4 * Layout::kGroupsPerWord;
  MMNM_GRID_STRIDE_LOOP(item, rows * words) {
    const int64_t row = item / words;
    const int bad = sparse24_decompress_word(
        meta[sparse24_meta_offset(row, item - row * words, rows,
                                  Layout::kInterleave)],
        values + item * (kWordCols / 2), dense + item * kWordCols);
    if (bad) atomicAdd(num_bad, bad);
  }
}

}  // namespace mmnm

#endif  // MMNM_SPARSE24_CUDA_KERNEL_CUH
