// Bilinear and nearest sampling of augment with AVX-512F intrinsics (GCC 12 does not vectorize the
// gathers of augment_cpu.cpp's scalar row loop under its generic tuning):
// - augment_bilinear_row_avx512 and augment_nearest_row_avx512: rows of 8 output pixels at a time,
//   in double, with gathers (float64: scalar loads) at indices clamped into the image (float64
//   images, and float32 bilinear planes too large for the padded path); augment_bilinear_f64_avx512
//   the same for all planes of a float64 sample at once (several planes);
// - augment_nearest_f32_avx512: float32 nearest, 16 output pixels of a row at a time for all
//   planes, one masked gather per plane;
// - augment_bilinear_f32_avx512: float32 bilinear, 16 output pixels at a time over padded planes
//   (quad planes for several channels), two groups of 16 side by side, coordinates in double,
//   weights and blend in float.
// The arithmetic is the scalar loop's (augment_geometry, ops/augment.h), with the multiply-adds
// fused. A file of its own, as cpu/philox_avx512_cpu.cpp, so the target attribute stays away from
// the multiversioned code.
#include <cstdint>

#include "ops/augment.h"

#if defined(__x86_64__)
// GCC 12 warns inside its own intrinsic headers (their _mm512_undefined_* results) when they are
// used from a target("avx512f") function of a baseline translation unit.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

