// Helpers of the CUDA kernels (included by .cu files only): the call's stream as a cudaStream_t, error checks
// (every launch is checked; errors become Python RuntimeErrors through std::runtime_error),
// grid sizes and scratch device memory.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/stream.h"

namespace fdnn {

inline cudaStream_t cuda_stream(Stream s) { return reinterpret_cast<cudaStream_t>(s.handle); }

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

// The current device's default memory pool keeps what it has once allocated (release
// threshold: unlimited) instead of handing it back to the OS at every synchronize, so the
// scratch of one call is reused by the next. Set once per device, on its first scratch buffer.
inline void keep_pool_memory() {
  constexpr int kMaxDevices = 64;
  static std::atomic<bool> configured[kMaxDevices] = {};
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  if (device < 0 || device >= kMaxDevices || configured[device]) return;
  cudaMemPool_t pool;
  cuda_check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
  uint64_t threshold = UINT64_MAX;
  cuda_check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute");
  configured[device] = true;  // two threads racing here both set the same value
}

// Device memory for the duration of one call, allocated and freed on the call's stream from the
// device's pool (see keep_pool_memory).
template <typename T> class DeviceBuffer {
 public:
  DeviceBuffer(int64_t n, Stream s) : stream_(cuda_stream(s)) {
    if (n <= 0) return;
    keep_pool_memory();
    cuda_check(cudaMallocAsync(reinterpret_cast<void**>(&ptr_), n * sizeof(T), stream_), "cudaMallocAsync");
  }
  ~DeviceBuffer() {
    if (ptr_) cudaFreeAsync(ptr_, stream_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }

 private:
  cudaStream_t stream_;
  T* ptr_ = nullptr;
};

// Copies n values from the device to the host and waits for them (results returned to Python).
template <typename T> void copy_to_host(T* host, const T* device, int64_t n, Stream s) {
  cuda_check(cudaMemcpyAsync(host, device, n * sizeof(T), cudaMemcpyDeviceToHost, cuda_stream(s)), "cudaMemcpyAsync");
  cuda_check(cudaStreamSynchronize(cuda_stream(s)), "cudaStreamSynchronize");
}

}  // namespace fdnn
