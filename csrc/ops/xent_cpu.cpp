// CPU softmax and cross-entropy: rows in fixed blocks over threads; each row is read from
// memory once (later passes over it hit L1/L2), exp is vectorizable (vexp or exp_nonpositive), and the
// cross-entropy gradient is written in the same pass without storing probabilities.
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "common/avx512_paths.h"
#include "common/isa.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "common/vmath.h"
#include "ops/xent.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "cpu/avx2.h"
#include "cpu/avx512.h"
#define FDNN_XENT_AVX512 1
#else
#define FDNN_XENT_AVX512 0
#endif

namespace fdnn {
namespace {

int64_t rows_per_block(int64_t k) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, k)); }

// Row sums (xent.h): blocks of kSumBlock terms summed in T (vectorized), block sums in double.
constexpr int64_t kSumBlock = 1024;

// The float32 max, exp and gradient passes in intrinsics (AVX-512F or AVX2, below; xent_passes).
struct XentPasses;
constexpr int kXentRowSlot = 40;  // common/scratch.h thread_scratch slot of xent_rows' exp row

template <typename T, class Term> FDNN_CLONE_INLINE double blocked_sum(int64_t k, Term term) {
  double total = 0.0;
  for (int64_t j0 = 0; j0 < k; j0 += kSumBlock) {
    const int64_t j1 = std::min(k, j0 + kSumBlock);
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = j0; j < j1; ++j) s += term(j);
    total += static_cast<double>(s);
  }
  return total;
}

// blocked_sum for a costly term (exp): each block's last (j1 - j0) % 16 terms are summed by a
// 16-wide vector loop over the block's last 16 indices, the ones before the remainder counted 0
// (their terms are evaluated, and any store they make is repeated with the same value), instead
// of the compiler's scalar remainder loop: 8 scalar exps of a 1000-class row cost about 10% of
// the row. Blocks of fewer than 16 terms keep the plain loop, and so does float64 (its sums would
// change order and the vexp of doubles is not the bottleneck it is for floats).
constexpr int64_t kTailWidth = 16;
template <typename T> inline int64_t vector_tail_start(int64_t j0, int64_t j1) {
  return std::is_same_v<T, float> && j1 - j0 >= kTailWidth ? j0 + (j1 - j0) / kTailWidth * kTailWidth : j1;
}
template <typename T, class Term> FDNN_CLONE_INLINE double blocked_sum_vector_tail(int64_t k, Term term) {
  double total = 0.0;
  for (int64_t j0 = 0; j0 < k; j0 += kSumBlock) {
    const int64_t j1 = std::min(k, j0 + kSumBlock);
    const int64_t main_end = vector_tail_start<T>(j0, j1);
    T s = 0, st = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = j0; j < main_end; ++j) s += term(j);
    if (main_end < j1) {
#pragma omp simd reduction(+ : st)
      for (int64_t j = j1 - kTailWidth; j < j1; ++j) {
        const T v = term(j);
        st += j >= main_end ? v : T(0);
      }
    }
    total += static_cast<double>(s) + static_cast<double>(st);
  }
  return total;
}

template <typename T> FDNN_CLONE_INLINE T row_max(const T* FDNN_RESTRICT z, int64_t k) {
  T m = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t j = 0; j < k; ++j) m = z[j] > m ? z[j] : m;
  return m;
}

// exp(x) for the shifted logits x = z - m <= 0 (or NaN, from a NaN or infinite logit): vexp
// (common/vmath.h) without its clamp at the top and with 2^n built in one step (n <= 0 cannot
// overflow the exponent bits). The compiler's vector loop over it has about 28 instructions per
// 16 floats where vexp's has 40, and the exp pass is what bounds this kernel: on one Zen 4 core,
// a 16778 x 1000 float32 cross-entropy takes the same time with its rows in L2 as from DRAM.
// Bitwise equal to vexp on every float <= 0 and on NaN (checked exhaustively for the
// x86-64-v2, v3 and v4 builds). Double keeps vexp.
inline float exp_nonpositive(float x) {
  const float lo = -87.33654f;       // ln(FLT_MIN): below it 0, as vexp flushes subnormal results
  const float xc = x < lo ? lo : x;  // NaN compares false and stays NaN
  const float shifter = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + shifter) - shifter;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // n in [-126, 0]: 2^n is a normal float (for NaN the bits are garbage and p is NaN).
  const int32_t ni = static_cast<int32_t>(n);
  const float scale = detail::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(ni + 127) << 23));
  const float result = p * scale;
  return x < lo ? 0.0f : result;
}
inline double exp_nonpositive(double x) { return vexp(x); }

// e_j = exp(z_j - m) into e (may be null); returns sum_j e_j.
template <typename T> FDNN_CLONE_INLINE double exp_shifted(T* FDNN_RESTRICT e, const T* FDNN_RESTRICT z, T m, int64_t k) {
  if (e)
    return blocked_sum_vector_tail<T>(k, [&](int64_t j) {
      const T v = exp_nonpositive(z[j] - m);
      e[j] = v;
      return v;
    });
  return blocked_sum_vector_tail<T>(k, [&](int64_t j) { return exp_nonpositive(z[j] - m); });
}

