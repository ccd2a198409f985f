// CPU convolution (conv.h): im2row blocks fed to linear (ops/linear.h, over cpu/gemm.h, whose
// epilogue adds the bias and applies the ReLU) forward and to gemm backward, and the pooling loops.
//
// Scratch: a forward block holds rows (M x K) and the GEMM's output (M x C_out/groups); a
// backward block holds rows, their gradient (M x K) and dz transposed (M x C_out/groups), plus
// one chunk's dw (C_out/groups x K) and the dw sums in double (C_out x K): at most
// 3 * kConvBlockElemsCpu elements (3 * 4 MiB in float32) plus the weight-sized buffers, whatever
// the batch, unless one row alone (K) is larger than the budget (then one row per block).
//
// Accuracy: the GEMM sums its k products in order, so the weight gradient, a sum over every
// output position of the batch, is a GEMM per chunk of kDwChunk rows whose results are added in
// double; the bias gradient sums each plane in double.
//
// Determinism: the blocks and chunks depend on the shapes only; every pass splits its work into
// fixed parts (rows, channel planes) that each write their own outputs in a fixed order, and the
// chunks' dw partials are added in chunk order.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/parallel.h"
#include "common/scratch.h"
#include "ops/conv.h"
#include "cpu/gemm.h"
#include "ops/linear.h"

