// Philox4x32-10 rounds on 16 counters with AVX-512F intrinsics (x86-64 only). GCC lowers the
// generic 64-bit lane products of dropout_cpu.cpp's mulhilo to vpmullq, which Intel cores run
// at a third of vpmuludq's rate (0.89 vs 0.47 ns per element per core, measured on a Xeon
// 2026-11-30); dropout_cpu.cpp calls this instead when the CPU has AVX-512F. A file of its own:
// GCC 12 fails (internal compiler error) on a target("avx512f") function next to the vector
// extension code of dropout_cpu.cpp.
#pragma once

#include <cstdint>

namespace fdnn {

// c[0, 64) holds counter words c0, c1, c2, c3 of 16 blocks (16 lanes each); replaced by the
// blocks' output words, in the same layout, after the 10 rounds with key (k0, k1).
void philox_rounds_avx512(uint32_t* c, uint32_t k0, uint32_t k1);

// y[i] = x[i] scale + (mean + std z_i) for i in [0, n) in float (scale, mean and std rounded to
// float; without the product when scale is 1 and without mean when it is 0), z_i being the float
// standard normal of element 4 j0 + i of the stream with key (k0, k1) and offset words (o0, o1):
// word i % 4 of Philox block j0 + i / 4, Box-Muller on each block's word pairs (0, 1) and (2, 3)
// with common/box_muller.h's float polynomials (the same reductions and coefficients, with fused
// multiply-adds). 32 blocks at a time in registers. y may be x.
void add_normals_f32_avx512(float* y, const float* x, int64_t n, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1,
                            uint64_t j0, double scale, double mean, double std);

}  // namespace fdnn
