// CUDA convolution and pooling (conv.h): the GPU twin of conv_cpu.cpp. Convolution is the same
// im2row-block algorithm, with the GEMMs done by linear / linear_backward of linear_cuda.cu
// (cuBLASLt, the bias in its BIAS epilogue and the bias gradient in BGRADB): small kernels build
// the rows, transpose the GEMM's (rows x C_out/groups) output into NCHW (applying nothing: the
// bias and ReLU are done), gather dz (with the ReLU mask) and add the row gradients back onto
// the input (col2im as a gather: each input element sums its own contributions in a fixed order).
//
// Scratch: per block, rows and their gradient (M x K) and dz (M x C_out/groups), with
// M * max(K, C_out/groups) <= kConvBlockElemsCuda (64 MiB in float32), plus one block's dw and db.
//
// Determinism: no floating-point atomics. dw and db add the blocks' partials in block order;
// max-pool backward runs one thread per plane over its outputs in order (the indices may repeat).
#include <cmath>
#include <cstdint>

#include "common/cuda.h"
#include "ops/conv.h"
#include "ops/linear.h"

namespace fdnn {
namespace {

__device__ inline int64_t global_thread() { return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ inline int64_t global_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// rows[(r - r0) * K + (ci * kh + i) * kw + j] = x[n, c0 + ci, ih, iw] (0 outside the input).
template <typename T>
__global__ void im2row_kernel(T* rows, const T* x, ConvShape s, int64_t c0, int64_t r0, int64_t count) {
  const int64_t k = s.cin_g() * s.kh * s.kw, p = s.oh * s.ow;
  for (int64_t e = global_thread(); e < count; e += global_threads()) {
    const int64_t r = r0 + e / k, kk = e % k;
    const int64_t ci = kk / (s.kh * s.kw), i = (kk / s.kw) % s.kh, j = kk % s.kw;
    const int64_t n = r / p, oh = (r % p) / s.ow, ow = r % s.ow;
    const int64_t ih = oh * s.sh - s.ph + i * s.dh, iw = ow * s.sw - s.pw + j * s.dw;
    rows[e] = (ih >= 0 && ih < s.h && iw >= 0 && iw < s.w) ? x[((n * s.c_in + c0 + ci) * s.h + ih) * s.w + iw]
                                                            : T(0);
  }
}

// y[n, co0 + co, pos] = t[(r - r0) * cols + co] for the block's rows r = (n, pos).
template <typename T>
__global__ void rows_to_nchw_kernel(T* y, const T* t, int64_t cols, int64_t channels, int64_t co0, int64_t positions,
                                    int64_t r0, int64_t m) {
  for (int64_t e = global_thread(); e < m * cols; e += global_threads()) {
    const int64_t co = e / m, rr = e % m, r = r0 + rr;
    y[((r / positions) * channels + co0 + co) * positions + r % positions] = t[rr * cols + co];
  }
}

// t[(r - r0) * cols + co] = dz at (n, co0 + co, pos): dy, or relu'(y) * dy when y is given.
template <typename T>
__global__ void nchw_to_rows_kernel(T* t, const T* dy, const T* y, int64_t cols, int64_t channels, int64_t co0,
                                    int64_t positions, int64_t r0, int64_t m) {
  for (int64_t e = global_thread(); e < m * cols; e += global_threads()) {
    const int64_t co = e / m, rr = e % m, r = r0 + rr;
    const int64_t src = ((r / positions) * channels + co0 + co) * positions + r % positions;
    t[rr * cols + co] = y ? relu_grad_from_output(dy[src], y[src]) : dy[src];
  }
}

// dx[n, c0 + ci, ih, iw] += the gradients of the block's rows [r0, r1) that read it, in (i, j)
// order, for the images n0 <= n < n1 the block touches.
template <typename T>
__global__ void row2im_kernel(T* dx, const T* drows, ConvShape s, int64_t c0, int64_t r0, int64_t r1, int64_t n0,
                              int64_t count) {
  const int64_t k = s.cin_g() * s.kh * s.kw, p = s.oh * s.ow, hw = s.h * s.w;
  for (int64_t e = global_thread(); e < count; e += global_threads()) {
    const int64_t n = n0 + e / (s.cin_g() * hw), ci = (e / hw) % s.cin_g(), ih = (e % hw) / s.w, iw = e % s.w;
    T acc = T(0);
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t th = ih + s.ph - i * s.dh;
      if (th < 0 || th % s.sh != 0 || th / s.sh >= s.oh) continue;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t tw = iw + s.pw - j * s.dw;
        if (tw < 0 || tw % s.sw != 0 || tw / s.sw >= s.ow) continue;
        const int64_t r = n * p + (th / s.sh) * s.ow + tw / s.sw;
        if (r >= r0 && r < r1) acc += drows[(r - r0) * k + (ci * s.kh + i) * s.kw + j];
      }
    }
    dx[(n * s.c_in + c0 + ci) * hw + ih * s.w + iw] += acc;
  }
}

template <typename T> __global__ void add_kernel(T* acc, const T* v, int64_t count) {
  for (int64_t e = global_thread(); e < count; e += global_threads()) acc[e] += v[e];
}

template <typename T> void zero(T* p, int64_t count, Stream stream) {
  if (p && count > 0) cuda_check(cudaMemsetAsync(p, 0, count * sizeof(T), cuda_stream(stream)), "cudaMemsetAsync");
}

// ---- pooling kernels: one thread per output (forward) or per input element (backward)

template <typename T> __global__ void max_pool_kernel(T* y, int64_t* idx, const T* x, PoolShape s) {
  const int64_t out = s.oh * s.ow;
  for (int64_t e = global_thread(); e < s.planes * out; e += global_threads()) {
    const int64_t pl = e / out, oh = (e % out) / s.ow, ow = e % s.ow;
    const T* plane = x + pl * s.h * s.w;
    const int64_t h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    const int64_t ha = h0 < 0 ? 0 : h0, hb = h0 + s.kh < s.h ? h0 + s.kh : s.h;
    const int64_t wa = w0 < 0 ? 0 : w0, wb = w0 + s.kw < s.w ? w0 + s.kw : s.w;
    T best = -INFINITY;
    int64_t best_i = ha * s.w + wa;
    for (int64_t ih = ha; ih < hb; ++ih)
      for (int64_t iw = wa; iw < wb; ++iw) {
        const T v = plane[ih * s.w + iw];
        if (v > best || isnan(v)) {
          best = v;
          best_i = ih * s.w + iw;
        }
      }
    y[e] = best;
    idx[e] = best_i;
  }
}

// One thread per plane: zero it, then add its outputs' gradients in output order.
template <typename T>
__global__ void max_pool_backward_kernel(T* dx, const T* dy, const int64_t* idx, PoolShape s,
                                         unsigned long long* bad) {
  const int64_t out = s.oh * s.ow, in = s.h * s.w;
  for (int64_t pl = global_thread(); pl < s.planes; pl += global_threads()) {
    T* plane = dx + pl * in;
    for (int64_t i = 0; i < in; ++i) plane[i] = T(0);
    unsigned long long skipped = 0;
    for (int64_t o = pl * out; o < (pl + 1) * out; ++o) {
      const int64_t i = idx[o];
      if (i < 0 || i >= in)
        ++skipped;
      else
        plane[i] += dy[o];
    }
    if (skipped) atomicAdd(bad, skipped);
  }
}

template <typename T> __global__ void avg_pool_kernel(T* y, const T* x, PoolShape s, bool count_include_pad) {
  const int64_t out = s.oh * s.ow;
  for (int64_t e = global_thread(); e < s.planes * out; e += global_threads()) {
    const int64_t pl = e / out, oh = (e % out) / s.ow, ow = e % s.ow;
    const T* plane = x + pl * s.h * s.w;
    const int64_t h0 = oh * s.sh - s.ph, w0 = ow * s.sw - s.pw;
    const int64_t ha = h0 < 0 ? 0 : h0, hb = h0 + s.kh < s.h ? h0 + s.kh : s.h;
    const int64_t wa = w0 < 0 ? 0 : w0, wb = w0 + s.kw < s.w ? w0 + s.kw : s.w;
    double sum = 0;
    for (int64_t ih = ha; ih < hb; ++ih)
      for (int64_t iw = wa; iw < wb; ++iw) sum += plane[ih * s.w + iw];
    const int64_t count = count_include_pad ? s.kh * s.kw : (hb - ha) * (wb - wa);
    y[e] = static_cast<T>(sum / double(count));
  }
}

// dx at (ih, iw) = the sum of dy / count over the windows that contain it, in (oh, ow) order.
template <typename T>
__global__ void avg_pool_backward_kernel(T* dx, const T* dy, PoolShape s, bool count_include_pad) {
  const int64_t in = s.h * s.w, out = s.oh * s.ow;
  for (int64_t e = global_thread(); e < s.planes * in; e += global_threads()) {
    const int64_t pl = e / in, ih = (e % in) / s.w, iw = e % s.w;
    T acc = T(0);
    for (int64_t oh = 0; oh < s.oh; ++oh) {
      const int64_t h0 = oh * s.sh - s.ph;
      if (ih < h0 || ih >= h0 + s.kh) continue;
      const int64_t ha = h0 < 0 ? 0 : h0, hb = h0 + s.kh < s.h ? h0 + s.kh : s.h;
      for (int64_t ow = 0; ow < s.ow; ++ow) {
        const int64_t w0 = ow * s.sw - s.pw;
        if (iw < w0 || iw >= w0 + s.kw) continue;
        const int64_t wa = w0 < 0 ? 0 : w0, wb = w0 + s.kw < s.w ? w0 + s.kw : s.w;
        const int64_t count = count_include_pad ? s.kh * s.kw : (hb - ha) * (wb - wa);
        acc += dy[pl * out + oh * s.ow + ow] / T(count);
      }
    }
    dx[e] = acc;
  }
}

template <typename T> __global__ void global_avg_kernel(T* y, const T* x, int64_t planes, int64_t hw) {
  for (int64_t pl = global_thread(); pl < planes; pl += global_threads()) {
    double sum = 0;
    for (int64_t i = 0; i < hw; ++i) sum += x[pl * hw + i];
    y[pl] = static_cast<T>(sum / double(hw));
  }
}

template <typename T> __global__ void global_avg_backward_kernel(T* dx, const T* dy, int64_t planes, int64_t hw) {
  for (int64_t e = global_thread(); e < planes * hw; e += global_threads()) dx[e] = dy[e / hw] / T(hw);
}

}  // namespace

