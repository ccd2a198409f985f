// Box-Muller on two Philox words, the standard normals of ops.gaussian_noise and of ops.augment's
// noise: u1 = ((a >> 8) + 1) / 2^24 in (0, 1], u2 = (b >> 8) / 2^24 in [0, 1);
// z0 = sqrt(-2 log u1) cos(2 pi u2), z1 = sqrt(-2 log u1) sin(2 pi u2), in double for float64
// outputs and in float for float32 outputs (the overload on the result type: half the lanes' work
// and shorter polynomials, within a few float ulps of the exact normal, which the float32 result
// cannot resolve better anyway).
// The logarithm and the sine and cosine are branch-free polynomials (not the C library's), so a
// loop over pairs vectorizes on the CPU (AVX-512 and AVX2) and the GPU runs the same arithmetic;
// over all 2^24 inputs the logarithm is within 4e-16 (relative) and sine and cosine within 7e-16
// (absolute) of the exact values (the NumPy reference uses numpy.log/cos/sin).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/macros.h"

namespace fdnn {

// Forced inlining, so that a CPU loop over these functions vectorizes.
#if defined(__CUDACC__)
#define FDNN_FORCE_INLINE __forceinline__
#elif defined(__GNUC__)
#define FDNN_FORCE_INLINE inline __attribute__((always_inline))
#else
#define FDNN_FORCE_INLINE inline
#endif

FDNN_HD FDNN_FORCE_INLINE double log_fraction_2_24(uint32_t k) {
  // log(k / 2^24) for k in [1, 2^24]: k = m 2^e with m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s),
  // s = (m - 1) / (m + 1), |s| <= 0.1716, summed to s^19.
  // The conversions avoid 64-bit integer <-> double instructions, which AVX2 lacks: k < 2^25 goes
  // through int32, and the exponent field (< 2^11) becomes a double by the 2^52 magic number.
  const double d = static_cast<double>(static_cast<int32_t>(k));
  uint64_t bits;
  memcpy(&bits, &d, sizeof(bits));
  // The mantissa in [1, 2), halved when above sqrt(2) (0x3FF6A09E667F3BCD), on the bits: no selects.
  const uint64_t mant = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
  const uint64_t high = static_cast<uint64_t>(mant > 0x3FF6A09E667F3BCDull);
  const uint64_t m_bits = mant - (high << 52);
  double m;
  memcpy(&m, &m_bits, sizeof(m));
  const uint64_t field = (bits >> 52) + high;  // the biased exponent of k (+1 when halved)
  const uint64_t magic_bits = field | 0x4330000000000000ull;
  double magic;
  memcpy(&magic, &magic_bits, sizeof(magic));
  const double f = m - 1.0;
  const double s = f / (2.0 + f), s2 = s * s;
  const double series =
      1.0 + s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 + s2 * (1.0 / 11 + s2 * (1.0 / 13 +
      s2 * (1.0 / 15 + s2 * (1.0 / 17 + s2 * (1.0 / 19)))))))));
  const double n = (magic - 4503599627370496.0) - (1023.0 + 24.0);  // exponent - 24, exact
  return n * 6.93147180369123816490e-01 + (n * 1.90821492927058770002e-10 + 2.0 * s * series);
}

// sin and cos of 2 pi k / 2^24 for k in [0, 2^24): the octant o = k >> 21 and the exact fraction
// within it give angle = Q pi/2 + b with |b| <= pi/4, then Taylor polynomials of b.
FDNN_HD FDNN_FORCE_INLINE void sincos_fraction_2_24(uint32_t k, double& sine, double& cosine) {
  // Integers of the lane width (64 bits, as the doubles), so that the selects vectorize.
  const int64_t o = static_cast<int64_t>(k >> 21), rest = static_cast<int64_t>(k & 0x1FFFFFu);
  const int64_t odd = o & 1;
  const double quarter_pi = 0.78539816339744830962;
  // rest - odd 2^21 lies in (-2^21, 2^21): converted through int32 (AVX2 has no int64 -> double).
  const double b = static_cast<double>(static_cast<int32_t>(rest - (odd << 21))) * (quarter_pi / 2097152.0);
  const int64_t q = ((o + 1) >> 1) & 3;
  const double b2 = b * b;
  const double sb = b * (1.0 + b2 * (-1.0 / 6 + b2 * (1.0 / 120 + b2 * (-1.0 / 5040 + b2 * (1.0 / 362880 +
                    b2 * (-1.0 / 39916800 + b2 * (1.0 / 6227020800.0 + b2 * (-1.0 / 1307674368000.0))))))));
  const double cb = 1.0 + b2 * (-0.5 + b2 * (1.0 / 24 + b2 * (-1.0 / 720 + b2 * (1.0 / 40320 +
                    b2 * (-1.0 / 3628800 + b2 * (1.0 / 479001600 + b2 * (-1.0 / 87178291200.0 +
                    b2 * (1.0 / 20922789888000.0))))))));
  // Rotate by Q quarter turns: sin(Q pi/2 + b) is sb, cb, -sb, -cb and cos is cb, -sb, -cb, sb.
  const bool swap = (q & 1) != 0;
  const double s_abs = swap ? cb : sb, c_abs = swap ? sb : cb;
  sine = (q & 2) != 0 ? -s_abs : s_abs;
  cosine = ((q + 1) & 2) != 0 ? -c_abs : c_abs;
}

