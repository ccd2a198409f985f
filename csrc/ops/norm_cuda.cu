// CUDA normalization kernels: the GPU twins of csrc/ops/norm_cpu.cpp, with the same signatures
// (host functions over device pointers) and the shared formulas of ops/norm.h.
//
// Reductions are deterministic: one block per channel (batch norm) or row (layer and weight
// norm), grid-stride over channels/rows; each thread accumulates a fixed strided subset in
// double, then cub::BlockReduce combines them in a fixed order. Column sums over rows (the
// layer norm parameter gradients) use a fixed partition of the rows, merged in order. No
// floating-point atomics anywhere, so results do not depend on timing or the grid size.
#include <cub/cub.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/cuda.h"
#include "ops/norm.h"

namespace fdnn {
namespace {

using BlockSum = cub::BlockReduce<double, kThreads>;

// Sum of v over the block, returned to every thread. The barriers let the caller reuse tmp and
// total for the next sum right away. Every thread of the block must call it.
__device__ double block_sum(double v, BlockSum::TempStorage& tmp, double& total) {
  const double sum = BlockSum(tmp).Sum(v);
  if (threadIdx.x == 0) total = sum;
  __syncthreads();
  const double out = total;
  __syncthreads();
  return out;
}

__device__ inline int64_t global_thread() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline int64_t global_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

template <typename T> __device__ inline T param_or(const T* p, int64_t j, T fallback) { return p ? p[j] : fallback; }

// Blocks of a kernel with one block per channel/row (grid-stride beyond 65535 * 8; at least 1).
unsigned blocks_per_item(int64_t items) { return grid_for(items, 1); }

// Offset of the e-th element (e in [0, n * s)) of channel ch in the (n, c, s) layout.
__device__ inline int64_t channel_offset(int64_t e, int64_t ch, int64_t c, int64_t s) {
  const int64_t i = e / s;
  return (i * c + ch) * s + (e - i * s);
}

// ---------------------------------------------------------------- batch norm

// batch_norm in training (the CPU's two-pass path): per channel the double sum of x gives the
// mean, then the double sum of squared deviations from it the biased variance; mean, inv_std
// and the running buffers (torch's update, unbiased variance) as on the CPU.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    bn_train_stats_kernel(T* mean, T* inv_std, T* running_mean, T* running_var, const T* x, int64_t n, int64_t c,
                          int64_t s, double momentum, double eps) {
  __shared__ BlockSum::TempStorage tmp;
  __shared__ double total;
  const int64_t m = n * s;
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    double sum = 0.0;
    for (int64_t e = threadIdx.x; e < m; e += kThreads) sum += static_cast<double>(x[channel_offset(e, ch, c, s)]);
    const double mu = block_sum(sum, tmp, total) / static_cast<double>(m);
    double m2 = 0.0;
    for (int64_t e = threadIdx.x; e < m; e += kThreads) {
      const double dev = static_cast<double>(x[channel_offset(e, ch, c, s)]) - mu;
      m2 += dev * dev;
    }
    const double var = block_sum(m2, tmp, total) / static_cast<double>(m);
    if (threadIdx.x == 0) {
      mean[ch] = static_cast<T>(mu);
      inv_std[ch] = static_cast<T>(inv_std_of(var, eps));
      if (running_mean) running_mean[ch] = static_cast<T>(running_update(running_mean[ch], mu, momentum));
      if (running_var)
        running_var[ch] = static_cast<T>(
            running_update(running_var[ch], var * static_cast<double>(m) / static_cast<double>(m - 1), momentum));
    }
  }
}

// batch_norm in evaluation: mean = running_mean, inv_std from running_var.
template <typename T>
__global__ void bn_eval_stats_kernel(T* mean, T* inv_std, const T* running_mean, const T* running_var, int64_t c,
                                     double eps) {
  for (int64_t j = global_thread(); j < c; j += global_threads()) {
    mean[j] = running_mean[j];
    inv_std[j] = static_cast<T>(inv_std_of(running_var[j], eps));
  }
}

// y = act((x - mean) * (inv_std * gamma) + beta) in T (normalize_columns / normalize_plane).
template <typename T>
__global__ void bn_normalize_kernel(T* y, const T* x, const T* mean, const T* inv_std, const T* gamma, const T* beta,
                                    int64_t total, int64_t c, int64_t s, bool relu) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t ch = e / s % c;
    const T a = inv_std[ch] * param_or(gamma, ch, T(1));
    y[e] = activate((x[e] - mean[ch]) * a + param_or(beta, ch, T(0)), relu);
  }
}

