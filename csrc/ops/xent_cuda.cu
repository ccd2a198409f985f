// CUDA softmax, log-softmax and softmax cross-entropy (the CPU twin: xent_cpu.cpp). One block
// per row (grid-stride over rows), row max and sums by cub::BlockReduce; the cross-entropy
// computes its loss and gradient in one kernel that recomputes exp(z - m) instead of storing
// probabilities. Row sums accumulate in double in each thread and across the block (xent.h: a
// float accumulator drifts on long rows). Deterministic: each row reduces in a fixed tree (the
// block size depends on k only), per-row losses go to a buffer that cub::DeviceReduce::Sum adds up (run-to-run
// deterministic), and the mean divisor comes from a single-block reduction. No atomics.
#include <cub/cub.cuh>
#include <cuda/std/limits>

#include <algorithm>
#include <limits>
#include <type_traits>

#include "common/cuda.h"
#include "ops/xent.h"

namespace fdnn {
namespace {

constexpr int kPrepThreads = 1024;

// exp in the precision of T (expf for float, not the float -> double overload).
__device__ inline float exp_t(float x) { return expf(x); }
__device__ inline double exp_t(double x) { return ::exp(x); }

template <typename T> __device__ constexpr T neg_inf() { return -cuda::std::numeric_limits<T>::infinity(); }

// Max as the CPU's row_max compares (acc = z > acc ? z : acc): a NaN never becomes the max, so
// starting from -inf the max stays a number and the NaN shows up in the sum instead.
struct MaxOp {
  template <typename V> __device__ V operator()(V acc, V z) const { return z > acc ? z : acc; }
};
struct SumOp {
  template <typename V> __device__ V operator()(V a, V b) const { return a + b; }
};

// Block-wide reduction whose result every thread receives. Must be reached by the whole block.
template <int Threads, typename V, typename Op> __device__ V block_all_reduce(V v, Op op) {
  using Reduce = cub::BlockReduce<V, Threads>;
  __shared__ typename Reduce::TempStorage tmp;
  __shared__ V result;
  const V r = Reduce(tmp).Reduce(v, op);
  if (threadIdx.x == 0) result = r;
  __syncthreads();
  const V out = result;
  __syncthreads();  // tmp and result are reused by the next call
  return out;
}

template <int Threads, typename T> __device__ T row_max(const T* z, int64_t k) {
  T m = neg_inf<T>();
  for (int64_t j = threadIdx.x; j < k; j += Threads) m = MaxOp{}(m, z[j]);
  return block_all_reduce<Threads>(m, MaxOp{});
}

// Mirrors softmax_rows: y = exp(x - m) / s, or y = (x - m) - log s for log-softmax.
template <typename T, int Threads>
__global__ void __launch_bounds__(Threads)
    softmax_kernel(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t n, int64_t k, bool log) {
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* z = x + r * k;
    T* out = y + r * k;
    const T m = row_max<Threads>(z, k);
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < k; j += Threads) s += static_cast<double>(exp_t(z[j] - m));
    s = block_all_reduce<Threads>(s, SumOp{});
    if (log) {
      const T log_s = static_cast<T>(::log(s));
      for (int64_t j = threadIdx.x; j < k; j += Threads) out[j] = log_softmax_value(z[j], m, log_s);
    } else {
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t j = threadIdx.x; j < k; j += Threads) out[j] = exp_t(z[j] - m) * inv;
    }
  }
}

// Mirrors softmax_backward_rows: dx = y (dy - sum(dy y)), or dx = dy - exp(y) sum(dy) for log.
template <typename T, int Threads>
__global__ void __launch_bounds__(Threads)
    softmax_backward_kernel(T* FDNN_RESTRICT dx, const T* FDNN_RESTRICT dy, const T* FDNN_RESTRICT y, int64_t n,
                            int64_t k, bool log) {
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* g = dy + r * k;
    const T* p = y + r * k;
    T* d = dx + r * k;
    double acc = 0.0;
    for (int64_t j = threadIdx.x; j < k; j += Threads) acc += static_cast<double>(log ? g[j] : g[j] * p[j]);
    const T dot = static_cast<T>(block_all_reduce<Threads>(acc, SumOp{}));
    for (int64_t j = threadIdx.x; j < k; j += Threads) d[j] = log ? g[j] - exp_t(p[j]) * dot : p[j] * (g[j] - dot);
  }
}