// Narrow rows (e.g. the 10 class probabilities of an MNIST model): vectorized across rows
// instead of along them. A group of kNarrowRows rows is transposed into t[j][l] = x[r + l][j]
// (L1, on the stack), and every pass runs as a vector loop over the group's rows l for each
// column j in order: each row's max, exp and sums are the per-row loop's operations, the sums
// taken sequentially over j. Below kTailWidth columns in float32 these are the bits of the
// portable softmax_rows and softmax_backward_rows (whose x86-64-v4 loops sum fewer than
// kTailWidth floats sequentially, one scalar exp per element; checked on 1..15 columns, NaN and
// inf included), in float64 too below 8 columns (but for the sign of a NaN in a row that holds
// both a NaN and an inf); wider rows (float64 from 8 columns, the
// forward's float32 from 16) may differ from the per-row loops in the sums' last bits. The lanes
// past the last row of a range hold 0 and are not stored. One-thread CPU time per element on a
// Zen 4 core, 262144 elements in 10 columns: float32 softmax 7.65 -> 0.80 ns, log_softmax 8.6 ->
// 1.2 (its 16 scalar logs per group remain), softmax_backward 1.35 -> 0.82, log_softmax_backward
// 2.06 -> 1.10; float64 6.3 -> 1.7, 7.2 -> 2.0, 0.96-1.6 -> 0.89, 3.1 -> 1.8. Against the per-row
// loops (float32 with AVX-512) the forward also wins at 16..23 float32 columns (17: 1.53 ->
// 0.82 ns) and 16..31 float64 columns (17: 4.2 -> 1.75), not at 24 and more float32 columns;
// the backward loses from 16 columns on (float32 24 columns 0.71 -> 1.0 ns).
constexpr int64_t kNarrowRows = 16;
constexpr int64_t kNarrowColumns = 32;
// The forward passes take rows of fewer than narrow_columns<T> columns across rows, the backward
// passes rows of fewer than kTailWidth: the widths where it measured faster than the per-row loops.
template <typename T> constexpr int64_t narrow_columns = std::is_same_v<T, float> ? 24 : kNarrowColumns;

// t[j][l] = src[l k + j] for the group's b rows (0 past them), and back: with k a constant the
// compiler unrolls the copies (a loop over a run-time k cost as much as the exps it saved).
template <int K, typename T> inline void narrow_load(T (*FDNN_RESTRICT t)[kNarrowRows], const T* FDNN_RESTRICT src,
                                                     int64_t b) {
  if (b == kNarrowRows) {
    for (int64_t l = 0; l < kNarrowRows; ++l)
      for (int64_t j = 0; j < K; ++j) t[j][l] = src[l * K + j];
  } else {
    for (int64_t l = 0; l < kNarrowRows; ++l)
      for (int64_t j = 0; j < K; ++j) t[j][l] = l < b ? src[l * K + j] : T(0);
  }
}
template <int K, typename T> inline void narrow_store(T* FDNN_RESTRICT dst, const T (*FDNN_RESTRICT t)[kNarrowRows],
                                                      int64_t b) {
  for (int64_t l = 0; l < b; ++l)
    for (int64_t j = 0; j < K; ++j) dst[l * K + j] = t[j][l];
}
#define FDNN_NARROW_CASES(F) \
  F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12) F(13) F(14) F(15) F(16) F(17) F(18) F(19) F(20) \
  F(21) F(22) F(23) F(24) F(25) F(26) F(27) F(28) F(29) F(30) F(31)
template <typename T>
inline void narrow_load(T (*FDNN_RESTRICT t)[kNarrowRows], const T* FDNN_RESTRICT src, int64_t k, int64_t b) {
  switch (k) {
#define FDNN_NARROW_LOAD(K) \
  case K:                   \
    return narrow_load<K>(t, src, b);
    FDNN_NARROW_CASES(FDNN_NARROW_LOAD)
#undef FDNN_NARROW_LOAD
  }
}
template <typename T>
inline void narrow_store(T* FDNN_RESTRICT dst, const T (*FDNN_RESTRICT t)[kNarrowRows], int64_t k, int64_t b) {
  switch (k) {
#define FDNN_NARROW_STORE(K) \
  case K:                    \
    return narrow_store<K>(dst, t, b);
    FDNN_NARROW_CASES(FDNN_NARROW_STORE)
#undef FDNN_NARROW_STORE
  }
}
#undef FDNN_NARROW_CASES

template <typename T>
FDNN_MULTIVERSION void softmax_narrow_rows(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t r0, int64_t r1,
                                           int64_t k, bool log) {
  constexpr int64_t B = kNarrowRows;
  alignas(64) T buf[2][kNarrowColumns][B];
  alignas(64) T mx[B], sum[B], c[B];
  if (r0 < r1) narrow_load(buf[0], x + r0 * k, k, std::min(B, r1 - r0));
  for (int64_t r = r0, i = 0; r < r1; r += B, ++i) {
    const int64_t b = std::min(B, r1 - r);
    // The next group's transposing copy goes first: its scalar stores have retired by the time
    // its vector loads come (loaded right after them, they stalled on failed store forwarding).
    if (r + B < r1) narrow_load(buf[(i + 1) & 1], x + (r + B) * k, k, std::min(B, r1 - r - B));
    T(*t)[B] = buf[i & 1];
#pragma omp simd
    for (int64_t l = 0; l < B; ++l) {
      mx[l] = -std::numeric_limits<T>::infinity();
      sum[l] = 0;
    }
    for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
      for (int64_t l = 0; l < B; ++l) mx[l] = t[j][l] > mx[l] ? t[j][l] : mx[l];
    }
    if (log) {
      for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
        for (int64_t l = 0; l < B; ++l) sum[l] += exp_nonpositive(t[j][l] - mx[l]);
      }
      for (int64_t l = 0; l < B; ++l) c[l] = static_cast<T>(std::log(static_cast<double>(sum[l])));
      for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
        for (int64_t l = 0; l < B; ++l) t[j][l] = log_softmax_value(t[j][l], mx[l], c[l]);
      }
    } else {
      for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
        for (int64_t l = 0; l < B; ++l) {
          const T e = exp_nonpositive(t[j][l] - mx[l]);
          t[j][l] = e;
          sum[l] += e;
        }
      }
