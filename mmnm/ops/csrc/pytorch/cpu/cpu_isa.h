// The instruction set the float32 CPU kernels run on: the best the CPU
// has, unless set_cpu_isa chose a lower one (tests and benchmarks compare
// them). AVX2 and AVX-512 kernels are compiled into every x86-64 GCC/Clang
// build through function target attributes (the rest of the code keeps the
// baseline ISA) and chosen at run time. Only the mask has AVX-512 kernels
// (on AVX2, 3x3 rows take two overlapping steps and cost instructions; the
// other kernels run at memory speed either way); with kAvx512 the other
// kernels run their AVX2 versions.
#pragma once

#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__SSE2__) && defined(__x86_64__) && defined(__GNUC__)
#define MMNM_HAVE_AVX2 1
// GCC 12 warns of its own AVX-512 intrinsics that fill an unused operand
// with an undefined value (GCC bug 105593). The warning points into the
// header, so this silences it as long as this is the first include of
// immintrin.h (it is, after the ATen headers of torch 2.13).
#if !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#define MMNM_AVX2 __attribute__((target("avx2")))
#define MMNM_AVX512 \
  __attribute__((target("avx2,avx512f,avx512bw,avx512vl")))
#endif

namespace mmnm {

enum class CpuIsa : int { kScalar = 0, kSse2 = 1, kAvx2 = 2, kAvx512 = 3 };

// The instruction set the kernels use now.
CpuIsa active_cpu_isa();

// Its name ("avx512", "avx2", "sse2" or "scalar"); set_cpu_isa takes these
// and "auto".
std::string cpu_isa();
void set_cpu_isa(const std::string& name);

}  // namespace mmnm
