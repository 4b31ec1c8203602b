// CPU kernel of the N:M mask.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>

#include "../../common/nm_mask_utils.h"
#include "cpu_isa.h"
#include "nm_mask_cpu.h"

namespace mmnm {

namespace {

#if defined(__SSE2__)
// 2:4-style groups of M = 4 floats, four groups per SSE2 instruction; the
// same ranking as select_group (pairwise, the lower index wins ties).
struct Rank4 {
  __m128i keep[4];  // all-ones where kept, per entry j
  bool finite;
};

// a[j]: entry j of four groups. Returns the keep masks of the entries.
inline Rank4 rank4(const __m128 (&a)[4], int64_t n) {
  const __m128 zero = _mm_setzero_ps();
  const __m128 sign = _mm_set1_ps(-0.0f);
  __m128 mag[4];
  __m128 finite = _mm_castsi128_ps(_mm_set1_epi32(-1));
  for (int j = 0; j < 4; ++j) {
    finite = _mm_and_ps(finite, _mm_cmpeq_ps(_mm_sub_ps(a[j], a[j]), zero));
    mag[j] = _mm_andnot_ps(sign, a[j]);
  }
  __m128i rank[4];
  for (int j = 0; j < 4; ++j) rank[j] = _mm_setzero_si128();
  const __m128i one = _mm_set1_epi32(1);
  for (int i = 0; i < 4; ++i) {
    for (int j = i + 1; j < 4; ++j) {
      // -1 where j ranks before i (strictly larger), else 0
      const __m128i j_first = _mm_castps_si128(_mm_cmpgt_ps(mag[j], mag[i]));
      rank[i] = _mm_sub_epi32(rank[i], j_first);
      rank[j] = _mm_add_epi32(rank[j], _mm_add_epi32(one, j_first));
    }
  }
  Rank4 out;
  const __m128i limit = _mm_set1_epi32(static_cast<int>(n));
  for (int j = 0; j < 4; ++j) out.keep[j] = _mm_cmplt_epi32(rank[j], limit);
  out.finite = _mm_movemask_ps(finite) == 0xF;
  return out;
}

// All-ones/zero lanes -> 1.0f/0.0f, so that masked weights are products
// (pruned negative weights give -0.0, as in the scalar and PyTorch paths).
inline __m128 as_factor(__m128 keep) {
  return _mm_and_ps(keep, _mm_set1_ps(1.0f));
}

// Four 0/-1 int32 lanes -> four bool bytes at dst.
inline void store_bools4(bool* dst, __m128i keep) {
  const __m128i bytes = _mm_packs_epi16(_mm_packs_epi32(keep, keep), keep);
  const int32_t word = _mm_cvtsi128_si32(_mm_and_si128(bytes, _mm_set1_epi8(1)));
  std::memcpy(dst, &word, 4);
}

// Groups of 4 consecutive floats (1x1 convs, linear layers): 4 groups per
// step, transposed so that each register holds one entry of four groups.
bool nm_mask_4_contiguous(const float* w, bool* keep, float* masked,
                          int64_t begin, int64_t end, int64_t n) {
  bool ok = true;
  int64_t g = begin;
  for (; g + 4 <= end; g += 4) {
    const float* p = w + g * 4;
    __m128 a[4] = {_mm_loadu_ps(p), _mm_loadu_ps(p + 4), _mm_loadu_ps(p + 8),
                   _mm_loadu_ps(p + 12)};
    _MM_TRANSPOSE4_PS(a[0], a[1], a[2], a[3]);
    const Rank4 r = rank4(a, n);
    ok &= r.finite;
    __m128 k[4];
    for (int j = 0; j < 4; ++j) k[j] = _mm_castsi128_ps(r.keep[j]);
    _MM_TRANSPOSE4_PS(k[0], k[1], k[2], k[3]);  // back to one group each
    for (int q = 0; q < 4; ++q) {
      store_bools4(keep + g * 4 + 4 * q, _mm_castps_si128(k[q]));
      if (masked != nullptr) {
        _mm_storeu_ps(masked + g * 4 + 4 * q,
                      _mm_mul_ps(_mm_loadu_ps(p + 4 * q), as_factor(k[q])));
      }
    }
  }
  for (; g < end; ++g) {
    ok &= select_group<float, float, 4>(w + g * 4, keep + g * 4,
                                        masked ? masked + g * 4 : nullptr, n,
                                        1);
  }
  return ok;
}

// Groups whose 4 entries lie `inner` apart (k x k convs): four consecutive
// positions b per step, no transpose needed.
bool nm_mask_4_strided(const float* w, bool* keep, float* masked,
                       int64_t begin, int64_t end, int64_t inner, int64_t n) {
  bool ok = true;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t base = row * 4 * inner;
    int64_t b = 0;
    for (; b < inner; b += 4) {
      // the last step of a row whose length is not a multiple of 4 (3x3
      // kernels: 9) overlaps the one before: it rewrites the same values,
      // cheaper than a scalar tail
      if (b + 4 > inner) {
        if (inner < 4) break;
        b = inner - 4;
      }
      __m128 a[4];
      for (int j = 0; j < 4; ++j) a[j] = _mm_loadu_ps(w + base + j * inner + b);
      const Rank4 r = rank4(a, n);
      ok &= r.finite;
      for (int j = 0; j < 4; ++j) {
        const int64_t at = base + j * inner + b;
        store_bools4(keep + at, r.keep[j]);
        if (masked != nullptr) {
          _mm_storeu_ps(masked + at,
                        _mm_mul_ps(a[j], as_factor(_mm_castsi128_ps(r.keep[j]))));
        }
      }
    }
    for (; b < inner; ++b) {
      ok &= select_group<float, float, 4>(
          w + base + b, keep + base + b, masked ? masked + base + b : nullptr,
          n, inner);
    }
  }
  return ok;
}
#endif  // __SSE2__

#if defined(MMNM_HAVE_AVX2)
// The AVX2 versions: eight groups per step, the same ranking as rank4.
struct Rank8 {
  __m256i keep[4];
  bool finite;
};

MMNM_AVX2 inline Rank8 rank8(const __m256 (&a)[4], int64_t n) {
  const __m256 zero = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 mag[4];
  __m256 finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int j = 0; j < 4; ++j) {
    finite = _mm256_and_ps(
        finite, _mm256_cmp_ps(_mm256_sub_ps(a[j], a[j]), zero, _CMP_EQ_OQ));
    mag[j] = _mm256_andnot_ps(sign, a[j]);
  }
  __m256i rank[4];
  for (int j = 0; j < 4; ++j) rank[j] = _mm256_setzero_si256();
  const __m256i one = _mm256_set1_epi32(1);
  for (int i = 0; i < 4; ++i) {
    for (int j = i + 1; j < 4; ++j) {
      const __m256i j_first =
          _mm256_castps_si256(_mm256_cmp_ps(mag[j], mag[i], _CMP_GT_OQ));
      rank[i] = _mm256_sub_epi32(rank[i], j_first);
      rank[j] = _mm256_add_epi32(rank[j], _mm256_add_epi32(one, j_first));
    }
  }
  Rank8 out;
  const __m256i limit = _mm256_set1_epi32(static_cast<int>(n));
  for (int j = 0; j < 4; ++j) out.keep[j] = _mm256_cmpgt_epi32(limit, rank[j]);
  out.finite = _mm256_movemask_ps(finite) == 0xFF;
  return out;
}

