// ReLU forward and backward as elementwise passes, for the layers that do not fuse it into
// another kernel's epilogue (common/activation.h has the element math). Plain C++.
#pragma once

#include <cstdint>

#include "common/activation.h"
#include "common/macros.h"
#include "common/stream.h"

namespace fdnn {

// y[i] = relu(x[i]).
template <typename T> void relu_apply(T* y, const T* x, int64_t n, Stream stream);

// dx[i] = y[i] > 0 ? dy[i] * scale : 0, from the forward's output y: the backward of relu(x)
// (scale 1), and of dropout(relu(x)) (scale 1/(1-p), or 1 for vanilla dropout), whose output
// is positive exactly where the unit was kept and active, so no mask is regenerated. A select,
// as relu_grad_from_output: an infinite dy where y <= 0 gives 0.
template <typename T>
void relu_backward_from_output(T* dx, const T* dy, const T* y, int64_t n, T scale, Stream stream);

// The explicit instantiations that both devices' files (activation_cpu.cpp, activation_cuda.cu) emit.
#define FDNN_ACTIVATION_INSTANTIATE(T)                           \
  template void relu_apply<T>(T*, const T*, int64_t, Stream); \
  template void relu_backward_from_output<T>(T*, const T*, const T*, int64_t, T, Stream);

}  // namespace fdnn
