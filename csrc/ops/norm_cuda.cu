// CUDA normalization kernels: the GPU twins of csrc/ops/norm_cpu.cpp, with the same signatures
// (host functions over device pointers, on the call's stream) and the shared formulas of
// ops/norm.h.
//
// Reductions are deterministic. Over contiguous data (a row of layer or weight norm, the planes
// of a batch-norm channel with spatial axes): one block per row/channel, grid-stride over them;
// each thread accumulates a fixed strided subset in double, then cub::BlockReduce combines them
// in a fixed order. Over the columns of a row-major (rows, cols) array (batch norm on (N, C), the
// layer norm parameter gradients): column tiles, i.e. a fixed partition of the rows into chunks,
// one partial per chunk and column from coalesced loads, merged in chunk order. No
// floating-point atomics anywhere, so results do not depend on timing or the grid size.
#include <cub/cub.cuh>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/cuda.h"
#include "common/welford.h"
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

// Column tiles of the reductions over the rows of a row-major (rows, cols) array: block (x, y)
// covers columns [kColTile x, kColTile x + kColTile) (coalesced loads) and row chunk y; its
// kRowLanes lanes take rows r0 + lane, r0 + lane + kRowLanes, ... of the chunk. The chunks are a
// fixed partition of the rows (it depends on rows only): at most kMaxChunks of them, at least
// kRowLanes rows each.
constexpr int kColTile = 32;
constexpr int kRowLanes = kThreads / kColTile;
constexpr int64_t kMaxChunks = 64;

struct ColumnChunks {
  int64_t rows_per_chunk, chunks;
};
ColumnChunks column_chunks(int64_t rows) {
  const int64_t per = std::max<int64_t>(kRowLanes, (rows + kMaxChunks - 1) / kMaxChunks);
  return {per, (rows + per - 1) / per};
}

// The grid of a column-tile kernel (only launched when rows and cols are both > 0).
dim3 column_tile_grid(int64_t cols, const ColumnChunks& p) {
  return dim3(static_cast<unsigned>((cols + kColTile - 1) / kColTile), static_cast<unsigned>(p.chunks));
}

// The sum of the lanes' values of this thread's column, in lane order, returned to lane 0 (the
// other lanes get 0). Every thread of the block must call it; buf can be reused right after.
__device__ double lane_sum(double v, double (&buf)[kRowLanes][kColTile]) {
  const int tx = threadIdx.x % kColTile, lane = threadIdx.x / kColTile;
  buf[lane][tx] = v;
  __syncthreads();
  double sum = 0.0;
  if (lane == 0)
    for (int l = 0; l < kRowLanes; ++l) sum += buf[l][tx];
  __syncthreads();
  return sum;
}

// Offset of the e-th element (e in [0, n * s)) of channel ch in the (n, c, s) layout.
__device__ inline int64_t channel_offset(int64_t e, int64_t ch, int64_t c, int64_t s) {
  const int64_t i = e / s;
  return (i * c + ch) * s + (e - i * s);
}

// ---------------------------------------------------------------- batch norm

// batch_norm in training with spatial axes (s > 1; the CPU's two-pass path over planes): per
// channel the double sum of x gives the mean, then the double sum of squared deviations from it
// the biased variance; mean, inv_std and the running buffers by batch_norm_store_stats.
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
    m2 = block_sum(m2, tmp, total);
    if (threadIdx.x == 0)
      batch_norm_store_stats(mean, inv_std, running_mean, running_var, ch, mu, m2, static_cast<double>(m), momentum,
                             eps);
  }
}

// batch_norm in training on (N, C) (s == 1; column_block_stats on the CPU): per column tile and
// row chunk, the chunk's mean (double sum) and then its sum of squared deviations from that mean
// (double) go to pm, pm2 (chunks x c).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    bn_column_stats_partials_kernel(double* pm, double* pm2, const T* x, int64_t n, int64_t c,
                                    int64_t rows_per_chunk) {
  __shared__ double buf[kRowLanes][kColTile];
  __shared__ double chunk_mean[kColTile];
  const int tx = threadIdx.x % kColTile, lane = threadIdx.x / kColTile;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = std::min(n, r0 + rows_per_chunk);
  double sum = 0.0;
  if (j < c)
    for (int64_t r = r0 + lane; r < r1; r += kRowLanes) sum += static_cast<double>(x[r * c + j]);
  sum = lane_sum(sum, buf);
  if (lane == 0) chunk_mean[tx] = sum / static_cast<double>(r1 - r0);
  __syncthreads();
  const double mu = chunk_mean[tx];
  double m2 = 0.0;
  if (j < c)
    for (int64_t r = r0 + lane; r < r1; r += kRowLanes) {
      const double dev = static_cast<double>(x[r * c + j]) - mu;
      m2 += dev * dev;
    }
  m2 = lane_sum(m2, buf);
  if (lane == 0 && j < c) {
    pm[blockIdx.y * c + j] = mu;
    pm2[blockIdx.y * c + j] = m2;
  }
}

