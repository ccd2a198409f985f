// fusednn's GEMM kernel for CPUs with AVX-512F (see cpu/gemm.h), float and double.
//
// C is cut into work units: a block of at most kMC rows by a group of panels of NR = 2 vectors
// of columns (32 floats or 16 doubles). Per k-block of kKC, a unit packs its rows of op(A) into
// tiles of MR = 12 rows (k-major: the 12 values of one k are contiguous; transposed in
// registers when A is stored m x k), and then, panel by panel, op(B) into a contiguous kc x NR
// buffer (zero-padded past n; transposed when B is stored n x k), and runs the micro-kernel on
// each tile: 24 accumulators in registers, per k two loads of the panel and twelve broadcasts
// of the tile. The epilogue adds the bias, applies the ReLU and stores the tile (masked at the
// right edge), or, for gemm_avx512_add_to_double, adds it in double into an array of sums.
//
// With several threads, a product whose row block of op(A) packed over all of k fits in
// kPanelUnitMaxA (the training shapes) is cut finer: one unit per row block and panel, each
// thread packing a row block's op(A) once per call for the panels it takes. The pool hands the
// units out one at a time, so a thread that joins late or is descheduled holds one panel, not
// half the product.
//
// op(B) can also be packed once (gemm_pack_b: the same panels, laid out k-block by k-block) and
// reused by many products with that B (gemm_with_packed_b): the micro-kernel then reads the
// panels from there; the packed values are the same, so are the results. Likewise op(A)
// (gemm_avx512_pack_a: the tiles of every row, laid out k-block by k-block) for products that
// reuse one A with many B's (conv's weights, per image): gemm_avx512_with_packed_a then packs
// nothing of A.
//
// Every element of C is one chain of fused multiply-adds over k in increasing order, started at
// zero (a second k-block reloads the first block's partial from C and continues the chain,
// which gives the same bits), so the result does not depend on the tiling, on the edge kernels
// or on the thread count.
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

constexpr int kMR = 12;        // rows per micro-tile
constexpr int64_t kMC = 144;   // rows per work unit (12 tiles): the unit's A rows stay in L2
constexpr int64_t kKC = 512;   // k per packed block: a float panel is 64 KB
// With several threads, products whose row block of op(A), packed over all of k, takes at most
// this many bytes run as units of one panel (gemm_avx512): the block stays in L2 (1 MB on Zen 4)
// next to the panels.
constexpr int64_t kPanelUnitMaxA = 512 * 1024;
template <typename T> int64_t padded_block_rows_times_k(int64_t rows, int64_t k) {
  return round_up(rows, kMR) * k * static_cast<int64_t>(sizeof(T));
}

// ---- packing op(B) rows [k0, k0 + kc), columns [n0, n0 + cols) into pb (kc x NR)

// B stored k x n (row-major, ldb = n): each packed row is a (masked) copy.
template <typename T>
FDNN_AVX512 void pack_rows(T* FDNN_RESTRICT pb, const T* FDNN_RESTRICT b, int64_t ldb, int64_t k0, int64_t kc,
                           int64_t n0, int cols) {
  using Z = Zmm<T>;
  constexpr int L = Z::kLanes;
  const auto m0 = Z::first(cols), m1 = Z::first(std::max(0, cols - L));
  for (int64_t k = 0; k < kc; ++k) {
    const T* src = b + (k0 + k) * ldb + n0;
    Z::store(pb + k * 2 * L, Z::load(src, m0));
    Z::store(pb + k * 2 * L + L, Z::load(src + L, m1));
  }
}

// One square block through the registers: dst[j * stride + i] = src[i * ld + j] for j < ks
// (the values of k) and i < lanes (the first `lanes` of L rows; rows >= `rows` are zeros).
template <typename T>
FDNN_AVX512_INLINE void transpose_block(T* FDNN_RESTRICT dst, int64_t stride, int lanes, const T* FDNN_RESTRICT src,
                                        int64_t ld, int rows, int ks) {
  using Z = Zmm<T>;
  typename Z::V v[Z::kLanes];
  const auto kmask = Z::first(ks);
  for (int i = 0; i < Z::kLanes; ++i) v[i] = i < rows ? Z::load(src + i * ld, kmask) : Z::zero();
  transpose(v);
  const auto out = Z::first(lanes);
  for (int j = 0; j < ks; ++j) Z::store(dst + j * stride, v[j], out);
}

