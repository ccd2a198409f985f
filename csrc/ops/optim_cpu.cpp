// CPU optimizer updates over lists of arrays: every array is cut into fixed chunks and the
// chunks of all arrays are spread over the threads, so one call makes a single pass over each
// parameter, gradient and state array, however the parameters are split into arrays.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/isa.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "ops/optim.h"

namespace fdnn {
namespace {

constexpr int64_t kChunk = 1 << 14;  // 16K elements: a 535K-parameter model is 34 chunks, balanced on 2 threads

struct Chunk {
  int64_t array, begin, end;
};

// The fixed chunks of a list of arrays: depends only on the sizes.
std::vector<Chunk> chunks_of(const std::vector<int64_t>& sizes) {
  std::vector<Chunk> out;
  for (int64_t a = 0; a < static_cast<int64_t>(sizes.size()); ++a)
    for (int64_t b = 0; b < sizes[a]; b += kChunk) out.push_back({a, b, std::min(sizes[a], b + kChunk)});
  return out;
}

// f(chunk) for every chunk, over the threads.
template <class F> void for_each_chunk(const std::vector<int64_t>& sizes, int64_t work_per_element, F&& f) {
  const std::vector<Chunk> chunks = chunks_of(sizes);
  parallel_for(static_cast<int64_t>(chunks.size()), 1, kChunk * work_per_element, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) f(chunks[c]);
  });
}

// f(chunk) for every chunk of the arrays of an update, over the threads. (Software prefetching
// of every stream 512 elements ahead had measured faster in an earlier session, 4.3 -> 3.7 ms
// for Adam over 10M parameters on 2 threads, on a machine whose caches may have held the
// arrays; on the Zen 4 VM with DRAM-resident arrays it cost 1.3-2x: one thread, 0.65 ns per
// parameter without it against 1.17-1.48 with it, torch's fused Adam 0.71. So the hardware
// prefetchers do it alone.)
template <typename T, class F> void for_each_block(const OptimArrays<T>& a, int64_t work_per_element, F&& f) {
  for_each_chunk(a.sizes, work_per_element, f);
}

template <typename T> T* at(const std::vector<T*>& list, const Chunk& c) {
  return list.empty() ? nullptr : list[c.array] + c.begin;
}
template <typename T> const T* at(const std::vector<const T*>& list, const Chunk& c) {
  return list[c.array] + c.begin;
}

// ---- vectorized chunk loops

template <typename T>
FDNN_MULTIVERSION void sgd_chunk(T* FDNN_RESTRICT p, const T* FDNN_RESTRICT g, T* FDNN_RESTRICT buf, int64_t n,
                                 SgdHyper<T> h) {
  // Each loop sees the state flags as constants: a state read under a runtime flag does not
  // vectorize.
  if (buf) {
    h.use_momentum = true;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) sgd_update(p[i], g[i], &buf[i], h);
  } else {
    h.use_momentum = false;
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) sgd_update(p[i], g[i], static_cast<T*>(nullptr), h);
  }
}

template <typename T>
FDNN_MULTIVERSION void adagrad_chunk(T* FDNN_RESTRICT p, const T* FDNN_RESTRICT g, T* FDNN_RESTRICT sum, int64_t n,
                                     AdagradHyper<T> h) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) adagrad_update(p[i], g[i], sum[i], h);
}

template <typename T>
FDNN_MULTIVERSION void rmsprop_chunk(T* FDNN_RESTRICT p, const T* FDNN_RESTRICT g, T* FDNN_RESTRICT sq,
                                     T* FDNN_RESTRICT avg, T* FDNN_RESTRICT buf, int64_t n, RmspropHyper<T> h) {
  // The four layouts of the optional states, each its own loop with the flags as constants,
  // so that each vectorizes.
  h.centered = avg != nullptr;
  h.use_momentum = buf != nullptr;
  if (avg && buf) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) rmsprop_update(p[i], g[i], sq[i], &avg[i], &buf[i], h);
  } else if (avg) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) rmsprop_update(p[i], g[i], sq[i], &avg[i], static_cast<T*>(nullptr), h);
  } else if (buf) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) rmsprop_update(p[i], g[i], sq[i], static_cast<T*>(nullptr), &buf[i], h);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i)
      rmsprop_update(p[i], g[i], sq[i], static_cast<T*>(nullptr), static_cast<T*>(nullptr), h);
  }
}