#pragma omp simd
      for (int64_t l = 0; l < B; ++l) c[l] = static_cast<T>(1.0 / static_cast<double>(sum[l]));
      for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
        for (int64_t l = 0; l < B; ++l) t[j][l] *= c[l];
      }
    }
    narrow_store(y + r * k, t, k, b);
  }
}

// The backward of narrow rows, across rows as softmax_narrow_rows (the dot products summed
// sequentially over j: float32 and float64 below 8 columns have softmax_backward_rows' bits).
template <typename T>
FDNN_MULTIVERSION void softmax_backward_narrow_rows(T* FDNN_RESTRICT dx, const T* FDNN_RESTRICT dy,
                                                    const T* FDNN_RESTRICT y, int64_t r0, int64_t r1, int64_t k,
                                                    bool log) {
  constexpr int64_t B = kNarrowRows;
  alignas(64) T gbuf[2][kTailWidth][B], pbuf[2][kTailWidth][B];
  alignas(64) T dot[B];
  if (r0 < r1) {
    narrow_load(gbuf[0], dy + r0 * k, k, std::min(B, r1 - r0));
    narrow_load(pbuf[0], y + r0 * k, k, std::min(B, r1 - r0));
  }
  for (int64_t r = r0, i = 0; r < r1; r += B, ++i) {
    const int64_t b = std::min(B, r1 - r);
    if (r + B < r1) {  // the next group's copies first, as softmax_narrow_rows
      narrow_load(gbuf[(i + 1) & 1], dy + (r + B) * k, k, std::min(B, r1 - r - B));
      narrow_load(pbuf[(i + 1) & 1], y + (r + B) * k, k, std::min(B, r1 - r - B));
    }
    T(*g)[B] = gbuf[i & 1];
    T(*p)[B] = pbuf[i & 1];
#pragma omp simd
    for (int64_t l = 0; l < B; ++l) dot[l] = 0;
    if (log) {
      for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
        for (int64_t l = 0; l < B; ++l) dot[l] += g[j][l];
      }
      for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
        for (int64_t l = 0; l < B; ++l) g[j][l] = g[j][l] - vexp(p[j][l]) * dot[l];
      }
    } else {
      for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
        for (int64_t l = 0; l < B; ++l) dot[l] += g[j][l] * p[j][l];
      }
      for (int64_t j = 0; j < k; ++j) {
#pragma omp simd
        for (int64_t l = 0; l < B; ++l) g[j][l] = p[j][l] * (g[j][l] - dot[l]);
      }
    }
    narrow_store(dx + r * k, g, k, b);
  }
}

#if FDNN_XENT_AVX512
void softmax_rows_avx512(float* y, const float* x, int64_t r0, int64_t r1, int64_t k, bool log);
#endif

template <typename T>
FDNN_MULTIVERSION void softmax_rows(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t r0, int64_t r1, int64_t k,
                                    bool log) {
#if FDNN_XENT_AVX512
  if constexpr (std::is_same_v<T, float>) {
    if (avx512_paths_enabled()) return softmax_rows_avx512(y, x, r0, r1, k, log);
  }
#endif
  for (int64_t r = r0; r < r1; ++r) {
    const T* z = x + r * k;
    T* out = y + r * k;
    const T m = row_max(z, k);
    if (log) {
      const T log_s = static_cast<T>(std::log(exp_shifted<T>(nullptr, z, m, k)));
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) out[j] = log_softmax_value(z[j], m, log_s);
    } else {
      const T inv = static_cast<T>(1.0 / exp_shifted(out, z, m, k));
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
    if (log) {
      const T dot = static_cast<T>(blocked_sum<T>(k, [&](int64_t j) { return g[j]; }));
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) d[j] = g[j] - vexp(p[j]) * dot;
    } else {
      const T dot = static_cast<T>(blocked_sum<T>(k, [&](int64_t j) { return g[j] * p[j]; }));
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) d[j] = p[j] * (g[j] - dot);
    }
  }
}

// sum_{j != label} weight[j] when W - w_y cannot give it (a non-finite weight).
template <typename T> double others_weight_sum(const T* weight, int64_t k, int64_t label) {
  double s = 0.0;
  for (int64_t j = 0; j < k; ++j)
    if (j != label) s += static_cast<double>(weight[j]);
  return s;
}

// e_j = exp(z_j - m) into e; returns sum_j e_j, and sum_j (z_j - m) in dev (both blocked as
// blocked_sum): the smoothing term's sum comes out of the same pass.
template <typename T>
FDNN_CLONE_INLINE double exp_shifted_dev(T* FDNN_RESTRICT e, const T* FDNN_RESTRICT z, T m, int64_t k, double& dev) {
  double total = 0.0, total_dev = 0.0;
  for (int64_t j0 = 0; j0 < k; j0 += kSumBlock) {
    const int64_t j1 = std::min(k, j0 + kSumBlock);
    T s = 0, sd = 0;
#pragma omp simd reduction(+ : s, sd)
    for (int64_t j = j0; j < j1; ++j) {
      const T v = z[j] - m;
      const T ev = exp_nonpositive(v);
      e[j] = ev;
      s += ev;
      sd += v;
    }
    total += static_cast<double>(s);
    total_dev += static_cast<double>(sd);
  }
  dev = total_dev;
  return total;
}

