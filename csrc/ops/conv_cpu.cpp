// CPU convolution (conv.h) over cpu/gemm.h, and the pooling loops.
//
// Blocks (struct Blocking): the output positions r = (n, q) of the batch are cut into blocks of
// at most kBlockPositions = 256: whole images (as many as fit) or, for an image of more
// positions, equal parts of one image. A block's im2col matrix is col (K x M): row kk = (ci, i,
// j) of the kernel, column r - r0, so that im2col and col2im move runs of consecutive positions
// (at stride 1 with OW == W, one shifted copy of the input plane per kernel row and image).
// Forward: out (C_out/groups x M) = w_g col, with the bias as a last column of w_g against a
// row of ones in col and the ReLU in the GEMM's epilogue; for a block of one whole image out is
// that image's output planes (NCHW), so nothing is transposed, else its rows are copied there.
// Backward, per block: dz (C_out/groups x M) is dy's planes (the ReLU mask applied into scratch
// when there is one), dw_g += dz col^T and dcol = w_g^T dz, added back onto the input (col2im).
//
// Packed operands (float32 where gemm's rule picks the AVX-512 kernel): the forward's col (flat
// rows, blocks within one image) and the dw product's col^T (C_in/groups a multiple of 16, its
// kernel rows reordered tap-major) are written straight into the layout the GEMM packs its B
// operand into (cpu/gemm.h gemm_avx512_packed_b_row) and passed to gemm_avx512 as packed_b: the
// im2col pass and the GEMM's packing of B become one pass. The packed values are those gemm
// would pack, and every product's chain is unchanged, so the results are the same bits as the
// plain im2col + gemm path (which the other shapes, float64 and OpenBLAS take). Wherever a
// product is the AVX-512 kernel, its weights operand (the forward's w_g with the bias column,
// the dx product's w_g^T) is packed once per call (gemm_avx512_pack_a) and read by every
// block's product (gemm_avx512_with_packed_a), and the dx product's dz is packed once per block
// (gemm_avx512_pack_b) for all its row blocks: the same packed values, the same bits. The dw
// product's results are added into the double sums by the kernel's epilogue
// (gemm_avx512_add_to_double), in place of a store and a separate pass.
//
// Threads: the blocks are grouped into tasks (a block of whole images, or all the parts of one
// image), and the tasks run in parallel, each on one thread with its own GEMM calls (nested
// loops run on their calling thread; a conv with a single task parallelizes inside the block
// instead). A task writes only its own images' outputs (y, dx).
//
// Scratch per thread (kept between calls, common/scratch.h thread_scratch): col ((K + 1) x 256;
// the packed dw path's: K rounded up to 32, by 256; the backward's packed dz after the dw
// product, 256 x C_out/groups), out / dz (C_out/groups x 256), dcol (K x 256), a dw
// block (C_out/groups x K), the packed dw path's padded HWC image copy ((H + 2 pH)(W + 2 pW)
// C_in/groups, at most 2^20 elements); per call, the packed weights (C_out K, rounded up); plus at most
// kMaxChunks double sums of dw and db (C_out K + C_out each, kSumBudget doubles in all). None of
// it grows with the batch.
//
// Accuracy: the GEMM sums its k products in order, so the weight gradient, a sum over every
// output position of the batch, is one GEMM per block of at most 256 positions (the fuzz test
// found a float32 sum of 504 products in order beyond 2x NumPy's error) whose results are added
// in double; the bias gradient adds each block's sums of dz (in double) likewise.
//
// Determinism: the blocks, the tasks and the chunks of tasks whose dw/db sums are added
// together depend on the shapes only; a chunk adds its blocks in order and the chunks are added
// in chunk order; every dx element gets its terms in kernel-row order within an image and in
// block order across the parts of an image, all on one thread.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/isa.h"
#include "common/macros.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "cpu/gemm.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#include "cpu/avx512.h"
#define FDNN_CONV_AVX512 1
#else
#define FDNN_CONV_AVX512 0
#endif
#include "ops/conv.h"

namespace fdnn {
namespace {

// Output positions per block: the GEMMs' chain length of a dw sum stays at most this (a float32
// sum of 504 products in order missed the 2x-NumPy bound in a fuzz run).
constexpr int64_t kBlockPositions = 256;
// The dw/db sums: at most kMaxChunks partial sums of C_out K + C_out doubles, kSumBudget doubles in all.
constexpr int64_t kMaxChunks = 8;
constexpr int64_t kSumBudget = int64_t{1} << 21;
// The per-thread scratch slots (common/scratch.h): apart from the GEMM's (0-2), the direct
// path's (20-25) and linear's (30, 31).
constexpr int kColSlot = 16, kOutSlot = 17, kDcolSlot = 18, kPartSlot = 19, kPadSlot = 26;

// The sum of n values in double: eight interleaved partial sums (vectorizable), added pairwise.
template <typename T> FDNN_MULTIVERSION double sum_double(const T* FDNN_RESTRICT v, int64_t n) {
  double acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += v[i + k];
  for (int k = 0; i < n; ++i, ++k) acc[k] += v[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// d = relu'(y) * dy (a select) over n values.
template <typename T>
FDNN_MULTIVERSION void relu_grad_run(T* FDNN_RESTRICT d, const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT y,
                                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = relu_grad_from_output(dy[i], y[i]);
}

// d += v over n values.
template <typename T> FDNN_MULTIVERSION void add_run(T* FDNN_RESTRICT d, const T* FDNN_RESTRICT v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] += v[i];
}

// The smallest ow >= 0 with ow * stride + off >= v.
inline int64_t first_ow(int64_t v, int64_t off, int64_t stride) {
  return v - off <= 0 ? 0 : (v - off + stride - 1) / stride;
}

// Calls run(n, oh, ow0, count, t0) for the runs of consecutive output positions of [r0, r1) that
// share an output row (n, oh): ow0 .. ow0 + count - 1, at column t0 = r - r0 of the block.
template <class F> void for_each_run(const ConvShape& s, int64_t r0, int64_t r1, F&& run) {
  if (r0 >= r1) return;
  const int64_t p = s.positions();
  int64_t n = r0 / p, oh = (r0 % p) / s.ow, ow0 = r0 % s.ow;  // advanced without dividing again
  for (int64_t r = r0; r < r1;) {
    const int64_t count = std::min(s.ow - ow0, r1 - r);
    run(n, oh, ow0, count, r - r0);
    r += count;
    ow0 = 0;
    if (++oh == s.oh) {
      oh = 0;
      ++n;
    }
  }
}

// Whether a kernel row's input values are a shifted copy of the whole plane: at stride 1 with
// OW == W (a "same" width), position q = oh * OW + ow reads the flat input index q + shift, with
// shift = (i dh - ph) W + j dw - pw, wherever (ih, iw) is inside the input; outside it, the
// index falls outside [0, H W) (rows) or the column is one of the few invalid ones (ow < lo or
// ow >= hi), which are zeroed (im2col) or skipped (col2im) separately.
inline bool flat_rows(const ConvShape& s) { return s.sh == 1 && s.sw == 1 && s.ow == s.w; }

// Zeroes d[q - q0] for the positions q in [q0, q1) of one image whose column ow is outside [lo, hi).
template <typename T> void zero_columns(T* d, const ConvShape& s, int64_t q0, int64_t q1, int64_t lo, int64_t hi) {
  auto column = [&](int64_t ow) {  // the positions q = oh * OW + ow in [q0, q1)
    for (int64_t q = q0 + (ow - q0 % s.ow + s.ow) % s.ow; q < q1; q += s.ow) d[q - q0] = T(0);
  };
  for (int64_t ow = 0; ow < std::min(lo, s.ow); ++ow) column(ow);
  for (int64_t ow = std::max<int64_t>(hi, 0); ow < s.ow; ++ow) column(ow);
}

#if FDNN_CONV_AVX512
// ---- The forward's im2col straight into the GEMM's packed panels (float32, AVX-512, flat rows):
// 16 positions q at a time, with the lanes' columns (q + t) % OW carried from chunk to chunk; a
// lane takes the input value where q is in [v0, v1) (inside the plane) and its column in
// [lo, hi), else 0.
inline __mmask16 lanes_below(int64_t count) {  // the first clamp(count, 0, 16) lanes
  return count <= 0 ? __mmask16(0) : count >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << count) - 1u);
}

struct FlatLanes {
  __m512i col, ow, step, lo, hi;
  FDNN_AVX512_INLINE FlatLanes(int64_t q0, int64_t w, int64_t lo_, int64_t hi_) {
    ow = _mm512_set1_epi32(static_cast<int32_t>(w));
    col = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int32_t>(q0 % w)),
                           _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    for (__mmask16 over; (over = _mm512_cmpge_epi32_mask(col, ow)) != 0;)  // at most 16 / OW + 1 rounds
      col = _mm512_mask_sub_epi32(col, over, col, ow);
    step = _mm512_set1_epi32(static_cast<int32_t>(16 % w));
    lo = _mm512_set1_epi32(static_cast<int32_t>(std::clamp<int64_t>(lo_, 0, w)));
    hi = _mm512_set1_epi32(static_cast<int32_t>(std::clamp<int64_t>(hi_, 0, w)));
  }
  FDNN_AVX512_INLINE __mmask16 valid_columns() const {
    return _mm512_cmpge_epi32_mask(col, lo) & _mm512_cmplt_epi32_mask(col, hi);
  }
  FDNN_AVX512_INLINE void advance() {  // col + 16 % OW < 2 OW: one conditional subtraction
    col = _mm512_add_epi32(col, step);
    col = _mm512_mask_sub_epi32(col, _mm512_cmpge_epi32_mask(col, ow), col, ow);
  }
};