// batch_norm_backward, reductions (plane_grad_sums): per channel the double sums of dy and of
// dy * xhat (xhat and the product in T, as on the CPU) give dbeta and dgamma, and the dx
// coefficients of batch_norm_grad_coeffs go to k (k_dy, k_xhat, k_0 per channel, in T).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    bn_grad_sums_kernel(T* dgamma, T* dbeta, T* k, const T* dy, const T* x, const T* gamma, const T* mean,
                        const T* inv_std, int64_t n, int64_t c, int64_t s, bool training) {
  __shared__ BlockSum::TempStorage tmp;
  __shared__ double total;
  const int64_t m = n * s;
  for (int64_t ch = blockIdx.x; ch < c; ch += gridDim.x) {
    const T mu = mean[ch], is = inv_std[ch];
    double a = 0.0, b = 0.0;
    for (int64_t e = threadIdx.x; e < m; e += kThreads) {
      const int64_t o = channel_offset(e, ch, c, s);
      const T xhat = (x[o] - mu) * is;
      a += static_cast<double>(dy[o]);
      b += static_cast<double>(dy[o] * xhat);
    }
    const double sdy = block_sum(a, tmp, total);
    const double sdyx = block_sum(b, tmp, total);
    if (threadIdx.x == 0) {
      dbeta[ch] = static_cast<T>(sdy);
      dgamma[ch] = static_cast<T>(sdyx);
      const BnGradCoeffs kc =
          batch_norm_grad_coeffs(param_or(gamma, ch, T(1)), is, sdyx, sdy, static_cast<double>(m), training);
      k[3 * ch] = static_cast<T>(kc.k_dy);
      k[3 * ch + 1] = static_cast<T>(kc.k_xhat);
      k[3 * ch + 2] = static_cast<T>(kc.k_0);
    }
  }
}

// dx = k_dy dy - k_xhat xhat - k_0 in T (bn_dx_columns / bn_dx_plane); in evaluation the
// statistics are constants and x is not read (a NaN in x stays out of dx).
template <typename T>
__global__ void bn_dx_kernel(T* dx, const T* dy, const T* x, const T* mean, const T* inv_std, const T* k,
                             int64_t total, int64_t c, int64_t s, bool training) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t ch = e / s % c;
    const T* kc = k + 3 * ch;
    dx[e] = training ? kc[0] * dy[e] - kc[1] * ((x[e] - mean[ch]) * inv_std[ch]) - kc[2] : kc[0] * dy[e];
  }
}

// ---------------------------------------------------------------- layer norm

// layer_norm (layer_norm_rows): per row the double mean (0 for d == 0, as plane_stats) and the
// double sum of squared deviations, then y = (x - mean) * inv_std * gamma + beta in T.
template <typename T>
__global__ void __launch_bounds__(kThreads) layer_norm_kernel(T* y, T* mean, T* inv_std, const T* x, const T* gamma,
                                                              const T* beta, int64_t rows, int64_t d, double eps,
                                                              bool relu) {
  __shared__ BlockSum::TempStorage tmp;
  __shared__ double total;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    double sum = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) sum += static_cast<double>(xr[j]);
    sum = block_sum(sum, tmp, total);
    const double mu_d = d ? sum / static_cast<double>(d) : 0.0;
    double m2 = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) {
      const double dev = static_cast<double>(xr[j]) - mu_d;
      m2 += dev * dev;
    }
    m2 = block_sum(m2, tmp, total);
    const T mu = static_cast<T>(mu_d);
    const T is = static_cast<T>(inv_std_of(m2 / static_cast<double>(d), eps));
    if (threadIdx.x == 0) {
      mean[r] = mu;
      inv_std[r] = is;
    }
    for (int64_t j = threadIdx.x; j < d; j += kThreads)
      yr[j] = activate((xr[j] - mu) * is * param_or(gamma, j, T(1)) + param_or(beta, j, T(0)), relu);
  }
}

