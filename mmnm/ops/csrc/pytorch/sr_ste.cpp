// Device dispatch and argument checks of the SR-STE gradient term and of
// the SGD step it is fused into.
#include <ATen/core/Tensor.h>

namespace mmnm {

void sr_ste_add_cpu(at::Tensor& grad, const at::Tensor& weight,
                    const at::Tensor& mask, double lambda_w);
void sr_ste_sgd_step_cpu(at::Tensor& param, const at::Tensor& grad,
                         const at::Tensor& mask, at::Tensor& momentum_buffer,
                         double lambda_w, double lr, double momentum,
                         double dampening, double weight_decay, bool nesterov,
                         bool maximize, bool init_buffer);

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
// momentum_buffer is updated (set, if init_buffer: the first step).
void sr_ste_sgd_step_(at::Tensor param, const at::Tensor& grad,
                      const at::Tensor& mask, at::Tensor momentum_buffer,
                      double lambda_w, double lr, double momentum,
                      double dampening, double weight_decay, bool nesterov,
                      bool maximize, bool init_buffer) {
  check_term_inputs("sr_ste_sgd_step_", param, grad, mask);
  if (momentum != 0) {
    TORCH_CHECK(momentum_buffer.sizes() == param.sizes() &&
                    momentum_buffer.scalar_type() == param.scalar_type() &&
                    momentum_buffer.is_contiguous() &&
                    momentum_buffer.device().is_cpu(),
                "sr_ste_sgd_step_: momentum_buffer must be a contiguous CPU "
                "tensor of param's shape and dtype");
  }
  sr_ste_sgd_step_cpu(param, grad, mask, momentum_buffer, lambda_w, lr,
                      momentum, dampening, weight_decay, nesterov, maximize,
                      init_buffer);
}

}  // namespace mmnm