template <typename T>
FDNN_MULTIVERSION void adadelta_chunk(T* FDNN_RESTRICT p, const T* FDNN_RESTRICT g, T* FDNN_RESTRICT sq,
                                      T* FDNN_RESTRICT acc, int64_t n, AdadeltaHyper<T> h) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) adadelta_update(p[i], g[i], sq[i], acc[i], h);
}

template <typename T>
FDNN_MULTIVERSION void adam_chunk(T* FDNN_RESTRICT p, const T* FDNN_RESTRICT g, T* FDNN_RESTRICT m,
                                  T* FDNN_RESTRICT v, T* FDNN_RESTRICT vmax, int64_t n, AdamHyper<T> h) {
  if (vmax) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) adam_update(p[i], g[i], m[i], v[i], &vmax[i], h);
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) adam_update(p[i], g[i], m[i], v[i], static_cast<T*>(nullptr), h);
  }
}

template <typename T>
FDNN_MULTIVERSION void nadam_chunk(T* FDNN_RESTRICT p, const T* FDNN_RESTRICT g, T* FDNN_RESTRICT m,
                                   T* FDNN_RESTRICT v, int64_t n, NadamHyper<T> h) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) nadam_update(p[i], g[i], m[i], v[i], h);
}

// Sums |w| and w^2 of the chunk's penalized entries into sums[0], sums[1].
template <typename T>
FDNN_MULTIVERSION void penalty_chunk(const T* FDNN_RESTRICT w, T* FDNN_RESTRICT g, const uint8_t* FDNN_RESTRICT mask,
                                     int64_t n, T l1, T l2, double* sums) {
  double abs_sum = 0.0, sq_sum = 0.0;
  if (mask) {
    for (int64_t i = 0; i < n; ++i)
      if (mask[i]) penalty_update(w[i], g[i], l1, l2, abs_sum, sq_sum);
  } else {
#pragma omp simd reduction(+ : abs_sum, sq_sum)
    for (int64_t i = 0; i < n; ++i) penalty_update(w[i], g[i], l1, l2, abs_sum, sq_sum);
  }
  sums[0] = abs_sum;
  sums[1] = sq_sum;
}

template <typename T> FDNN_MULTIVERSION double sum_squares(const T* FDNN_RESTRICT x, int64_t n) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[i]) * static_cast<double>(x[i]);
  return s;
}

// max |x|, NaN if any element is NaN.
template <typename T> FDNN_MULTIVERSION double max_abs(const T* FDNN_RESTRICT x, int64_t n) {
  // (An integer OR for the NaN flag: with a bool `||` reduction GCC 12 did not vectorize the
  // loop, 5-7x the time of sum_squares.)
  T m = 0;
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    const T a = x[i] < T(0) ? -x[i] : x[i];
    m = a > m ? a : m;
    nan |= x[i] != x[i] ? 1 : 0;
  }
  return nan ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(m);
}

template <typename T> FDNN_MULTIVERSION void clamp_chunk(T* FDNN_RESTRICT x, int64_t n, T lo, T hi) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] < lo ? lo : (x[i] > hi ? hi : x[i]);
}

template <typename T> FDNN_MULTIVERSION void scale_chunk(T* FDNN_RESTRICT x, int64_t n, T factor) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

}  // namespace

template <typename T> void sgd_step(const OptimArrays<T>& a, const SgdHyper<T>& h, Stream) {
  for_each_block(a, 4, [&](const Chunk& c) {
    sgd_chunk(at(a.params, c), at(a.grads, c), h.use_momentum ? at(a.state0, c) : nullptr, c.end - c.begin, h);
  });
}

template <typename T> void adagrad_step(const OptimArrays<T>& a, const AdagradHyper<T>& h, Stream) {
  for_each_block(a, 4, [&](const Chunk& c) {
    adagrad_chunk(at(a.params, c), at(a.grads, c), at(a.state0, c), c.end - c.begin, h);
  });
}

