// CUDA launcher of the N:M mask.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../../common/cuda/nm_mask_cuda_kernel.cuh"

namespace mmnm {

// grouped: contiguous (A, G, M, B) CUDA view of a weight; groups run along
// dim 2. keep and masked (if given) are preallocated like it. non_finite, an
// int32 scalar on the same device, is set to 1 if the weight holds NaN or
// Inf and left as it is otherwise (zero it first); nothing here waits for
// the GPU.
void nm_mask_cuda(const at::Tensor& grouped, at::Tensor& keep,
                  const c10::optional<at::Tensor>& masked, int64_t n,
                  at::Tensor& non_finite) {
  const c10::cuda::CUDAGuard guard(grouped.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t inner = grouped.size(3);
  const int64_t num_groups = grouped.size(0) * grouped.size(1) * inner;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grouped.scalar_type(), "nm_mask_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const scalar_t* w = grouped.data_ptr<scalar_t>();
        scalar_t* out = masked ? masked->data_ptr<scalar_t>() : nullptr;
        const bool known = dispatch_group_size(grouped.size(2), [&](auto m) {
          nm_mask_cuda_kernel<scalar_t, acc_t, decltype(m)::value>
              <<<blocks_for(num_groups), kThreadsPerBlock, 0, stream>>>(
                  w, keep.data_ptr<bool>(), out, num_groups, inner, n,
                  non_finite.data_ptr<int>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
        TORCH_CHECK(known, "nm_mask: no kernel for M=", grouped.size(2));
      });
}

}  // namespace mmnm