namespace fdnn {

namespace {
template <typename T> __m512d gather8(const T* base, __m256i index);
template <>
__attribute__((target("avx512f,avx2,fma"))) inline __m512d gather8<float>(const float* base, __m256i index) {
  return _mm512_cvtps_pd(_mm256_i32gather_ps(base, index, 4));
}
// float64: scalar loads (the values of a gather at those indices; perf put most samples of the
// bilinear row on the instructions after its four 8-lane gathers). One-thread CPU time of
// RandomShift(0.1) on the Zen 4 here: 512x1x28x28 1.75 -> 1.56 ms, 256x3x32x32 3.65 -> 2.70 ms.
template <>
__attribute__((target("avx512f,avx2,fma"))) inline __m512d gather8<double>(const double* base, __m256i index) {
  alignas(32) int i[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(i), index);
  const __m256d lo = _mm256_setr_pd(base[i[0]], base[i[1]], base[i[2]], base[i[3]]);
  const __m256d hi = _mm256_setr_pd(base[i[4]], base[i[5]], base[i[6]], base[i[7]]);
  return _mm512_insertf64x4(_mm512_castpd256_pd512(lo), hi, 1);
}
template <typename T> void store8(T* out, __m512d v);
template <> __attribute__((target("avx512f,avx2,fma"))) inline void store8<float>(float* out, __m512d v) {
  _mm256_storeu_ps(out, _mm512_cvtpd_ps(v));
}
template <> __attribute__((target("avx512f,avx2,fma"))) inline void store8<double>(double* out, __m512d v) {
  _mm512_storeu_pd(out, v);
}
}  // namespace

namespace {

// A bilinear plane's constants for 8 output pixels at a time in double (augment_bilinear_row_avx512,
// augment_bilinear_f64_avx512).
struct Bilinear8 {
  __m512d m0, m3, w, h;
  __m256i width, last_col, last_row;
  int64_t image_w;
  explicit Bilinear8(const AugmentSample& s, const AugmentShape& g) __attribute__((target("avx512f,avx2,fma")))
      : m0(_mm512_set1_pd(s.m[0])), m3(_mm512_set1_pd(s.m[3])), w(_mm512_set1_pd(static_cast<double>(g.w))),
        h(_mm512_set1_pd(static_cast<double>(g.h))), width(_mm256_set1_epi32(static_cast<int>(g.w))),
        last_col(_mm256_set1_epi32(static_cast<int>(g.w - 1))), last_row(_mm256_set1_epi32(static_cast<int>(g.h - 1))),
        image_w(g.w) {}
};

// The 8 pixels (col .. col + 7, row) whose row terms are a = m1 dy + m2, b = m4 dy + m5: which are
// inside (ok), their weights (and 1 - weight), whether each weight is 0, and their four taps'
// indices clamped into the image with the masks of the taps inside (the others are fill).
struct Taps8 {
  __mmask8 ok, in00, in01, in10, in11, wx0, wy0;
  __m512d wx, wy, ux, uy;
  __m256i i00, i01, i10, i11;
};
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline Taps8 taps8(const Bilinear8& k, __m512d a, __m512d b,
                                                                              int64_t col) {
  const __m512d minus_one = _mm512_set1_pd(-1.0), zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
  const __m256i zero_i = _mm256_setzero_si256(), one_i = _mm256_set1_epi32(1);
  const __m512d px = _mm512_add_pd(_mm512_set1_pd(augment_dx(col, k.image_w)), _mm512_set_pd(7, 6, 5, 4, 3, 2, 1, 0));
  const __m512d sx_all = _mm512_fmadd_pd(k.m0, px, a), sy_all = _mm512_fmadd_pd(k.m3, px, b);
  Taps8 t;
  t.ok = _mm512_cmp_pd_mask(sx_all, minus_one, _CMP_GT_OQ) & _mm512_cmp_pd_mask(sx_all, k.w, _CMP_LT_OQ) &
         _mm512_cmp_pd_mask(sy_all, minus_one, _CMP_GT_OQ) & _mm512_cmp_pd_mask(sy_all, k.h, _CMP_LT_OQ);
  const __m512d sx = _mm512_mask_blend_pd(t.ok, zero, sx_all), sy = _mm512_mask_blend_pd(t.ok, zero, sy_all);
  const __m512d x0 = _mm512_roundscale_pd(sx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512d y0 = _mm512_roundscale_pd(sy, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  t.wx = _mm512_sub_pd(sx, x0);
  t.wy = _mm512_sub_pd(sy, y0);
  t.ux = _mm512_sub_pd(one, t.wx);
  t.uy = _mm512_sub_pd(one, t.wy);
  t.wx0 = _mm512_cmp_pd_mask(t.wx, zero, _CMP_EQ_OQ);
  t.wy0 = _mm512_cmp_pd_mask(t.wy, zero, _CMP_EQ_OQ);
  const __mmask8 in_c0 = _mm512_cmp_pd_mask(x0, zero, _CMP_GE_OQ);
  const __mmask8 in_c1 = _mm512_cmp_pd_mask(_mm512_add_pd(x0, one), k.w, _CMP_LT_OQ);
  const __mmask8 in_r0 = _mm512_cmp_pd_mask(y0, zero, _CMP_GE_OQ);
  const __mmask8 in_r1 = _mm512_cmp_pd_mask(_mm512_add_pd(y0, one), k.h, _CMP_LT_OQ);
  t.in00 = in_c0 & in_r0;
  t.in01 = in_c1 & in_r0;
  t.in10 = in_c0 & in_r1;
  t.in11 = in_c1 & in_r1;
  const __m256i c0 = _mm512_cvttpd_epi32(x0), r0 = _mm512_cvttpd_epi32(y0);
  // Indices clamped into the image (every gather in bounds); the taps outside are fill.
  const __m256i ca = _mm256_max_epi32(c0, zero_i), cb = _mm256_min_epi32(_mm256_add_epi32(c0, one_i), k.last_col);
  const __m256i ra = _mm256_mullo_epi32(_mm256_max_epi32(r0, zero_i), k.width);
  const __m256i rb = _mm256_mullo_epi32(_mm256_min_epi32(_mm256_add_epi32(r0, one_i), k.last_row), k.width);
  t.i00 = _mm256_add_epi32(ra, ca);
  t.i01 = _mm256_add_epi32(ra, cb);
  t.i10 = _mm256_add_epi32(rb, ca);
  t.i11 = _mm256_add_epi32(rb, cb);
  return t;
}

// The bilinear values of a plane at the 8 pixels of `t` (a tap of weight 0 left out), fill where
// a pixel is outside.
template <typename T>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline __m512d blend8(const Taps8& t, const T* plane,
                                                                                 __m512d fill) {
  const __m512d t00 = _mm512_mask_blend_pd(t.in00, fill, gather8(plane, t.i00));
  const __m512d t01 = _mm512_mask_blend_pd(t.in01, fill, gather8(plane, t.i01));
  const __m512d t10 = _mm512_mask_blend_pd(t.in10, fill, gather8(plane, t.i10));
  const __m512d t11 = _mm512_mask_blend_pd(t.in11, fill, gather8(plane, t.i11));
  const __m512d top = _mm512_mask_blend_pd(t.wx0, _mm512_fmadd_pd(t.wx, t01, _mm512_mul_pd(t.ux, t00)), t00);
  const __m512d bottom = _mm512_mask_blend_pd(t.wx0, _mm512_fmadd_pd(t.wx, t11, _mm512_mul_pd(t.ux, t10)), t10);
  const __m512d v = _mm512_mask_blend_pd(t.wy0, _mm512_fmadd_pd(t.wy, bottom, _mm512_mul_pd(t.uy, top)), top);
  return _mm512_mask_blend_pd(t.ok, fill, v);
}

}  // namespace

// Columns [0, 8 floor(W / 8)) of output row `row` of a bilinear plane (brightness not applied);
// returns how many columns it wrote. The plane has fewer than 2^31 pixels (the caller checks).
template <typename T>
__attribute__((target("avx512f,avx2,fma"))) int64_t augment_bilinear_row_avx512(T* out, const T* plane, int64_t row,
                                                                                 const AugmentSample& s,
                                                                                 const AugmentShape& g) {
  const int64_t done = g.w / 8 * 8;
  const double py = augment_dy(row, g.h);
  const Bilinear8 k(s, g);
  const __m512d a = _mm512_set1_pd(s.m[1] * py + s.m[2]), b = _mm512_set1_pd(s.m[4] * py + s.m[5]);
  const __m512d fill = _mm512_set1_pd(g.fill);
  for (int64_t col = 0; col < done; col += 8) store8(out + col, blend8(taps8(k, a, b, col), plane, fill));
  return done;
}

// float64 bilinear: columns [0, 8 floor(W / 8)) of every row of every plane, brightness applied
// (returns 8 floor(W / 8)): augment_bilinear_row_avx512's arithmetic, each group of 8 columns'
// source points, weights, masks and indices computed once for all C planes.
__attribute__((target("avx512f,avx2,fma"))) int64_t augment_bilinear_f64_avx512(double* y, const double* x,
                                                                                 const AugmentSample& s,
                                                                                 const AugmentShape& g) {
  const int64_t done = g.w / 8 * 8, hw = g.h * g.w;
  const Bilinear8 k(s, g);
  const __m512d fill = _mm512_set1_pd(g.fill);
  const bool bright = s.brightness != 1.0;
  const __m512d brightness = _mm512_set1_pd(s.brightness);
  for (int64_t row = 0; row < g.h; ++row) {
    const double py = augment_dy(row, g.h);
    const __m512d a = _mm512_set1_pd(s.m[1] * py + s.m[2]), b = _mm512_set1_pd(s.m[4] * py + s.m[5]);
    for (int64_t col = 0; col < done; col += 8) {
      const Taps8 t = taps8(k, a, b, col);
      for (int64_t ch = 0; ch < g.c; ++ch) {
        const __m512d o = blend8(t, x + ch * hw, fill);
        _mm512_storeu_pd(y + ch * hw + row * g.w + col, bright ? _mm512_mul_pd(o, brightness) : o);
      }
    }
  }
  return done;
}

// The same for nearest-neighbour sampling (round half to even, as augment_geometry's rint).
template <typename T>
__attribute__((target("avx512f,avx2,fma"))) int64_t augment_nearest_row_avx512(T* out, const T* plane, int64_t row,
                                                                                const AugmentSample& s,
                                                                                const AugmentShape& g) {
  const int64_t done = g.w / 8 * 8;
  const double py = augment_dy(row, g.h);
  const __m512d m0 = _mm512_set1_pd(s.m[0]), m3 = _mm512_set1_pd(s.m[3]);
  const __m512d a = _mm512_set1_pd(s.m[1] * py + s.m[2]), b = _mm512_set1_pd(s.m[4] * py + s.m[5]);
  const __m512d w = _mm512_set1_pd(static_cast<double>(g.w)), h = _mm512_set1_pd(static_cast<double>(g.h));
  const __m512d zero = _mm512_setzero_pd(), fill = _mm512_set1_pd(g.fill);
  const __m256i width = _mm256_set1_epi32(static_cast<int>(g.w));
  const __m512d lane = _mm512_set_pd(7, 6, 5, 4, 3, 2, 1, 0);
  for (int64_t col = 0; col < done; col += 8) {
    const __m512d px = _mm512_add_pd(_mm512_set1_pd(augment_dx(col, g.w)), lane);
    const __m512d fx = _mm512_roundscale_pd(_mm512_fmadd_pd(m0, px, a), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512d fy = _mm512_roundscale_pd(_mm512_fmadd_pd(m3, px, b), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    // Inside the image (NaN compares false): read there; every other lane reads pixel 0.
    const __mmask8 in = _mm512_cmp_pd_mask(fx, zero, _CMP_GE_OQ) & _mm512_cmp_pd_mask(fx, w, _CMP_LT_OQ) &
                        _mm512_cmp_pd_mask(fy, zero, _CMP_GE_OQ) & _mm512_cmp_pd_mask(fy, h, _CMP_LT_OQ);
    const __m256i c = _mm512_cvttpd_epi32(_mm512_mask_blend_pd(in, zero, fx));
    const __m256i r = _mm512_cvttpd_epi32(_mm512_mask_blend_pd(in, zero, fy));
    const __m512d v = gather8(plane, _mm256_add_epi32(_mm256_mullo_epi32(r, width), c));
    store8(out + col, _mm512_mask_blend_pd(in, fill, v));
  }
  return done;
}

namespace {
// The source points of 8 columns px of a row for nearest sampling, rounded half to even: m0 px + a
// with a = m1 dy + m2 (fused multiply-adds, as augment_nearest_row_avx512 and as GCC contracts
// augment_geometry's m0 px + (m1 py + m2) in the FMA clones of augment_one).
struct NearestMap {
  __m512d m0, m3, w, h;
};
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline __mmask8 nearest8(const NearestMap& k, __m512d px,
                                                                                   __m512d a, __m512d b,
                                                                                   __m256i* index) {
  const __m512d zero = _mm512_setzero_pd();
  const __m512d sx = _mm512_fmadd_pd(k.m0, px, a), sy = _mm512_fmadd_pd(k.m3, px, b);
  const __m512d fx = _mm512_roundscale_pd(sx, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512d fy = _mm512_roundscale_pd(sy, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // Inside the image (NaN compares false): the pixel index fy W + fx (exact in double); 0 outside.
  const __mmask8 in = _mm512_cmp_pd_mask(fx, zero, _CMP_GE_OQ) & _mm512_cmp_pd_mask(fx, k.w, _CMP_LT_OQ) &
                      _mm512_cmp_pd_mask(fy, zero, _CMP_GE_OQ) & _mm512_cmp_pd_mask(fy, k.h, _CMP_LT_OQ);
  *index = _mm512_cvttpd_epi32(_mm512_maskz_mov_pd(in, _mm512_fmadd_pd(fy, k.w, fx)));
  return in;
}

// 16 floats times `brightness` in double, rounded back to float.
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline __m512 times_in_double(__m512 v,
                                                                                        __m512d brightness) {
  const __m512d lo = _mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), brightness);
  const __m512d hi =
      _mm512_mul_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))), brightness);
  return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(lo))),
                                             _mm256_castps_pd(_mm512_cvtpd_ps(hi)), 1));
}