// The forward's im2col (flat rows, one image's positions [q0, q1) as the block) straight into
// the GEMM's packed panels of col (kb x m, m = q1 - q0; a last row of ones when kb = K + 1): the
// values gemm_pack_b would put there (zeros past m), without the col matrix in between.
FDNN_AVX512 void im2col_panels_f32(float* packed, const float* x, const ConvShape& s, int64_t c0, int64_t n,
                                   int64_t q0, int64_t q1, int64_t kb) {
  constexpr int64_t NR = gemm_avx512_panel_width<float>();
  const int64_t m = q1 - q0, k = s.k(), hw = s.h * s.w, chunks = ceil_div(m, NR) * 2;
  for (int64_t kk = 0; kk < kb; ++kk) {
    float* row = packed + gemm_avx512_packed_b_row<float>(m, kb, kk, 0);
    const int64_t stride = gemm_avx512_packed_b_row<float>(m, kb, kk, 1) - (row - packed);
    if (kk == k) {  // the bias row: ones
      for (int64_t c = 0; c < chunks; ++c)
        _mm512_store_ps(row + (c / 2) * stride + (c % 2) * 16,
                        _mm512_maskz_mov_ps(lanes_below(m - c * 16), _mm512_set1_ps(1.0f)));
      continue;
    }
    const int64_t ci = kk / (s.kh * s.kw), i = (kk / s.kw) % s.kh, j = kk % s.kw;
    const int64_t off = j * s.dw - s.pw;
    const int64_t shift = (i * s.dh - s.ph) * s.w + off;
    const int64_t v0 = std::clamp(-shift, q0, q1), v1 = std::clamp(hw - shift, v0, q1);
    const float* src = x + (n * s.c_in + c0 + ci) * hw + shift;
    FlatLanes lanes(q0, s.w, first_ow(0, off, 1), first_ow(s.w, off, 1));
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t q = q0 + c * 16;
      const __mmask16 inside = lanes_below(v1 - q) & ~lanes_below(v0 - q);
      const __m512 v = _mm512_maskz_mov_ps(lanes.valid_columns(), inside == 0xFFFF ? _mm512_loadu_ps(src + q)
                                                                                  : _mm512_maskz_loadu_ps(inside, src + q));
      _mm512_store_ps(row + (c / 2) * stride + (c % 2) * 16, v);
      lanes.advance();
    }
  }
}

// ---- dw's im2col straight into the GEMM's packed panels (float32, AVX-512, C_in/groups a
// multiple of 16). The dw product dz col^T reads col^T (positions x K) as op(B); with the
// kernel rows reordered as kk' = (i kW + j) C_in/groups + ci, a position's values for one tap
// are C_in/groups consecutive values of an image stored HWC, so col^T's rows are plain vector
// copies from a zero-padded HWC copy of the image, written where gemm_pack_b would put them.
// Each dw element is the same chain of products in the same order (only the columns are
// permuted, and undone when the sums are stored): the same bits as the im2col path.

// Whether the dw product of this shape can take that path: its padded HWC image copy is at most
// kMaxPadded elements.
constexpr int64_t kMaxPadded = int64_t{1} << 20;
inline int64_t padded_hwc_size(const ConvShape& s) { return (s.h + 2 * s.ph) * (s.w + 2 * s.pw) * s.cin_g(); }

// xp = image n's channels [c0, c0 + C) as (H + 2 ph) x (W + 2 pw) x C, zeros in the padding.
FDNN_AVX512 void padded_hwc_f32(float* xp, const float* x, const ConvShape& s, int64_t n, int64_t c0) {
  const int64_t c = s.cin_g(), wp = s.w + 2 * s.pw, hw = s.h * s.w;
  std::fill(xp, xp + padded_hwc_size(s), 0.0f);
  const float* img = x + (n * s.c_in + c0) * hw;
  __m512 v[16];
  for (int64_t c1 = 0; c1 < c; c1 += 16)
    for (int64_t q = 0; q < hw; q += 16) {  // 16 channels x 16 positions, transposed in registers
      const __mmask16 mask = lanes_below(hw - q);
      for (int t = 0; t < 16; ++t) v[t] = _mm512_maskz_loadu_ps(mask, img + (c1 + t) * hw + q);
      transpose16(v);
      const int64_t count = std::min<int64_t>(16, hw - q);
      int64_t ih = q / s.w, iw = q % s.w;
      for (int64_t t = 0; t < count; ++t) {
        _mm512_storeu_ps(xp + ((ih + s.ph) * wp + iw + s.pw) * c + c1, v[t]);
        if (++iw == s.w) {
          iw = 0;
          ++ih;
        }
      }
    }
}

