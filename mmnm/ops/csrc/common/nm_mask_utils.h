// N:M selection shared by the CPU and CUDA kernels.
#ifndef MMNM_NM_MASK_UTILS_H
#define MMNM_NM_MASK_UTILS_H

#include <cstdint>
#include <type_traits>

#include "host_device.h"


// Keeps the n largest magnitudes of the M values w[0], w[stride], ...,
// w[(M - 1) * stride]; ties keep the lower index. Writes keep[] and masked[]
// (the weight where kept, else +-0; may be null) at the same offsets. Each pair
// is compared once, branch-free, in acc_t (float for half types, else
// scalar_t). Returns false if a value is NaN or Inf.
template <typename scalar_t, typename acc_t, int M>
MMNM_HOST_DEVICE inline bool select_group(const scalar_t* w, bool* keep,
                                          scalar_t* masked, int64_t n,
                                          int64_t stride) {
  acc_t mag[M];
  int rank[M];
  bool finite = true;
  for (int j = 0; j < M; ++j) {
    const acc_t v = static_cast<acc_t>(w[j * stride]);
    finite &= (v - v == acc_t(0));  // false for NaN and +-Inf
    mag[j] = MMNM_FABS(v);  // branch-free, unlike a sign test
    rank[j] = 0;
  }
  for (int i = 0; i < M; ++i) {
    for (int j = i + 1; j < M; ++j) {
      // i (the lower index) ranks before j unless j is strictly larger
      const int j_first = mag[j] > mag[i];
      rank[i] += j_first;
      rank[j] += 1 - j_first;
    }
  }
  for (int j = 0; j < M; ++j) {
    const bool kept = rank[j] < n;
    keep[j * stride] = kept;
    if (masked != nullptr) {
      // a product, not a select: compilers emit a branch for the select
      masked[j * stride] = static_cast<scalar_t>(
          static_cast<acc_t>(w[j * stride]) * static_cast<acc_t>(kept));
    }
  }
  return finite;
}

// Calls `fn` with the compile-time group size M (a std::integral_constant);
// returns false for an M without an instantiation.
template <typename Fn>
inline bool dispatch_group_size(int64_t m, Fn&& fn) {
#define MMNM_GROUP_CASE(SIZE)                     \
  case SIZE:                                      \
    fn(std::integral_constant<int, SIZE>());      \
    return true;
  switch (m) {
    MMNM_GROUP_CASE(2)
    MMNM_GROUP_CASE(3)
    MMNM_GROUP_CASE(4)
    MMNM_GROUP_CASE(5)
    MMNM_GROUP_CASE(6)
    MMNM_GROUP_CASE(8)
    MMNM_GROUP_CASE(16)
    MMNM_GROUP_CASE(32)
    default:
      return false;
  }
#undef MMNM_GROUP_CASE
}

#endif  // MMNM_NM_MASK_UTILS_H
