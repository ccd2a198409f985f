// CPU convolution (conv.h) over cpu/gemm.h, and the pooling loops.
//
// Layout: a block's im2col matrix is col (K x M): row kk = (ci, i, j) of the kernel, column
// r - r0 for the output position r = (n, oh, ow), so that im2col and col2im move runs of
// consecutive output columns (contiguous input runs at stride 1) instead of single values.
// Forward: out (M x C_out/groups) = col^T w_g^T with the bias and the ReLU in the GEMM's
// epilogue, then transposed into NCHW. Backward, per block: dz gathered as (C_out/groups x M)
// (the ReLU mask applied on the way), dw_g += dz col^T and dcol = w_g^T dz, added back onto the
// input positions (col2im).
//
// Scratch: forward blocks of M = conv_block_rows(s, kConvBlockElemsCpu) rows hold col and out,
// at most 2 * 2^20 elements (8 MiB in float32); backward blocks of kBackwardRows rows hold col,
// dcol and dz ((2 K + C_out/groups) * 256 elements), plus one block's dw (C_out/groups x K) and
// the dw sums in double (C_out x K). Neither grows with the batch.
//
// Accuracy: the GEMM sums its k products in order, so the weight gradient, a sum over every
// output position of the batch, is one GEMM per backward block of 256 positions (the fuzz test
// found a float32 sum of 504 products in order beyond 2x NumPy's error) whose results are added
// in double; the bias gradient adds each block's sums of dz (in double) likewise.
//
// Determinism: the blocks depend on the shapes only; every pass splits its work into fixed
// parts (kernel rows, channel planes, row tiles) that each write their own outputs in a fixed
// order, and the blocks' dw are added in block order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/isa.h"
#include "common/macros.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "cpu/gemm.h"
#include "ops/conv.h"

