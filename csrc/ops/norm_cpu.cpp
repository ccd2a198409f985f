// CPU normalization kernels, over the formulas of ops/norm.h. Reductions accumulate in double
// over fixed blocks merged in block order, so results do not depend on the thread count; each
// block is small enough to stay in cache between its passes, so x is read from memory once per
// kernel pass. (Layer norm on float32 with AVX-512 or AVX2 sums float partials of at most 16
// terms per lane before they go into double, the forward's M2 and the backward: see its sections.)
#include <algorithm>
#include <cmath>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/activation.h"
#include "common/avx512_paths.h"
#include "common/isa.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "common/welford.h"
#include "cpu/stream_store.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "cpu/avx2.h"
#include "cpu/avx512.h"
#define FDNN_NORM_AVX512 1
#else
#define FDNN_NORM_AVX512 0
#endif
#include "ops/norm.h"

namespace fdnn {
namespace {

// Rows per block of a row-parallel pass over `cols` columns: a fixed amount of work.
int64_t rows_per_block(int64_t cols, int64_t elements) {
  return std::max<int64_t>(1, elements / std::max<int64_t>(1, cols));
}

// Rows per block of a pass that keeps one partial row (cols doubles) per block: as above, but
// at most kMaxPartials blocks, so wide rows do not need rows * cols doubles of partials. A block
// can hold many rows (n / 64 of them for a narrow x), so its sums accumulate in double.
constexpr int64_t kMaxPartials = 64;
int64_t rows_per_partial(int64_t rows, int64_t cols, int64_t elements) {
  return std::max(rows_per_block(cols, elements), ceil_div(rows, kMaxPartials));
}

// Planes (of s values each) per block of a pass over contiguous planes; s may be 0.
int64_t planes_per_block(int64_t s, int64_t elements) {
  return std::max<int64_t>(1, elements / std::max<int64_t>(1, s));
}

template <typename T> inline T param_or(const T* p, int64_t j, T fallback) { return p ? p[j] : fallback; }

// Whether a float32 output of that many elements is written with streaming stores
// (cpu/stream_store.h): the loops that write it are then SSE intrinsics with the same operations
// in the same order as the vectorized loops (each ISA clone contracts them into multiply-adds as
// it does those loops).
template <typename T> bool stream_rows(int64_t elements) {
  return FDNN_HAS_STREAM_STORE && std::is_same_v<T, float> &&
         stream_output(elements * static_cast<int64_t>(sizeof(T)));
}

// ---- batch norm, (N, C) layout: blocks of rows, per-channel partials ----

// Column reductions over a block of rows go row by row, a contiguous stream, with one double
// accumulator per column in the block's partial row (c doubles, in L1/L2); blocks are merged in
// double. (Chunks of 64 columns whose accumulators stayed in registers, summed over the block's
// rows one chunk at a time, read the rows at a stride of the row length: at 1024 columns every
// row was a new DRAM page for each chunk, and the forward ran at a third of the bandwidth.)
// Each column's sum adds the rows in the same order either way, so the bits are the same.

// Rows [r0, r1) added into the column sums pm, row by row. This and the next two are always
// inlined, so that each multiversioned caller compiles them for its own ISA (as the loops they
// replace were: the same multiply-add contraction, the same bits).
template <typename T>
FDNN_CLONE_INLINE void add_rows(double* FDNN_RESTRICT pm, const T* FDNN_RESTRICT x, int64_t r0, int64_t r1, int64_t c) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* row = x + r * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) pm[j] += static_cast<double>(row[j]);
  }
}

// The squared deviations of rows [r0, r1) from the column means pm added into pm2, row by row.
template <typename T>
FDNN_CLONE_INLINE void add_squared_deviations(double* FDNN_RESTRICT pm2, const double* FDNN_RESTRICT pm,
                                   const T* FDNN_RESTRICT x, int64_t r0, int64_t r1, int64_t c) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* row = x + r * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const double dev = static_cast<double>(row[j]) - pm[j];
      pm2[j] += dev * dev;
    }
  }
}

// y = act((x - mean) * a + beta) for rows [r0, r1), a = inv_std * gamma per column. The
// activation is a template constant, so that the loop vectorizes either way.
template <typename T, bool Relu>
FDNN_MULTIVERSION void normalize_columns(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, const T* FDNN_RESTRICT mean,
                                         const T* FDNN_RESTRICT a, const T* FDNN_RESTRICT beta, int64_t r0, int64_t r1,
                                         int64_t c) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * c;
    T* yr = y + r * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) yr[j] = batch_norm_normalize(xr[j], mean[j], a[j], beta[j], Relu);
  }
}

// Partial sums of dy and dy * xhat per column for rows [r0, r1) (xhat in T, the product and the
// sums in double: a product in T overflowed for |dy| near the float range where the sum is
// finite), row by row as column_block_stats.
template <typename T>
FDNN_CLONE_INLINE void add_column_grads(double* FDNN_RESTRICT sdy, double* FDNN_RESTRICT sdyx, const T* FDNN_RESTRICT dy,
                             const T* FDNN_RESTRICT x, const T* FDNN_RESTRICT mean, const T* FDNN_RESTRICT inv_std,
                             int64_t r0, int64_t r1, int64_t c) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = dy + r * c;
    const T* xr = x + r * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      sdy[j] += static_cast<double>(g[j]);
      sdyx[j] += static_cast<double>(g[j]) * static_cast<double>(normalized(xr[j], mean[j], inv_std[j]));
    }
  }
}
template <typename T>
FDNN_MULTIVERSION void column_block_grads(double* FDNN_RESTRICT sdy, double* FDNN_RESTRICT sdyx,
                                          const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT x,
                                          const T* FDNN_RESTRICT mean, const T* FDNN_RESTRICT inv_std, int64_t r0,
                                          int64_t r1, int64_t c) {
  std::fill(sdy, sdy + c, 0.0);
  std::fill(sdyx, sdyx + c, 0.0);
  add_column_grads(sdy, sdyx, dy, x, mean, inv_std, r0, r1, c);
}

// dx = k_dy dy - k_xhat xhat - k_0 per column for rows [r0, r1).
template <typename T>
FDNN_MULTIVERSION void bn_dx_columns(T* FDNN_RESTRICT dx, const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT x,
                                     const T* FDNN_RESTRICT mean, const T* FDNN_RESTRICT inv_std,
                                     const T* FDNN_RESTRICT k_dy, const T* FDNN_RESTRICT k_xhat,
                                     const T* FDNN_RESTRICT k_0, int64_t r0, int64_t r1, int64_t c, bool training) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = dy + r * c;
    const T* xr = x + r * c;
    T* d = dx + r * c;
    if (training) {
#pragma omp simd
      for (int64_t j = 0; j < c; ++j)
        d[j] = batch_norm_dx(g[j], normalized(xr[j], mean[j], inv_std[j]), k_dy[j], k_xhat[j], k_0[j]);
    } else {  // the statistics are constants: x does not enter (a NaN in x stays out of dx)
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) d[j] = batch_norm_dx_eval(g[j], k_dy[j]);
    }
  }
}

// ---- batch norm (N, C) on a small x (a training step's 128 x 512): the passes above over four
// rows at a time. The row loops above load and store every column's accumulator (and load its
// per-column constants) once per row, so loads and stores bound them, not arithmetic; here once
// per four rows. Each element and each column's sum goes through the same operations in the same
// order (a sum adds rows r, r + 1, r + 2, r + 3 to its accumulator in turn), so the bits are the
// row loops'. Only for x of at most kQuadMaxBytes (measured at a training step's sizes, where x
// is in cache); larger x keeps the row loops, whose bandwidth on DRAM-resident x was measured.
constexpr int64_t kQuadMaxBytes = int64_t{1} << 20;
template <typename T> bool bn_quads(int64_t n, int64_t c) {
  return n * c * static_cast<int64_t>(sizeof(T)) <= kQuadMaxBytes;
}

// Mean and M2 per channel of rows [r0, r1) into pm, pm2 (c each): the block mean, then the sum
// of squared deviations from it, both in double (the block's rows are re-read from cache); with
// kQuads four rows at a time (the rows left over, and every row without kQuads, one at a time).
template <typename T, bool kQuads>
FDNN_MULTIVERSION void column_block_stats(double* FDNN_RESTRICT pm, double* FDNN_RESTRICT pm2,
                                          const T* FDNN_RESTRICT x, int64_t r0, int64_t r1, int64_t c) {
  const double inv = 1.0 / static_cast<double>(r1 - r0);
  std::fill(pm, pm + c, 0.0);
  std::fill(pm2, pm2 + c, 0.0);
  int64_t r = r0;
  for (; kQuads && r + 4 <= r1; r += 4) {
    const T *x0 = x + r * c, *x1 = x0 + c, *x2 = x1 + c, *x3 = x2 + c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      double s = pm[j];
      s += static_cast<double>(x0[j]);
      s += static_cast<double>(x1[j]);
      s += static_cast<double>(x2[j]);
      s += static_cast<double>(x3[j]);
      pm[j] = s;
    }
  }
  add_rows(pm, x, r, r1, c);
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) pm[j] *= inv;
  for (r = r0; kQuads && r + 4 <= r1; r += 4) {
    const T *x0 = x + r * c, *x1 = x0 + c, *x2 = x1 + c, *x3 = x2 + c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const double mu = pm[j];
      double q = pm2[j];
      const double d0 = static_cast<double>(x0[j]) - mu;
      q += d0 * d0;
      const double d1 = static_cast<double>(x1[j]) - mu;
      q += d1 * d1;
      const double d2 = static_cast<double>(x2[j]) - mu;
      q += d2 * d2;
      const double d3 = static_cast<double>(x3[j]) - mu;
      q += d3 * d3;
      pm2[j] = q;
    }
  }
  add_squared_deviations(pm2, pm, x, r, r1, c);
}

// normalize_columns over four rows at a time.
template <typename T, bool Relu>
FDNN_MULTIVERSION void normalize_columns_quads(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x,
                                               const T* FDNN_RESTRICT mean, const T* FDNN_RESTRICT a,
                                               const T* FDNN_RESTRICT beta, int64_t r0, int64_t r1, int64_t c) {
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const T *x0 = x + r * c, *x1 = x0 + c, *x2 = x1 + c, *x3 = x2 + c;
    T *y0 = y + r * c, *y1 = y0 + c, *y2 = y1 + c, *y3 = y2 + c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const T mu = mean[j], aj = a[j], bj = beta[j];
      y0[j] = batch_norm_normalize(x0[j], mu, aj, bj, Relu);
      y1[j] = batch_norm_normalize(x1[j], mu, aj, bj, Relu);
      y2[j] = batch_norm_normalize(x2[j], mu, aj, bj, Relu);
      y3[j] = batch_norm_normalize(x3[j], mu, aj, bj, Relu);
    }
  }
  if (r < r1) normalize_columns<T, Relu>(y, x, mean, a, beta, r, r1, c);
}