// 8 columns col8 .. col8 + 7 of a row (nearest8); `valid` gets those below W.
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline __mmask8 nearest_cols8(
    const NearestMap& k, int64_t col8, int64_t W, __m512d a, __m512d b, __m256i* index, __mmask8* valid) {
  const __m512d px = _mm512_add_pd(_mm512_set1_pd(augment_dx(col8, W)), _mm512_set_pd(7, 6, 5, 4, 3, 2, 1, 0));
  *valid = col8 + 8 <= W ? static_cast<__mmask8>(0xFF)
           : col8 < W    ? static_cast<__mmask8>((1u << (W - col8)) - 1u)
                         : static_cast<__mmask8>(0);
  return nearest8(k, px, a, b, index) & *valid;
}
}  // namespace

// Float32 images, nearest: every plane of one sample, 16 columns of a row at a time: their source
// points, the rounding (half to even), the inside test and the pixel index once for all C planes
// (augment_nearest_row_avx512 did them again per plane, 8 at a time, and augment_geometry the
// last W mod 8 columns one by one); each plane then takes one masked gather (fill in the lanes
// outside) and the brightness in double. Each column's arithmetic is augment_geometry's as the
// FMA clones of augment_one compile it (nearest8); brightness multiplies in double and rounds to
// float, as augment_one does, so the bits are the same.
__attribute__((target("avx512f,avx2,fma"))) void augment_nearest_f32_avx512(float* y, const float* x,
                                                                             const AugmentSample& s,
                                                                             const AugmentShape& g) {
  const int64_t C = g.c, H = g.h, W = g.w, hw = H * W;
  NearestMap k;
  k.m0 = _mm512_set1_pd(s.m[0]);
  k.m3 = _mm512_set1_pd(s.m[3]);
  k.w = _mm512_set1_pd(static_cast<double>(W));
  k.h = _mm512_set1_pd(static_cast<double>(H));
  const __m512 fill = _mm512_set1_ps(static_cast<float>(g.fill));
  const bool bright = s.brightness != 1.0;
  const __m512d brightness = _mm512_set1_pd(s.brightness);
  for (int64_t row = 0; row < H; ++row) {
    // a = m1 dy + m2, b = m4 dy + m5 fused, as GCC contracts them in augment_one's FMA clones.
    const __m512d vy = _mm512_set1_pd(augment_dy(row, H));
    const __m512d a = _mm512_fmadd_pd(_mm512_set1_pd(s.m[1]), vy, _mm512_set1_pd(s.m[2]));
    const __m512d b = _mm512_fmadd_pd(_mm512_set1_pd(s.m[4]), vy, _mm512_set1_pd(s.m[5]));
    for (int64_t col = 0; col < W; col += 16) {
      __m256i i_lo, i_hi;
      __mmask8 v_lo, v_hi;
      const __mmask8 in_lo = nearest_cols8(k, col, W, a, b, &i_lo, &v_lo);
      const __mmask8 in_hi = nearest_cols8(k, col + 8, W, a, b, &i_hi, &v_hi);
      const __mmask16 in = static_cast<__mmask16>(in_lo | (static_cast<unsigned>(in_hi) << 8));
      const __mmask16 store = static_cast<__mmask16>(v_lo | (static_cast<unsigned>(v_hi) << 8));
      const __m512i index = _mm512_inserti64x4(_mm512_castsi256_si512(i_lo), i_hi, 1);
      for (int64_t ch = 0; ch < C; ++ch) {
        const __m512 v = _mm512_mask_i32gather_ps(fill, in, index, x + ch * hw, 4);
        _mm512_mask_storeu_ps(y + ch * hw + row * W + col, store, bright ? times_in_double(v, brightness) : v);
      }
    }
  }
}