template <typename T>
void conv2d(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act, Stream stream) {
  const int64_t total = s.rows(), k = s.k(), cout_g = s.cout_g();
  if (total == 0) return;
  const int64_t m = conv_block_rows(s, kConvBlockElemsCuda);
  const DeviceBuffer<T> rows(m * k, stream), out(m * cout_g, stream);
  const cudaStream_t cs = cuda_stream(stream);
  for (int64_t r0 = 0; r0 < total; r0 += m) {
    const int64_t mb = std::min(total - r0, m);
    for (int64_t g = 0; g < s.groups; ++g) {
      im2row_kernel<T><<<grid_for(mb * k), kThreads, 0, cs>>>(rows.get(), x, s, g * s.cin_g(), r0, mb * k);
      check_launch("im2row_kernel");
      linear<T>(out.get(), rows.get(), w + g * cout_g * k, b ? b + g * cout_g : nullptr, mb, k, cout_g, act, stream);
      rows_to_nchw_kernel<T><<<grid_for(mb * cout_g), kThreads, 0, cs>>>(y, out.get(), cout_g, s.c_out, g * cout_g,
                                                                         s.positions(), r0, mb);
      check_launch("rows_to_nchw_kernel");
    }
  }
}

template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, const ConvShape& s,
                     Activation act, Stream stream) {
  const int64_t total = s.rows(), k = s.k(), cout_g = s.cout_g(), p = s.positions();
  zero(dx, s.n * s.c_in * s.h * s.w, stream);
  if (total == 0) {
    zero(dw, s.c_out * k, stream);
    zero(db, s.c_out, stream);
    return;
  }
  const int64_t m = conv_block_rows(s, kConvBlockElemsCuda);
  const bool more_blocks = total > m;
  const DeviceBuffer<T> rows(m * k, stream), dz(m * cout_g, stream), drows(dx ? m * k : 0, stream);
  const DeviceBuffer<T> dw_part(dw && more_blocks ? cout_g * k : 0, stream);
  const DeviceBuffer<T> db_part(db && more_blocks ? cout_g : 0, stream);
  const T* mask = act == Activation::relu ? y : nullptr;
  const cudaStream_t cs = cuda_stream(stream);
  for (int64_t r0 = 0; r0 < total; r0 += m) {
    const int64_t mb = std::min(total - r0, m), r1 = r0 + mb;
    const bool first = r0 == 0;
    for (int64_t g = 0; g < s.groups; ++g) {
      T* dw_g = dw ? dw + g * cout_g * k : nullptr;
      T* db_g = db ? db + g * cout_g : nullptr;
      if (dw || dx) {
        im2row_kernel<T><<<grid_for(mb * k), kThreads, 0, cs>>>(rows.get(), x, s, g * s.cin_g(), r0, mb * k);
        check_launch("im2row_kernel");
      }
      nchw_to_rows_kernel<T><<<grid_for(mb * cout_g), kThreads, 0, cs>>>(dz.get(), dy, mask, cout_g, s.c_out,
                                                                         g * cout_g, p, r0, mb);
      check_launch("nchw_to_rows_kernel");
      linear_backward<T>(dx ? drows.get() : nullptr, dw ? (first ? dw_g : dw_part.get()) : nullptr,
                         db ? (first ? db_g : db_part.get()) : nullptr, dz.get(), rows.get(), w + g * cout_g * k,
                         nullptr, mb, k, cout_g, Activation::none, stream);
      if (!first && dw) {
        add_kernel<T><<<grid_for(cout_g * k), kThreads, 0, cs>>>(dw_g, dw_part.get(), cout_g * k);
        check_launch("add_kernel");
      }
      if (!first && db) {
        add_kernel<T><<<grid_for(cout_g), kThreads, 0, cs>>>(db_g, db_part.get(), cout_g);
        check_launch("add_kernel");
      }
      if (dx) {
        const int64_t n0 = r0 / p, n1 = (r1 - 1) / p + 1;
        const int64_t count = (n1 - n0) * s.cin_g() * s.h * s.w;
        row2im_kernel<T><<<grid_for(count), kThreads, 0, cs>>>(dx, drows.get(), s, g * s.cin_g(), r0, r1, n0, count);
        check_launch("row2im_kernel");
      }
    }
  }
}