namespace fdnn {
namespace {

constexpr int64_t kTile = 32;           // rows per transpose tile
constexpr int64_t kBackwardRows = 256;  // output positions per backward block

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

// col[kk * m + (r - r0)] = x[n, c0 + ci, oh * sh - ph + i * dh, ow * sw - pw + j * dw] (0 outside
// the input), kk = (ci * kh + i) * kw + j, for the output positions r = (n, oh, ow) in [r0, r1).
template <typename T> void im2col(T* col, const T* x, const ConvShape& s, int64_t c0, int64_t r0, int64_t r1) {
  const int64_t m = r1 - r0;
  parallel_for(s.k(), 1, m, [&](int64_t a, int64_t b) {
    for (int64_t kk = a; kk < b; ++kk) {
      const int64_t ci = kk / (s.kh * s.kw), i = (kk / s.kw) % s.kh, j = kk % s.kw;
      const int64_t off = j * s.dw - s.pw;
      const int64_t lo = first_ow(0, off, s.sw), hi = first_ow(s.w, off, s.sw);  // valid ow: [lo, hi)
      T* dst = col + kk * m;
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
// (image, channel) plane the block touches; within it the kernel rows and positions in order.
template <typename T> void col2im_add(T* dx, const T* dcol, const ConvShape& s, int64_t c0, int64_t r0, int64_t r1) {
  const int64_t m = r1 - r0, p = s.positions(), cin_g = s.cin_g();
  const int64_t n0 = r0 / p, n1 = (r1 - 1) / p + 1;
  parallel_for((n1 - n0) * cin_g, 1, m / (n1 - n0) * s.kh * s.kw, [&](int64_t a, int64_t b) {
    for (int64_t task = a; task < b; ++task) {
      const int64_t n = n0 + task / cin_g, ci = task % cin_g;
      T* plane = dx + (n * s.c_in + c0 + ci) * s.h * s.w;
      const int64_t ra = std::max(r0, n * p), rb = std::min(r1, (n + 1) * p);
      for (int64_t i = 0; i < s.kh; ++i)
        for (int64_t j = 0; j < s.kw; ++j) {
          const int64_t off = j * s.dw - s.pw;
          const int64_t lo = first_ow(0, off, s.sw), hi = first_ow(s.w, off, s.sw);
          const T* src = dcol + ((ci * s.kh + i) * s.kw + j) * m;
          for_each_run(s, ra, rb, [&](int64_t, int64_t oh, int64_t ow0, int64_t count, int64_t) {
            const int64_t ih = oh * s.sh - s.ph + i * s.dh;
            if (ih < 0 || ih >= s.h) return;
            T* line = plane + ih * s.w;
            const T* g = src + (n * p + oh * s.ow + ow0 - r0);
            const int64_t a0 = std::clamp(lo, ow0, ow0 + count), a1 = std::clamp(hi, a0, ow0 + count);
            if (s.sw == 1) {
              if (a1 > a0) add_run(line + off + a0, g + (a0 - ow0), a1 - a0);
            } else {
              for (int64_t ow = a0; ow < a1; ++ow) line[ow * s.sw + off] += g[ow - ow0];
            }
          });
        }
    }
  });
}

// y[n, co0 + co, pos] = t[(r - r0) * cols + co] for r = (n, pos) in [r0, r1), co in [0, cols):
// tiles of kTile rows, each row's destination computed once.
template <typename T>
void rows_to_nchw(T* y, const T* t, int64_t cols, int64_t channels, int64_t co0, int64_t positions, int64_t r0,
                  int64_t r1) {
  parallel_for(r1 - r0, kTile, cols, [&](int64_t a, int64_t b) {
    int64_t base[kTile];
    int64_t n = (r0 + a) / positions, pos = (r0 + a) % positions;
    for (int64_t rr = 0; rr < b - a; ++rr) {
      base[rr] = (n * channels + co0) * positions + pos;
      if (++pos == positions) {
        pos = 0;
        ++n;
      }
    }
    const T* src = t + a * cols;
    for (int64_t co = 0; co < cols; ++co) {
      T* dst = y + co * positions;
      for (int64_t rr = 0; rr < b - a; ++rr) dst[base[rr]] = src[rr * cols + co];
    }
  });
}

// dz[co * m + (r - r0)] = dy at (n, co0 + co, pos), or relu'(y) * dy when y is given, for the
// block's positions r = (n, pos): contiguous runs of each image's plane.
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
          std::memcpy(d, dy + src, count * sizeof(T));
        r += count;
      }
  });
}

template <typename T> void fill(T* p, int64_t count, T value) {
  parallel_for(count, int64_t{1} << 16, 1, [&](int64_t a, int64_t b) { std::fill(p + a, p + b, value); });
}

template <typename A, typename T> void add_into(A* acc, const T* v, int64_t count) {
  parallel_for(count, int64_t{1} << 14, 2, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) acc[i] += v[i];
  });
}

// Planes per parallel task of the pooling loops: about 16K elements of work, fixed by the shape.
int64_t planes_per_task(int64_t work_per_plane) {
  return std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(1, work_per_plane));
}

}  // namespace

template <typename T>
void conv2d(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act, Stream) {
  const int64_t total = s.rows(), k = s.k(), cout_g = s.cout_g();
  if (total == 0) return;
  const int64_t m = conv_block_rows(s, kConvBlockElemsCpu);
  const Buffer<T> col = scratch<T>(m * k), out = scratch<T>(m * cout_g);
  for (int64_t r0 = 0; r0 < total; r0 += m) {
    const int64_t r1 = std::min(total, r0 + m);
    for (int64_t g = 0; g < s.groups; ++g) {
      im2col(col.get(), x, s, g * s.cin_g(), r0, r1);
      // out (M x C_out/groups) = col^T w_g^T + b_g, ReLU'd, in one GEMM.
      gemm<T>(true, true, r1 - r0, cout_g, k, col.get(), w + g * cout_g * k, out.get(), b ? b + g * cout_g : nullptr,
              act == Activation::relu);
      rows_to_nchw(y, out.get(), cout_g, s.c_out, g * cout_g, s.positions(), r0, r1);
    }
  }
}