namespace {

// The float32 bilinear map's constants (augment_bilinear_f32_avx512).
struct BilinearF32 {
  __m512d m0, m1, m2, m3, m4, m5;  // the map, in double
  double cx, cy;                   // the image center (the map acts on offsets from it)
  __m512d wd, hd, wpd, wp1;        // W, H, Wp = W + 2B and B Wp + B (B: the padding's border)
  __m512 fillv, brightness;
  bool bright;
  int64_t C, Wp, P, hw;
  const float* pad;
  float* y;
};

// 8 source points (sx_all, sy_all) in double: whether a tap of the point is inside (`ok`), the
// weights in float and the padded index of tap (x0, y0), (y0 + B) Wp + (x0 + B) for a border of
// B pixels (exact in double). kTested: a point outside reads pixel (0, 0)'s taps, which the caller
// replaces with fill; otherwise every point's taps lie in the padded plane (the caller checked)
// and `ok` is not computed (returned all set).
template <bool kTested>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline __mmask8 geometry8(const BilinearF32& k,
                                                                                     __m512d sx_all, __m512d sy_all,
                                                                                     __m256* wx, __m256* wy,
                                                                                     __m256i* idx) {
  const __m512d minus_one = _mm512_set1_pd(-1.0);
  __mmask8 ok = 0xFF;
  __m512d sx = sx_all, sy = sy_all;
  if constexpr (kTested) {
    ok = _mm512_cmp_pd_mask(sx_all, minus_one, _CMP_GT_OQ) & _mm512_cmp_pd_mask(sx_all, k.wd, _CMP_LT_OQ) &
         _mm512_cmp_pd_mask(sy_all, minus_one, _CMP_GT_OQ) & _mm512_cmp_pd_mask(sy_all, k.hd, _CMP_LT_OQ);
    sx = _mm512_maskz_mov_pd(ok, sx_all);
    sy = _mm512_maskz_mov_pd(ok, sy_all);
  }
  const __m512d x0 = _mm512_roundscale_pd(sx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m512d y0 = _mm512_roundscale_pd(sy, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  *wx = _mm512_cvtpd_ps(_mm512_sub_pd(sx, x0));
  *wy = _mm512_cvtpd_ps(_mm512_sub_pd(sy, y0));
  *idx = _mm512_cvttpd_epi32(_mm512_fmadd_pd(y0, k.wpd, _mm512_add_pd(x0, k.wp1)));
  return ok;
}

// The values of pixels A = {0, 1, 4, 5, 8, 9, 12, 13} (a) and B = {2, 3, 6, 7, 10, 11, 14, 15}
// (b) of a group of 16, in pixel order: their pairs interleaved.
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline __m512 join8(__m256 a, __m256 b) {
  const __m512i order = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0);
  return _mm512_castpd_ps(_mm512_permutex2var_pd(_mm512_castpd256_pd512(_mm256_castps_pd(a)), order,
                                                 _mm512_castpd256_pd512(_mm256_castps_pd(b))));
}

// The same for 8-bit masks.
inline __mmask16 join8(__mmask8 a, __mmask8 b) {
  const unsigned x = a, y = b;
  const unsigned pa = (x & 0x3u) | ((x & 0xCu) << 2) | ((x & 0x30u) << 4) | ((x & 0xC0u) << 6);
  const unsigned pb = (y & 0x3u) | ((y & 0xCu) << 2) | ((y & 0x30u) << 4) | ((y & 0xC0u) << 6);
  return static_cast<__mmask16>(pa | (pb << 2));
}

// The 8 float pairs at base + i[l] (64-bit lanes), from scalar loads: the same values as a 64-bit
// gather at those indices.
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline __m512 gather_pairs(const float* base, const int* i) {
  const auto at = [&](int k) {
    long long v;
    __builtin_memcpy(&v, base + i[k], sizeof(v));
    return v;
  };
  const __m128i q0 = _mm_insert_epi64(_mm_cvtsi64_si128(at(0)), at(1), 1);
  const __m128i q1 = _mm_insert_epi64(_mm_cvtsi64_si128(at(2)), at(3), 1);
  const __m128i q2 = _mm_insert_epi64(_mm_cvtsi64_si128(at(4)), at(5), 1);
  const __m128i q3 = _mm_insert_epi64(_mm_cvtsi64_si128(at(6)), at(7), 1);
  const __m256i lo = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
  const __m256i hi = _mm256_inserti128_si256(_mm256_castsi128_si256(q2), q3, 1);
  return _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
}

// The 4 quads at q + i0, q + i1, q + i2, q + i3 (float offsets) as the 4 128-bit lanes of a vector.
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline __m512 quads(const float* q, int i0, int i1, int i2,
                                                                               int i3) {
  __m512 v = _mm512_castps128_ps512(_mm_loadu_ps(q + i0));
  v = _mm512_insertf32x4(v, _mm_loadu_ps(q + i1), 1);
  v = _mm512_insertf32x4(v, _mm_loadu_ps(q + i2), 2);
  return _mm512_insertf32x4(v, _mm_loadu_ps(q + i3), 3);
}

// The weights and tap indices of 16 output pixels, shared by their planes: geometry8 of the source
// points of pixels A (sx_lo, sy_lo) and B (sx_hi, sy_hi) of the group (join8 puts the weights and
// `ok` in pixel order; idx_lo, idx_hi stay A's and B's).
struct Weights16 {
  __m512 wx, wy, ux, uy;
  __mmask16 ok, wx0, wy0;
  __m256i idx_lo, idx_hi;
};
template <bool kTested>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline Weights16 weights16(const BilinearF32& k,
                                                                                      __m512d sx_lo, __m512d sx_hi,
                                                                                      __m512d sy_lo, __m512d sy_hi) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  Weights16 w;
  __m256 wx_lo, wx_hi, wy_lo, wy_hi;
  const __mmask8 ok_lo = geometry8<kTested>(k, sx_lo, sy_lo, &wx_lo, &wy_lo, &w.idx_lo);
  const __mmask8 ok_hi = geometry8<kTested>(k, sx_hi, sy_hi, &wx_hi, &wy_hi, &w.idx_hi);
  w.ok = join8(ok_lo, ok_hi);
  w.wx = join8(wx_lo, wx_hi);
  w.wy = join8(wy_lo, wy_hi);
  // Weights in [0, 1] after rounding; one exactly 0 in double is 0 in float (one that rounds to 0,
  // at |sx| under float's range, changes the blend by less than its rounding).
  w.wx0 = _mm512_cmp_ps_mask(w.wx, zero, _CMP_EQ_OQ);
  w.wy0 = _mm512_cmp_ps_mask(w.wy, zero, _CMP_EQ_OQ);
  w.ux = _mm512_sub_ps(one, w.wx);
  w.uy = _mm512_sub_ps(one, w.wy);
  return w;
}

// One plane's 16 pixels from their taps in pixel order: the bilinear blend (a tap of weight 0 left
// out), fill where a point is outside (kTested), brightness; stored at `out` under `store`.
template <bool kTested>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void blend_store16(const BilinearF32& k,
                                                                                     const Weights16& w, __m512 t00,
                                                                                     __m512 t01, __m512 t10,
                                                                                     __m512 t11, float* out,
                                                                                     __mmask16 store) {
  const __m512 top = _mm512_mask_blend_ps(w.wx0, _mm512_fmadd_ps(w.wx, t01, _mm512_mul_ps(w.ux, t00)), t00);
  const __m512 bottom = _mm512_mask_blend_ps(w.wx0, _mm512_fmadd_ps(w.wx, t11, _mm512_mul_ps(w.ux, t10)), t10);
  __m512 v = _mm512_mask_blend_ps(w.wy0, _mm512_fmadd_ps(w.wy, bottom, _mm512_mul_ps(w.uy, top)), top);
  if constexpr (kTested) v = _mm512_mask_blend_ps(w.ok, k.fillv, v);
  if (k.bright) v = _mm512_mul_ps(v, k.brightness);
  _mm512_mask_storeu_ps(out, store, v);
}

// The taps t00, t01, t10, t11 of 16 pixels in pixel order from one padded plane (C = 1 layout,
// group16): 64-bit loads of the tap pairs of rows y0 and y0 + 1 at the weights' indices.
struct Taps16 {
  __m512 t00, t01, t10, t11;
};
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline Taps16 plane_taps(const float* plane,
                                                                                   const BilinearF32& k,
                                                                                   const Weights16& w) {
  const float* top_row = plane;
  const float* bottom_row = top_row + k.Wp;
  int jl[8];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(jl), w.idx_lo);
  const __m512 g0 = gather_pairs(top_row, jl);
  const __m512 g1 = _mm512_castsi512_ps(_mm512_i32gather_epi64(w.idx_hi, top_row, 4));
  const __m512 g2 = gather_pairs(bottom_row, jl);
  const __m512 g3 = _mm512_castsi512_ps(_mm512_i32gather_epi64(w.idx_hi, bottom_row, 4));
  Taps16 t;
  t.t00 = _mm512_shuffle_ps(g0, g1, _MM_SHUFFLE(2, 0, 2, 0));
  t.t01 = _mm512_shuffle_ps(g0, g1, _MM_SHUFFLE(3, 1, 3, 1));
  t.t10 = _mm512_shuffle_ps(g2, g3, _MM_SHUFFLE(2, 0, 2, 0));
  t.t11 = _mm512_shuffle_ps(g2, g3, _MM_SHUFFLE(3, 1, 3, 1));
  return t;
}

