// Direct CPU convolution for a small C_in * kH * kW (conv.h's direct block): the first layer of a
// CNN, where the im2col GEMM has a small K and is bound by memory, not by arithmetic.
//
// Work unit: a chunk of at most kChunk output positions p = oh * OW + ow: an image of more than
// kChunk positions is cut into equal parts, smaller images go whole, as many per chunk as fit
// (each at a column offset rounded up to the vector width). Per chunk, the K input values under
// each position are gathered into a small column matrix col (K x ld; zeros in the padding and
// between the images), which stays in L1/L2:
// - forward: y[n, co, p] = act(b[co] + sum_kk w[co, kk] col[kk, p]), 4 channels x 4 vectors of
//   positions per register block, stored straight into the NCHW output (the ReLU as the select
//   "v < 0 ? 0 : v", so NaN passes as in common/activation.h);
// - backward: dz = relu'(y) dy for the chunk's positions (C_out x ld), then dw[co, kk] += sum_p
//   dz[co, p] col[kk, p] in 8 x 3 register blocks of vector lanes over the whole chunk, dx's
//   column gradient dcol = w^T dz (4 x 4 blocks, as the forward) added back onto the images
//   (col2im), and db[co] += sum_p dz[co, p].
//
// Vectors: GCC's 64-byte vector extensions in functions compiled for AVX-512F (target attribute;
// the module itself is built for the portable baseline), so the dispatch takes this path only on
// CPUs with AVX-512F; elsewhere (and with other compilers) the im2col path (conv_cpu.cpp) is the
// portable one.
//
// Accuracy and determinism: the weight and bias gradients are sums over N * OH * OW positions. Each
// vector lane sums its positions of one chunk in T (at most kChunk / 16 = 64 products in
// float32), the lanes are added to per-lane double accumulators after every chunk, and a task's
// lanes are added in a fixed order at its end. Tasks are fixed runs of chunks holding whole images
// (at most kMaxTasks, of at least kTaskPositions positions where there are; a task also owns its
// images' dx, so no two threads add into the same dx plane); each writes its own double partial,
// and the partials are added in task order. The result depends on the shapes only, never on the
// thread count.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/avx512_paths.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "ops/conv.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)

// GCC warns that a 64-byte vector argument changes the ABI without AVX-512; every such function
// here is inlined into a function compiled for AVX-512F.
#pragma GCC diagnostic ignored "-Wpsabi"

#define FDNN_DIRECT __attribute__((target("avx512f,avx2,fma")))
#define FDNN_DIRECT_INLINE __attribute__((target("avx512f,avx2,fma"), always_inline)) inline