// column_block_grads over four rows at a time.
template <typename T>
FDNN_MULTIVERSION void column_block_grads_quads(double* FDNN_RESTRICT sdy, double* FDNN_RESTRICT sdyx,
                                                const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT x,
                                                const T* FDNN_RESTRICT mean, const T* FDNN_RESTRICT inv_std,
                                                int64_t r0, int64_t r1, int64_t c) {
  std::fill(sdy, sdy + c, 0.0);
  std::fill(sdyx, sdyx + c, 0.0);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const T *g0 = dy + r * c, *g1 = g0 + c, *g2 = g1 + c, *g3 = g2 + c;
    const T *x0 = x + r * c, *x1 = x0 + c, *x2 = x1 + c, *x3 = x2 + c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const T mu = mean[j], is = inv_std[j];
      double s1 = sdy[j], s2 = sdyx[j];
      s1 += static_cast<double>(g0[j]);
      s2 += static_cast<double>(g0[j]) * static_cast<double>(normalized(x0[j], mu, is));
      s1 += static_cast<double>(g1[j]);
      s2 += static_cast<double>(g1[j]) * static_cast<double>(normalized(x1[j], mu, is));
      s1 += static_cast<double>(g2[j]);
      s2 += static_cast<double>(g2[j]) * static_cast<double>(normalized(x2[j], mu, is));
      s1 += static_cast<double>(g3[j]);
      s2 += static_cast<double>(g3[j]) * static_cast<double>(normalized(x3[j], mu, is));
      sdy[j] = s1;
      sdyx[j] = s2;
    }
  }
  add_column_grads(sdy, sdyx, dy, x, mean, inv_std, r, r1, c);
}

// bn_dx_columns over four rows at a time.
template <typename T>
FDNN_MULTIVERSION void bn_dx_columns_quads(T* FDNN_RESTRICT dx, const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT x,
                                           const T* FDNN_RESTRICT mean, const T* FDNN_RESTRICT inv_std,
                                           const T* FDNN_RESTRICT k_dy, const T* FDNN_RESTRICT k_xhat,
                                           const T* FDNN_RESTRICT k_0, int64_t r0, int64_t r1, int64_t c,
                                           bool training) {
  int64_t r = r0;
  if (training) {
    for (; r + 4 <= r1; r += 4) {
      const T *g0 = dy + r * c, *g1 = g0 + c, *g2 = g1 + c, *g3 = g2 + c;
      const T *x0 = x + r * c, *x1 = x0 + c, *x2 = x1 + c, *x3 = x2 + c;
      T *d0 = dx + r * c, *d1 = d0 + c, *d2 = d1 + c, *d3 = d2 + c;
#pragma omp simd
      for (int64_t j = 0; j < c; ++j) {
        const T mu = mean[j], is = inv_std[j], kd = k_dy[j], kx = k_xhat[j], k0 = k_0[j];
        d0[j] = batch_norm_dx(g0[j], normalized(x0[j], mu, is), kd, kx, k0);
        d1[j] = batch_norm_dx(g1[j], normalized(x1[j], mu, is), kd, kx, k0);
        d2[j] = batch_norm_dx(g2[j], normalized(x2[j], mu, is), kd, kx, k0);
        d3[j] = batch_norm_dx(g3[j], normalized(x3[j], mu, is), kd, kx, k0);
      }
    }
  }
  if (r < r1) bn_dx_columns(dx, dy, x, mean, inv_std, k_dy, k_xhat, k_0, r, r1, c, training);
}

// The (N, C) forward's per-channel statistics from its blocks' partials (pm, pm2: blocks x c, each
// block rpb rows): merged in block order as merge() (common/welford.h) does, then stored as
// batch_norm_store_stats does, on SIMD lanes of channels (scratch: 2 c doubles). The operations
// are theirs, in their order, and without multiply-add contraction, so each lane computes what
// the scalar code computes, bit for bit, in every ISA clone. (The scalar loop, a square root and
// three divisions per channel, took 4 us of a 128 x 512 forward, with the pool's threads idle.)
template <typename T>
__attribute__((optimize("fp-contract=off"))) FDNN_MULTIVERSION void bn_store_column_stats(
    T* FDNN_RESTRICT mean, T* FDNN_RESTRICT inv_std, T* FDNN_RESTRICT running_mean, T* FDNN_RESTRICT running_var,
    double* FDNN_RESTRICT mu, double* FDNN_RESTRICT m2, const double* FDNN_RESTRICT pm,
    const double* FDNN_RESTRICT pm2, int64_t blocks, int64_t rpb, int64_t n, int64_t c, double momentum,
    double eps) {
  std::fill(mu, mu + c, 0.0);
  std::fill(m2, m2 + c, 0.0);
  double count = 0.0;
  for (int64_t b = 0; b < blocks; ++b) {
    const double bcount = static_cast<double>(std::min(n, (b + 1) * rpb) - b * rpb);
    const double total = count + bcount;
    if (total == 0) continue;
    const double wb = bcount / total;
    const double* FDNN_RESTRICT bm = pm + b * c;
    const double* FDNN_RESTRICT bm2 = pm2 + b * c;
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const double delta = bm[j] - mu[j];
      mu[j] = mu[j] + delta * wb;
      m2[j] = m2[j] + bm2[j] + delta * delta * count * wb;
    }
    count = total;
  }
  const double m = static_cast<double>(n);
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) {
    const double var = m2[j] / m;
    mean[j] = static_cast<T>(mu[j]);
    inv_std[j] = static_cast<T>(inv_std_of(var, eps));
  }
  if (running_mean) {
#pragma omp simd
    for (int64_t j = 0; j < c; ++j)
      running_mean[j] = static_cast<T>(running_update(running_mean[j], mu[j], momentum));
  }
  if (running_var) {
#pragma omp simd
    for (int64_t j = 0; j < c; ++j)
      running_var[j] = static_cast<T>(running_update(running_var[j], m2[j] / m * m / (m - 1.0), momentum));
  }
}

// The backward's dgamma, dbeta and per-channel coefficients (batch_norm_grad_coeffs) from the
// channels' sums, on SIMD lanes of channels; without multiply-add contraction, bit for bit what
// the scalar code computes (as bn_store_column_stats).
template <typename T>
__attribute__((optimize("fp-contract=off"))) FDNN_MULTIVERSION void bn_grad_column_coeffs(
    T* FDNN_RESTRICT dgamma, T* FDNN_RESTRICT dbeta, T* FDNN_RESTRICT k_dy, T* FDNN_RESTRICT k_xhat,
    T* FDNN_RESTRICT k_0, const double* FDNN_RESTRICT sdy, const double* FDNN_RESTRICT sdyx,
    const T* FDNN_RESTRICT gamma, const T* FDNN_RESTRICT inv_std, int64_t c, double m, bool training) {
#pragma omp simd
  for (int64_t j = 0; j < c; ++j) {
    dbeta[j] = static_cast<T>(sdy[j]);
    dgamma[j] = static_cast<T>(sdyx[j]);
  }
  if (gamma) {
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const BnGradCoeffs k = batch_norm_grad_coeffs(gamma[j], inv_std[j], sdyx[j], sdy[j], m, training);
      k_dy[j] = static_cast<T>(k.k_dy);
      k_xhat[j] = static_cast<T>(k.k_xhat);
      k_0[j] = static_cast<T>(k.k_0);
    }
  } else {
#pragma omp simd
    for (int64_t j = 0; j < c; ++j) {
      const BnGradCoeffs k = batch_norm_grad_coeffs(T(1), inv_std[j], sdyx[j], sdy[j], m, training);
      k_dy[j] = static_cast<T>(k.k_dy);
      k_xhat[j] = static_cast<T>(k.k_xhat);
      k_0[j] = static_cast<T>(k.k_0);
    }
  }
}

#if FDNN_HAS_STREAM_STORE
// The two loops above on float32 with streaming stores in the loop (cpu/stream_store.h), as SSE
// intrinsics: the same operations in the same order (which each ISA clone contracts into
// multiply-adds as it does the loops above).
template <bool Relu>
FDNN_MULTIVERSION void normalize_columns_streamed(float* y, const float* x, const float* mean, const float* a,
                                                  const float* beta, int64_t r0, int64_t r1, int64_t c) {
  const __m128 zero = _mm_setzero_ps();
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * c;
    stream_loop(
        y + r * c, c, [&](int64_t j) { return batch_norm_normalize(xr[j], mean[j], a[j], beta[j], Relu); },
        [&](int64_t j) {
          const __m128 v = _mm_add_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(xr + j), _mm_loadu_ps(mean + j)),
                                                 _mm_loadu_ps(a + j)),
                                      _mm_loadu_ps(beta + j));
          return Relu ? _mm_max_ps(zero, v) : v;
        });
  }
  stream_fence();
}

FDNN_MULTIVERSION void bn_dx_columns_streamed(float* dx, const float* dy, const float* x, const float* mean,
                                              const float* inv_std, const float* k_dy, const float* k_xhat,
                                              const float* k_0, int64_t r0, int64_t r1, int64_t c, bool training) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* g = dy + r * c;
    const float* xr = x + r * c;
    if (training) {
      stream_loop(
          dx + r * c, c,
          [&](int64_t j) {
            return batch_norm_dx(g[j], normalized(xr[j], mean[j], inv_std[j]), k_dy[j], k_xhat[j], k_0[j]);
          },
          [&](int64_t j) {
            const __m128 xhat = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(xr + j), _mm_loadu_ps(mean + j)),
                                           _mm_loadu_ps(inv_std + j));
            return _mm_sub_ps(_mm_sub_ps(_mm_mul_ps(_mm_loadu_ps(k_dy + j), _mm_loadu_ps(g + j)),
                                         _mm_mul_ps(_mm_loadu_ps(k_xhat + j), xhat)),
                              _mm_loadu_ps(k_0 + j));
          });
    } else {
      stream_loop(
          dx + r * c, c, [&](int64_t j) { return batch_norm_dx_eval(g[j], k_dy[j]); },
          [&](int64_t j) { return _mm_mul_ps(_mm_loadu_ps(k_dy + j), _mm_loadu_ps(g + j)); });
    }
  }
  stream_fence();
}
#endif

// ---- contiguous planes (batch norm with spatial axes, layer norm rows, weight norm rows) ----

template <typename T> FDNN_MULTIVERSION double plane_sum(const T* FDNN_RESTRICT x, int64_t len) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < len; ++i) sum += static_cast<double>(x[i]);
  return sum;
}

template <typename T> FDNN_MULTIVERSION double plane_sq_dev(const T* FDNN_RESTRICT x, int64_t len, double mean) {
  double m2 = 0.0;
#pragma omp simd reduction(+ : m2)
  for (int64_t i = 0; i < len; ++i) {
    const double dev = static_cast<double>(x[i]) - mean;
    m2 += dev * dev;
  }
  return m2;
}

// Mean (NaN for len == 0, see layer_norm_mean) and M2 of a plane, in double: two passes.
template <typename T> MeanM2 plane_stats(const T* FDNN_RESTRICT x, int64_t len) {
  const double mean = layer_norm_mean(plane_sum(x, len), len);
  return {static_cast<double>(len), mean, plane_sq_dev(x, len, mean)};
}

// y = act((x - mean) * a + b) over a plane.
template <typename T, bool Relu>
FDNN_MULTIVERSION void normalize_plane(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t len, T mean, T a, T b) {
#pragma omp simd
  for (int64_t i = 0; i < len; ++i) y[i] = batch_norm_normalize(x[i], mean, a, b, Relu);
}

// sum(dy) and sum(dy * xhat) over a plane (xhat in T, the product and the sums in double, as in
// column_block_grads).
template <typename T>
FDNN_MULTIVERSION void plane_grad_sums(double& sdy, double& sdyx, const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT x,
                                       int64_t len, T mean, T inv_std) {
  double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < len; ++i) {
    const T xhat = normalized(x[i], mean, inv_std);
    a += static_cast<double>(dy[i]);
    b += static_cast<double>(dy[i]) * static_cast<double>(xhat);
  }
  sdy = a;
  sdyx = b;
}