// B stored n x k (ldb = k): square blocks of L columns of C by L values of k, transposed in
// registers; columns past `cols` are zero.
template <typename T>
FDNN_AVX512 void pack_transposed(T* FDNN_RESTRICT pb, const T* FDNN_RESTRICT b, int64_t ldb, int64_t k0, int64_t kc,
                                 int64_t n0, int cols) {
  constexpr int L = Zmm<T>::kLanes;
  for (int64_t k = 0; k < kc; k += L)
    for (int half = 0; half < 2; ++half)
      transpose_block(pb + k * 2 * L + half * L, 2 * L, L, b + (n0 + half * L) * ldb + k0 + k, ldb,
                      std::max(0, cols - half * L), static_cast<int>(std::min<int64_t>(L, kc - k)));
}

// ---- packing op(A) rows [r0, r1), k [k0, k0 + kc) into tiles of kMR rows: tile t holds
// pa[t * kc * kMR + k * kMR + i] = op(A)(r0 + t * kMR + i, k0 + k)

template <typename T>
FDNN_AVX512 void pack_a_transposed(T* FDNN_RESTRICT pa, const T* FDNN_RESTRICT a, int64_t lda, int64_t r0,
                                   int64_t r1, int64_t k0, int64_t kc) {
  // A stored k x m: each k row of a tile is a contiguous copy.
  using Z = Zmm<T>;
  constexpr int L = Z::kLanes;
  for (int64_t r = r0; r < r1; r += kMR, pa += kc * kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, r1 - r));
    for (int g = 0; g < rows; g += L) {
      const auto mask = Z::first(rows - g);
      for (int64_t k = 0; k < kc; ++k) Z::store(pa + k * kMR + g, Z::load(a + (k0 + k) * lda + r + g, mask), mask);
    }
  }
}

template <typename T>
FDNN_AVX512 void pack_a_rows(T* FDNN_RESTRICT pa, const T* FDNN_RESTRICT a, int64_t lda, int64_t r0, int64_t r1,
                             int64_t k0, int64_t kc) {
  // A stored m x k: blocks of L rows by L values of k, transposed in registers.
  constexpr int L = Zmm<T>::kLanes;
  for (int64_t r = r0; r < r1; r += kMR, pa += kc * kMR) {
    const int rows = static_cast<int>(std::min<int64_t>(kMR, r1 - r));
    for (int64_t k = 0; k < kc; k += L)
      for (int g = 0; g < rows; g += L)
        transpose_block(pa + k * kMR + g, kMR, rows - g, a + (r + g) * lda + k0 + k, lda, rows - g,
                        static_cast<int>(std::min<int64_t>(L, kc - k)));
  }
}

// ---- the micro-kernel: an MR x NR tile of C over kc values of k

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