// layer_norm_backward, dx (the row loop of layer_norm_backward_rows): per row the sums of
// gy = dy * gamma and gy * xhat (gy, xhat and products in T; sums in double here, in T on the
// CPU), then dx = inv_std * (gy - mean(gy) - xhat * mean(gy * xhat)) in T.
template <typename T>
__global__ void __launch_bounds__(kThreads) layer_norm_dx_kernel(T* dx, const T* dy, const T* x, const T* gamma,
                                                                 const T* mean, const T* inv_std, int64_t rows,
                                                                 int64_t d) {
  __shared__ BlockSum::TempStorage tmp;
  __shared__ double total;
  const T inv_d = T(1) / static_cast<T>(d);
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* g = dy + r * d;
    const T* xr = x + r * d;
    T* dr = dx + r * d;
    const T mu = mean[r], is = inv_std[r];
    double a = 0.0, b = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) {
      const T gj = g[j] * param_or(gamma, j, T(1));
      a += static_cast<double>(gj);
      b += static_cast<double>(gj * ((xr[j] - mu) * is));
    }
    const T mg = static_cast<T>(block_sum(a, tmp, total)) * inv_d;
    const T mgx = static_cast<T>(block_sum(b, tmp, total)) * inv_d;
    for (int64_t j = threadIdx.x; j < d; j += kThreads)
      dr[j] = is * (g[j] * param_or(gamma, j, T(1)) - mg - ((xr[j] - mu) * is) * mgx);
  }
}

// Column tiles of the parameter-gradient pass: kColTile adjacent columns (coalesced loads) by
// kRowLanes threads over rows per block; at most kMaxChunks row chunks (partials per column).
constexpr int kColTile = 32;
constexpr int kRowLanes = kThreads / kColTile;
constexpr int64_t kMaxChunks = 64;

// layer_norm_backward, dgamma and dbeta (the column loop of layer_norm_backward_rows): block
// (x, y) sums columns [32 x, 32 x + 32) over row chunk y: lane l takes rows r0 + l, r0 + l + 8, ...
// (dy * xhat in T, sums in double), then lane 0 adds the lanes' partials in lane order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    layer_norm_param_partials_kernel(double* pg, double* pb, const T* dy, const T* x, const T* mean, const T* inv_std,
                                     int64_t rows, int64_t d, int64_t rows_per_chunk) {
  __shared__ double sg[kRowLanes][kColTile], sb[kRowLanes][kColTile];
  const int tx = threadIdx.x % kColTile, lane = threadIdx.x / kColTile;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = std::min(rows, r0 + rows_per_chunk);
  double a = 0.0, b = 0.0;
  if (j < d)
    for (int64_t r = r0 + lane; r < r1; r += kRowLanes) {
      const T g = dy[r * d + j];
      a += static_cast<double>(g * ((x[r * d + j] - mean[r]) * inv_std[r]));
      b += static_cast<double>(g);
    }
  sg[lane][tx] = a;
  sb[lane][tx] = b;
  __syncthreads();
  if (lane == 0 && j < d) {
    for (int l = 1; l < kRowLanes; ++l) {
      a += sg[l][tx];
      b += sb[l][tx];
    }
    pg[blockIdx.y * d + j] = a;
    pb[blockIdx.y * d + j] = b;
  }
}

// dgamma, dbeta: the chunk partials of each column summed in chunk order.
template <typename T>
__global__ void layer_norm_param_sum_kernel(T* dgamma, T* dbeta, const double* pg, const double* pb, int64_t chunks,
                                            int64_t d) {
  for (int64_t j = global_thread(); j < d; j += global_threads()) {
    double a = 0.0, b = 0.0;
    for (int64_t q = 0; q < chunks; ++q) {
      a += pg[q * d + j];
      b += pb[q * d + j];
    }
    dgamma[j] = static_cast<T>(a);
    dbeta[j] = static_cast<T>(b);
  }
}

// ---------------------------------------------------------------- weight norm

// weight_norm (weight_norm_rows): per row ss = sum v^2 in double, w = v * T(g / sqrt(ss)).
template <typename T>
__global__ void __launch_bounds__(kThreads) weight_norm_kernel(T* w, const T* v, const T* g, int64_t rows, int64_t d) {
  __shared__ BlockSum::TempStorage tmp;
  __shared__ double total;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* vr = v + r * d;
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) ss += static_cast<double>(vr[j]) * static_cast<double>(vr[j]);
    ss = block_sum(ss, tmp, total);
    const T scale = static_cast<T>(static_cast<double>(g[r]) / sqrt(ss));
    T* wr = w + r * d;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) wr[j] = vr[j] * scale;
  }
}

