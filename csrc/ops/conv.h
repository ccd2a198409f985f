// 2-D convolution and pooling on NCHW arrays: the geometry shared by the CPU and CUDA builds, and
// the entry points. Plain C++ (no CUDA includes).
//
// Every entry point takes the call's Stream last (common/stream.h); the CPU ignores it.
//
// Convolution is a GEMM over im2col blocks: the output positions (n, oh, ow) of the whole batch,
// flattened, are cut into fixed blocks of M positions (CPU: at most 256, whole images or parts
// of one; CUDA: conv_block_rows, at most kConvBlockElemsCuda elements per scratch matrix and
// never less than one position); per block and group, the K = C_in/groups * kH * kW input values
// under each position (0 in the padding) form the block's im2col matrix, and the outputs are
// w_g times that matrix (or its transpose times w_g^T), with the bias and the ReLU fused into the
// GEMM. Backward, per block: dz (the ReLU mask applied), dw_g += dz^T im2col summed over the
// blocks in a fixed order, and the im2col gradient dz w_g added back onto the input positions it
// came from (col2im). The result depends on the shapes only, never on the thread count.
// Layouts, scratch and accuracy: conv_cpu.cpp and conv_cuda.cu.
//
// Shapes (contiguous): x (n, c_in, h, w), w (c_out, c_in / groups, kh, kw), b (c_out) or null,
// y and dy (n, c_out, oh, ow), with oh = (h + 2 ph - dh (kh - 1) - 1) / sh + 1 (ow alike).
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/activation.h"
#include "common/macros.h"
#include "common/stream.h"

namespace fdnn {

struct ConvShape {
  int64_t n, c_in, h, w;   // input
  int64_t c_out, kh, kw;   // weight (c_out, c_in / groups, kh, kw)
  int64_t sh, sw, ph, pw, dh, dw;
  int64_t groups;
  int64_t oh, ow;          // output

  FDNN_HD int64_t cin_g() const { return c_in / groups; }
  FDNN_HD int64_t cout_g() const { return c_out / groups; }
  FDNN_HD int64_t k() const { return cin_g() * kh * kw; }  // the GEMM's inner dimension per group
  FDNN_HD int64_t positions() const { return oh * ow; }    // output positions per image
  FDNN_HD int64_t rows() const { return n * oh * ow; }     // output positions of the batch
};

// The output size along one axis; < 1 when the dilated kernel does not fit the padded input.
FDNN_HD inline int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
  const int64_t span = dilation * (k - 1) + 1;
  return in + 2 * pad < span ? 0 : (in + 2 * pad - span) / stride + 1;
}

// Elements per scratch matrix of one CUDA block (rows x K, rows x C_out/groups).
constexpr int64_t kConvBlockElemsCuda = int64_t{1} << 24;

// Rows (output positions) per block: as many as fit the budget in every scratch matrix, at least 1.
inline int64_t conv_block_rows(const ConvShape& s, int64_t budget) {
  const int64_t widest = std::max<int64_t>({s.k(), s.cout_g(), 1});
  return std::max<int64_t>(1, std::min<int64_t>(budget / widest, std::max<int64_t>(s.rows(), 1)));
}

// y = act(conv2d(x, w) + b).
template <typename T>
void conv2d(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act, Stream stream);

// dz = dy * act'(y); dx = conv2d's input gradient of dz, dw its weight gradient, db = sums of dz
// over (n, oh, ow). Any of dx, dw, db may be null to skip it; y is needed only when act != none.
template <typename T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, const ConvShape& s,
                     Activation act, Stream stream);