// Rows t = r - r0 of col^T (kk' order) for the block's positions [r0, r1) into `packed` (the
// layout of gemm_avx512_packed_b_row for n = K, k = r1 - r0).
FDNN_AVX512 void dw_panels_f32(float* packed, float* xp, const float* x, const ConvShape& s, int64_t c0, int64_t r0,
                               int64_t r1) {
  constexpr int64_t NR = gemm_avx512_panel_width<float>();
  const int64_t c = s.cin_g(), k = s.k(), m = r1 - r0, wp = s.w + 2 * s.pw, p = s.positions();
  float* const row0 = packed + gemm_avx512_packed_b_row<float>(k, m, 0, 0);
  const int64_t panel_stride = gemm_avx512_packed_b_row<float>(k, m, 0, 1) - gemm_avx512_packed_b_row<float>(k, m, 0, 0);
  const int64_t taps = s.kh * s.kw;
  for (int64_t r = r0; r < r1;) {
    const int64_t n = r / p, end = std::min(r1, (n + 1) * p);
    padded_hwc_f32(xp, x, s, n, c0);
    int64_t oh = (r % p) / s.ow, ow = r % s.ow;
    for (; r < end; ++r) {
      float* dst = row0 + (r - r0) * NR;
      const float* base = xp + (oh * s.sh * wp + ow * s.sw) * c;
      for (int64_t tap = 0; tap < taps; ++tap) {
        const int64_t i = tap / s.kw, j = tap % s.kw;
        const float* src = base + (i * s.dh * wp + j * s.dw) * c;
        for (int64_t ci = 0; ci < c; ci += 16) {
          const int64_t kk = tap * c + ci;
          _mm512_store_ps(dst + (kk / NR) * panel_stride + kk % NR, _mm512_loadu_ps(src + ci));
        }
      }
      if (k % NR)  // the last panel's columns past K
        _mm512_store_ps(dst + (k / NR) * panel_stride + NR / 2, _mm512_setzero_ps());
      if (++ow == s.ow) {
        ow = 0;
        ++oh;
      }
    }
  }
}

// Whether this CPU runs the AVX-512 loops (float32 only).
template <typename T> bool flat_avx512() {
  static const bool supported = gemm_avx512_supported();
  return std::is_same_v<T, float> && supported;
}
#endif

// col[kk * m + (r - r0)] = x[n, c0 + ci, oh * sh - ph + i * dh, ow * sw - pw + j * dw] (0 outside
// the input), kk = (ci * kh + i) * kw + j, for the output positions r = (n, oh, ow) in [r0, r1).
template <typename T> void im2col(T* col, const T* x, const ConvShape& s, int64_t c0, int64_t r0, int64_t r1) {
  const int64_t m = r1 - r0, p = s.positions(), hw = s.h * s.w;
  const bool flat = flat_rows(s);
  parallel_for(s.k(), 1, m, [&](int64_t a, int64_t b) {
    for (int64_t kk = a; kk < b; ++kk) {
      const int64_t ci = kk / (s.kh * s.kw), i = (kk / s.kw) % s.kh, j = kk % s.kw;
      const int64_t off = j * s.dw - s.pw;
      const int64_t lo = first_ow(0, off, s.sw), hi = first_ow(s.w, off, s.sw);  // valid ow: [lo, hi)
      T* dst = col + kk * m;
      if (flat) {  // per image: one shifted copy, zeros outside the plane and in the invalid columns
        const int64_t shift = (i * s.dh - s.ph) * s.w + off;
        for (int64_t r = r0; r < r1;) {
          const int64_t n = r / p, q0 = r % p, q1 = std::min(p, q0 + (r1 - r));
          const T* plane = x + (n * s.c_in + c0 + ci) * hw;
          T* d = dst + (r - r0) - q0;  // d[q] for q in [q0, q1)
          const int64_t v0 = std::clamp(-shift, q0, q1), v1 = std::clamp(hw - shift, v0, q1);
          std::fill(d + q0, d + v0, T(0));
          std::copy(plane + v0 + shift, plane + v1 + shift, d + v0);
          std::fill(d + v1, d + q1, T(0));
          zero_columns(d + q0, s, q0, q1, lo, hi);
          r += q1 - q0;
        }
        continue;
      }
      for_each_run(s, r0, r1, [&](int64_t n, int64_t oh, int64_t ow0, int64_t count, int64_t t0) {
        T* d = dst + t0;
        const int64_t ih = oh * s.sh - s.ph + i * s.dh;
        if (ih < 0 || ih >= s.h) {
          std::fill(d, d + count, T(0));
          return;
        }
        const T* line = x + ((n * s.c_in + c0 + ci) * s.h + ih) * s.w;
        const int64_t a0 = std::clamp(lo, ow0, ow0 + count), a1 = std::clamp(hi, a0, ow0 + count);
        // Short runs (a row of the output): plain loops, no library calls.
        for (int64_t t = 0; t < a0 - ow0; ++t) d[t] = T(0);
        if (s.sw == 1) {
          const T* src = line + off + ow0;
          for (int64_t t = a0 - ow0; t < a1 - ow0; ++t) d[t] = src[t];
        } else {
          for (int64_t ow = a0; ow < a1; ++ow) d[ow - ow0] = line[ow * s.sw + off];
        }
        for (int64_t t = a1 - ow0; t < count; ++t) d[t] = T(0);
      });
    }
  });
}

