// The CUDA stream of the current call, as an opaque handle (0 = the default stream). The CuPy
// bindings set it to CuPy's current stream while they read the call's arrays (with the GIL
// held); the CUDA kernels launch on it. Plain C++ so that the bindings need no CUDA headers.
#pragma once

#include <cstdint>

namespace fdnn {

inline uintptr_t& current_stream_handle() {
  thread_local uintptr_t handle = 0;
  return handle;
}

}  // namespace fdnn
