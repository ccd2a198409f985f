// CUDA optimizer updates (the CPU twin: optim_cpu.cpp): one multi-tensor launch per call. The
// host cuts every array into chunks of kChunk elements and uploads a table of the chunks and
// the arrays' pointers; CUDA block b updates chunk b with the rule of ops/optim.h, the same
// element function the CPU runs. Gradient norms reduce each chunk in one block (in double) and
// add the partials on the host in chunk order: deterministic, no atomics.
#include <cub/cub.cuh>
#include <math_constants.h>

#include <cmath>
#include <limits>
#include <vector>

#include "common/cuda.h"
#include "ops/optim.h"

namespace fdnn {
namespace {

constexpr int64_t kChunk = 1 << 14;

struct ChunkRef {
  int32_t array;
  int64_t begin, end;
};

// The chunks of a list of arrays (depends only on the sizes).
std::vector<ChunkRef> chunks_of(const std::vector<int64_t>& sizes) {
  std::vector<ChunkRef> out;
  for (size_t a = 0; a < sizes.size(); ++a)
    for (int64_t b = 0; b < sizes[a]; b += kChunk)
      out.push_back({static_cast<int32_t>(a), b, std::min(sizes[a], b + kChunk)});
  return out;
}

// host's values copied into buf on the stream, ahead of the kernels that read them (null for an
// empty list). From pageable memory the copy is staged before cudaMemcpyAsync returns, so host may
// go away afterwards.
template <typename T> T* upload(const std::vector<T>& host, DeviceBuffer<T>& buf, Stream stream) {
  if (host.empty()) return nullptr;
  cuda_check(cudaMemcpyAsync(buf.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice,
                             cuda_stream(stream)),
             "cudaMemcpyAsync");
  return buf.get();
}

// The device copies of a call's chunk table and pointer lists (null for an unused state).
template <typename T> struct DeviceLists {
  std::vector<ChunkRef> chunks;
  DeviceBuffer<ChunkRef> chunk_buf;
  DeviceBuffer<T*> p_buf, s0_buf, s1_buf, s2_buf;
  DeviceBuffer<const T*> g_buf;
  const ChunkRef* table;
  T *const *p, *const *s0, *const *s1, *const *s2;
  const T* const* g;

  DeviceLists(const OptimArrays<T>& a, Stream stream)
      : chunks(chunks_of(a.sizes)),
        chunk_buf(chunks.size(), stream),
        p_buf(a.params.size(), stream),
        s0_buf(a.state0.size(), stream),
        s1_buf(a.state1.size(), stream),
        s2_buf(a.state2.size(), stream),
        g_buf(a.grads.size(), stream) {
    table = upload(chunks, chunk_buf, stream);
    p = upload(a.params, p_buf, stream);
    g = upload(a.grads, g_buf, stream);
    s0 = upload(a.state0, s0_buf, stream);
    s1 = upload(a.state1, s1_buf, stream);
    s2 = upload(a.state2, s2_buf, stream);
  }
};

// Block b applies rule(p, g, s0, s1, s2) to each element of chunk b (a null list gives null).
template <typename T, class Rule>
__global__ void update_kernel(const ChunkRef* chunks, T* const* p, const T* const* g, T* const* s0, T* const* s1,
                              T* const* s2, Rule rule) {
  const ChunkRef c = chunks[blockIdx.x];
  T* pa = p[c.array];
  const T* ga = g[c.array];
  T* a0 = s0 ? s0[c.array] : nullptr;
  T* a1 = s1 ? s1[c.array] : nullptr;
  T* a2 = s2 ? s2[c.array] : nullptr;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x)
    rule(pa[i], ga[i], a0 ? a0 + i : nullptr, a1 ? a1 + i : nullptr, a2 ? a2 + i : nullptr);
}

template <typename T, class Rule>
void launch_update(const OptimArrays<T>& a, Rule rule, const char* name, Stream stream) {
  DeviceLists<T> d(a, stream);
  if (d.chunks.empty()) return;
  update_kernel<T, Rule><<<static_cast<unsigned>(d.chunks.size()), kThreads, 0, cuda_stream(stream)>>>(
      d.table, d.p, d.g, d.s0, d.s1, d.s2, rule);
  check_launch(name);
}

template <typename T> struct SgdRule {
  SgdHyper<T> h;
  __device__ void operator()(T& p, T g, T* buf, T*, T*) const { sgd_update(p, g, buf, h); }
};
template <typename T> struct AdagradRule {
  AdagradHyper<T> h;
  __device__ void operator()(T& p, T g, T* sum, T*, T*) const { adagrad_update(p, g, *sum, h); }
};
template <typename T> struct RmspropRule {
  RmspropHyper<T> h;
  __device__ void operator()(T& p, T g, T* sq, T* avg, T* buf) const { rmsprop_update(p, g, *sq, avg, buf, h); }
};
template <typename T> struct AdadeltaRule {
  AdadeltaHyper<T> h;
  __device__ void operator()(T& p, T g, T* sq, T* acc, T*) const { adadelta_update(p, g, *sq, *acc, h); }
};
template <typename T> struct AdamRule {
  AdamHyper<T> h;
  __device__ void operator()(T& p, T g, T* m, T* v, T* vmax) const { adam_update(p, g, *m, *v, vmax, h); }
};
template <typename T> struct NadamRule {
  NadamHyper<T> h;
  __device__ void operator()(T& p, T g, T* m, T* v, T*) const { nadam_update(p, g, *m, *v, h); }
};

// max that propagates NaN.
struct NanMax {
  __device__ double operator()(double a, double b) const {
    return (a != a || b != b) ? CUDART_NAN : (a > b ? a : b);
  }
};

// Per chunk: the sum of squares (double) or max |x| (NaN if any NaN).
template <typename T>
__global__ void norm_partials_kernel(const ChunkRef* chunks, const T* const* x, bool infinity_norm, double* partial) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const ChunkRef c = chunks[blockIdx.x];
  const T* xa = x[c.array];
  double acc = 0.0;
  bool nan = false;
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) {
    const double v = static_cast<double>(xa[i]);
    if (infinity_norm) {
      nan = nan || v != v;
      acc = fmax(acc, fabs(v));
    } else {
      acc += v * v;
    }
  }
  if (infinity_norm) {
    const double m = Reduce(tmp).Reduce(nan ? CUDART_NAN : acc, NanMax());
    if (threadIdx.x == 0) partial[blockIdx.x] = m;
  } else {
    const double s = Reduce(tmp).Sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
  }
}

