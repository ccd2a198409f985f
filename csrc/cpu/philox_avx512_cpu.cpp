// See cpu/philox_avx512.h.
#include "cpu/philox_avx512.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "common/avx512_paths.h"
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

namespace {

// Box-Muller in float on 16 word pairs (box_muller.h's float version, lane by lane).
__attribute__((target("avx512f"), always_inline)) inline void box_muller16(__m512i a, __m512i b, __m512& z0,
                                                                             __m512& z1) {
  // Radius: log of k / 2^24, k = (a >> 8) + 1 in [1, 2^24].
  const __m512i k = _mm512_add_epi32(_mm512_srli_epi32(a, 8), _mm512_set1_epi32(1));
  const __m512i bits = _mm512_castps_si512(_mm512_cvtepi32_ps(k));
  // mant = (bits & 0x007FFFFF) | 0x3F800000 in one ternary-logic operation ((A & B) | C: 0xEA).
  const __m512i mant =
      _mm512_ternarylogic_epi32(bits, _mm512_set1_epi32(0x007FFFFF), _mm512_set1_epi32(0x3F800000), 0xEA);
  const __mmask16 high = _mm512_cmpgt_epi32_mask(mant, _mm512_set1_epi32(0x3FB504F3));
  const __m512 m = _mm512_castsi512_ps(_mm512_mask_sub_epi32(mant, high, mant, _mm512_set1_epi32(1 << 23)));
  const __m512i field = _mm512_mask_add_epi32(_mm512_srli_epi32(bits, 23), high, _mm512_srli_epi32(bits, 23),
                                              _mm512_set1_epi32(1));
  const __m512 nf = _mm512_cvtepi32_ps(_mm512_sub_epi32(field, _mm512_set1_epi32(127 + 24)));
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 f = _mm512_sub_ps(m, one);
  const __m512 s = _mm512_div_ps(f, _mm512_add_ps(_mm512_set1_ps(2.0f), f)), s2 = _mm512_mul_ps(s, s);
  __m512 series = _mm512_fmadd_ps(s2, _mm512_set1_ps(1.0f / 9), _mm512_set1_ps(1.0f / 7));
  series = _mm512_fmadd_ps(s2, series, _mm512_set1_ps(1.0f / 5));
  series = _mm512_fmadd_ps(s2, series, _mm512_set1_ps(1.0f / 3));
  series = _mm512_fmadd_ps(s2, series, one);
  const __m512 tail = _mm512_fmadd_ps(nf, _mm512_set1_ps(1.428606765330187045e-06f),
                                      _mm512_mul_ps(_mm512_add_ps(s, s), series));
  const __m512 log = _mm512_fmadd_ps(nf, _mm512_set1_ps(0.693145751953125f), tail);
  const __m512 radius = _mm512_sqrt_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0f), log));
  // Angle: k = b >> 8 in [0, 2^24); octant o = k >> 21, b = (rest - odd 2^21) pi/4 / 2^21.
  const __m512i kb = _mm512_srli_epi32(b, 8);
  const __m512i o = _mm512_srli_epi32(kb, 21), rest = _mm512_and_si512(kb, _mm512_set1_epi32(0x1FFFFF));
  const __m512i odd = _mm512_and_si512(o, _mm512_set1_epi32(1));
  const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(rest, _mm512_slli_epi32(odd, 21))),
                                 _mm512_set1_ps(0.78539816339744830962f / 2097152.0f));
  const __m512i q = _mm512_and_si512(_mm512_srli_epi32(_mm512_add_epi32(o, _mm512_set1_epi32(1)), 1),
                                     _mm512_set1_epi32(3));
  const __m512 t2 = _mm512_mul_ps(t, t);
  __m512 sp = _mm512_fmadd_ps(t2, _mm512_set1_ps(1.0f / 362880), _mm512_set1_ps(-1.0f / 5040));
  sp = _mm512_fmadd_ps(t2, sp, _mm512_set1_ps(1.0f / 120));
  sp = _mm512_fmadd_ps(t2, sp, _mm512_set1_ps(-1.0f / 6));
  sp = _mm512_fmadd_ps(t2, sp, one);
  const __m512 sb = _mm512_mul_ps(t, sp);
  __m512 cb = _mm512_fmadd_ps(t2, _mm512_set1_ps(-1.0f / 3628800), _mm512_set1_ps(1.0f / 40320));
  cb = _mm512_fmadd_ps(t2, cb, _mm512_set1_ps(-1.0f / 720));
  cb = _mm512_fmadd_ps(t2, cb, _mm512_set1_ps(1.0f / 24));
  cb = _mm512_fmadd_ps(t2, cb, _mm512_set1_ps(-0.5f));
  cb = _mm512_fmadd_ps(t2, cb, one);
  // Q quarter turns: swap on odd Q, then the signs (sin negative for Q & 2, cos for (Q + 1) & 2).
  const __mmask16 swap = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
  const __m512 s_abs = _mm512_mask_blend_ps(swap, sb, cb), c_abs = _mm512_mask_blend_ps(swap, cb, sb);
  const __m512i sign_s = _mm512_slli_epi32(_mm512_and_si512(q, _mm512_set1_epi32(2)), 30);
  const __m512i sign_c = _mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(q, _mm512_set1_epi32(1)),
                                                            _mm512_set1_epi32(2)), 30);
  const __m512 sine = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(s_abs), sign_s));
  const __m512 cosine = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(c_abs), sign_c));
  z0 = _mm512_mul_ps(radius, cosine);
  z1 = _mm512_mul_ps(radius, sine);
}