// The chunks' (count, mean, M2) of each column merged in chunk order (as the CPU merges its
// blocks), then mean, inv_std and the running buffers by batch_norm_store_stats.
template <typename T>
__global__ void bn_column_stats_merge_kernel(T* mean, T* inv_std, T* running_mean, T* running_var, const double* pm,
                                             const double* pm2, int64_t n, int64_t c, int64_t rows_per_chunk,
                                             int64_t chunks, double momentum, double eps) {
  for (int64_t j = global_thread(); j < c; j += global_threads()) {
    MeanM2 st;
    for (int64_t q = 0; q < chunks; ++q) {
      const double count = static_cast<double>(std::min(n, (q + 1) * rows_per_chunk) - q * rows_per_chunk);
      st = merge(st, MeanM2{count, pm[q * c + j], pm2[q * c + j]});
    }
    batch_norm_store_stats(mean, inv_std, running_mean, running_var, j, st.mean, st.m2, static_cast<double>(n),
                           momentum, eps);
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

// y = act((x - mean) * (inv_std * gamma) + beta) in T (batch_norm_normalize, as on the CPU).
template <typename T>
__global__ void bn_normalize_kernel(T* y, const T* x, const T* mean, const T* inv_std, const T* gamma, const T* beta,
                                    int64_t total, int64_t c, int64_t s, bool relu) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t ch = e / s % c;
    const T a = inv_std[ch] * param_or(gamma, ch, T(1));
    y[e] = batch_norm_normalize(x[e], mean[ch], a, param_or(beta, ch, T(0)), relu);
  }
}

// The dgamma, dbeta outputs and the dx coefficients of batch_norm_grad_coeffs (k_dy, k_xhat, k_0
// per channel, in T) of channel ch from its sums of dy and dy * xhat.
template <typename T>
__device__ void bn_store_grads(T* dgamma, T* dbeta, T* k, int64_t ch, const T* gamma, T inv_std, double sdy,
                               double sdyx, double m, bool training) {
  dbeta[ch] = static_cast<T>(sdy);
  dgamma[ch] = static_cast<T>(sdyx);
  const BnGradCoeffs kc = batch_norm_grad_coeffs(param_or(gamma, ch, T(1)), inv_std, sdyx, sdy, m, training);
  k[3 * ch] = static_cast<T>(kc.k_dy);
  k[3 * ch + 1] = static_cast<T>(kc.k_xhat);
  k[3 * ch + 2] = static_cast<T>(kc.k_0);
}

// batch_norm_backward with spatial axes (s > 1), reductions (plane_grad_sums): per channel the
// double sums of dy and of dy * xhat (xhat in T, the product in double, as on the CPU: a product
// in T overflowed for |dy| near the float range where the sum is finite).
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
      const T xhat = normalized(x[o], mu, is);
      a += static_cast<double>(dy[o]);
      b += static_cast<double>(dy[o]) * static_cast<double>(xhat);
    }
    const double sdy = block_sum(a, tmp, total);
    const double sdyx = block_sum(b, tmp, total);
    if (threadIdx.x == 0) bn_store_grads(dgamma, dbeta, k, ch, gamma, is, sdy, sdyx, static_cast<double>(m), training);
  }
}