// The inverse of im2col, added: dx[n, c0 + ci, ih, iw] += dcol[kk * m + (r - r0)]. One task per
// input channel of the group; within it the block's images, and per image the kernel rows and
// positions in order, so every dx element gets its terms in kernel-row order. dcol's entries
// that fall outside the input may be zeroed on the way (it is the caller's scratch).
template <typename T> void col2im_add(T* dx, T* dcol, const ConvShape& s, int64_t c0, int64_t r0, int64_t r1) {
  const int64_t m = r1 - r0, p = s.positions(), hw = s.h * s.w;
  const bool flat = flat_rows(s);
  parallel_for(s.cin_g(), 1, m * s.kh * s.kw, [&](int64_t a, int64_t b) {
    for (int64_t ci = a; ci < b; ++ci)
      for (int64_t r = r0; r < r1;) {
        const int64_t n = r / p, q0 = r % p, q1 = std::min(p, q0 + (r1 - r));
        T* plane = dx + (n * s.c_in + c0 + ci) * hw;
        for (int64_t i = 0; i < s.kh; ++i)
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t off = j * s.dw - s.pw;
            const int64_t lo = first_ow(0, off, s.sw), hi = first_ow(s.w, off, s.sw);
            T* src = dcol + ((ci * s.kh + i) * s.kw + j) * m + (r - r0) - q0;  // src[q], q in [q0, q1)
            if (flat) {
              const int64_t shift = (i * s.dh - s.ph) * s.w + off;
              const int64_t v0 = std::clamp(-shift, q0, q1), v1 = std::clamp(hw - shift, v0, q1);
              zero_columns(src + q0, s, q0, q1, lo, hi);
              if (v1 > v0) add_run(plane + v0 + shift, src + v0, v1 - v0);
              continue;
            }
            for_each_run(s, n * p + q0, n * p + q1, [&](int64_t, int64_t oh, int64_t ow0, int64_t count, int64_t t0) {
              const int64_t ih = oh * s.sh - s.ph + i * s.dh;
              if (ih < 0 || ih >= s.h) return;
              T* line = plane + ih * s.w;
              const T* g = src + q0 + t0;
              const int64_t a0 = std::clamp(lo, ow0, ow0 + count), a1 = std::clamp(hi, a0, ow0 + count);
              if (s.sw == 1) {
                if (a1 > a0) add_run(line + off + a0, g + (a0 - ow0), a1 - a0);
              } else {
                for (int64_t ow = a0; ow < a1; ++ow) line[ow * s.sw + off] += g[ow - ow0];
              }
            });
          }
        r += q1 - q0;
      }
  });
}

// y[n, co0 + co, q] = out[co * m + (r - r0)] for the block's positions r = (n, q) in [r0, r1)
// and co in [0, cols): contiguous runs of each image's planes.
template <typename T>
void rows_to_planes(T* y, const T* out, const ConvShape& s, int64_t co0, int64_t cols, int64_t r0, int64_t r1) {
  const int64_t m = r1 - r0, p = s.positions();
  parallel_for(cols, 1, m, [&](int64_t a, int64_t b) {
    for (int64_t co = a; co < b; ++co)
      for (int64_t r = r0; r < r1;) {
        const int64_t n = r / p, count = std::min(r1, (n + 1) * p) - r;
        const T* src = out + co * m + (r - r0);
        std::copy(src, src + count, y + (n * s.c_out + co0 + co) * p + r % p);
        r += count;
      }
  });
}

// dz[co * m + (r - r0)] = dy at (n, co0 + co, q), or relu'(y) * dy when y is given, for the
// block's positions r = (n, q): contiguous runs of each image's planes.
template <typename T>
void gather_dz(T* dz, const T* dy, const T* y, const ConvShape& s, int64_t co0, int64_t r0, int64_t r1) {
  const int64_t m = r1 - r0, p = s.positions();
  parallel_for(s.cout_g(), 1, m, [&](int64_t a, int64_t b) {
    for (int64_t co = a; co < b; ++co)
      for (int64_t r = r0; r < r1;) {
        const int64_t n = r / p, count = std::min(r1, (n + 1) * p) - r;
        const int64_t src = (n * s.c_out + co0 + co) * p + r % p;
        T* d = dz + co * m + (r - r0);
        if (y)
          relu_grad_run(d, dy + src, y + src, count);
        else
          std::copy(dy + src, dy + src + count, d);
        r += count;
      }
  });
}

template <typename T> void fill(T* p, int64_t count, T value) {
  parallel_for(count, int64_t{1} << 16, 1, [&](int64_t a, int64_t b) { std::fill(p + a, p + b, value); });
}

// d[i] += v[i] (float or double values into double sums).
template <typename T> FDNN_MULTIVERSION void add_double(double* FDNN_RESTRICT d, const T* FDNN_RESTRICT v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] += v[i];
}

// The blocks of output positions, fixed by the shape: an image of more than kBlockPositions
// positions is cut into `parts` equal parts (a task is then one image, its parts in order, so
// that one thread adds into its dx planes), else a block holds `images` whole images (a task is
// one block). Calls f(r0, r1) for the blocks of task t in order.
struct Blocking {
  int64_t p, n, parts, part, images, tasks;

  explicit Blocking(const ConvShape& s) : p(s.positions()), n(s.n) {
    if (p > kBlockPositions) {
      parts = ceil_div(p, kBlockPositions);
      part = ceil_div(p, parts);
      images = 1;
      tasks = n;
    } else {
      parts = 1;
      part = p;
      images = std::max<int64_t>(1, kBlockPositions / std::max<int64_t>(p, 1));
      tasks = ceil_div(n, images);
    }
  }
  int64_t max_rows() const { return parts > 1 ? part : std::min(n, images) * p; }
  template <class F> void for_each_block(int64_t t, F&& f) const {
    if (parts > 1) {
      for (int64_t q0 = 0; q0 < p; q0 += part) f(t * p + q0, t * p + std::min(p, q0 + part));
    } else {
      f(t * images * p, std::min(n, (t + 1) * images) * p);
    }
  }
  // The images of task t: [first, last).
  int64_t first_image(int64_t t) const { return parts > 1 ? t : t * images; }
  int64_t last_image(int64_t t) const { return parts > 1 ? t + 1 : std::min(n, (t + 1) * images); }
};

// Planes per parallel task of the pooling loops: about 16K elements of work, fixed by the shape.
int64_t planes_per_task(int64_t work_per_plane) {
  return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, work_per_plane));
}

}  // namespace

