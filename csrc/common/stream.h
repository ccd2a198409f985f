// The CUDA stream of a call, passed explicitly from the binding to the kernels.
//
// Every kernel declared in csrc/ops/<family>.h takes a `Stream` as its last argument. The
// binding prologue builds it once per call, with the GIL held (`call_stream()` in bind/array.h:
// CuPy's current stream in the CUDA module, the default handle 0 in the CPU module), and hands
// it down; the CPU kernels ignore it. Plain C++ (an opaque handle) so that the bindings and the
// CPU build need no CUDA headers; csrc/common/cuda.h turns it into a cudaStream_t.
#pragma once

#include <cstdint>

namespace fdnn {

struct Stream {
  uintptr_t handle = 0;  // a cudaStream_t; 0 = the legacy default stream (and the CPU's "no stream")
};

}  // namespace fdnn
