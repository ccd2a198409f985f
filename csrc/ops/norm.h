// Batch, layer and weight normalization and local response normalization: the formulas shared
// by the CPU and CUDA builds, and the CPU entry points. Plain C++ (no CUDA includes).
//
// Layouts (row-major, contiguous): batch norm x is (n, c, s) with s the product of the spatial
// sizes (1 for (N, C) input); layer norm x is (rows, d); weight norm v is (rows, d);
// local response norm x is (n, c, s).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/activation.h"
#include "common/macros.h"

namespace fdnn {

FDNN_HD inline double inv_std_of(double var, double eps) { return 1.0 / sqrt(var + eps); }

// Running statistics as torch updates them: momentum weights the new batch value and the
// running variance takes the unbiased batch variance.
FDNN_HD inline double running_update(double running, double batch, double momentum) {
  return (1.0 - momentum) * running + momentum * batch;
}

// Batch-norm input gradient of one element in training:
// dx = gamma inv_std (dy - dbeta / m - xhat dgamma / m), written as k_dy dy - k_xhat xhat - k_0.
struct BnGradCoeffs {
  double k_dy, k_xhat, k_0;
};
FDNN_HD inline BnGradCoeffs batch_norm_grad_coeffs(double gamma, double inv_std, double dgamma, double dbeta, double m,
                                                   bool training) {
  const double g = gamma * inv_std;
  if (!training) return {g, 0.0, 0.0};
  return {g, g * dgamma / m, g * dbeta / m};
}

// LRN: the divisor's base d = k + alpha / size * (sum of squares in the window); the window of
// channel c is [c - size / 2, c + (size - 1) / 2] (torch's padding).
FDNN_HD inline int64_t lrn_window_lo(int64_t c, int64_t size) { return c - size / 2; }
FDNN_HD inline int64_t lrn_window_hi(int64_t c, int64_t size) { return c + (size - 1) / 2; }

// Training: batch mean and biased variance per channel (mean and inv_std outputs), running
// buffers updated when not null. Evaluation: mean = running_mean, inv_std from running_var.
// relu: y = relu(normalized), fused into the normalizing pass (also for layer_norm).
template <typename T>
void batch_norm(T* y, T* mean, T* inv_std, T* running_mean, T* running_var, const T* x, const T* gamma,
                const T* beta, int64_t n, int64_t c, int64_t s, bool training, double momentum, double eps,
                bool relu);
template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t n, int64_t c, int64_t s, bool training);

template <typename T>
void layer_norm(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta, int64_t rows, int64_t d,
                double eps, bool relu);
template <typename T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t rows, int64_t d);

template <typename T> void weight_norm(T* w, const T* v, const T* g, int64_t rows, int64_t d);
template <typename T>
void weight_norm_backward(T* dv, T* dg, const T* dw, const T* v, const T* g, int64_t rows, int64_t d);

template <typename T>
void local_response_norm(T* y, const T* x, int64_t n, int64_t c, int64_t s, int64_t size, double alpha, double beta,
                         double k);
template <typename T>
void local_response_norm_backward(T* dx, const T* dy, const T* x, int64_t n, int64_t c, int64_t s, int64_t size,
                                  double alpha, double beta, double k);

// The explicit instantiations that both devices' files (norm_cpu.cpp, norm_cuda.cu) emit.
#define FDNN_NORM_INSTANTIATE(T)                                                                                        \
  template void batch_norm<T>(T*, T*, T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, bool,    \
                              double, double, bool);                                                               \
  template void batch_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,       \
                                       int64_t, int64_t, bool);                                                    \
  template void layer_norm<T>(T*, T*, T*, const T*, const T*, const T*, int64_t, int64_t, double, bool);            \
  template void layer_norm_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, int64_t,       \
                                       int64_t);                                                                   \
  template void weight_norm<T>(T*, const T*, const T*, int64_t, int64_t);                                          \
  template void weight_norm_backward<T>(T*, T*, const T*, const T*, const T*, int64_t, int64_t);                   \
  template void local_response_norm<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t, double, double, double);  \
  template void local_response_norm_backward<T>(T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t, double, \
                                                double, double);

}  // namespace fdnn