template <typename T>
void conv2d(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act, Stream) {
  if (conv2d_direct(y, x, w, b, s, act)) return;  // direct-path hook (small K): conv_direct_cpu.cpp
  if (s.rows() == 0) return;
  const Blocking bl(s);
  const int64_t k = s.k(), cout_g = s.cout_g(), p = s.positions();
  // With a bias, every weight row gets the bias as its last value and every col a last row of
  // ones: the GEMM's chain then ends with + b (one rounding, as an epilogue's addition).
  const int64_t kb = k + (b ? 1 : 0);
  Buffer<T> wb;
  if (b) {
    wb = scratch<T>(s.c_out * kb);
    for (int64_t co = 0; co < s.c_out; ++co) {
      std::copy(w + co * k, w + (co + 1) * k, wb.get() + co * kb);
      wb[co * kb + k] = b[co];
    }
  }
  const T* wk = b ? wb.get() : w;
  const bool relu = act == Activation::relu;
  const int64_t rows = bl.max_rows();
  // Where the GEMM is the AVX-512 kernel, the weights are packed for it once per call (every
  // block's product reads them; smaller blocks than `rows` pick the same kernel).
  const bool own = gemm_kernel_for(cout_g, rows, kb) == "fusednn-avx512";
  const int64_t packed_w_size = own ? gemm_avx512_packed_a_size<T>(cout_g, kb) : 0;
  Buffer<T> packed_w = scratch<T>(s.groups * packed_w_size);
  for (int64_t g = 0; own && g < s.groups; ++g)
    gemm_avx512_pack_a<T>(false, cout_g, kb, wk + g * cout_g * kb, packed_w.get() + g * packed_w_size);
  // im2col straight into the GEMM's panels (im2col_panels_f32): blocks within one image.
  bool packed = false;
#if FDNN_CONV_AVX512
  packed = flat_avx512<T>() && flat_rows(s) && bl.images == 1 && own;
#endif
  parallel_for(bl.tasks, 1, rows * (kb + cout_g), [&](int64_t t0, int64_t t1) {
    T* col = thread_scratch<T, kColSlot>(packed ? gemm_avx512_packed_b_size<T>(rows, kb) : kb * rows);
    T* out = thread_scratch<T, kOutSlot>(cout_g * rows);
    for (int64_t t = t0; t < t1; ++t)
      bl.for_each_block(t, [&](int64_t r0, int64_t r1) {
        const int64_t m = r1 - r0;
        const bool whole = bl.parts == 1 && m == p;  // one image: the GEMM writes its planes
        for (int64_t g = 0; g < s.groups; ++g) {
          // out (C_out/groups x M) = act(w_g col (+ b_g)), in one GEMM.
          T* dst = whole ? y + ((r0 / p) * s.c_out + g * cout_g) * p : out;
          if (packed) {
#if FDNN_CONV_AVX512
            if constexpr (std::is_same_v<T, float>) {
              im2col_panels_f32(col, x, s, g * s.cin_g(), r0 / p, r0 % p, r0 % p + m, kb);
              gemm_avx512_with_packed_a<T>(false, false, cout_g, m, kb, wk + g * cout_g * kb, col,
                                           packed_w.get() + g * packed_w_size, col, dst, nullptr, relu);
            }
#endif
          } else {
            im2col(col, x, s, g * s.cin_g(), r0, r1);
            if (b) std::fill(col + k * m, col + kb * m, T(1));
            if (own)
              gemm_avx512_with_packed_a<T>(false, false, cout_g, m, kb, wk + g * cout_g * kb, col,
                                           packed_w.get() + g * packed_w_size, nullptr, dst, nullptr, relu);
            else
              gemm<T>(false, false, cout_g, m, kb, wk + g * cout_g * kb, col, dst, nullptr, relu);
          }
          if (!whole) rows_to_planes(y, out, s, g * cout_g, cout_g, r0, r1);
        }
      });
  });
}

template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, const ConvShape& s,
                     Activation act, Stream) {
  if (conv2d_backward_direct(dx, dw, db, dy, x, w, y, s, act)) return;  // direct-path hook: conv_direct_cpu.cpp
  const int64_t k = s.k(), cout_g = s.cout_g(), p = s.positions(), hw = s.h * s.w;
  const T* mask = act == Activation::relu ? y : nullptr;
  if (s.rows() == 0) {  // empty sums
    if (dx) fill(dx, s.n * s.c_in * hw, T(0));
    if (dw) fill(dw, s.c_out * k, T(0));
    if (db) fill(db, s.c_out, T(0));
    return;
  }
  const Blocking bl(s);
  const int64_t rows = bl.max_rows();
  // The dx product's A, w_g^T, packed once per call where it is the AVX-512 kernel (as conv2d's).
  const bool dx_own = dx && gemm_kernel_for(k, rows, cout_g) == "fusednn-avx512";
  const int64_t packed_wt_size = dx_own ? gemm_avx512_packed_a_size<T>(k, cout_g) : 0;
  Buffer<T> packed_wt = scratch<T>(s.groups * packed_wt_size);
  for (int64_t g = 0; dx_own && g < s.groups; ++g)
    gemm_avx512_pack_a<T>(true, k, cout_g, w + g * cout_g * k, packed_wt.get() + g * packed_wt_size);
  const bool dw_own = dw && gemm_kernel_for(cout_g, k, rows) == "fusednn-avx512";  // the dw product's kernel
  // dw's im2col straight into the GEMM's panels, kernel rows in kk' order (dw_panels_f32).
  bool dw_packed = false;
#if FDNN_CONV_AVX512
  dw_packed = dw && flat_avx512<T>() && s.cin_g() % 16 == 0 && padded_hwc_size(s) <= kMaxPadded &&
              dw_own;
#endif
  // The dw and db sums (in double) of a fixed number of chunks of consecutive tasks, added in
  // chunk order at the end: dw at [0, C_out K), db after it.
  const int64_t dw_size = dw ? s.c_out * k : 0, acc_size = dw_size + (db ? s.c_out : 0);
  const int64_t chunks = acc_size ? std::clamp<int64_t>(kSumBudget / acc_size, 1, kMaxChunks) : bl.tasks;
  const int64_t per_chunk = ceil_div(bl.tasks, std::min(chunks, bl.tasks));
  const int64_t n_chunks = ceil_div(bl.tasks, per_chunk);
  Buffer<double> sums = scratch<double>(n_chunks * acc_size);
  parallel_for(bl.tasks, per_chunk, rows * (2 * k + cout_g), [&](int64_t t0, int64_t t1) {
    double* acc = sums.get() + (t0 / per_chunk) * acc_size;
    std::fill(acc, acc + acc_size, 0.0);
    // col, and then (its dw product done) the dx product's packed dz.
    const int64_t col_size = std::max(dw ? (dw_packed ? gemm_avx512_packed_b_size<T>(k, rows) : k * rows) : 0,
                                      dx_own ? gemm_avx512_packed_b_size<T>(rows, cout_g) : 0);
    T* col = col_size ? thread_scratch<T, kColSlot>(col_size) : nullptr;
    T* xp = dw_packed ? thread_scratch<T, kPadSlot>(padded_hwc_size(s)) : nullptr;
    T* dz_buf = thread_scratch<T, kOutSlot>(cout_g * rows);
    T* dcol = dx ? thread_scratch<T, kDcolSlot>(k * rows) : nullptr;
    T* dw_part = dw ? thread_scratch<T, kPartSlot>(cout_g * k) : nullptr;
    for (int64_t t = t0; t < t1; ++t) {
      if (dx) std::fill(dx + bl.first_image(t) * s.c_in * hw, dx + bl.last_image(t) * s.c_in * hw, T(0));
      bl.for_each_block(t, [&](int64_t r0, int64_t r1) {
        const int64_t m = r1 - r0;
        const bool whole = bl.parts == 1 && m == p;
        for (int64_t g = 0; g < s.groups; ++g) {
          const T* dz = dz_buf;
          if (whole && !mask)  // one image's planes are the block's dz
            dz = dy + ((r0 / p) * s.c_out + g * cout_g) * p;
          else
            gather_dz(dz_buf, dy, mask, s, g * cout_g, r0, r1);
          if (db)  // db += the block's sums of dz, per channel in double
            for (int64_t co = 0; co < cout_g; ++co) acc[dw_size + g * cout_g + co] += sum_double(dz + co * m, m);
          if (dw) {  // dw_g += dz col^T: (C_out/groups x M) (M x K)
            // The AVX-512 kernel adds its results into the double sums itself.
            double* dw_acc = acc + g * cout_g * k;
            if (dw_packed) {
#if FDNN_CONV_AVX512
              if constexpr (std::is_same_v<T, float>) {
                dw_panels_f32(col, xp, x, s, g * s.cin_g(), r0, r1);
                gemm_avx512_add_to_double<T>(false, true, cout_g, k, m, dz, col, col, dw_part, dw_acc);
              }
#endif
            } else {
              im2col(col, x, s, g * s.cin_g(), r0, r1);
              if (dw_own) {
                gemm_avx512_add_to_double<T>(false, true, cout_g, k, m, dz, col, nullptr, dw_part, dw_acc);
              } else {
                gemm<T>(false, true, cout_g, k, m, dz, col, dw_part, nullptr, false);
                add_double(dw_acc, dw_part, cout_g * k);
              }
            }
          }
          if (dx) {  // dcol = w_g^T dz: (K x C_out/groups) (C_out/groups x M), then col2im
            if (dx_own) {  // dz packed once for all the row blocks of dcol (into col: its dw product is done)
              gemm_avx512_pack_b<T>(false, m, cout_g, dz, col);
              gemm_avx512_with_packed_a<T>(true, false, k, m, cout_g, w + g * cout_g * k, dz,
                                           packed_wt.get() + g * packed_wt_size, col, dcol, nullptr, false);
            }
            else
              gemm<T>(true, false, k, m, cout_g, w + g * cout_g * k, dz, dcol, nullptr, false);
            col2im_add(dx, dcol, s, g * s.cin_g(), r0, r1);
          }
        }
      });
    }
  });
  if (acc_size)
    parallel_for(acc_size, int64_t{1} << 14, 2 * n_chunks, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) {
        double v = sums[i];
        for (int64_t c = 1; c < n_chunks; ++c) v += sums[c * acc_size + i];
        if (i >= dw_size)
          db[i - dw_size] = static_cast<T>(v);
        else if (dw_packed)  // i = co K + kk', kk' = tap C_in/groups + ci
          dw[i / k * k + (i % k) % s.cin_g() * (s.kh * s.kw) + (i % k) / s.cin_g()] = static_cast<T>(v);
        else
          dw[i] = static_cast<T>(v);
      }
    });
}

