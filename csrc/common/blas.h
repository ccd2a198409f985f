// Row-major GEMM through the scipy-openblas32 BLAS (symbols carry a scipy_ prefix), run in
// parallel over a fixed tiling of C. Callers check that sizes fit the BLAS's 32-bit integers
// (check_blas_int).
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/parallel.h"

namespace fdnn {

// C (m x n) = alpha * op(A) op(B) + beta * C, row-major with leading dimensions; op(A) is
// m x k. One BLAS call on the calling thread (the BLAS is kept single-threaded).
template <typename T>
inline void gemm_ld(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda,
                    const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "gemm: float or double");
  const auto ta = trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = trans_b ? CblasTrans : CblasNoTrans;
  const int im = static_cast<int>(m), in = static_cast<int>(n), ik = static_cast<int>(k);
  const int ia = static_cast<int>(std::max<int64_t>(1, lda)), ib = static_cast<int>(std::max<int64_t>(1, ldb)),
            ic = static_cast<int>(std::max<int64_t>(1, ldc));
  if constexpr (std::is_same_v<T, float>)
    scipy_cblas_sgemm(CblasRowMajor, ta, tb, im, in, ik, alpha, a, ia, b, ib, beta, c, ic);
  else
    scipy_cblas_dgemm(CblasRowMajor, ta, tb, im, in, ik, alpha, a, ia, b, ib, beta, c, ic);
}

// Keep the BLAS on one thread: fusednn runs BLAS calls from its own threads (parallel_gemm).
inline void blas_use_one_thread() { scipy_openblas_set_num_threads(1); }

inline const char* blas_config() { return scipy_openblas_get_config(); }
inline const char* blas_core() { return scipy_openblas_get_corename(); }

// How parallel_gemm splits C (m x n) into tiles. The split depends only on (m, n, k), never on
// the thread count, and each tile is one single-threaded BLAS call: BLAS's own threading
// splits by thread count, which changes which micro-kernel computes an element and so its
// rounding.
struct GemmTiling {
  int64_t rows_per_tile, cols_per_tile, row_tiles, col_tiles;
  int64_t count() const { return row_tiles * col_tiles; }
};

inline GemmTiling gemm_tiling(int64_t m, int64_t n, int64_t k) {
  // Up to 8 tiles: enough to balance 8 threads. Each split re-packs part of A or B, so tiles
  // are kept large: ~16 MFLOP each (measured here: 128x784x256 forward 153 us with 8 tiles of
  // 4 MFLOP, 133 us with 2 of 25 MFLOP; 4096x1024x1024 18.7 ms with 4 tiles, 19.1 ms with 8).
  // Work under 4 MFLOP stays in one tile on the calling thread.
  constexpr int64_t kMaxTiles = 8;
  constexpr double kTileFlops = 16e6, kMinParallelFlops = 4e6;
  constexpr int64_t kAlign = 16;  // tile edges on micro-kernel multiples
  const double flops = 2.0 * double(m) * double(n) * double(std::max<int64_t>(k, 1));
  const int64_t wanted =
      flops < kMinParallelFlops ? 1 : std::clamp<int64_t>(static_cast<int64_t>(flops / kTileFlops), 2, kMaxTiles);
  // A power-of-two count of tiles balances on 1, 2, 4, ... threads. Halving the longer edge
  // keeps tiles near square, which keeps the re-packing small.
  int64_t row_tiles = 1, col_tiles = 1;
  while (row_tiles * col_tiles * 2 <= wanted) {
    const int64_t rows = ceil_div(m, row_tiles), cols = ceil_div(n, col_tiles);
    if (rows >= cols && rows >= 2 * kAlign)
      row_tiles *= 2;
    else if (cols >= 2 * kAlign)
      col_tiles *= 2;
    else if (rows >= 2 * kAlign)
      row_tiles *= 2;
    else
      break;
  }
  GemmTiling t;
  t.rows_per_tile = round_up(ceil_div(m, row_tiles), kAlign);
  t.cols_per_tile = round_up(ceil_div(n, col_tiles), kAlign);
  t.row_tiles = ceil_div(m, t.rows_per_tile);
  t.col_tiles = ceil_div(n, t.cols_per_tile);
  return t;
}

// C = alpha op(A) op(B) + beta C over the tiles of gemm_tiling, in parallel (leading dims of
// contiguous row-major operands). before(r0, r1, c0, c1) runs on a tile of C before its GEMM
// and after(...) right after it, while the tile is still in cache.
template <typename T, class Before, class After>
void parallel_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, const T* b,
                   T beta, T* c, Before&& before, After&& after) {
  if (m <= 0 || n <= 0) return;
  const GemmTiling t = gemm_tiling(m, n, k);
  const int64_t lda = trans_a ? m : k, ldb = trans_b ? k : n, ldc = n;
  parallel_for(t.count(), 1, kMinParallelWork, [&](int64_t t0, int64_t t1) {
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t r0 = (tile / t.col_tiles) * t.rows_per_tile, c0 = (tile % t.col_tiles) * t.cols_per_tile;
      const int64_t r1 = std::min(m, r0 + t.rows_per_tile), c1 = std::min(n, c0 + t.cols_per_tile);
      before(r0, r1, c0, c1);
      if (k > 0)
        gemm_ld<T>(trans_a, trans_b, r1 - r0, c1 - c0, k, alpha, trans_a ? a + r0 : a + r0 * lda, lda,
                   trans_b ? b + c0 * ldb : b + c0, ldb, beta, c + r0 * ldc + c0, ldc);
      after(r0, r1, c0, c1);
    }
  });
}

template <typename T>
void parallel_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, T alpha, const T* a, const T* b,
                   T beta, T* c) {
  auto nothing = [](int64_t, int64_t, int64_t, int64_t) {};
  parallel_gemm<T>(trans_a, trans_b, m, n, k, alpha, a, b, beta, c, nothing, nothing);
}

}  // namespace fdnn