// batch_norm_backward on (N, C) (s == 1; column_block_grads on the CPU): per column tile and row
// chunk, the double sums of dy and dy * xhat (xhat in T, the product in double) go to psdy, psdyx.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    bn_column_grad_partials_kernel(double* psdy, double* psdyx, const T* dy, const T* x, const T* mean,
                                   const T* inv_std, int64_t n, int64_t c, int64_t rows_per_chunk) {
  __shared__ double buf[kRowLanes][kColTile];
  const int tx = threadIdx.x % kColTile, lane = threadIdx.x / kColTile;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = std::min(n, r0 + rows_per_chunk);
  double a = 0.0, b = 0.0;
  if (j < c) {
    const T mu = mean[j], is = inv_std[j];
    for (int64_t r = r0 + lane; r < r1; r += kRowLanes) {
      const T g = dy[r * c + j];
      a += static_cast<double>(g);
      b += static_cast<double>(g) * static_cast<double>(normalized(x[r * c + j], mu, is));
    }
  }
  a = lane_sum(a, buf);
  b = lane_sum(b, buf);
  if (lane == 0 && j < c) {
    psdy[blockIdx.y * c + j] = a;
    psdyx[blockIdx.y * c + j] = b;
  }
}

// The chunks' sums of each column added in chunk order, then bn_store_grads.
template <typename T>
__global__ void bn_column_grad_merge_kernel(T* dgamma, T* dbeta, T* k, const double* psdy, const double* psdyx,
                                            const T* gamma, const T* inv_std, int64_t n, int64_t c, int64_t chunks,
                                            bool training) {
  for (int64_t j = global_thread(); j < c; j += global_threads()) {
    double sdy = 0.0, sdyx = 0.0;
    for (int64_t q = 0; q < chunks; ++q) {
      sdy += psdy[q * c + j];
      sdyx += psdyx[q * c + j];
    }
    bn_store_grads(dgamma, dbeta, k, j, gamma, inv_std[j], sdy, sdyx, static_cast<double>(n), training);
  }
}

// dx = k_dy dy - k_xhat xhat - k_0 in T (batch_norm_dx, as on the CPU); in evaluation the
// statistics are constants and x is not read (a NaN in x stays out of dx).
template <typename T>
__global__ void bn_dx_kernel(T* dx, const T* dy, const T* x, const T* mean, const T* inv_std, const T* k,
                             int64_t total, int64_t c, int64_t s, bool training) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const int64_t ch = e / s % c;
    const T* kc = k + 3 * ch;
    dx[e] = training ? batch_norm_dx(dy[e], normalized(x[e], mean[ch], inv_std[ch]), kc[0], kc[1], kc[2])
                     : batch_norm_dx_eval(dy[e], kc[0]);
  }
}

// ---------------------------------------------------------------- layer norm

// layer_norm (layer_norm_rows): per row the double mean (layer_norm_mean: NaN for d == 0) and
// the double sum of squared deviations, then y = layer_norm_normalize in T.
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
    const double mu_d = layer_norm_mean(sum, d);
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
      yr[j] = layer_norm_normalize(xr[j], mu, is, param_or(gamma, j, T(1)), param_or(beta, j, T(0)), relu);
  }
}

// layer_norm_backward, dx (the row loop of layer_norm_backward_rows): per row the double sums of
// g = dy * gamma and g * xhat (g and xhat in T, the product in double), then dx = layer_norm_dx
// in T from the same rounded g, kept in dx in between (each thread reads back its own elements).
template <typename T>
__global__ void __launch_bounds__(kThreads) layer_norm_dx_kernel(T* dx, const T* dy, const T* x, const T* gamma,
                                                                 const T* mean, const T* inv_std, int64_t rows,
                                                                 int64_t d) {
  __shared__ BlockSum::TempStorage tmp;
  __shared__ double total;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* g = dy + r * d;
    const T* xr = x + r * d;
    T* dr = dx + r * d;
    const T mu = mean[r], is = inv_std[r];
    double a = 0.0, b = 0.0;
    for (int64_t j = threadIdx.x; j < d; j += kThreads) {
      const T gj = g[j] * param_or(gamma, j, T(1));
      dr[j] = gj;
      a += static_cast<double>(gj);
      b += static_cast<double>(gj) * static_cast<double>(normalized(xr[j], mu, is));
    }
    const T mg = static_cast<T>(layer_norm_mean(block_sum(a, tmp, total), d));
    const T mgx = static_cast<T>(layer_norm_mean(block_sum(b, tmp, total), d));
    for (int64_t j = threadIdx.x; j < d; j += kThreads)
      dr[j] = layer_norm_dx(dr[j], normalized(xr[j], mu, is), is, mg, mgx);
  }
}

