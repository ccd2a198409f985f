// Row-major GEMM with a fused epilogue, the CPU building block of linear:
//
//   C (m x n) = act(op(A) op(B) + bias)
//
// op(A) is m x k (A is stored k x m when trans_a), op(B) is k x n (B is stored n x k when
// trans_b); all operands are contiguous row-major; bias has n entries or is null; act is the
// identity or ReLU (NaN stays NaN). k = 0 gives C = act(bias), or 0.
//
// Two kernels, chosen once per process: fusednn's own AVX-512 kernel (gemm_avx512_cpu.cpp)
// on CPUs with AVX-512F, and OpenBLAS over a fixed tiling of C elsewhere (gemm_cpu.cpp).
// Either way the result does not depend on the thread count: every element is computed by
// the same instructions in the same order whichever thread computes it.
#pragma once

#include <cstdint>
#include <string>

namespace fdnn {

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c, const T* bias,
          bool relu);

// The kernels gemm can run: "fusednn-avx512" (where the CPU has AVX-512F) and "openblas".
bool gemm_kernel_available(const std::string& name);
// The kernel gemm runs now, and a switch for tests and benchmarks (throws ValueError for an
// unknown or unavailable name).
std::string gemm_kernel();
void set_gemm_kernel(const std::string& name);

// The AVX-512 kernel (gemm_avx512_cpu.cpp): whether this CPU can run it, and the kernel itself,
// with gemm's contract for k >= 1.
bool gemm_avx512_supported();
template <typename T>
void gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c,
                 const T* bias, bool relu);

}  // namespace fdnn