template <typename T>
FDNN_MULTIVERSION void bn_dx_plane(T* FDNN_RESTRICT dx, const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT x,
                                   int64_t len, T mean, T inv_std, T k_dy, T k_xhat, T k_0, bool training) {
  if (training) {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dx[i] = batch_norm_dx(dy[i], normalized(x[i], mean, inv_std), k_dy, k_xhat, k_0);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) dx[i] = batch_norm_dx_eval(dy[i], k_dy);
  }
}

// Layer norm of rows [r0, r1).
template <typename T, bool Relu>
FDNN_MULTIVERSION void layer_norm_rows(T* FDNN_RESTRICT y, T* FDNN_RESTRICT mean, T* FDNN_RESTRICT inv_std,
                                       const T* FDNN_RESTRICT x, const T* FDNN_RESTRICT gamma,
                                       const T* FDNN_RESTRICT beta, int64_t r0, int64_t r1, int64_t d, double eps,
                                       bool stream) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* xr = x + r * d;
    T* yr = y + r * d;
    const MeanM2 st = plane_stats(xr, d);
    const T mu = static_cast<T>(st.mean);
    const T is = static_cast<T>(inv_std_of(st.m2 / static_cast<double>(d), eps));
    mean[r] = mu;
    inv_std[r] = is;
#if FDNN_HAS_STREAM_STORE
    if constexpr (std::is_same_v<T, float>) {
      if (stream) {
        const __m128 vmu = _mm_set1_ps(mu), vis = _mm_set1_ps(is), one = _mm_set1_ps(1.0f), zero = _mm_setzero_ps();
        stream_loop(
            yr, d,
            [&](int64_t j) {
              return layer_norm_normalize(xr[j], mu, is, param_or(gamma, j, 1.0f), param_or(beta, j, 0.0f), Relu);
            },
            [&](int64_t j) {
              const __m128 g4 = gamma ? _mm_loadu_ps(gamma + j) : one, b4 = beta ? _mm_loadu_ps(beta + j) : zero;
              const __m128 v = _mm_add_ps(_mm_mul_ps(_mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(xr + j), vmu), vis), g4), b4);
              return Relu ? _mm_max_ps(zero, v) : v;
            });
        continue;
      }
    }
#endif
    if (gamma && beta) {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) yr[j] = layer_norm_normalize(xr[j], mu, is, gamma[j], beta[j], Relu);
    } else {
#pragma omp simd
      for (int64_t j = 0; j < d; ++j)
        yr[j] = layer_norm_normalize(xr[j], mu, is, param_or(gamma, j, T(1)), param_or(beta, j, T(0)), Relu);
    }
  }
  if (stream) stream_fence();
}

// Layer norm backward of rows [r0, r1): per row the sums of g = dy * gamma and g * xhat (g and
// xhat in T, the product and the sums in double: a product in T overflowed for |dy| near the
// float range where the sum is finite), then dx (layer_norm_dx) from the same rounded g,
// kept between the loops in dx's row, or with stream (float32) in the L1 buffer row while dx is
// streamed out (so that g - mean(g) cancels exactly where it should, e.g. for d = 1, instead of
// g being recomputed in a fused multiply-add); pg, pb (d each) receive the block's column sums
// of dy * xhat and dy, in double (a second pass over the block's rows, which are still in cache).
// (Adding the column sums in the first loop instead, a single pass, was slower: 9.7 against
// 8.4 ms for 8192 x 1024 on one Zen 4 core.)
template <typename T>
FDNN_MULTIVERSION void layer_norm_backward_rows(T* FDNN_RESTRICT dx, double* FDNN_RESTRICT pg,
                                                double* FDNN_RESTRICT pb, const T* FDNN_RESTRICT dy,
                                                const T* FDNN_RESTRICT x, const T* FDNN_RESTRICT gamma,
                                                const T* FDNN_RESTRICT mean, const T* FDNN_RESTRICT inv_std,
                                                int64_t r0, int64_t r1, int64_t d, T* FDNN_RESTRICT row,
                                                bool stream) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = dy + r * d;
    const T* xr = x + r * d;
    T* dr = stream ? row : dx + r * d;
    const T mu = mean[r], is = inv_std[r];
    double sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
    for (int64_t j = 0; j < d; ++j) {
      const T gj = g[j] * param_or(gamma, j, T(1));
      dr[j] = gj;
      sg += static_cast<double>(gj);
      sgx += static_cast<double>(gj) * static_cast<double>(normalized(xr[j], mu, is));
    }
    const T mg = static_cast<T>(layer_norm_mean(sg, d)), mgx = static_cast<T>(layer_norm_mean(sgx, d));
#if FDNN_HAS_STREAM_STORE
    if constexpr (std::is_same_v<T, float>) {
      if (stream) {
        const __m128 vmu = _mm_set1_ps(mu), vis = _mm_set1_ps(is), vmg = _mm_set1_ps(mg), vmgx = _mm_set1_ps(mgx);
        stream_loop(
            dx + r * d, d, [&](int64_t j) { return layer_norm_dx(dr[j], normalized(xr[j], mu, is), is, mg, mgx); },
            [&](int64_t j) {
              const __m128 xhat = _mm_mul_ps(_mm_sub_ps(_mm_loadu_ps(xr + j), vmu), vis);
              return _mm_mul_ps(vis, _mm_sub_ps(_mm_sub_ps(_mm_loadu_ps(dr + j), vmg), _mm_mul_ps(xhat, vmgx)));
            });
        continue;
      }
    }
#endif
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) dr[j] = layer_norm_dx(dr[j], normalized(xr[j], mu, is), is, mg, mgx);
  }
  if (stream) stream_fence();
  // The block's column sums of dy * xhat and dy, row by row (as column_block_stats).
  std::fill(pg, pg + d, 0.0);
  std::fill(pb, pb + d, 0.0);
  for (int64_t r = r0; r < r1; ++r) {
    const T* g = dy + r * d;
    const T* xr = x + r * d;
    const T mu = mean[r], is = inv_std[r];
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) {
      pg[j] += static_cast<double>(g[j]) * static_cast<double>(normalized(xr[j], mu, is));
      pb[j] += static_cast<double>(g[j]);
    }
  }
}

#if FDNN_NORM_AVX512
// ---- what the float32 layer-norm paths with intrinsics share (AVX-512F and AVX2 below) ----

// Below this M2 per column the squares (x - mu)^2 may have lost their accuracy to float's
// subnormal range (|x - mu| < 2^-63): the row is redone in double. With a tiny eps (any eps > 0
// is accepted) a row of spread ~1e-25 gave M2 0, inv_std inf and y NaN. Constant rows take the
// double path too (M2 0 either way).
constexpr double kMinFloatM2 = 0x1p-100;

// The backward's fallbacks for float partials that overflowed (|dy| near the float range, where
// the sum in double is finite, as the generic loops' sums are): the same rounded terms as the
// vector loops (g = dy * gamma and xhat in float), each added in double (the double product of
// two floats is exact). Whether one runs depends only on the data, so the results stay
// thread-count invariant.
void row_sums_in_double(double& sum_g, double& sum_gx, const float* dy, const float* x, const float* gamma, float mu,
                        float is, int64_t d) {
  sum_g = 0.0;
  sum_gx = 0.0;
  for (int64_t j = 0; j < d; ++j) {
    const float g = gamma ? dy[j] * gamma[j] : dy[j];  // rounded: converted before the addition
    const float xhat = (x[j] - mu) * is;
    sum_g += static_cast<double>(g);
    sum_gx += static_cast<double>(g) * static_cast<double>(xhat);
  }
}

void column_sums_in_double(double* pg, double* pb, const float* dy, const float* x, const float* mean,
                           const float* inv_std, int64_t r0, int64_t r1, int64_t d) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* g = dy + r * d;
    const float* xr = x + r * d;
    for (int64_t j = 0; j < d; ++j) {
      const float xhat = (xr[j] - mean[r]) * inv_std[r];
      pb[j] += static_cast<double>(g[j]);
      pg[j] += static_cast<double>(g[j]) * static_cast<double>(xhat);
    }
  }
}

// ---- layer norm on float32 with AVX-512F (where the CPU has it, for every row count) ----
//
// The generic loops above took 3.4-3.9 ms (forward) and 6.6-8.2 ms (backward) of one Zen 4 core
// for 8192 x 1024 (CPU time, under contention), against ~2.2 and ~4.2 ms here (2026-12-07):
// their streamed stores are SSE (4 floats per instruction, cpu/stream_store.h), and the backward converted every
// term of its row sums and of its column sums to double and made a second pass over each
// block's rows for the column sums. Here the loops are 16 floats wide (streaming stores
// where stream_rows says so, ordinary ones otherwise, the same values either way), the forward's
// M2 and the backward's row sums are float vector partials of at most 16 terms per lane added
// into double (the forward's mean is a sum in double: see ln_forward_row_stats; its statistics
// wholly in double, as the generic loops take them, were ~0.16 ms of one core for 512 x 1024 in
// cache and ~3.0 ms for 8192 x 1024, against ~0.135 and ~2.8 ms with the float M2, and ~0.12
// and ~2.6 ms with a float mean too, which was not accurate enough: medians of 15-30 calls under
// contention, one build each), and its column sums are float partials over kColRows rows (in the
// pass that writes dx) added into the block's double partial row: every sum is double across its
// float blocks, whose fixed boundaries depend on neither the thread count nor the output's
// alignment.
bool norm_avx512() { return avx512_paths_enabled(); }

constexpr int64_t kColRows = 16;    // rows per float column partial of the backward
constexpr int64_t kSumSpan = 1024;  // columns per float row partial (16 terms per lane, 4 accumulators)
// The backward's dx loop (whose inputs are in L1) prefetches the rows kPrefetchRows ahead into
// L2, so that the next rows' first loop does not wait on memory: 8192 x 1024 on one Zen 4 core
// went from ~6.3 to ~5.0 ms in a stand-alone copy of the loops, and won 4 of 5 interleaved runs
// of the kernel under contention. (The forward's normalizing loop did not gain from it.)
// Measured and not kept (2026-12-07): the first pass two rows at a time where dx is streamed (the
// column partials loaded and stored once per pair) with the rows 2 ahead: 9-14% less one-thread
// CPU time in a stand-alone copy of the loops, but at 2 threads, 8192 x 1024 fwd+bwd with out=,
// the backward took 3.0-3.4 ms in 6 of 6 interleaved process pairs against 2.0-3.3 ms (median
// ~2.7) for this loop, and 7-10% longer in 4 of 4 more pairs.
constexpr int64_t kPrefetchRows = 4;

FDNN_AVX512_INLINE __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// out[i] = lane i of v for i in [0, count), count <= 16: streaming 16-byte stores where out + i
// is 16-byte aligned with 4 lanes left, ordinary stores elsewhere.
FDNN_AVX512_INLINE void stream_lanes(float* out, __m512 v, int64_t count) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  for (int64_t i = 0; i < count; ++i) {
    if (reinterpret_cast<uintptr_t>(out + i) % 16 == 0 && i + 4 <= count) {
      _mm_stream_ps(out + i, _mm_loadu_ps(lanes + i));
      i += 3;
    } else {
      out[i] = lanes[i];
    }
  }
}

// The vector of out[j, j + count) (count < 16; stream: streaming 16-byte stores where aligned) and
// the 64-byte aligned vector of out[j, j + 16), for store_row_avx512.
template <class F>
FDNN_AVX512_INLINE void store_part(float* out, int64_t j, int64_t count, bool stream, const F& f) {
  if (stream) {
    stream_lanes(out + j, f(j, first_lanes(count)), count);
  } else {
    _mm512_mask_storeu_ps(out + j, first_lanes(count), f(j, first_lanes(count)));
  }
}
template <class F> FDNN_AVX512_INLINE void store_whole(float* out, int64_t j, bool stream, const F& f) {
  if (stream) {
    _mm512_stream_ps(out + j, f(j, __mmask16(0xFFFF)));
  } else {
    _mm512_store_ps(out + j, f(j, __mmask16(0xFFFF)));
  }
}