// weight_norm_backward (weight_norm_backward_rows): per row ss = sum v^2 and dot = sum dw v in
// double; dg = dot / ||v||, dv = T(g / ||v||) * (dw - v * T(dot / ss)) in T.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    weight_norm_backward_kernel(T* dv, T* dg, const T* dw, const T* v, const T* g, int64_t rows, int64_t d) {
  __shared__ BlockSum::TempStorage tmp;
  __shared__ double total;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* vr = v + r * d;
    const T* gr = dw + r * d;
    double ss = 0.0, dot = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) {
      ss += static_cast<double>(vr[j]) * static_cast<double>(vr[j]);
      dot += static_cast<double>(gr[j]) * static_cast<double>(vr[j]);
    }
    ss = block_sum(ss, tmp, total);
    dot = block_sum(dot, tmp, total);
    const double norm = sqrt(ss);
    if (threadIdx.x == 0) dg[r] = static_cast<T>(dot / norm);
    const T a = static_cast<T>(static_cast<double>(g[r]) / norm);
    const T b = static_cast<T>(dot / ss);
    T* out = dv + r * d;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) out[j] = a * (gr[j] - vr[j] * b);
  }
}

// ---------------------------------------------------------------- local response norm

// The divisor base of element e (channel ch) of the (n, c, s) layout, as lrn_base on the CPU:
// k + alpha / size * (sum of x^2 over the channel window, in double, in ascending channel order).
template <typename T>
__device__ double lrn_base_at(const T* x, int64_t e, int64_t ch, int64_t c, int64_t s, int64_t size, double a_over,
                              double k) {
  const int64_t lo = std::max<int64_t>(0, lrn_window_lo(ch, size));
  const int64_t hi = std::min<int64_t>(c - 1, lrn_window_hi(ch, size));
  double sum = 0.0;
  for (int64_t cc = lo; cc <= hi; ++cc) {
    const double xv = static_cast<double>(x[e + (cc - ch) * s]);
    sum += xv * xv;
  }
  return k + a_over * sum;
}

// local_response_norm: y = x * base^-beta, elementwise (each output reads its channel window).
template <typename T>
__global__ void lrn_kernel(T* y, const T* x, int64_t total, int64_t c, int64_t s, int64_t size, double a_over,
                           double beta, double k) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const double base = lrn_base_at(x, e, e / s % c, c, s, size, a_over, k);
    y[e] = static_cast<T>(static_cast<double>(x[e]) * pow(base, -beta));
  }
}

// local_response_norm_backward, first pass: term = dy x base^-beta / base per element (double).
template <typename T>
__global__ void lrn_term_kernel(double* term, const T* dy, const T* x, int64_t total, int64_t c, int64_t s,
                                int64_t size, double a_over, double beta, double k) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const double base = lrn_base_at(x, e, e / s % c, c, s, size, a_over, k);
    term[e] = static_cast<double>(dy[e]) * static_cast<double>(x[e]) * pow(base, -beta) / base;
  }
}

// Second pass: dx_j = dy_j base_j^-beta - coef x_j sum_{c : j in window(c)} term_c, where the
// channels c whose window holds j are [j - (size - 1) / 2, j + size / 2] (ascending, as the CPU).
template <typename T>
__global__ void lrn_backward_kernel(T* dx, const double* term, const T* dy, const T* x, int64_t total, int64_t c,
                                    int64_t s, int64_t size, double a_over, double beta, double k, double coef) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t j = e / s % c;
    const double p = pow(lrn_base_at(x, e, j, c, s, size, a_over, k), -beta);
    const int64_t lo = std::max<int64_t>(0, j - (size - 1) / 2);
    const int64_t hi = std::min<int64_t>(c - 1, j + size / 2);
    double acc = 0.0;
    for (int64_t cc = lo; cc <= hi; ++cc) acc += term[e + (cc - j) * s];
    dx[e] = static_cast<T>(static_cast<double>(dy[e]) * p - coef * static_cast<double>(x[e]) * acc);
  }
}

}  // namespace

// ---------------------------------------------------------------- entry points

template <typename T>
void batch_norm(T* y, T* mean, T* inv_std, T* running_mean, T* running_var, const T* x, const T* gamma,
                const T* beta, int64_t n, int64_t c, int64_t s, bool training, double momentum, double eps,
                bool relu) {
  if (training) {
    bn_train_stats_kernel<T><<<blocks_per_item(c), kThreads, 0, stream()>>>(mean, inv_std, running_mean, running_var,
                                                                             x, n, c, s, momentum, eps);
    check_launch("bn_train_stats_kernel");
  } else {
    bn_eval_stats_kernel<T><<<grid_for(c), kThreads, 0, stream()>>>(mean, inv_std, running_mean, running_var, c, eps);
    check_launch("bn_eval_stats_kernel");
  }
  const int64_t total = n * c * s;
  bn_normalize_kernel<T><<<grid_for(total), kThreads, 0, stream()>>>(y, x, mean, inv_std, gamma, beta, total, c, s,
                                                                     relu);
  check_launch("bn_normalize_kernel");
}

