// Linear layer y = act(x @ w.T + b): the element math shared by the CPU and CUDA builds, and
// the CPU entry points. Plain C++ (no CUDA includes).
//
// Every entry point takes the call's Stream last (common/stream.h); the CPU ignores it.
//
// Shapes (row-major, contiguous): x (n, in), w (out, in), b (out) or null, y and dy (n, out),
// dx (n, in), dw (out, in), db (out) or null.
#pragma once

#include <cstdint>

#include "common/activation.h"
#include "common/macros.h"
#include "common/stream.h"

namespace fdnn {

// y = act(x @ w.T + b).
template <typename T>
void linear(T* y, const T* x, const T* w, const T* b, int64_t n, int64_t in, int64_t out, Activation act,
            Stream stream);

// dz = dy * act'(y); dx = dz @ w; dw = dz.T @ x; db = sum_rows(dz). Any of dx, dw, db may be
// null to skip it. y is needed only when act != none.
template <typename T>
void linear_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, int64_t n, int64_t in,
                     int64_t out, Activation act, Stream stream);

// The explicit instantiations that both devices' files (linear_cpu.cpp, linear_cuda.cu) emit.
#define FDNN_LINEAR_INSTANTIATE(T)                                                                           \
  template void linear<T>(T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, Activation, Stream); \
  template void linear_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, int64_t, int64_t,     \
                                   int64_t, Activation, Stream);

}  // namespace fdnn