namespace fdnn {
namespace {

constexpr int64_t kChunk = 1024;  // output positions per chunk, at most
constexpr int64_t kFwdRows = 4;   // channels per forward (and dx) register block
constexpr int64_t kFwdVecs = 4;   // vectors of positions per forward (and dx) register block
constexpr int64_t kDwRows = 8;    // channels per dw register block
constexpr int64_t kDwCols = 3;    // kernel taps per dw register block
constexpr int64_t kMaxTasks = 32;  // backward tasks, at most
constexpr int64_t kTaskPositions = 4096;  // output positions per backward task, at least (where there are)

template <typename T> struct Vec;
template <> struct Vec<float> {
  typedef float V __attribute__((vector_size(64)));
  typedef double D __attribute__((vector_size(128)));  // V's lanes in double
  static constexpr int64_t L = 16;
};
template <> struct Vec<double> {
  typedef double V __attribute__((vector_size(64)));
  typedef double D __attribute__((vector_size(64)));
  static constexpr int64_t L = 8;
};

template <typename V, typename T> FDNN_DIRECT_INLINE V vload(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}
template <typename V, typename T> FDNN_DIRECT_INLINE void vstore(T* p, const V& v) { std::memcpy(p, &v, sizeof(V)); }

// The smallest ow >= 0 with ow * stride + off >= v.
inline int64_t first_ow(int64_t v, int64_t off, int64_t stride) {
  return v - off <= 0 ? 0 : (v - off + stride - 1) / stride;
}

// The chunks: an image of P positions is cut into per_image = ceil(P / kChunk) equal parts of
// `size` positions (the last one shorter); where that is the whole image (P <= kChunk), a chunk
// holds `images` whole images instead (as many as fit in kChunk positions). A chunk's segments are
// its images' parts, each at a column offset that is a multiple of seg_ld = size rounded up to the
// vector width; its matrices' rows are ld = images * seg_ld elements long.
struct Plan {
  int64_t per_image, size, seg_ld, images, ld, chunks;
};
template <typename T> Plan plan_of(const ConvShape& s) {
  Plan q;
  const int64_t p = s.positions();
  q.per_image = ceil_div(p, kChunk);
  q.size = ceil_div(p, q.per_image);
  q.seg_ld = round_up(q.size, Vec<T>::L);
  q.images = q.per_image > 1 ? 1 : std::max<int64_t>(1, kChunk / q.seg_ld);
  q.ld = q.images * q.seg_ld;
  q.chunks = q.per_image > 1 ? s.n * q.per_image : ceil_div(s.n, q.images);
  return q;
}

struct Segment {
  int64_t n, p0, cp, off;  // positions [p0, p0 + cp) of image n, at column off of the chunk
};
constexpr int64_t kMaxSegments = kChunk / 8;

// The segments of chunk c, in column order; returns their number.
inline int64_t segments_of(const Plan& q, const ConvShape& s, int64_t c, Segment* seg) {
  if (q.per_image > 1) {
    const int64_t p0 = (c % q.per_image) * q.size;
    seg[0] = {c / q.per_image, p0, std::min(s.positions(), p0 + q.size) - p0, 0};
    return 1;
  }
  const int64_t n0 = c * q.images, count = std::min(s.n, n0 + q.images) - n0;
  for (int64_t i = 0; i < count; ++i) seg[i] = {n0 + i, 0, s.positions(), i * q.seg_ld};
  return count;
}

// The vectors of a chunk that hold positions: [0, nv).
template <typename T> int64_t vectors_of(const Segment* seg, int64_t count) {
  return ceil_div(seg[count - 1].off + seg[count - 1].cp, Vec<T>::L);
}

// col[kk * ld + t] = x[n, ci, oh * sh - ph + i * dh, ow * sw - pw + j * dw] (0 outside the image)
// for kk = (ci * kh + i) * kw + j < K and the segment's positions p0 + t = oh * OW + ow, t < cp;
// 0 for t in [cp, seg_ld). xn is image n, col the segment's first column.
template <typename T>
FDNN_DIRECT void fill_col(T* FDNN_RESTRICT col, int64_t ld, int64_t seg_ld, const T* FDNN_RESTRICT xn,
                          const ConvShape& s, int64_t p0, int64_t cp) {
  const int64_t k = s.k();
  for (int64_t kk = 0; kk < k; ++kk) {
    const int64_t ci = kk / (s.kh * s.kw), i = (kk / s.kw) % s.kh, j = kk % s.kw;
    const int64_t off = j * s.dw - s.pw;
    const int64_t lo = first_ow(0, off, s.sw), hi = first_ow(s.w, off, s.sw);  // valid ow: [lo, hi)
    const T* plane = xn + ci * s.h * s.w;
    T* d = col + kk * ld;
    int64_t oh = p0 / s.ow, ow0 = p0 % s.ow;
    for (int64_t t = 0; t < cp;) {
      const int64_t count = std::min(s.ow - ow0, cp - t);
      const int64_t ih = oh * s.sh - s.ph + i * s.dh;
      T* dd = d + t - ow0;  // dd[ow] is position (oh, ow)
      if (ih < 0 || ih >= s.h) {
        for (int64_t ow = ow0; ow < ow0 + count; ++ow) dd[ow] = T(0);
      } else {
        const T* line = plane + ih * s.w + off;  // line[ow * sw] is the tap of position ow
        const int64_t a0 = std::clamp(lo, ow0, ow0 + count), a1 = std::clamp(hi, a0, ow0 + count);
        for (int64_t ow = ow0; ow < a0; ++ow) dd[ow] = T(0);
        if (s.sw == 1)
          for (int64_t ow = a0; ow < a1; ++ow) dd[ow] = line[ow];
        else
          for (int64_t ow = a0; ow < a1; ++ow) dd[ow] = line[ow * s.sw];
        for (int64_t ow = a1; ow < ow0 + count; ++ow) dd[ow] = T(0);
      }
      t += count;
      ow0 = 0;
      ++oh;
    }
    for (int64_t t = cp; t < seg_ld; ++t) d[t] = T(0);
  }
}

// The inverse of fill_col, added: dxn[ci, ih, iw] += dcol[kk * ld + t] for the chunk's positions,
// the taps in order.
template <typename T>
FDNN_DIRECT void col2im_add(T* FDNN_RESTRICT dxn, const T* FDNN_RESTRICT dcol, int64_t ld, const ConvShape& s,
                            int64_t p0, int64_t cp) {
  const int64_t k = s.k();
  for (int64_t kk = 0; kk < k; ++kk) {
    const int64_t ci = kk / (s.kh * s.kw), i = (kk / s.kw) % s.kh, j = kk % s.kw;
    const int64_t off = j * s.dw - s.pw;
    const int64_t lo = first_ow(0, off, s.sw), hi = first_ow(s.w, off, s.sw);
    T* plane = dxn + ci * s.h * s.w;
    const T* g = dcol + kk * ld;
    int64_t oh = p0 / s.ow, ow0 = p0 % s.ow;
    for (int64_t t = 0; t < cp;) {
      const int64_t count = std::min(s.ow - ow0, cp - t);
      const int64_t ih = oh * s.sh - s.ph + i * s.dh;
      if (ih >= 0 && ih < s.h) {
        const T* gg = g + t - ow0;
        T* line = plane + ih * s.w + off;
        const int64_t a0 = std::clamp(lo, ow0, ow0 + count), a1 = std::clamp(hi, a0, ow0 + count);
        if (s.sw == 1)
          for (int64_t ow = a0; ow < a1; ++ow) line[ow] += gg[ow];
        else
          for (int64_t ow = a0; ow < a1; ++ow) line[ow * s.sw] += gg[ow];
      }
      t += count;
      ow0 = 0;
      ++oh;
    }
  }
}

// acc[r][v] = sum_{k < kdim} a[r * lda + k] * b[k * ldb + v * L]: R rows of a times V vectors of b.
template <typename T, int R, int V>
FDNN_DIRECT_INLINE void rows_times_cols(typename Vec<T>::V (&acc)[R][V], const T* FDNN_RESTRICT a, int64_t lda,
                                        const T* FDNN_RESTRICT b, int64_t ldb, int64_t kdim) {
  using Vt = typename Vec<T>::V;
  constexpr int64_t L = Vec<T>::L;
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < V; ++v) acc[r][v] = Vt{};
  for (int64_t k = 0; k < kdim; ++k) {
    Vt bv[V];
    for (int v = 0; v < V; ++v) bv[v] = vload<Vt>(b + k * ldb + v * L);
    for (int r = 0; r < R; ++r) {
      const T av = a[r * lda + k];
      for (int v = 0; v < V; ++v) acc[r][v] += bv[v] * av;
    }
  }
}

// Where a chunk's vectors go in the NCHW output: vector v holds the positions of offset base[v]
// (channel 0's) .. base[v] + count[v] - 1; count[v] <= 0 for a vector of padding only.
struct VectorMap {
  int64_t base[kChunk / 8], count[kChunk / 8];
};

template <typename T>
void map_vectors(VectorMap& m, const Plan& q, const ConvShape& s, const Segment* seg, int64_t nv) {
  constexpr int64_t L = Vec<T>::L;
  for (int64_t v = 0; v < nv; ++v) {
    const Segment& g = seg[v * L / q.seg_ld];
    const int64_t t = v * L - g.off;
    m.base[v] = g.n * s.c_out * s.positions() + g.p0 + t;
    m.count[v] = std::min(L, g.cp - t);
  }
}

// Forward of one register block: channels co0 .. co0 + kFwdRows - 1 (those < C_out stored), the
// chunk's vectors v0 .. v0 + V - 1.
template <typename T, int V>
FDNN_DIRECT_INLINE void forward_block(T* y, const T* wp, const T* b, const T* col, int64_t ld, const ConvShape& s,
                                      bool relu, const VectorMap& m, int64_t co0, int64_t v0) {
  using Vt = typename Vec<T>::V;
  constexpr int64_t L = Vec<T>::L;
  constexpr int R = kFwdRows;
  const int64_t k = s.k(), p = s.positions();
  Vt acc[R][V];
  rows_times_cols<T, R, V>(acc, wp + co0 * k, k, col + v0 * L, ld, k);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (co0 + r >= s.c_out) break;
    const T bias = b ? b[co0 + r] : T(0);
    T* dst = y + (co0 + r) * p;
#pragma GCC unroll 8
    for (int v = 0; v < V; ++v) {
      Vt o = acc[r][v] + bias;
      if (relu) o = o < Vt{} ? Vt{} : o;
      const int64_t at = m.base[v0 + v], count = m.count[v0 + v];
      if (count == L) {
        vstore(dst + at, o);
      } else if (count > 0) {
        T tmp[L];
        vstore(tmp, o);
        for (int64_t e = 0; e < count; ++e) dst[at + e] = tmp[e];
      }
    }
  }
}