template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t n, int64_t c, int64_t s, bool training) {
  DeviceBuffer<T> k(3 * c);
  bn_grad_sums_kernel<T><<<blocks_per_item(c), kThreads, 0, stream()>>>(dgamma, dbeta, k.get(), dy, x, gamma, mean,
                                                                        inv_std, n, c, s, training);
  check_launch("bn_grad_sums_kernel");
  const int64_t total = n * c * s;
  bn_dx_kernel<T><<<grid_for(total), kThreads, 0, stream()>>>(dx, dy, x, mean, inv_std, k.get(), total, c, s,
                                                              training);
  check_launch("bn_dx_kernel");
}

template <typename T>
void layer_norm(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta, int64_t rows, int64_t d,
                double eps, bool relu) {
  layer_norm_kernel<T><<<blocks_per_item(rows), kThreads, 0, stream()>>>(y, mean, inv_std, x, gamma, beta, rows, d,
                                                                         eps, relu);
  check_launch("layer_norm_kernel");
}

template <typename T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t rows, int64_t d) {
  layer_norm_dx_kernel<T><<<blocks_per_item(rows), kThreads, 0, stream()>>>(dx, dy, x, gamma, mean, inv_std, rows, d);
  check_launch("layer_norm_dx_kernel");
  // A fixed partition of the rows (it depends on rows only): partials per chunk, summed in order.
  const int64_t rows_per_chunk = std::max<int64_t>(kRowLanes, (rows + kMaxChunks - 1) / kMaxChunks);
  const int64_t chunks = (rows + rows_per_chunk - 1) / rows_per_chunk;
  DeviceBuffer<double> pg(chunks * d), pb(chunks * d);
  if (chunks > 0 && d > 0) {
    const dim3 grid(static_cast<unsigned>((d + kColTile - 1) / kColTile), static_cast<unsigned>(chunks));
    layer_norm_param_partials_kernel<T><<<grid, kThreads, 0, stream()>>>(pg.get(), pb.get(), dy, x, mean, inv_std,
                                                                         rows, d, rows_per_chunk);
    check_launch("layer_norm_param_partials_kernel");
  }
  layer_norm_param_sum_kernel<T><<<grid_for(d), kThreads, 0, stream()>>>(dgamma, dbeta, pg.get(), pb.get(), chunks, d);
  check_launch("layer_norm_param_sum_kernel");
}

template <typename T> void weight_norm(T* w, const T* v, const T* g, int64_t rows, int64_t d) {
  weight_norm_kernel<T><<<blocks_per_item(rows), kThreads, 0, stream()>>>(w, v, g, rows, d);
  check_launch("weight_norm_kernel");
}

template <typename T>
void weight_norm_backward(T* dv, T* dg, const T* dw, const T* v, const T* g, int64_t rows, int64_t d) {
  weight_norm_backward_kernel<T><<<blocks_per_item(rows), kThreads, 0, stream()>>>(dv, dg, dw, v, g, rows, d);
  check_launch("weight_norm_backward_kernel");
}

template <typename T>
void local_response_norm(T* y, const T* x, int64_t n, int64_t c, int64_t s, int64_t size, double alpha, double beta,
                         double k) {
  const int64_t total = n * c * s;
  lrn_kernel<T><<<grid_for(total), kThreads, 0, stream()>>>(y, x, total, c, s, size,
                                                            alpha / static_cast<double>(size), beta, k);
  check_launch("lrn_kernel");
}

template <typename T>
void local_response_norm_backward(T* dx, const T* dy, const T* x, int64_t n, int64_t c, int64_t s, int64_t size,
                                  double alpha, double beta, double k) {
  const int64_t total = n * c * s;
  const double a_over = alpha / static_cast<double>(size);
  DeviceBuffer<double> term(total);
  lrn_term_kernel<T><<<grid_for(total), kThreads, 0, stream()>>>(term.get(), dy, x, total, c, s, size, a_over, beta, k);
  check_launch("lrn_term_kernel");
  lrn_backward_kernel<T><<<grid_for(total), kThreads, 0, stream()>>>(
      dx, term.get(), dy, x, total, c, s, size, a_over, beta, k, 2.0 * alpha * beta / static_cast<double>(size));
  check_launch("lrn_backward_kernel");
}

FDNN_NORM_INSTANTIATE(float)
FDNN_NORM_INSTANTIATE(double)

}  // namespace fdnn
