// Run-time instruction-set dispatch for our own vectorized loops.
//
// The extension is compiled for a portable baseline (x86-64-v2). A hot loop marked
// FDNN_MULTIVERSION is compiled three times by GCC (baseline, x86-64-v3 = AVX2+FMA,
// x86-64-v4 = AVX-512) and the dynamic loader picks the best clone for the CPU once, at
// load time (an ifunc), so a call costs the same as a plain call. With -DFUSEDNN_NATIVE=ON
// the whole module is built for the build machine and no clones are made.
#pragma once

#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(FUSEDNN_NATIVE) && \
    !defined(__CUDACC__)
#define FDNN_HAS_ISA_CLONES 1
#define FDNN_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FDNN_HAS_ISA_CLONES 0
#define FDNN_MULTIVERSION
#endif

// For helpers with loops that FDNN_MULTIVERSION functions call: forced inline, so that each clone
// compiles them for its own ISA. GCC may leave an inline function out of line, and that copy is
// compiled for the baseline (SSE): the x86-64-v3 clone of log_softmax called an out-of-line SSE
// copy of its exp-and-sum loop (1.9 ms for 2621 x 100 against softmax's 0.58 on one Zen 3 core).
#define FDNN_CLONE_INLINE __attribute__((always_inline)) inline

namespace fdnn {

// The code paths compiled into this module, best first.
inline std::vector<std::string> isa_paths_compiled() {
#if FDNN_HAS_ISA_CLONES
  return {"x86-64-v4 (AVX-512)", "x86-64-v3 (AVX2, FMA)", "x86-64-v2 (baseline)"};
#elif defined(FUSEDNN_NATIVE)
  return {"native (-march=native)"};
#else
  return {"default"};
#endif
}

// The code path the loader picks on this CPU (the same test the clones' resolver makes).
inline std::string isa_path_selected() {
#if FDNN_HAS_ISA_CLONES
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2, FMA)";
  return "x86-64-v2 (baseline)";
#else
  return isa_paths_compiled().front();
#endif
}

}  // namespace fdnn
