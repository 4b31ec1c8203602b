// CPU kernel of the SR-STE gradient term.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

namespace mmnm {

void sr_ste_add_cpu(at::Tensor& grad, const at::Tensor& weight,
                    const at::Tensor& mask, double lambda_w) {
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "sr_ste_add_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        scalar_t* g = grad.data_ptr<scalar_t>();
        const scalar_t* w = weight.data_ptr<scalar_t>();
        const bool* keep = mask.data_ptr<bool>();
        const acc_t lam = static_cast<acc_t>(lambda_w);
        at::parallel_for(0, grad.numel(), 32768, [&](int64_t begin,
                                                     int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            // pruned entries only: a product, not a branch
            const acc_t pruned = static_cast<acc_t>(1 - keep[i]);
            g[i] = static_cast<scalar_t>(static_cast<acc_t>(g[i]) +
                                         lam * pruned *
                                             static_cast<acc_t>(w[i]));
          }
        });
      });
}

}  // namespace mmnm