#if FDNN_XENT_AVX512
// ---- the float32 cross-entropy exp pass with AVX-512F (where the CPU has it) ----
//
// exp_nonpositive on 16 lanes with 2^n applied by vscalefps (one instruction for the conversion,
// the exponent bits and the product): p 2^n is a single rounding of the exact product either way,
// so every exp value has the bits of exp_nonpositive's x86-64-v4 loop (checked on every float
// with the sign bit set, NaNs included). 26-27 instructions per 16 floats instead of 30 (with the
// store and the sums): 16778 x 1000 on one Zen 4 core, CPU time in interleaved runs under
// contention, 8.7-9.6 -> 7.5-8.1 ms. The row sums are blocked as blocked_sum (float vector
// partials over kSumBlock terms, added into double), a block's last vector masked; calls with and
// without dlogits take this same pass, so their losses have the same bits.
bool xent_avx512() { return avx512_paths_enabled(); }

FDNN_AVX512_INLINE __m512 exp_nonpositive16(__m512 x) {
  // exp_nonpositive's clamp at lo is not needed here: the lanes below it come out 0 from the
  // masked vscalefps whatever their (garbage) p and n. Bitwise equal to the clamped form on
  // every float with the sign bit set, +0 and every NaN (checked exhaustively).
  const __m512 lo = _mm512_set1_ps(-87.33654f), shifter = _mm512_set1_ps(12582912.0f);
  const __mmask16 keep = _mm512_cmp_ps_mask(x, lo, _CMP_NLT_UQ);  // x >= lo or NaN
  const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), shifter), shifter);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(1.9875691500e-4f), r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(keep, p, n);
}

FDNN_AVX512_INLINE double sum_lanes(__m512 v) {
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}

// e_j = exp(z_j - m) into e (may be null); returns sum_j e_j, and sum_j (z_j - m) in *dev when
// dev is not null.
FDNN_AVX512 double exp_pass_avx512(float* e, const float* z, float m, int64_t k, double* dev) {
  const __m512 vm = _mm512_set1_ps(m);
  double total = 0.0, total_dev = 0.0;
  for (int64_t j0 = 0; j0 < k; j0 += kSumBlock) {
    const int64_t j1 = std::min(k, j0 + kSumBlock);
    __m512 s = _mm512_setzero_ps(), sd = _mm512_setzero_ps();
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16) {
      const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(z + j), vm);
      const __m512 ev = exp_nonpositive16(v);
      if (e) _mm512_storeu_ps(e + j, ev);
      s = _mm512_add_ps(s, ev);
      if (dev) sd = _mm512_add_ps(sd, v);
    }
    if (j < j1) {
      const __mmask16 lanes = static_cast<__mmask16>((1u << (j1 - j)) - 1u);
      const __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, z + j), vm);
      const __m512 ev = exp_nonpositive16(v);
      if (e) _mm512_mask_storeu_ps(e + j, lanes, ev);
      s = _mm512_mask_add_ps(s, lanes, s, ev);
      if (dev) sd = _mm512_mask_add_ps(sd, lanes, sd, v);
    }
    total += sum_lanes(s);
    if (dev) total_dev += sum_lanes(sd);
  }
  if (dev) *dev = total_dev;
  return total;
}

FDNN_AVX512_INLINE __mmask16 first_lanes(int64_t count) { return static_cast<__mmask16>((1u << count) - 1u); }

// row_max of z[0, k) (the same value: a max is exact, and NaNs are skipped as there), 32 wide.
FDNN_AVX512 float row_max_avx512(const float* z, int64_t k) {
  __m512 m0 = _mm512_set1_ps(-std::numeric_limits<float>::infinity()), m1 = m0;
  int64_t j = 0;
  for (; j + 32 <= k; j += 32) {
    m0 = _mm512_max_ps(_mm512_loadu_ps(z + j), m0);  // z > m ? z : m, as row_max
    m1 = _mm512_max_ps(_mm512_loadu_ps(z + j + 16), m1);
  }
  if (j + 16 <= k) {
    m0 = _mm512_max_ps(_mm512_loadu_ps(z + j), m0);
    j += 16;
  }
  if (j < k) {
    const __mmask16 lanes = first_lanes(k - j);
    m1 = _mm512_mask_max_ps(m1, lanes, _mm512_maskz_loadu_ps(lanes, z + j), m1);
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

// c_p e - c_w on the 16 values from column j on, the label's lane (if among them) v_label.
FDNN_AVX512_INLINE __m512 gradient16(__m512 vp, __m512 vw, __m512 vl, int64_t label, int64_t j, __m512 ev) {
  const __m512 v = _mm512_fmsub_ps(vp, ev, vw);
  const uint64_t at = static_cast<uint64_t>(label - j);
  return at < 16 ? _mm512_mask_mov_ps(v, static_cast<__mmask16>(1u << at), vl) : v;
}

// The gradient pass of a row, d holding e_j = exp(z_j - m): d_j = c_p e_j - c_w (one rounding, as
// the portable loop's contraction), d_label = v_label, with 64-byte aligned stores (the first and
// last vectors masked). When next is not null the same loop takes the max of next[0, k) (the next
// row's max pass: for a large array its loads come from memory while this row's stores go out)
// and returns it; otherwise returns -inf.
FDNN_AVX512 float grad_pass_avx512(float* d, int64_t k, float c_p, float c_w, int64_t label, float v_label,
                                   const float* next) {
  const __m512 vp = _mm512_set1_ps(c_p), vw = _mm512_set1_ps(c_w), vl = _mm512_set1_ps(v_label);
  __m512 m0 = _mm512_set1_ps(-std::numeric_limits<float>::infinity()), m1 = m0;
  const uintptr_t address = reinterpret_cast<uintptr_t>(d);
  int64_t j = address % sizeof(float) ? 0 : std::min<int64_t>(k, (64 - address % 64) % 64 / sizeof(float));
  if (j > 0) {
    const __mmask16 lanes = first_lanes(j);
    _mm512_mask_storeu_ps(d, lanes, gradient16(vp, vw, vl, label, 0, _mm512_maskz_loadu_ps(lanes, d)));
    if (next) m1 = _mm512_mask_max_ps(m1, lanes, _mm512_maskz_loadu_ps(lanes, next), m1);
  }
  for (; j + 16 <= k; j += 16) {
    _mm512_storeu_ps(d + j, gradient16(vp, vw, vl, label, j, _mm512_loadu_ps(d + j)));
    if (next) m0 = _mm512_max_ps(_mm512_loadu_ps(next + j), m0);
  }
  if (j < k) {
    const __mmask16 lanes = first_lanes(k - j);
    _mm512_mask_storeu_ps(d + j, lanes, gradient16(vp, vw, vl, label, j, _mm512_maskz_loadu_ps(lanes, d + j)));
    if (next) m1 = _mm512_mask_max_ps(m1, lanes, _mm512_maskz_loadu_ps(lanes, next + j), m1);
  }
  return _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
}

// ---- the same three float32 passes with AVX2 and FMA (CPUs without AVX-512F, or with its paths off) ----
//
// exp_nonpositive on 8 lanes, 2^n built from the shifter sum's low bits (t = x log2(e) + 1.5 2^23
// holds n in its low mantissa bits, so bits(t) << 23 is n << 23 modulo 2^32): for x >= lo the
// exp_nonpositive of the x86-64-v3 loop (the same multiply-adds, and p 2^n one rounding), 0
// below lo, NaN for NaN; so the same exp bits as every other path. The sums are blocked as
// exp_pass_avx512's: 16 float partials per kSumBlock (two vectors, element j in lane (j - j0) % 16),
// added into double in the same tree, so the losses have the AVX-512 path's bits. On a Zen 3
// EPYC, one core, 512 x 1000 forward + backward in cache: the generic x86-64-v3 loops 0.72-0.75 ns
// per element (the exp pass about half of it), these passes 0.63-0.65 (2026-12-07).

FDNN_AVX2_INLINE __m256 exp_nonpositive8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.33654f), shifter = _mm256_set1_ps(12582912.0f);
  const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_NLT_UQ);  // x >= lo or NaN
  const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), shifter);
  const __m256 n = _mm256_sub_ps(t, shifter);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(1.9875691500e-4f), r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r), _mm256_set1_ps(1.0f));
  const __m256i scale = _mm256_add_epi32(_mm256_slli_epi32(_mm256_castps_si256(t), 23), _mm256_set1_epi32(127 << 23));
  return _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_castsi256_ps(scale)));
}

