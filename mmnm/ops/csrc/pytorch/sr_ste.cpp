// Device dispatch and argument checks of the SR-STE gradient term.
#include <ATen/core/Tensor.h>

namespace mmnm {

void sr_ste_add_cpu(at::Tensor& grad, const at::Tensor& weight,
                    const at::Tensor& mask, double lambda_w);

// grad += lambda_w * (1 - mask) * weight, in place, in one pass.
void sr_ste_add_(at::Tensor grad, const at::Tensor& weight,
                 const at::Tensor& mask, double lambda_w) {
  TORCH_CHECK(grad.sizes() == weight.sizes() && mask.sizes() == weight.sizes(),
              "sr_ste_add_: grad, weight and mask shapes differ");
  TORCH_CHECK(grad.scalar_type() == weight.scalar_type(),
              "sr_ste_add_: grad and weight dtypes differ");
  TORCH_CHECK(mask.scalar_type() == at::kBool, "sr_ste_add_: mask must be bool");
  TORCH_CHECK(grad.is_contiguous() && weight.is_contiguous() &&
                  mask.is_contiguous(),
              "sr_ste_add_: tensors must be contiguous");
  TORCH_CHECK(grad.device().is_cpu() && weight.device().is_cpu() &&
                  mask.device().is_cpu(),
              "sr_ste_add_: only CPU tensors (CUDA uses the PyTorch path)");
  sr_ste_add_cpu(grad, weight, mask, lambda_w);
}

}  // namespace mmnm