// Eight 0/-1 int32 lanes -> eight bool bytes at dst (saturating packs to
// 0/-1 bytes, then their low bit).
MMNM_AVX2 inline void store_bools8(bool* dst, __m256i keep) {
  const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(keep),
                                        _mm256_extracti128_si256(keep, 1));
  const __m128i bytes = _mm_packs_epi16(words, words);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst),
                   _mm_and_si128(bytes, _mm_set1_epi8(1)));
}

MMNM_AVX2 inline __m256 masked8(__m256 w, __m256i keep) {
  return _mm256_mul_ps(
      w, _mm256_and_ps(_mm256_castsi256_ps(keep), _mm256_set1_ps(1.0f)));
}

// _MM_TRANSPOSE4_PS within each 128-bit lane.
MMNM_AVX2 inline void transpose4_lanes(__m256 (&r)[4]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]);
  const __m256 t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]);
  const __m256 t3 = _mm256_unpackhi_ps(r[2], r[3]);
  r[0] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  r[1] = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  r[2] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  r[3] = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
}

// Contiguous groups, 8 per step: register q holds groups 2q and 2q + 1 of
// the step (one per 128-bit lane), so the in-lane transpose gives entry j
// of all eight in register j, and the same transpose brings the keep masks
// back in memory order.
MMNM_AVX2 bool nm_mask_4_contiguous_avx2(const float* w, bool* keep,
                                         float* masked, int64_t begin,
                                         int64_t end, int64_t n) {
  bool ok = true;
  int64_t g = begin;
  for (; g + 8 <= end; g += 8) {
    const float* p = w + g * 4;
    __m256 a[4] = {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8),
                   _mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 24)};
    transpose4_lanes(a);
    const Rank8 r = rank8(a, n);
    ok &= r.finite;
    __m256 k[4];
    for (int j = 0; j < 4; ++j) k[j] = _mm256_castsi256_ps(r.keep[j]);
    transpose4_lanes(k);
    for (int q = 0; q < 4; ++q) {
      const __m256i kq = _mm256_castps_si256(k[q]);
      store_bools8(keep + g * 4 + 8 * q, kq);
      if (masked != nullptr) {
        _mm256_storeu_ps(masked + g * 4 + 8 * q,
                         masked8(_mm256_loadu_ps(p + 8 * q), kq));
      }
    }
  }
  return nm_mask_4_contiguous(w, keep, masked, g, end, n) && ok;
}