namespace fdnn {
namespace {

// rows[(r - r0) * K + (ci * kh + i) * kw + j] = x[n, c0 + ci, oh * sh - ph + i * dh, ow * sw - pw + j * dw]
// (0 outside the input) for the output positions r = (n, oh, ow) in [r0, r1).
template <typename T> void im2row(T* rows, const T* x, const ConvShape& s, int64_t c0, int64_t r0, int64_t r1) {
  const int64_t k = s.k(), p = s.positions();
  parallel_for(r1 - r0, 16, k, [&](int64_t a, int64_t b) {
    for (int64_t r = r0 + a; r < r0 + b; ++r) {
      const int64_t n = r / p, oh = (r % p) / s.ow, ow = r % s.ow;
      T* dst = rows + (r - r0) * k;
      const int64_t h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
      for (int64_t ci = 0; ci < s.cin_g(); ++ci) {
        const T* plane = x + ((n * s.c_in) + c0 + ci) * s.h * s.w;
        for (int64_t i = 0; i < s.kh; ++i) {
          const int64_t ih = h0 + i * s.dh;
          if (ih < 0 || ih >= s.h) {
            std::fill(dst, dst + s.kw, T(0));
          } else {
            const T* line = plane + ih * s.w;
            for (int64_t j = 0; j < s.kw; ++j) {
              const int64_t iw = w0 + j * s.dw;
              dst[j] = (iw >= 0 && iw < s.w) ? line[iw] : T(0);
            }
          }
          dst += s.kw;
        }
      }
    }
  });
}

constexpr int64_t kTile = 32;      // rows per transpose tile
constexpr int64_t kDwChunk = 256;  // rows per GEMM of the weight gradient

// y[n, co0 + co, pos] = t[(r - r0) * cols + co] for r = (n, pos) in [r0, r1), co in [0, cols).
template <typename T>
void rows_to_nchw(T* y, const T* t, int64_t cols, int64_t channels, int64_t co0, int64_t positions, int64_t r0,
                  int64_t r1) {
  parallel_for(r1 - r0, kTile, cols, [&](int64_t a, int64_t b) {
    for (int64_t co = 0; co < cols; ++co)
      for (int64_t r = r0 + a; r < r0 + b; ++r) {
        const int64_t n = r / positions, pos = r % positions;
        y[(n * channels + co0 + co) * positions + pos] = t[(r - r0) * cols + co];
      }
  });
}

// t[(r - r0) * cols + co] = dz at (n, co0 + co, pos): dy, or relu'(y) * dy when y is given.
template <typename T>
void nchw_to_rows(T* t, const T* dy, const T* y, int64_t cols, int64_t channels, int64_t co0, int64_t positions,
                  int64_t r0, int64_t r1) {
  parallel_for(r1 - r0, kTile, cols, [&](int64_t a, int64_t b) {
    for (int64_t r = r0 + a; r < r0 + b; ++r) {
      const int64_t n = r / positions, pos = r % positions;
      const int64_t base = (n * channels + co0) * positions + pos;
      T* dst = t + (r - r0) * cols;
      if (y) {
        for (int64_t co = 0; co < cols; ++co)
          dst[co] = relu_grad_from_output(dy[base + co * positions], y[base + co * positions]);
      } else {
        for (int64_t co = 0; co < cols; ++co) dst[co] = dy[base + co * positions];
      }
    }
  });
}

// dx[n, c0 + ci, ih, iw] += drows[(r - r0) * K + (ci * kh + i) * kw + j] over the block's rows
// (the inverse of im2row); one (image, channel) plane per task, rows in order.
template <typename T> void row2im_add(T* dx, const T* drows, const ConvShape& s, int64_t c0, int64_t r0, int64_t r1) {
  const int64_t k = s.k(), p = s.positions(), cin_g = s.cin_g();
  const int64_t n0 = r0 / p, n1 = (r1 - 1) / p + 1;
  parallel_for((n1 - n0) * cin_g, 1, (r1 - r0) / (n1 - n0) * s.kh * s.kw, [&](int64_t a, int64_t b) {
    for (int64_t task = a; task < b; ++task) {
      const int64_t n = n0 + task / cin_g, ci = task % cin_g;
      T* plane = dx + (n * s.c_in + c0 + ci) * s.h * s.w;
      const int64_t ra = std::max(r0, n * p), rb = std::min(r1, (n + 1) * p);
      for (int64_t r = ra; r < rb; ++r) {
        const int64_t oh = (r % p) / s.ow, ow = r % s.ow;
        const int64_t h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
        const T* src = drows + (r - r0) * k + ci * s.kh * s.kw;
        for (int64_t i = 0; i < s.kh; ++i) {
          const int64_t ih = h0 + i * s.dh;
          if (ih < 0 || ih >= s.h) continue;
          for (int64_t j = 0; j < s.kw; ++j) {
            const int64_t iw = w0 + j * s.dw;
            if (iw >= 0 && iw < s.w) plane[ih * s.w + iw] += src[i * s.kw + j];
          }
        }
      }
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
void conv2d(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act, Stream stream) {
  const int64_t total = s.rows(), k = s.k(), cout_g = s.cout_g();
  if (total == 0) return;
  const int64_t m = conv_block_rows(s, kConvBlockElemsCpu);
  const Buffer<T> rows = scratch<T>(m * k), out = scratch<T>(m * cout_g);
  for (int64_t r0 = 0; r0 < total; r0 += m) {
    const int64_t r1 = std::min(total, r0 + m);
    for (int64_t g = 0; g < s.groups; ++g) {
      im2row(rows.get(), x, s, g * s.cin_g(), r0, r1);
      linear<T>(out.get(), rows.get(), w + g * cout_g * k, b ? b + g * cout_g : nullptr, r1 - r0, k, cout_g, act,
                stream);
      rows_to_nchw(y, out.get(), cout_g, s.c_out, g * cout_g, s.positions(), r0, r1);
    }
  }
}

template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, const ConvShape& s,
                     Activation act, Stream) {
  using Acc = double;
  const int64_t total = s.rows(), k = s.k(), cout_g = s.cout_g(), p = s.positions();
  const T* mask = act == Activation::relu ? y : nullptr;
  if (dx) fill(dx, s.n * s.c_in * s.h * s.w, T(0));
  if (db) {  // per channel: each image's plane summed in Acc, the images' sums added in order
    parallel_for(s.c_out, 1, total, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        Acc sum = 0;
        for (int64_t n = 0; n < s.n; ++n) {
          const int64_t base = (n * s.c_out + c) * p;
          Acc plane = 0;
          if (mask)
            for (int64_t i = 0; i < p; ++i) plane += relu_grad_from_output(dy[base + i], mask[base + i]);
          else
            for (int64_t i = 0; i < p; ++i) plane += dy[base + i];
          sum += plane;
        }
        db[c] = static_cast<T>(sum);
      }
    });
  }
  if (!dw && !dx) return;
  if (total == 0) {  // an empty sum
    if (dw) fill(dw, s.c_out * k, T(0));
    return;
  }
  const int64_t m = conv_block_rows(s, kConvBlockElemsCpu);
  const Buffer<T> rows = scratch<T>(m * k), dz = scratch<T>(m * cout_g);
  const Buffer<T> drows = dx ? scratch<T>(m * k) : Buffer<T>();
  const Buffer<T> dw_part = dw ? scratch<T>(cout_g * k) : Buffer<T>();
  Buffer<Acc> dw_acc = dw ? scratch<Acc>(s.c_out * k) : Buffer<Acc>();
  if (dw) fill(dw_acc.get(), s.c_out * k, Acc(0));
  for (int64_t r0 = 0; r0 < total; r0 += m) {
    const int64_t r1 = std::min(total, r0 + m);
    for (int64_t g = 0; g < s.groups; ++g) {
      const T* w_g = w + g * cout_g * k;
      im2row(rows.get(), x, s, g * s.cin_g(), r0, r1);
      nchw_to_rows(dz.get(), dy, mask, cout_g, s.c_out, g * cout_g, p, r0, r1);
      if (dw) {
        // dw_g += dz.T @ rows, a GEMM per chunk of kDwChunk rows added into the Acc sums: the
        // GEMM's own k-sums are sequential, and a batch has many rows.
        for (int64_t c0 = r0; c0 < r1; c0 += kDwChunk) {
          const int64_t rows_c = std::min(r1 - c0, kDwChunk);
          gemm<T>(true, false, cout_g, k, rows_c, dz.get() + (c0 - r0) * cout_g, rows.get() + (c0 - r0) * k,
                  dw_part.get(), nullptr, false);
          add_into(dw_acc.get() + g * cout_g * k, dw_part.get(), cout_g * k);
        }
      }
      if (dx) {
        gemm<T>(false, false, r1 - r0, k, cout_g, dz.get(), w_g, drows.get(), nullptr, false);  // dz @ w_g
        row2im_add(dx, drows.get(), s, g * s.cin_g(), r0, r1);
      }
    }
  }
  if (dw)
    parallel_for(s.c_out * k, int64_t{1} << 14, 2, [&](int64_t a, int64_t b) {
      for (int64_t i = a; i < b; ++i) dw[i] = static_cast<T>(dw_acc[i]);
    });
}

template <typename T> void max_pool2d(T* y, int64_t* idx, const T* x, const PoolShape& s, Stream) {
  const int64_t out = s.oh * s.ow;
  parallel_for(s.planes, planes_per_task(out * s.kh * s.kw), out * s.kh * s.kw, [&](int64_t a, int64_t b) {
    for (int64_t pl = a; pl < b; ++pl) {
      const T* plane = x + pl * s.h * s.w;
      for (int64_t oh = 0; oh < s.oh; ++oh) {
        const int64_t h0 = oh * s.sh - s.ph, ha = std::max<int64_t>(h0, 0), hb = std::min(h0 + s.kh, s.h);
        for (int64_t ow = 0; ow < s.ow; ++ow) {
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
          y[pl * out + oh * s.ow + ow] = best;
          idx[pl * out + oh * s.ow + ow] = best_i;
        }
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
    for (int64_t pl = a; pl < b; ++pl) {
      double sum = 0;
      for (int64_t i = 0; i < hw; ++i) sum += x[pl * hw + i];
      y[pl] = static_cast<T>(sum / double(hw));
    }
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
