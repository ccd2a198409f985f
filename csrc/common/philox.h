// Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
// SC'11), the counter-based generator behind dropout and noise. One definition for the CPU
// and CUDA builds. The random words of element i of an array are a pure function of
// (seed, offset, i): see docs/ops.md for the mapping.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace fdnn {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // Weyl key increments
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

// Ten rounds on the counter (c0, c1, c2, c3) with key (k0, k1); the result replaces the counter.
// Written on scalars so that a loop over lanes vectorizes (vpmuludq for the 32x32->64 products).
FDNN_HD inline void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3, uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// The key and counter of the 4-word block j of the stream (seed, offset).
struct PhiloxStream {
  uint32_t k0, k1, o0, o1;
  FDNN_HD PhiloxStream(uint64_t seed, uint64_t offset)
      : k0(static_cast<uint32_t>(seed)), k1(static_cast<uint32_t>(seed >> 32)),
        o0(static_cast<uint32_t>(offset)), o1(static_cast<uint32_t>(offset >> 32)) {}

  // Words 0..3 of block j, i.e. the random words of elements 4j .. 4j+3.
  FDNN_HD void block(uint64_t j, uint32_t& r0, uint32_t& r1, uint32_t& r2, uint32_t& r3) const {
    r0 = static_cast<uint32_t>(j);
    r1 = static_cast<uint32_t>(j >> 32);
    r2 = o0;
    r3 = o1;
    philox4x32_10(r0, r1, r2, r3, k0, k1);
  }
};

// Dropout keeps an element when its 24-bit uniform (r >> 8) / 2^24 is >= p, i.e. when
// (r >> 8) >= ceil(p * 2^24); p in [0, 1) gives a threshold in [0, 2^24].
inline uint32_t dropout_threshold(double p) {
  double t = p * 16777216.0;
  uint32_t ti = static_cast<uint32_t>(t);
  return static_cast<double>(ti) < t ? ti + 1 : ti;
}
FDNN_HD inline bool dropout_keep(uint32_t r, uint32_t threshold) { return (r >> 8) >= threshold; }

}  // namespace fdnn
