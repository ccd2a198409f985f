// See cpu/philox_avx512.h.
#include "cpu/philox_avx512.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "common/philox.h"

namespace fdnn {

__attribute__((target("avx512f"))) void philox_rounds_avx512(uint32_t* c, uint32_t k0, uint32_t k1) {
  __m512i c0 = _mm512_loadu_si512(c), c1 = _mm512_loadu_si512(c + 16);
  __m512i c2 = _mm512_loadu_si512(c + 32), c3 = _mm512_loadu_si512(c + 48);
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  for (int round = 0; round < 10; ++round) {
    // 32x32 -> 64-bit products of the even lanes, and of the odd lanes shifted down.
    const __m512i e0 = _mm512_mul_epu32(c0, m0), o0 = _mm512_mul_epu32(_mm512_srli_epi64(c0, 32), m0);
    const __m512i e1 = _mm512_mul_epu32(c2, m1), o1 = _mm512_mul_epu32(_mm512_srli_epi64(c2, 32), m1);
    const __m512i hi0 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e0, 32), o0);
    const __m512i lo0 = _mm512_mask_blend_epi32(0xAAAA, e0, _mm512_slli_epi64(o0, 32));
    const __m512i hi1 = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(e1, 32), o1);
    const __m512i lo1 = _mm512_mask_blend_epi32(0xAAAA, e1, _mm512_slli_epi64(o1, 32));
    c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
    c1 = lo1;
    c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  _mm512_storeu_si512(c, c0);
  _mm512_storeu_si512(c + 16, c1);
  _mm512_storeu_si512(c + 32, c2);
  _mm512_storeu_si512(c + 48, c3);
}

}  // namespace fdnn
#endif