// Max pooling of the windows of one output row that lie inside the input (ow in [o0, o1), rows
// h0 .. h0 + kh - 1): the window's first element, then the others in row-major window order,
// taken when greater or NaN (the general loop's choice), as branch-free selects over a chunk of
// outputs so that the compiler vectorizes across ow.
template <typename T>
FDNN_MULTIVERSION void max_pool_row_inside(T* FDNN_RESTRICT y, int64_t* FDNN_RESTRICT idx, const T* FDNN_RESTRICT plane,
                                           const PoolShape& s, int64_t h0, int64_t o0, int64_t o1) {
  constexpr int64_t kChunk = 64;
  T best[kChunk];
  int64_t at[kChunk];
  for (int64_t c0 = o0; c0 < o1; c0 += kChunk) {
    const int64_t count = std::min(kChunk, o1 - c0);
    const int64_t first = h0 * s.w + c0 * s.sw - s.pw;  // window (0, 0) of output c0
    for (int64_t t = 0; t < count; ++t) {
      best[t] = plane[first + t * s.sw];
      at[t] = first + t * s.sw;
    }
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = (i == 0 ? 1 : 0); j < s.kw; ++j) {
        const int64_t pos = first + i * s.w + j;
        for (int64_t t = 0; t < count; ++t) {
          const T v = plane[pos + t * s.sw];
          const bool take = v > best[t] || v != v;
          best[t] = take ? v : best[t];
          at[t] = take ? pos + t * s.sw : at[t];
        }
      }
    for (int64_t t = 0; t < count; ++t) {
      y[c0 + t] = best[t];
      idx[c0 + t] = at[t];
    }
  }
}

// Average pooling's window sums of one output row whose windows lie inside the input (ow in
// [o0, o1), rows h0 .. h0 + kh - 1), in double, each window's elements added in row-major order
// from 0 (the general loop's order, so the same values; a NaN's sign may differ where a window
// adds a NaN to the NaN of inf - inf), over a chunk of outputs so that the
// compiler vectorizes across ow. kStride: the stride along W as a constant (1 or 2: contiguous
// loads, or even/odd lanes), 0 for s.sw at run time. Each sum is divided by kh kw. (The general
// loop, one window at a time with its bounds, took 1.17 ns per float32 input element for 2x2
// windows at stride 2 and 6.8 for 3x3 at stride 1 on one Zen 4 core; these rows 0.42 and 2.0.)
template <typename T, int kStride>
FDNN_MULTIVERSION void avg_pool_row_inside_at(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT plane, const PoolShape& s,
                                              int64_t h0, int64_t o0, int64_t o1) {
  constexpr int64_t kChunk = 64;
  const int64_t sw = kStride > 0 ? kStride : s.sw;
  const double count = static_cast<double>(s.kh * s.kw);
  double sum[kChunk];
  for (int64_t c0 = o0; c0 < o1; c0 += kChunk) {
    const int64_t n = std::min(kChunk, o1 - c0);
    const int64_t first = h0 * s.w + c0 * sw - s.pw;
    for (int64_t t = 0; t < n; ++t) sum[t] = 0.0;
    for (int64_t i = 0; i < s.kh; ++i)
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t pos = first + i * s.w + j;
        for (int64_t t = 0; t < n; ++t) sum[t] += static_cast<double>(plane[pos + t * sw]);
      }
    for (int64_t t = 0; t < n; ++t) y[c0 + t] = static_cast<T>(sum[t] / count);
  }
}

template <typename T>
void avg_pool_row_inside(T* y, const T* plane, const PoolShape& s, int64_t h0, int64_t o0, int64_t o1) {
  if (s.sw == 1)
    avg_pool_row_inside_at<T, 1>(y, plane, s, h0, o0, o1);
  else if (s.sw == 2)
    avg_pool_row_inside_at<T, 2>(y, plane, s, h0, o0, o1);
  else
    avg_pool_row_inside_at<T, 0>(y, plane, s, h0, o0, o1);
}

