// Launch helpers shared by the CUDA kernels.
#ifndef MMNM_COMMON_CUDA_HELPER_CUH
#define MMNM_COMMON_CUDA_HELPER_CUH

#include <algorithm>
#include <cstdint>

namespace mmnm {

constexpr int kThreadsPerBlock = 256;

// Blocks for `items` work items; capped, as the kernels loop with a grid
// stride.
inline int blocks_for(int64_t items) {
  const int64_t blocks = (items + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>(blocks, 65536)));
}

}  // namespace mmnm

// for (i = global thread index; i < n; i += threads in the grid), 64-bit.
#define MMNM_GRID_STRIDE_LOOP(i, n)                                    \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) +     \
                   threadIdx.x;                                        \
       i < (n); i += static_cast<int64_t>(blockDim.x) * gridDim.x)

#endif  // MMNM_COMMON_CUDA_HELPER_CUH
