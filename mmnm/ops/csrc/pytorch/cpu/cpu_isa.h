// The instruction set the float32 CPU kernels run on: the best the CPU
// has, unless set_cpu_isa chose a lower one (tests and benchmarks compare
// them). AVX2 kernels are compiled into every x86-64 GCC/Clang build through
// function target attributes (the rest of the code keeps the baseline ISA)
// and chosen at run time.
#pragma once

#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__SSE2__) && defined(__x86_64__) && defined(__GNUC__)
#define MMNM_HAVE_AVX2 1
#include <immintrin.h>
#define MMNM_AVX2 __attribute__((target("avx2")))
#endif

namespace mmnm {

enum class CpuIsa : int { kScalar = 0, kSse2 = 1, kAvx2 = 2 };

// The instruction set the kernels use now.
CpuIsa active_cpu_isa();

// Its name ("avx2", "sse2" or "scalar"); set_cpu_isa takes these and "auto".
std::string cpu_isa();
void set_cpu_isa(const std::string& name);

}  // namespace mmnm
