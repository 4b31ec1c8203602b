// Python bindings of mmnm._ext.
#include <torch/extension.h>

#include "cpu/cpu_isa.h"

namespace mmnm {
std::vector<at::Tensor> nm_mask_forward(
    const at::Tensor& grouped, int64_t n, bool with_masked,
    const c10::optional<at::Tensor>& masked_out,
    const c10::optional<at::Tensor>& keep_out);
void sr_ste_add_(at::Tensor grad, const at::Tensor& weight,
                 const at::Tensor& mask, double lambda_w);
bool sr_ste_sgd_step_(at::Tensor param, const at::Tensor& grad,
                      const at::Tensor& mask, at::Tensor momentum_buffer,
                      double lambda_w, double lr, double momentum,
                      double dampening, double weight_decay, bool nesterov,
                      bool maximize, bool init_buffer,
                      const c10::optional<at::Tensor>& next_keep,
                      const c10::optional<at::Tensor>& next_masked, int64_t n,
                      int64_t m, int64_t inner);
at::Tensor straight_through(const at::Tensor& weight,
                            const at::Tensor& masked);
std::tuple<at::Tensor, at::Tensor, at::Tensor> sparse24_compress(
    const at::Tensor& dense);
std::tuple<at::Tensor, at::Tensor> sparse24_decompress(
    const at::Tensor& values, const at::Tensor& meta);
}  // namespace mmnm

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nm_mask_forward", &mmnm::nm_mask_forward,
        "N:M mask of an (A, G, M, B) grouped weight view",
        py::arg("grouped"), py::arg("n"), py::arg("with_masked") = false,
        py::arg("masked_out") = py::none(), py::arg("keep_out") = py::none());
  m.def("sr_ste_add_", &mmnm::sr_ste_add_,
        "grad += lambda_w * (1 - mask) * weight, in place", py::arg("grad"),
        py::arg("weight"), py::arg("mask"), py::arg("lambda_w"));
  m.def("sr_ste_sgd_step_", &mmnm::sr_ste_sgd_step_,
        "torch.optim.SGD step of param on grad + lambda_w * (1 - mask) * "
        "param, in place, in one pass (grad unchanged); with next_keep and "
        "next_masked also the n:m mask and masked weight of the updated "
        "param (its (A, G, m, inner) groups); false if that found NaN/Inf",
        py::arg("param"), py::arg("grad"), py::arg("mask"),
        py::arg("momentum_buffer"), py::arg("lambda_w"), py::arg("lr"),
        py::arg("momentum"), py::arg("dampening"), py::arg("weight_decay"),
        py::arg("nesterov"), py::arg("maximize"), py::arg("init_buffer"),
        py::arg("next_keep") = py::none(), py::arg("next_masked") = py::none(),
        py::arg("n") = 0, py::arg("m") = 0, py::arg("inner") = 0);
  m.def("straight_through", &mmnm::straight_through,
        "masked (a view) in the forward pass; in the backward pass weight "
        "gets masked's gradient unchanged (the straight-through estimator)",
        py::arg("weight"), py::arg("masked"));
  m.def("sparse24_compress", &mmnm::sparse24_compress,
        "(values, meta, num_bad) of a 2:4-sparse 2-D weight in the CUTLASS "
        "layout; num_bad counts groups with more than 2 non-zeros",
        py::arg("dense"));
  m.def("sparse24_decompress", &mmnm::sparse24_decompress,
        "(dense, num_bad) of a CUTLASS 2:4 (values, meta) pair; num_bad "
        "counts invalid meta codes",
        py::arg("values"), py::arg("meta"));
  m.def("cpu_isa", &mmnm::cpu_isa,
        "instruction set of the float32 CPU kernels (M=4 mask, SR-STE "
        "term and SGD step): avx2, sse2 or scalar");
  m.def("set_cpu_isa", &mmnm::set_cpu_isa,
        "choose it: auto (the best the CPU has), avx2, sse2 or scalar",
        py::arg("name"));
  m.def("with_cuda", [] {
#ifdef MMNM_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "whether the CUDA kernels were built");
}
