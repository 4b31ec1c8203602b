// The straight-through estimator of N:M training as a C++ autograd
// function, on any device: the forward pass returns the masked weight, the
// backward pass gives its gradient to the dense weight unchanged. The same
// as the Python Function in mmnm/ops/straight_through.py, without a call
// into Python per forward and per backward.
#include <torch/csrc/autograd/custom_function.h>

namespace mmnm {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct StraightThrough : public torch::autograd::Function<StraightThrough> {
  static at::Tensor forward(AutogradContext* /*ctx*/,
                            const at::Tensor& /*weight*/,
                            const at::Tensor& masked) {
    return masked;  // autograd returns it as a view (an input, unmodified)
  }

  static variable_list backward(AutogradContext* /*ctx*/,
                                variable_list grads) {
    return {grads[0], at::Tensor()};
  }
};

}  // namespace

at::Tensor straight_through(const at::Tensor& weight,
                            const at::Tensor& masked) {
  TORCH_CHECK(weight.sizes() == masked.sizes(),
              "straight_through: weight and masked shapes differ (",
              weight.sizes(), " vs ", masked.sizes(), ")");
  return StraightThrough::apply(weight, masked);
}

}  // namespace mmnm
