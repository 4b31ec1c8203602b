// CPU kernel of the SR-STE gradient term.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <type_traits>

#include "cpu_isa.h"

namespace mmnm {

namespace {

// g[i] += lam * (1 - keep[i]) * w[i] for i in [begin, end): a product, not
// a branch; the vector versions round exactly as this loop does.
template <typename scalar_t>
void sr_ste_add_range(scalar_t* g, const scalar_t* w, const bool* keep,
                      at::opmath_type<scalar_t> lam, int64_t begin,
                      int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t i = begin; i < end; ++i) {
    const acc_t pruned = static_cast<acc_t>(1 - keep[i]);
    g[i] = static_cast<scalar_t>(static_cast<acc_t>(g[i]) +
                                 lam * pruned * static_cast<acc_t>(w[i]));
  }
}

#if defined(MMNM_HAVE_AVX2)
// Eight floats per step: the factor is lam where the byte of keep is 0.
MMNM_AVX2 void sr_ste_add_avx2(float* g, const float* w, const bool* keep,
                               float lam, int64_t begin, int64_t end) {
  const __m256 lam8 = _mm256_set1_ps(lam);
  const __m256i zero = _mm256_setzero_si256();
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256i kept = _mm256_cvtepu8_epi32(
        _mm_loadl_epi64(reinterpret_cast<const __m128i*>(keep + i)));
    const __m256 factor = _mm256_and_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(kept, zero)), lam8);
    const __m256 term = _mm256_mul_ps(factor, _mm256_loadu_ps(w + i));
    _mm256_storeu_ps(g + i, _mm256_add_ps(_mm256_loadu_ps(g + i), term));
  }
  sr_ste_add_range<float>(g, w, keep, lam, i, end);
}
#endif

// One thread's range, on the active instruction set.
template <typename scalar_t>
void sr_ste_add_block(scalar_t* g, const scalar_t* w, const bool* keep,
                      at::opmath_type<scalar_t> lam, int64_t begin,
                      int64_t end) {
#if defined(MMNM_HAVE_AVX2)
  if constexpr (std::is_same<scalar_t, float>::value) {
    if (active_cpu_isa() == CpuIsa::kAvx2) {
      sr_ste_add_avx2(g, w, keep, lam, begin, end);
      return;
    }
  }
#endif
  sr_ste_add_range<scalar_t>(g, w, keep, lam, begin, end);
}

}  // namespace

void sr_ste_add_cpu(at::Tensor& grad, const at::Tensor& weight,
                    const at::Tensor& mask, double lambda_w) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "sr_ste_add_cpu", [&] {
        scalar_t* g = grad.data_ptr<scalar_t>();
        const scalar_t* w = weight.data_ptr<scalar_t>();
        const bool* keep = mask.data_ptr<bool>();
        const auto lam = static_cast<at::opmath_type<scalar_t>>(lambda_w);
        at::parallel_for(0, grad.numel(), 32768, [&](int64_t begin,
                                                     int64_t end) {
          sr_ste_add_block<scalar_t>(g, w, keep, lam, begin, end);
        });
      });
}

}  // namespace mmnm
