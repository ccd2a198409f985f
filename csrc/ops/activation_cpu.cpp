// CPU ReLU passes: vectorized loops over fixed blocks (elementwise, so any split gives the same
// result).
#include "common/isa.h"
#include "common/parallel.h"
#include "ops/activation.h"

namespace fdnn {
namespace {

constexpr int64_t kElementsPerTask = 32 * 1024;

template <typename T>
FDNN_MULTIVERSION void relu_range(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t begin, int64_t end) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) y[i] = relu(x[i]);
}

template <typename T>
FDNN_MULTIVERSION void relu_backward_range(T* FDNN_RESTRICT dx, const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT y,
                                           int64_t begin, int64_t end, T scale) {
#pragma omp simd
  for (int64_t i = begin; i < end; ++i) dx[i] = relu_grad_from_output(dy[i] * scale, y[i]);
}

}  // namespace

template <typename T> void relu_apply(T* y, const T* x, int64_t n, Stream) {
  parallel_for(n, kElementsPerTask, 2, [&](int64_t b, int64_t e) { relu_range(y, x, b, e); });
}

template <typename T> void relu_backward_from_output(T* dx, const T* dy, const T* y, int64_t n, T scale, Stream) {
  parallel_for(n, kElementsPerTask, 3, [&](int64_t b, int64_t e) { relu_backward_range(dx, dy, y, b, e, scale); });
}

FDNN_ACTIVATION_INSTANTIATE(float)
FDNN_ACTIVATION_INSTANTIATE(double)

}  // namespace fdnn