// The forward of chunk c, every channel. wp: w with its rows padded with zeros to a multiple of
// kFwdRows.
template <typename T>
FDNN_DIRECT void forward_chunk(T* y, const T* x, const T* wp, const T* b, const ConvShape& s, bool relu, const Plan& q,
                               int64_t c, T* col) {
  Segment seg[kMaxSegments];
  const int64_t count = segments_of(q, s, c, seg);
  for (int64_t i = 0; i < count; ++i)
    fill_col(col + seg[i].off, q.ld, q.seg_ld, x + seg[i].n * s.c_in * s.h * s.w, s, seg[i].p0, seg[i].cp);
  const int64_t nv = vectors_of<T>(seg, count);
  VectorMap m;
  map_vectors<T>(m, q, s, seg, nv);
  for (int64_t co0 = 0; co0 < s.c_out; co0 += kFwdRows) {
    int64_t v0 = 0;
    for (; v0 + kFwdVecs <= nv; v0 += kFwdVecs) forward_block<T, kFwdVecs>(y, wp, b, col, q.ld, s, relu, m, co0, v0);
    for (; v0 < nv; ++v0) forward_block<T, 1>(y, wp, b, col, q.ld, s, relu, m, co0, v0);
  }
}

// dz[co * ld + t] = relu'(y) dy (mask) or dy at (n, co, p0 + t) for t < cp, 0 for t in
// [cp, seg_ld) (dz: the segment's first column); with dbl: dbl[co * L + lane] += the lane's sum
// of the row (in T), in double.
template <typename T>
FDNN_DIRECT void fill_dz(T* FDNN_RESTRICT dz, double* FDNN_RESTRICT dbl, int64_t ld, int64_t seg_ld,
                         const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT mask, const ConvShape& s, int64_t n,
                         int64_t p0, int64_t cp) {
  using Vt = typename Vec<T>::V;
  using Dt = typename Vec<T>::D;
  constexpr int64_t L = Vec<T>::L;
  const int64_t p = s.positions();
  for (int64_t co = 0; co < s.c_out; ++co) {
    const int64_t src = (n * s.c_out + co) * p + p0;
    T* d = dz + co * ld;
    Vt sum{};
    for (int64_t t = 0; t < cp; t += L) {
      Vt g, yv{};
      if (t + L <= cp) {
        g = vload<Vt>(dy + src + t);
        if (mask) yv = vload<Vt>(mask + src + t);
      } else {  // the chunk's last, partial vector: zeros past cp
        T gt[L] = {}, yt[L] = {};
        for (int64_t e = 0; e < cp - t; ++e) {
          gt[e] = dy[src + t + e];
          if (mask) yt[e] = mask[src + t + e];
        }
        g = vload<Vt>(gt);
        yv = vload<Vt>(yt);
      }
      if (mask) g = yv > Vt{} ? g : Vt{};
      vstore(d + t, g);
      sum += g;
    }
    for (int64_t t = round_up(cp, L); t < seg_ld; ++t) d[t] = T(0);
    if (dbl) vstore(dbl + co * L, vload<Dt>(dbl + co * L) + __builtin_convertvector(sum, Dt));
  }
}

