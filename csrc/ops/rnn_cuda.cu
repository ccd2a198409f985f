// CUDA pointwise passes of the recurrent cells (the CPU twin: rnn_cpu.cpp). The sequence drivers
// are rnn.h's, whose GEMMs (the steps' recurrent products too, rnn_recurrent_product) go through
// linear<T> (linear_cuda.cu: cuBLASLt, full FP32 / FP64, deterministic algorithm choice). One thread block per batch row (grid-stride over rows), its
// threads striding over the units; the layer-norm sums are CUB block reductions (a fixed order
// for the fixed block size), so results are repeatable run to run.
#include <cub/block/block_reduce.cuh>

#include "common/cuda.h"
#include "ops/rnn.h"

namespace fdnn {
namespace {

constexpr int kRowThreads = 256;
using Reduce = cub::BlockReduce<double, kRowThreads>;

struct RowShared {
  typename Reduce::TempStorage temp;
  double value;
};

// The block's sum of v, on every thread.
__device__ double block_sum(double v, RowShared& sh) {
  const double total = Reduce(sh.temp).Sum(v);
  if (threadIdx.x == 0) sh.value = total;
  __syncthreads();
  const double r = sh.value;
  __syncthreads();  // sh is reused by the next reduction
  return r;
}

// Layer norm of the segment a[0, n) in place (a = w * xhat + b), saving xhat and rstd.
template <typename T>
__device__ void block_layer_norm(T* a, T* xhat, T* rstd_out, const T* w, const T* b, int64_t n, RowShared& sh) {
  double sum = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += double(a[j]);
  const double mean = block_sum(sum, sh) / double(n);
  double sq = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const double d = double(a[j]) - mean;
    sq += d * d;
  }
  const T rstd = rnn_rstd<T>(block_sum(sq, sh), n);
  const T m = T(mean);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    const T xh = (a[j] - m) * rstd;
    xhat[j] = xh;
    a[j] = xh * w[j] + b[j];
  }
  if (threadIdx.x == 0) *rstd_out = rstd;
  __syncthreads();
}

// Its backward: d (in: gradient of the normalized output; out: of the input); p = d * xhat, q = d.
template <typename T>
__device__ void block_layer_norm_backward(T* d, T* p, T* q, const T* xhat, T rstd, const T* w, int64_t n,
                                          RowShared& sh) {
  double sd = 0, sdx = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    p[j] = d[j] * xhat[j];
    q[j] = d[j];
    const T dxh = d[j] * w[j];
    sd += double(dxh);
    sdx += double(dxh * xhat[j]);
  }
  const T mean_d = T(block_sum(sd, sh) / double(n));
  const T mean_dx = T(block_sum(sdx, sh) / double(n));
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    d[j] = rnn_layer_norm_grad(d[j] * w[j], xhat[j], rstd, mean_d, mean_dx);
  __syncthreads();
}

template <typename T> __global__ void step_forward_kernel(RnnStepForward<T> s) {
  __shared__ RowShared sh;
  const int64_t H = s.hidden, G = rnn_gates(s.cell), gh = G * H;
  for (int64_t b = blockIdx.x; b < s.batch; b += gridDim.x) {
    T* a = s.gates + b * gh;
    const T* rec = s.rec + b * gh;
    T* h = s.h + b * H;
    if (s.cell == RnnCell::lstm) {
      for (int64_t k = threadIdx.x; k < gh; k += blockDim.x) a[k] += rec[k];
      __syncthreads();
      if (s.xhat)
        for (int64_t g = 0; g < G; ++g)
          block_layer_norm(a + g * H, s.xhat + b * gh + g * H, s.rstd + b * G + g, s.ln_w + g * H, s.ln_b + g * H, H,
                           sh);
      const T* c_prev = s.c_prev + b * H;
      T* c_out = s.aux + b * H;
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        T i, f, g, o, c, hv;
        lstm_cell(a[j], a[H + j], a[2 * H + j], a[3 * H + j], c_prev[j], i, f, g, o, c, hv);
        a[j] = i;
        a[H + j] = f;
        a[2 * H + j] = g;
        a[3 * H + j] = o;
        c_out[j] = c;
        h[j] = hv;
        if (s.hm) s.hm[b * H + j] = hv * s.hmask[b * H + j];
      }
    } else {
      for (int64_t k = threadIdx.x; k < 2 * H; k += blockDim.x) a[k] += rec[k];
      __syncthreads();
      if (s.xhat)
        for (int64_t g = 0; g < 2; ++g)
          block_layer_norm(a + g * H, s.xhat + b * gh + g * H, s.rstd + b * G + g, s.ln_w + g * H, s.ln_b + g * H, H,
                           sh);
      T* an = a + 2 * H;
      const T* pn = rec + 2 * H;
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        const T r = rnn_sigmoid(a[j]);
        a[j] = r;
        a[H + j] = rnn_sigmoid(a[H + j]);
        s.aux[b * H + j] = pn[j];
        an[j] += r * pn[j];
      }
      __syncthreads();
      if (s.xhat)
        block_layer_norm(an, s.xhat + b * gh + 2 * H, s.rstd + b * G + 2, s.ln_w + 2 * H, s.ln_b + 2 * H, H, sh);
      const T* h_prev = s.h_prev + b * H;
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        const T n = rnn_tanh(an[j]);
        an[j] = n;
        const T hv = gru_output(a[H + j], n, h_prev[j]);
        h[j] = hv;
        if (s.hm) s.hm[b * H + j] = hv * s.hmask[b * H + j];
      }
    }
    __syncthreads();  // the row's shared state is reused by the block's next row
  }
}