// Mirrors the head of softmax_cross_entropy (one block): params[0] = W = sum_j w_j (k without
// weights), params[1] = scale = 1 / (sum of w_y over counted rows) for mean (NaN when that sum is
// 0), else 1.
template <typename T>
__global__ void __launch_bounds__(kPrepThreads)
    xent_prep_kernel(double* params, const int64_t* FDNN_RESTRICT labels, const T* FDNN_RESTRICT weight, int64_t n,
                     int64_t k, int64_t ignore_index, bool mean) {
  double w = 0.0, c = 0.0;
  if (weight)
    for (int64_t j = threadIdx.x; j < k; j += kPrepThreads) w += static_cast<double>(weight[j]);
  if (mean)
    for (int64_t r = threadIdx.x; r < n; r += kPrepThreads)
      if (labels[r] != ignore_index) c += weight ? static_cast<double>(weight[labels[r]]) : 1.0;
  w = block_all_reduce<kPrepThreads>(w, SumOp{});
  c = block_all_reduce<kPrepThreads>(c, SumOp{});
  if (threadIdx.x == 0) {
    params[0] = weight ? w : static_cast<double>(k);
    params[1] = !mean ? 1.0 : c == 0.0 ? cuda::std::numeric_limits<double>::quiet_NaN() : 1.0 / c;
  }
}

// Mirrors xent_rows. The row loss goes to losses[r] (double) when losses is not null, else to
// row_loss[r] (T) when that is not null; dlogits (may be null) gets
// d_j = scale (c p_j - tw(q_j, w_j)) (xent.h). Ignored rows: loss 0 and a zero gradient row.
template <typename T, int Threads>
__global__ void __launch_bounds__(Threads)
    xent_kernel(T* FDNN_RESTRICT row_loss, double* FDNN_RESTRICT losses, T* FDNN_RESTRICT dlogits,
                const T* FDNN_RESTRICT logits, const int64_t* FDNN_RESTRICT labels, const T* FDNN_RESTRICT weight,
                const double* FDNN_RESTRICT params, int64_t n, int64_t k, int64_t ignore_index, XentTarget t) {
  const double w_sum = params[0], scale = params[1];
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    // The same for the whole block, as are t, weight, w_sum and w_y: the branches below are uniform.
    const int64_t label = labels[r];
    T* d = dlogits ? dlogits + r * k : nullptr;
    double loss = 0.0;
    if (label == ignore_index) {
      if (d)
        for (int64_t j = threadIdx.x; j < k; j += Threads) d[j] = T(0);
    } else {
      const T* z = logits + r * k;
      const T m = row_max<Threads>(z, k);
      double s = 0.0;
      for (int64_t j = threadIdx.x; j < k; j += Threads) s += static_cast<double>(exp_t(z[j] - m));
      s = block_all_reduce<Threads>(s, SumOp{});
      const double log_s = ::log(s);
      const T log_s_t = static_cast<T>(log_s);
      // others = sum_{j != y} w_j nll_j, only with smoothing.
      double others = 0.0;
      if (t.b != 0.0) {
        for (int64_t j = threadIdx.x; j < k; j += Threads)
          if (j != label) {
            const T nll = (m - z[j]) + log_s_t;
            others += static_cast<double>(weight ? weight[j] * nll : nll);
          }
        others = block_all_reduce<Threads>(others, SumOp{});
      }
      const double w_y = weight ? static_cast<double>(weight[label]) : 1.0;
      if (threadIdx.x == 0) {
        const double nll_y = (static_cast<double>(m) - static_cast<double>(z[label])) + log_s;
        loss = xent_row_loss(t, nll_y, w_y, others);
      }
      if (d) {
        double w_others = static_cast<double>(k - 1);
        if (weight) {
          if (others_weight_by_difference(w_sum, w_y)) {
            w_others = w_sum - w_y;
          } else {  // a non-finite weight: sum the other classes' weights
            double acc = 0.0;
            for (int64_t j = threadIdx.x; j < k; j += Threads)
              if (j != label) acc += static_cast<double>(weight[j]);
            w_others = block_all_reduce<Threads>(acc, SumOp{});
          }
        }
        const T c_p = static_cast<T>(scale * xent_grad_p_coefficient(t, w_y, w_others) / s);
        const T c_w = static_cast<T>(scale * t.b);
        const T c_y = static_cast<T>(scale * label_target_weight(t, w_y));
        const bool weighted = weight && t.b != 0.0;
        for (int64_t j = threadIdx.x; j < k; j += Threads) {
          const T e = exp_t(z[j] - m);
          d[j] = j == label ? c_p * e - c_y : c_p * e - (weighted ? c_w * weight[j] : c_w);
        }
      }
    }
    if (threadIdx.x == 0) {
      if (losses)
        losses[r] = loss;
      else if (row_loss)
        row_loss[r] = static_cast<T>(loss);
    }
  }
}

