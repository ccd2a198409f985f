// See cpu/philox_avx2.h.
#include "cpu/philox_avx2.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "common/philox.h"

namespace fdnn {

namespace {

// Ten rounds on two registers of 8 blocks each (c_t[0]: blocks 0-7, c_t[1]: blocks 8-15), the
// two chains interleaved. Each 32x32 -> 64-bit product: vpmuludq of the even lanes and of the odd
// lanes shifted down; the high halves blended into the even lanes' places, the low ones likewise.
__attribute__((target("avx2"), always_inline)) inline void rounds(__m256i c0[2], __m256i c1[2], __m256i c2[2],
                                                                   __m256i c3[2], uint32_t k0, uint32_t k1) {
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  for (int round = 0; round < 10; ++round) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0)), key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int r = 0; r < 2; ++r) {
      const __m256i e0 = _mm256_mul_epu32(c0[r], m0), o0 = _mm256_mul_epu32(_mm256_srli_epi64(c0[r], 32), m0);
      const __m256i e1 = _mm256_mul_epu32(c2[r], m1), o1 = _mm256_mul_epu32(_mm256_srli_epi64(c2[r], 32), m1);
      const __m256i hi0 = _mm256_blend_epi32(_mm256_srli_epi64(e0, 32), o0, 0xAA);
      const __m256i lo0 = _mm256_blend_epi32(e0, _mm256_slli_epi64(o0, 32), 0xAA);
      const __m256i hi1 = _mm256_blend_epi32(_mm256_srli_epi64(e1, 32), o1, 0xAA);
      const __m256i lo1 = _mm256_blend_epi32(e1, _mm256_slli_epi64(o1, 32), 0xAA);
      c0[r] = _mm256_xor_si256(_mm256_xor_si256(hi1, c1[r]), key0);
      c1[r] = lo1;
      c2[r] = _mm256_xor_si256(_mm256_xor_si256(hi0, c3[r]), key1);
      c3[r] = lo0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

}  // namespace

__attribute__((target("avx2"))) void philox_rounds_avx2(uint32_t* c, uint32_t k0, uint32_t k1) {
  __m256i c0[2], c1[2], c2[2], c3[2];
  for (int r = 0; r < 2; ++r) {
    c0[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 8 * r));
    c1[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 16 + 8 * r));
    c2[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 32 + 8 * r));
    c3[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c + 48 + 8 * r));
  }
  rounds(c0, c1, c2, c3, k0, k1);
  for (int r = 0; r < 2; ++r) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + 8 * r), c0[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + 16 + 8 * r), c1[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + 32 + 8 * r), c2[r]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(c + 48 + 8 * r), c3[r]);
  }
}

__attribute__((target("avx2"))) void philox_words_avx2(uint32_t* w, uint32_t k0, uint32_t k1, uint32_t o0,
                                                        uint32_t o1, uint64_t j0) {
  __m256i c0[2], c1[2], c2[2], c3[2];
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int r = 0; r < 2; ++r) {
    // Block j0 + 8 r + l: its 64-bit counter's low word may carry into the high one.
    const uint64_t first = j0 + 8 * static_cast<uint64_t>(r);
    const __m256i first_lo = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(first)));
    const __m256i lo = _mm256_add_epi32(first_lo, lane);
    // Lanes whose low word wrapped past 2^32 - 1 (lo < first's low word, unsigned) carry one.
    const __m256i bias = _mm256_set1_epi32(static_cast<int>(0x80000000u));
    const __m256i wrapped = _mm256_cmpgt_epi32(_mm256_xor_si256(first_lo, bias), _mm256_xor_si256(lo, bias));
    c0[r] = lo;
    c1[r] = _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(first >> 32))), wrapped);
    c2[r] = _mm256_set1_epi32(static_cast<int>(o0));
    c3[r] = _mm256_set1_epi32(static_cast<int>(o1));
  }
  rounds(c0, c1, c2, c3, k0, k1);
  // Element order: block l's four words are elements 4 l .. 4 l + 3. Per register of 8 blocks, a
  // 4 x 8 transpose: 32-bit then 64-bit unpacks give blocks (0, 4), (1, 5), (2, 6), (3, 7) in the
  // two 128-bit halves; the half swaps put blocks 0, 1 | 2, 3 | 4, 5 | 6, 7 together.
  for (int r = 0; r < 2; ++r) {
    const __m256i t0 = _mm256_unpacklo_epi32(c0[r], c1[r]), t1 = _mm256_unpackhi_epi32(c0[r], c1[r]);
    const __m256i t2 = _mm256_unpacklo_epi32(c2[r], c3[r]), t3 = _mm256_unpackhi_epi32(c2[r], c3[r]);
    const __m256i b04 = _mm256_unpacklo_epi64(t0, t2), b15 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i b26 = _mm256_unpacklo_epi64(t1, t3), b37 = _mm256_unpackhi_epi64(t1, t3);
    __m256i* out = reinterpret_cast<__m256i*>(w + 32 * r);
    _mm256_storeu_si256(out, _mm256_permute2x128_si256(b04, b15, 0x20));
    _mm256_storeu_si256(out + 1, _mm256_permute2x128_si256(b26, b37, 0x20));
    _mm256_storeu_si256(out + 2, _mm256_permute2x128_si256(b04, b15, 0x31));
    _mm256_storeu_si256(out + 3, _mm256_permute2x128_si256(b26, b37, 0x31));
  }
}

}  // namespace fdnn
#endif