// out[j] = f(j, m) for j in [0, n) in vectors of 16 (m: the lanes inside the row; f loads with
// it), from out's first 64-byte boundary on (where out is float-aligned), a partial vector
// before it and after the last full one: the stores, and the loads of inputs at out's offset
// modulo 64 (NumPy's large arrays all start 16 bytes past a page), do not cross cache lines
// (64 x 1024 in L2, all arrays 16 bytes past a line, one core: forward 0.233 against 0.256,
// backward 0.34 against 0.37-0.42 ns per element with ordinary stores from the row's start).
// Where stream: streaming stores, 16 bytes wide in the partial vectors (a row's head and
// tail stored in the ordinary way shared their lines with streamed stores and were slower than
// the SSE loops). Ordinary stores otherwise; the values are the same either way. backward: the
// same vectors, from the row's end to its start (see store_backward).
template <class F>
FDNN_AVX512_INLINE void store_row_avx512(float* out, int64_t n, bool stream, bool backward, const F& f) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(out);  // float-aligned (the bindings' outputs are)
  const int64_t head = std::min<int64_t>(n, static_cast<int64_t>((64 - address % 64) % 64 / sizeof(float)));
  const int64_t full = head + (n - head) / 16 * 16;
  if (backward) {
    if (full < n) store_part(out, full, n - full, stream, f);
    for (int64_t j = full - 16; j >= head; j -= 16) store_whole(out, j, stream, f);
    if (head > 0) store_part(out, 0, head, stream, f);
  } else {
    if (head > 0) store_part(out, 0, head, stream, f);
    for (int64_t j = head; j < full; j += 16) store_whole(out, j, stream, f);
    if (full < n) store_part(out, full, n - full, stream, f);
  }
}

// Whether a row's store loop (store_row_avx512, and store_row_avx2 in the forward) runs from the
// row's end to its start. A store
// that falls, modulo 4096, just ahead of the addresses the loop loads next makes those loads wait
// for it (their low 12 address bits match: 4K aliasing); a loop in the other direction moves its
// loads away from its stores. Stores at out + j and loads at in + j with out - in = delta (mod 4096)
// collide running forward when delta is in (0, kAliasBytes], backward when it is in
// [-kAliasBytes, 0). Forward unless an input (null: none) collides forward and none backward.
// 8192 x 1024 with y and dx at x's offset + 16 to + 256 bytes (a 64-byte aligned out= buffer)
// took 3.1-4.0 ms of one core for the forward against 2.5 at offset 0 or below; run backward
// there, 2.2-2.4 at every offset (one-thread CPU time, 2026-12-07, under contention).
constexpr uintptr_t kAliasBytes = 1024;
inline bool store_backward(const float* out, const float* a, const float* b, const float* c) {
  bool ahead = false, behind = false;
  for (const float* in : {a, b, c}) {
    if (!in) continue;
    const uintptr_t delta = (reinterpret_cast<uintptr_t>(out) - reinterpret_cast<uintptr_t>(in)) % 4096;
    ahead |= delta > 0 && delta <= kAliasBytes;
    behind |= delta >= 4096 - kAliasBytes;
  }
  return ahead && !behind;
}

// y = act(xhat * gamma + beta) of one row, xhat = (x - mean) * inv_std (a multiply-add).
template <bool Relu> struct LnForwardVec {
  const float *x, *gamma, *beta;
  __m512 mu, is;
  FDNN_AVX512_INLINE __m512 operator()(int64_t j, __mmask16 m) const {
    const __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), mu), is);
    const __m512 g = gamma ? _mm512_maskz_loadu_ps(m, gamma + j) : _mm512_set1_ps(1.0f);
    const __m512 b = beta ? _mm512_maskz_loadu_ps(m, beta + j) : _mm512_setzero_ps();
    const __m512 v = _mm512_fmadd_ps(xhat, g, b);
    return Relu ? _mm512_max_ps(_mm512_setzero_ps(), v) : v;
  }
};

FDNN_AVX512_INLINE __m512d add_halves_pd(__m512d acc, __m512 v) {
  acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
}

// The forward's sum of squared deviations from mu over a row, sum((x - mu)^2), as float partials
// over kSumSpan columns (16 floats at a time in 4 accumulators, so at most 16 terms per lane)
// added into double.
FDNN_AVX512_INLINE double ln_forward_squared_deviations(const float* x, int64_t d, float mu) {
  const __m512 vmu = _mm512_set1_ps(mu);
  __m512d s = _mm512_setzero_pd();
  for (int64_t c0 = 0; c0 < d; c0 += kSumSpan) {
    const int64_t c1 = std::min(d, c0 + kSumSpan);
    __m512 a[4];
    for (int k = 0; k < 4; ++k) a[k] = _mm512_setzero_ps();
    int64_t j = c0;
    for (; j + 64 <= c1; j += 64)
      for (int k = 0; k < 4; ++k) {
        const __m512 e = _mm512_sub_ps(_mm512_loadu_ps(x + j + 16 * k), vmu);
        a[k] = _mm512_fmadd_ps(e, e, a[k]);
      }
    for (int k = 0; j < c1; j += 16, ++k) {
      const __mmask16 m = first_lanes(c1 - j);
      const __m512 e = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, x + j), vmu);
      a[k] = _mm512_fmadd_ps(e, e, a[k]);
    }
    for (int k = 0; k < 4; ++k) s = add_halves_pd(s, a[k]);
  }
  return _mm512_reduce_add_pd(s);
}

// The sum of a row in double: each float converted (vcvtps2pd, the loop's bound) and added into
// 8 accumulators of 8 doubles (a multiply-add by 1, exact as the addition, on the multiply pipes;
// plane_sum's two accumulators of additions were bound by their latency: ~5 cycles per 16 floats
// against ~4.2 in a stand-alone loop on one Zen 4 core).
FDNN_AVX512_INLINE double row_sum_in_double(const float* x, int64_t d) {
  const __m512d one = _mm512_set1_pd(1.0);
  __m512d s[8];
  for (int k = 0; k < 8; ++k) s[k] = _mm512_setzero_pd();
  int64_t j = 0;
  for (; j + 64 <= d; j += 64)
    for (int k = 0; k < 8; ++k) s[k] = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + j + 8 * k)), one, s[k]);
  for (int k = 0; j < d; j += 8, ++k) {
    const __m512 v = _mm512_maskz_loadu_ps(first_lanes(std::min<int64_t>(8, d - j)), x + j);
    s[k] = _mm512_add_pd(s[k], _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
  }
  for (int k = 0; k < 4; ++k) s[k] = _mm512_add_pd(s[k], s[k + 4]);
  return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s[0], s[1]), _mm512_add_pd(s[2], s[3])));
}

// Mean and M2 of a row in two passes: the mean from the sum in double (row_sum_in_double; from
// float partials, even corrected by sum(x - mu), it was up to 40x NumPy float32's own error off
// the exact one: x - mu rounds the same way for every x of a binade), then the deviations
// e = x - mu from mu = float(mean): M2 = sum(e^2) - sum(e)^2 / d (the corrected two-pass formula;
// sum(e) only corrects M2 for mu's rounding), sum(e^2) as float partials, sum(e) in double as
// sum(x) - d mu (d mu exact in double below 2^29 columns). (sum(e) as float partials too, in the
// pass of sum(e^2), gave the same bits in the tests' and the dump's cases and cost an addition
// per 16 floats: the forward of 64 x 1024 in L2 took 0.232-0.236 against 0.216 ns per element on
// one core.) Where a sum is not finite (|x| near 1e20 squares beyond the float range; inf or NaN
// in x) or M2 is below kMinFloatM2 per column: the double path, plane_stats. Which path a row
// takes depends only on its data, so the results stay thread-count invariant.
FDNN_AVX512_INLINE MeanM2 ln_forward_row_stats(const float* x, int64_t d) {
  const double sum = row_sum_in_double(x, d);
  const double mean = layer_norm_mean(sum, d);
  const float mu = static_cast<float>(mean);
  const double dev = sum - static_cast<double>(d) * static_cast<double>(mu);  // sum(x - mu)
  const double m2 = ln_forward_squared_deviations(x, d, mu) - dev * layer_norm_mean(dev, d);
  if (!std::isfinite(mean) || !std::isfinite(m2) || !(m2 >= kMinFloatM2 * static_cast<double>(d)))
    return plane_stats(x, d);
  return {static_cast<double>(d), mean, m2};
}

template <bool Relu>
FDNN_AVX512 void layer_norm_rows_avx512(float* y, float* mean, float* inv_std, const float* x, const float* gamma,
                                        const float* beta, int64_t r0, int64_t r1, int64_t d, double eps,
                                        bool stream) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * d;
    const MeanM2 st = ln_forward_row_stats(xr, d);
    const float mu = static_cast<float>(st.mean);
    const float is = static_cast<float>(inv_std_of(st.m2 / static_cast<double>(d), eps));
    mean[r] = mu;
    inv_std[r] = is;
    store_row_avx512(y + r * d, d, stream, store_backward(y + r * d, xr, gamma, beta),
                     LnForwardVec<Relu>{xr, gamma, beta, _mm512_set1_ps(mu), _mm512_set1_ps(is)});
  }
  if (stream) stream_fence();
}

// g = dy * gamma rounded to float: a product the compiler may not contract into a following
// addition (in g - mean_g, a multiply-add would leave g's rounding error where g - mean_g must
// cancel exactly, e.g. for d = 1).
FDNN_AVX512_INLINE __m512 rounded_product(__m512 a, __m512 b) {
  return _mm512_mul_round_ps(a, b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// dx = inv_std * ((g - mean_g) - xhat * mean_gx), g = dy * gamma, of one row (as layer_norm_dx),
// and the float column partials cb[j] += dy, cg[j] += dy * xhat (the block's rows added in row
// order). next_dy, next_x (null past the last row): the row kPrefetchRows ahead, fetched into L2
// meanwhile. (The column partials were added in the first pass, with the row sums, until
// 2026-12-07: there they took two more loads and two stores a vector in a loop whose loads do not
// start on a line; here dy and xhat are at hand and the vectors start on dx's 64-byte boundary
// (store_row_avx512), which cb and cg are placed to share. 8192 x 1024 streamed, one core, out=
// at x's offset and 48 bytes past: 3.7-4.5 against 4.5-5.9 ms in 2 interleaved process pairs of
// same-tree builds under contention; 64 x 1024 in L2: 0.35 against 0.34 ns per element.)
// Measured and not kept (2026-12-07, one core): the column partials held in registers over a
// 16-row block, 64 columns at a time, in a third pass over the block's rows from L2 (5.5-6.5
// against 3.7-5.1 ms for 8192 x 1024); in the first pass as two arrays placed by a search for
// offsets modulo 4096 behind the loads (64 x 1024 in L2: 0.35-0.62 ns per element by placement,
// against 0.32-0.36 for one scratch of the two sums interleaved per 16 columns, the layout
// before the partials moved into this loop); dx as
// inv_std (g - mean_g) - (inv_std^2 mean_gx)(x - mu), one multiplication fewer (no gain: the loop
// is not bound by its arithmetic). Not tried for lack of a measurable cause: merging a row's last
// partial line with the next row's first before streaming it (at one thread, out= at x's offset,
// partial lines, was as fast as 64-byte aligned out=, whole lines).
struct LnDxVec {
  const float *dy, *x, *gamma, *next_dy, *next_x;
  float *cb, *cg;
  __m512 mu, is, mg, mgx;
  FDNN_AVX512_INLINE __m512 operator()(int64_t j, __mmask16 m) const {
    if (next_dy) {
      _mm_prefetch(reinterpret_cast<const char*>(next_dy + j), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(next_x + j), _MM_HINT_T1);
    }
    const __m512 dyv = _mm512_maskz_loadu_ps(m, dy + j);
    __m512 g = dyv;
    if (gamma) g = rounded_product(g, _mm512_maskz_loadu_ps(m, gamma + j));
    const __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + j), mu), is);
    _mm512_mask_storeu_ps(cb + j, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, cb + j), dyv));
    _mm512_mask_storeu_ps(cg + j, m, _mm512_fmadd_ps(dyv, xhat, _mm512_maskz_loadu_ps(m, cg + j)));
    return _mm512_mul_ps(is, _mm512_fnmadd_ps(xhat, mgx, _mm512_sub_ps(g, mg)));
  }
};

