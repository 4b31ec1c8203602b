// CUDA kernel of the N:M mask: one thread per group, select_group of
// csrc/common/nm_mask_utils.h as on the CPU.
#ifndef MMNM_NM_MASK_CUDA_KERNEL_CUH
#define MMNM_NM_MASK_CUDA_KERNEL_CUH

#include "../nm_mask_utils.h"
#include "common_cuda_helper.cuh"

namespace mmnm {

// weight, keep, masked (may be null): contiguous (A, G, M, B) views with
// num_groups = A * G * B groups along dim 2. Sets *non_finite on NaN/Inf.
// Neighbouring threads take neighbouring b, so reads coalesce for B > 1.
template <typename scalar_t, typename acc_t, int M>
__global__ void nm_mask_cuda_kernel(const scalar_t* __restrict__ weight,
                                    bool* __restrict__ keep,
                                    scalar_t* __restrict__ masked,
                                    int64_t num_groups, int64_t inner,
                                    int64_t n, int* __restrict__ non_finite) {
  MMNM_GRID_STRIDE_LOOP(group, num_groups) {
    const int64_t row = group / inner;
    const int64_t first = row * M * inner + (group - row * inner);
    const bool finite = select_group<scalar_t, acc_t, M>(
        weight + first, keep + first,
        masked == nullptr ? nullptr : masked + first, n, inner);
    if (!finite) *non_finite = 1;
  }
}

}  // namespace mmnm

#endif  // MMNM_NM_MASK_CUDA_KERNEL_CUH