// Per chunk of kChunk entries: the elastic-net gradient added where mask (null: everywhere),
// and the chunk's sums of |w| and w^2 (double) from block reductions.
template <typename T>
__global__ void penalty_kernel(const T* w, T* g, const uint8_t* mask, int64_t n, T l1, T l2, double* partial) {
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage tmp;
  const int64_t begin = int64_t(blockIdx.x) * kChunk, end = min(n, begin + kChunk);
  double abs_sum = 0.0, sq_sum = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    if (!mask || mask[i]) penalty_update(w[i], g[i], l1, l2, abs_sum, sq_sum);
  const double a = Reduce(tmp).Sum(abs_sum);
  __syncthreads();  // tmp is reused
  const double q = Reduce(tmp).Sum(sq_sum);
  if (threadIdx.x == 0) partial[2 * blockIdx.x] = a, partial[2 * blockIdx.x + 1] = q;
}

template <typename T> __global__ void clamp_kernel(const ChunkRef* chunks, T* const* x, T lo, T hi) {
  const ChunkRef c = chunks[blockIdx.x];
  T* xa = x[c.array];
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x)
    xa[i] = xa[i] < lo ? lo : (xa[i] > hi ? hi : xa[i]);
}

template <typename T> __global__ void scale_lists_kernel(const ChunkRef* chunks, T* const* x, T factor) {
  const ChunkRef c = chunks[blockIdx.x];
  T* xa = x[c.array];
  for (int64_t i = c.begin + threadIdx.x; i < c.end; i += blockDim.x) xa[i] *= factor;
}

// The chunk table and pointers of a plain list of arrays.
template <typename T> struct DeviceList {
  std::vector<ChunkRef> chunks;
  DeviceBuffer<ChunkRef> chunk_buf;
  DeviceBuffer<T> ptr_buf;
  const ChunkRef* table;
  const T* ptrs;
  DeviceList(const std::vector<T>& arrays, const std::vector<int64_t>& sizes, Stream stream)
      : chunks(chunks_of(sizes)), chunk_buf(chunks.size(), stream), ptr_buf(arrays.size(), stream) {
    table = upload(chunks, chunk_buf, stream);
    ptrs = upload(arrays, ptr_buf, stream);
  }
};

}  // namespace

