// Whether the hand-written AVX-512 code paths run (the GEMM's micro-kernel, and the intrinsics
// paths of dropout, augment, norm, softmax-CE and conv): the CPU has AVX-512F and the environment
// variable FUSEDNN_DISABLE_AVX512 is unset, empty or "0" when the module first asks. Everything
// else takes the portable loops, which are what a CPU without AVX-512 runs; the tests set the
// variable in a subprocess so that those loops are also exercised on machines that have AVX-512.
// (The FDNN_MULTIVERSION clones of common/isa.h are chosen by the loader and are not affected.)
#pragma once

#include <cstdlib>
#include <cstring>

namespace fdnn {

inline bool avx512_paths_enabled() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool enabled = [] {
    const char* off = std::getenv("FUSEDNN_DISABLE_AVX512");
    if (off != nullptr && off[0] != '\0' && std::strcmp(off, "0") != 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return enabled;
#else
  return false;
#endif
}

}  // namespace fdnn
