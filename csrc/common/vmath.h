// Elementwise math written so that loops over it vectorize (std::exp does not without
// -ffast-math): exp by range reduction to r in [-ln2/2, ln2/2] and a polynomial, scaled by
// 2^n through the exponent bits. Accurate to about 1 ulp; results that would be subnormal
// are flushed to 0. NaN propagates; -inf gives 0 and +inf gives +inf.
#pragma once

#include <cstdint>
#include <cstring>

#include "common/macros.h"

namespace fdnn {

namespace detail {
template <typename To, typename From> FDNN_HD inline To bit_cast(From v) {
  To r;
  memcpy(&r, &v, sizeof(r));
  return r;
}
}  // namespace detail

FDNN_HD inline float vexp(float x) {
  const float lo = -87.33654f, hi = 88.72283f;  // ln(FLT_MIN), ln(FLT_MAX)
  float xc = x < lo ? lo : x;                   // NaN compares false and stays NaN
  xc = xc > hi ? hi : xc;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (floorf would not vectorize).
  const float shifter = 12582912.0f;
  const float n = (xc * 1.44269504088896341f + shifter) - shifter;
  // r = x - n ln2 in two steps (Cody-Waite) so that r keeps full precision.
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  // Cephes expf polynomial.
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n for n in [-126, 128]: build 2^(n/2) twice so that n = 128 does not overflow the bits.
  const int32_t ni = static_cast<int32_t>(n);
  const int32_t n1 = ni >> 1, n2 = ni - n1;
  // The exponent bits are shifted as unsigned: for a NaN x, ni is INT_MIN and n1 + 127 is
  // negative (a signed left shift would be undefined; the result is NaN either way, from p).
  const float s1 = detail::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(n1 + 127) << 23));
  const float s2 = detail::bit_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(n2 + 127) << 23));
  float result = p * s1 * s2;
  result = x < lo ? 0.0f : result;
  result = x > hi ? __builtin_inff() : result;
  return result;
}

FDNN_HD inline double vexp(double x) {
  const double lo = -708.3964185322641, hi = 709.782712893384;  // ln(DBL_MIN), ln(DBL_MAX)
  double xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52
  const double n = (xc * 1.4426950408889634074 + shifter) - shifter;
  double r = xc - n * 6.93145751953125e-1;
  r = r - n * 1.42860682030941723212e-6;
  // Taylor series to r^13 / 13!: truncation error < 2e-17 for |r| <= ln2/2.
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r + 1.0;
  // 2^n as 2^n1 2^n2, n1 = n / 2 rounded to nearest, and each power's exponent field read off
  // the shifter sum's low bits (the integer m sits there as m + 1.5 * 2^52): no conversion of
  // double to int64 and no 64-bit arithmetic shift, which AVX2 lacks (its clone of a loop over
  // vexp had stayed scalar). The powers multiply p exactly, so the split does not matter.
  const double n1 = (n * 0.5 + shifter) - shifter, n2 = n - n1;
  const int64_t shifter_bits = detail::bit_cast<int64_t>(shifter);
  const double s1 = detail::bit_cast<double>(static_cast<int64_t>(
      static_cast<uint64_t>(detail::bit_cast<int64_t>(n1 + shifter) - shifter_bits + 1023) << 52));
  const double s2 = detail::bit_cast<double>(static_cast<int64_t>(
      static_cast<uint64_t>(detail::bit_cast<int64_t>(n2 + shifter) - shifter_bits + 1023) << 52));
  double result = p * s1 * s2;
  result = x < lo ? 0.0 : result;
  result = x > hi ? __builtin_inf() : result;
  return result;
}

}  // namespace fdnn