// R Philox rounds on S registers of 8 blocks, block j0 + 8 r + l's word t in the low half of
// 64-bit lane l of c_t[r] (the high halves are ignored: vpmuludq reads the low halves only), so a
// round is two products, two shifts and two three-way xors per register; the S independent
// registers are interleaved round by round (the rounds' latency chains overlap). k0, k1: the
// first round's key; advanced past them.
template <int S, int R>
__attribute__((target("avx512f"), always_inline)) inline void middle_rounds(__m512i c0[S], __m512i c1[S],
                                                                              __m512i c2[S], __m512i c3[S],
                                                                              uint32_t& k0, uint32_t& k1) {
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  for (int round = 0; round < R; ++round) {
    const __m512i key0 = _mm512_set1_epi64(k0), key1 = _mm512_set1_epi64(k1);
    for (int r = 0; r < S; ++r) {
      const __m512i p0 = _mm512_mul_epu32(c0[r], m0), p1 = _mm512_mul_epu32(c2[r], m1);
      // c0 = hi(p1) ^ c1 ^ k0, c2 = hi(p0) ^ c3 ^ k1 (0x96: three-way xor).
      c0[r] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[r], key0, 0x96);
      c1[r] = p1;
      c2[r] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), c3[r], key1, 0x96);
      c3[r] = p0;
    }
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// The key and offset words of a stream, and the values its Philox blocks share while the
// counter's high word is `hi` (head()): with c1 = hi and (c2, c3) = (o0, o1) the same for every
// block, round 0's product of c2, its c0 and c1 outputs, round 1's product of c0 and its c3 output
// are the same for all blocks, so each register of 8 blocks skips 2 products, 2 shifts and a few
// xors (dropout's keep_bits and the normals' normal_lanes).
struct PhiloxHead {
  uint32_t k0, k1, o0, o1;
  uint32_t hi;
  __m512i a, b, c, e;  // head(): the constants of rounds 0-2 (see keep_bits)

  __attribute__((target("avx512f"), always_inline)) PhiloxHead(uint32_t key0, uint32_t key1, uint32_t off0,
                                                                uint32_t off1)
      : k0(key0), k1(key1), o0(off0), o1(off1) {
    head(0);
  }
  __attribute__((target("avx512f"), always_inline)) void head(uint32_t high) {
    hi = high;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * o0;  // round 0: c2 * M1
    const uint32_t u0 = static_cast<uint32_t>(p1 >> 32) ^ hi ^ k0, u1 = static_cast<uint32_t>(p1);
    const uint64_t q0 = static_cast<uint64_t>(kPhiloxM0) * u0;  // round 1: c0 * M0
    a = _mm512_set1_epi64(o1 ^ k1);                                                // round 0: c2 = hi(p0) ^ a
    b = _mm512_set1_epi64(u1 ^ (k0 + kPhiloxW0));                                  // round 1: c0 = hi(p1) ^ b
    c = _mm512_set1_epi64(static_cast<uint32_t>(q0 >> 32) ^ (k1 + kPhiloxW1));    // round 1: c2 = c3 ^ c
    e = _mm512_set1_epi64(static_cast<uint32_t>(q0) ^ (k1 + 2 * kPhiloxW1));      // round 2: c2 = hi(p0) ^ e
  }
};

