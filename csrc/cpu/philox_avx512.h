// Philox4x32-10 rounds on 16 counters with AVX-512F intrinsics (x86-64 only). GCC lowers the
// generic 64-bit lane products of dropout_cpu.cpp's mulhilo to vpmullq, which Intel cores run
// at a third of vpmuludq's rate (0.89 vs 0.47 ns per element per core, measured on a Xeon
// 2026-11-30); dropout_cpu.cpp calls this instead when the CPU has AVX-512F. A file of its own:
// GCC 12 fails (internal compiler error) on a target("avx512f") function next to the vector
// extension code of dropout_cpu.cpp. Also the fused kernels of dropout (keep bits as write
// masks) and of float32 noise, whose Philox runs on 64-bit lanes (two products, two shifts and
// two three-way xors per 8 blocks and round) with independent registers interleaved.
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

// y[i] = z_i for i in [0, n): the float standard normals of add_normals_f32_avx512 alone
// (augment's random erasing).
void normals_f32_avx512(float* y, int64_t n, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1, uint64_t j0);
// Whether the CPU runs the dropout functions below (AVX-512F and BMI2).
bool dropout_avx512_supported();

// Dropout on elements [4 j0, 4 j0 + n) of the stream with key (k0, k1) and offset words (o0, o1):
// y[i] = a(x[i]) * (keep ? keep_scale : 0), keep = dropout_keep(word, threshold) of the element's
// Philox word (common/philox.h), a the ReLU when relu is set. Philox runs on 64-bit lanes, 32
// blocks a step with the round chains interleaved; the keep bits are applied as write masks.
// With stream set (y float-aligned and not overlapping x), y is written with streaming stores
// (cpu/stream_store.h's rule for large outputs) and the call ends with an sfence.
void dropout_f32_avx512(float* y, const float* x, int64_t n, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1,
                        uint64_t j0, uint32_t threshold, float keep_scale, bool relu, bool stream);
void dropout_f64_avx512(double* y, const double* x, int64_t n, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1,
                        uint64_t j0, uint32_t threshold, double keep_scale, bool relu);
// mask[i] = keep (1 or 0) of element 4 j0 + i, i in [0, n).
void dropout_mask_avx512(uint8_t* mask, int64_t n, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1, uint64_t j0,
                         uint32_t threshold);

}  // namespace fdnn