// Strided groups, 8 consecutive positions per step; the last step of a row
// overlaps the one before (3x3 kernels: 9 = 8 + 1 -> two steps). Rows
// shorter than 8 take the SSE2 path.
MMNM_AVX2 bool nm_mask_4_strided_avx2(const float* w, bool* keep,
                                      float* masked, int64_t begin,
                                      int64_t end, int64_t inner, int64_t n) {
  if (inner < 8) return nm_mask_4_strided(w, keep, masked, begin, end, inner, n);
  bool ok = true;
  for (int64_t row = begin; row < end; ++row) {
    const int64_t base = row * 4 * inner;
    for (int64_t b = 0; b < inner; b += 8) {
      if (b + 8 > inner) b = inner - 8;
      __m256 a[4];
      for (int j = 0; j < 4; ++j) {
        a[j] = _mm256_loadu_ps(w + base + j * inner + b);
      }
      const Rank8 r = rank8(a, n);
      ok &= r.finite;
      for (int j = 0; j < 4; ++j) {
        const int64_t at = base + j * inner + b;
        store_bools8(keep + at, r.keep[j]);
        if (masked != nullptr) {
          _mm256_storeu_ps(masked + at, masked8(a[j], r.keep[j]));
        }
      }
    }
  }
  return ok;
}

// The AVX-512 versions: sixteen groups per step, the ranking of rank8 on
// mask registers. NaN and Inf are found through the largest magnitude
// seen (its bits as an unsigned integer), not by a compare per step:
// compares into mask registers run on one port of Intel cores, as the
// shuffles do. With one step per 3x3 row these kernels move memory at the
// rate of a plain copy on one core, which then limits them.

// false if the largest |w| seen is NaN or Inf (exponent all ones)
MMNM_AVX512 inline bool all_finite(__m512i largest) {
  return _mm512_cmplt_epu32_mask(largest, _mm512_set1_epi32(0x7f800000)) ==
         0xFFFF;
}

// a[j]: entry j of sixteen groups. Sets the keep masks of the entries and
// raises *largest to their largest magnitude.
MMNM_AVX512 inline void rank16(const __m512 (&a)[4], int64_t n,
                               __m512i* largest, __mmask16 (&keep)[4]) {
  __m512 mag[4];
  for (int j = 0; j < 4; ++j) {
    mag[j] = _mm512_abs_ps(a[j]);
    *largest = _mm512_max_epu32(*largest, _mm512_castps_si512(mag[j]));
  }
  // rank[j]: the entries ranked before j. Start from every i < j (the
  // lower index wins ties); each pair where j is strictly larger moves j
  // ahead of i.
  __m512i rank[4];
  for (int j = 0; j < 4; ++j) rank[j] = _mm512_set1_epi32(j);
  const __m512i one = _mm512_set1_epi32(1);
  for (int i = 0; i < 4; ++i) {
    for (int j = i + 1; j < 4; ++j) {
      const __mmask16 j_first =
          _mm512_cmp_ps_mask(mag[j], mag[i], _CMP_GT_OQ);
      rank[i] = _mm512_mask_add_epi32(rank[i], j_first, rank[i], one);
      rank[j] = _mm512_mask_sub_epi32(rank[j], j_first, rank[j], one);
    }
  }
  const __m512i limit = _mm512_set1_epi32(static_cast<int>(n));
  for (int j = 0; j < 4; ++j) {
    keep[j] = _mm512_cmplt_epi32_mask(rank[j], limit);
  }
}

// Sixteen keep masks -> sixteen bool bytes at dst (a masked move, not a
// narrowing: that would take the shuffle port).
MMNM_AVX512 inline void store_bools16(bool* dst, __mmask16 keep) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                   _mm_maskz_mov_epi8(keep, _mm_set1_epi8(1)));
}