// The sum of 16 float partials (lo: lanes 0-7, hi: 8-15) in double, in sum_lanes' tree.
FDNN_AVX2_INLINE double sum_lanes(__m256 lo, __m256 hi) {
  const __m256d a = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(lo)), _mm256_cvtps_pd(_mm256_castps256_ps128(hi)));
  const __m256d b = _mm256_add_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(lo, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(hi, 1)));
  const __m256d c = _mm256_add_pd(b, a);  // the halves of the 8 lane pairs
  const __m128d e = _mm_add_pd(_mm256_extractf128_pd(c, 1), _mm256_castpd256_pd128(c));
  return _mm_cvtsd_f64(_mm_add_sd(e, _mm_unpackhi_pd(e, e)));
}

// exp_pass_avx512 with AVX2.
FDNN_AVX2 double exp_pass_avx2(float* e, const float* z, float m, int64_t k, double* dev) {
  const __m256 vm = _mm256_set1_ps(m);
  double total = 0.0, total_dev = 0.0;
  for (int64_t j0 = 0; j0 < k; j0 += kSumBlock) {
    const int64_t j1 = std::min(k, j0 + kSumBlock);
    __m256 s[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, sd[2] = {s[0], s[0]};
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16)
      for (int h = 0; h < 2; ++h) {
        const __m256 v = _mm256_sub_ps(_mm256_loadu_ps(z + j + 8 * h), vm);
        const __m256 ev = exp_nonpositive8(v);
        if (e) _mm256_storeu_ps(e + j + 8 * h, ev);
        s[h] = _mm256_add_ps(s[h], ev);
        if (dev) sd[h] = _mm256_add_ps(sd[h], v);
      }
    for (int h = 0; j < j1; j += 8, ++h) {  // at most 2 vectors, the last one partial
      const __m256i lanes = first_lanes8(j1 - j);
      const __m256 in = _mm256_castsi256_ps(lanes);
      const __m256 v = _mm256_and_ps(_mm256_sub_ps(_mm256_maskload_ps(z + j, lanes), vm), in);
      const __m256 ev = _mm256_and_ps(exp_nonpositive8(v), in);
      if (e) _mm256_maskstore_ps(e + j, lanes, ev);
      s[h] = _mm256_add_ps(s[h], ev);
      if (dev) sd[h] = _mm256_add_ps(sd[h], v);
    }
    total += sum_lanes(s[0], s[1]);
    if (dev) total_dev += sum_lanes(sd[0], sd[1]);
  }
  if (dev) *dev = total_dev;
  return total;
}

// row_max_avx512 with AVX2 (lanes past the row -inf).
FDNN_AVX2 float row_max_avx2(const float* z, int64_t k) {
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 m[4] = {neg_inf, neg_inf, neg_inf, neg_inf};
  int64_t j = 0;
  for (; j + 32 <= k; j += 32)
    for (int q = 0; q < 4; ++q) m[q] = _mm256_max_ps(_mm256_loadu_ps(z + j + 8 * q), m[q]);  // z > m ? z : m
  for (; j < k; j += 8) {
    const __m256i lanes = first_lanes8(k - j);
    const __m256 v = _mm256_blendv_ps(neg_inf, _mm256_maskload_ps(z + j, lanes), _mm256_castsi256_ps(lanes));
    m[0] = _mm256_max_ps(v, m[0]);
  }
  return max_lanes8(_mm256_max_ps(_mm256_max_ps(m[0], m[1]), _mm256_max_ps(m[2], m[3])));
}