// layer_norm_backward, dgamma and dbeta (the column loop of layer_norm_backward_rows): per
// column tile and row chunk, the double sums of dy * xhat (xhat in T, the product in double) and
// dy go to pg, pb.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    layer_norm_param_partials_kernel(double* pg, double* pb, const T* dy, const T* x, const T* mean, const T* inv_std,
                                     int64_t rows, int64_t d, int64_t rows_per_chunk) {
  __shared__ double buf[kRowLanes][kColTile];
  const int tx = threadIdx.x % kColTile, lane = threadIdx.x / kColTile;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + tx;
  const int64_t r0 = static_cast<int64_t>(blockIdx.y) * rows_per_chunk;
  const int64_t r1 = std::min(rows, r0 + rows_per_chunk);
  double a = 0.0, b = 0.0;
  if (j < d)
    for (int64_t r = r0 + lane; r < r1; r += kRowLanes) {
      const T g = dy[r * d + j];
      a += static_cast<double>(g) * static_cast<double>(normalized(x[r * d + j], mean[r], inv_std[r]));
      b += static_cast<double>(g);
    }
  a = lane_sum(a, buf);
  b = lane_sum(b, buf);
  if (lane == 0 && j < d) {
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

// local_response_norm_backward, first pass: term = dy x base^(-beta-1) per element (double; lrn_powers).
template <typename T>
__global__ void lrn_term_kernel(double* term, const T* dy, const T* x, int64_t total, int64_t c, int64_t s,
                                int64_t size, double a_over, double beta, double k) {
  for (int64_t e = global_thread(); e < total; e += global_threads()) {
    const double base = lrn_base_at(x, e, e / s % c, c, s, size, a_over, k);
    term[e] = static_cast<double>(dy[e]) * static_cast<double>(x[e]) * lrn_powers(base, beta).q;
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
                bool relu, Stream stream) {
  const cudaStream_t cs = cuda_stream(stream);
  if (training && s == 1) {
    const ColumnChunks p = column_chunks(n);
    DeviceBuffer<double> pm(p.chunks * c, stream), pm2(p.chunks * c, stream);
    if (p.chunks > 0 && c > 0) {
      bn_column_stats_partials_kernel<T><<<column_tile_grid(c, p), kThreads, 0, cs>>>(pm.get(), pm2.get(), x, n, c,
                                                                                       p.rows_per_chunk);
      check_launch("bn_column_stats_partials_kernel");
    }
    bn_column_stats_merge_kernel<T><<<grid_for(c), kThreads, 0, cs>>>(mean, inv_std, running_mean, running_var,
                                                                      pm.get(), pm2.get(), n, c, p.rows_per_chunk,
                                                                      p.chunks, momentum, eps);
    check_launch("bn_column_stats_merge_kernel");
  } else if (training) {
    bn_train_stats_kernel<T><<<blocks_per_item(c), kThreads, 0, cs>>>(mean, inv_std, running_mean, running_var, x, n,
                                                                       c, s, momentum, eps);
    check_launch("bn_train_stats_kernel");
  } else {
    bn_eval_stats_kernel<T><<<grid_for(c), kThreads, 0, cs>>>(mean, inv_std, running_mean, running_var, c, eps);
    check_launch("bn_eval_stats_kernel");
  }
  const int64_t total = n * c * s;
  bn_normalize_kernel<T><<<grid_for(total), kThreads, 0, cs>>>(y, x, mean, inv_std, gamma, beta, total, c, s, relu);
  check_launch("bn_normalize_kernel");
}

template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t n, int64_t c, int64_t s, bool training, Stream stream) {
  const cudaStream_t cs = cuda_stream(stream);
  DeviceBuffer<T> k(3 * c, stream);
  if (s == 1) {
    const ColumnChunks p = column_chunks(n);
    DeviceBuffer<double> psdy(p.chunks * c, stream), psdyx(p.chunks * c, stream);
    if (p.chunks > 0 && c > 0) {
      bn_column_grad_partials_kernel<T><<<column_tile_grid(c, p), kThreads, 0, cs>>>(
          psdy.get(), psdyx.get(), dy, x, mean, inv_std, n, c, p.rows_per_chunk);
      check_launch("bn_column_grad_partials_kernel");
    }
    bn_column_grad_merge_kernel<T><<<grid_for(c), kThreads, 0, cs>>>(dgamma, dbeta, k.get(), psdy.get(), psdyx.get(),
                                                                     gamma, inv_std, n, c, p.chunks, training);
    check_launch("bn_column_grad_merge_kernel");
  } else {
    bn_grad_sums_kernel<T><<<blocks_per_item(c), kThreads, 0, cs>>>(dgamma, dbeta, k.get(), dy, x, gamma, mean,
                                                                    inv_std, n, c, s, training);
    check_launch("bn_grad_sums_kernel");
  }
  const int64_t total = n * c * s;
  bn_dx_kernel<T><<<grid_for(total), kThreads, 0, cs>>>(dx, dy, x, mean, inv_std, k.get(), total, c, s, training);
  check_launch("bn_dx_kernel");
}

template <typename T>
void layer_norm(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta, int64_t rows, int64_t d,
                double eps, bool relu, Stream stream) {
  layer_norm_kernel<T><<<blocks_per_item(rows), kThreads, 0, cuda_stream(stream)>>>(y, mean, inv_std, x, gamma, beta,
                                                                                    rows, d, eps, relu);
  check_launch("layer_norm_kernel");
}

template <typename T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t rows, int64_t d, Stream stream) {
  const cudaStream_t cs = cuda_stream(stream);
  layer_norm_dx_kernel<T><<<blocks_per_item(rows), kThreads, 0, cs>>>(dx, dy, x, gamma, mean, inv_std, rows, d);
  check_launch("layer_norm_dx_kernel");
  const ColumnChunks p = column_chunks(rows);
  DeviceBuffer<double> pg(p.chunks * d, stream), pb(p.chunks * d, stream);
  if (p.chunks > 0 && d > 0) {
    layer_norm_param_partials_kernel<T><<<column_tile_grid(d, p), kThreads, 0, cs>>>(pg.get(), pb.get(), dy, x, mean,
                                                                                     inv_std, rows, d,
                                                                                     p.rows_per_chunk);
    check_launch("layer_norm_param_partials_kernel");
  }
  layer_norm_param_sum_kernel<T><<<grid_for(d), kThreads, 0, cs>>>(dgamma, dbeta, pg.get(), pb.get(), p.chunks, d);
  check_launch("layer_norm_param_sum_kernel");
}

template <typename T> void weight_norm(T* w, const T* v, const T* g, int64_t rows, int64_t d, Stream stream) {
  weight_norm_kernel<T><<<blocks_per_item(rows), kThreads, 0, cuda_stream(stream)>>>(w, v, g, rows, d);
  check_launch("weight_norm_kernel");
}

template <typename T>
void weight_norm_backward(T* dv, T* dg, const T* dw, const T* v, const T* g, int64_t rows, int64_t d,
                          Stream stream) {
  weight_norm_backward_kernel<T><<<blocks_per_item(rows), kThreads, 0, cuda_stream(stream)>>>(dv, dg, dw, v, g, rows,
                                                                                              d);
  check_launch("weight_norm_backward_kernel");
}

template <typename T>
void local_response_norm(T* y, const T* x, int64_t n, int64_t c, int64_t s, int64_t size, double alpha, double beta,
                         double k, Stream stream) {
  const int64_t total = n * c * s;
  lrn_kernel<T><<<grid_for(total), kThreads, 0, cuda_stream(stream)>>>(y, x, total, c, s, size,
                                                                       alpha / static_cast<double>(size), beta, k);
  check_launch("lrn_kernel");
}

template <typename T>
void local_response_norm_backward(T* dx, const T* dy, const T* x, int64_t n, int64_t c, int64_t s, int64_t size,
                                  double alpha, double beta, double k, Stream stream) {
  const cudaStream_t cs = cuda_stream(stream);
  const int64_t total = n * c * s;
  const double a_over = alpha / static_cast<double>(size);
  DeviceBuffer<double> term(total, stream);
  lrn_term_kernel<T><<<grid_for(total), kThreads, 0, cs>>>(term.get(), dy, x, total, c, s, size, a_over, beta, k);
  check_launch("lrn_term_kernel");
  lrn_backward_kernel<T><<<grid_for(total), kThreads, 0, cs>>>(dx, term.get(), dy, x, total, c, s, size, a_over, beta,
                                                               k, 2.0 * alpha * beta / static_cast<double>(size));
  check_launch("lrn_backward_kernel");
}

FDNN_NORM_INSTANTIATE(float)
FDNN_NORM_INSTANTIATE(double)

}  // namespace fdnn
