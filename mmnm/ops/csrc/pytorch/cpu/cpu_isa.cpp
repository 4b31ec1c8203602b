// Run-time choice of the CPU kernels' instruction set (see cpu_isa.h).
#include "cpu_isa.h"

#include <c10/util/Exception.h>

#include <atomic>

namespace mmnm {

namespace {

CpuIsa best_cpu_isa() {
#if defined(MMNM_HAVE_AVX2)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") &&
      __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    return CpuIsa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2")) {
    return CpuIsa::kAvx2;
  }
#endif
#if defined(__SSE2__)
  return CpuIsa::kSse2;
#else
  return CpuIsa::kScalar;
#endif
}

std::atomic<int>& active_isa() {
  static std::atomic<int> isa{static_cast<int>(best_cpu_isa())};
  return isa;
}

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512:
      return "avx512";
    case CpuIsa::kAvx2:
      return "avx2";
    case CpuIsa::kSse2:
      return "sse2";
    default:
      return "scalar";
  }
}

}  // namespace

CpuIsa active_cpu_isa() { return static_cast<CpuIsa>(active_isa().load()); }

std::string cpu_isa() { return isa_name(active_cpu_isa()); }

void set_cpu_isa(const std::string& name) {
  const CpuIsa best = best_cpu_isa();
  if (name == "auto") {
    active_isa() = static_cast<int>(best);
    return;
  }
  for (const CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kSse2, CpuIsa::kAvx2,
                           CpuIsa::kAvx512}) {
    if (name != isa_name(isa)) continue;
    TORCH_CHECK(static_cast<int>(isa) <= static_cast<int>(best),
                "set_cpu_isa: this CPU or build has no ", name,
                " kernels (best: ", isa_name(best), ")");
    active_isa() = static_cast<int>(isa);
    return;
  }
  TORCH_CHECK(false, "set_cpu_isa: unknown instruction set '", name,
              "' (auto, avx512, avx2, sse2 or scalar)");
}

}  // namespace mmnm
