// Softmax, log-softmax and softmax cross-entropy: the row math shared by the CPU and CUDA
// builds, and the CPU entry points. Plain C++ (no CUDA includes).
//
// Cross-entropy of a row z (K logits) with label y, class weights w (1 without weights) and
// the smoothed target q_j = b + a [j == y]:
//   loss = -sum_j w_j q_j log p_j = a w_y ((m - z_y) + log s) + b (sum_j w_j (m - z_j) + W log s)
// with m = max z, s = sum_j exp(z_j - m), W = sum_j w_j (every term non-negative, so logits
// of any magnitude lose no precision), and the gradient
//   dloss/dz_j = (a w_y + b W) p_j - w_j q_j.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace fdnn {

enum class Smoothing { others = 0, all = 1 };
enum class Reduction { none = 0, sum = 1, mean = 2 };

// q_j = b + a [j == y] for label smoothing eps over k classes.
struct XentTarget {
  double a, b;
};
FDNN_HD inline XentTarget xent_target(double eps, int64_t k, Smoothing smoothing) {
  if (smoothing == Smoothing::others) {
    const double b = k > 1 ? eps / static_cast<double>(k - 1) : 0.0;
    return {1.0 - eps - b, b};
  }
  const double b = eps / static_cast<double>(k);
  return {1.0 - eps, b};
}

// The row loss from its reductions: lse_tail = log s, z_gap_y = m - z_y,
// weighted_gap = sum_j w_j (m - z_j), w_y and W as above.
FDNN_HD inline double xent_row_loss(XentTarget t, double log_s, double z_gap_y, double weighted_gap, double w_y,
                                    double w_sum) {
  return t.a * w_y * (z_gap_y + log_s) + t.b * (weighted_gap + w_sum * log_s);
}

// p = softmax(x) over the last axis of an (n, k) array.
template <typename T> void softmax(T* y, const T* x, int64_t n, int64_t k);
template <typename T> void log_softmax(T* y, const T* x, int64_t n, int64_t k);
// dx = y * (dy - sum(dy * y)), y the softmax output.
template <typename T> void softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k);
// dx = dy - exp(y) * sum(dy), y the log-softmax output.
template <typename T> void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k);

// Cross-entropy of (n, k) logits against labels (already checked: in [0, k) or ignore_index).
// row_loss (n) receives the per-row losses when not null; dlogits (n, k) the gradient of the
// reduced loss when not null. Returns the sum of the row losses (reduction sum), divided by the
// sum of w_y over non-ignored rows for mean, or 0 for none.
template <typename T>
double softmax_cross_entropy(T* row_loss, T* dlogits, const T* logits, const int64_t* labels, const T* weight, int64_t n,
                             int64_t k, int64_t ignore_index, double label_smoothing, Smoothing smoothing,
                             Reduction reduction);

// The explicit instantiations that both devices' files (xent_cpu.cpp, xent_cuda.cu) emit.
#define FDNN_XENT_INSTANTIATE(T)                                                                                        \
  template void softmax<T>(T*, const T*, int64_t, int64_t);                                                        \
  template void log_softmax<T>(T*, const T*, int64_t, int64_t);                                                    \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                                     \
  template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t);                                 \
  template double softmax_cross_entropy<T>(T*, T*, const T*, const int64_t*, const T*, int64_t, int64_t, int64_t, \
                                           double, Smoothing, Reduction);

}  // namespace fdnn