// grad_pass_avx512 with AVX2: d_j = c_p e_j - c_w (one rounding), d_label = v_label, stores 32-byte
// aligned from d's first boundary on (a scalar head before it, a masked tail); with next, the
// max of next[0, k) in the same loop (returned; -inf without next).
FDNN_AVX2 float grad_pass_avx2(float* d, int64_t k, float c_p, float c_w, int64_t label, float v_label,
                                    const float* next) {
  const __m256 vp = _mm256_set1_ps(c_p), vw = _mm256_set1_ps(c_w);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 m0 = neg_inf, m1 = neg_inf;
  float m_head = -std::numeric_limits<float>::infinity();
  const uintptr_t address = reinterpret_cast<uintptr_t>(d);
  const int64_t head = address % sizeof(float) ? 0 : std::min<int64_t>(k, (32 - address % 32) % 32 / sizeof(float));
  for (int64_t j = 0; j < head; ++j) {
    d[j] = std::fma(c_p, d[j], -c_w);
    if (next) m_head = next[j] > m_head ? next[j] : m_head;
  }
  int64_t j = head;
  for (; j + 16 <= k; j += 16) {
    _mm256_storeu_ps(d + j, _mm256_fmsub_ps(vp, _mm256_loadu_ps(d + j), vw));
    _mm256_storeu_ps(d + j + 8, _mm256_fmsub_ps(vp, _mm256_loadu_ps(d + j + 8), vw));
    if (next) {
      m0 = _mm256_max_ps(_mm256_loadu_ps(next + j), m0);
      m1 = _mm256_max_ps(_mm256_loadu_ps(next + j + 8), m1);
    }
  }
  for (; j < k; j += 8) {
    const __m256i lanes = first_lanes8(k - j);
    _mm256_maskstore_ps(d + j, lanes, _mm256_fmsub_ps(vp, _mm256_maskload_ps(d + j, lanes), vw));
    if (next)
      m1 = _mm256_max_ps(_mm256_blendv_ps(neg_inf, _mm256_maskload_ps(next + j, lanes), _mm256_castsi256_ps(lanes)), m1);
  }
  d[label] = v_label;
  if (!next) return -std::numeric_limits<float>::infinity();
  const float m = max_lanes8(_mm256_max_ps(m0, m1));
  return m_head > m ? m_head : m;
}

// The float32 passes with intrinsics that this CPU runs (null: the portable loops).
struct XentPasses {
  float (*row_max)(const float* z, int64_t k);
  double (*exp_pass)(float* e, const float* z, float m, int64_t k, double* dev);
  float (*grad_pass)(float* d, int64_t k, float c_p, float c_w, int64_t label, float v_label, const float* next);
};
const XentPasses* xent_passes() {
  static const XentPasses avx512{row_max_avx512, exp_pass_avx512, grad_pass_avx512};
  static const XentPasses avx2{row_max_avx2, exp_pass_avx2, grad_pass_avx2};
  static const XentPasses* const chosen = xent_avx512() ? &avx512 : avx2_fma_paths_enabled() ? &avx2 : nullptr;
  return chosen;
}
#endif