// The four taps of 16 pixels from quad planes (augment_bilinear_f32_avx512): `a` and `b` hold the
// quads' float offsets (2 idx) of pixels A = {0, 1, 4, 5, 8, 9, 12, 13} and B = {2, 3, 6, 7, 10,
// 11, 14, 15} of the group (quad_offsets). Each pixel's four taps are one 128-bit load: vector m
// holds pixels m, 4 + m, 8 + m, 12 + m in its 128-bit lanes, so a 4 x 4 transpose within the
// lanes gives the taps t00, t10, t01, t11 in pixel order.
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void quad_offsets(const Weights16& w, int* a,
                                                                                   int* b) {
  _mm256_store_si256(reinterpret_cast<__m256i*>(a), _mm256_add_epi32(w.idx_lo, w.idx_lo));
  _mm256_store_si256(reinterpret_cast<__m256i*>(b), _mm256_add_epi32(w.idx_hi, w.idx_hi));
}
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline Taps16 quad_taps(const float* q, const int* a,
                                                                                  const int* b) {
  const __m512 v0 = quads(q, a[0], a[2], a[4], a[6]);  // pixels 0, 4, 8, 12
  const __m512 v1 = quads(q, a[1], a[3], a[5], a[7]);  // pixels 1, 5, 9, 13
  const __m512 v2 = quads(q, b[0], b[2], b[4], b[6]);  // pixels 2, 6, 10, 14
  const __m512 v3 = quads(q, b[1], b[3], b[5], b[7]);  // pixels 3, 7, 11, 15
  const __m512 u0 = _mm512_unpacklo_ps(v0, v1), u1 = _mm512_unpackhi_ps(v0, v1);
  const __m512 u2 = _mm512_unpacklo_ps(v2, v3), u3 = _mm512_unpackhi_ps(v2, v3);
  Taps16 t;
  t.t00 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u0), _mm512_castps_pd(u2)));
  t.t10 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u0), _mm512_castps_pd(u2)));
  t.t01 = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u1), _mm512_castps_pd(u3)));
  t.t11 = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u1), _mm512_castps_pd(u3)));
  return t;
}