// Rounds 0-8 of Philox4x32-10 on blocks j0 .. j0 + 8 S - 1 of the stream `h`, in middle_rounds'
// layout (S registers of 8 blocks on 64-bit lanes): rounds 0-2 with the head's shared values
// while no block of the step carries into the counter's high word (all of them in practice),
// in full otherwise; k0, k1: the key of round 9.
template <int S>
__attribute__((target("avx512f"), always_inline)) inline void nine_rounds(__m512i c0[S], __m512i c1[S], __m512i c2[S],
                                                                            __m512i c3[S], uint32_t& k0, uint32_t& k1,
                                                                            PhiloxHead& h, uint64_t j0) {
  const uint32_t hi = static_cast<uint32_t>(j0 >> 32), lo = static_cast<uint32_t>(j0);
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  k0 = h.k0;
  k1 = h.k1;
  if (lo <= 0xFFFFFFFFu - 8 * S + 1) {
    // The step's blocks share the high word (none carries into it).
    if (hi != h.hi) h.head(hi);
    const __m512i jlo = _mm512_set1_epi32(static_cast<int>(lo));
    for (int r = 0; r < S; ++r) {
      // Round 0: c0 = u0, c1 = u1 (PhiloxHead::head), c2 = hi(p0) ^ o1 ^ k1, c3 = p0.
      const __m512i j = _mm512_add_epi32(jlo, _mm512_set_epi64(8 * r + 7, 8 * r + 6, 8 * r + 5, 8 * r + 4,
                                                               8 * r + 3, 8 * r + 2, 8 * r + 1, 8 * r));
      const __m512i p0 = _mm512_mul_epu32(j, m0);
      const __m512i d2 = _mm512_xor_si512(_mm512_srli_epi64(p0, 32), h.a);
      // Round 1: p0 = u0 M0 is shared: c2 = c3 ^ hi(u0 M0) ^ k1', c3 = lo(u0 M0) (in e).
      const __m512i p1 = _mm512_mul_epu32(d2, m1);
      c0[r] = _mm512_xor_si512(_mm512_srli_epi64(p1, 32), h.b);
      c1[r] = p1;
      c2[r] = _mm512_xor_si512(p0, h.c);
    }
    // Round 2: c3 is shared (folded into e).
    const __m512i key0 = _mm512_set1_epi64(k0 + 2 * kPhiloxW0);
    for (int r = 0; r < S; ++r) {
      const __m512i p0 = _mm512_mul_epu32(c0[r], m0), p1 = _mm512_mul_epu32(c2[r], m1);
      c0[r] = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), c1[r], key0, 0x96);
      c1[r] = p1;
      c2[r] = _mm512_xor_si512(_mm512_srli_epi64(p0, 32), h.e);
      c3[r] = p0;
    }
    k0 += 3 * kPhiloxW0;
    k1 += 3 * kPhiloxW1;
    middle_rounds<S, 6>(c0, c1, c2, c3, k0, k1);
  } else {
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    for (int r = 0; r < S; ++r) {
      // Block counter j0 + 8 r + l as a 64-bit lane (its high word is the counter's second word).
      c0[r] = _mm512_add_epi64(_mm512_set1_epi64(static_cast<long long>(j0 + 8 * static_cast<uint64_t>(r))), lane);
      c1[r] = _mm512_srli_epi64(c0[r], 32);
      c2[r] = _mm512_set1_epi64(h.o0);
      c3[r] = _mm512_set1_epi64(h.o1);
    }
    middle_rounds<S, 9>(c0, c1, c2, c3, k0, k1);
  }
}