// Rows [r0, r1). float32 with the AVX-512 or AVX2 paths (xent_passes): the max, exp and gradient
// passes in intrinsics, the gradient pass also taking the next row's max (one loop over the row less):
// one-thread CPU time on a Zen 4 core, 16896 x 1000 in cache 6.98 -> 6.07 ms, 16778 x 1000 from
// DRAM 7.90 -> 7.31 ms.
// The weighted gradient with smoothing keeps the portable loop.
// Measured slower here, one thread from DRAM, and not kept: streaming stores for dlogits (cpu/
// stream_store.h) from an L1 exp row (7.6 -> 10 ms), also in earlier forms (a gradient row built
// in L1 and streamed out: 11.6 -> 14.4 ms); software prefetch of the row after next during the
// exp pass, into L1, L2 or non-temporal (+1.5-3 ms); and one loop doing row r's exp, row r-1's
// gradient and row r + 1's max (the loads missing in the middle of the arithmetic; in a
// standalone test 6.7 -> 10 ms). Nor did two rows' exp passes in one loop gain.
// Nor streaming whole lines only (2026-12-07, 16778 x 1000 out=, eps 0 and 0.1): the exp row in
// L1 scratch at dlogits' offset from a line, the gradient pass streaming each whole line and
// joining a row's partial last line with the next row's partial first line into one streamed
// line (a block's two end lines stored with ordinary masked stores), bits unchanged. One thread,
// CPU time: 7.0-7.2 -> 8.0-8.5 ms. Two threads from DRAM, the variants interleaved in one process
// run at real-time priority (so the other processes did not share the cores): 3.9-4.3 -> 4.7-5.3
// ms. The partial lines were not the cause: streamed as 16-byte movntps in that same form they
// took 5.0-5.5 ms at two threads (about 0.3 ms more) and the same one-thread time; with ordinary
// stores the same form took as long as streaming at one thread (8.0-9.0 ms). What loses is the
// gradient pass writing lines that are not in cache, in a burst, where the in-place kernel's read
// for ownership of dlogits overlaps the exp pass's arithmetic. Streaming row r - 1's lines from
// within row r's exp loop (spread over the arithmetic) took 4.6-5.0 ms at two threads and
// 8.4-9.2 ms at one (the gradient's instructions land in the compute-bound loop; and its stores
// 4K-alias the logits loads unless delayed by a few lines: 13-17 ms). The in-place kernel is
// sensitive to where dlogits lies from the logits: with dlogits 64 MiB + 4 KiB below them it took
// 4.25-4.8 ms against 3.9-4.0 ms for +64 MiB + 4 KiB or -128 MiB - 8 KiB (two threads, same
// runs; one thread 8.6 against 7.6 ms), which the streamed form was not (4.6-4.7 ms each).
// (Arrays of 4x a 32 MiB L3 over two arrays are 64 MiB, so two allocated one after the other lie
// 64 MiB + 4 KiB apart.) Holding the exp pass's stores 4 vectors behind its loads did not help
// there (one thread 8.5-8.7 against 7.5-8.4 ms).
template <typename T>
FDNN_MULTIVERSION void xent_rows(double* FDNN_RESTRICT row_loss, T* FDNN_RESTRICT dlogits,
                                 const T* FDNN_RESTRICT logits, const int64_t* FDNN_RESTRICT labels,
                                 const T* FDNN_RESTRICT weight, double w_sum, int64_t r0, int64_t r1, int64_t k,
                                 int64_t ignore_index, XentTarget t, double scale) {
  const XentPasses* simd = nullptr;
#if FDNN_XENT_AVX512
  if constexpr (std::is_same_v<T, float>) simd = xent_passes();
#endif
  // The intrinsics' gradient pass d_j = c_p e_j - c_w, where the weights do not enter it.
  const bool fast_grad = simd && dlogits && !(weight && t.b != 0.0);
  // The portable exp passes always store exp(z_j - m): into the dlogits row, or for a loss-only
  // call into a row of per-thread scratch, so that both calls run the same loop and their losses
  // have the same bits (the compiler vectorized a storing and a non-storing version of the
  // reduction differently: the x86-64-v4 clone's losses differed in the last bit). The
  // intrinsics' exp passes are the same loop with or without their stores.
  T* row = dlogits || simd ? nullptr : thread_scratch<T, kXentRowSlot>(k);
  T m_next = 0;
  bool have_next = false;  // m_next is row r's max (taken by row r - 1's gradient pass)
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t label = labels[r];
    T* d = dlogits ? dlogits + r * k : nullptr;
    T* e = d ? d : row;
    if (label == ignore_index) {
      row_loss[r] = 0.0;
      if (d) std::fill(d, d + k, T(0));
      have_next = false;
      continue;
    }
    const T* z = logits + r * k;
    T m;
#if FDNN_XENT_AVX512
    if constexpr (std::is_same_v<T, float>)
      m = have_next ? m_next : simd ? simd->row_max(z, k) : row_max(z, k);
    else
#endif
      m = row_max(z, k);
    have_next = false;
    // others = sum_{j != y} w_j nll_j (xent.h), only with smoothing. Without weights it is
    // (k - 1) log s + sum_{j != y} (m - z_j), the sum taken as -sum_j (z_j - m) - (m - z_y) from
    // the exp pass: every term is >= 0, so where the label's term is at most half of the total
    // the difference keeps the sum's relative precision within a factor 2. Otherwise (the label's
    // logit far below the others) and for a non-finite sum (an infinite logit) the direct loop,
    // which leaves the label's term out.
    double dev = 0.0;
    const bool by_dev = t.b != 0.0 && !weight;
    double s;
#if FDNN_XENT_AVX512
    if constexpr (std::is_same_v<T, float>) {
      if (simd)
        s = simd->exp_pass(d, z, m, k, by_dev ? &dev : nullptr);
      else
        s = by_dev ? exp_shifted_dev(e, z, m, k, dev) : exp_shifted(e, z, m, k);
    } else
#endif
      s = by_dev ? exp_shifted_dev(e, z, m, k, dev) : exp_shifted(e, z, m, k);
    const double log_s = std::log(s);
    const T log_s_t = static_cast<T>(log_s);
    double others = 0.0;
    if (t.b != 0.0) {
      if (weight)
        others = blocked_sum<T>(k, [&](int64_t j) { return j == label ? T(0) : weight[j] * ((m - z[j]) + log_s_t); });
      else if (by_dev && finite_value(dev) &&
               2.0 * (static_cast<double>(m) - static_cast<double>(z[label])) <= -dev)
        others = static_cast<double>(k - 1) * log_s +
                 (-dev - (static_cast<double>(m) - static_cast<double>(z[label])));
      else
        others = blocked_sum<T>(k, [&](int64_t j) { return j == label ? T(0) : (m - z[j]) + log_s_t; });
      // The T sums overflow where the terms are finite but near the range (logits near -3e38):
      // then in double, as the float64 reference takes them.
      if (!finite_value(others))
        others = weight ? blocked_sum<double>(k, [&](int64_t j) {
          return j == label ? 0.0
                            : static_cast<double>(weight[j]) *
                                  ((static_cast<double>(m) - static_cast<double>(z[j])) + log_s);
        })
                        : blocked_sum<double>(k, [&](int64_t j) {
                            return j == label ? 0.0 : (static_cast<double>(m) - static_cast<double>(z[j])) + log_s;
                          });
    }
    const double w_y = weight ? static_cast<double>(weight[label]) : 1.0;
    const double nll_y = (static_cast<double>(m) - static_cast<double>(z[label])) + log_s;
    row_loss[r] = xent_row_loss(t, nll_y, w_y, others);
    if (!d) continue;
    // d_j = scale * (c p_j - tw(q_j, w_j)), c = sum_i tw(q_i, w_i); d holds exp(z_j - m) = p_j s.
    double w_others = static_cast<double>(k - 1);
    if (weight)
      w_others = others_weight_by_difference(w_sum, w_y) ? w_sum - w_y : others_weight_sum(weight, k, label);
    const T c_p = static_cast<T>(scale * xent_grad_p_coefficient(t, w_y, w_others) / s);
    const T c_w = static_cast<T>(scale * t.b);
    const T e_y = d[label];
    const T c_y = static_cast<T>(scale * label_target_weight(t, w_y));
#if FDNN_XENT_AVX512
    if constexpr (std::is_same_v<T, float>) {
      if (fast_grad) {
        if (std::isnan(c_p)) {
          // Every d_j is NaN. Stored as c_p's NaN: the vector forms of c_p e_j - c_w would pass on
          // c_p's or e_j's NaN depending on the instruction form, i.e. on where out starts.
          std::fill(d, d + k, c_p);
          continue;
        }
        const float* next = r + 1 < r1 ? z + k : nullptr;
        m_next = simd->grad_pass(d, k, c_p, c_w, label, std::fma(c_p, e_y, -c_y), next);
        have_next = next != nullptr;
        continue;
      }
    }
#endif
    if (weight && t.b != 0.0) {
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) d[j] = c_p * d[j] - c_w * weight[j];
    } else {
#pragma omp simd
      for (int64_t j = 0; j < k; ++j) d[j] = c_p * d[j] - c_w;
    }
    d[label] = c_p * e_y - c_y;
  }
}