template <typename T> void sgd_step(const OptimArrays<T>& a, const SgdHyper<T>& h, Stream stream) {
  OptimArrays<T> b = a;
  if (!h.use_momentum) b.state0.clear();
  launch_update(b, SgdRule<T>{h}, "sgd_step", stream);
}
template <typename T> void adagrad_step(const OptimArrays<T>& a, const AdagradHyper<T>& h, Stream stream) {
  launch_update(a, AdagradRule<T>{h}, "adagrad_step", stream);
}
template <typename T> void rmsprop_step(const OptimArrays<T>& a, const RmspropHyper<T>& h, Stream stream) {
  OptimArrays<T> b = a;
  if (!h.centered) b.state1.clear();
  if (!h.use_momentum) b.state2.clear();
  launch_update(b, RmspropRule<T>{h}, "rmsprop_step", stream);
}
template <typename T> void adadelta_step(const OptimArrays<T>& a, const AdadeltaHyper<T>& h, Stream stream) {
  launch_update(a, AdadeltaRule<T>{h}, "adadelta_step", stream);
}
template <typename T> void adam_step(const OptimArrays<T>& a, const AdamHyper<T>& h, Stream stream) {
  launch_update(a, AdamRule<T>{h}, "adam_step", stream);
}
template <typename T> void nadam_step(const OptimArrays<T>& a, const NadamHyper<T>& h, Stream stream) {
  launch_update(a, NadamRule<T>{h}, "nadam_step", stream);
}

template <typename T>
double grad_norm(const std::vector<const T*>& arrays, const std::vector<int64_t>& sizes, bool infinity_norm,
                 Stream stream) {
  DeviceList<const T*> d(arrays, sizes, stream);
  const int64_t n = static_cast<int64_t>(d.chunks.size());
  if (n == 0) return 0.0;
  DeviceBuffer<double> partial(n, stream);
  norm_partials_kernel<T><<<static_cast<unsigned>(n), kThreads, 0, cuda_stream(stream)>>>(d.table, d.ptrs,
                                                                                         infinity_norm, partial.get());
  check_launch("norm_partials_kernel");
  std::vector<double> host(n);
  copy_to_host(host.data(), partial.get(), n, stream);
  double total = 0.0;
  for (double v : host) {  // chunk order, as the CPU adds its partials
    if (!infinity_norm)
      total += v;
    else if (std::isnan(v) || v > total)
      total = std::isnan(total) ? total : v;
  }
  return infinity_norm ? total : std::sqrt(total);
}

template <typename T>
double add_penalty_grad(const T* params, T* grads, const uint8_t* mask, int64_t n, double l1, double l2,
                        Stream stream) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks == 0) return 0.0;
  DeviceBuffer<double> partial(2 * chunks, stream);
  penalty_kernel<T><<<static_cast<unsigned>(chunks), kThreads, 0, cuda_stream(stream)>>>(
      params, grads, mask, n, static_cast<T>(l1), static_cast<T>(l2), partial.get());
  check_launch("penalty_kernel");
  std::vector<double> host(2 * chunks);
  copy_to_host(host.data(), partial.get(), 2 * chunks, stream);
  double abs_sum = 0.0, sq_sum = 0.0;
  for (int64_t c = 0; c < chunks; ++c) abs_sum += host[2 * c], sq_sum += host[2 * c + 1];  // chunk order
  return l1 * abs_sum + 0.5 * l2 * sq_sum;
}

template <typename T>
void clip_by_value(const std::vector<T*>& arrays, const std::vector<int64_t>& sizes, T lo, T hi, Stream stream) {
  DeviceList<T*> d(arrays, sizes, stream);
  if (d.chunks.empty()) return;
  clamp_kernel<T><<<static_cast<unsigned>(d.chunks.size()), kThreads, 0, cuda_stream(stream)>>>(d.table, d.ptrs, lo,
                                                                                                hi);
  check_launch("clamp_kernel");
}

template <typename T>
void scale_in_place(const std::vector<T*>& arrays, const std::vector<int64_t>& sizes, T factor, Stream stream) {
  DeviceList<T*> d(arrays, sizes, stream);
  if (d.chunks.empty()) return;
  scale_lists_kernel<T><<<static_cast<unsigned>(d.chunks.size()), kThreads, 0, cuda_stream(stream)>>>(d.table, d.ptrs,
                                                                                                     factor);
  check_launch("scale_lists_kernel");
}

FDNN_OPTIM_INSTANTIATE(float)
FDNN_OPTIM_INSTANTIATE(double)

}  // namespace fdnn