// The 64 S float normals of blocks j0 .. j0 + 8 S - 1 of the stream `h` in element order (z[q]:
// elements 16 q .. 16 q + 15). Philox runs on S registers of 8 blocks (middle_rounds' layout):
// rounds 0-2 with the head's shared values while no block of the step carries into the counter's
// high word (all of them in practice), rounds 0-8 in full otherwise; the last round writes, per
// 64-bit lane l, words (0, 2) of block l as its 32-bit halves in A and words (1, 3) in B (one
// shuffle and three-way xor for A, one masked shuffle for B), so that one Box-Muller call pairs
// the words (0, 1) in the even lanes and (2, 3) in the odd lanes: its outputs hold the normals of
// elements 4 l + (0, 2) and 4 l + (1, 3), put in element order by one two-source permute per 16.
template <int S>
__attribute__((target("avx512f"), always_inline)) inline void normal_lanes(__m512 z[2 * S], PhiloxHead& h,
                                                                             uint64_t j0) {
  __m512i c0[S], c1[S], c2[S], c3[S];
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  uint32_t k0, k1;
  nine_rounds<S>(c0, c1, c2, c3, k0, k1, h, j0);
  // Round 9: A = (hi(p1) ^ c1 ^ k0, hi(p0) ^ c3 ^ k1) = words (0, 2), B = (lo(p1), lo(p0)) =
  // words (1, 3) as the 32-bit halves of each 64-bit lane (shuffles 0xF5: elements 1, 1, 3, 3,
  // 0xA0: 0, 0, 2, 2 of each 128-bit lane, into the masked lanes).
  const __m512i key = _mm512_set1_epi64(static_cast<long long>(k0 | static_cast<uint64_t>(k1) << 32));
  const __m512i order0 = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i order1 = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  for (int r = 0; r < S; ++r) {
    const __m512i p0 = _mm512_mul_epu32(c0[r], m0), p1 = _mm512_mul_epu32(c2[r], m1);
    const __m512i hi01 = _mm512_mask_shuffle_epi32(p0, 0x5555, p1, static_cast<_MM_PERM_ENUM>(0xF5));
    const __m512i c13 = _mm512_mask_shuffle_epi32(c1[r], 0xAAAA, c3[r], static_cast<_MM_PERM_ENUM>(0xA0));
    const __m512i A = _mm512_ternarylogic_epi32(hi01, c13, key, 0x96);
    const __m512i B = _mm512_mask_shuffle_epi32(p1, 0xAAAA, p0, static_cast<_MM_PERM_ENUM>(0xA0));
    __m512 z0, z1;
    box_muller16(A, B, z0, z1);
    // Element 4 l + t: z0[2 l], z1[2 l], z0[2 l + 1], z1[2 l + 1] for t = 0 .. 3.
    z[2 * r] = _mm512_permutex2var_ps(z0, order0, z1);
    z[2 * r + 1] = _mm512_permutex2var_ps(z0, order1, z1);
  }
}

// y = x scale + (mean + std z) in float (without the scale when it is 1, without the mean when it
// is 0), on the 16 lanes of `keep`: std z + mean one fused multiply-add (std z alone without the
// mean), x scale rounded, then their sum rounded. GCC lowers these intrinsics to generic vector
// operations and contracted a product and the sum into one multiply-add in some inlined copies
// and not in others (the last step of a call, but not the steps of 128), so an element's bits
// depended on the array's length; the empty asm statements keep each product's own rounding.
__attribute__((target("avx512f"), always_inline)) inline void add16(float* y, const float* x, __m512 z, __m512 scale,
                                                                      bool with_scale, __m512 mean, __m512 std,
                                                                      bool with_mean, __mmask16 keep) {
  __m512 t = with_mean ? _mm512_fmadd_ps(std, z, mean) : _mm512_mul_ps(std, z);
  __asm__("" : "+v"(t));
  __m512 v = _mm512_maskz_loadu_ps(keep, x);
  if (with_scale) {
    v = _mm512_mul_ps(v, scale);
    __asm__("" : "+v"(v));
  }
  _mm512_mask_storeu_ps(y, keep, _mm512_add_ps(v, t));
}

// The normals of a last step of `left` <= 64 elements (blocks j0 ..): 4 registers above 32
// elements, else 2; returns how many.
__attribute__((target("avx512f"), always_inline)) inline int last_step_normals(__m512 z[4], PhiloxHead& h,
                                                                                uint64_t j0, int64_t left) {
  if (left > 32) {
    normal_lanes<2>(z, h, j0);
    return 4;
  }
  normal_lanes<1>(z, h, j0);
  return 2;
}

}  // namespace