// One vector of a row's first pass: the row sums of g and g * xhat into a, b (lanes outside m
// left as they are).
template <bool Full>
FDNN_AVX512_INLINE void ln_backward_step(__m512& a, __m512& b, const float* dy, const float* x,
                                         const float* gamma, __m512 mu, __m512 is, int64_t j, __mmask16 m) {
  const __m512 dyv = Full ? _mm512_loadu_ps(dy + j) : _mm512_maskz_loadu_ps(m, dy + j);
  const __m512 xv = Full ? _mm512_loadu_ps(x + j) : _mm512_maskz_loadu_ps(m, x + j);
  const __m512 g = gamma ? rounded_product(dyv, Full ? _mm512_loadu_ps(gamma + j) : _mm512_maskz_loadu_ps(m, gamma + j))
                         : dyv;
  const __m512 xhat = _mm512_mul_ps(_mm512_sub_ps(xv, mu), is);
  if (Full) {
    a = _mm512_add_ps(a, g);
    b = _mm512_fmadd_ps(g, xhat, b);
  } else {
    a = _mm512_mask_add_ps(a, m, a, g);
    b = _mm512_mask3_fmadd_ps(g, xhat, b, m);
  }
}

// Floats of scratch for the backward's column partials cb, cg of padded (a multiple of 16)
// columns each, placed as layer_norm_backward_rows_avx512 places them.
constexpr int64_t kColumnScratch(int64_t padded) { return 2 * padded + 32; }

// pb[j] += cb[j], pg[j] += cg[j] (double += float), j in [0, d).
FDNN_AVX512_INLINE void add_partials(double* pg, double* pb, const float* cb, const float* cg, int64_t d) {
  for (int64_t j = 0; j < d; j += 16) {
    const __mmask16 m = first_lanes(d - j);
    const __mmask8 lo = static_cast<__mmask8>(m), hi = static_cast<__mmask8>(m >> 8);
    for (int half = 0; half < 2; ++half) {
      double* p = half ? pg : pb;
      const __m512 v = _mm512_maskz_loadu_ps(m, (half ? cg : cb) + j);
      _mm512_mask_storeu_pd(
          p + j, lo, _mm512_add_pd(_mm512_maskz_loadu_pd(lo, p + j), _mm512_cvtps_pd(_mm512_castps512_ps256(v))));
      _mm512_mask_storeu_pd(
          p + j + 8, hi,
          _mm512_add_pd(_mm512_maskz_loadu_pd(hi, p + j + 8),
                        _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)))));
    }
  }
}

// Whether the column partials c[0, d) are all finite (else the fallbacks above run).
FDNN_AVX512 bool all_finite(const float* c, int64_t d) {
  __mmask16 bad = 0;
  for (int64_t j = 0; j < d; j += 16) {
    const __m512 v = _mm512_maskz_loadu_ps(first_lanes(d - j), c + j);
    bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_NEQ_UQ);  // inf - inf, NaN
  }
  return bad == 0;
}

// Layer norm backward of rows [r0, r1) of `rows` into dx and the block's column partials pg
// (dy * xhat), pb (dy); c: kColumnScratch(padded) floats of 64-byte aligned scratch.
FDNN_AVX512 void layer_norm_backward_rows_avx512(float* dx, double* pg, double* pb, const float* dy, const float* x,
                                                 const float* gamma, const float* mean, const float* inv_std,
                                                 int64_t r0, int64_t r1, int64_t rows, int64_t d, float* c,
                                                 bool stream) {
  const int64_t padded = ceil_div(d, int64_t(16)) * 16;
  std::fill(pg, pg + d, 0.0);
  std::fill(pb, pb + d, 0.0);
  for (int64_t s0 = r0; s0 < r1; s0 += kColRows) {
    // cb + j at dx's offset modulo 64 (for the block's first row; every row where 4 d is a
    // multiple of 64), cg 64 bytes further modulo 4096 (not at cb's offset where d is a multiple of
    // 1024: a load of cg would wait on the store to cb just before)
    std::fill(c, c + kColumnScratch(padded), 0.0f);
    const int64_t head = static_cast<int64_t>((64 - reinterpret_cast<uintptr_t>(dx + s0 * d) % 64) % 64 / 4);
    float* cb = c + (16 - head) % 16;
    float* cg = cb + padded + 16;
    const int64_t s1 = std::min(r1, s0 + kColRows);
    for (int64_t r = s0; r < s1; ++r) {
      const float* g = dy + r * d;
      const float* xr = x + r * d;
      const __m512 mu = _mm512_set1_ps(mean[r]), is = _mm512_set1_ps(inv_std[r]);
      __m512d sg = _mm512_setzero_pd(), sgx = _mm512_setzero_pd();
      for (int64_t c0 = 0; c0 < d; c0 += kSumSpan) {
        const int64_t c1 = std::min(d, c0 + kSumSpan);
        __m512 a[4], b[4];
        for (int k = 0; k < 4; ++k) a[k] = b[k] = _mm512_setzero_ps();
        int64_t j = c0;
        for (; j + 64 <= c1; j += 64)
          for (int k = 0; k < 4; ++k)
            ln_backward_step<true>(a[k], b[k], g, xr, gamma, mu, is, j + 16 * k,
                                   __mmask16(0xFFFF));
        for (int k = 0; j < c1; j += 16, ++k)
          ln_backward_step<false>(a[k], b[k], g, xr, gamma, mu, is, j, first_lanes(c1 - j));
        sg = add_halves_pd(sg, _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));
        sgx = add_halves_pd(sgx, _mm512_add_ps(_mm512_add_ps(b[0], b[1]), _mm512_add_ps(b[2], b[3])));
      }
      double sum_g = _mm512_reduce_add_pd(sg), sum_gx = _mm512_reduce_add_pd(sgx);
      if (!std::isfinite(sum_g) || !std::isfinite(sum_gx))  // a float partial may have overflowed
        row_sums_in_double(sum_g, sum_gx, g, xr, gamma, mean[r], inv_std[r], d);
      const float mg = static_cast<float>(layer_norm_mean(sum_g, d));
      const float mgx = static_cast<float>(layer_norm_mean(sum_gx, d));
      const bool ahead = r + kPrefetchRows < rows;
      store_row_avx512(dx + r * d, d, stream, store_backward(dx + r * d, g, xr, gamma),
                       LnDxVec{g, xr, gamma, ahead ? g + kPrefetchRows * d : nullptr,
                               ahead ? xr + kPrefetchRows * d : nullptr, cb, cg, mu, is, _mm512_set1_ps(mg),
                               _mm512_set1_ps(mgx)});
    }
    if (all_finite(c, kColumnScratch(padded))) {
      add_partials(pg, pb, cb, cg, d);
    } else {  // a float partial may have overflowed: this block's columns again in double
      column_sums_in_double(pg, pb, dy, x, mean, inv_std, s0, s1, d);
    }
  }
  if (stream) stream_fence();
}

// ---- layer norm on float32 with AVX2 and FMA (x86-64 CPUs without AVX-512F, or with its paths off) ----
//
// The AVX-512 section's method, 8 floats wide: the forward's mean from the row's sum in double,
// its M2 from float partials of at most 16 terms per lane (kSumSpanAvx2 columns in 4 accumulators),
// the backward's row sums likewise (kGradSpanAvx2 columns in 2 accumulators each), its column sums
// float partials over kColRows rows in the pass that writes dx, added into the block's double
// partial row; the same fallbacks in double. Rows are stored in vectors of 8 from their start
// (the forward's from their end where store_backward says so), the last partial vector masked; streamed outputs are written with streaming stores (32 bytes where
// aligned, else two 16-byte halves) where the row starts on 16 bytes, ordinary stores otherwise.
// The generic loops on AVX2 sum every term in double, in one vector accumulator (the reductions
// wait on the adds' latency): 8192 x 1024 forward + backward with out= took 11.3 ms at two
// threads on a Zen 3 EPYC, against a 4.9 ms streaming floor and 7.9 ms with the rows in cache.
// Compiled without multiply-add contraction (FDNN_NORM_AVX2): every multiply-add is written
// out, and g = dy * gamma stays rounded where g - mean_g must cancel exactly.
#define FDNN_NORM_AVX2 FDNN_AVX2 __attribute__((optimize("fp-contract=off")))
#define FDNN_NORM_AVX2_INLINE FDNN_AVX2_INLINE __attribute__((optimize("fp-contract=off")))

constexpr int64_t kSumSpanAvx2 = 512;   // forward: columns per float partial (4 accumulators of 8)
constexpr int64_t kGradSpanAvx2 = 256;  // backward: columns per float partial (2 accumulators of 8 each)

// p[0, 8) (Full), or its lanes in m and 0 elsewhere.
template <bool Full> FDNN_NORM_AVX2_INLINE __m256 load8(const float* p, __m256i m) {
  if constexpr (Full) return _mm256_loadu_ps(p);
  else return _mm256_maskload_ps(p, m);
}
template <bool Full> FDNN_NORM_AVX2_INLINE void store8(float* p, __m256i m, __m256 v) {
  if constexpr (Full) _mm256_storeu_ps(p, v);
  else _mm256_maskstore_ps(p, m, v);
}

FDNN_NORM_AVX2_INLINE double reduce_pd(__m256d v) {
  const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
FDNN_NORM_AVX2_INLINE __m256d add_halves_pd(__m256d acc, __m256 v) {
  acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

// The sum of a row in double: 4 floats converted at a time and added into 4 accumulators (a
// multiply-add by 1, exact as the addition), the last d % 16 one by one.
FDNN_NORM_AVX2_INLINE double row_sum_in_double_avx2(const float* x, int64_t d) {
  const __m256d one = _mm256_set1_pd(1.0);
  __m256d s[4];
  for (int k = 0; k < 4; ++k) s[k] = _mm256_setzero_pd();
  int64_t j = 0;
  for (; j + 16 <= d; j += 16)
    for (int k = 0; k < 4; ++k) s[k] = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + j + 4 * k)), one, s[k]);
  double tail = 0.0;
  for (; j < d; ++j) tail += static_cast<double>(x[j]);
  return reduce_pd(_mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[2], s[3]))) + tail;
}