template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, const ConvShape& s,
                     Activation act, Stream) {
  using Acc = double;
  const int64_t total = s.rows(), k = s.k(), cout_g = s.cout_g();
  const T* mask = act == Activation::relu ? y : nullptr;
  if (dx) fill(dx, s.n * s.c_in * s.h * s.w, T(0));
  if (total == 0) {  // empty sums
    if (dw) fill(dw, s.c_out * k, T(0));
    if (db) fill(db, s.c_out, T(0));
    return;
  }
  const int64_t m = std::min(total, kBackwardRows);
  const Buffer<T> col = scratch<T>(k * m), dz = scratch<T>(cout_g * m);
  const Buffer<T> dcol = dx ? scratch<T>(k * m) : Buffer<T>();
  const Buffer<T> dw_part = dw ? scratch<T>(cout_g * k) : Buffer<T>();
  Buffer<Acc> dw_acc = dw ? scratch<Acc>(s.c_out * k) : Buffer<Acc>();
  Buffer<Acc> db_acc = db ? scratch<Acc>(s.c_out) : Buffer<Acc>();
  if (dw) fill(dw_acc.get(), s.c_out * k, Acc(0));
  if (db) std::fill(db_acc.get(), db_acc.get() + s.c_out, Acc(0));
  for (int64_t r0 = 0; r0 < total; r0 += m) {
    const int64_t r1 = std::min(total, r0 + m), mb = r1 - r0;
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* w_g = w + g * cout_g * k;
      gather_dz(dz.get(), dy, mask, s, g * cout_g, r0, r1);
      if (db)  // db += the block's sums of dz, per channel in double
        parallel_for(cout_g, 16, mb, [&](int64_t c0, int64_t c1) {
          for (int64_t co = c0; co < c1; ++co) db_acc[g * cout_g + co] += sum_double(dz.get() + co * mb, mb);
        });
      if (dw) {  // dw_g += dz col^T: (C_out/groups x M) (M x K)
        im2col(col.get(), x, s, g * s.cin_g(), r0, r1);
        gemm<T>(false, true, cout_g, k, mb, dz.get(), col.get(), dw_part.get(), nullptr, false);
        add_into(dw_acc.get() + g * cout_g * k, dw_part.get(), cout_g * k);
      }
      if (dx) {  // dcol = w_g^T dz: (K x C_out/groups) (C_out/groups x M), then col2im
        gemm<T>(true, false, k, mb, cout_g, w_g, dz.get(), dcol.get(), nullptr, false);
        col2im_add(dx, dcol.get(), s, g * s.cin_g(), r0, r1);
      }
    }
  }
  if (dw)
    parallel_for(s.c_out * k, int64_t{1} << 14, 2, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) dw[i] = static_cast<T>(dw_acc[i]);
    });
  if (db)
    for (int64_t c = 0; c < s.c_out; ++c) db[c] = static_cast<T>(db_acc[c]);
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

template <typename T> void max_pool2d(T* y, int64_t* idx, const T* x, const PoolShape& s, Stream) {
  const int64_t out = s.oh * s.ow;
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
  parallel_for(s.planes, planes_per_task(out * s.kh * s.kw), out * s.kh * s.kw, [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* plane = x + pl * s.h * s.w;
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        const int64_t h0 = oh * s.sh - s.ph, ha = std::max<int64_t>(h0, 0), hb = std::min(h0 + s.kh, s.h);
        for (int64_t ow = 0; ow < s.ow; ++ow) {
          const int64_t w0 = ow * s.sw - s.pw, wa = std::max<int64_t>(w0, 0), wb = std::min(w0 + s.kw, s.w);
          Acc sum = 0;
          for (int64_t ih = ha; ih < hb; ++ih)
            for (int64_t iw = wa; iw < wb; ++iw) sum += plane[ih * s.w + iw];
          const int64_t count = count_include_pad ? s.kh * s.kw : (hb - ha) * (wb - wa);
          y[pl * out + oh * s.ow + ow] = static_cast<T>(sum / Acc(count));
        }
      }
    }
  });
}

template <typename T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s, bool count_include_pad, Stream) {
  const int64_t out = s.oh * s.ow, in = s.h * s.w;
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
