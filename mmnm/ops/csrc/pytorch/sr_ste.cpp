// Device dispatch and argument checks of the SR-STE gradient term and of
// the SGD step it is fused into.
#include <ATen/core/Tensor.h>

#include <string>
#include <utility>

#include "../common/nm_mask_utils.h"
#include "cpu/sr_ste_cpu.h"

namespace mmnm {

// Whether tensor lies in memory as ref does, without gaps or overlaps:
// both contiguous, or the same shape and strides over dense memory (both
// channels_last, say). The kernels run over the raw memory of all their
// tensors at once, so element i is the same entry in each.
bool same_dense_layout(const at::Tensor& tensor, const at::Tensor& ref) {
  if (tensor.sizes() != ref.sizes()) return false;
  if (tensor.is_contiguous() && ref.is_contiguous()) return true;
  return tensor.strides() == ref.strides() &&
         ref.is_non_overlapping_and_dense();
}

namespace {

// A shape or strides as Python prints them: (64, 1).
std::string as_tuple(at::IntArrayRef values) {
  std::string text = "(";
  for (size_t i = 0; i < values.size(); ++i) {
    text += (i ? ", " : "") + std::to_string(values[i]);
  }
  return text + (values.size() == 1 ? ",)" : ")");
}

// torch.float32, ...
std::string dtype_name(const at::Tensor& tensor) {
  return "torch." + std::string(c10::getDtypeNames(tensor.scalar_type()).first);
}

}  // namespace

// Why the SR-STE kernels cannot run over weight, grad, mask (and
// momentum_buffer) as one flat memory: "" if they can. They need one shape
// and one dense memory layout, CPU tensors, grad (and buffer) of weight's
// dtype and a bool mask. The SR-STE optim wrapper logs it for a weight it
// leaves unfused (mmnm.ops.fused_sgd_step_unavailable); the kernels raise
// it.
std::string term_inputs_unsupported(
    const at::Tensor& weight, const at::Tensor& grad, const at::Tensor& mask,
    const c10::optional<at::Tensor>& momentum_buffer) {
  if (mask.scalar_type() != at::kBool) {
    return "a " + dtype_name(mask) + " mask";
  }
  const std::pair<const char*, const at::Tensor*> tensors[] = {
      {"weight", &weight},
      {"grad", &grad},
      {"mask", &mask},
      {"momentum buffer",
       momentum_buffer.has_value() ? &*momentum_buffer : nullptr}};
  for (const auto& [name, tensor] : tensors) {
    if (tensor == nullptr) continue;
    const std::string what = name;
    if (!tensor->device().is_cpu()) {
      return "on " + tensor->device().str() +
             " (the compiled kernel is CPU only)";
    }
    if (tensor->layout() != at::kStrided) {
      return what == "grad" ? "a sparse gradient"
                            : what + " not a strided tensor";
    }
    if (tensor->sizes() != weight.sizes()) {
      return what + " of shape " + as_tuple(tensor->sizes()) +
             ", not the weight's " + as_tuple(weight.sizes());
    }
    if (tensor == &weight) {  // the layout the others must share
      if (!same_dense_layout(weight, weight)) {
        return "weight not dense in memory (strides " +
               as_tuple(weight.strides()) + ")";
      }
      continue;
    }
    if (!same_dense_layout(*tensor, weight)) {
      return what + " not laid out in memory as weight (strides " +
             as_tuple(tensor->strides()) + ", not " +
             as_tuple(weight.strides()) + ")";
    }
    if (tensor != &mask && tensor->scalar_type() != weight.scalar_type()) {
      return "dtypes differ (" + dtype_name(weight) + ", " +
             dtype_name(*tensor) + ")";
    }
  }
  return "";
}

namespace {

void check_term_inputs(const char* op, const at::Tensor& weight,
                       const at::Tensor& grad, const at::Tensor& mask,
                       const c10::optional<at::Tensor>& momentum_buffer =
                           c10::nullopt) {
  const std::string reason =
      term_inputs_unsupported(weight, grad, mask, momentum_buffer);
  TORCH_CHECK(reason.empty(), op, ": ", reason);
}

}  // namespace

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
// param * mask) in the same pass, the groups those of its memory seen as
// a contiguous (A, G, m, inner) tensor; next_keep may be mask itself;
// with stream_next, those two are written past the caches (see NextMask).
// Returns false if that mask found NaN or Inf in the updated param.
bool sr_ste_sgd_step_(at::Tensor param, const at::Tensor& grad,
                      const at::Tensor& mask, at::Tensor momentum_buffer,
                      double lambda_w, double lr, double momentum,
                      double dampening, double weight_decay, bool nesterov,
                      bool maximize, bool init_buffer,
                      const c10::optional<at::Tensor>& next_keep,
                      const c10::optional<at::Tensor>& next_masked, int64_t n,
                      int64_t m, int64_t inner, bool stream_next) {
  check_term_inputs("sr_ste_sgd_step_", param, grad, mask,
                    momentum != 0 ? c10::optional<at::Tensor>(momentum_buffer)
                                  : c10::nullopt);
  TORCH_CHECK(next_keep.has_value() == next_masked.has_value(),
              "sr_ste_sgd_step_: give both next_keep and next_masked or "
              "neither");
  if (!next_keep.has_value()) {
    return sr_ste_sgd_step_cpu(param, grad, mask, momentum_buffer, lambda_w,
                               lr, momentum, dampening, weight_decay,
                               nesterov, maximize, init_buffer, nullptr);
  }
  const NextMask next{*next_keep, *next_masked, n, m, inner, stream_next};
  TORCH_CHECK(next.keep.sizes() == param.sizes() &&
                  next.keep.scalar_type() == at::kBool &&
                  same_dense_layout(next.keep, param) &&
                  next.keep.device().is_cpu(),
              "sr_ste_sgd_step_: next_keep must be a CPU bool tensor of "
              "param's shape and memory layout");
  TORCH_CHECK(next.masked.sizes() == param.sizes() &&
                  next.masked.scalar_type() == param.scalar_type() &&
                  same_dense_layout(next.masked, param) &&
                  next.masked.device().is_cpu(),
              "sr_ste_sgd_step_: next_masked must be a CPU tensor of "
              "param's shape, dtype and memory layout");
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
