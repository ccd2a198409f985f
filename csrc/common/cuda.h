// Helpers of the CUDA kernels (included by .cu files only): the call's stream, error checks
// (every launch is checked; errors become Python RuntimeErrors through std::runtime_error),
// grid sizes and scratch device memory.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/stream.h"

namespace fdnn {

inline cudaStream_t stream() { return reinterpret_cast<cudaStream_t>(current_stream_handle()); }

inline void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

// After every launch: a bad configuration or an earlier asynchronous fault is reported here.
inline void check_launch(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items (at least 1, at most 65535 * 8).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535 * 8)));
}

// Device memory for the duration of one call, allocated and freed on the call's stream.
template <typename T> class DeviceBuffer {
 public:
  explicit DeviceBuffer(int64_t n) {
    if (n > 0) cuda_check(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), n * sizeof(T), stream()), "cudaMallocAsync");
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream());
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }

 private:
  T* ptr_ = nullptr;
};

// Copies n values from the device to the host and waits for them (results returned to Python).
template <typename T> void copy_to_host(T* host, const T* device, int64_t n) {
  cuda_check(cudaMemcpyAsync(host, device, n * sizeof(T), cudaMemcpyDeviceToHost, stream()), "cudaMemcpyAsync");
  cuda_check(cudaStreamSynchronize(stream()), "cudaStreamSynchronize");
}

}  // namespace fdnn