// pa: the tile's packed rows of op(A) (pa[k * kMR + i]); pb: the packed panel of op(B).
// load_c: continue the chains from C (a later k-block). bias (the tile's columns) and relu are
// applied only on the last k-block; sum (non-null only on the last k-block; the tile's place in
// an array of doubles with C's layout): the results are added to it in double instead of stored.
// NV: vectors of columns computed (2, or 1 when the tile has at most one vector of columns).
template <typename T, int MR, int NV>
FDNN_AVX512 void micro_tile(int64_t kc, const T* FDNN_RESTRICT pa, const T* FDNN_RESTRICT pb, T* FDNN_RESTRICT c,
                            int64_t ldc, int cols, bool load_c, const T* FDNN_RESTRICT bias, bool relu,
                            double* FDNN_RESTRICT sum) {
  using Z = Zmm<T>;
  using V = typename Z::V;
  constexpr int L = Z::kLanes;
  const auto m0 = Z::first(cols), m1 = Z::first(std::max(0, cols - L));
  V acc0[MR], acc1[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    acc0[i] = load_c ? Z::load(c + i * ldc, m0) : Z::zero();
    acc1[i] = load_c && NV == 2 ? Z::load(c + i * ldc + L, m1) : Z::zero();
  }
  for (int64_t k = 0; k < kc; ++k) {
    const V b0 = Z::load(pb + k * 2 * L), b1 = NV == 2 ? Z::load(pb + k * 2 * L + L) : Z::zero();
    const T* ak = pa + k * kMR;
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const V av = Z::set1(ak[i]);
      acc0[i] = Z::fma(av, b0, acc0[i]);
      if (NV == 2) acc1[i] = Z::fma(av, b1, acc1[i]);
    }
  }
  V bias0 = Z::zero(), bias1 = Z::zero();
  if (bias) {
    bias0 = Z::load(bias, m0);
    bias1 = Z::load(bias + L, m1);
  }
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    V v0 = acc0[i], v1 = acc1[i];
    if (bias) {
      v0 = Z::add(v0, bias0);
      v1 = Z::add(v1, bias1);
    }
    if (relu) {
      v0 = Z::relu(v0);
      v1 = Z::relu(v1);
    }
    if (sum) {
      add_to_double(sum + i * ldc, v0, m0);
      if (NV == 2) add_to_double(sum + i * ldc + L, v1, m1);
    } else {
      Z::store(c + i * ldc, v0, m0);
      if (NV == 2) Z::store(c + i * ldc + L, v1, m1);
    }
  }
}

template <typename T>
using MicroTile = void (*)(int64_t, const T*, const T*, T*, int64_t, int, bool, const T*, bool, double*);

// The micro-kernels for tiles of 1 .. kMR rows of NV vectors of columns.
template <typename T, int NV, int... Rows> constexpr auto tile_kernels(std::integer_sequence<int, Rows...>) {
  return std::array<MicroTile<T>, sizeof...(Rows)>{&micro_tile<T, Rows + 1, NV>...};
}

// ---- work units

// Packs panel p of op(B) for the k-block [k0, k0 + kc) into pb.
template <typename T, bool TB>
FDNN_AVX512 void pack_panel(T* FDNN_RESTRICT pb, const T* FDNN_RESTRICT b, int64_t n, int64_t k, int64_t k0,
                            int64_t kc, int64_t p) {
  constexpr int NR = 2 * Zmm<T>::kLanes;
  const int64_t n0 = p * NR;
  const int cols = static_cast<int>(std::min<int64_t>(NR, n - n0));
  if (TB)
    pack_transposed(pb, b, k, k0, kc, n0, cols);
  else
    pack_rows(pb, b, n, k0, kc, n0, cols);
}

// Where gemm_pack_b puts panel p of the k-block at k0 (kc values of k): the k-blocks one after
// the other, each its panels one after the other.
template <typename T> int64_t packed_panel_offset(int64_t n, int64_t k0, int64_t kc, int64_t p) {
  constexpr int NR = 2 * Zmm<T>::kLanes;
  return k0 * round_up(n, NR) + p * kc * NR;
}

// Where gemm_avx512_pack_a puts the tile of rows starting at r0 (a multiple of kMR) of the
// k-block at k0 (kc values of k): the k-blocks one after the other, each its tiles of kMR rows
// one after the other (the layout run_unit packs a row block into, for the whole of m).
inline int64_t packed_tiles_offset(int64_t m, int64_t k0, int64_t kc, int64_t r0) {
  return k0 * round_up(m, kMR) + r0 * kc;
}