// One group of 16 output pixels of every plane (one plane with kOne), stored at y + c hw + p
// under the mask `store`, from its weights: taps from quad planes (kQuads, several channels) or
// from plain padded planes (plane_taps: pixels A's tap pairs from scalar loads, pixels B's from
// gathers; the two kinds of load overlap: ~2-4% lower than four gathers on the Zen 4 machine this
// was tuned on, ~5% for two groups at a time; the quad planes were ~3-5% slower for one 28x28
// plane). A and B are the pixels whose pairs alternate by 128-bit lane, so that two in-lane
// shuffles of the pair vectors give the left and right taps in pixel order. !kTested: the fill
// is 0 and every tap lies in the padded plane, so a point whose taps are all outside blends zeros
// into exactly the fill (+0 or -0, as the fill), the value the inside test would give it
// (geometry8).
template <bool kTested, bool kQuads, bool kOne>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void group16(const BilinearF32& k,
                                                                               const Weights16& w, int64_t p,
                                                                               __mmask16 store) {
  const int64_t C = kOne ? 1 : k.C;
  if constexpr (kQuads) {
    alignas(32) int a[8], b[8];
    quad_offsets(w, a, b);
    for (int64_t c = 0; c < C; ++c) {
      const Taps16 t = quad_taps(k.pad + c * k.P, a, b);
      blend_store16<kTested>(k, w, t.t00, t.t01, t.t10, t.t11, k.y + c * k.hw + p, store);
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      const Taps16 t = plane_taps(k.pad + c * k.P, k, w);
      blend_store16<kTested>(k, w, t.t00, t.t01, t.t10, t.t11, k.y + c * k.hw + p, store);
    }
  }
}

// Two whole groups (pixels p0 .. p0 + 15 and p1 .. p1 + 15), as group16: for each plane, both
// groups' loads, then both blends, so that the two groups' chains (indices -> loads -> blend) lie
// side by side in the code rather than one after the other (the weights of both are computed
// before, by the caller).
template <bool kTested, bool kQuads, bool kOne>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void group16x2(const BilinearF32& k,
                                                                                 const Weights16& w0, int64_t p0,
                                                                                 const Weights16& w1, int64_t p1) {
  const int64_t C = kOne ? 1 : k.C;
  const __mmask16 all = 0xFFFF;
  if constexpr (kQuads) {
    alignas(32) int a0[8], b0[8], a1[8], b1[8];
    quad_offsets(w0, a0, b0);
    quad_offsets(w1, a1, b1);
    for (int64_t c = 0; c < C; ++c) {
      const float* q = k.pad + c * k.P;
      const Taps16 t0 = quad_taps(q, a0, b0);
      const Taps16 t1 = quad_taps(q, a1, b1);
      blend_store16<kTested>(k, w0, t0.t00, t0.t01, t0.t10, t0.t11, k.y + c * k.hw + p0, all);
      blend_store16<kTested>(k, w1, t1.t00, t1.t01, t1.t10, t1.t11, k.y + c * k.hw + p1, all);
    }
  } else {
    for (int64_t c = 0; c < C; ++c) {
      const float* plane = k.pad + c * k.P;
      const Taps16 t0 = plane_taps(plane, k, w0);
      const Taps16 t1 = plane_taps(plane, k, w1);
      blend_store16<kTested>(k, w0, t0.t00, t0.t01, t0.t10, t0.t11, k.y + c * k.hw + p0, all);
      blend_store16<kTested>(k, w1, t1.t00, t1.t01, t1.t10, t1.t11, k.y + c * k.hw + p1, all);
    }
  }
}

// The weights of pixels col .. col + 15 of a row whose source points start at (a, b) = (m1 dy +
// m2, m4 dy + m5): m0 dx + a, m3 dx + b (pixels A, then B; dx = x - cx).
template <bool kTested>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline Weights16 row_weights(const BilinearF32& k,
                                                                                       __m512d a, __m512d b,
                                                                                       int64_t col) {
  const __m512d lane_lo = _mm512_set_pd(13, 12, 9, 8, 5, 4, 1, 0);  // pixels A and B
  const __m512d lane_hi = _mm512_set_pd(15, 14, 11, 10, 7, 6, 3, 2);
  const __m512d c = _mm512_set1_pd(static_cast<double>(col) - k.cx);
  const __m512d px_lo = _mm512_add_pd(c, lane_lo), px_hi = _mm512_add_pd(c, lane_hi);
  return weights16<kTested>(k, _mm512_fmadd_pd(k.m0, px_lo, a), _mm512_fmadd_pd(k.m0, px_hi, a),
                            _mm512_fmadd_pd(k.m3, px_lo, b), _mm512_fmadd_pd(k.m3, px_hi, b));
}

// The weights of the flat path's 16 pixels p .. p + 15 (bilinear_planes): their columns and rows
// read from `cols` and `rows` (offsets from the center), the source points m0 dx + (m1 dy + m2),
// m3 dx + (m4 dy + m5).
template <bool kTested>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline Weights16 flat_weights(const BilinearF32& k,
                                                                                        const double* cols,
                                                                                        const double* rows,
                                                                                        int64_t p) {
  const __m512d px_lo = _mm512_loadu_pd(cols + p);
  const __m512d px_hi = _mm512_loadu_pd(cols + p + 8);
  const __m512d py_lo = _mm512_loadu_pd(rows + p);
  const __m512d py_hi = _mm512_loadu_pd(rows + p + 8);
  return weights16<kTested>(k, _mm512_fmadd_pd(k.m0, px_lo, _mm512_fmadd_pd(k.m1, py_lo, k.m2)),
                            _mm512_fmadd_pd(k.m0, px_hi, _mm512_fmadd_pd(k.m1, py_hi, k.m2)),
                            _mm512_fmadd_pd(k.m3, px_lo, _mm512_fmadd_pd(k.m4, py_lo, k.m5)),
                            _mm512_fmadd_pd(k.m3, px_hi, _mm512_fmadd_pd(k.m4, py_hi, k.m5)));
}

// The pixels of the flat path (W not a multiple of 16; bilinear_planes), two groups of 16 at a
// time (group16x2), a last group alone.
template <bool kTested, bool kQuads, bool kOne>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void flat_pairs(const BilinearF32& k, int64_t hw,
                                                                                  const double* coords) {
  const double* cols = coords;
  const double* rows = coords + hw + 16;
  int64_t p = 0;
  for (; p + 32 <= hw; p += 32) {
    const Weights16 w0 = flat_weights<kTested>(k, cols, rows, p);
    const Weights16 w1 = flat_weights<kTested>(k, cols, rows, p + 16);
    group16x2<kTested, kQuads, kOne>(k, w0, p, w1, p + 16);
  }
  for (; p < hw; p += 16) {
    const __mmask16 store =
        hw - p >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (hw - p)) - 1u);
    group16<kTested, kQuads, kOne>(k, flat_weights<kTested>(k, cols, rows, p), p, store);
  }
}

