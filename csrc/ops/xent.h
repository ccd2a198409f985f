// Softmax, log-softmax and softmax cross-entropy: the row math shared by the CPU and CUDA
// builds, and the entry points. Plain C++ (no CUDA includes). Every entry point takes the
// call's Stream last (common/stream.h); the CPU ignores it.
//
// A row z of K logits: m = max z, s = sum_j exp(z_j - m), and -log p_j = nll_j = (m - z_j) + log s,
// a sum of two non-negative terms, so logits of any magnitude lose no precision (log-softmax is
// (z_j - m) - log s for the same reason: m + log s rounded first would lose the low bits of
// every output once |m| is large). The sums over a row (s, and those below) are accumulated in
// blocks of at most 1024 terms in T, the block sums in double: the relative error of a row sum
// stays that of a 1024-term float sum however long the row (a float accumulator over 3e8 terms
// is off by more than 10%).
//
// Cross-entropy of row z with label y, class weights w (1 without weights) and the smoothed
// target q_j = b + a [j == y] (q_y = a + b):
//   loss = sum_j w_j q_j nll_j = tw(q_y, w_y) nll_y + b sum_{j != y} w_j nll_j
//   dloss/dz_j = (sum_i tw(q_i, w_i)) p_j - tw(q_j, w_j)
// where tw(q, w) = w q, taken as 0 when q = 0 whatever w: a class with no target probability
// contributes nothing, so an infinite weight on a class that is not the label (and no smoothing)
// leaves the row finite, as in the reference, instead of 0 * inf = NaN everywhere.
#pragma once

#include <cstdint>

#include "common/macros.h"
#include "common/stream.h"

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

// w q, the weight of a class in the loss and gradient: 0 when its target probability q is 0.
FDNN_HD inline double target_weight(double q, double w) { return q == 0.0 ? 0.0 : q * w; }

// The label's target weight tw(q_y, w_y).
FDNN_HD inline double label_target_weight(XentTarget t, double w_y) { return target_weight(t.a + t.b, w_y); }

// The row loss from its reductions: nll_y = (m - z_y) + log s, others = sum_{j != y} w_j nll_j
// (not read when b = 0).
// A label whose target probability is 0 (label_smoothing = 1 with smoothing="others") adds
// nothing, even where its logit is -inf: 0 log 0 = 0.
FDNN_HD inline double xent_row_loss(XentTarget t, double nll_y, double w_y, double others) {
  const double hard = t.a + t.b == 0.0 ? 0.0 : label_target_weight(t, w_y) * nll_y;
  return t.b == 0.0 ? hard : hard + t.b * others;
}

// sum_i tw(q_i, w_i), the coefficient of p_j in the gradient; w_others = sum_{j != y} w_j.
FDNN_HD inline double xent_grad_p_coefficient(XentTarget t, double w_y, double w_others) {
  return label_target_weight(t, w_y) + target_weight(t.b, w_others);
}

// sum_{j != y} w_j as W - w_y (W = sum_j w_j), valid when both are finite; otherwise (an
// infinite or NaN weight) the kernels sum the other classes' weights directly.
FDNN_HD inline bool finite_value(double x) { return x - x == 0.0; }  // false for +-inf and NaN
FDNN_HD inline bool others_weight_by_difference(double w_sum, double w_y) {
  return finite_value(w_sum) && finite_value(w_y);
}

// log-softmax of one value: (z - m) - log s.
template <typename T> FDNN_HD inline T log_softmax_value(T z, T m, T log_s) { return (z - m) - log_s; }

// p = softmax(x) over the last axis of an (n, k) array.
template <typename T> void softmax(T* y, const T* x, int64_t n, int64_t k, Stream stream);
template <typename T> void log_softmax(T* y, const T* x, int64_t n, int64_t k, Stream stream);
// dx = y * (dy - sum(dy * y)), y the softmax output.
template <typename T> void softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k, Stream stream);
// dx = dy - exp(y) * sum(dy), y the log-softmax output.
template <typename T> void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k, Stream stream);

// Cross-entropy of (n, k) logits against labels (already checked: in [0, k) or ignore_index).
// row_loss (n) receives the per-row losses when not null; dlogits (n, k) the gradient of the
// reduced loss when not null. Returns the sum of the row losses (reduction sum), divided by the
// sum of w_y over non-ignored rows for mean, or 0 for none.
template <typename T>
double softmax_cross_entropy(T* row_loss, T* dlogits, const T* logits, const int64_t* labels, const T* weight, int64_t n,
                             int64_t k, int64_t ignore_index, double label_smoothing, Smoothing smoothing,
                             Reduction reduction, Stream stream);

// The explicit instantiations that both devices' files (xent_cpu.cpp, xent_cuda.cu) emit.
#define FDNN_XENT_INSTANTIATE(T)                                                                                        \
  template void softmax<T>(T*, const T*, int64_t, int64_t, Stream);                                                \
  template void log_softmax<T>(T*, const T*, int64_t, int64_t, Stream);                                            \
  template void softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, Stream);                             \
  template void log_softmax_backward<T>(T*, const T*, const T*, int64_t, int64_t, Stream);                         \
  template double softmax_cross_entropy<T>(T*, T*, const T*, const int64_t*, const T*, int64_t, int64_t, int64_t, \
                                           double, Smoothing, Reduction, Stream);

}  // namespace fdnn