// One unit: rows [r0, r1) by panels [p0, p1). Per k-block: A's rows are packed once, then each
// panel of B is packed (or read from packed_b, gemm_pack_b's) and multiplied by every tile of
// rows. With packed_a (gemm_avx512_pack_a's), A's tiles are read from there instead.
template <typename T, bool TA, bool TB>
FDNN_AVX512 void run_unit(int64_t r0, int64_t r1, int64_t p0, int64_t p1, int64_t m, int64_t n, int64_t k,
                          const T* a, const T* b, const T* packed_a, const T* packed_b, T* c, const T* bias,
                          bool relu, double* sum) {
  constexpr int NR = 2 * Zmm<T>::kLanes;
  static constexpr auto kernels = tile_kernels<T, 2>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto narrow_kernels = tile_kernels<T, 1>(std::make_integer_sequence<int, kMR>{});
  const int64_t lda = TA ? m : k, ldc = n;
  T* scratch_a = packed_a ? nullptr : thread_scratch<T, 0>(kMC * kKC);
  T* pb = packed_b ? nullptr : thread_scratch<T, 1>(kKC * NR);
  for (int64_t k0 = 0; k0 < k; k0 += kKC) {
    const int64_t kc = std::min(kKC, k - k0);
    const T* pa = scratch_a;
    if (packed_a)
      pa = packed_a + packed_tiles_offset(m, k0, kc, r0);
    else if (TA)
      pack_a_transposed(scratch_a, a, lda, r0, r1, k0, kc);
    else
      pack_a_rows(scratch_a, a, lda, r0, r1, k0, kc);
    const bool last = k0 + kc >= k;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t n0 = p * NR;
      const int cols = static_cast<int>(std::min<int64_t>(NR, n - n0));
      const T* panel = pb;
      if (packed_b)
        panel = packed_b + packed_panel_offset<T>(n, k0, kc, p);
      else
        pack_panel<T, TB>(pb, b, n, k, k0, kc, p);
      const T* tile_bias = last && bias ? bias + n0 : nullptr;
      const auto& tile = cols > NR / 2 ? kernels : narrow_kernels;
      const T* at = pa;
      for (int64_t r = r0; r < r1; r += kMR, at += kc * kMR) {
        const int rows = static_cast<int>(std::min<int64_t>(kMR, r1 - r));
        tile[rows - 1](kc, at, panel, c + r * ldc + n0, ldc, cols, k0 > 0, tile_bias, last && relu,
                       last && sum ? sum + r * ldc + n0 : nullptr);
      }
    }
  }
}

// The rows of op(A) a thread has packed over the whole of k (run_panel_unit's), by gemm call.
struct PackedRows {
  uint64_t call = 0;  // 0: none
  int64_t r0 = -1;
};
template <typename T> PackedRows& packed_rows_of_thread() {
  thread_local PackedRows rows;
  return rows;
}

std::atomic<uint64_t> g_gemm_calls{0};  // numbers the calls that split into panel units