// The sample's pixels as bilinear_planes, by rows when W is a multiple of 16 (two groups of 16 of
// a row at a time, a last group alone), else flat_pairs (several planes: one plane's flat path is
// bilinear_planes' own, so kOne comes here only with W a multiple of 16).
template <bool kTested, bool kQuads, bool kOne>
__attribute__((target("avx512f,avx2,fma"), noinline)) void planes_in_pairs(const BilinearF32& k, int64_t H,
                                                                           int64_t W, const double* coords) {
  if constexpr (!kOne) {
    if (W % 16 != 0) {
      flat_pairs<kTested, kQuads, false>(k, H * W, coords);
      return;
    }
  }
  for (int64_t row = 0; row < H; ++row) {
    const __m512d py = _mm512_set1_pd(static_cast<double>(row) - k.cy);
    const __m512d a = _mm512_fmadd_pd(k.m1, py, k.m2), b = _mm512_fmadd_pd(k.m4, py, k.m5);
    int64_t col = 0;
    for (; col + 32 <= W; col += 32) {
      const Weights16 w0 = row_weights<kTested>(k, a, b, col);
      const Weights16 w1 = row_weights<kTested>(k, a, b, col + 16);
      group16x2<kTested, kQuads, kOne>(k, w0, row * W + col, w1, row * W + col + 16);
    }
    if (col < W)
      group16<kTested, kQuads, kOne>(k, row_weights<kTested>(k, a, b, col), row * W + col,
                                     static_cast<__mmask16>(0xFFFF));
  }
}

// The sample's pixels, kTested or not, over padded planes (quad planes with kQuads), two groups
// of 16 at a time: the weights and tap indices of both, then for each plane both groups' loads,
// then both blends (group16x2), so that two chains (indices -> loads -> blend) lie side by side
// in the code rather than one after the other. One plane (C = 1) takes kOne (no channel loop);
// its flat path (28x28) is inlined here, into augment_bilinear_f32_avx512, where the map's
// constants (k) are its own local values (stand-alone, as a call of planes_in_pairs with k read
// through the reference, the 28x28 batch's bilinear was ~3% slower; with k passed by value, the
// same as inlined within noise). One-thread CPU time of the bench's Compose on Zen 4,
// builds interleaved in one process, against one group at a time with the channel loop:
// 512x1x28x28 0.91-0.97 ms against 1.13-1.22 ms; 256x3x32x32 1.63 against 1.68-1.72 ms,
// 256x2x28x28 0.87 against 0.94, 512x1x32x32 1.27 against 1.47, 4x1x224x224 0.46 against 0.53
// (bits unchanged). Stand-alone timing of the bilinear over the 28x28 batch (us): one group at a
// time 678-691, 593 without the channel loop, two groups 477, three 480, four 516.
template <bool kTested, bool kQuads>
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void bilinear_planes(const BilinearF32& k,
                                                                                       int64_t H, int64_t W,
                                                                                       const double* coords) {
  if (!kQuads && k.C == 1 && W % 16 != 0)
    flat_pairs<kTested, false, true>(k, H * W, coords);
  else if (!kQuads && k.C == 1)
    planes_in_pairs<kTested, false, true>(k, H, W, coords);
  else
    planes_in_pairs<kTested, kQuads, false>(k, H, W, coords);
}

}  // namespace

namespace {

// n floats of value v at p, with vector stores.
__attribute__((target("avx512f,avx2,fma"), always_inline)) inline void fill_run(float* p, int64_t n, __m512 v) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(p + i, v);
  if (i < n) _mm512_mask_storeu_ps(p + i, static_cast<__mmask16>((1u << (n - i)) - 1u), v);
}

}  // namespace

