// CUDA augmentation (the CPU twin: augment_cpu.cpp). One thread block per sample: its threads
// resample the sample's elements (augment.h's augment_geometry) and sum their gray-level weights
// (cub::BlockReduce, in double), then finish groups of four elements, so each thread draws the
// Philox block of the elements it writes (element e uses word e % 4 of block e / 4 on both devices:
// the noise and the erase values are the CPU's). The contrast mean is summed in another order than
// on the CPU, so it may differ in its last bits.
#include <cub/cub.cuh>

#include <cstdint>

#include "common/cuda.h"
#include "ops/augment.h"

namespace fdnn {
namespace {

using BlockSum = cub::BlockReduce<double, kThreads>;

template <typename T>
__global__ void augment_kernel(T* y, const T* x, int64_t n, AugmentShape g, const AugmentSample* samples) {
  __shared__ typename BlockSum::TempStorage temp;
  __shared__ double gray_shared;
  const int64_t hw = g.h * g.w, count = g.c * hw;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const AugmentSample s = samples[i];
    const T* xi = x + i * count;
    T* yi = y + i * count;
    const bool contrast = s.contrast != 1.0;
    double local = 0.0;
    for (int64_t e = threadIdx.x; e < count; e += blockDim.x) {
      const int64_t c = e / hw, pix = e - c * hw;
      const T v = augment_geometry(xi + c * hw, pix / g.w, pix % g.w, s, g);
      yi[e] = v;
      if (contrast) local += static_cast<double>(v) * augment_gray_weight(e, g);
    }
    if (contrast) {
      const double total = BlockSum(temp).Sum(local);
      if (threadIdx.x == 0) gray_shared = total;
    }
    __syncthreads();  // y's elements and the gray mean are visible to the whole block
    const double gray = contrast ? gray_shared : 0.0;
    if (augment_needs_finish(s, g)) {
      for (int64_t j = threadIdx.x; j < (count + 3) / 4; j += blockDim.x) augment_finish_quad(yi, j, count, s, g, gray);
    }
    __syncthreads();  // temp and gray_shared are reused by the next sample
  }
}

}  // namespace

template <typename T>
void augment(T* y, const T* x, int64_t n, const AugmentShape& shape, const AugmentSample* samples, Stream stream) {
  const int64_t count = shape.c * shape.h * shape.w;
  if (n == 0 || count == 0) return;
  DeviceBuffer<AugmentSample> device_samples(n, stream);
  cuda_check(cudaMemcpyAsync(device_samples.get(), samples, n * sizeof(AugmentSample), cudaMemcpyHostToDevice,
                             cuda_stream(stream)),
             "cudaMemcpyAsync");
  const unsigned blocks = static_cast<unsigned>(n < 65535 * 8 ? n : 65535 * 8);
  augment_kernel<T><<<blocks, kThreads, 0, cuda_stream(stream)>>>(y, x, n, shape, device_samples.get());
  check_launch("augment_kernel");
}

FDNN_AUGMENT_INSTANTIATE(float)
FDNN_AUGMENT_INSTANTIATE(double)

}  // namespace fdnn