template <typename T> __global__ void step_backward_kernel(RnnStepBackward<T> s) {
  __shared__ RowShared sh;
  const int64_t H = s.hidden, G = rnn_gates(s.cell), gh = G * H;
  for (int64_t b = blockIdx.x; b < s.batch; b += gridDim.x) {
    const T* gt = s.gates + b * gh;
    T* carry = s.carry + b * H;
    T* dg = s.dg_ih + b * gh;
    // dh_t into carry: the direct part + dy + hmask * (dA_hh(t+1) W_hh).
    for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
      T v = carry[j];
      if (s.dy) v += s.dy[b * H + j];
      if (s.rec) v += s.hmask ? s.hmask[b * H + j] * s.rec[b * H + j] : s.rec[b * H + j];
      carry[j] = v;
    }
    if (s.cell == RnnCell::lstm) {
      const T* c = s.aux + b * H;
      const T* c_prev = s.c_prev + b * H;
      T* dc = s.dc + b * H;
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        T dai, daf, dag, dao, dcp;
        lstm_cell_backward(gt[j], gt[H + j], gt[2 * H + j], gt[3 * H + j], c[j], c_prev[j], carry[j], dc[j], dai, daf,
                           dag, dao, dcp);
        dg[j] = dai;
        dg[H + j] = daf;
        dg[2 * H + j] = dag;
        dg[3 * H + j] = dao;
        dc[j] = dcp;
        carry[j] = T(0);
      }
      __syncthreads();
      if (s.ln_p)
        for (int64_t g = 0; g < G; ++g)
          block_layer_norm_backward(dg + g * H, s.ln_p + b * gh + g * H, s.ln_q + b * gh + g * H,
                                    s.xhat + b * gh + g * H, s.rstd[b * G + g], s.ln_w + g * H, H, sh);
    } else {
      const T* r = gt;
      const T* z = gt + H;
      const T* n = gt + 2 * H;
      const T* pn = s.aux + b * H;
      const T* h_prev = s.h_prev + b * H;
      T* dgh = s.dg_hh + b * gh;
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        T dn, dz, direct;
        gru_output_backward(z[j], n[j], h_prev[j], carry[j], dn, dz, direct);
        carry[j] = direct;
        dg[2 * H + j] = dn * (T(1) - n[j] * n[j]);
        dg[H + j] = dz * z[j] * (T(1) - z[j]);
      }
      __syncthreads();
      if (s.ln_p)
        block_layer_norm_backward(dg + 2 * H, s.ln_p + b * gh + 2 * H, s.ln_q + b * gh + 2 * H,
                                  s.xhat + b * gh + 2 * H, s.rstd[b * G + 2], s.ln_w + 2 * H, H, sh);
      for (int64_t j = threadIdx.x; j < H; j += blockDim.x) {
        const T sn = dg[2 * H + j];
        dg[j] = sn * pn[j] * r[j] * (T(1) - r[j]);
        dgh[2 * H + j] = sn * r[j];
      }
      __syncthreads();
      if (s.ln_p)
        for (int64_t g = 0; g < 2; ++g)
          block_layer_norm_backward(dg + g * H, s.ln_p + b * gh + g * H, s.ln_q + b * gh + g * H,
                                    s.xhat + b * gh + g * H, s.rstd[b * G + g], s.ln_w + g * H, H, sh);
      for (int64_t k = threadIdx.x; k < 2 * H; k += blockDim.x) dgh[k] = dg[k];
    }
    __syncthreads();
  }
}

