// Python bindings of mmnm._ext.
#include <torch/extension.h>

namespace mmnm {
std::vector<at::Tensor> nm_mask_forward(const at::Tensor& grouped, int64_t n,
                                        bool with_masked);
void sr_ste_add_(at::Tensor grad, const at::Tensor& weight,
                 const at::Tensor& mask, double lambda_w);
}  // namespace mmnm

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nm_mask_forward", &mmnm::nm_mask_forward,
        "N:M mask of an (A, G, M, B) grouped weight view",
        py::arg("grouped"), py::arg("n"), py::arg("with_masked") = false);
  m.def("sr_ste_add_", &mmnm::sr_ste_add_,
        "grad += lambda_w * (1 - mask) * weight, in place", py::arg("grad"),
        py::arg("weight"), py::arg("mask"), py::arg("lambda_w"));
  m.def("with_cuda", [] {
#ifdef MMNM_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "whether the CUDA kernels were built");
}
