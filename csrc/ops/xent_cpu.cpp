// CPU softmax and cross-entropy: rows in fixed blocks over threads; each row is read from
// memory once (later passes over it hit L1/L2), exp is the vectorizable vexp, and the
// cross-entropy gradient is written in the same pass without storing probabilities.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/isa.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "common/vmath.h"
#include "ops/xent.h"

namespace fdnn {
namespace {

int64_t rows_per_block(int64_t k) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, k)); }

template <typename T> inline T row_max(const T* FDNN_RESTRICT z, int64_t k) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < k; ++j) m = z[j] > m ? z[j] : m;
  return m;
}

// e_j = exp(z_j - m) into e (may be null); returns sum_j e_j.
template <typename T> inline T exp_shifted(T* FDNN_RESTRICT e, const T* FDNN_RESTRICT z, T m, int64_t k) {
  T s = 0;
  if (e) {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < k; ++j) {
      const T v = vexp(z[j] - m);
      e[j] = v;
      s += v;
    }
  } else {
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < k; ++j) s += vexp(z[j] - m);
  }
  return s;
}

template <typename T>
FDNN_MULTIVERSION void softmax_rows(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t r0, int64_t r1, int64_t k,
                                    bool log) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* z = x + r * k;
    T* out = y + r * k;
    const T m = row_max(z, k);
    if (log) {
      const T shift = m + static_cast<T>(std::log(static_cast<double>(exp_shifted<T>(nullptr, z, m, k))));
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) out[j] = z[j] - shift;
    } else {
      const T inv = T(1) / exp_shifted(out, z, m, k);
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) out[j] *= inv;
    }
  }
}

template <typename T>
FDNN_MULTIVERSION void softmax_backward_rows(T* FDNN_RESTRICT dx, const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT y,
                                             int64_t r0, int64_t r1, int64_t k, bool log) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = dy + r * k;
    const T* p = y + r * k;
    T* d = dx + r * k;
    T dot = 0;
    if (log) {
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < k; ++j) dot += g[j];
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) d[j] = g[j] - vexp(p[j]) * dot;
    } else {
#pragma omp simd reduction(+ : dot)
      for (int64_t j = 0; j < k; ++j) dot += g[j] * p[j];
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) d[j] = p[j] * (g[j] - dot);
    }
  }
}

template <typename T>
FDNN_MULTIVERSION void xent_rows(double* FDNN_RESTRICT row_loss, T* FDNN_RESTRICT dlogits,
                                 const T* FDNN_RESTRICT logits, const int64_t* FDNN_RESTRICT labels,
                                 const T* FDNN_RESTRICT weight, double w_sum, int64_t r0, int64_t r1, int64_t k,
                                 int64_t ignore_index, XentTarget t, double scale) {
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t label = labels[r];
    T* d = dlogits ? dlogits + r * k : nullptr;
    if (label == ignore_index) {
      row_loss[r] = 0.0;
      if (d) std::fill(d, d + k, T(0));
      continue;
    }
    const T* z = logits + r * k;
    const T m = row_max(z, k);
    const T s = exp_shifted(d, z, m, k);
    T gap = 0;  // sum_j w_j (m - z_j)
    if (t.b != 0.0) {
      if (weight) {
#pragma omp simd reduction(+ : gap)
        for (int64_t j = 0; j < k; ++j) gap += weight[j] * (m - z[j]);
      } else {
#pragma omp simd reduction(+ : gap)
        for (int64_t j = 0; j < k; ++j) gap += m - z[j];
      }
    }
    const double w_y = weight ? static_cast<double>(weight[label]) : 1.0;
    const double log_s = std::log(static_cast<double>(s));
    row_loss[r] = xent_row_loss(t, log_s, static_cast<double>(m) - static_cast<double>(z[label]),
                                static_cast<double>(gap), w_y, w_sum);
    if (!d) continue;
    // d_j = scale * ((a w_y + b W) p_j - w_j q_j)
    const T c_p = static_cast<T>(scale * (t.a * w_y + t.b * w_sum) / static_cast<double>(s));
    const T c_w = static_cast<T>(scale * t.b);
    if (weight && t.b != 0.0) {
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) d[j] = c_p * d[j] - c_w * weight[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) d[j] = c_p * d[j] - c_w;
    }
    d[label] -= static_cast<T>(scale * t.a * w_y);
  }
}

}  // namespace

template <typename T> void softmax(T* y, const T* x, int64_t n, int64_t k) {
  parallel_for(n, rows_per_block(k), k, [&](int64_t r0, int64_t r1) { softmax_rows(y, x, r0, r1, k, false); });
}
template <typename T> void log_softmax(T* y, const T* x, int64_t n, int64_t k) {
  parallel_for(n, rows_per_block(k), k, [&](int64_t r0, int64_t r1) { softmax_rows(y, x, r0, r1, k, true); });
}
template <typename T> void softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k) {
  parallel_for(n, rows_per_block(k), k,
               [&](int64_t r0, int64_t r1) { softmax_backward_rows(dx, dy, y, r0, r1, k, false); });
}
template <typename T> void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k) {
  parallel_for(n, rows_per_block(k), k,
               [&](int64_t r0, int64_t r1) { softmax_backward_rows(dx, dy, y, r0, r1, k, true); });
}

template <typename T>
double softmax_cross_entropy(T* row_loss, T* dlogits, const T* logits, const int64_t* labels, const T* weight,
                             int64_t n, int64_t k, int64_t ignore_index, double label_smoothing, Smoothing smoothing,
                             Reduction reduction) {
  const XentTarget t = xent_target(label_smoothing, k, smoothing);
  double w_sum = static_cast<double>(k);
  if (weight) {
    w_sum = 0.0;
    for (int64_t j = 0; j < k; ++j) w_sum += static_cast<double>(weight[j]);
  }
  // The mean divides by the weight of the counted rows, known from the labels alone.
  double divisor = 1.0;
  if (reduction == Reduction::mean) {
    divisor = 0.0;
    for (int64_t r = 0; r < n; ++r)
      if (labels[r] != ignore_index) divisor += weight ? static_cast<double>(weight[labels[r]]) : 1.0;
  }
  // A mean over rows of total weight 0 is undefined: NaN loss and NaN gradients on the counted rows.
  const double scale = divisor == 0.0 ? std::numeric_limits<double>::quiet_NaN() : 1.0 / divisor;
  Buffer<double> losses = scratch<double>(n);
  parallel_for(n, rows_per_block(k), k, [&](int64_t r0, int64_t r1) {
    xent_rows(losses.get(), dlogits, logits, labels, weight, w_sum, r0, r1, k, ignore_index, t, scale);
  });
  if (reduction == Reduction::none) {
    if (row_loss)
      for (int64_t r = 0; r < n; ++r) row_loss[r] = static_cast<T>(losses[r]);
    return 0.0;
  }
  double total = 0.0;
  for (int64_t r = 0; r < n; ++r) total += losses[r];
  return reduction == Reduction::mean ? total * scale : total;
}

FDNN_XENT_INSTANTIATE(float)
FDNN_XENT_INSTANTIATE(double)

}  // namespace fdnn
