// Dropout, DropConnect and Gaussian noise from the counter-based Philox stream
// (common/philox.h): element i's random word depends only on (seed, offset, i), so masks are
// the same for any thread count and on any device, and backward regenerates them.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/activation.h"
#include "common/box_muller.h"
#include "common/macros.h"
#include "common/philox.h"
#include "common/stream.h"

namespace fdnn {

// y[i] = a(x[i]) * (keep_i ? keep_scale : 0), with keep_i = dropout_keep(r_i, threshold) and a
// the ReLU when relu is set, else the identity. Training dropout (scale 1/(1-p) or 1), its
// backward and DropConnect are all this call.
template <typename T>
void dropout_apply(T* y, const T* x, int64_t n, uint64_t seed, uint64_t offset, uint32_t threshold, T keep_scale,
                   bool relu, Stream stream);

// y[i] = a(x[i]) * scale (evaluation: vanilla dropout's 1 - p, or 1).
template <typename T> void scale_copy(T* y, const T* x, int64_t n, T scale, bool relu, Stream stream);

// mask[i] = keep_i (1 or 0), on the host (the CPU module's dropout_mask).
void dropout_mask(uint8_t* mask, int64_t n, uint64_t seed, uint64_t offset, uint32_t threshold, Stream stream);

// y[i] = x[i] + std * z_i (computed in double), z_i standard normal.
template <typename T>
void gaussian_noise(T* y, const T* x, int64_t n, uint64_t seed, uint64_t offset, double std, Stream stream);

// out[b] = Philox4x32-10(counters[b], key) for n blocks of 4 words, on the host (for known-answer tests).
void philox4x32_10_blocks(uint32_t* out, const uint32_t* counters, int64_t n, uint32_t k0, uint32_t k1, Stream stream);

// The explicit instantiations that both devices' files (dropout_cpu.cpp, dropout_cuda.cu) emit.
#define FDNN_DROPOUT_INSTANTIATE(T)                                                               \
  template void dropout_apply<T>(T*, const T*, int64_t, uint64_t, uint64_t, uint32_t, T, bool, Stream); \
  template void scale_copy<T>(T*, const T*, int64_t, T, bool, Stream);                                  \
  template void gaussian_noise<T>(T*, const T*, int64_t, uint64_t, uint64_t, double, Stream);

}  // namespace fdnn
