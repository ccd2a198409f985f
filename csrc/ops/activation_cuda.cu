// CUDA ReLU passes (the CPU twin: activation_cpu.cpp), grid-stride loops.
#include <cstdint>

#include "common/cuda.h"
#include "ops/activation.h"

namespace fdnn {
namespace {

template <typename T> __global__ void relu_kernel(T* y, const T* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = relu(x[i]);
}

template <typename T> __global__ void relu_backward_kernel(T* dx, const T* dy, const T* y, int64_t n, T scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dx[i] = relu_grad_from_output(dy[i] * scale, y[i]);
}

}  // namespace

template <typename T> void relu_apply(T* y, const T* x, int64_t n, Stream stream) {
  if (n == 0) return;
  relu_kernel<T><<<grid_for(n), kThreads, 0, cuda_stream(stream)>>>(y, x, n);
  check_launch("relu_kernel");
}

template <typename T>
void relu_backward_from_output(T* dx, const T* dy, const T* y, int64_t n, T scale, Stream stream) {
  if (n == 0) return;
  relu_backward_kernel<T><<<grid_for(n), kThreads, 0, cuda_stream(stream)>>>(dx, dy, y, n, scale);
  check_launch("relu_backward_kernel");
}

FDNN_ACTIVATION_INSTANTIATE(float)
FDNN_ACTIVATION_INSTANTIATE(double)

}  // namespace fdnn
