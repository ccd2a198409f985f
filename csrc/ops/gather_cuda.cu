// CUDA row gather (the CPU twin: gather_cpu.cpp): a grid-stride loop over the output elements.
#include <cstdint>

#include "common/cuda.h"
#include "ops/gather.h"

namespace fdnn {
namespace {

template <typename T>
__global__ void gather_rows_kernel(T* out, const T* x, const int64_t* index, int64_t m, int64_t row) {
  const int64_t count = m * row;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count; e += int64_t(gridDim.x) * blockDim.x)
    out[e] = x[index[e / row] * row + e % row];
}

}  // namespace

template <typename T>
void gather_rows(T* out, const T* x, const int64_t* index, int64_t m, int64_t row, Stream stream) {
  if (m == 0 || row == 0) return;
  gather_rows_kernel<T><<<grid_for(m * row), kThreads, 0, cuda_stream(stream)>>>(out, x, index, m, row);
  check_launch("gather_rows_kernel");
}

FDNN_GATHER_INSTANTIATE(float)
FDNN_GATHER_INSTANTIATE(double)

}  // namespace fdnn