// sum((x - mu)^2) over a row as float partials over kSumSpanAvx2 columns added into double.
FDNN_NORM_AVX2_INLINE double ln_squared_deviations_avx2(const float* x, int64_t d, float mu) {
  const __m256 vmu = _mm256_set1_ps(mu);
  __m256d s = _mm256_setzero_pd();
  for (int64_t c0 = 0; c0 < d; c0 += kSumSpanAvx2) {
    const int64_t c1 = std::min(d, c0 + kSumSpanAvx2);
    __m256 a[4];
    for (int k = 0; k < 4; ++k) a[k] = _mm256_setzero_ps();
    int64_t j = c0;
    for (; j + 32 <= c1; j += 32)
      for (int k = 0; k < 4; ++k) {
        const __m256 e = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8 * k), vmu);
        a[k] = _mm256_fmadd_ps(e, e, a[k]);
      }
    for (int k = 0; j < c1; j += 8, ++k) {  // at most 4 vectors
      const __m256i m = first_lanes8(c1 - j);
      const __m256 e = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(x + j, m), vmu), _mm256_castsi256_ps(m));
      a[k] = _mm256_fmadd_ps(e, e, a[k]);
    }
    for (int k = 0; k < 4; ++k) s = add_halves_pd(s, a[k]);
  }
  return reduce_pd(s);
}

// Mean and M2 of a row, as ln_forward_row_stats.
FDNN_NORM_AVX2_INLINE MeanM2 ln_forward_row_stats_avx2(const float* x, int64_t d) {
  const double sum = row_sum_in_double_avx2(x, d);
  const double mean = layer_norm_mean(sum, d);
  const float mu = static_cast<float>(mean);
  const double dev = sum - static_cast<double>(d) * static_cast<double>(mu);  // sum(x - mu)
  const double m2 = ln_squared_deviations_avx2(x, d, mu) - dev * layer_norm_mean(dev, d);
  if (!std::isfinite(mean) || !std::isfinite(m2) || !(m2 >= kMinFloatM2 * static_cast<double>(d)))
    return plane_stats(x, d);
  return {static_cast<double>(d), mean, m2};
}

// out[j, j + 8) = v with streaming stores: 32 bytes where aligned, else two 16-byte halves.
FDNN_NORM_AVX2_INLINE void stream8(float* out, __m256 v) {
  if (reinterpret_cast<uintptr_t>(out) % 32 == 0) {
    _mm256_stream_ps(out, v);
  } else {
    _mm_stream_ps(out, _mm256_castps256_ps128(v));
    _mm_stream_ps(out + 4, _mm256_extractf128_ps(v, 1));
  }
}

// out[j] = f.at<Full>(j, m) for j in [0, n) in vectors of 8 from out's start, the last partial
// vector through the mask m of its lanes; streaming stores where stream and out is 16-byte
// aligned. backward: the same vectors from the row's end to its start (store_backward). On a Zen
// 3 EPYC, 8192 x 1024 at two threads with y 48 bytes past x modulo 4096, the forward took 3.8-4.0
// ms running forward and 3.4-3.9 backward, against 3.4-3.7 with y at x's offset; the backward's dx
// loop (whose inputs the row's first pass has just loaded) lost from running backward: 6.5-8.4
// against 4.8-5.4 ms, so it always runs forward (2026-12-07).
template <class F> FDNN_NORM_AVX2_INLINE void store_whole8(float* out, int64_t j, bool stream, const F& f) {
  const __m256 v = f.template at<true>(j, _mm256_set1_epi32(-1));
  if (stream) {
    stream8(out + j, v);
  } else {
    _mm256_storeu_ps(out + j, v);
  }
}
template <class F> FDNN_NORM_AVX2_INLINE void store_part8(float* out, int64_t j, int64_t count, const F& f) {
  const __m256i m = first_lanes8(count);
  _mm256_maskstore_ps(out + j, m, f.template at<false>(j, m));
}
template <class F>
FDNN_NORM_AVX2_INLINE void store_row_avx2(float* out, int64_t n, bool stream, bool backward, const F& f) {
  const int64_t full = n / 8 * 8;
  stream = stream && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (backward) {
    if (full < n) store_part8(out, full, n - full, f);
    for (int64_t j = full - 8; j >= 0; j -= 8) store_whole8(out, j, stream, f);
  } else {
    for (int64_t j = 0; j < full; j += 8) store_whole8(out, j, stream, f);
    if (full < n) store_part8(out, full, n - full, f);
  }
}

// y = act(xhat * gamma + beta) of one row, xhat = (x - mean) * inv_std (a multiply-add).
template <bool Relu> struct LnForwardAvx2 {
  const float *x, *gamma, *beta;
  __m256 mu, is;
  template <bool Full> FDNN_NORM_AVX2_INLINE __m256 at(int64_t j, __m256i m) const {
    const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(load8<Full>(x + j, m), mu), is);
    const __m256 g = gamma ? load8<Full>(gamma + j, m) : _mm256_set1_ps(1.0f);
    const __m256 b = beta ? load8<Full>(beta + j, m) : _mm256_setzero_ps();
    const __m256 v = _mm256_fmadd_ps(xhat, g, b);
    return Relu ? _mm256_max_ps(_mm256_setzero_ps(), v) : v;  // 0 > v ? 0 : v, as relu()
  }
};

template <bool Relu>
FDNN_NORM_AVX2 void layer_norm_rows_avx2(float* y, float* mean, float* inv_std, const float* x, const float* gamma,
                                         const float* beta, int64_t r0, int64_t r1, int64_t d, double eps,
                                         bool stream) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * d;
    const MeanM2 st = ln_forward_row_stats_avx2(xr, d);
    const float mu = static_cast<float>(st.mean);
    const float is = static_cast<float>(inv_std_of(st.m2 / static_cast<double>(d), eps));
    mean[r] = mu;
    inv_std[r] = is;
    store_row_avx2(y + r * d, d, stream, store_backward(y + r * d, xr, gamma, beta),
                   LnForwardAvx2<Relu>{xr, gamma, beta, _mm256_set1_ps(mu), _mm256_set1_ps(is)});
  }
  if (stream) stream_fence();
}

// One vector of a row's first pass: the row sums of g = dy * gamma (rounded) and g * xhat into a,
// b (the lanes outside m add zeros).
template <bool Full>
FDNN_NORM_AVX2_INLINE void ln_backward_step_avx2(__m256& a, __m256& b, const float* dy, const float* x,
                                                 const float* gamma, __m256 mu, __m256 is, int64_t j, __m256i m) {
  const __m256 dyv = load8<Full>(dy + j, m);
  const __m256 g = gamma ? _mm256_mul_ps(dyv, load8<Full>(gamma + j, m)) : dyv;
  __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(load8<Full>(x + j, m), mu), is);
  if constexpr (!Full) xhat = _mm256_and_ps(xhat, _mm256_castsi256_ps(m));
  a = _mm256_add_ps(a, g);
  b = _mm256_fmadd_ps(g, xhat, b);
}

// dx = inv_std * ((g - mean_g) - xhat * mean_gx) of one row, and the float column partials
// cb[j] += dy, cg[j] += dy * xhat; next_dy, next_x (null past the last row): the row
// kPrefetchRows ahead, fetched into L2 meanwhile, as LnDxVec.
struct LnDxAvx2 {
  const float *dy, *x, *gamma, *next_dy, *next_x;
  float *cb, *cg;
  __m256 mu, is, mg, mgx;
  template <bool Full> FDNN_NORM_AVX2_INLINE __m256 at(int64_t j, __m256i m) const {
    if (next_dy && j % 16 == 0) {  // every 64 bytes (a row's last line, where it is not aligned, is left)
      _mm_prefetch(reinterpret_cast<const char*>(next_dy + j), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(next_x + j), _MM_HINT_T1);
    }
    const __m256 dyv = load8<Full>(dy + j, m);
    const __m256 g = gamma ? _mm256_mul_ps(dyv, load8<Full>(gamma + j, m)) : dyv;
    const __m256 xhat = _mm256_mul_ps(_mm256_sub_ps(load8<Full>(x + j, m), mu), is);
    store8<Full>(cb + j, m, _mm256_add_ps(load8<Full>(cb + j, m), dyv));
    store8<Full>(cg + j, m, _mm256_fmadd_ps(dyv, xhat, load8<Full>(cg + j, m)));
    return _mm256_mul_ps(is, _mm256_fnmadd_ps(xhat, mgx, _mm256_sub_ps(g, mg)));
  }
};

// Whether c[0, n) (n a multiple of 8) is all finite.
FDNN_NORM_AVX2 bool all_finite_avx2(const float* c, int64_t n) {
  __m256 bad = _mm256_setzero_ps();
  for (int64_t j = 0; j < n; j += 8) {
    const __m256 v = _mm256_loadu_ps(c + j);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_sub_ps(v, v), _mm256_setzero_ps(), _CMP_NEQ_UQ));  // inf, NaN
  }
  return _mm256_movemask_ps(bad) == 0;
}

// pb[j] += cb[j], pg[j] += cg[j] (double += float), j in [0, d).
FDNN_NORM_AVX2 void add_partials_avx2(double* pg, double* pb, const float* cb, const float* cg, int64_t d) {
  int64_t j = 0;
  for (; j + 4 <= d; j += 4) {
    _mm256_storeu_pd(pb + j, _mm256_add_pd(_mm256_loadu_pd(pb + j), _mm256_cvtps_pd(_mm_loadu_ps(cb + j))));
    _mm256_storeu_pd(pg + j, _mm256_add_pd(_mm256_loadu_pd(pg + j), _mm256_cvtps_pd(_mm_loadu_ps(cg + j))));
  }
  for (; j < d; ++j) {
    pb[j] += static_cast<double>(cb[j]);
    pg[j] += static_cast<double>(cg[j]);
  }
}

// Floats of scratch for the AVX2 backward's column partials cb, cg (padded columns each), cg 64
// bytes past cb's end: at cb + padded, for d a multiple of 1024, each load of cg waited on the store
// to cb just before it (the same address modulo 4096).
constexpr int64_t kColumnScratchAvx2(int64_t d) { return 2 * ((d + 7) / 8 * 8) + 16; }

// Layer norm backward of rows [r0, r1) of `rows` into dx and the block's column partials pg
// (dy * xhat), pb (dy); c: kColumnScratchAvx2(d) floats of scratch.
FDNN_NORM_AVX2 void layer_norm_backward_rows_avx2(float* dx, double* pg, double* pb, const float* dy, const float* x,
                                                  const float* gamma, const float* mean, const float* inv_std,
                                                  int64_t r0, int64_t r1, int64_t rows, int64_t d, float* c,
                                                  bool stream) {
  const int64_t n_scratch = kColumnScratchAvx2(d);
  float* cb = c;
  float* cg = c + (n_scratch - 16) / 2 + 16;
  const __m256i all = _mm256_set1_epi32(-1);
  std::fill(pg, pg + d, 0.0);
  std::fill(pb, pb + d, 0.0);
  for (int64_t s0 = r0; s0 < r1; s0 += kColRows) {
    std::fill(c, c + n_scratch, 0.0f);
    const int64_t s1 = std::min(r1, s0 + kColRows);
    for (int64_t r = s0; r < s1; ++r) {
      const float* g = dy + r * d;
      const float* xr = x + r * d;
      const __m256 mu = _mm256_set1_ps(mean[r]), is = _mm256_set1_ps(inv_std[r]);
      __m256d sg = _mm256_setzero_pd(), sgx = _mm256_setzero_pd();
      for (int64_t c0 = 0; c0 < d; c0 += kGradSpanAvx2) {
        const int64_t c1 = std::min(d, c0 + kGradSpanAvx2);
        __m256 a[2], b[2];
        for (int k = 0; k < 2; ++k) a[k] = b[k] = _mm256_setzero_ps();
        int64_t j = c0;
        for (; j + 16 <= c1; j += 16)
          for (int k = 0; k < 2; ++k) ln_backward_step_avx2<true>(a[k], b[k], g, xr, gamma, mu, is, j + 8 * k, all);
        for (int k = 0; j < c1; j += 8, ++k)  // at most 2 vectors
          ln_backward_step_avx2<false>(a[k], b[k], g, xr, gamma, mu, is, j, first_lanes8(c1 - j));
        sg = add_halves_pd(sg, _mm256_add_ps(a[0], a[1]));
        sgx = add_halves_pd(sgx, _mm256_add_ps(b[0], b[1]));
      }
      double sum_g = reduce_pd(sg), sum_gx = reduce_pd(sgx);
      if (!std::isfinite(sum_g) || !std::isfinite(sum_gx))  // a float partial may have overflowed
        row_sums_in_double(sum_g, sum_gx, g, xr, gamma, mean[r], inv_std[r], d);
      const float mg = static_cast<float>(layer_norm_mean(sum_g, d));
      const float mgx = static_cast<float>(layer_norm_mean(sum_gx, d));
      const bool ahead = r + kPrefetchRows < rows;
      store_row_avx2(dx + r * d, d, stream, false,
                     LnDxAvx2{g, xr, gamma, ahead ? g + kPrefetchRows * d : nullptr,
                              ahead ? xr + kPrefetchRows * d : nullptr, cb, cg, mu, is, _mm256_set1_ps(mg),
                              _mm256_set1_ps(mgx)});
    }
    if (all_finite_avx2(c, n_scratch)) {
      add_partials_avx2(pg, pb, cb, cg, d);
    } else {  // a float partial may have overflowed: this block's columns again in double
      column_sums_in_double(pg, pb, dy, x, mean, inv_std, s0, s1, d);
    }
  }
  if (stream) stream_fence();
}
#endif