FDNN_HD FDNN_FORCE_INLINE void box_muller(uint32_t a, uint32_t b, double& z0, double& z1) {
  const double radius = sqrt(-2.0 * log_fraction_2_24((a >> 8) + 1u));
  double sine, cosine;
  sincos_fraction_2_24(b >> 8, sine, cosine);
  z0 = radius * cosine;
  z1 = radius * sine;
}

// The float versions (for float32 outputs): the same reductions, float polynomials. Over all 2^24
// inputs: the logarithm within 2.1e-7 (relative), sine and cosine within 9.3e-8 (absolute) of the
// exact values; the normals within 6.5e-7 (absolute) of the double version's.
FDNN_HD FDNN_FORCE_INLINE float log_fraction_2_24_f(uint32_t k) {
  const float d = static_cast<float>(static_cast<int32_t>(k));  // exact: k <= 2^24
  uint32_t bits;
  memcpy(&bits, &d, sizeof(bits));
  const uint32_t mant = (bits & 0x007FFFFFu) | 0x3F800000u;
  const uint32_t high = static_cast<uint32_t>(mant > 0x3FB504F3u);  // above sqrt(2): halved
  const uint32_t m_bits = mant - (high << 23);
  float m;
  memcpy(&m, &m_bits, sizeof(m));
  const int32_t n = static_cast<int32_t>((bits >> 23) + high) - (127 + 24);  // exponent - 24
  const float f = m - 1.0f;
  const float s = f / (2.0f + f), s2 = s * s;
  const float series = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
  const float nf = static_cast<float>(n);
  return nf * 0.693145751953125f + (nf * 1.428606765330187045e-06f + 2.0f * s * series);
}

FDNN_HD FDNN_FORCE_INLINE void sincos_fraction_2_24_f(uint32_t k, float& sine, float& cosine) {
  const int32_t o = static_cast<int32_t>(k >> 21), rest = static_cast<int32_t>(k & 0x1FFFFFu);
  const int32_t odd = o & 1;
  const float b = static_cast<float>(rest - (odd << 21)) * (0.78539816339744830962f / 2097152.0f);
  const int32_t q = ((o + 1) >> 1) & 3;
  const float b2 = b * b;
  const float sb = b * (1.0f + b2 * (-1.0f / 6 + b2 * (1.0f / 120 + b2 * (-1.0f / 5040 + b2 * (1.0f / 362880)))));
  const float cb = 1.0f + b2 * (-0.5f + b2 * (1.0f / 24 + b2 * (-1.0f / 720 + b2 * (1.0f / 40320 +
                   b2 * (-1.0f / 3628800)))));
  const bool swap = (q & 1) != 0;
  const float s_abs = swap ? cb : sb, c_abs = swap ? sb : cb;
  sine = (q & 2) != 0 ? -s_abs : s_abs;
  cosine = ((q + 1) & 2) != 0 ? -c_abs : c_abs;
}

FDNN_HD FDNN_FORCE_INLINE void box_muller(uint32_t a, uint32_t b, float& z0, float& z1) {
  const float radius = sqrtf(-2.0f * log_fraction_2_24_f((a >> 8) + 1u));
  float sine, cosine;
  sincos_fraction_2_24_f(b >> 8, sine, cosine);
  z0 = radius * cosine;
  z1 = radius * sine;
}

}  // namespace fdnn