// ---- The direct path for a small C_in * kH * kW (conv_direct_cpu.cpp; CPU only) ----
// Where groups = 1, K = C_in * kH * kW <= kConvDirectMaxK and OH * OW >= kConvDirectMinPositions
// (any stride, padding, dilation), on a CPU with AVX-512F, the CPU conv2d and conv2d_backward skip
// im2col and the GEMM: a GEMM with so small a K is bound by memory, so a direct kernel gathers the
// K taps of each chunk of <= 1024 output positions into an L1/L2-sized column block and computes
// from it every channel's outputs (with the bias and the ReLU), dw and db (sums over N * OH * OW in
// fixed chunks, lanes and tasks, combined in double) and dx (w^T dz added back onto the image).
// Scratch per thread, kept between calls: at most 1024 (C_out + 3 K + 12) elements and
// 16 ((C_out + 7)(K + 2) + C_out) doubles; per call a padded copy of w and at most
// 32 (K + 1) C_out doubles of task sums. None of it grows with the batch.
// The thresholds were measured (fwd+bwd, one thread, float32, the direct path's time over the
// im2col path's in one run; float64 alike): 28x28 outputs 0.53 (K = 9), 0.71 (K = 27), 0.72
// (K = 36), 0.79 (K = 54); 16x16 outputs 0.85 (K = 18), 0.96 (K = 27), 0.95 (K = 32, 1x1),
// 1.06 (K = 54); 14x14 1.02 (K = 27); 7x7 to 10x10 slower still (per-image overheads and
// padded vector lanes), 8x8 0.93 (K = 9).
constexpr int64_t kConvDirectMaxK = 32;
constexpr int64_t kConvDirectMinPositions = 256;

// Whether the direct path takes this shape (the rule above).
bool conv_direct_applies(const ConvShape& s);
// The direct conv2d / conv2d_backward (same arguments and results as the im2col ones); false,
// with nothing written, where conv_direct_applies(s) is false.
template <typename T>
bool conv2d_direct(T* y, const T* x, const T* w, const T* b, const ConvShape& s, Activation act);
template <typename T>
bool conv2d_backward_direct(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const T* y, const ConvShape& s,
                            Activation act);
// ---- end of the direct path ----

struct PoolShape {
  int64_t planes, h, w;  // planes = n * c
  int64_t kh, kw, sh, sw, ph, pw;
  int64_t oh, ow;
};

// Max pooling: y = the window's maximum over the positions inside the input (the padding never
// wins), idx = its flat index ih * w + iw in the input plane. Ties keep the first maximum in
// row-major window order and a NaN wins (the last NaN of the window), as torch's CPU kernel.
template <typename T> void max_pool2d(T* y, int64_t* idx, const T* x, const PoolShape& s, Stream stream);

// dx = 0, then dx[plane, idx] += dy for every output. Indices outside [0, h * w) are skipped and
// counted: the return value is their number (the binding raises on any).
template <typename T>
int64_t max_pool2d_backward(T* dx, const T* dy, const int64_t* idx, const PoolShape& s, Stream stream);

// Average pooling: the window's sum over the positions inside the input, divided by kh * kw
// (count_include_pad) or by the number of those positions.
template <typename T> void avg_pool2d(T* y, const T* x, const PoolShape& s, bool count_include_pad, Stream stream);
template <typename T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s, bool count_include_pad, Stream stream);

// y[p] = mean of plane p (hw values); backward dx[p, :] = dy[p] / hw.
template <typename T> void global_avg_pool2d(T* y, const T* x, int64_t planes, int64_t hw, Stream stream);
template <typename T> void global_avg_pool2d_backward(T* dx, const T* dy, int64_t planes, int64_t hw, Stream stream);

// The explicit instantiations that both devices' files (conv_cpu.cpp, conv_cuda.cu) emit.
#define FDNN_CONV_INSTANTIATE(T)                                                                                \
  template void conv2d<T>(T*, const T*, const T*, const T*, const ConvShape&, Activation, Stream);              \
  template void conv2d_backward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const ConvShape&,        \
                                   Activation, Stream);                                                         \
  template void max_pool2d<T>(T*, int64_t*, const T*, const PoolShape&, Stream);                                \
  template int64_t max_pool2d_backward<T>(T*, const T*, const int64_t*, const PoolShape&, Stream);              \
  template void avg_pool2d<T>(T*, const T*, const PoolShape&, bool, Stream);                                    \
  template void avg_pool2d_backward<T>(T*, const T*, const PoolShape&, bool, Stream);                           \
  template void global_avg_pool2d<T>(T*, const T*, int64_t, int64_t, Stream);                                   \
  template void global_avg_pool2d_backward<T>(T*, const T*, int64_t, int64_t, Stream);

}  // namespace fdnn