// w * 1.0 where kept, w * 0.0 where pruned (a product, as masked8)
MMNM_AVX512 inline __m512 masked16(__m512 w, __mmask16 keep) {
  return _mm512_mul_ps(w, _mm512_maskz_mov_ps(keep, _mm512_set1_ps(1.0f)));
}

// transpose4_lanes on each of the four 128-bit lanes.
MMNM_AVX512 inline void transpose4_lanes16(__m512 (&r)[4]) {
  const __m512 t0 = _mm512_unpacklo_ps(r[0], r[1]);
  const __m512 t1 = _mm512_unpackhi_ps(r[0], r[1]);
  const __m512 t2 = _mm512_unpacklo_ps(r[2], r[3]);
  const __m512 t3 = _mm512_unpackhi_ps(r[2], r[3]);
  r[0] = _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  r[1] = _mm512_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  r[2] = _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  r[3] = _mm512_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
}

// Contiguous groups, 16 per step: register q holds groups 4q .. 4q + 3 of
// the step (one per 128-bit lane), so the in-lane transpose gives entry j
// of all sixteen in register j; the keep masks, as 1.0/0.0 lanes, go back
// through the same transpose, giving the bool bytes and the factors of the
// masked weights. The rest of the groups take the AVX2 path.
MMNM_AVX512 bool nm_mask_4_contiguous_avx512(const float* w, bool* keep,
                                             float* masked, int64_t begin,
                                             int64_t end, int64_t n) {
  __m512i largest = _mm512_setzero_si512();
  int64_t g = begin;
  const __m512 ones = _mm512_set1_ps(1.0f);
  for (; g + 16 <= end; g += 16) {
    const float* p = w + g * 4;
    __m512 a[4];
    for (int q = 0; q < 4; ++q) a[q] = _mm512_loadu_ps(p + 16 * q);
    __m512 t[4] = {a[0], a[1], a[2], a[3]};
    transpose4_lanes16(t);
    __mmask16 k[4];
    rank16(t, n, &largest, k);
    __m512 factor[4];
    for (int j = 0; j < 4; ++j) factor[j] = _mm512_maskz_mov_ps(k[j], ones);
    transpose4_lanes16(factor);  // back to memory order
    for (int q = 0; q < 4; ++q) {
      const __m512i bits = _mm512_castps_si512(factor[q]);
      store_bools16(keep + g * 4 + 16 * q, _mm512_test_epi32_mask(bits, bits));
      if (masked != nullptr) {
        _mm512_storeu_ps(masked + g * 4 + 16 * q,
                         _mm512_mul_ps(a[q], factor[q]));
      }
    }
  }
  const bool rest = nm_mask_4_contiguous_avx2(w, keep, masked, g, end, n);
  return all_finite(largest) && rest;
}

// The sixteen groups at positions b .. b + 15 of a row (entries `inner`
// apart), written entry by entry in order.
MMNM_AVX512 inline void nm_mask_4_strided_step16(const float* w, bool* keep,
                                                 float* masked, int64_t at,
                                                 int64_t inner, int64_t n,
                                                 __m512i* largest) {
  __m512 a[4];
  for (int j = 0; j < 4; ++j) a[j] = _mm512_loadu_ps(w + at + j * inner);
  __mmask16 k[4];
  rank16(a, n, largest, k);
  for (int j = 0; j < 4; ++j) {
    store_bools16(keep + at + j * inner, k[j]);
    if (masked != nullptr) {
      _mm512_storeu_ps(masked + at + j * inner, masked16(a[j], k[j]));
    }
  }
}

// Strided groups, 16 consecutive positions per step. Rows of 16 or more
// positions: the last step of a row overlaps the one before. Rows of 9 to
// 15 (3x3 kernels: 9): one step per row whose lanes past the row's end
// rank values of the next entry or row and write them there, before that
// entry or row writes its own (entries go in order, rows too). The last
// row of the range writes nothing past it: it takes the AVX2 path, as do
// rows shorter than 9.
MMNM_AVX512 bool nm_mask_4_strided_avx512(const float* w, bool* keep,
                                          float* masked, int64_t begin,
                                          int64_t end, int64_t inner,
                                          int64_t n) {
  if (inner < 9) {
    return nm_mask_4_strided_avx2(w, keep, masked, begin, end, inner, n);
  }
  __m512i largest = _mm512_setzero_si512();
  int64_t row = begin;
  if (inner < 16) {
    for (; row + 1 < end; ++row) {
      nm_mask_4_strided_step16(w, keep, masked, row * 4 * inner, inner, n,
                               &largest);
    }
    const bool last =
        nm_mask_4_strided_avx2(w, keep, masked, row, end, inner, n);
    return all_finite(largest) && last;
  }
  for (; row < end; ++row) {
    const int64_t base = row * 4 * inner;
    for (int64_t b = 0; b < inner; b += 16) {
      if (b + 16 > inner) b = inner - 16;
      nm_mask_4_strided_step16(w, keep, masked, base + b, inner, n, &largest);
    }
  }
  return all_finite(largest);
}
#endif  // MMNM_HAVE_AVX2