template <typename T>
FDNN_MULTIVERSION void weight_norm_rows(T* FDNN_RESTRICT w, const T* FDNN_RESTRICT v, const T* FDNN_RESTRICT g,
                                        int64_t r0, int64_t r1, int64_t d) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* vr = v + r * d;
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(vr[j]) * static_cast<double>(vr[j]);
    const T scale = static_cast<T>(static_cast<double>(g[r]) / std::sqrt(ss));
    T* wr = w + r * d;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) wr[j] = vr[j] * scale;
  }
}

template <typename T>
FDNN_MULTIVERSION void weight_norm_backward_rows(T* FDNN_RESTRICT dv, T* FDNN_RESTRICT dg, const T* FDNN_RESTRICT dw,
                                                 const T* FDNN_RESTRICT v, const T* FDNN_RESTRICT g, int64_t r0,
                                                 int64_t r1, int64_t d) {
  for (int64_t r = r0; r < r1; ++r) {
    const T* vr = v + r * d;
    const T* gr = dw + r * d;
    double ss = 0.0, dot = 0.0;
#pragma omp simd reduction(+ : ss, dot)
    for (int64_t j = 0; j < d; ++j) {
      ss += static_cast<double>(vr[j]) * static_cast<double>(vr[j]);
      dot += static_cast<double>(gr[j]) * static_cast<double>(vr[j]);
    }
    const double norm = std::sqrt(ss);
    dg[r] = static_cast<T>(dot / norm);
    const T a = static_cast<T>(static_cast<double>(g[r]) / norm);
    const T b = static_cast<T>(dot / ss);
    T* out = dv + r * d;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) out[j] = a * (gr[j] - vr[j] * b);
  }
}

}  // namespace

// ---------------------------------------------------------------- batch norm

template <typename T>
void batch_norm(T* y, T* mean, T* inv_std, T* running_mean, T* running_var, const T* x, const T* gamma,
                const T* beta, int64_t n, int64_t c, int64_t s, bool training, double momentum, double eps,
                bool relu, Stream) {
  const int64_t m = n * s;
  if (training) {
    if (s == 1) {
      const int64_t rpb = rows_per_partial(n, c, 32768);
      const int64_t blocks = ceil_div(n, rpb);
      Buffer<double> pm = scratch<double>(blocks * c), pm2 = scratch<double>(blocks * c);
      auto stats = bn_quads<T>(n, c) ? &column_block_stats<T, true> : &column_block_stats<T, false>;
      parallel_for(n, rpb, 2 * c, [&](int64_t r0, int64_t r1) {
        const int64_t b = r0 / rpb;
        stats(pm.get() + b * c, pm2.get() + b * c, x, r0, r1, c);
      });
      Buffer<double> mu = scratch<double>(2 * c);  // the merged means and M2s
      bn_store_column_stats(mean, inv_std, running_mean, running_var, mu.get(), mu.get() + c, pm.get(), pm2.get(),
                            blocks, rpb, n, c, momentum, eps);
    } else {
      // Two passes over the channel's planes (the mean, then squared deviations from it):
      // merging many small planes would lose precision when the mean dwarfs the spread.
      std::vector<MeanM2> st(c);
      parallel_for(c, 1, 2 * n * s, [&](int64_t c0, int64_t c1) {
        for (int64_t ch = c0; ch < c1; ++ch) {
          double sum = 0.0;
          for (int64_t i = 0; i < n; ++i) sum += plane_sum(x + (i * c + ch) * s, s);
          const double mu = sum / static_cast<double>(m);
          double m2 = 0.0;
          for (int64_t i = 0; i < n; ++i) m2 += plane_sq_dev(x + (i * c + ch) * s, s, mu);
          st[ch] = {static_cast<double>(m), mu, m2};
        }
      });
      for (int64_t j = 0; j < c; ++j)
        batch_norm_store_stats(mean, inv_std, running_mean, running_var, j, st[j].mean, st[j].m2,
                               static_cast<double>(m), momentum, eps);
    }
  } else {
    for (int64_t j = 0; j < c; ++j) {
      mean[j] = running_mean[j];
      inv_std[j] = static_cast<T>(inv_std_of(running_var[j], eps));
    }
  }
  // y = (x - mean) * (inv_std * gamma) + beta
  Buffer<T> a = scratch<T>(c), b = scratch<T>(c);
  for (int64_t j = 0; j < c; ++j) {
    a[j] = inv_std[j] * param_or(gamma, j, T(1));
    b[j] = param_or(beta, j, T(0));
  }
  auto columns = bn_quads<T>(n, c) ? (relu ? &normalize_columns_quads<T, true> : &normalize_columns_quads<T, false>)
                                     : (relu ? &normalize_columns<T, true> : &normalize_columns<T, false>);
  auto plane = relu ? &normalize_plane<T, true> : &normalize_plane<T, false>;
  if (s == 1) {
    const bool stream = stream_rows<T>(n * c);
    parallel_for(n, rows_per_block(c, 16384), c, [&](int64_t r0, int64_t r1) {
#if FDNN_HAS_STREAM_STORE
      if constexpr (std::is_same_v<T, float>) {
        if (stream) {
          (relu ? &normalize_columns_streamed<true> : &normalize_columns_streamed<false>)(y, x, mean, a.get(), b.get(),
                                                                                         r0, r1, c);
          return;
        }
      }
#endif
      columns(y, x, mean, a.get(), b.get(), r0, r1, c);
    });
  } else {
    parallel_for(n * c, planes_per_block(s, 16384), s, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t ch = p % c;
        plane(y + p * s, x + p * s, s, mean[ch], a[ch], b[ch]);
      }
    });
  }
}

template <typename T>
void batch_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t n, int64_t c, int64_t s, bool training, Stream) {
  std::vector<double> sdy(c, 0.0), sdyx(c, 0.0);
  if (s == 1) {
    const int64_t rpb = rows_per_partial(n, c, 32768);
    const int64_t blocks = ceil_div(n, rpb);
    Buffer<double> p1 = scratch<double>(blocks * c), p2 = scratch<double>(blocks * c);
    auto grads = bn_quads<T>(n, c) ? &column_block_grads_quads<T> : &column_block_grads<T>;
    parallel_for(n, rpb, 2 * c, [&](int64_t r0, int64_t r1) {
      const int64_t b = r0 / rpb;
      grads(p1.get() + b * c, p2.get() + b * c, dy, x, mean, inv_std, r0, r1, c);
    });
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t j = 0; j < c; ++j) {
        sdy[j] += p1[b * c + j];
        sdyx[j] += p2[b * c + j];
      }
  } else {
    parallel_for(c, 1, 2 * n * s, [&](int64_t c0, int64_t c1) {
      for (int64_t ch = c0; ch < c1; ++ch)
        for (int64_t i = 0; i < n; ++i) {
          double a, b;
          const int64_t off = (i * c + ch) * s;
          plane_grad_sums(a, b, dy + off, x + off, s, mean[ch], inv_std[ch]);
          sdy[ch] += a;
          sdyx[ch] += b;
        }
    });
  }
  Buffer<T> k_dy = scratch<T>(c), k_xhat = scratch<T>(c), k_0 = scratch<T>(c);
  bn_grad_column_coeffs(dgamma, dbeta, k_dy.get(), k_xhat.get(), k_0.get(), sdy.data(), sdyx.data(), gamma, inv_std, c,
                        static_cast<double>(n * s), training);
  if (s == 1) {
    const bool stream = stream_rows<T>(n * c), quads = bn_quads<T>(n, c);
    parallel_for(n, rows_per_block(c, 16384), 2 * c, [&](int64_t r0, int64_t r1) {
#if FDNN_HAS_STREAM_STORE
      if constexpr (std::is_same_v<T, float>) {
        if (stream) {
          bn_dx_columns_streamed(dx, dy, x, mean, inv_std, k_dy.get(), k_xhat.get(), k_0.get(), r0, r1, c, training);
          return;
        }
      }
#endif
      (quads ? &bn_dx_columns_quads<T> : &bn_dx_columns<T>)(dx, dy, x, mean, inv_std, k_dy.get(), k_xhat.get(),
                                                            k_0.get(), r0, r1, c, training);
    });
  } else {
    parallel_for(n * c, planes_per_block(s, 16384), 2 * s, [&](int64_t q0, int64_t q1) {
      for (int64_t p = q0; p < q1; ++p) {
        const int64_t ch = p % c;
        bn_dx_plane(dx + p * s, dy + p * s, x + p * s, s, mean[ch], inv_std[ch], k_dy[ch], k_xhat[ch], k_0[ch],
                    training);
      }
    });
  }
}

// ---------------------------------------------------------------- layer norm

template <typename T>
void layer_norm(T* y, T* mean, T* inv_std, const T* x, const T* gamma, const T* beta, int64_t rows, int64_t d,
                double eps, bool relu, Stream) {
  auto norm_rows = relu ? &layer_norm_rows<T, true> : &layer_norm_rows<T, false>;
  const bool stream = stream_rows<T>(rows * d);
#if FDNN_NORM_AVX512
  if constexpr (std::is_same_v<T, float>) {
    if (norm_avx512()) {
      auto rows_avx512 = relu ? &layer_norm_rows_avx512<true> : &layer_norm_rows_avx512<false>;
      parallel_for(rows, rows_per_block(d, 16384), 2 * d, [&](int64_t r0, int64_t r1) {
        rows_avx512(y, mean, inv_std, x, gamma, beta, r0, r1, d, eps, stream);
      });
      return;
    }
    if (avx2_fma_paths_enabled()) {
      auto rows_avx2 = relu ? &layer_norm_rows_avx2<true> : &layer_norm_rows_avx2<false>;
      parallel_for(rows, rows_per_block(d, 16384), 2 * d, [&](int64_t r0, int64_t r1) {
        rows_avx2(y, mean, inv_std, x, gamma, beta, r0, r1, d, eps, stream);
      });
      return;
    }
  }
#endif
  parallel_for(rows, rows_per_block(d, 16384), 2 * d,
               [&](int64_t r0, int64_t r1) { norm_rows(y, mean, inv_std, x, gamma, beta, r0, r1, d, eps, stream); });
}

