// Device dispatch and argument checks of the SR-STE gradient term and of
// the SGD step it is fused into.
#include <ATen/core/Tensor.h>

#include "../common/nm_mask_utils.h"
#include "cpu/sr_ste_cpu.h"

namespace mmnm {

// The checks both ops share: weight, grad and mask of one shape, contiguous,
// on the CPU; grad of weight's dtype, a bool mask.
void check_term_inputs(const char* op, const at::Tensor& weight,
                       const at::Tensor& grad, const at::Tensor& mask) {
  TORCH_CHECK(grad.sizes() == weight.sizes() && mask.sizes() == weight.sizes(),
              op, ": grad, weight and mask shapes differ");
  TORCH_CHECK(grad.scalar_type() == weight.scalar_type(), op,
              ": grad and weight dtypes differ");
  TORCH_CHECK(mask.scalar_type() == at::kBool, op, ": mask must be bool");
  TORCH_CHECK(grad.is_contiguous() && weight.is_contiguous() &&
                  mask.is_contiguous(),
              op, ": tensors must be contiguous");
  TORCH_CHECK(grad.device().is_cpu() && weight.device().is_cpu() &&
                  mask.device().is_cpu(),
              op, ": only CPU tensors (CUDA uses the PyTorch path)");
}

// grad += lambda_w * (1 - mask) * weight, in place, in one pass.
void sr_ste_add_(at::Tensor grad, const at::Tensor& weight,
                 const at::Tensor& mask, double lambda_w) {
  check_term_inputs("sr_ste_add_", weight, grad, mask);
  sr_ste_add_cpu(grad, weight, mask, lambda_w);
}

// One torch.optim.SGD step of param on grad + lambda_w * (1 - mask) *
// param, in place and in one pass; grad is left as it is. With momentum,
// momentum_buffer is updated (set, if init_buffer: the first step). Given
// next_keep and next_masked, also the n:m mask of the updated param (and
// param * mask) in the same pass, the groups those of its contiguous
// (A, G, m, inner) view; next_keep may be mask itself. Returns false if
// that mask found NaN or Inf in the updated param.
bool sr_ste_sgd_step_(at::Tensor param, const at::Tensor& grad,
                      const at::Tensor& mask, at::Tensor momentum_buffer,
                      double lambda_w, double lr, double momentum,
                      double dampening, double weight_decay, bool nesterov,
                      bool maximize, bool init_buffer,
                      const c10::optional<at::Tensor>& next_keep,
                      const c10::optional<at::Tensor>& next_masked, int64_t n,
                      int64_t m, int64_t inner) {
  check_term_inputs("sr_ste_sgd_step_", param, grad, mask);
  if (momentum != 0) {
    TORCH_CHECK(momentum_buffer.sizes() == param.sizes() &&
                    momentum_buffer.scalar_type() == param.scalar_type() &&
                    momentum_buffer.is_contiguous() &&
                    momentum_buffer.device().is_cpu(),
                "sr_ste_sgd_step_: momentum_buffer must be a contiguous CPU "
                "tensor of param's shape and dtype");
  }
  TORCH_CHECK(next_keep.has_value() == next_masked.has_value(),
              "sr_ste_sgd_step_: give both next_keep and next_masked or "
              "neither");
  if (!next_keep.has_value()) {
    return sr_ste_sgd_step_cpu(param, grad, mask, momentum_buffer, lambda_w,
                               lr, momentum, dampening, weight_decay,
                               nesterov, maximize, init_buffer, nullptr);
  }
  const NextMask next{*next_keep, *next_masked, n, m, inner};
  TORCH_CHECK(next.keep.sizes() == param.sizes() &&
                  next.keep.scalar_type() == at::kBool &&
                  next.keep.is_contiguous() && next.keep.device().is_cpu(),
              "sr_ste_sgd_step_: next_keep must be a contiguous CPU bool "
              "tensor of param's shape");
  TORCH_CHECK(next.masked.sizes() == param.sizes() &&
                  next.masked.scalar_type() == param.scalar_type() &&
                  next.masked.is_contiguous() && next.masked.device().is_cpu(),
              "sr_ste_sgd_step_: next_masked must be a contiguous CPU tensor "
              "of param's shape and dtype");
  TORCH_CHECK(next.masked.data_ptr() != param.data_ptr() &&
                  next.masked.data_ptr() != grad.data_ptr() &&
                  next.keep.data_ptr() != next.masked.data_ptr(),
              "sr_ste_sgd_step_: next_masked must be a tensor of its own");
  TORCH_CHECK(1 <= n && n < m && inner >= 1 &&
                  param.numel() % (m * inner) == 0,
              "sr_ste_sgd_step_: need 1 <= n < m and rows of m * inner "
              "values, got n=", n, ", m=", m, ", inner=", inner, " for ",
              param.numel(), " values");
  // checked here, before anything is written: the kernel would find out
  // only after stepping its first rows
  TORCH_CHECK(dispatch_group_size(m, [](auto) {}),
              "sr_ste_sgd_step_: no mask kernel for groups of m=", m);
  return sr_ste_sgd_step_cpu(param, grad, mask, momentum_buffer, lambda_w, lr,
                             momentum, dampening, weight_decay, nesterov,
                             maximize, init_buffer, &next);
}

}  // namespace mmnm
