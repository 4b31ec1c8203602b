// The CPU kernels of the SR-STE term and of the SGD step it is fused into.
#pragma once

#include <ATen/core/Tensor.h>

namespace mmnm {

// Where the fused SGD step also writes the N:M mask (keep) and masked
// weight of the weight it has just updated: contiguous tensors of the
// weight's shape, bool and weight dtype, grouped as an (A, G, m, inner)
// view (see nm_mask_rows_cpu), n kept per group. With stream, both are
// written with non-temporal stores, past the caches: for training whose
// masked weights exceed the last-level cache, where they would be evicted
// before the next forward reads them (a plain store first reads each
// line in).
struct NextMask {
  at::Tensor keep;
  at::Tensor masked;
  int64_t n;
  int64_t m;
  int64_t inner;
  bool stream;
};

void sr_ste_add_cpu(at::Tensor& grad, const at::Tensor& weight,
                    const at::Tensor& mask, double lambda_w);

// Returns false if next is given and the updated weight holds NaN or Inf
// (the next mask is then meaningless); true otherwise.
bool sr_ste_sgd_step_cpu(at::Tensor& param, const at::Tensor& grad,
                         const at::Tensor& mask, at::Tensor& momentum_buffer,
                         double lambda_w, double lr, double momentum,
                         double dampening, double weight_decay, bool nesterov,
                         bool maximize, bool init_buffer,
                         const NextMask* next);

}  // namespace mmnm
