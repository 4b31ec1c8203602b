// Python bindings of mmnm._ext.
#include <torch/extension.h>

namespace mmnm {
std::vector<at::Tensor> nm_mask_forward(const at::Tensor& grouped, int64_t n,
                                        bool with_masked);
}  // namespace mmnm

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("nm_mask_forward", &mmnm::nm_mask_forward,
        "N:M mask of an (A, G, M, B) grouped weight view",
        py::arg("grouped"), py::arg("n"), py::arg("with_masked") = false);
  m.def("with_cuda", [] {
#ifdef MMNM_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "whether the CUDA kernels were built");
}
