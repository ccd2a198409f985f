// Batch, layer and weight normalization and local response normalization: the formulas shared
// by the CPU and CUDA builds, and the entry points of both. Plain C++ (no CUDA includes).
//
// Layouts (row-major, contiguous): batch norm x is (n, c, s) with s the product of the spatial
// sizes (1 for (N, C) input); layer norm x is (rows, d); weight norm v is (rows, d);
// local response norm x is (n, c, s). Every entry point takes the call's Stream last
// (common/stream.h); the CPU ignores it.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/activation.h"
#include "common/macros.h"
#include "common/stream.h"

namespace fdnn {

FDNN_HD inline double inv_std_of(double var, double eps) { return 1.0 / sqrt(var + eps); }

// Running statistics as torch updates them: momentum weights the new batch value and the
// running variance takes the unbiased batch variance.
FDNN_HD inline double running_update(double running, double batch, double momentum) {
  return (1.0 - momentum) * running + momentum * batch;
}

// The normalized value xhat = (x - mean) * inv_std, in T (batch and layer norm, forward and backward).
template <typename T> FDNN_HD inline T normalized(T x, T mean, T inv_std) { return (x - mean) * inv_std; }

// ---- batch norm ----

// Training statistics of channel j from its m values' mean and sum of squared deviations m2
// (both in double): the mean and inv_std outputs (biased variance) and, where given, the running
// buffers (unbiased variance).
template <typename T>
FDNN_HD inline void batch_norm_store_stats(T* mean, T* inv_std, T* running_mean, T* running_var, int64_t j, double mu,
                                           double m2, double m, double momentum, double eps) {
  const double var = m2 / m;
  mean[j] = static_cast<T>(mu);
  inv_std[j] = static_cast<T>(inv_std_of(var, eps));
  if (running_mean) running_mean[j] = static_cast<T>(running_update(running_mean[j], mu, momentum));
  if (running_var) running_var[j] = static_cast<T>(running_update(running_var[j], var * m / (m - 1.0), momentum));
}

// Forward of one element: y = act((x - mean) * a + b), a = inv_std * gamma and b = beta of its channel.
template <typename T> FDNN_HD inline T batch_norm_normalize(T x, T mean, T a, T b, bool relu) {
  return activate((x - mean) * a + b, relu);
}

// Input gradient of one element in training:
// dx = gamma inv_std (dy - dbeta / m - xhat dgamma / m), written as k_dy dy - k_xhat xhat - k_0.
// In evaluation the statistics are constants: dx = k_dy dy, and x is not read (a NaN in x stays
// out of dx).
struct BnGradCoeffs {
  double k_dy, k_xhat, k_0;
};
FDNN_HD inline BnGradCoeffs batch_norm_grad_coeffs(double gamma, double inv_std, double dgamma, double dbeta, double m,
                                                   bool training) {
  const double g = gamma * inv_std;
  if (!training) return {g, 0.0, 0.0};
  return {g, g * dgamma / m, g * dbeta / m};
}
template <typename T> FDNN_HD inline T batch_norm_dx(T dy, T xhat, T k_dy, T k_xhat, T k_0) {
  return k_dy * dy - k_xhat * xhat - k_0;
}
template <typename T> FDNN_HD inline T batch_norm_dx_eval(T dy, T k_dy) { return k_dy * dy; }

// ---- layer norm ----

// The mean of a row of d values from their sum: NaN for d == 0 (the mean of nothing, as NumPy's
// and torch's mean give), which makes inv_std NaN too.
FDNN_HD inline double layer_norm_mean(double sum, int64_t d) { return sum / static_cast<double>(d); }

// Forward of one element: y = act((x - mean) * inv_std * gamma + beta).
template <typename T> FDNN_HD inline T layer_norm_normalize(T x, T mean, T inv_std, T gamma, T beta, bool relu) {
  return activate(normalized(x, mean, inv_std) * gamma + beta, relu);
}

// Input gradient of one element: dx = inv_std * (g - mean(g) - xhat * mean(g * xhat)) with
// g = dy * gamma; mean_g and mean_gx are the row's means of g and g * xhat.
template <typename T> FDNN_HD inline T layer_norm_dx(T g, T xhat, T inv_std, T mean_g, T mean_gx) {
  return inv_std * (g - mean_g - xhat * mean_gx);
}

// ---- local response norm ----

// LRN: the divisor's base d = k + alpha / size * (sum of squares in the window); the window of
// channel c is [c - size / 2, c + (size - 1) / 2] (torch's padding).
FDNN_HD inline int64_t lrn_window_lo(int64_t c, int64_t size) { return c - size / 2; }
FDNN_HD inline int64_t lrn_window_hi(int64_t c, int64_t size) { return c + (size - 1) / 2; }

// d^-beta and d^(-beta-1) of a base d, both by pow as the reference takes them. (d^-beta / d for
// the second was off by its extra rounding, which the backward's two terms, cancelling where
// alpha x^2 is large against k, turned into 25x NumPy's float64 error in a 1-element case; and at
// d = 0 or inf it is inf / inf or 0 / 0.)
struct LrnPowers {
  double p, q;
};
FDNN_HD inline LrnPowers lrn_powers(double d, double beta) { return {pow(d, -beta), pow(d, -beta - 1.0)}; }

// ---- entry points (norm_cpu.cpp, norm_cuda.cu) ----

// Training: batch mean and biased variance per channel (mean and inv_std outputs), running
// buffers updated when not null. Evaluation: mean = running_mean, inv_std from running_var.
// relu: y = relu(normalized), fused into the normalizing pass (also for layer_norm).
template <typename T>
void batch_norm(T* y, T* mean, T* inv_std, T* running_mean, T* running_var, const T* x, const T* gamma,
                const T* beta, int64_t n, int64_t c, int64_t s, bool training, double momentum, double eps,
                bool relu, Stream stream);
template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t n, int64_t c, int64_t s, bool training, Stream stream);

template <typename T>
void layer_norm(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta, int64_t rows, int64_t d,
                double eps, bool relu, Stream stream);
template <typename T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t rows, int64_t d, Stream stream);

template <typename T> void weight_norm(T* w, const T* v, const T* g, int64_t rows, int64_t d, Stream stream);
template <typename T>
void weight_norm_backward(T* dv, T* dg, const T* dw, const T* v, const T* g, int64_t rows, int64_t d,
                          Stream stream);

template <typename T>
void local_response_norm(T* y, const T* x, int64_t n, int64_t c, int64_t s, int64_t size, double alpha, double beta,
                         double k, Stream stream);
template <typename T>
void local_response_norm_backward(T* dx, const T* dy, const T* x, int64_t n, int64_t c, int64_t s, int64_t size,
                                  double alpha, double beta, double k, Stream stream);

// The explicit instantiations that both devices' files (norm_cpu.cpp, norm_cuda.cu) emit.
#define FDNN_NORM_INSTANTIATE(T)                                                                                    \
  template void batch_norm<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, bool,    \
                              double, double, bool, Stream);                                                        \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,       \
                                       int64_t, int64_t, bool, Stream);                                             \
  template void layer_norm<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double, bool, Stream);    \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,       \
                                       int64_t, Stream);                                                            \
  template void weight_norm<T>(T*, const T*, const T*, int64_t, int64_t, Stream);                                   \
  template void weight_norm_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t, Stream);            \
  template void local_response_norm<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, double, double, double,    \
                                       Stream);                                                                     \
  template void local_response_norm_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,         \
                                                double, double, double, Stream);

}  // namespace fdnn
