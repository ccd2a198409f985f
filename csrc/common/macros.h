// Portability macros shared by the CPU and CUDA builds. Plain C++: no CUDA or pybind11 includes.
#pragma once

#if defined(__CUDACC__)
#define FDNN_HD __host__ __device__
#else
#define FDNN_HD
#endif

#define FDNN_RESTRICT __restrict__