template <typename T> void rmsprop_step(const OptimArrays<T>& a, const RmspropHyper<T>& h, Stream) {
  for_each_block(a, 6, [&](const Chunk& c) {
    rmsprop_chunk(at(a.params, c), at(a.grads, c), at(a.state0, c), h.centered ? at(a.state1, c) : nullptr,
                  h.use_momentum ? at(a.state2, c) : nullptr, c.end - c.begin, h);
  });
}

template <typename T> void adadelta_step(const OptimArrays<T>& a, const AdadeltaHyper<T>& h, Stream) {
  for_each_block(a, 6, [&](const Chunk& c) {
    adadelta_chunk(at(a.params, c), at(a.grads, c), at(a.state0, c), at(a.state1, c), c.end - c.begin, h);
  });
}

template <typename T> void adam_step(const OptimArrays<T>& a, const AdamHyper<T>& h, Stream) {
  for_each_block(a, 7, [&](const Chunk& c) {
    adam_chunk(at(a.params, c), at(a.grads, c), at(a.state0, c), at(a.state1, c), at(a.state2, c), c.end - c.begin,
               h);
  });
}

template <typename T> void nadam_step(const OptimArrays<T>& a, const NadamHyper<T>& h, Stream) {
  for_each_block(a, 7, [&](const Chunk& c) {
    nadam_chunk(at(a.params, c), at(a.grads, c), at(a.state0, c), at(a.state1, c), c.end - c.begin, h);
  });
}

template <typename T>
double grad_norm(const std::vector<const T*>& arrays, const std::vector<int64_t>& sizes, bool infinity_norm, Stream) {
  const std::vector<Chunk> chunks = chunks_of(sizes);
  const int64_t n = static_cast<int64_t>(chunks.size());
  Buffer<double> partial = scratch<double>(n);
  parallel_for(n, 1, kChunk, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const T* x = arrays[chunks[c].array] + chunks[c].begin;
      const int64_t len = chunks[c].end - chunks[c].begin;
      partial[c] = infinity_norm ? max_abs(x, len) : sum_squares(x, len);
    }
  });
  double total = 0.0;
  for (int64_t c = 0; c < n; ++c) {
    if (!infinity_norm)
      total += partial[c];
    else if (std::isnan(partial[c]) || partial[c] > total)
      total = std::isnan(total) ? total : partial[c];
  }
  return infinity_norm ? total : std::sqrt(total);
}

template <typename T>
double add_penalty_grad(const T* params, T* grads, const uint8_t* mask, int64_t n, double l1, double l2, Stream) {
  const std::vector<Chunk> chunks = chunks_of({n});
  const int64_t count = static_cast<int64_t>(chunks.size());
  Buffer<double> partial = scratch<double>(2 * count);
  parallel_for(count, 1, kChunk * 3, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t b = chunks[c].begin;
      penalty_chunk(params + b, grads + b, mask ? mask + b : nullptr, chunks[c].end - b, static_cast<T>(l1),
                    static_cast<T>(l2), &partial[2 * c]);
    }
  });
  double abs_sum = 0.0, sq_sum = 0.0;
  for (int64_t c = 0; c < count; ++c) abs_sum += partial[2 * c], sq_sum += partial[2 * c + 1];
  return l1 * abs_sum + 0.5 * l2 * sq_sum;
}

template <typename T>
void clip_by_value(const std::vector<T*>& arrays, const std::vector<int64_t>& sizes, T lo, T hi, Stream) {
  for_each_chunk(sizes, 2, [&](const Chunk& c) { clamp_chunk(arrays[c.array] + c.begin, c.end - c.begin, lo, hi); });
}

template <typename T>
void scale_in_place(const std::vector<T*>& arrays, const std::vector<int64_t>& sizes, T factor, Stream) {
  for_each_chunk(sizes, 2, [&](const Chunk& c) { scale_chunk(arrays[c.array] + c.begin, c.end - c.begin, factor); });
}

FDNN_OPTIM_INSTANTIATE(float)
FDNN_OPTIM_INSTANTIATE(double)

}  // namespace fdnn
