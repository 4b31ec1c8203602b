// CPU kernels of 2:4 compression (csrc/common/sparse24_utils.h).
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <atomic>

#include "../../common/sparse24_utils.h"

namespace mmnm {

namespace {

// Rows of at least ~16 KiB of dense weight per task.
int64_t row_grain(int64_t cols, int64_t element_size) {
  return std::max<int64_t>(1, 16384 / (cols * element_size));
}

// Calls word_fn(row, word) for every meta word of a (rows, words) meta
// matrix, rows split across threads; returns the sum of what it returns
// (the invalid groups or codes).
template <typename WordFn>
int64_t for_each_word(int64_t rows, int64_t words, int64_t grain,
                      const WordFn& word_fn) {
  std::atomic<int64_t> total{0};
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    int64_t bad = 0;
    for (int64_t row = begin; row < end; ++row) {
      for (int64_t word = 0; word < words; ++word) {
        bad += word_fn(row, word);
      }
    }
    total += bad;
  });
  return total.load();
}

}  // namespace

// dense: contiguous (rows, cols); values (rows, cols / 2) and meta
// (rows, words) preallocated. Writes the number of groups with more than 2
// non-zeros to num_bad (a 0-dim int32 tensor).
void sparse24_compress_cpu(const at::Tensor& dense, at::Tensor& values,
                           at::Tensor& meta, at::Tensor& num_bad) {
  const int64_t rows = dense.size(0);
  const int64_t words = meta.size(1);
  int64_t total = 0;
  dispatch_sparse24_elem(dense.element_size(), [&](auto elem) {
    using elem_t = decltype(elem);
    using Layout = Sparse24Layout<elem_t>;
    using meta_t = typename Layout::meta_t;
    constexpr int kWordCols = 4 * Layout::kGroupsPerWord;
    const auto* in = static_cast<const elem_t*>(dense.data_ptr());
    auto* out = static_cast<elem_t*>(values.data_ptr());
    auto* packed = static_cast<meta_t*>(meta.data_ptr());
    total = for_each_word(
        rows, words, row_grain(dense.size(1), dense.element_size()),
        [&](int64_t row, int64_t word) {
          const int64_t item = row * words + word;
          int bad = 0;
          packed[sparse24_meta_offset(row, word, rows, Layout::kInterleave)] =
              sparse24_compress_word(in + item * kWordCols,
                                     out + item * kWordCols / 2, &bad);
          return bad;
        });
  });
  num_bad.fill_(total);
}

// values (rows, cols / 2) and meta (rows, words) contiguous; dense
// (rows, cols) preallocated. Writes the number of invalid codes to num_bad.
void sparse24_decompress_cpu(const at::Tensor& values, const at::Tensor& meta,
                             at::Tensor& dense, at::Tensor& num_bad) {
  const int64_t rows = values.size(0);
  const int64_t words = meta.size(1);
  int64_t total = 0;
  dispatch_sparse24_elem(values.element_size(), [&](auto elem) {
    using elem_t = decltype(elem);
    using Layout = Sparse24Layout<elem_t>;
    using meta_t = typename Layout::meta_t;
    constexpr int kWordCols = 4 * Layout::kGroupsPerWord;
    const auto* in = static_cast<const elem_t*>(values.data_ptr());
    const auto* packed = static_cast<const meta_t*>(meta.data_ptr());
    auto* out = static_cast<elem_t*>(dense.data_ptr());
    total = for_each_word(
        rows, words, row_grain(dense.size(1), dense.element_size()),
        [&](int64_t row, int64_t word) {
          const int64_t item = row * words + word;
          return sparse24_decompress_word(
              packed[sparse24_meta_offset(row, word, rows,
                                          Layout::kInterleave)],
              in + item * kWordCols / 2, out + item * kWordCols);
        });
  });
  num_bad.fill_(total);
}

}  // namespace mmnm
