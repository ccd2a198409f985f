// Philox4x32-10 rounds on 16 counters with AVX-512F intrinsics (x86-64 only). GCC lowers the
// generic 64-bit lane products of dropout_cpu.cpp's mulhilo to vpmullq, which Intel cores run
// at a third of vpmuludq's rate (0.89 vs 0.47 ns per element per core, measured on a Xeon
// 2026-11-30); dropout_cpu.cpp calls this instead when the CPU has AVX-512F. A file of its own:
// GCC 12 fails (internal compiler error) on a target("avx512f") function next to the vector
// extension code of dropout_cpu.cpp.
#pragma once

#include <cstdint>

namespace fdnn {

// c[0, 64) holds counter words c0, c1, c2, c3 of 16 blocks (16 lanes each); replaced by the
// blocks' output words, in the same layout, after the 10 rounds with key (k0, k1).
void philox_rounds_avx512(uint32_t* c, uint32_t k0, uint32_t k1);

}  // namespace fdnn
