// CPU kernels of the SR-STE gradient term, alone and fused into an SGD step.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>

#include "cpu_isa.h"
#include "nm_mask_cpu.h"
#include "sr_ste_cpu.h"

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
// The term of eight floats, (lam * pruned) * w: the factor is lam where the
// byte of keep is 0, +0 where it is 1 (the scalar loop's product).
MMNM_AVX2 inline __m256 sr_ste_term8(const bool* keep, __m256 lam8,
                                     __m256 w8) {
  const __m256i kept = _mm256_cvtepu8_epi32(
      _mm_loadl_epi64(reinterpret_cast<const __m128i*>(keep)));
  const __m256 factor = _mm256_and_ps(
      _mm256_castsi256_ps(_mm256_cmpeq_epi32(kept, _mm256_setzero_si256())),
      lam8);
  return _mm256_mul_ps(factor, w8);
}

MMNM_AVX2 void sr_ste_add_avx2(float* g, const float* w, const bool* keep,
                               float lam, int64_t begin, int64_t end) {
  const __m256 lam8 = _mm256_set1_ps(lam);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 term = sr_ste_term8(keep + i, lam8, _mm256_loadu_ps(w + i));
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
    if (active_cpu_isa() >= CpuIsa::kAvx2) {
      sr_ste_add_avx2(g, w, keep, lam, begin, end);
      return;
    }
  }
#endif
  sr_ste_add_range<scalar_t>(g, w, keep, lam, begin, end);
}


// The SGD hyper-parameters of one step, in the kernel's arithmetic type.
template <typename acc_t>
struct SgdStep {
  acc_t lam, lr, momentum, damp_keep, weight_decay;
  bool nesterov, maximize, init_buffer;
};

// torch.optim.SGD's update of p[i] for i in [begin, end), on the gradient
// g[i] + lam * (1 - keep[i]) * p[i] (the SR-STE term), without writing the
// gradient: d = -d if maximize; d += wd * p; then with momentum
// buf = d (first step) or momentum * buf + (1 - dampening) * d, and
// d = d + momentum * buf (Nesterov) or buf; p -= lr * d. The products and
// sums stay in acc_t; the vector version rounds exactly as this loop does.
// The loop with the momentum branches fixed at compile time, so that the
// compiler vectorises it; the rest are loop-invariant locals (loads
// through s could alias the stores to p and buf).
template <typename scalar_t, bool kMomentum, bool kInit, bool kNesterov>
void sr_ste_sgd_loop(scalar_t* p, const scalar_t* g, const bool* keep,
                     scalar_t* buf, const SgdStep<at::opmath_type<scalar_t>>& s,
                     int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t lam = s.lam, lr = s.lr, momentum = s.momentum;
  const acc_t damp_keep = s.damp_keep, weight_decay = s.weight_decay;
  const bool maximize = s.maximize;
  for (int64_t i = begin; i < end; ++i) {
    const acc_t w = static_cast<acc_t>(p[i]);
    const acc_t pruned = static_cast<acc_t>(1 - keep[i]);
    acc_t d = static_cast<acc_t>(g[i]) + lam * pruned * w;
    if (maximize) d = -d;
    if (weight_decay != 0) d = d + weight_decay * w;
    if constexpr (kMomentum) {
      acc_t b = d;
      if constexpr (!kInit) {
        b = momentum * static_cast<acc_t>(buf[i]) + damp_keep * d;
      }
      buf[i] = static_cast<scalar_t>(b);
      if constexpr (kNesterov) {
        d = d + momentum * b;
      } else {
        d = b;
      }
    }
    p[i] = static_cast<scalar_t>(w - lr * d);
  }
}