template <typename T>
__global__ void scale_rows_kernel(T* dst, const T* src, const T* mask, int64_t rows, int64_t batch, int64_t cols) {
  const int64_t count = rows * cols;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / cols, j = e % cols;
    dst[e] = src ? (mask ? src[e] * mask[(r % batch) * cols + j] : src[e]) : T(0);
  }
}

template <typename T>
__global__ void combine_kernel(T* dst, const T* carry, const T* rec, const T* mask, int64_t count) {
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count; e += int64_t(gridDim.x) * blockDim.x)
    dst[e] = (carry ? carry[e] : T(0)) + (mask ? mask[e] * rec[e] : rec[e]);
}

unsigned row_blocks(int64_t batch) { return static_cast<unsigned>(std::min<int64_t>(batch, 65535 * 8)); }

}  // namespace

template <typename T> void rnn_step_forward(const RnnStepForward<T>& s, Stream stream) {
  if (s.batch == 0) return;
  step_forward_kernel<T><<<row_blocks(s.batch), kRowThreads, 0, cuda_stream(stream)>>>(s);
  check_launch("step_forward_kernel");
}

template <typename T> void rnn_step_backward(const RnnStepBackward<T>& s, Stream stream) {
  if (s.batch == 0) return;
  step_backward_kernel<T><<<row_blocks(s.batch), kRowThreads, 0, cuda_stream(stream)>>>(s);
  check_launch("step_backward_kernel");
}

template <typename T>
void rnn_scale_rows(T* dst, const T* src, const T* mask, int64_t rows, int64_t batch, int64_t cols, Stream stream) {
  if (rows * cols == 0) return;
  scale_rows_kernel<T><<<grid_for(rows * cols), kThreads, 0, cuda_stream(stream)>>>(dst, src, mask, rows, batch, cols);
  check_launch("scale_rows_kernel");
}

template <typename T>
void rnn_combine(T* dst, const T* carry, const T* rec, const T* mask, int64_t batch, int64_t cols, Stream stream) {
  if (batch * cols == 0) return;
  combine_kernel<T><<<grid_for(batch * cols), kThreads, 0, cuda_stream(stream)>>>(dst, carry, rec, mask, batch * cols);
  check_launch("combine_kernel");
}

// The step's GEMM through linear<T> (cuBLASLt): nothing packed.
template <typename T>
Buffer<T> rnn_pack_recurrent(bool, const T*, int64_t, int64_t, int64_t, Stream) {
  return Buffer<T>();
}

template <typename T>
void rnn_recurrent_product(bool backward, T* rec, const T* a, const T* w_hh, const T*, const T* b_hh, int64_t batch,
                           int64_t hidden, int64_t gh, Stream stream) {
  if (backward)
    linear_backward<T>(rec, nullptr, nullptr, a, nullptr, w_hh, nullptr, batch, hidden, gh, Activation::none, stream);
  else
    linear<T>(rec, a, w_hh, b_hh, batch, hidden, gh, Activation::none, stream);
}

template void rnn_step_forward<float>(const RnnStepForward<float>&, Stream);
template void rnn_step_forward<double>(const RnnStepForward<double>&, Stream);
template void rnn_step_backward<float>(const RnnStepBackward<float>&, Stream);
template void rnn_step_backward<double>(const RnnStepBackward<double>&, Stream);
template void rnn_scale_rows<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, Stream);
template void rnn_scale_rows<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, Stream);
template void rnn_combine<float>(float*, const float*, const float*, const float*, int64_t, int64_t, Stream);
template void rnn_combine<double>(double*, const double*, const double*, const double*, int64_t, int64_t, Stream);

FDNN_RNN_INSTANTIATE(float)
FDNN_RNN_INSTANTIATE(double)

}  // namespace fdnn
