// CPU ReLU passes: vectorized loops over fixed blocks (elementwise, so any split gives the same
// result). Large float32 outputs are written with streaming stores (cpu/stream_store.h).
#include <type_traits>

#include "common/isa.h"
#include "common/parallel.h"
#include "cpu/stream_store.h"
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

#if FDNN_HAS_STREAM_STORE
// The same passes on float32 with streaming stores: max(0, v) returns v unless 0 > v, as relu();
// the backward's select is the compare mask ANDed with dy * scale.
void relu_range_streamed(float* y, const float* x, int64_t begin, int64_t end) {
  const __m128 zero = _mm_setzero_ps();
  stream_loop(
      y + begin, end - begin, [&](int64_t i) { return relu(x[begin + i]); },
      [&](int64_t i) { return _mm_max_ps(zero, _mm_loadu_ps(x + begin + i)); });
  stream_fence();
}

void relu_backward_range_streamed(float* dx, const float* dy, const float* y, int64_t begin, int64_t end,
                                  float scale) {
  const __m128 zero = _mm_setzero_ps(), s = _mm_set1_ps(scale);
  stream_loop(
      dx + begin, end - begin, [&](int64_t i) { return relu_grad_from_output(dy[begin + i] * scale, y[begin + i]); },
      [&](int64_t i) {
        const __m128 g = _mm_mul_ps(_mm_loadu_ps(dy + begin + i), s);
        return _mm_and_ps(_mm_cmpgt_ps(_mm_loadu_ps(y + begin + i), zero), g);
      });
  stream_fence();
}
#endif

}  // namespace

template <typename T> void relu_apply(T* y, const T* x, int64_t n, Stream) {
#if FDNN_HAS_STREAM_STORE
  if constexpr (std::is_same_v<T, float>) {
    if (stream_output(n * static_cast<int64_t>(sizeof(T)))) {
      parallel_for(n, kElementsPerTask, 2, [&](int64_t b, int64_t e) { relu_range_streamed(y, x, b, e); });
      return;
    }
  }
#endif
  parallel_for(n, kElementsPerTask, 2, [&](int64_t b, int64_t e) { relu_range(y, x, b, e); });
}

template <typename T> void relu_backward_from_output(T* dx, const T* dy, const T* y, int64_t n, T scale, Stream) {
#if FDNN_HAS_STREAM_STORE
  if constexpr (std::is_same_v<T, float>) {
    if (stream_output(n * static_cast<int64_t>(sizeof(T)))) {
      parallel_for(n, kElementsPerTask, 3,
                   [&](int64_t b, int64_t e) { relu_backward_range_streamed(dx, dy, y, b, e, scale); });
      return;
    }
  }
#endif
  parallel_for(n, kElementsPerTask, 3, [&](int64_t b, int64_t e) { relu_backward_range(dx, dy, y, b, e, scale); });
}

FDNN_ACTIVATION_INSTANTIATE(float)
FDNN_ACTIVATION_INSTANTIATE(double)

}  // namespace fdnn
