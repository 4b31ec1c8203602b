// Qualifiers for code shared by the CPU (C++) and CUDA (nvcc) kernels.
#ifndef MMNM_HOST_DEVICE_H
#define MMNM_HOST_DEVICE_H

#ifdef __CUDACC__
#define MMNM_HOST_DEVICE __host__ __device__
#define MMNM_FABS(x) fabs(x)
#else
#include <cmath>
#define MMNM_HOST_DEVICE
#define MMNM_FABS(x) std::fabs(x)
#endif

#endif  // MMNM_HOST_DEVICE_H
