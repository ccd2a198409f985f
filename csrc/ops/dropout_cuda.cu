// CUDA dropout, DropConnect and Gaussian noise (the CPU twin: dropout_cpu.cpp). One thread
// computes one Philox block (common/philox.h) and handles its 4 elements 4j .. 4j+3, so
// element i uses word i % 4 of block i / 4 on both devices: the masks are the CPU's, bit for
// bit. Gaussian noise pairs words (0, 1) and (2, 3) of a block, as the CPU does.
#include <cstdint>

#include "common/cuda.h"
#include "ops/dropout.h"

namespace fdnn {
namespace {

template <typename T>
__global__ void dropout_kernel(T* y, const T* x, int64_t n, PhiloxStream s, uint32_t threshold, T keep_scale,
                               bool relu) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < blocks; j += int64_t(gridDim.x) * blockDim.x) {
    uint32_t r[4];
    s.block(static_cast<uint64_t>(j), r[0], r[1], r[2], r[3]);
    for (int t = 0; t < 4; ++t) {
      const int64_t i = 4 * j + t;
      if (i < n) y[i] = activate(x[i], relu) * (dropout_keep(r[t], threshold) ? keep_scale : T(0));
    }
  }
}

template <typename T> __global__ void scale_kernel(T* y, const T* x, int64_t n, T scale, bool relu) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = activate(x[i], relu) * scale;
}

template <typename T> __global__ void noise_kernel(T* y, const T* x, int64_t n, PhiloxStream s, double std) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < blocks; j += int64_t(gridDim.x) * blockDim.x) {
    uint32_t r[4];
    s.block(static_cast<uint64_t>(j), r[0], r[1], r[2], r[3]);
    T z[4];  // float normals for float32 outputs, double for float64 (common/box_muller.h)
    box_muller(r[0], r[1], z[0], z[1]);
    box_muller(r[2], r[3], z[2], z[3]);
    for (int t = 0; t < 4; ++t) {
      const int64_t i = 4 * j + t;
      if (i < n) y[i] = static_cast<T>(static_cast<double>(x[i]) + std * z[t]);
    }
  }
}

}  // namespace

template <typename T>
void dropout_apply(T* y, const T* x, int64_t n, uint64_t seed, uint64_t offset, uint32_t threshold, T keep_scale,
                   bool relu, Stream stream) {
  if (n == 0) return;
  dropout_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, cuda_stream(stream)>>>(y, x, n, PhiloxStream(seed, offset),
                                                                                 threshold, keep_scale, relu);
  check_launch("dropout_kernel");
}

template <typename T> void scale_copy(T* y, const T* x, int64_t n, T scale, bool relu, Stream stream) {
  if (n == 0) return;
  scale_kernel<T><<<grid_for(n), kThreads, 0, cuda_stream(stream)>>>(y, x, n, scale, relu);
  check_launch("scale_kernel");
}

template <typename T>
void gaussian_noise(T* y, const T* x, int64_t n, uint64_t seed, uint64_t offset, double std, Stream stream) {
  if (n == 0) return;
  noise_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, cuda_stream(stream)>>>(y, x, n, PhiloxStream(seed, offset),
                                                                               std);
  check_launch("noise_kernel");
}

FDNN_DROPOUT_INSTANTIATE(float)
FDNN_DROPOUT_INSTANTIATE(double)

}  // namespace fdnn