__attribute__((target("avx512f"))) void add_normals_f32_avx512(float* y, const float* x, int64_t n, uint32_t k0,
                                                                 uint32_t k1, uint32_t o0, uint32_t o1, uint64_t j0,
                                                                 double scale, double mean, double std) {
  const __m512 scale_v = _mm512_set1_ps(static_cast<float>(scale));
  const __m512 mean_v = _mm512_set1_ps(static_cast<float>(mean)), std_v = _mm512_set1_ps(static_cast<float>(std));
  const bool with_scale = scale != 1.0, with_mean = mean != 0.0;
  // 128 elements a step (enough independent work to overlap the chains), the last <= 64 in one
  // (of 8 blocks when <= 32 remain: 784-element images end with 16). One core of the Zen 4 here,
  // 2026-12-07: 784 elements 0.65 us, 3072 elements 2.46 us (0.70 and 2.50 before normal_lanes'
  // shared rounds and packed last round); Philox is about 60% of it, Box-Muller about a third.
  PhiloxHead head(k0, k1, o0, o1);
  int64_t i0 = 0;
  for (; n - i0 > 64; i0 += 128, j0 += 32) {
    __m512 z[8];
    normal_lanes<4>(z, head, j0);
    for (int r = 0; r < 8; ++r) {
      const int64_t left = n - i0 - 16 * r;
      if (left <= 0) break;
      const __mmask16 keep = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
      add16(y + i0 + 16 * r, x + i0 + 16 * r, z[r], scale_v, with_scale, mean_v, std_v, with_mean, keep);
    }
  }
  if (i0 < n) {
    __m512 z[4];
    const int regs = last_step_normals(z, head, j0, n - i0);
    for (int r = 0; r < regs; ++r) {
      const int64_t left = n - i0 - 16 * r;
      if (left <= 0) break;
      const __mmask16 keep = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
      add16(y + i0 + 16 * r, x + i0 + 16 * r, z[r], scale_v, with_scale, mean_v, std_v, with_mean, keep);
    }
  }
}

// y[i] = z of element 4 j0 + i, the standard normals of add_normals_f32_avx512 stored as they are
// (no addition: a normal -0 stays -0), the same steps of 128 elements and a last step of <= 64.
__attribute__((target("avx512f"))) void normals_f32_avx512(float* y, int64_t n, uint32_t k0, uint32_t k1, uint32_t o0,
                                                             uint32_t o1, uint64_t j0) {
  PhiloxHead head(k0, k1, o0, o1);
  const auto store = [](float* out, int64_t left, __m512 z) __attribute__((target("avx512f"))) {
    const __mmask16 keep = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
    _mm512_mask_storeu_ps(out, keep, z);
  };
  int64_t i0 = 0;
  for (; n - i0 > 64; i0 += 128, j0 += 32) {
    __m512 z[8];
    normal_lanes<4>(z, head, j0);
    for (int r = 0; r < 8 && n - i0 - 16 * r > 0; ++r) store(y + i0 + 16 * r, n - i0 - 16 * r, z[r]);
  }
  if (i0 < n) {
    __m512 z[4];
    const int regs = last_step_normals(z, head, j0, n - i0);
    for (int r = 0; r < regs && n - i0 - 16 * r > 0; ++r) store(y + i0 + 16 * r, n - i0 - 16 * r, z[r]);
  }
}

// Dropout: the keep bits of 128 elements (32 Philox blocks) a step, as 32-bit masks in general
// registers, applied with write masks. An in-cache float32 pass runs at ~0.35 ns per element and
// core on the Zen 4 here (0.37 before rounds 0-2 used KeepStream's shared values; 2026-12-07):
// about 2 AVX-512 operations per cycle, 6 per 8 blocks and round. Measured and not kept: 3, 5, 6
// or 8 registers a step (4 is as fast or faster), vpshufd or vprorq instead of the shifts of the
// rounds (vprorq 15% slower), software prefetch of x (no change).
namespace {

constexpr int kKeepRegs = 4;                     // middle_rounds registers a step: 32 blocks
constexpr int64_t kKeepStep = 32 * kKeepRegs;    // elements a step

// The key, offset and cut of a dropout call, and the values its Philox blocks share (PhiloxHead).
struct KeepStream : PhiloxHead {
  __m512i cut;