template <typename T> void max_pool2d(T* y, int64_t* idx, const T* x, const PoolShape& s, Stream stream) {
  const int64_t count = s.planes * s.oh * s.ow;
  if (count == 0) return;
  max_pool_kernel<T><<<grid_for(count), kThreads, 0, cuda_stream(stream)>>>(y, idx, x, s);
  check_launch("max_pool_kernel");
}

template <typename T>
int64_t max_pool2d_backward(T* dx, const T* dy, const int64_t* idx, const PoolShape& s, Stream stream) {
  if (s.planes == 0) return 0;
  if (s.oh * s.ow == 0) {
    zero(dx, s.planes * s.h * s.w, stream);
    return 0;
  }
  const DeviceBuffer<unsigned long long> bad(1, stream);
  cuda_check(cudaMemsetAsync(bad.get(), 0, sizeof(unsigned long long), cuda_stream(stream)), "cudaMemsetAsync");
  max_pool_backward_kernel<T><<<grid_for(s.planes, 128), 128, 0, cuda_stream(stream)>>>(dx, dy, idx, s, bad.get());
  check_launch("max_pool_backward_kernel");
  unsigned long long host = 0;
  copy_to_host(&host, bad.get(), 1, stream);
  return static_cast<int64_t>(host);
}

template <typename T> void avg_pool2d(T* y, const T* x, const PoolShape& s, bool count_include_pad, Stream stream) {
  const int64_t count = s.planes * s.oh * s.ow;
  if (count == 0) return;
  avg_pool_kernel<T><<<grid_for(count), kThreads, 0, cuda_stream(stream)>>>(y, x, s, count_include_pad);
  check_launch("avg_pool_kernel");
}

template <typename T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s, bool count_include_pad, Stream stream) {
  const int64_t count = s.planes * s.h * s.w;
  if (count == 0) return;
  avg_pool_backward_kernel<T><<<grid_for(count), kThreads, 0, cuda_stream(stream)>>>(dx, dy, s, count_include_pad);
  check_launch("avg_pool_backward_kernel");
}

template <typename T> void global_avg_pool2d(T* y, const T* x, int64_t planes, int64_t hw, Stream stream) {
  if (planes == 0) return;
  global_avg_kernel<T><<<grid_for(planes, 128), 128, 0, cuda_stream(stream)>>>(y, x, planes, hw);
  check_launch("global_avg_kernel");
}

template <typename T> void global_avg_pool2d_backward(T* dx, const T* dy, int64_t planes, int64_t hw, Stream stream) {
  if (planes * hw == 0) return;
  global_avg_backward_kernel<T><<<grid_for(planes * hw), kThreads, 0, cuda_stream(stream)>>>(dx, dy, planes, hw);
  check_launch("global_avg_backward_kernel");
}

FDNN_CONV_INSTANTIATE(float)
FDNN_CONV_INSTANTIATE(double)

}  // namespace fdnn