// One panel unit: rows [r0, r1) by panel p, every k-block. The rows of op(A) are packed over the
// whole of k (k-block after k-block, each as run_unit packs it) once per thread and gemm call
// (`call`), so a thread that takes several panels of one row block packs them once; the panel
// of op(B) is packed per k-block as in run_unit (with packed_a, the tiles are read from there
// and nothing of A is packed). The same micro-kernel calls on the same packed
// values as run_unit's, in the same order of k for every element: the same bits.
template <typename T, bool TA, bool TB>
FDNN_AVX512 void run_panel_unit(int64_t r0, int64_t r1, int64_t p, int64_t m, int64_t n, int64_t k, const T* a,
                                const T* b, const T* packed_a, const T* packed_b, T* c, const T* bias, bool relu,
                                double* sum, uint64_t call) {
  constexpr int NR = 2 * Zmm<T>::kLanes;
  static constexpr auto kernels = tile_kernels<T, 2>(std::make_integer_sequence<int, kMR>{});
  static constexpr auto narrow_kernels = tile_kernels<T, 1>(std::make_integer_sequence<int, kMR>{});
  const int64_t lda = TA ? m : k, ldc = n, padded_rows = round_up(r1 - r0, kMR);
  // k-block k0's tiles at pa + padded_rows * k0
  T* pa = packed_a ? nullptr : thread_scratch<T, 2>(padded_rows * k);
  PackedRows& packed = packed_rows_of_thread<T>();
  if (!packed_a && (packed.call != call || packed.r0 != r0)) {
    packed.call = 0;
    for (int64_t k0 = 0; k0 < k; k0 += kKC) {
      const int64_t kc = std::min(kKC, k - k0);
      if (TA)
        pack_a_transposed(pa + padded_rows * k0, a, lda, r0, r1, k0, kc);
      else
        pack_a_rows(pa + padded_rows * k0, a, lda, r0, r1, k0, kc);
    }
    packed.call = call;
    packed.r0 = r0;
  }
  T* pb = packed_b ? nullptr : thread_scratch<T, 1>(kKC * NR);
  const int64_t n0 = p * NR;
  const int cols = static_cast<int>(std::min<int64_t>(NR, n - n0));
  const auto& tile = cols > NR / 2 ? kernels : narrow_kernels;
  for (int64_t k0 = 0; k0 < k; k0 += kKC) {
    const int64_t kc = std::min(kKC, k - k0);
    const bool last = k0 + kc >= k;
    const T* panel = pb;
    if (packed_b)
      panel = packed_b + packed_panel_offset<T>(n, k0, kc, p);
    else
      pack_panel<T, TB>(pb, b, n, k, k0, kc, p);
    const T* tile_bias = last && bias ? bias + n0 : nullptr;
    const T* at = packed_a ? packed_a + packed_tiles_offset(m, k0, kc, r0) : pa + padded_rows * k0;
    for (int64_t r = r0; r < r1; r += kMR, at += kc * kMR) {
      const int rows = static_cast<int>(std::min<int64_t>(kMR, r1 - r));
      tile[rows - 1](kc, at, panel, c + r * ldc + n0, ldc, cols, k0 > 0, tile_bias, last && relu,
                     last && sum ? sum + r * ldc + n0 : nullptr);
    }
  }
}

}  // namespace

bool gemm_avx512_supported() { return avx512_paths_enabled(); }

template <typename T> int64_t gemm_avx512_packed_b_size(int64_t n, int64_t k) {
  return round_up(n, 2 * Zmm<T>::kLanes) * k;
}

template <typename T> void gemm_avx512_pack_b(bool trans_b, int64_t n, int64_t k, const T* b, T* packed) {
  constexpr int NR = 2 * Zmm<T>::kLanes;
  const int64_t panels = ceil_div(n, NR), k_blocks = ceil_div(k, kKC);
  auto pack = trans_b ? &pack_panel<T, true> : &pack_panel<T, false>;
  // One index per (k-block, panel); each writes its own part of `packed` (a copy: no result
  // depends on the split).
  parallel_for(k_blocks * panels, 1, 2 * kKC * NR, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t k0 = (u / panels) * kKC, kc = std::min(kKC, k - k0), p = u % panels;
      pack(packed + packed_panel_offset<T>(n, k0, kc, p), b, n, k, k0, kc, p);
    }
  });
}

template <typename T> int64_t gemm_avx512_packed_b_row(int64_t n, int64_t k, int64_t kk, int64_t panel) {
  constexpr int NR = 2 * Zmm<T>::kLanes;
  static_assert(NR == gemm_avx512_panel_width<T>(), "gemm.h's panel width");
  const int64_t k0 = kk / kKC * kKC;
  return packed_panel_offset<T>(n, k0, std::min(kKC, k - k0), panel) + (kk - k0) * NR;
}

template <typename T> int64_t gemm_avx512_packed_a_size(int64_t m, int64_t k) { return round_up(m, kMR) * k; }

template <typename T> void gemm_avx512_pack_a(bool trans_a, int64_t m, int64_t k, const T* a, T* packed) {
  // One index per (k-block, row block of kMC rows); each writes its own tiles (a copy).
  const int64_t row_blocks = ceil_div(m, kMC), k_blocks = ceil_div(k, kKC), lda = trans_a ? m : k;
  parallel_for(k_blocks * row_blocks, 1, kMC * kKC, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t k0 = (u / row_blocks) * kKC, kc = std::min(kKC, k - k0), r0 = (u % row_blocks) * kMC;
      T* dst = packed + packed_tiles_offset(m, k0, kc, r0);
      if (trans_a)
        pack_a_transposed(dst, a, lda, r0, std::min(m, r0 + kMC), k0, kc);
      else
        pack_a_rows(dst, a, lda, r0, std::min(m, r0 + kMC), k0, kc);
    }
  });
}

