// Device dispatch and argument checks of the N:M mask op.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <vector>

namespace mmnm {

// false if the weight holds NaN or Inf
bool nm_mask_cpu(const at::Tensor& grouped, at::Tensor& keep,
                 const c10::optional<at::Tensor>& masked, int64_t n);
#ifdef MMNM_WITH_CUDA
void nm_mask_cuda(const at::Tensor& grouped, at::Tensor& keep,
                  const c10::optional<at::Tensor>& masked, int64_t n,
                  at::Tensor& non_finite);
#endif

// Mask (and, if with_masked, the masked weight) of a contiguous
// (A, G, M, B) grouped weight view: keep the n largest magnitudes of each
// [a, g, :, b] group, ties to the lower index. The masked weight and the
// mask are written into masked_out and keep_out when given (reused
// buffers: no allocation, so no page faults), else into new tensors. A
// weight holding NaN or Inf raises, which on a GPU means waiting for the
// kernel; given non_finite_out (an int32 scalar on the weight's device),
// the op writes 1 there instead (0 for a finite weight) and never waits:
// the caller checks it later, for many weights at once.
std::vector<at::Tensor> nm_mask_forward(
    const at::Tensor& grouped, int64_t n, bool with_masked,
    const c10::optional<at::Tensor>& masked_out,
    const c10::optional<at::Tensor>& keep_out,
    const c10::optional<at::Tensor>& non_finite_out) {
  TORCH_CHECK(grouped.dim() == 4,
              "nm_mask: expected an (A, G, M, B) grouped view, got ",
              grouped.dim(), " dims");
  TORCH_CHECK(grouped.is_contiguous(), "nm_mask: grouped view must be contiguous");
  const int64_t m = grouped.size(2);
  TORCH_CHECK(1 <= n && n < m, "nm_mask: need 1 <= N < M, got ", n, ":", m);
  at::Tensor keep;
  if (keep_out.has_value()) {
    keep = *keep_out;
    TORCH_CHECK(keep.sizes() == grouped.sizes() &&
                    keep.scalar_type() == at::kBool &&
                    keep.device() == grouped.device() && keep.is_contiguous(),
                "nm_mask: keep_out must be a contiguous bool tensor of the "
                "grouped view's shape and device");
  } else {
    keep = at::empty_like(grouped, grouped.options().dtype(at::kBool));
  }
  c10::optional<at::Tensor> masked;
  if (masked_out.has_value()) {
    TORCH_CHECK(with_masked, "nm_mask: masked_out needs with_masked=True");
    const at::Tensor& out = *masked_out;
    TORCH_CHECK(out.sizes() == grouped.sizes() &&
                    out.scalar_type() == grouped.scalar_type() &&
                    out.device() == grouped.device() && out.is_contiguous(),
                "nm_mask: masked_out must be a contiguous tensor of the "
                "grouped view's shape, dtype and device");
    TORCH_CHECK(out.data_ptr() != grouped.data_ptr(),
                "nm_mask: masked_out must not be the weight itself");
    masked = out;
  } else if (with_masked) {
    masked = at::empty_like(grouped);
  }
  if (non_finite_out.has_value()) {
    const at::Tensor& flag = *non_finite_out;
    TORCH_CHECK(flag.dim() == 0 && flag.scalar_type() == at::kInt &&
                    flag.device() == grouped.device(),
                "nm_mask: non_finite_out must be an int32 scalar on the "
                "weight's device");
  }
  bool finite = true;
  if (grouped.numel() > 0 && grouped.is_cuda()) {
#ifdef MMNM_WITH_CUDA
    at::Tensor flag = non_finite_out.has_value()
                          ? *non_finite_out
                          : at::empty({}, grouped.options().dtype(at::kInt));
    flag.zero_();
    nm_mask_cuda(grouped, keep, masked, n, flag);
    // without a flag to write, the op raises: it waits for the kernel
    if (!non_finite_out.has_value()) finite = flag.item<int>() == 0;
#else
    TORCH_CHECK(false, "nm_mask: mmnm._ext was built without CUDA");
#endif
  } else {
    if (grouped.numel() > 0) {
      TORCH_CHECK(grouped.device().is_cpu(), "nm_mask: unsupported device ",
                  grouped.device());
      finite = nm_mask_cpu(grouped, keep, masked, n);
    }
    if (non_finite_out.has_value()) {
      at::Tensor flag = *non_finite_out;
      flag.fill_(finite ? 0 : 1);
      finite = true;  // reported through the flag
    }
  }
  TORCH_CHECK(finite, "weight holds NaN/Inf values");
  if (with_masked) return {keep, *masked};
  return {keep};
}

}  // namespace mmnm
