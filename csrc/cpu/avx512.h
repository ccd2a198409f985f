// AVX-512F building blocks of the kernels in *_avx512_cpu.cpp (x86-64 with GCC only): the
// vector operations per element type and in-register transposes. Every function carries the
// avx512f target attribute, so it may only run where the CPU has AVX-512F (the callers check
// gemm_avx512_supported()); the rest of the module stays compiled for the portable baseline.
#pragma once

#include <immintrin.h>

#include <cstdint>

#define FDNN_AVX512 __attribute__((target("avx512f")))
#define FDNN_AVX512_INLINE __attribute__((target("avx512f"), always_inline)) inline

namespace fdnn {

// The few AVX-512 operations the kernel needs, per element type.
template <typename T> struct Zmm;

template <> struct Zmm<float> {
  using V = __m512;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  static FDNN_AVX512_INLINE V zero() { return _mm512_setzero_ps(); }
  static FDNN_AVX512_INLINE V set1(float v) { return _mm512_set1_ps(v); }
  static FDNN_AVX512_INLINE V load(const float* p) { return _mm512_load_ps(p); }
  static FDNN_AVX512_INLINE V load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  static FDNN_AVX512_INLINE void store(float* p, V v) { _mm512_store_ps(p, v); }
  static FDNN_AVX512_INLINE void store(float* p, V v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
  static FDNN_AVX512_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static FDNN_AVX512_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }
  // max(0, v) as "0 > v ? 0 : v": NaN and -0 pass through, as relu() in common/activation.h.
  static FDNN_AVX512_INLINE V relu(V v) { return _mm512_max_ps(_mm512_setzero_ps(), v); }
  static Mask first(int count) { return count >= kLanes ? Mask(0xFFFF) : Mask((1u << count) - 1u); }
};

template <> struct Zmm<double> {
  using V = __m512d;
  using Mask = __mmask8;
  static constexpr int kLanes = 8;
  static FDNN_AVX512_INLINE V zero() { return _mm512_setzero_pd(); }
  static FDNN_AVX512_INLINE V set1(double v) { return _mm512_set1_pd(v); }
  static FDNN_AVX512_INLINE V load(const double* p) { return _mm512_load_pd(p); }
  static FDNN_AVX512_INLINE V load(const double* p, Mask m) { return _mm512_maskz_loadu_pd(m, p); }
  static FDNN_AVX512_INLINE void store(double* p, V v) { _mm512_store_pd(p, v); }
  static FDNN_AVX512_INLINE void store(double* p, V v, Mask m) { _mm512_mask_storeu_pd(p, m, v); }
  static FDNN_AVX512_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static FDNN_AVX512_INLINE V add(V a, V b) { return _mm512_add_pd(a, b); }
  static FDNN_AVX512_INLINE V relu(V v) { return _mm512_max_pd(_mm512_setzero_pd(), v); }
  static Mask first(int count) { return count >= kLanes ? Mask(0xFF) : Mask((1u << count) - 1u); }
};


// In-register transposes of a square block: r[i] holds row i on entry and column i on exit.
FDNN_AVX512_INLINE void transpose16(__m512* r) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);  // per 128-bit lane: r_i[0] r_i+1[0] r_i[1] r_i+1[1]
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  __m512 u[16];  // u[4g + s]: column (4 l + s) of rows 4g .. 4g+3, in lane l
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
    u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
    u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
    u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
  }
  for (int s = 0; s < 4; ++s) {
    const __m512 even_lo = _mm512_shuffle_f32x4(u[s], u[4 + s], 0x88);   // lanes 0, 2 of groups 0, 1
    const __m512 even_hi = _mm512_shuffle_f32x4(u[8 + s], u[12 + s], 0x88);
    const __m512 odd_lo = _mm512_shuffle_f32x4(u[s], u[4 + s], 0xDD);     // lanes 1, 3
    const __m512 odd_hi = _mm512_shuffle_f32x4(u[8 + s], u[12 + s], 0xDD);
    r[s] = _mm512_shuffle_f32x4(even_lo, even_hi, 0x88);
    r[8 + s] = _mm512_shuffle_f32x4(even_lo, even_hi, 0xDD);
    r[4 + s] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0x88);
    r[12 + s] = _mm512_shuffle_f32x4(odd_lo, odd_hi, 0xDD);
  }
}

FDNN_AVX512_INLINE void transpose8(__m512d* r) {
  __m512d t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm512_unpacklo_pd(r[i], r[i + 1]);  // per 128-bit lane l: r_i[2l] r_i+1[2l]
    t[i + 1] = _mm512_unpackhi_pd(r[i], r[i + 1]);
  }
  for (int s = 0; s < 2; ++s) {
    const __m512d even_lo = _mm512_shuffle_f64x2(t[s], t[2 + s], 0x88);
    const __m512d even_hi = _mm512_shuffle_f64x2(t[4 + s], t[6 + s], 0x88);
    const __m512d odd_lo = _mm512_shuffle_f64x2(t[s], t[2 + s], 0xDD);
    const __m512d odd_hi = _mm512_shuffle_f64x2(t[4 + s], t[6 + s], 0xDD);
    r[s] = _mm512_shuffle_f64x2(even_lo, even_hi, 0x88);
    r[4 + s] = _mm512_shuffle_f64x2(even_lo, even_hi, 0xDD);
    r[2 + s] = _mm512_shuffle_f64x2(odd_lo, odd_hi, 0x88);
    r[6 + s] = _mm512_shuffle_f64x2(odd_lo, odd_hi, 0xDD);
  }
}

FDNN_AVX512_INLINE void transpose(__m512* r) { transpose16(r); }
FDNN_AVX512_INLINE void transpose(__m512d* r) { transpose8(r); }

}  // namespace fdnn