  __attribute__((target("avx512f"), always_inline)) KeepStream(uint32_t key0, uint32_t key1, uint32_t off0,
                                                                uint32_t off1, uint32_t threshold)
      : PhiloxHead(key0, key1, off0, off1), cut(_mm512_set1_epi32(static_cast<int>(threshold << 8))) {}
};

// bits[r] bit 4 l + t: whether element 4 (j0 + 8 r + l) + t is kept, i.e. word t of block
// j0 + 8 r + l is >= cut = threshold << 8 (dropout_keep for a threshold < 2^24). Philox runs as
// nine_rounds (words in the low halves of 64-bit lanes, rounds 0-2 with KeepStream's
// shared values), then the last round keeps lo(p) in the high halves (a rotate, and a xor on the low
// halves only), so that words 0 and 1 (2 and 3) of block l are the 32-bit lanes 2 l and 2 l + 1 of
// one register: one compare each, and pdep spreads the two 16-bit masks to bits 4 l + (0, 1) and
// 4 l + (2, 3).
__attribute__((target("avx512f,bmi2"), always_inline)) inline void keep_bits(uint32_t bits[kKeepRegs],
                                                                              KeepStream& ks, uint64_t j0) {
  __m512i c0[kKeepRegs], c1[kKeepRegs], c2[kKeepRegs], c3[kKeepRegs];
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  uint32_t k0, k1;
  nine_rounds<kKeepRegs>(c0, c1, c2, c3, k0, k1, ks, j0);
  // Round 9: w01 = (c0, c1) and w23 = (c2, c3) as the 32-bit lane pairs of each block.
  const __m512i key0 = _mm512_set1_epi64(k0), key1 = _mm512_set1_epi64(k1);
  for (int r = 0; r < kKeepRegs; ++r) {
    const __m512i p0 = _mm512_mul_epu32(c0[r], m0), p1 = _mm512_mul_epu32(c2[r], m1);
    const __m512i w01 = _mm512_mask_ternarylogic_epi32(_mm512_ror_epi64(p1, 32), 0x5555, c1[r], key0, 0x96);
    const __m512i w23 = _mm512_mask_ternarylogic_epi32(_mm512_ror_epi64(p0, 32), 0x5555, c3[r], key1, 0x96);
    const uint32_t even = _mm512_cmpge_epu32_mask(w01, ks.cut), odd = _mm512_cmpge_epu32_mask(w23, ks.cut);
    bits[r] = _pdep_u32(even, 0x33333333u) | _pdep_u32(odd, 0xCCCCCCCCu);
  }
}

// a(v) * (keep ? scale : 0) lane by lane, a the ReLU with kRelu.
template <bool kRelu>
__attribute__((target("avx512f"), always_inline)) inline __m512 dropout_lanes(__m512 v, __mmask16 keep, __m512 scale) {
  // relu(v) = v < 0 ? 0 : v = max(0, v) (NaN and -0 pass).
  if (kRelu) v = _mm512_max_ps(_mm512_setzero_ps(), v);
  return _mm512_mul_ps(v, _mm512_maskz_mov_ps(keep, scale));
}

// y = dropout_lanes(x) for the 16 floats at x.
template <bool kRelu>
__attribute__((target("avx512f"), always_inline)) inline __m512 dropout16(const float* x, __mmask16 keep,
                                                                            __m512 scale) {
  return dropout_lanes<kRelu>(_mm512_loadu_ps(x), keep, scale);
}

// The line of elements e .. e + 15 of which lanes first .. end - 1 lie in [0, n): those elements
// are loaded and stored from element e + first on (no address outside x or y is formed, e may be
// negative), moved into their lanes by vexpandps and back by vcompressps.
template <bool kRelu>
__attribute__((target("avx512f"), always_inline)) inline void partial_line(float* y, const float* x, int64_t e,
                                                                             int first, int end, __mmask16 keep,
                                                                             __m512 scale) {
  if (end <= first) return;
  const __mmask16 lanes = static_cast<__mmask16>(((1u << end) - 1u) & ~((1u << first) - 1u));
  const __mmask16 low = static_cast<__mmask16>((1u << (end - first)) - 1u);
  const __m512 v = _mm512_maskz_expand_ps(lanes, _mm512_maskz_loadu_ps(low, x + (e + first)));
  _mm512_mask_storeu_ps(y + (e + first), low, _mm512_maskz_compress_ps(lanes, dropout_lanes<kRelu>(v, keep, scale)));
}

// The keep bits of the 16 elements 16 r - a .. 16 r - a + 15 of a step (r in [0, 8), a in
// [0, 16)): bits 16 r - a .. of the step's 128 (lo: bits 0-63, hi: 64-127), the first a of line 0
// being the top a bits of the step before (prev, that step's hi).
__attribute__((always_inline)) inline __mmask16 line_keep(uint64_t prev, uint64_t lo, uint64_t hi, int r, int a) {
  uint64_t w;
  if (r == 0) {
    w = (prev >> 1 >> (63 - a)) | (lo << a);
  } else if (r < 4) {
    w = lo >> (16 * r - a);
  } else if (r == 4) {
    w = (lo >> 1 >> (63 - a)) | (hi << a);
  } else {
    w = hi >> (16 * r - 64 - a);
  }
  return static_cast<__mmask16>(w);
}

// dropout_f32_avx512 for one activation and store kind (kStream: streaming stores). The
// registers follow y's 64-byte lines: with y a floats past a line boundary, register r of the
// step at i0 holds elements i0 + 16 r - a .. i0 + 16 r - a + 15 (line_keep shifts the step's keep
// bits to match), so each full line is one aligned store, and x is read at the same offsets
// (aligned loads when x sits as far past a boundary as y: NumPy's large arrays all sit 16 bytes
// past one). The first line (always, even when y is aligned) and a tail line that is not whole
// inside [0, n) are partial_line's masked loads and stores; whole lines of the tail get ordinary
// full stores. Against loads and stores at the elements'
// own offsets and a vpermt2ps per streamed register to realign them, on arrays 16 bytes past a
// line: 4% less time in cache and 3% at 16M elements (fwd+bwd), one thread, 2026-12-07.
template <bool kRelu, bool kStream>
__attribute__((target("avx512f,bmi2"))) void dropout_f32_steps(float* y, const float* x, int64_t n, uint32_t k0,
                                                                uint32_t k1, uint32_t o0, uint32_t o1, uint64_t j0,
                                                                uint32_t threshold, __m512 scale) {
  KeepStream ks(k0, k1, o0, o1, threshold);
  const int a = static_cast<int>(reinterpret_cast<uintptr_t>(y) % 64 / sizeof(float));
  uint64_t prev = 0;
  int64_t i0 = 0;
  for (; i0 + kKeepStep <= n; i0 += kKeepStep, j0 += 8 * kKeepRegs) {
    uint32_t bits[kKeepRegs];
    keep_bits(bits, ks, j0);
    const uint64_t lo = bits[0] | static_cast<uint64_t>(bits[1]) << 32;
    const uint64_t hi = bits[2] | static_cast<uint64_t>(bits[3]) << 32;
    for (int r = 0; r < 2 * kKeepRegs; ++r) {
      const __mmask16 keep = line_keep(prev, lo, hi, r, a);
      const int64_t e = i0 + 16 * r - a;
      if (r == 0 && i0 == 0) {
        partial_line<kRelu>(y, x, e, a, 16, keep, scale);  // elements 0 .. 15 - a in lanes a .. 15
        continue;
      }
      const __m512 v = dropout16<kRelu>(x + e, keep, scale);
      if (kStream) {
        _mm512_stream_ps(y + e, v);
      } else {
        _mm512_storeu_ps(y + e, v);
      }
    }
    prev = hi;
  }
  // The lines from i0 - a on (the last a elements of the last step, and the rest: up to 9
  // lines, in up to two steps), each masked to the elements in [0, n).
  for (; i0 - a < n; i0 += kKeepStep, j0 += 8 * kKeepRegs) {
    uint32_t bits[kKeepRegs];
    keep_bits(bits, ks, j0);
    const uint64_t lo = bits[0] | static_cast<uint64_t>(bits[1]) << 32;
    const uint64_t hi = bits[2] | static_cast<uint64_t>(bits[3]) << 32;
    for (int r = 0; r < 2 * kKeepRegs && i0 + 16 * r - a < n; ++r) {
      const int64_t e = i0 + 16 * r - a;
      const int first = e < 0 ? static_cast<int>(-e) : 0, end = static_cast<int>(std::min<int64_t>(16, n - e));
      const __mmask16 keep = line_keep(prev, lo, hi, r, a);
      if (first > 0 || end < 16) {
        partial_line<kRelu>(y, x, e, first, end, keep, scale);
      } else if (kStream) {
        _mm512_stream_ps(y + e, dropout16<kRelu>(x + e, keep, scale));
      } else {
        _mm512_storeu_ps(y + e, dropout16<kRelu>(x + e, keep, scale));
      }
    }
    prev = hi;
  }
  if (kStream) _mm_sfence();
}

}  // namespace