#if FDNN_CONV_AVX512
// Max pooling of float32 planes with 2x2 windows at stride 2 and no padding (every window inside
// the input), on AVX-512: per output row, 16 outputs at a time from two rows' even and odd
// lanes (the tail masked), with the general loop's choice: the window's first element, then the
// others in row-major order, taken when greater or NaN; the winner's flat index ih * w + iw.
// best = v and (at_lo, at_hi) = the flat index `offset` past the window's first element in the
// lanes where v is greater than best or NaN.
FDNN_AVX512_INLINE void pool_take(__m512 v, int64_t offset, __m512i first_lo, __m512i first_hi, __m512& best,
                                  __m512i& at_lo, __m512i& at_hi) {
  const __mmask16 take = _mm512_cmp_ps_mask(v, best, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  best = _mm512_mask_mov_ps(best, take, v);
  const __m512i off = _mm512_set1_epi64(offset);
  at_lo = _mm512_mask_add_epi64(at_lo, static_cast<__mmask8>(take), first_lo, off);
  at_hi = _mm512_mask_add_epi64(at_hi, static_cast<__mmask8>(take >> 8), first_hi, off);
}

FDNN_AVX512 void max_pool_planes_2x2(float* y, int64_t* idx, const float* x, int64_t planes, int64_t h, int64_t w,
                                     int64_t oh, int64_t ow) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  const __m512i lane2 = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
  for (int64_t pl = 0; pl < planes; ++pl) {
    const float* plane = x + pl * h * w;
    float* y_pl = y + pl * oh * ow;
    int64_t* idx_pl = idx + pl * oh * ow;
    for (int64_t r = 0; r < oh; ++r) {
      const float* r0 = plane + 2 * r * w;
      const float* r1 = r0 + w;
      for (int64_t c0 = 0; c0 < ow; c0 += 16) {
        const int count = static_cast<int>(std::min<int64_t>(16, ow - c0));
        const __mmask16 m = Zmm<float>::first(count), m_lo = Zmm<float>::first(2 * count),
                        m_hi = Zmm<float>::first(std::max(0, 2 * count - 16));
        const int64_t a = 2 * c0;
        const __m512 t0 = _mm512_maskz_loadu_ps(m_lo, r0 + a), t1 = _mm512_maskz_loadu_ps(m_hi, r0 + a + 16);
        const __m512 b0 = _mm512_maskz_loadu_ps(m_lo, r1 + a), b1 = _mm512_maskz_loadu_ps(m_hi, r1 + a + 16);
        // The windows' first elements: flat index 2 r w + 2 (c0 + t), lanes 0-7 and 8-15.
        const __m512i first_lo = _mm512_add_epi64(_mm512_set1_epi64(2 * r * w + a), lane2);
        const __m512i first_hi = _mm512_add_epi64(first_lo, _mm512_set1_epi64(16));
        __m512 best = _mm512_permutex2var_ps(t0, even, t1);
        __m512i at_lo = first_lo, at_hi = first_hi;
        pool_take(_mm512_permutex2var_ps(t0, odd, t1), 1, first_lo, first_hi, best, at_lo, at_hi);
        pool_take(_mm512_permutex2var_ps(b0, even, b1), w, first_lo, first_hi, best, at_lo, at_hi);
        pool_take(_mm512_permutex2var_ps(b0, odd, b1), w + 1, first_lo, first_hi, best, at_lo, at_hi);
        _mm512_mask_storeu_ps(y_pl + r * ow + c0, m, best);
        _mm512_mask_storeu_epi64(idx_pl + r * ow + c0, static_cast<__mmask8>(m), at_lo);
        _mm512_mask_storeu_epi64(idx_pl + r * ow + c0 + 8, static_cast<__mmask8>(m >> 8), at_hi);
      }
    }
  }
}
#endif

template <typename T> void max_pool2d(T* y, int64_t* idx, const T* x, const PoolShape& s, Stream) {
  const int64_t out = s.oh * s.ow;
#if FDNN_CONV_AVX512
  if constexpr (std::is_same_v<T, float>) {
    static const bool avx512 = gemm_avx512_supported();
    if (avx512 && s.kh == 2 && s.kw == 2 && s.sh == 2 && s.sw == 2 && s.ph == 0 && s.pw == 0) {
      parallel_for(s.planes, planes_per_task(out * 4), out * 4, [&](int64_t a, int64_t b) {
        max_pool_planes_2x2(y + a * out, idx + a * out, x + a * s.h * s.w, b - a, s.h, s.w, s.oh, s.ow);
      });
      return;
    }
  }
#endif
  // The outputs whose windows lie inside the input along W: [ow_lo, ow_hi).
  const int64_t ow_lo = std::min(s.ow, (s.pw + s.sw - 1) / s.sw);
  const int64_t ow_hi = s.w + s.pw - s.kw < 0 ? 0 : std::min(s.ow, (s.w + s.pw - s.kw) / s.sw + 1);
  parallel_for(s.planes, planes_per_task(out * s.kh * s.kw), out * s.kh * s.kw, [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* plane = x + pl * s.h * s.w;
      T* y_pl = y + pl * out;
      int64_t* idx_pl = idx + pl * out;
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        const int64_t h0 = oh * s.sh - s.ph, ha = std::max<int64_t>(h0, 0), hb = std::min(h0 + s.kh, s.h);
        const bool rows_inside = h0 >= 0 && h0 + s.kh <= s.h;
        auto general = [&](int64_t ow) {  // any window: the positions inside the input only
          const int64_t w0 = ow * s.sw - s.pw, wa = std::max<int64_t>(w0, 0), wb = std::min(w0 + s.kw, s.w);
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_i = ha * s.w + wa;
          for (int64_t ih = ha; ih < hb; ++ih)
            for (int64_t iw = wa; iw < wb; ++iw) {
              const T v = plane[ih * s.w + iw];
              if (v > best || std::isnan(v)) {
                best = v;
                best_i = ih * s.w + iw;
              }
            }
          y_pl[oh * s.ow + ow] = best;
          idx_pl[oh * s.ow + ow] = best_i;
        };
        if (!rows_inside || ow_lo >= ow_hi) {
          for (int64_t ow = 0; ow < s.ow; ++ow) general(ow);
          continue;
        }
        for (int64_t ow = 0; ow < ow_lo; ++ow) general(ow);
        max_pool_row_inside(y_pl + oh * s.ow, idx_pl + oh * s.ow, plane, s, h0, ow_lo, ow_hi);
        for (int64_t ow = ow_hi; ow < s.ow; ++ow) general(ow);
      }
    }
  });
}

template <typename T>
int64_t max_pool2d_backward(T* dx, const T* dy, const int64_t* idx, const PoolShape& s, Stream) {
  const int64_t out = s.oh * s.ow, in = s.h * s.w;
  const int64_t per_task = planes_per_task(in + out);
  Buffer<int64_t> bad = scratch<int64_t>(ceil_div(s.planes, per_task));
  parallel_for(s.planes, per_task, in + out, [&](int64_t a, int64_t b) {
    int64_t skipped = 0;
    for (int64_t pl = a; pl < b; ++pl) {
      T* plane = dx + pl * in;
      std::fill(plane, plane + in, T(0));
      for (int64_t o = pl * out; o < (pl + 1) * out; ++o) {
        const int64_t i = idx[o];
        if (i < 0 || i >= in)
          ++skipped;
        else
          plane[i] += dy[o];
      }
    }
    bad[a / per_task] = skipped;
  });
  int64_t skipped = 0;
  for (int64_t t = 0; t < ceil_div(s.planes, per_task); ++t) skipped += bad[t];
  return skipped;
}

