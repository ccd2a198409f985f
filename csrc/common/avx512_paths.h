// Whether the hand-written AVX-512 code paths run (the GEMM's kernel, and the intrinsics
// paths of dropout, augment, norm, softmax-CE and conv): the CPU has AVX-512F and the environment
// variable FUSEDNN_DISABLE_AVX512 is unset, empty or "0" when the module first asks. Where they
// do not, the hand-written AVX2 paths (the Philox rounds of dropout and augment's noise,
// cpu/philox_avx2.h; the GEMM's kernel, float32 layer norm and cross-entropy where the CPU has
// FMA too) run where the CPU has AVX2 and FUSEDNN_DISABLE_AVX2 is likewise unset; everything
// else takes the portable loops. The tests set the variables in a subprocess so that each path
// is also exercised on machines that would take a faster one.
// (The FDNN_MULTIVERSION clones of common/isa.h are chosen by the loader and are not affected.)
#pragma once

#include <cstdlib>
#include <cstring>

namespace fdnn {

// Whether the environment variable `name` turns a path off: set, not empty and not "0".
inline bool path_disabled_by(const char* name) {
  const char* off = std::getenv(name);
  return off != nullptr && off[0] != '\0' && std::strcmp(off, "0") != 0;
}

inline bool avx512_paths_enabled() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool enabled = [] {
    if (path_disabled_by("FUSEDNN_DISABLE_AVX512")) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return enabled;
#else
  return false;
#endif
}

// Whether the hand-written AVX2 paths run: not where the AVX-512 ones do.
inline bool avx2_paths_enabled() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool enabled = [] {
    if (avx512_paths_enabled() || path_disabled_by("FUSEDNN_DISABLE_AVX2")) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return enabled;
#else
  return false;
#endif
}

// Whether the hand-written AVX2 paths that also need FMA run (the GEMM kernel, float32 layer norm
// and softmax-CE): the AVX2 ones do and the CPU has FMA.
inline bool avx2_fma_paths_enabled() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool enabled = avx2_paths_enabled() && __builtin_cpu_supports("fma") != 0;
  return enabled;
#else
  return false;
#endif
}

}  // namespace fdnn
