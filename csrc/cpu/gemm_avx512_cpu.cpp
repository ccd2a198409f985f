// fusednn's GEMM kernel for CPUs with AVX-512F (see cpu/gemm.h), float and double: the body of
// cpu/gemm_kernel.inc over 512-bit vectors (Zmm<T> of cpu/avx512.h), tiles of 12 rows by 2
// vectors of columns (32 floats or 16 doubles): 24 accumulators, and per k two loads of the
// panel and twelve broadcasts of the tile.
//
// A file of its own with target attributes on its functions (as philox_avx512_cpu.cpp): the
// module is compiled for a portable baseline and this runs only where the CPU has AVX-512F.
#include "cpu/gemm.h"

// The explicit instantiations of both branches below (float and double).
#define FDNN_GEMM_AVX512_INSTANTIATE(T)                                                                            \
  template void gemm_avx512<T>(bool, bool, int64_t, int64_t, int64_t, const T*, const T*, const T*, T*, const T*,  \
                               bool);                                                                              \
  template int64_t gemm_avx512_packed_b_size<T>(int64_t, int64_t);                                                 \
  template void gemm_avx512_pack_b<T>(bool, int64_t, int64_t, const T*, T*);                                       \
  template int64_t gemm_avx512_packed_b_row<T>(int64_t, int64_t, int64_t, int64_t);                                \
  template void gemm_avx512_with_packed_a<T>(bool, bool, int64_t, int64_t, int64_t, const T*, const T*, const T*, \
                                             const T*, T*, const T*, bool);                                        \
  template int64_t gemm_avx512_packed_a_size<T>(int64_t, int64_t);                                                 \
  template void gemm_avx512_pack_a<T>(bool, int64_t, int64_t, const T*, T*);                                       \
  template void gemm_avx512_add_to_double<T>(bool, bool, int64_t, int64_t, int64_t, const T*, const T*, const T*, \
                                             T*, double*);

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
#include "cpu/avx512.h"

namespace fdnn {
namespace {

#define FDNN_GEMM_TARGET FDNN_AVX512
#define FDNN_GEMM_TARGET_INLINE FDNN_AVX512_INLINE
template <typename T> using Vec = Zmm<T>;
constexpr int kMR = 12;        // rows per micro-tile
constexpr int64_t kMC = 144;   // rows per work unit (12 tiles): the unit's A rows stay in L2
constexpr int64_t kKC = 512;   // k per packed block: a float panel is 64 KB
// With several threads, products whose row block of op(A), packed over all of k, takes at most
// this many bytes run as units of one panel: the block stays in L2 (1 MB on Zen 4) next to the
// panels.
constexpr int64_t kPanelUnitMaxA = 512 * 1024;
constexpr bool kAddsToDouble = true;

// d[i] += double(v[i]) for the lanes of m (gemm_avx512_add_to_double's epilogue).
FDNN_AVX512_INLINE void add_to_double(double* d, __m512 v, __mmask16 m) {
  const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
  const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const auto m_lo = static_cast<__mmask8>(m), m_hi = static_cast<__mmask8>(m >> 8);
  _mm512_mask_storeu_pd(d, m_lo, _mm512_add_pd(_mm512_maskz_loadu_pd(m_lo, d), lo));
  _mm512_mask_storeu_pd(d + 8, m_hi, _mm512_add_pd(_mm512_maskz_loadu_pd(m_hi, d + 8), hi));
}
FDNN_AVX512_INLINE void add_to_double(double* d, __m512d v, __mmask8 m) {
  _mm512_mask_storeu_pd(d, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, d), v));
}

}  // namespace

#include "cpu/gemm_kernel.inc"

#undef FDNN_GEMM_TARGET
#undef FDNN_GEMM_TARGET_INLINE

bool gemm_avx512_supported() { return avx512_paths_enabled(); }

template <typename T> int64_t gemm_avx512_packed_b_size(int64_t n, int64_t k) { return own_packed_b_size<T>(n, k); }

template <typename T> void gemm_avx512_pack_b(bool trans_b, int64_t n, int64_t k, const T* b, T* packed) {
  own_pack_b<T>(trans_b, n, k, b, packed);
}

template <typename T> int64_t gemm_avx512_packed_b_row(int64_t n, int64_t k, int64_t kk, int64_t panel) {
  static_assert(2 * Vec<T>::kLanes == gemm_avx512_panel_width<T>(), "gemm.h's panel width");
  return own_packed_b_row<T>(n, k, kk, panel);
}

template <typename T> int64_t gemm_avx512_packed_a_size(int64_t m, int64_t k) { return own_packed_a_size<T>(m, k); }

template <typename T> void gemm_avx512_pack_a(bool trans_a, int64_t m, int64_t k, const T* a, T* packed) {
  own_pack_a<T>(trans_a, m, k, a, packed);
}

template <typename T>
void gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                 const T* packed_b, T* c, const T* bias, bool relu) {
  own_gemm_run<T>(trans_a, trans_b, m, n, k, a, b, nullptr, packed_b, c, bias, relu, nullptr);
}

template <typename T>
void gemm_avx512_with_packed_a(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                               const T* packed_a, const T* packed_b, T* c, const T* bias, bool relu) {
  own_gemm_run<T>(trans_a, trans_b, m, n, k, a, b, packed_a, packed_b, c, bias, relu, nullptr);
}

template <typename T>
void gemm_avx512_add_to_double(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                               const T* packed_b, T* c, double* sum) {
  own_gemm_run<T>(trans_a, trans_b, m, n, k, a, b, nullptr, packed_b, c, nullptr, false, sum);
}

FDNN_GEMM_AVX512_INSTANTIATE(float)
FDNN_GEMM_AVX512_INSTANTIATE(double)

}  // namespace fdnn

#else  // not x86-64 with GCC: the BLAS kernel only

namespace fdnn {
bool gemm_avx512_supported() { return false; }
template <typename T>
void gemm_avx512(bool, bool, int64_t, int64_t, int64_t, const T*, const T*, const T*, T*, const T*, bool) {}
template <typename T> int64_t gemm_avx512_packed_b_size(int64_t, int64_t) { return 0; }
template <typename T> void gemm_avx512_pack_b(bool, int64_t, int64_t, const T*, T*) {}
template <typename T> int64_t gemm_avx512_packed_b_row(int64_t, int64_t, int64_t, int64_t) { return 0; }
template <typename T>
void gemm_avx512_with_packed_a(bool, bool, int64_t, int64_t, int64_t, const T*, const T*, const T*, const T*, T*,
                               const T*, bool) {}
template <typename T> int64_t gemm_avx512_packed_a_size(int64_t, int64_t) { return 0; }
template <typename T>
void gemm_avx512_add_to_double(bool, bool, int64_t, int64_t, int64_t, const T*, const T*, const T*, T*, double*) {}
template <typename T> void gemm_avx512_pack_a(bool, int64_t, int64_t, const T*, T*) {}
FDNN_GEMM_AVX512_INSTANTIATE(float)
FDNN_GEMM_AVX512_INSTANTIATE(double)
}  // namespace fdnn

#endif