template <typename T> void avg_pool2d(T* y, const T* x, const PoolShape& s, bool count_include_pad, Stream) {
  using Acc = double;
  const int64_t out = s.oh * s.ow;
  // The outputs whose windows lie inside the input along W: [ow_lo, ow_hi) (as max_pool2d).
  const int64_t ow_lo = std::min(s.ow, (s.pw + s.sw - 1) / s.sw);
  const int64_t ow_hi = s.w + s.pw - s.kw < 0 ? 0 : std::min(s.ow, (s.w + s.pw - s.kw) / s.sw + 1);
  parallel_for(s.planes, planes_per_task(out * s.kh * s.kw), out * s.kh * s.kw, [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* plane = x + pl * s.h * s.w;
      T* y_pl = y + pl * out;
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        const int64_t h0 = oh * s.sh - s.ph, ha = std::max<int64_t>(h0, 0), hb = std::min(h0 + s.kh, s.h);
        const auto general = [&](int64_t ow) {  // any window: the positions inside the input only
          const int64_t w0 = ow * s.sw - s.pw, wa = std::max<int64_t>(w0, 0), wb = std::min(w0 + s.kw, s.w);
          Acc sum = 0;
          for (int64_t ih = ha; ih < hb; ++ih)
            for (int64_t iw = wa; iw < wb; ++iw) sum += plane[ih * s.w + iw];
          const int64_t count = count_include_pad ? s.kh * s.kw : (hb - ha) * (wb - wa);
          y_pl[oh * s.ow + ow] = static_cast<T>(sum / Acc(count));
        };
        if (h0 < 0 || h0 + s.kh > s.h || ow_lo >= ow_hi) {
          for (int64_t ow = 0; ow < s.ow; ++ow) general(ow);
          continue;
        }
        for (int64_t ow = 0; ow < ow_lo; ++ow) general(ow);
        avg_pool_row_inside(y_pl + oh * s.ow, plane, s, h0, ow_lo, ow_hi);
        for (int64_t ow = ow_hi; ow < s.ow; ++ow) general(ow);
      }
    }
  });
}

// One dx row of avg_pool2d_backward for windows that tile the input (stride = kernel, no
// padding): dx[iw] = 0 + g[iw / kw] for the columns the windows cover, 0 past them; the value
// the general loop's one addition to the zeroed plane gives (-0 included). kKw: kw as a constant
// (2: a loop that vectorizes), 0 for kw at run time.
template <typename T, int kKw>
FDNN_MULTIVERSION void avg_pool_tiled_row(T* FDNN_RESTRICT row, const T* FDNN_RESTRICT g, int64_t ow, int64_t kw_rt,
                                          int64_t w) {
  const int64_t kw = kKw > 0 ? kKw : kw_rt;
  if constexpr (kKw > 0) {
    for (int64_t iw = 0; iw < ow * kw; ++iw) row[iw] = T(0) + g[iw / kw];
  } else {
    for (int64_t o = 0; o < ow; ++o)
      for (int64_t j = 0; j < kw; ++j) row[o * kw + j] = T(0) + g[o];
  }
  for (int64_t iw = ow * kw; iw < w; ++iw) row[iw] = T(0);
}

template <typename T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s, bool count_include_pad, Stream) {
  const int64_t out = s.oh * s.ow, in = s.h * s.w;
  if (s.sh == s.kh && s.sw == s.kw && s.ph == 0 && s.pw == 0) {
    // Windows that tile the input: each dx element gets at most one window's share, so the rows
    // are written directly (the general loop's scatter: 1.25 ns per float32 input element for
    // 2x2 windows on one Zen 4 core, against 0.23 for max pooling's backward).
    const T count = T(s.kh * s.kw);
    parallel_for(s.planes, planes_per_task(in + out), in + out, [&](int64_t a, int64_t b) {
      std::vector<T> g(static_cast<size_t>(s.ow));
      for (int64_t pl = a; pl < b; ++pl) {
        T* plane = dx + pl * in;
        for (int64_t oh = 0; oh < s.oh; ++oh) {
          for (int64_t ow = 0; ow < s.ow; ++ow) g[ow] = dy[pl * out + oh * s.ow + ow] / count;
          for (int64_t i = 0; i < s.kh; ++i) {
            T* row = plane + (oh * s.kh + i) * s.w;
            if (s.kw == 2)
              avg_pool_tiled_row<T, 2>(row, g.data(), s.ow, 2, s.w);
            else
              avg_pool_tiled_row<T, 0>(row, g.data(), s.ow, s.kw, s.w);
          }
        }
        std::fill(plane + s.oh * s.kh * s.w, plane + in, T(0));  // rows past the windows
      }
    });
    return;
  }
  parallel_for(s.planes, planes_per_task(in + out * s.kh * s.kw), in + out * s.kh * s.kw, [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      T* plane = dx + pl * in;
      std::fill(plane, plane + in, T(0));
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        const int64_t h0 = oh * s.sh - s.ph, ha = std::max<int64_t>(h0, 0), hb = std::min(h0 + s.kh, s.h);
        for (int64_t ow = 0; ow < s.ow; ++ow) {
          const int64_t w0 = ow * s.sw - s.pw, wa = std::max<int64_t>(w0, 0), wb = std::min(w0 + s.kw, s.w);
          const int64_t count = count_include_pad ? s.kh * s.kw : (hb - ha) * (wb - wa);
          const T g = dy[pl * out + oh * s.ow + ow] / T(count);
          for (int64_t ih = ha; ih < hb; ++ih)
            for (int64_t iw = wa; iw < wb; ++iw) plane[ih * s.w + iw] += g;
        }
      }
    }
  });
}

template <typename T> void global_avg_pool2d(T* y, const T* x, int64_t planes, int64_t hw, Stream) {
  parallel_for(planes, planes_per_task(hw), hw, [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) y[pl] = static_cast<T>(sum_double(x + pl * hw, hw) / double(hw));
  });
}

template <typename T> void global_avg_pool2d_backward(T* dx, const T* dy, int64_t planes, int64_t hw, Stream) {
  parallel_for(planes, planes_per_task(hw), hw, [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) std::fill(dx + pl * hw, dx + (pl + 1) * hw, dy[pl] / T(hw));
  });
}

FDNN_CONV_INSTANTIATE(float)
FDNN_CONV_INSTANTIATE(double)

}  // namespace fdnn
