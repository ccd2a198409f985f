// fusednn's GEMM kernel for CPUs with AVX2 and FMA but no AVX-512F (see cpu/gemm.h), float and
// double: the body of cpu/gemm_kernel.inc over 256-bit vectors (Ymm<T> of cpu/avx2.h), tiles of
// 6 rows by 2 vectors of columns (16 floats or 8 doubles): 12 accumulators, and per k two loads
// of the panel and six broadcasts of the tile, in the 16 registers. Its k-blocks are the AVX-512
// kernel's (kKC = 512) and it sums each element as that kernel does, so the two give the same
// bits.
//
// A file of its own with target attributes on its functions (as gemm_avx512_cpu.cpp): the
// module is compiled for a portable baseline and this runs only where gemm_avx2_supported().
#include "cpu/gemm.h"

#define FDNN_GEMM_AVX2_INSTANTIATE(T)                                                                              \
  template void gemm_avx2<T>(bool, bool, int64_t, int64_t, int64_t, const T*, const T*, const T*, T*, const T*,    \
                             bool);                                                                                \
  template int64_t gemm_avx2_packed_b_size<T>(int64_t, int64_t);                                                   \
  template void gemm_avx2_pack_b<T>(bool, int64_t, int64_t, const T*, T*);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <utility>

#include "common/avx512_paths.h"
#include "common/macros.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "cpu/avx2.h"

namespace fdnn {
namespace {

#define FDNN_GEMM_TARGET FDNN_AVX2
#define FDNN_GEMM_TARGET_INLINE FDNN_AVX2_INLINE
template <typename T> using Vec = Ymm<T>;
constexpr int kMR = 6;         // rows per micro-tile
constexpr int64_t kMC = 144;   // rows per work unit (24 tiles): the unit's A rows stay in L2
constexpr int64_t kKC = 512;   // k per packed block at most (as the AVX-512 kernel's: the same k-blocks)
// With several threads, products whose row block of op(A), packed over all of k, takes at most
// this many bytes run as units of one panel: the block stays in L2 (512 KB on Zen 3).
constexpr int64_t kPanelUnitMaxA = 512 * 1024;
constexpr bool kAddsToDouble = false;

}  // namespace

#include "cpu/gemm_kernel.inc"

#undef FDNN_GEMM_TARGET
#undef FDNN_GEMM_TARGET_INLINE

bool gemm_avx2_supported() { return avx2_fma_paths_enabled(); }

template <typename T> int64_t gemm_avx2_packed_b_size(int64_t n, int64_t k) { return own_packed_b_size<T>(n, k); }

template <typename T> void gemm_avx2_pack_b(bool trans_b, int64_t n, int64_t k, const T* b, T* packed) {
  own_pack_b<T>(trans_b, n, k, b, packed);
}

template <typename T>
void gemm_avx2(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
               const T* packed_b, T* c, const T* bias, bool relu) {
  own_gemm_run<T>(trans_a, trans_b, m, n, k, a, b, nullptr, packed_b, c, bias, relu, nullptr);
}

FDNN_GEMM_AVX2_INSTANTIATE(float)
FDNN_GEMM_AVX2_INSTANTIATE(double)

}  // namespace fdnn

#else  // not x86-64 with GCC: the BLAS kernel only

namespace fdnn {
bool gemm_avx2_supported() { return false; }
template <typename T>
void gemm_avx2(bool, bool, int64_t, int64_t, int64_t, const T*, const T*, const T*, T*, const T*, bool) {}
template <typename T> int64_t gemm_avx2_packed_b_size(int64_t, int64_t) { return 0; }
template <typename T> void gemm_avx2_pack_b(bool, int64_t, int64_t, const T*, T*) {}
FDNN_GEMM_AVX2_INSTANTIATE(float)
FDNN_GEMM_AVX2_INSTANTIATE(double)
}  // namespace fdnn

#endif
