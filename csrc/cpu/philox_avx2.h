// Philox4x32-10 rounds on 16 counters with AVX2 intrinsics (x86-64 CPUs without AVX-512, or with
// its paths turned off). GCC lowers the generic 16-lane code of dropout_cpu.cpp (and the loop over
// lanes of augment_cpu.cpp's noise) in its x86-64-v3 clone to emulated 64-bit lane products and
// spills: dropout took 10-20 ns per element on one core of a Zen 3 EPYC (2026-12-07), slower than
// NumPy's own dropout. Here the products are vpmuludq on the even and the odd 32-bit lanes,
// recombined by blends, with two registers of 8 blocks interleaved. A file of its own, as
// cpu/philox_avx512.h (target-specific intrinsics next to the generic vector code).
#pragma once

#include <cstdint>

#if defined(__x86_64__)
namespace fdnn {

// Callers check avx2_paths_enabled() (common/avx512_paths.h) first.

// c[0, 64) holds counter words c0, c1, c2, c3 of 16 blocks (16 lanes each); replaced by the
// blocks' output words, in the same layout, after the 10 rounds with key (k0, k1).
void philox_rounds_avx2(uint32_t* c, uint32_t k0, uint32_t k1);

// w[0, 64) = the words of Philox blocks j0 .. j0 + 15 of the stream with key (k0, k1) and offset
// words (o0, o1), in element order (w[4 l + t] = word t of block j0 + l; the counter of block j
// is (j, j >> 32, o0, o1), the low word's carry into the high one included, although dropout's
// j0 is a multiple of 16 and never carries within a call).
void philox_words_avx2(uint32_t* w, uint32_t k0, uint32_t k1, uint32_t o0, uint32_t o1, uint64_t j0);

}  // namespace fdnn
#endif