template <typename scalar_t>
void sr_ste_sgd_range(scalar_t* p, const scalar_t* g, const bool* keep,
                      scalar_t* buf, const SgdStep<at::opmath_type<scalar_t>>& s,
                      int64_t begin, int64_t end) {
  if (s.momentum == 0) {
    sr_ste_sgd_loop<scalar_t, false, false, false>(p, g, keep, buf, s, begin,
                                                   end);
  } else if (s.init_buffer) {
    if (s.nesterov) {
      sr_ste_sgd_loop<scalar_t, true, true, true>(p, g, keep, buf, s, begin,
                                                  end);
    } else {
      sr_ste_sgd_loop<scalar_t, true, true, false>(p, g, keep, buf, s, begin,
                                                   end);
    }
  } else if (s.nesterov) {
    sr_ste_sgd_loop<scalar_t, true, false, true>(p, g, keep, buf, s, begin,
                                                 end);
  } else {
    sr_ste_sgd_loop<scalar_t, true, false, false>(p, g, keep, buf, s, begin,
                                                  end);
  }
}

#if defined(MMNM_HAVE_AVX2)
MMNM_AVX2 void sr_ste_sgd_avx2(float* p, const float* g, const bool* keep,
                               float* buf, const SgdStep<float>& s,
                               int64_t begin, int64_t end) {
  const __m256 lam8 = _mm256_set1_ps(s.lam), lr8 = _mm256_set1_ps(s.lr);
  const __m256 mom8 = _mm256_set1_ps(s.momentum);
  const __m256 damp8 = _mm256_set1_ps(s.damp_keep);
  const __m256 wd8 = _mm256_set1_ps(s.weight_decay);
  const __m256 sign8 = _mm256_set1_ps(-0.0f);
  int64_t i = begin;
  for (; i + 8 <= end; i += 8) {
    const __m256 w = _mm256_loadu_ps(p + i);
    __m256 d = _mm256_add_ps(_mm256_loadu_ps(g + i),
                             sr_ste_term8(keep + i, lam8, w));
    if (s.maximize) d = _mm256_xor_ps(d, sign8);
    if (s.weight_decay != 0) d = _mm256_add_ps(d, _mm256_mul_ps(wd8, w));
    if (s.momentum != 0) {
      const __m256 b =
          s.init_buffer
              ? d
              : _mm256_add_ps(_mm256_mul_ps(mom8, _mm256_loadu_ps(buf + i)),
                              _mm256_mul_ps(damp8, d));
      _mm256_storeu_ps(buf + i, b);
      d = s.nesterov ? _mm256_add_ps(d, _mm256_mul_ps(mom8, b)) : b;
    }
    _mm256_storeu_ps(p + i, _mm256_sub_ps(w, _mm256_mul_ps(lr8, d)));
  }
  sr_ste_sgd_range<float>(p, g, keep, buf, s, i, end);
}
#endif

template <typename scalar_t>
void sr_ste_sgd_block(scalar_t* p, const scalar_t* g, const bool* keep,
                      scalar_t* buf, const SgdStep<at::opmath_type<scalar_t>>& s,
                      int64_t begin, int64_t end) {
#if defined(MMNM_HAVE_AVX2)
  if constexpr (std::is_same<scalar_t, float>::value) {
    if (active_cpu_isa() >= CpuIsa::kAvx2) {
      sr_ste_sgd_avx2(p, g, keep, buf, s, begin, end);
      return;
    }
  }
#endif
  sr_ste_sgd_range<scalar_t>(p, g, keep, buf, s, begin, end);
}

// Copies `bytes` from src to dst, each whole 64-byte line of dst with
// non-temporal stores: written past the caches, without reading the line
// in first as a plain store does. The partial lines at dst's ends (which
// the neighbouring blocks write too) are plain copies. Before the values
// are read on another thread, the writer calls store_fence().
void stream_copy(void* dst, const void* src, size_t bytes) {
  char* out = static_cast<char*>(dst);
  const char* in = static_cast<const char*>(src);
  size_t done = 0;
#if defined(__SSE2__)
  const size_t misaligned = reinterpret_cast<uintptr_t>(out) % 64;
  done = std::min(bytes, misaligned == 0 ? 0 : 64 - misaligned);
  std::memcpy(out, in, done);
  for (; done + 64 <= bytes; done += 64) {
    for (int part = 0; part < 64; part += 16) {
      _mm_stream_si128(
          reinterpret_cast<__m128i*>(out + done + part),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + done + part)));
    }
  }
