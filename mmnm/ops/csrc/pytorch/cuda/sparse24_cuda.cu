// CUDA launchers of 2:4 compression. Argument checks and allocation are in
// csrc/pytorch/sparse24.cpp; the counts stay on the device (no sync here).
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "../../common/cuda/sparse24_cuda_kernel.cuh"

namespace mmnm {

void sparse24_compress_cuda(const at::Tensor& dense, at::Tensor& values,
                            at::Tensor& meta, at::Tensor& num_bad) {
  const c10::cuda::CUDAGuard guard(dense.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t rows = dense.size(0);
  const int64_t words = meta.size(1);
  dispatch_sparse24_elem(dense.element_size(), [&](auto elem) {
    using elem_t = decltype(elem);
    using meta_t = typename Sparse24Layout<elem_t>::meta_t;
    sparse24_compress_cuda_kernel<elem_t>
        <<<blocks_for(rows * words), kThreadsPerBlock, 0, stream>>>(
            static_cast<const elem_t*>(dense.data_ptr()),
            static_cast<elem_t*>(values.data_ptr()),
            static_cast<meta_t*>(meta.data_ptr()), rows, words,
            num_bad.data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void sparse24_decompress_cuda(const at::Tensor& values, const at::Tensor& meta,
                              at::Tensor& dense, at::Tensor& num_bad) {
  const c10::cuda::CUDAGuard guard(values.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t rows = values.size(0);
  const int64_t words = meta.size(1);
  dispatch_sparse24_elem(values.element_size(), [&](auto elem) {
    using elem_t = decltype(elem);
    using meta_t = typename Sparse24Layout<elem_t>::meta_t;
    sparse24_decompress_cuda_kernel<elem_t>
        <<<blocks_for(rows * words), kThreadsPerBlock, 0, stream>>>(
            static_cast<const elem_t*>(values.data_ptr()),
            static_cast<const meta_t*>(meta.data_ptr()),
            static_cast<elem_t*>(dense.data_ptr()), rows, words,
            num_bad.data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace mmnm