bool dropout_avx512_supported() {
  static const bool supported = [] {
    __builtin_cpu_init();
    return avx512_paths_enabled() && __builtin_cpu_supports("bmi2") != 0;
  }();
  return supported;
}

__attribute__((target("avx512f,bmi2"))) void dropout_f32_avx512(float* y, const float* x, int64_t n, uint32_t k0,
                                                                 uint32_t k1, uint32_t o0, uint32_t o1, uint64_t j0,
                                                                 uint32_t threshold, float keep_scale, bool relu,
                                                                 bool stream) {
  // threshold 2^24 keeps nothing: y = a(x) * 0, as keeping everything at scale 0.
  if (threshold >= (1u << 24)) {
    threshold = 0;
    keep_scale = 0.0f;
  }
  const __m512 scale = _mm512_set1_ps(keep_scale);
  stream = stream && reinterpret_cast<uintptr_t>(y) % sizeof(float) == 0;
  if (relu) {
    (stream ? dropout_f32_steps<true, true> : dropout_f32_steps<true, false>)(y, x, n, k0, k1, o0, o1, j0, threshold,
                                                                              scale);
  } else {
    (stream ? dropout_f32_steps<false, true> : dropout_f32_steps<false, false>)(y, x, n, k0, k1, o0, o1, j0,
                                                                                threshold, scale);
  }
}