#endif
  std::memcpy(out + done, in + done, bytes - done);
}

// Orders this thread's non-temporal stores before its later stores (the
// end of a parallel region publishes them to the other threads).
inline void store_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
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

bool sr_ste_sgd_step_cpu(at::Tensor& param, const at::Tensor& grad,
                         const at::Tensor& mask, at::Tensor& momentum_buffer,
                         double lambda_w, double lr, double momentum,
                         double dampening, double weight_decay, bool nesterov,
                         bool maximize, bool init_buffer,
                         const NextMask* next) {
  std::atomic<bool> finite{true};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, param.scalar_type(), "sr_ste_sgd_step_cpu",
      [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const SgdStep<acc_t> s{static_cast<acc_t>(lambda_w),
                               static_cast<acc_t>(lr),
                               static_cast<acc_t>(momentum),
                               static_cast<acc_t>(1 - dampening),
                               static_cast<acc_t>(weight_decay),
                               nesterov,
                               maximize,
                               init_buffer};
        scalar_t* p = param.data_ptr<scalar_t>();
        const scalar_t* g = grad.data_ptr<scalar_t>();
        const bool* keep = mask.data_ptr<bool>();
        scalar_t* buf =
            momentum != 0 ? momentum_buffer.data_ptr<scalar_t>() : nullptr;
        if (next == nullptr) {
          at::parallel_for(0, param.numel(), 32768, [&](int64_t begin,
                                                        int64_t end) {
            sr_ste_sgd_block<scalar_t>(p, g, keep, buf, s, begin, end);
          });
          return;
        }
        // rows of the grouped view, stepped and then masked in blocks of
        // about 512 values, so that all that a block touches (the weight,
        // gradient, momentum and masked weight: 2 KB each in float32, and
        // both masks) stays in L1 between the step and the mask. Blocks of
        // 2048 values (36 KB in all) made the mask's part of ResNet-50's
        // step 6.5 ms instead of 4.3 on a 48 KB-L1 Xeon; 256 and 1024
        // were slower too. Each block reads its entries of the old mask
        // before writing the new one, so next->keep may be mask itself.
        // With next->stream, a block's mask and masked weight are computed
        // into a buffer of the thread (in L1) and streamed out from there.
        bool* next_keep = next->keep.data_ptr<bool>();
        scalar_t* next_masked = next->masked.data_ptr<scalar_t>();
        const int64_t row = next->m * next->inner;
        const int64_t block = std::max<int64_t>(1, 512 / row);
        const bool stream = next->stream;
        at::parallel_for(
            0, param.numel() / row, std::max<int64_t>(1, 32768 / row),
            [&](int64_t begin, int64_t end) {
              bool ok = true;
              std::unique_ptr<scalar_t[]> masked_block(
                  stream ? new scalar_t[block * row] : nullptr);
              std::unique_ptr<bool[]> keep_block(
                  stream ? new bool[block * row] : nullptr);
              for (int64_t first = begin; first < end; first += block) {
                const int64_t last = std::min(end, first + block);
                sr_ste_sgd_block<scalar_t>(p, g, keep, buf, s, first * row,
                                           last * row);
                // the block's rows, as rows 0 .. last - first from here
                const int64_t at = first * row;
                ok &= nm_mask_rows_cpu<scalar_t>(
                    p + at, stream ? keep_block.get() : next_keep + at,
                    stream ? masked_block.get() : next_masked + at, next->m,
                    next->n, next->inner, 0, last - first);
                if (stream) {
                  const int64_t count = (last - first) * row;
                  stream_copy(next_masked + at, masked_block.get(),
                              count * sizeof(scalar_t));
                  stream_copy(next_keep + at, keep_block.get(), count);
                }
              }
              if (stream) store_fence();
              if (!ok) finite = false;
            });
      });
  return finite.load();
}

}  // namespace mmnm