// Calls f(std::integral_constant<int, Threads>) with a block size for rows of k elements.
template <typename F> void with_row_threads(int64_t k, F&& f) {
  if (k <= 64)
    f(std::integral_constant<int, 32>{});
  else if (k <= 1024)
    f(std::integral_constant<int, 128>{});
  else
    f(std::integral_constant<int, 512>{});
}

template <typename T> void softmax_launch(T* y, const T* x, int64_t n, int64_t k, bool log, Stream stream) {
  if (n == 0) return;
  with_row_threads(k, [&](auto threads) {
    constexpr int kRowThreads = decltype(threads)::value;
    softmax_kernel<T, kRowThreads><<<grid_for(n, 1), kRowThreads, 0, cuda_stream(stream)>>>(y, x, n, k, log);
    check_launch("softmax_kernel");
  });
}

template <typename T>
void softmax_backward_launch(T* dx, const T* dy, const T* y, int64_t n, int64_t k, bool log, Stream stream) {
  if (n == 0) return;
  with_row_threads(k, [&](auto threads) {
    constexpr int kRowThreads = decltype(threads)::value;
    softmax_backward_kernel<T, kRowThreads>
        <<<grid_for(n, 1), kRowThreads, 0, cuda_stream(stream)>>>(dx, dy, y, n, k, log);
    check_launch("softmax_backward_kernel");
  });
}

}  // namespace

template <typename T> void softmax(T* y, const T* x, int64_t n, int64_t k, Stream stream) {
  softmax_launch(y, x, n, k, false, stream);
}
template <typename T> void log_softmax(T* y, const T* x, int64_t n, int64_t k, Stream stream) {
  softmax_launch(y, x, n, k, true, stream);
}
template <typename T> void softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k, Stream stream) {
  softmax_backward_launch(dx, dy, y, n, k, false, stream);
}
template <typename T> void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t n, int64_t k, Stream stream) {
  softmax_backward_launch(dx, dy, y, n, k, true, stream);
}

template <typename T>
double softmax_cross_entropy(T* row_loss, T* dlogits, const T* logits, const int64_t* labels, const T* weight,
                             int64_t n, int64_t k, int64_t ignore_index, double label_smoothing, Smoothing smoothing,
                             Reduction reduction, Stream stream) {
  // No rows: as on the CPU, the mean divides 0 by a divisor of 0 (NaN) and the sum is 0.
  if (n == 0) return reduction == Reduction::mean ? std::numeric_limits<double>::quiet_NaN() : 0.0;
  const cudaStream_t cs = cuda_stream(stream);
  const XentTarget t = xent_target(label_smoothing, k, smoothing);
  DeviceBuffer<double> params(3, stream);  // W, scale, total
  xent_prep_kernel<T><<<1, kPrepThreads, 0, cs>>>(params.get(), labels, weight, n, k, ignore_index,
                                                   reduction == Reduction::mean);
  check_launch("xent_prep_kernel");
  DeviceBuffer<double> losses(reduction == Reduction::none ? 0 : n, stream);
  with_row_threads(k, [&](auto threads) {
    constexpr int kRowThreads = decltype(threads)::value;
    xent_kernel<T, kRowThreads><<<grid_for(n, 1), kRowThreads, 0, cs>>>(
        row_loss, losses.get(), dlogits, logits, labels, weight, params.get(), n, k, ignore_index, t);
    check_launch("xent_kernel");
  });
  if (reduction == Reduction::none) return 0.0;
  size_t bytes = 0;
  cuda_check(cub::DeviceReduce::Sum(nullptr, bytes, losses.get(), params.get() + 2, n, cs),
             "cub::DeviceReduce::Sum");
  // At least 1 byte: a null pointer would only query the size again.
  DeviceBuffer<unsigned char> temp(static_cast<int64_t>(std::max<size_t>(bytes, 1)), stream);
  cuda_check(cub::DeviceReduce::Sum(temp.get(), bytes, losses.get(), params.get() + 2, n, cs),
             "cub::DeviceReduce::Sum");
  double host[2];  // scale, total
  copy_to_host(host, params.get() + 1, 2, stream);
  return reduction == Reduction::mean ? host[1] * host[0] : host[1];
}

FDNN_XENT_INSTANTIATE(float)
FDNN_XENT_INSTANTIATE(double)

}  // namespace fdnn