// dwl[(c * k3 + kk) * L + lane] += the lane's sum over the chunk's nv vectors of
// dz[c, :] col[kk, :], for kDwRows channels and kDwCols taps.
template <typename T>
FDNN_DIRECT_INLINE void dw_block(double* FDNN_RESTRICT dwl, int64_t k3, const T* FDNN_RESTRICT dz,
                                 const T* FDNN_RESTRICT col, int64_t ld, int64_t nv) {
  using Vt = typename Vec<T>::V;
  using Dt = typename Vec<T>::D;
  constexpr int64_t L = Vec<T>::L;
  constexpr int R = kDwRows, C = kDwCols;
  Vt acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = Vt{};
  for (int64_t v = 0; v < nv; ++v) {
    Vt cv[C];
    for (int c = 0; c < C; ++c) cv[c] = vload<Vt>(col + c * ld + v * L);
    for (int r = 0; r < R; ++r) {
      const Vt d = vload<Vt>(dz + r * ld + v * L);
      for (int c = 0; c < C; ++c) acc[r][c] += d * cv[c];
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      double* at = dwl + (r * k3 + c) * L;
      vstore(at, vload<Dt>(at) + __builtin_convertvector(acc[r][c], Dt));
    }
}

// dcol rows kk0 .. kk0 + kFwdRows - 1, vectors v0 .. v0 + V - 1: w^T dz (wt: w^T, K x C_out).
template <typename T, int V>
FDNN_DIRECT_INLINE void dcol_block(T* dcol, const T* wt, const T* dz, int64_t ld, int64_t c_out, int64_t kk0,
                                   int64_t v0) {
  using Vt = typename Vec<T>::V;
  constexpr int64_t L = Vec<T>::L;
  Vt acc[kFwdRows][V];
  rows_times_cols<T, kFwdRows, V>(acc, wt + kk0 * c_out, c_out, dz + v0 * L, ld, c_out);
  for (int r = 0; r < kFwdRows; ++r)
    for (int v = 0; v < V; ++v) vstore(dcol + (kk0 + r) * ld + (v0 + v) * L, acc[r][v]);
}

// The sum of a lane accumulator's L doubles, in a fixed order.
template <typename T> FDNN_DIRECT_INLINE double lane_sum(const double* v) {
  typedef double D8 __attribute__((vector_size(64)));
  D8 a = vload<D8>(v);
  if (Vec<T>::L == 16) a += vload<D8>(v + 8);
  double t[8];
  vstore(t, a);
  return ((t[0] + t[4]) + (t[2] + t[6])) + ((t[1] + t[5]) + (t[3] + t[7]));
}

// Backward tasks: runs of whole groups (an image's chunks where an image has several, else one
// chunk), so a task owns the dx of its images.
struct BackwardPlan {
  Plan ch;
  int64_t chunks_per_group, groups_per_task, tasks;
  int64_t c8, k3, k4;  // C_out rounded up to kDwRows, K to kDwCols and to kFwdRows
};

template <typename T> BackwardPlan backward_plan(const ConvShape& s) {
  BackwardPlan q;
  q.ch = plan_of<T>(s);
  q.chunks_per_group = q.ch.per_image;
  const int64_t groups = q.ch.chunks / q.chunks_per_group;
  // At most kMaxTasks tasks, of at least kTaskPositions output positions each where there are
  // enough (a task ends with a reduction of its lanes, about as costly as 256 positions' products).
  const int64_t group_positions = q.chunks_per_group > 1 ? s.positions() : q.ch.images * s.positions();
  q.groups_per_task = std::max(ceil_div(groups, kMaxTasks), ceil_div(kTaskPositions, group_positions));
  q.tasks = ceil_div(groups, q.groups_per_task);
  q.c8 = round_up(s.c_out, kDwRows);
  q.k3 = round_up(s.k(), kDwCols);
  q.k4 = round_up(s.k(), kFwdRows);
  return q;
}

// One backward task: chunks [c0, c1). Writes dx of their images, and the task's sums of dw
// (part_dw: C_out x K) and db (part_db: C_out) in double. wt: w^T (K x C_out), its rows padded
// with zeros to a multiple of kFwdRows.
template <typename T>
FDNN_DIRECT void backward_task(T* dx, double* part_dw, double* part_db, const T* dy, const T* x, const T* wt,
                               const T* mask, const ConvShape& s, const BackwardPlan& q, int64_t c0, int64_t c1) {
  constexpr int64_t L = Vec<T>::L;
  const int64_t ld = q.ch.ld, k = s.k(), image = s.c_in * s.h * s.w;
  T* dz = thread_scratch<T, 20>(q.c8 * ld);
  T* col = part_dw ? thread_scratch<T, 21>(q.k3 * ld) : nullptr;
  T* dcol = dx ? thread_scratch<T, 22>(q.k4 * ld) : nullptr;
  double* dwl = part_dw ? thread_scratch<double, 23>(q.c8 * q.k3 * L) : nullptr;
  double* dbl = part_db ? thread_scratch<double, 24>(s.c_out * L) : nullptr;
  // Rows past C_out and K stay zero for the whole task.
  std::fill(dz + s.c_out * ld, dz + q.c8 * ld, T(0));
  if (col) std::fill(col + k * ld, col + q.k3 * ld, T(0));
  if (dwl) std::fill(dwl, dwl + q.c8 * q.k3 * L, 0.0);
  if (dbl) std::fill(dbl, dbl + s.c_out * L, 0.0);
  Segment seg[kMaxSegments];
  for (int64_t c = c0; c < c1; ++c) {
    const int64_t count = segments_of(q.ch, s, c, seg), nv = vectors_of<T>(seg, count);
    for (int64_t i = 0; i < count; ++i)
      fill_dz(dz + seg[i].off, dbl, ld, q.ch.seg_ld, dy, mask, s, seg[i].n, seg[i].p0, seg[i].cp);
    if (col) {
      for (int64_t i = 0; i < count; ++i)
        fill_col(col + seg[i].off, ld, q.ch.seg_ld, x + seg[i].n * image, s, seg[i].p0, seg[i].cp);
      for (int64_t co0 = 0; co0 < q.c8; co0 += kDwRows)
        for (int64_t kk0 = 0; kk0 < q.k3; kk0 += kDwCols)
          dw_block<T>(dwl + (co0 * q.k3 + kk0) * L, q.k3, dz + co0 * ld, col + kk0 * ld, ld, nv);
    }
    if (dx) {  // dcol = w^T dz, then col2im onto each segment's image (zeroed at its first chunk)
      for (int64_t kk0 = 0; kk0 < q.k4; kk0 += kFwdRows) {
        int64_t v0 = 0;
        for (; v0 + kFwdVecs <= nv; v0 += kFwdVecs) dcol_block<T, kFwdVecs>(dcol, wt, dz, ld, s.c_out, kk0, v0);
        for (; v0 < nv; ++v0) dcol_block<T, 1>(dcol, wt, dz, ld, s.c_out, kk0, v0);
      }
      for (int64_t i = 0; i < count; ++i) {
        T* dxn = dx + seg[i].n * image;
        if (seg[i].p0 == 0) std::fill(dxn, dxn + image, T(0));
        col2im_add(dxn, dcol + seg[i].off, ld, s, seg[i].p0, seg[i].cp);
      }
    }
  }
  if (part_dw)
    for (int64_t co = 0; co < s.c_out; ++co)
      for (int64_t kk = 0; kk < k; ++kk) part_dw[co * k + kk] = lane_sum<T>(dwl + (co * q.k3 + kk) * L);
  if (part_db)
    for (int64_t co = 0; co < s.c_out; ++co) part_db[co] = lane_sum<T>(dbl + co * L);
}

bool cpu_has_avx512f() { return avx512_paths_enabled(); }

}  // namespace