// gemm_avx512, gemm_avx512_with_packed_a and gemm_avx512_add_to_double: sum non-null only for the last.
template <typename T>
void gemm_avx512_run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                     const T* packed_a, const T* packed_b, T* c, const T* bias, bool relu, double* sum);

template <typename T>
void gemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                 const T* packed_b, T* c, const T* bias, bool relu) {
  gemm_avx512_with_packed_a<T>(trans_a, trans_b, m, n, k, a, b, nullptr, packed_b, c, bias, relu);
}

template <typename T>
void gemm_avx512_with_packed_a(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                               const T* packed_a, const T* packed_b, T* c, const T* bias, bool relu) {
  gemm_avx512_run<T>(trans_a, trans_b, m, n, k, a, b, packed_a, packed_b, c, bias, relu, nullptr);
}

template <typename T>
void gemm_avx512_add_to_double(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                               const T* packed_b, T* c, double* sum) {
  gemm_avx512_run<T>(trans_a, trans_b, m, n, k, a, b, nullptr, packed_b, c, nullptr, false, sum);
}

template <typename T>
void gemm_avx512_run(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                     const T* packed_a, const T* packed_b, T* c, const T* bias, bool relu, double* sum) {
  constexpr int NR = 2 * Zmm<T>::kLanes;
  // Units: row blocks (at most kMC rows, of even sizes) by groups of panels. A unit packs its
  // rows of A once per k-block, so the fewer groups the better, as long as every thread gets
  // work. The split changes no result: each element is computed the same way in any unit.
  const int64_t panels = ceil_div(n, NR), threads = num_threads();
  // More row blocks than kMC needs when there are fewer panels than threads (narrow C).
  const int64_t wanted_blocks = std::min(ceil_div(m, kMR), std::max(ceil_div(m, kMC), ceil_div(threads, panels)));
  const int64_t rows_per_block = round_up(ceil_div(m, wanted_blocks), kMR);
  const int64_t row_blocks = ceil_div(m, rows_per_block);
  if (threads > 1 && padded_block_rows_times_k<T>(rows_per_block, k) <= kPanelUnitMaxA) {
    // Units of one panel each (more, smaller units than threads): a participant that joins the
    // loop late, or is descheduled by another process, leaves its panels to the others (the
    // pool hands out blocks one at a time), instead of holding half the product.
    const uint64_t call = g_gemm_calls.fetch_add(1, std::memory_order_relaxed) + 1;
    auto run = trans_a ? (trans_b ? &run_panel_unit<T, true, true> : &run_panel_unit<T, true, false>)
                       : (trans_b ? &run_panel_unit<T, false, true> : &run_panel_unit<T, false, false>);
    parallel_for(row_blocks * panels, 1, rows_per_block * NR * k, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) {
        const int64_t r0 = (u / panels) * rows_per_block;
        run(r0, std::min(m, r0 + rows_per_block), u % panels, m, n, k, a, b, packed_a, packed_b, c, bias, relu, sum,
            call);
      }
    });
    return;
  }
  const int64_t groups = std::min(panels, ceil_div(threads, row_blocks));
  const int64_t per_group = ceil_div(panels, groups);
  const int64_t unit_groups = ceil_div(panels, per_group);
  auto run = trans_a ? (trans_b ? &run_unit<T, true, true> : &run_unit<T, true, false>)
                     : (trans_b ? &run_unit<T, false, true> : &run_unit<T, false, false>);
  parallel_for(row_blocks * unit_groups, 1, rows_per_block * per_group * NR * k, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t r0 = (u / unit_groups) * rows_per_block, p0 = (u % unit_groups) * per_group;
      run(r0, std::min(m, r0 + rows_per_block), p0, std::min(panels, p0 + per_group), m, n, k, a, b, packed_a,
          packed_b, c, bias, relu, sum);
    }
  });
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
