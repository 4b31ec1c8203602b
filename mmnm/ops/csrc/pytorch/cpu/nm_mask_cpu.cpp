// CPU kernel of the N:M mask.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "../../common/nm_mask_utils.h"

namespace mmnm {

namespace {
// Runs select_group over every group of a contiguous (A, G, M, B) view.
template <typename scalar_t, int M>
bool nm_mask_cpu_impl(const scalar_t* w, bool* keep, scalar_t* masked,
                      int64_t rows, int64_t inner, int64_t n) {
  std::atomic<bool> finite{true};
  const int64_t grain = std::max<int64_t>(1, 4096 / (M * inner));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    bool ok = true;
    for (int64_t row = begin; row < end; ++row) {
      for (int64_t b = 0; b < inner; ++b) {
        const int64_t first = row * M * inner + b;
        ok &= select_group<scalar_t, at::opmath_type<scalar_t>, M>(
            w + first, keep + first, masked ? masked + first : nullptr, n,
            inner);
      }
    }
    if (!ok) finite = false;
  });
  return finite.load();
}
}  // namespace

// grouped: contiguous (A, G, M, B) view of a weight; groups run along dim 2.
void nm_mask_cpu(const at::Tensor& grouped, at::Tensor& keep,
                 const c10::optional<at::Tensor>& masked, int64_t n) {
  const int64_t rows = grouped.size(0) * grouped.size(1);
  const int64_t inner = grouped.size(3);
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grouped.scalar_type(), "nm_mask_cpu", [&] {
        const scalar_t* w = grouped.data_ptr<scalar_t>();
        scalar_t* out = masked ? masked->data_ptr<scalar_t>() : nullptr;
        const bool known = dispatch_group_size(grouped.size(2), [&](auto m) {
          finite = nm_mask_cpu_impl<scalar_t, decltype(m)::value>(
              w, keep.data_ptr<bool>(), out, rows, inner, n);
        });
        TORCH_CHECK(known, "nm_mask: no kernel for M=", grouped.size(2));
      });
  TORCH_CHECK(finite, "weight holds NaN/Inf values");
}

}  // namespace mmnm
