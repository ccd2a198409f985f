// Row gathers: out[i] = x[index[i]] for rows of `row` elements, the minibatch copy of a
// training loop (x[idx] in NumPy). Plain C++ (no CUDA includes).
#pragma once

#include <cstdint>

#include "common/stream.h"

namespace fdnn {

// index: m values in [0, rows of x), checked by the caller (on a private copy: see host_indices).
template <typename T>
void gather_rows(T* out, const T* x, const int64_t* index, int64_t m, int64_t row, Stream stream);

// The explicit instantiations that both devices' files (gather_cpu.cpp, gather_cuda.cu) emit.
#define FDNN_GATHER_INSTANTIATE(T) \
  template void gather_rows<T>(T*, const T*, const int64_t*, int64_t, int64_t, Stream);

}  // namespace fdnn