#if FDNN_XENT_AVX512
// softmax_rows of float32 with the AVX-512 paths: the cross-entropy's max and exp passes
// (row_max_avx512, exp_pass_avx512: the same exp bits, the sum in 16 float partials per block of
// kSumBlock, added in double) and the output pass in 16-lane vectors, the last one masked, for
// rows of 24 columns or more (narrower ones take the across-rows path). The portable loop's sums
// over a few tens of floats ran mostly scalar (17 columns: 6.5 ns per element, against 1.4 for
// 16, before that path covered 17-23), and its bits differ from these in the sums' last bits.
FDNN_AVX512 void softmax_rows_avx512(float* y, const float* x, int64_t r0, int64_t r1, int64_t k, bool log) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* z = x + r * k;
    float* out = y + r * k;
    const float m = row_max_avx512(z, k);
    const __m512 vm = _mm512_set1_ps(m);
    if (log) {
      const __m512 vl = _mm512_set1_ps(static_cast<float>(std::log(exp_pass_avx512(nullptr, z, m, k, nullptr))));
      int64_t j = 0;
      for (; j + 16 <= k; j += 16)  // log_softmax_value: (z - m) - log s
        _mm512_storeu_ps(out + j, _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(z + j), vm), vl));
      if (j < k) {
        const __mmask16 lanes = first_lanes(k - j);
        _mm512_mask_storeu_ps(out + j, lanes, _mm512_sub_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, z + j), vm), vl));
      }
    } else {
      const __m512 vi = _mm512_set1_ps(static_cast<float>(1.0 / exp_pass_avx512(out, z, m, k, nullptr)));
      int64_t j = 0;
      for (; j + 16 <= k; j += 16) _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_loadu_ps(out + j), vi));
      if (j < k) {
        const __mmask16 lanes = first_lanes(k - j);
        _mm512_mask_storeu_ps(out + j, lanes, _mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, out + j), vi));
      }
    }
  }
}
#endif

}  // namespace

template <typename T> void softmax(T* y, const T* x, int64_t n, int64_t k, Stream) {
  parallel_for(n, rows_per_block(k), k, [&](int64_t r0, int64_t r1) {
    if (k < narrow_columns<T>)
      softmax_narrow_rows(y, x, r0, r1, k, false);
    else
      softmax_rows(y, x, r0, r1, k, false);
  });
}
template <typename T> void log_softmax(T* y, const T* x, int64_t n, int64_t k, Stream) {
  parallel_for(n, rows_per_block(k), k, [&](int64_t r0, int64_t r1) {
    if (k < narrow_columns<T>)
      softmax_narrow_rows(y, x, r0, r1, k, true);
    else
      softmax_rows(y, x, r0, r1, k, true);
  });
}
template <typename T> void softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k, Stream) {
  parallel_for(n, rows_per_block(k), k, [&](int64_t r0, int64_t r1) {
    if (k < kTailWidth)
      softmax_backward_narrow_rows(dx, dy, y, r0, r1, k, false);
    else
      softmax_backward_rows(dx, dy, y, r0, r1, k, false);
  });
}
template <typename T> void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k, Stream) {
  parallel_for(n, rows_per_block(k), k, [&](int64_t r0, int64_t r1) {
    if (k < kTailWidth)
      softmax_backward_narrow_rows(dx, dy, y, r0, r1, k, true);
    else
      softmax_backward_rows(dx, dy, y, r0, r1, k, true);
  });
}

template <typename T>
double softmax_cross_entropy(T* row_loss, T* dlogits, const T* logits, const int64_t* labels, const T* weight,
                             int64_t n, int64_t k, int64_t ignore_index, double label_smoothing, Smoothing smoothing,
                             Reduction reduction, Stream) {
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
  // The row losses are added in long double (x87's 64-bit mantissa on x86-64): in double, a sum
  // of ~1000 float64 row losses was ~7 ulps off, over twice NumPy's pairwise error.
  long double total = 0.0L;
  for (int64_t r = 0; r < n; ++r) total += losses[r];
  if (reduction == Reduction::sum) return static_cast<double>(total);
  return divisor == 0.0 ? scale : static_cast<double>(total / divisor);  // scale is NaN there
}

FDNN_XENT_INSTANTIATE(float)
FDNN_XENT_INSTANTIATE(double)

}  // namespace fdnn
