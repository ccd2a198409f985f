// AVX2 building blocks of the hand-written AVX2 paths of the kernels (x86-64 with GCC only; the
// callers check avx2_fma_paths_enabled() first): every function carries the avx2 and fma target
// attributes, as cpu/avx512.h's do AVX-512F, so the rest of the module stays compiled for the
// portable baseline.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#define FDNN_AVX2 __attribute__((target("avx2,fma")))
#define FDNN_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

namespace fdnn {

// The lanes [0, min(count, 8)) of a vector, as the mask of maskload and maskstore.
FDNN_AVX2_INLINE __m256i first_lanes8(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(count, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The largest of v's 8 lanes (v holds no NaN: the max passes keep their running maxima).
FDNN_AVX2_INLINE float max_lanes8(__m256 v) {
  __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_max_ps(b, _mm_movehl_ps(b, b));
  b = _mm_max_ss(b, _mm_shuffle_ps(b, b, 1));
  return _mm_cvtss_f32(b);
}

// The vector operations of the GEMM kernel (cpu/gemm_kernel.inc) on 256-bit vectors, per element
// type, as Zmm<T> of cpu/avx512.h on 512-bit ones. A mask is a count of lanes: [0, count) (all
// of them from kLanes on); the masked loads give zeros past it, the masked stores leave the
// memory past it untouched, and whole vectors take the plain unaligned instructions.
template <typename T> struct Ymm;

template <> struct Ymm<float> {
  using V = __m256;
  using Mask = int;
  static constexpr int kLanes = 8;
  static FDNN_AVX2_INLINE V zero() { return _mm256_setzero_ps(); }
  static FDNN_AVX2_INLINE V set1(float v) { return _mm256_set1_ps(v); }
  static FDNN_AVX2_INLINE V load(const float* p) { return _mm256_load_ps(p); }
  static FDNN_AVX2_INLINE V load(const float* p, Mask m) {
    return m >= kLanes ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first_lanes8(m));
  }
  static FDNN_AVX2_INLINE void store(float* p, V v) { _mm256_store_ps(p, v); }
  static FDNN_AVX2_INLINE void store(float* p, V v, Mask m) {
    if (m >= kLanes) {
      _mm256_storeu_ps(p, v);
      return;
    }
    // In 16-, 8- and 4-byte pieces: a masked store (vmaskmovps) measured slower on Zen 3 where
    // the A tiles of 6 rows are packed, a partial store per value of k.
    __m128 part = _mm256_castps256_ps128(v);
    if (m >= 4) {
      _mm_storeu_ps(p, part);
      part = _mm256_extractf128_ps(v, 1);
      p += 4;
      m -= 4;
    }
    if (m >= 2) {
      _mm_storel_pi(reinterpret_cast<__m64*>(p), part);
      part = _mm_movehl_ps(part, part);
      p += 2;
      m -= 2;
    }
    if (m == 1) _mm_store_ss(p, part);
  }
  static FDNN_AVX2_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static FDNN_AVX2_INLINE V add(V a, V b) { return _mm256_add_ps(a, b); }
  // max(0, v) as "0 > v ? 0 : v": NaN and -0 pass through, as relu() in common/activation.h.
  static FDNN_AVX2_INLINE V relu(V v) { return _mm256_max_ps(_mm256_setzero_ps(), v); }
  static Mask first(int count) { return count; }
};

template <> struct Ymm<double> {
  using V = __m256d;
  using Mask = int;
  static constexpr int kLanes = 4;
  static FDNN_AVX2_INLINE __m256i lanes(Mask m) {  // the 64-bit lanes [0, m)
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(m), _mm256_setr_epi64x(0, 1, 2, 3));
  }
  static FDNN_AVX2_INLINE V zero() { return _mm256_setzero_pd(); }
  static FDNN_AVX2_INLINE V set1(double v) { return _mm256_set1_pd(v); }
  static FDNN_AVX2_INLINE V load(const double* p) { return _mm256_load_pd(p); }
  static FDNN_AVX2_INLINE V load(const double* p, Mask m) {
    return m >= kLanes ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, lanes(m));
  }
  static FDNN_AVX2_INLINE void store(double* p, V v) { _mm256_store_pd(p, v); }
  static FDNN_AVX2_INLINE void store(double* p, V v, Mask m) {
    if (m >= kLanes) {
      _mm256_storeu_pd(p, v);
      return;
    }
    __m128d part = _mm256_castpd256_pd128(v);  // in 16- and 8-byte pieces, as Ymm<float>'s
    if (m >= 2) {
      _mm_storeu_pd(p, part);
      part = _mm256_extractf128_pd(v, 1);
      p += 2;
      m -= 2;
    }
    if (m == 1) _mm_store_sd(p, part);
  }
  static FDNN_AVX2_INLINE V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static FDNN_AVX2_INLINE V add(V a, V b) { return _mm256_add_pd(a, b); }
  static FDNN_AVX2_INLINE V relu(V v) { return _mm256_max_pd(_mm256_setzero_pd(), v); }
  static Mask first(int count) { return count; }
};

// In-register transposes of a square block: r[i] holds row i on entry and column i on exit.
FDNN_AVX2_INLINE void transpose(__m256* r) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);  // per 128-bit half: r_i[0] r_i+1[0] r_i[1] r_i+1[1]
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 2; ++g) {  // u[4g + s]: column (4 h + s) of rows 4g .. 4g+3, in half h
    u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int s = 0; s < 4; ++s) {
    r[s] = _mm256_permute2f128_ps(u[s], u[4 + s], 0x20);
    r[4 + s] = _mm256_permute2f128_ps(u[s], u[4 + s], 0x31);
  }
}

FDNN_AVX2_INLINE void transpose(__m256d* r) {
  const __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
  const __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
  r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
  r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
  r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
  r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

}  // namespace fdnn