// float32 M=4 rows [begin, end) on the active instruction set; false if
// there is no SIMD kernel for it (the caller runs the scalar code).
bool nm_mask_4_simd(const float* w, bool* keep, float* masked,
                    int64_t begin, int64_t end, int64_t inner, int64_t n,
                    bool* ok) {
  const CpuIsa isa = active_cpu_isa();
#if defined(MMNM_HAVE_AVX2)
  if (isa == CpuIsa::kAvx512) {
    *ok = inner == 1
              ? nm_mask_4_contiguous_avx512(w, keep, masked, begin, end, n)
              : nm_mask_4_strided_avx512(w, keep, masked, begin, end, inner,
                                         n);
    return true;
  }
  if (isa == CpuIsa::kAvx2) {
    *ok = inner == 1
              ? nm_mask_4_contiguous_avx2(w, keep, masked, begin, end, n)
              : nm_mask_4_strided_avx2(w, keep, masked, begin, end, inner, n);
    return true;
  }
#endif
#if defined(__SSE2__)
  if (isa == CpuIsa::kSse2) {
    *ok = inner == 1
              ? nm_mask_4_contiguous(w, keep, masked, begin, end, n)
              : nm_mask_4_strided(w, keep, masked, begin, end, inner, n);
    return true;
  }
#endif
  return false;
}

// Rows [begin, end) of a contiguous (A, G, M, B) view, one row being the
// M * inner values of an [a, g] pair; false if a value is NaN or Inf.
template <typename scalar_t, int M>
bool nm_mask_rows_impl(const scalar_t* w, bool* keep, scalar_t* masked,
                       int64_t begin, int64_t end, int64_t inner, int64_t n) {
  bool ok = true;
  if constexpr (std::is_same<scalar_t, float>::value && M == 4) {
    if (nm_mask_4_simd(w, keep, masked, begin, end, inner, n, &ok)) return ok;
  }
  for (int64_t row = begin; row < end; ++row) {
    for (int64_t b = 0; b < inner; ++b) {
      const int64_t first = row * M * inner + b;
      ok &= select_group<scalar_t, at::opmath_type<scalar_t>, M>(
          w + first, keep + first, masked ? masked + first : nullptr, n,
          inner);
    }
  }
  return ok;
}

// Runs select_group over every group of a contiguous (A, G, M, B) view.
template <typename scalar_t, int M>
bool nm_mask_cpu_impl(const scalar_t* w, bool* keep, scalar_t* masked,
                      int64_t rows, int64_t inner, int64_t n) {
  std::atomic<bool> finite{true};
  const int64_t grain = std::max<int64_t>(1, 4096 / (M * inner));
  at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
    if (!nm_mask_rows_impl<scalar_t, M>(w, keep, masked, begin, end, inner,
                                        n)) {
      finite = false;
    }
  });
  return finite.load();
}
}  // namespace

// grouped: contiguous (A, G, M, B) view of a weight; groups run along dim 2.
bool nm_mask_cpu(const at::Tensor& grouped, at::Tensor& keep,
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
  return finite;
}

template <typename scalar_t>
bool nm_mask_rows_cpu(const scalar_t* w, bool* keep, scalar_t* masked,
                      int64_t m, int64_t n, int64_t inner, int64_t begin,
                      int64_t end) {
  bool finite = true;
  const bool known = dispatch_group_size(m, [&](auto size) {
    finite = nm_mask_rows_impl<scalar_t, decltype(size)::value>(
        w, keep, masked, begin, end, inner, n);
  });
  TORCH_CHECK(known, "nm_mask: no kernel for M=", m);
  return finite;
}

#define MMNM_INSTANTIATE_ROWS(T)                                        \
  template bool nm_mask_rows_cpu<T>(const T*, bool*, T*, int64_t, int64_t, \
                                    int64_t, int64_t, int64_t);
MMNM_INSTANTIATE_ROWS(float)
MMNM_INSTANTIATE_ROWS(double)
MMNM_INSTANTIATE_ROWS(at::Half)
MMNM_INSTANTIATE_ROWS(at::BFloat16)
#undef MMNM_INSTANTIATE_ROWS

}  // namespace mmnm