__attribute__((target("avx512f,bmi2"))) void dropout_f64_avx512(double* y, const double* x, int64_t n, uint32_t k0,
                                                                 uint32_t k1, uint32_t o0, uint32_t o1, uint64_t j0,
                                                                 uint32_t threshold, double keep_scale, bool relu) {
  if (threshold >= (1u << 24)) {
    threshold = 0;
    keep_scale = 0.0;
  }
  KeepStream ks(k0, k1, o0, o1, threshold);
  const __m512d scale = _mm512_set1_pd(keep_scale);
  for (int64_t i0 = 0; i0 < n; i0 += kKeepStep, j0 += 8 * kKeepRegs) {
    uint32_t bits[kKeepRegs];
    keep_bits(bits, ks, j0);
    for (int r = 0; r < 4 * kKeepRegs && i0 + 8 * r < n; ++r) {
      const __mmask8 keep = static_cast<__mmask8>(bits[r / 4] >> (8 * (r % 4)));
      const int64_t rest = n - i0 - 8 * r;
      const __mmask8 lanes = rest >= 8 ? static_cast<__mmask8>(0xFF) : static_cast<__mmask8>((1u << rest) - 1u);
      __m512d v = _mm512_maskz_loadu_pd(lanes, x + i0 + 8 * r);
      if (relu) v = _mm512_max_pd(_mm512_setzero_pd(), v);
      _mm512_mask_storeu_pd(y + i0 + 8 * r, lanes, _mm512_mul_pd(v, _mm512_maskz_mov_pd(keep, scale)));
    }
  }
}

__attribute__((target("avx512f,bmi2"))) void dropout_mask_avx512(uint8_t* mask, int64_t n, uint32_t k0, uint32_t k1,
                                                                  uint32_t o0, uint32_t o1, uint64_t j0,
                                                                  uint32_t threshold) {
  if (threshold >= (1u << 24)) {
    std::memset(mask, 0, static_cast<size_t>(n));
    return;
  }
  KeepStream ks(k0, k1, o0, o1, threshold);
  for (int64_t i0 = 0; i0 < n; i0 += kKeepStep, j0 += 8 * kKeepRegs) {
    uint32_t bits[kKeepRegs];
    keep_bits(bits, ks, j0);
    for (int r = 0; r < 4 * kKeepRegs && i0 + 8 * r < n; ++r) {
      // Eight keep bits as eight bytes 0 or 1.
      const uint64_t bytes = _pdep_u64(bits[r / 4] >> (8 * (r % 4)), 0x0101010101010101ull);
      const int64_t count = std::min<int64_t>(8, n - i0 - 8 * r);
      std::memcpy(mask + i0 + 8 * r, &bytes, static_cast<size_t>(count));
    }
  }
}

}  // namespace fdnn
#endif
