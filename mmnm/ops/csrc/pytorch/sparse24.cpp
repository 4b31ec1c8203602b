// Device dispatch and argument checks of the 2:4 compression ops.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <tuple>

#include "../common/sparse24_utils.h"

namespace mmnm {

void sparse24_compress_cpu(const at::Tensor& dense, at::Tensor& values,
                           at::Tensor& meta, at::Tensor& num_bad);
void sparse24_decompress_cpu(const at::Tensor& values, const at::Tensor& meta,
                             at::Tensor& dense, at::Tensor& num_bad);
#ifdef MMNM_WITH_CUDA
void sparse24_compress_cuda(const at::Tensor& dense, at::Tensor& values,
                            at::Tensor& meta, at::Tensor& num_bad);
void sparse24_decompress_cuda(const at::Tensor& values, const at::Tensor& meta,
                              at::Tensor& dense, at::Tensor& num_bad);
#endif

namespace {

struct LayoutInfo {
  at::ScalarType meta_dtype;
  int64_t groups_per_word;
  int64_t interleave;
};

// The layout of a weight dtype, as in csrc/common/sparse24_utils.h.
LayoutInfo layout_of(at::ScalarType dtype, const char* op) {
  TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 ||
                  dtype == at::kChar,
              op, ": supports float16, bfloat16 and int8, got ", dtype);
  LayoutInfo info;
  dispatch_sparse24_elem(at::elementSize(dtype), [&](auto elem) {
    using Layout = Sparse24Layout<decltype(elem)>;
    info = {sizeof(typename Layout::meta_t) == 2 ? at::kShort : at::kInt,
            Layout::kGroupsPerWord, Layout::kInterleave};
  });
  return info;
}

void check_shape(const LayoutInfo& info, int64_t rows, int64_t cols,
                 const char* op) {
  const int64_t row_multiple = 8 * info.interleave;
  const int64_t col_multiple = 8 * info.groups_per_word;
  TORCH_CHECK(rows > 0 && cols > 0 && rows % row_multiple == 0 &&
                  cols % col_multiple == 0,
              op, ": a (", rows, ", ", cols, ") dense shape needs rows % ",
              row_multiple, " == 0 and cols % ", col_multiple, " == 0");
}

template <typename CpuFn, typename CudaFn>
void on_device(const at::Tensor& tensor, const char* op, CpuFn cpu,
               CudaFn cuda) {
  if (tensor.is_cuda()) {
#ifdef MMNM_WITH_CUDA
    cuda();
#else
    TORCH_CHECK(false, op, ": mmnm._ext was built without CUDA");
#endif
  } else {
    TORCH_CHECK(tensor.device().is_cpu(), op, ": unsupported device ",
                tensor.device());
    cpu();
  }
}

}  // namespace

// (values, meta, num_bad) of a 2-D dense weight with at most 2 non-zeros
// per group of 4 columns; num_bad (0-dim int32, on the weight's device)
// counts the groups with more, whose extra entries are dropped.
std::tuple<at::Tensor, at::Tensor, at::Tensor> sparse24_compress(
    const at::Tensor& dense_in) {
  const char* op = "sparse24_compress";
  TORCH_CHECK(dense_in.dim() == 2, op, ": expected a 2-D tensor, got ",
              dense_in.dim(), " dims");
  const LayoutInfo info = layout_of(dense_in.scalar_type(), op);
  const int64_t rows = dense_in.size(0);
  const int64_t cols = dense_in.size(1);
  check_shape(info, rows, cols, op);
  const at::Tensor dense = dense_in.contiguous();
  at::Tensor values = at::empty({rows, cols / 2}, dense.options());
  at::Tensor meta = at::empty({rows, cols / (4 * info.groups_per_word)},
                              dense.options().dtype(info.meta_dtype));
  at::Tensor num_bad = at::zeros({}, dense.options().dtype(at::kInt));
  on_device(
      dense, op, [&] { sparse24_compress_cpu(dense, values, meta, num_bad); },
      [&] {
#ifdef MMNM_WITH_CUDA
        sparse24_compress_cuda(dense, values, meta, num_bad);
#endif
      });
  return {values, meta, num_bad};
}

// (dense, num_bad) of a (values, meta) pair; num_bad counts the invalid
// group codes (idx0 >= idx1).
std::tuple<at::Tensor, at::Tensor> sparse24_decompress(
    const at::Tensor& values_in, const at::Tensor& meta_in) {
  const char* op = "sparse24_decompress";
  TORCH_CHECK(values_in.dim() == 2 && meta_in.dim() == 2, op,
              ": values and meta must be 2-D");
  const LayoutInfo info = layout_of(values_in.scalar_type(), op);
  const int64_t rows = values_in.size(0);
  const int64_t cols = 2 * values_in.size(1);
  check_shape(info, rows, cols, op);
  const int64_t words = cols / (4 * info.groups_per_word);
  TORCH_CHECK(meta_in.scalar_type() == info.meta_dtype &&
                  meta_in.size(0) == rows && meta_in.size(1) == words,
              op, ": meta must be ", info.meta_dtype, " of shape (", rows,
              ", ", words, "), got ", meta_in.scalar_type(), " of shape ",
              meta_in.sizes());
  TORCH_CHECK(meta_in.device() == values_in.device(), op,
              ": values and meta on different devices");
  const at::Tensor values = values_in.contiguous();
  const at::Tensor meta = meta_in.contiguous();
  at::Tensor dense = at::empty({rows, cols}, values.options());
  at::Tensor num_bad = at::zeros({}, values.options().dtype(at::kInt));
  on_device(
      values, op,
      [&] { sparse24_decompress_cpu(values, meta, dense, num_bad); },
      [&] {
#ifdef MMNM_WITH_CUDA
        sparse24_decompress_cuda(values, meta, dense, num_bad);
#endif
      });
  return {dense, num_bad};
}

}  // namespace mmnm