template <typename T>
void layer_norm_backward(T* dx, T* dgamma, T* dbeta, const T* dy, const T* x, const T* gamma, const T* mean,
                         const T* inv_std, int64_t rows, int64_t d, Stream) {
  const int64_t rpb = rows_per_partial(rows, d, 65536);
  const int64_t blocks = ceil_div(rows, rpb);
  Buffer<double> pg = scratch<double>(blocks * d), pb = scratch<double>(blocks * d);
  const bool stream = stream_rows<T>(rows * d);
  parallel_for(rows, rpb, 3 * d, [&](int64_t r0, int64_t r1) {
    const int64_t b = r0 / rpb;
#if FDNN_NORM_AVX512
    if constexpr (std::is_same_v<T, float>) {
      if (norm_avx512()) {
        const Buffer<float> columns = scratch<float>(kColumnScratch(ceil_div(d, int64_t(16)) * 16));
        layer_norm_backward_rows_avx512(dx, pg.get() + b * d, pb.get() + b * d, dy, x, gamma, mean, inv_std, r0, r1,
                                        rows, d, columns.get(), stream);
        return;
      }
      if (avx2_fma_paths_enabled()) {
        const Buffer<float> columns = scratch<float>(kColumnScratchAvx2(d));
        layer_norm_backward_rows_avx2(dx, pg.get() + b * d, pb.get() + b * d, dy, x, gamma, mean, inv_std, r0, r1,
                                      rows, d, columns.get(), stream);
        return;
      }
    }
#endif
    const Buffer<T> row = stream ? scratch<T>(d) : Buffer<T>();
    layer_norm_backward_rows(dx, pg.get() + b * d, pb.get() + b * d, dy, x, gamma, mean, inv_std, r0, r1, d,
                             row.get(), stream);
  });
  std::vector<double> sg(d, 0.0), sb(d, 0.0);
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t j = 0; j < d; ++j) {
      sg[j] += pg[b * d + j];
      sb[j] += pb[b * d + j];
    }
  for (int64_t j = 0; j < d; ++j) {
    dgamma[j] = static_cast<T>(sg[j]);
    dbeta[j] = static_cast<T>(sb[j]);
  }
}

// ---------------------------------------------------------------- weight norm

template <typename T> void weight_norm(T* w, const T* v, const T* g, int64_t rows, int64_t d, Stream) {
  parallel_for(rows, rows_per_block(d, 16384), d,
               [&](int64_t r0, int64_t r1) { weight_norm_rows(w, v, g, r0, r1, d); });
}

template <typename T>
void weight_norm_backward(T* dv, T* dg, const T* dw, const T* v, const T* g, int64_t rows, int64_t d, Stream) {
  parallel_for(rows, rows_per_block(d, 16384), 2 * d,
               [&](int64_t r0, int64_t r1) { weight_norm_backward_rows(dv, dg, dw, v, g, r0, r1, d); });
}

// ---------------------------------------------------------------- local response norm

// The portable build has no FMA here, so it rounds every product; a FUSEDNN_NATIVE build with FMA
// contracted the backward's products and differences (dy p - coef x acc), and a float64 test then
// missed its bound of 3x NumPy's error (1.07e-17 against 8.8e-18). Contraction is off for the
// whole section, so both builds round as the NumPy reference does.
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace {
constexpr int64_t kLrnSpan = 256;  // spatial positions per task

// For one image and spatial positions [s0, s0 + len): base[ch][i] = k + alpha/size * window sum.
template <typename T>
void lrn_base(double* base, const T* x, int64_t c, int64_t s, int64_t s0, int64_t len, int64_t size, double alpha,
              double k) {
  const double a = alpha / static_cast<double>(size);
  for (int64_t ch = 0; ch < c; ++ch) {
    double* out = base + ch * len;
    std::fill(out, out + len, 0.0);
    const int64_t lo = std::max<int64_t>(0, lrn_window_lo(ch, size));
    const int64_t hi = std::min<int64_t>(c - 1, lrn_window_hi(ch, size));
    for (int64_t cc = lo; cc <= hi; ++cc) {
      const T* xr = x + cc * s + s0;
      for (int64_t i = 0; i < len; ++i) out[i] += static_cast<double>(xr[i]) * static_cast<double>(xr[i]);
    }
    for (int64_t i = 0; i < len; ++i) out[i] = k + a * out[i];
  }
}
}  // namespace

// d^-beta for float32 results and beta = 0.75 (torch's default), 0.5 and 1 by square roots and a
// division, which vectorize (within ~2 ulp of double for every positive d, d^-0.75 as
// 1 / (sqrt(d) sqrt(sqrt(d))) so that no product leaves double's range: float32 results as with
// std::pow but for the last bit where the backward's terms cancel; std::pow per element cost
// ~10 ns: the forward took 13 ns per element on one Zen 4 core against 2.3 for NumPy's power),
// std::pow for float64 results (whose tests hold them to a few ulps of NumPy's pow) and other
// betas.
enum class LrnBeta { kThreeQuarters, kHalf, kOne, kOther };
template <typename T> inline LrnBeta lrn_beta_case(double beta) {
  if (!std::is_same_v<T, float>) return LrnBeta::kOther;
  return beta == 0.75 ? LrnBeta::kThreeQuarters
         : beta == 0.5 ? LrnBeta::kHalf
         : beta == 1.0 ? LrnBeta::kOne
                       : LrnBeta::kOther;
}
template <LrnBeta kCase> inline double lrn_neg_pow(double d, double beta) {
  if constexpr (kCase == LrnBeta::kThreeQuarters) {
    const double r = std::sqrt(d);
    return 1.0 / (r * std::sqrt(r));
  }
  else if constexpr (kCase == LrnBeta::kHalf)
    return 1.0 / std::sqrt(d);
  else if constexpr (kCase == LrnBeta::kOne)
    return 1.0 / d;
  else
    return std::pow(d, -beta);
}

// f(std::integral_constant<LrnBeta, kase>).
template <class F> void with_lrn_beta(LrnBeta kase, F&& f) {
  switch (kase) {
    case LrnBeta::kThreeQuarters: return f(std::integral_constant<LrnBeta, LrnBeta::kThreeQuarters>());
    case LrnBeta::kHalf: return f(std::integral_constant<LrnBeta, LrnBeta::kHalf>());
    case LrnBeta::kOne: return f(std::integral_constant<LrnBeta, LrnBeta::kOne>());
    default: return f(std::integral_constant<LrnBeta, LrnBeta::kOther>());
  }
}

template <typename T>
void local_response_norm(T* y, const T* x, int64_t n, int64_t c, int64_t s, int64_t size, double alpha, double beta,
                         double k, Stream) {
  const int64_t spans = ceil_div(s, kLrnSpan);
  with_lrn_beta(lrn_beta_case<T>(beta), [&](auto beta_case) {
    constexpr LrnBeta kCase = decltype(beta_case)::value;
    parallel_for(n * spans, 1, c * kLrnSpan * size, [&](int64_t t0, int64_t t1) {
      Buffer<double> base = scratch<double>(c * kLrnSpan);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t img = t / spans, s0 = (t % spans) * kLrnSpan, len = std::min(kLrnSpan, s - s0);
        const T* xi = x + img * c * s + s0;
        T* yi = y + img * c * s + s0;
        lrn_base(base.get(), x + img * c * s, c, s, s0, len, size, alpha, k);
        for (int64_t ch = 0; ch < c; ++ch) {
          const double* b = base.get() + ch * len;
          const T* xr = xi + ch * s;
          T* yr = yi + ch * s;
          for (int64_t i = 0; i < len; ++i)
            yr[i] = static_cast<T>(static_cast<double>(xr[i]) * lrn_neg_pow<kCase>(b[i], beta));
        }
      }
    });
  });
}

// dx_j = dy_j d_j^-beta - 2 alpha beta / size * x_j * sum_{c : j in window(c)} dy_c x_c d_c^(-beta-1)
template <typename T>
void local_response_norm_backward(T* dx, const T* dy, const T* x, int64_t n, int64_t c, int64_t s, int64_t size,
                                  double alpha, double beta, double k, Stream) {
  const int64_t spans = ceil_div(s, kLrnSpan);
  const double coef = 2.0 * alpha * beta / static_cast<double>(size);
  parallel_for(n * spans, 1, 2 * c * kLrnSpan * size, [&](int64_t t0, int64_t t1) {
    Buffer<double> base = scratch<double>(c * kLrnSpan), term = scratch<double>(c * kLrnSpan);
    std::vector<std::pair<int64_t, double>> special;  // (element, d) with d not finite and > 0
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t img = t / spans, s0 = (t % spans) * kLrnSpan, len = std::min(kLrnSpan, s - s0);
      const int64_t off = img * c * s + s0;
      lrn_base(base.get(), x + img * c * s, c, s, s0, len, size, alpha, k);
      // d^-beta and d^(-beta-1) of each element. float32 results: p = lrn_neg_pow and q = p / d
      // (a loop that vectorizes for the betas of lrn_neg_pow, and a pow fewer than lrn_powers for
      // the others), then lrn_powers for the elements whose d is 0, negative, inf or NaN (k <= 0,
      // inf or NaN inputs), where p / d would be 0 / 0 or inf / inf. float64: lrn_powers.
      const auto powers_of = [&](int64_t e, double d) {
        const LrnPowers pw = lrn_powers(d, beta);
        term[e] = static_cast<double>(dy[off + e / len * s + e % len]) *
                  static_cast<double>(x[off + e / len * s + e % len]) * pw.q;
        base[e] = pw.p;
      };
      if constexpr (std::is_same_v<T, float>) {
        special.clear();  // those d, before base holds p
        for (int64_t e = 0; e < c * len; ++e)
          if (!(base[e] > 0.0 && base[e] < INFINITY)) special.push_back({e, base[e]});
        with_lrn_beta(lrn_beta_case<T>(beta), [&](auto beta_case) {
          constexpr LrnBeta kCase = decltype(beta_case)::value;
          for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t i = 0; i < len; ++i) {
              const double d = base[ch * len + i], p = lrn_neg_pow<kCase>(d, beta);
              term[ch * len + i] =
                  static_cast<double>(dy[off + ch * s + i]) * static_cast<double>(x[off + ch * s + i]) * (p / d);
              base[ch * len + i] = p;
            }
        });
        for (const auto& [e, d] : special) powers_of(e, d);
      } else {
        for (int64_t e = 0; e < c * len; ++e) powers_of(e, base[e]);
      }
      // Channel j is in the window of c for c in [j - (size - 1) / 2, j + size / 2].
      for (int64_t j = 0; j < c; ++j) {
        const int64_t lo = std::max<int64_t>(0, j - (size - 1) / 2);
        const int64_t hi = std::min<int64_t>(c - 1, j + size / 2);
        for (int64_t i = 0; i < len; ++i) {
          double acc = 0.0;
          for (int64_t cc = lo; cc <= hi; ++cc) acc += term[cc * len + i];
          const int64_t e = off + j * s + i;
          dx[e] = static_cast<T>(static_cast<double>(dy[e]) * base[j * len + i] -
                                 coef * static_cast<double>(x[e]) * acc);
        }
      }
    }
  });
}

#pragma GCC pop_options
#if defined(__clang__)
#pragma clang fp contract(on)
#endif

FDNN_NORM_INSTANTIATE(float)
FDNN_NORM_INSTANTIATE(double)

}  // namespace fdnn