bool conv_direct_applies(const ConvShape& s) {
  static const bool avx512 = cpu_has_avx512f();
  return avx512 && s.groups == 1 && s.k() <= kConvDirectMaxK && s.positions() >= kConvDirectMinPositions && s.n > 0;
}

template <typename T>
bool conv2d_direct(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act) {
  if (!conv_direct_applies(s)) return false;
  const int64_t k = s.k();
  const Plan q = plan_of<T>(s);
  // w with its rows padded to a multiple of kFwdRows.
  const int64_t rows = round_up(s.c_out, kFwdRows);
  const Buffer<T> wp = scratch<T>(rows * k);
  std::copy(w, w + s.c_out * k, wp.get());
  std::fill(wp.get() + s.c_out * k, wp.get() + rows * k, T(0));
  const bool relu = act == Activation::relu;
  parallel_for(q.chunks, 1, s.c_out * q.ld * k, [&](int64_t c0, int64_t c1) {
    T* col = thread_scratch<T, 25>(k * q.ld);
    for (int64_t c = c0; c < c1; ++c) forward_chunk(y, x, wp.get(), b, s, relu, q, c, col);
  });
  return true;
}

template <typename T>
bool conv2d_backward_direct(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, const ConvShape& s,
                            Activation act) {
  if (!conv_direct_applies(s)) return false;
  const int64_t k = s.k();
  const BackwardPlan q = backward_plan<T>(s);
  const T* mask = act == Activation::relu ? y : nullptr;
  Buffer<T> wt;
  if (dx) {  // w^T (K x C_out), rows padded to a multiple of kFwdRows
    wt = scratch<T>(q.k4 * s.c_out);
    std::fill(wt.get(), wt.get() + q.k4 * s.c_out, T(0));
    for (int64_t co = 0; co < s.c_out; ++co)
      for (int64_t kk = 0; kk < k; ++kk) wt[kk * s.c_out + co] = w[co * k + kk];
  }
  const Buffer<double> part_dw = dw ? scratch<double>(q.tasks * s.c_out * k) : Buffer<double>();
  const Buffer<double> part_db = db ? scratch<double>(q.tasks * s.c_out) : Buffer<double>();
  const int64_t chunks_per_task = q.groups_per_task * q.chunks_per_group;
  const int64_t work = chunks_per_task * q.ch.ld * s.c_out * (k * ((dw ? 1 : 0) + (dx ? 1 : 0)) + 1);
  parallel_for(q.tasks, 1, work, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t)
      backward_task(dx, dw ? part_dw.get() + t * s.c_out * k : nullptr, db ? part_db.get() + t * s.c_out : nullptr,
                    dy, x, wt.get(), mask, s, q, t * chunks_per_task, std::min(q.ch.chunks, (t + 1) * chunks_per_task));
  });
  // The tasks' partials, in task order.
  if (dw)
    for (int64_t i = 0; i < s.c_out * k; ++i) {
      double sum = 0;
      for (int64_t t = 0; t < q.tasks; ++t) sum += part_dw[t * s.c_out * k + i];
      dw[i] = static_cast<T>(sum);
    }
  if (db)
    for (int64_t co = 0; co < s.c_out; ++co) {
      double sum = 0;
      for (int64_t t = 0; t < q.tasks; ++t) sum += part_db[t * s.c_out + co];
      db[co] = static_cast<T>(sum);
    }
  return true;
}

}  // namespace fdnn

#else  // not x86-64 with GCC: the im2col path only

namespace fdnn {
bool conv_direct_applies(const ConvShape&) { return false; }
template <typename T> bool conv2d_direct(T*, const T*, const T*, const T*, const ConvShape&, Activation) {
  return false;
}
template <typename T>
bool conv2d_backward_direct(T*, T*, T*, const T*, const T*, const T*, const T*, const ConvShape&, Activation) {
  return false;
}
}  // namespace fdnn

#endif

namespace fdnn {
template bool conv2d_direct<float>(float*, const float*, const float*, const float*, const ConvShape&, Activation);
template bool conv2d_direct<double>(double*, const double*, const double*, const double*, const ConvShape&,
                                    Activation);
template bool conv2d_backward_direct<float>(float*, float*, float*, const float*, const float*, const float*,
                                            const float*, const ConvShape&, Activation);
template bool conv2d_backward_direct<double>(double*, double*, double*, const double*, const double*, const double*,
                                             const double*, const ConvShape&, Activation);
}  // namespace fdnn