// Float32 images, bilinear: every plane of one sample, 16 output pixels at a time. The source
// points, their floors, the inside tests and the tap indices are computed in double (as
// augment_geometry: a float resolves only ~1.5e-5 pixel at coordinates in the hundreds), once for
// all C planes; the weights are then rounded to float and the taps blended in float. The planes
// are first written into `pad`, bordered by B pixels of fill, so that a tap outside the image
// reads fill:
// - one plane (C = 1): the image copied into a padded plane of (H + 2B) x (W + 2B), where the two
//   taps of a row (t00, t01) are adjacent: one 64-bit load or gather lane reads both (plane_taps);
// - several planes (C > 1) whose quad planes fit the thread's kept planes (quad_planes, from
//   augment_cpu.cpp's bilinear_f32_quads; larger images take one padded plane per channel as for
//   C = 1): quad planes of (H + 2B) x (W + 2B) x 2 floats: at padded (r, x) the
//   pair (pixel (r, x), pixel (r + 1, x)), so the four taps of a pixel are the 4 floats at its
//   top-left tap: one 128-bit load (quad_taps; 3x32x32 Compose: ~4-6% lower one-thread CPU
//   time than 64-bit loads of the tap pairs). Only the quad rows that hold image pixels (B - 1 ..
//   B + H - 1) are rewritten per sample.
// The weights' rules are augment_geometry's: a tap of weight exactly 0 does not contribute, so
// integer coordinates copy bit for bit; a point whose four taps are all outside is fill. When
// the fill is 0 and the four corners' source points (an affine map's extremes over the grid) show
// that every tap lies within the border B = border_max, the per-point inside tests are skipped
// (group16: the same bits); otherwise B = 1 and every point is tested. The border's fill stays
// in `pad` from one sample to the next while B does (`layout`: the current B, 0 for none).
// Brightness (when not 1) multiplies in float. The source point of pixel (x, y) is
// m0 dx + (m1 dy + m2) (and m3 dx + (m4 dy + m5)), (dx, dy) = (x - cx, y - cy), in double with
// the multiply-adds fused:
// - W a multiple of 16: row by row, 16 columns at a time (two groups at a time, planes_in_pairs);
// - otherwise 16 pixels at a time in C order over the whole plane (no lanes wasted at the ends of
//   rows), each pixel's column and row read from `coords` (H W + 16 columns, then H W + 16 rows,
//   as doubles, each group of 16 as its pixels A then B; those past the image are the last
//   pixel's, so that the lanes of a last partial group, computed but not stored, stay within the
//   corners' bounds and the padded plane), two groups at a time.
// `pad` holds (quad_planes ? 2 : 1) C (H + 2 border_max) (W + 2 border_max) floats.
__attribute__((target("avx512f,avx2,fma"))) void augment_bilinear_f32_avx512(float* y, const float* x,
                                                                              const AugmentSample& s,
                                                                              const AugmentShape& g, float* pad,
                                                                              const double* coords,
                                                                              int64_t border_max, bool quad_planes,
                                                                              int64_t* layout) {
  const int64_t C = g.c, H = g.h, W = g.w, hw = H * W;
  const float fill = static_cast<float>(g.fill);
  // The border the taps need: tap columns floor(sx), floor(sx) + 1 lie in [-B, W - 1 + B] when
  // -B <= sx < W - 1 + B (rows alike); a quarter pixel of margin covers the corners' rounding.
  double need = 0.0;
  for (int corner = 0; corner < 4; ++corner) {
    const double px = augment_dx(corner & 1 ? W - 1 : 0, W);
    const double py = augment_dy(corner & 2 ? H - 1 : 0, H);
    const double sx = s.m[0] * px + (s.m[1] * py + s.m[2]), sy = s.m[3] * px + (s.m[4] * py + s.m[5]);
    const double e[4] = {-sx, sx - static_cast<double>(W - 2), -sy, sy - static_cast<double>(H - 2)};
    for (double v : e) need = v > need || v != v ? v : need;  // NaN stays
  }
  need += 0.25;
  const bool tested = !(g.fill == 0.0 && need <= static_cast<double>(border_max));
  const int64_t B = tested ? 1 : border_max;
  const int64_t Wp = W + 2 * B, P = (H + 2 * B) * Wp;
  const int64_t QP = quad_planes ? 2 * P : P;  // floats of a plane
  const __m512 fillv = _mm512_set1_ps(fill);
  if (*layout != B) {  // the planes' borders (kept for the next samples of the same border)
    fill_run(pad, C * QP, fillv);
    *layout = B;
  }
  // Plain planes: rows copied with inline vector moves (not a memcpy call per row of W floats).
  for (int64_t c = 0; c < (quad_planes ? 0 : C); ++c) {
    for (int64_t r = 0; r < H; ++r) {
      float* row = pad + c * P + (r + B) * Wp + B;
      const float* in = x + c * hw + r * W;
      int64_t i = 0;
      for (; i + 16 <= W; i += 16) _mm512_storeu_ps(row + i, _mm512_loadu_ps(in + i));
      if (i < W) {
        const __mmask16 tail = static_cast<__mmask16>((1u << (W - i)) - 1u);
        _mm512_mask_storeu_ps(row + i, tail, _mm512_maskz_loadu_ps(tail, in + i));
      }
    }
  }
  // Quad rows B - 1 .. B + H - 1 (those holding image pixels), columns B .. B + W - 1: the pairs
  // (padded rows r and r + 1) of image rows r - B and r + 1 - B (fill above and below the image),
  // interleaved by two-source permutes, 16 columns at a time.
  const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  for (int64_t c = 0; c < (quad_planes ? C : 0); ++c) {
    const float* src = x + c * hw;
    for (int64_t r = B - 1; r < B + H; ++r) {
      float* quad = pad + c * QP + 2 * (r * Wp + B);
      const float* top = r >= B ? src + (r - B) * W : nullptr;
      const float* bottom = r + 1 < B + H ? src + (r + 1 - B) * W : nullptr;
      int64_t i = 0;
      for (; i + 16 <= W; i += 16) {  // plain stores (masked ones are slower on Zen 4)
        const __m512 t = top ? _mm512_loadu_ps(top + i) : fillv;
        const __m512 u = bottom ? _mm512_loadu_ps(bottom + i) : fillv;
        _mm512_storeu_ps(quad + 2 * i, _mm512_permutex2var_ps(t, first, u));
        _mm512_storeu_ps(quad + 2 * i + 16, _mm512_permutex2var_ps(t, second, u));
      }
      if (i < W) {
        const int64_t n = W - i;
        const __mmask16 in = static_cast<__mmask16>((1u << n) - 1u);
        const __m512 t = top ? _mm512_maskz_loadu_ps(in, top + i) : fillv;
        const __m512 u = bottom ? _mm512_maskz_loadu_ps(in, bottom + i) : fillv;
        // Pairs of columns i .. i + 7, then i + 8 .. i + 15 (the first 2 n floats stored).
        const __mmask16 lo = n >= 8 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (2 * n)) - 1u);
        _mm512_mask_storeu_ps(quad + 2 * i, lo, _mm512_permutex2var_ps(t, first, u));
        if (n > 8)
          _mm512_mask_storeu_ps(quad + 2 * i + 16, static_cast<__mmask16>((1u << (2 * (n - 8))) - 1u),
                                _mm512_permutex2var_ps(t, second, u));
      }
    }
  }
  BilinearF32 k;
  k.m0 = _mm512_set1_pd(s.m[0]);
  k.m1 = _mm512_set1_pd(s.m[1]);
  k.m2 = _mm512_set1_pd(s.m[2]);
  k.m3 = _mm512_set1_pd(s.m[3]);
  k.m4 = _mm512_set1_pd(s.m[4]);
  k.m5 = _mm512_set1_pd(s.m[5]);
  k.cx = 0.5 * static_cast<double>(W - 1);  // static_cast<double>(col) - cx is augment_dx(col, W)
  k.cy = 0.5 * static_cast<double>(H - 1);
  k.wd = _mm512_set1_pd(static_cast<double>(W));
  k.hd = _mm512_set1_pd(static_cast<double>(H));
  k.wpd = _mm512_set1_pd(static_cast<double>(Wp));
  k.wp1 = _mm512_set1_pd(static_cast<double>(B * Wp + B));
  k.fillv = fillv;
  k.bright = s.brightness != 1.0;
  k.brightness = _mm512_set1_ps(static_cast<float>(s.brightness));
  k.C = C;
  k.Wp = Wp;
  k.P = QP;
  k.hw = hw;
  k.pad = pad;
  k.y = y;
  if (quad_planes && tested)
    bilinear_planes<true, true>(k, H, W, coords);
  else if (quad_planes)
    bilinear_planes<false, true>(k, H, W, coords);
  else if (tested)
    bilinear_planes<true, false>(k, H, W, coords);
  else
    bilinear_planes<false, false>(k, H, W, coords);
}

template int64_t augment_nearest_row_avx512<double>(double*, const double*, int64_t, const AugmentSample&,
                                                    const AugmentShape&);
template int64_t augment_bilinear_row_avx512<float>(float*, const float*, int64_t, const AugmentSample&,
                                                    const AugmentShape&);
template int64_t augment_bilinear_row_avx512<double>(double*, const double*, int64_t, const AugmentSample&,
                                                     const AugmentShape&);

}  // namespace fdnn
#endif
