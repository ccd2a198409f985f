// CPU dropout and noise. On AVX-512F CPUs dropout, its masks and float32 noise run the fused
// kernels of cpu/philox_avx512.h (Philox on 64-bit lanes, 32 blocks a step). Elsewhere the words
// of 16 Philox blocks at a time come from cpu/philox_avx2.h's intrinsics on AVX2 CPUs, and from
// GCC vector types otherwise (FUSEDNN_DISABLE_AVX2, or no AVX2); in element order, they are
// applied to 64 contiguous elements.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "common/avx512_paths.h"
#include "common/isa.h"
#include "common/parallel.h"
#include "cpu/philox_avx2.h"
#include "cpu/philox_avx512.h"
#include "cpu/stream_store.h"
#include "ops/dropout.h"

namespace fdnn {
namespace {

constexpr int kBlocksPerChunk = 16;                  // Philox blocks generated together
constexpr int kChunk = 4 * kBlocksPerChunk;          // elements they cover
constexpr int64_t kElementsPerTask = 64 * 1024;      // fixed partition (a multiple of kChunk)
// Philox costs ~0.5 ns per element, so loops that generate words split finer: a (128, 512)
// layer's dropout is 4 tasks.
constexpr int64_t kPhiloxElementsPerTask = 16 * 1024;
// A task that streams its output ends with an sfence, which cost ~0.5 us each here (16M-element
// fwd+bwd, one thread: 15.1 ms in 16K-element tasks, 14.0 ms in 256K ones): larger tasks.
constexpr int64_t kStreamedElementsPerTask = 256 * 1024;

// Sixteen Philox counters at once in GCC vector types, which each ISA clone lowers to its own
// registers (where FUSEDNN_DISABLE_AVX2 is set or the CPU lacks AVX2; the AVX2 clone's lowering
// was slow: cpu/philox_avx2.h). The arithmetic is philox4x32_10's (common/philox.h), lane by
// lane; tests check both against the known answers.
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint64_t u64x8 __attribute__((vector_size(64)));

// High and low 32-bit halves of a * m in every lane (32x32 -> 64-bit products of the even and
// the odd lanes, recombined).
FDNN_CLONE_INLINE void mulhilo(u32x16 a, uint32_t m, u32x16& hi, u32x16& lo) {
  const u64x8 low_mask = u64x8{} + 0xffffffffull;
  const u64x8 a64 = reinterpret_cast<u64x8>(a);
  const u64x8 even = (a64 & low_mask) * static_cast<uint64_t>(m);
  const u64x8 odd = (a64 >> 32) * static_cast<uint64_t>(m);
  hi = reinterpret_cast<u32x16>((even >> 32) | (odd & ~low_mask));
  lo = reinterpret_cast<u32x16>((even & low_mask) | (odd << 32));
}

// Block l's words c0[l] c1[l] c2[l] c3[l] are elements 4l .. 4l+3: transposed into w[0, 64).
FDNN_CLONE_INLINE void store_element_order(uint32_t* FDNN_RESTRICT w, u32x16 c0, u32x16 c1,
                                                               u32x16 c2, u32x16 c3) {
  const u32x16 lo_pairs = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
  const u32x16 hi_pairs = lo_pairs + 8;
  const u64x8 a0 = reinterpret_cast<u64x8>(__builtin_shuffle(c0, c1, lo_pairs));  // (c0 c1) of blocks 0-7
  const u64x8 a1 = reinterpret_cast<u64x8>(__builtin_shuffle(c0, c1, hi_pairs));  // blocks 8-15
  const u64x8 b0 = reinterpret_cast<u64x8>(__builtin_shuffle(c2, c3, lo_pairs));  // (c2 c3) of blocks 0-7
  const u64x8 b1 = reinterpret_cast<u64x8>(__builtin_shuffle(c2, c3, hi_pairs));
  const u64x8 first = {0, 8, 1, 9, 2, 10, 3, 11}, second = {4, 12, 5, 13, 6, 14, 7, 15};
  const u64x8 out[4] = {__builtin_shuffle(a0, b0, first), __builtin_shuffle(a0, b0, second),
                        __builtin_shuffle(a1, b1, first), __builtin_shuffle(a1, b1, second)};
  std::memcpy(w, out, sizeof(out));
}

#if defined(__x86_64__)
const bool kPhiloxAvx512 = avx512_paths_enabled();
const bool kPhiloxAvx2 = avx2_paths_enabled();
#endif

// The 64 words of elements [i0, i0 + 64), in element order (i0 a multiple of 64).
FDNN_CLONE_INLINE void chunk_words(uint32_t* FDNN_RESTRICT w, const PhiloxStream& s, int64_t i0) {
  // i0 is a multiple of 64, so the low counter word of the first block is a multiple of 16 and
  // adding the lane index never carries.
  const uint64_t j0 = static_cast<uint64_t>(i0) / 4;
#if defined(__x86_64__)
  if (kPhiloxAvx2) {  // before the vector setup below, which the AVX2 clone builds with scalar stores
    philox_words_avx2(w, s.k0, s.k1, s.o0, s.o1, j0);
    return;
  }
#endif
  const u32x16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  u32x16 c0 = lane + static_cast<uint32_t>(j0);
  u32x16 c1 = u32x16{} + static_cast<uint32_t>(j0 >> 32);
  u32x16 c2 = u32x16{} + s.o0;
  u32x16 c3 = u32x16{} + s.o1;
#if defined(__x86_64__)
  if (kPhiloxAvx512) {
    alignas(64) uint32_t c[64];
    std::memcpy(c, &c0, 64);
    std::memcpy(c + 16, &c1, 64);
    std::memcpy(c + 32, &c2, 64);
    std::memcpy(c + 48, &c3, 64);
    philox_rounds_avx512(c, s.k0, s.k1);
    std::memcpy(&c0, c, 64);
    std::memcpy(&c1, c + 16, 64);
    std::memcpy(&c2, c + 32, 64);
    std::memcpy(&c3, c + 48, 64);
    store_element_order(w, c0, c1, c2, c3);
    return;
  }
#endif
  uint32_t k0 = s.k0, k1 = s.k1;
  for (int round = 0; round < 10; ++round) {
    u32x16 hi0, lo0, hi1, lo1;
    mulhilo(c0, kPhiloxM0, hi0, lo0);
    mulhilo(c2, kPhiloxM1, hi1, lo1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  store_element_order(w, c0, c1, c2, c3);
}

#if defined(__x86_64__)
// Dropout and its masks on AVX-512F + BMI2 CPUs: cpu/philox_avx512.h's fused kernels (Philox on
// 64-bit lanes, keep bits as write masks), instead of chunk_words and the loops below.
const bool kDropoutAvx512 = dropout_avx512_supported();
#endif

template <typename T>
FDNN_MULTIVERSION void dropout_range(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t begin, int64_t end,
                                     PhiloxStream s, uint32_t threshold, T keep_scale, bool relu, bool stream) {
#if defined(__x86_64__)
  if (kDropoutAvx512) {
    const uint64_t j0 = static_cast<uint64_t>(begin) / 4;  // begin is a multiple of 4
    if constexpr (std::is_same_v<T, float>) {
      dropout_f32_avx512(y + begin, x + begin, end - begin, s.k0, s.k1, s.o0, s.o1, j0, threshold, keep_scale, relu,
                         stream);
    } else {
      dropout_f64_avx512(y + begin, x + begin, end - begin, s.k0, s.k1, s.o0, s.o1, j0, threshold, keep_scale, relu);
    }
    return;
  }
#endif
  alignas(64) uint32_t w[kChunk];
  for (int64_t i0 = begin; i0 < end; i0 += kChunk) {
    chunk_words(w, s, i0);
    const int64_t m = std::min<int64_t>(kChunk, end - i0);
    // The activation is a loop constant, so that each loop vectorizes.
    if (m == kChunk && relu) {
#pragma omp simd
      for (int k = 0; k < kChunk; ++k)
        y[i0 + k] = fdnn::relu(x[i0 + k]) * (dropout_keep(w[k], threshold) ? keep_scale : T(0));
    } else if (m == kChunk) {
#pragma omp simd
      for (int k = 0; k < kChunk; ++k) y[i0 + k] = x[i0 + k] * (dropout_keep(w[k], threshold) ? keep_scale : T(0));
    } else {
      for (int64_t k = 0; k < m; ++k)
        y[i0 + k] = activate(x[i0 + k], relu) * (dropout_keep(w[k], threshold) ? keep_scale : T(0));
    }
  }
}

FDNN_MULTIVERSION void mask_range(uint8_t* FDNN_RESTRICT mask, int64_t begin, int64_t end, PhiloxStream s,
                                  uint32_t threshold) {
#if defined(__x86_64__)
  if (kDropoutAvx512) {
    dropout_mask_avx512(mask + begin, end - begin, s.k0, s.k1, s.o0, s.o1, static_cast<uint64_t>(begin) / 4,
                        threshold);
    return;
  }
#endif
  alignas(64) uint32_t w[kChunk];
  for (int64_t i0 = begin; i0 < end; i0 += kChunk) {
    chunk_words(w, s, i0);
    const int64_t m = std::min<int64_t>(kChunk, end - i0);
    for (int64_t k = 0; k < m; ++k) mask[i0 + k] = dropout_keep(w[k], threshold) ? 1 : 0;
  }
}

// y = x + std * z: the chunk's words, then Box-Muller on each pair of them (the polynomial one of
// common/box_muller.h, in float for float32 and in double for float64, in a loop over pairs that
// vectorizes), then the update. Float32 on AVX-512F CPUs: cpu/philox_avx512.h's
// add_normals_f32_avx512 (normals and update in registers).
template <typename T>
FDNN_MULTIVERSION void noise_range(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t begin, int64_t end,
                                   PhiloxStream s, double std) {
  alignas(64) uint32_t w[kChunk];
  alignas(64) T z[kChunk];
#if defined(__x86_64__)
  if constexpr (std::is_same_v<T, float>) {
    if (kPhiloxAvx512) {
      add_normals_f32_avx512(y + begin, x + begin, end - begin, s.k0, s.k1, s.o0, s.o1,
                             static_cast<uint64_t>(begin) / 4, 1.0, 0.0, std);
      return;
    }
  }
#endif
  for (int64_t i0 = begin; i0 < end; i0 += kChunk) {
    chunk_words(w, s, i0);
    const int64_t m = std::min<int64_t>(kChunk, end - i0);
#pragma omp simd
    for (int p = 0; p < kChunk / 2; ++p) box_muller(w[2 * p], w[2 * p + 1], z[2 * p], z[2 * p + 1]);
#pragma omp simd
    for (int64_t k = 0; k < m; ++k) y[i0 + k] = static_cast<T>(static_cast<double>(x[i0 + k]) + std * z[k]);
  }
}

template <typename T>
FDNN_MULTIVERSION void scale_range(T* FDNN_RESTRICT y, const T* FDNN_RESTRICT x, int64_t begin, int64_t end, T scale,
                                   bool relu) {
  if (relu) {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = fdnn::relu(x[i]) * scale;
  } else {
#pragma omp simd
    for (int64_t i = begin; i < end; ++i) y[i] = x[i] * scale;
  }
}

}  // namespace

template <typename T> void scale_copy(T* y, const T* x, int64_t n, T scale, bool relu, Stream) {
  parallel_for(n, kElementsPerTask, 2, [&](int64_t b, int64_t e) { scale_range(y, x, b, e, scale, relu); });
}

template <typename T>
void dropout_apply(T* y, const T* x, int64_t n, uint64_t seed, uint64_t offset, uint32_t threshold, T keep_scale,
                   bool relu, Stream) {
  const PhiloxStream s(seed, offset);
  // Large float32 outputs are streamed (cpu/stream_store.h; y never overlaps x: the bindings check).
  const bool stream = std::is_same_v<T, float> && stream_output(n * static_cast<int64_t>(sizeof(T)));
  parallel_for(n, stream ? kStreamedElementsPerTask : kPhiloxElementsPerTask, 8,
               [&](int64_t b, int64_t e) { dropout_range(y, x, b, e, s, threshold, keep_scale, relu, stream); });
}

void dropout_mask(uint8_t* mask, int64_t n, uint64_t seed, uint64_t offset, uint32_t threshold, Stream) {
  const PhiloxStream s(seed, offset);
  parallel_for(n, kPhiloxElementsPerTask, 8, [&](int64_t b, int64_t e) { mask_range(mask, b, e, s, threshold); });
}

template <typename T>
void gaussian_noise(T* y, const T* x, int64_t n, uint64_t seed, uint64_t offset, double std, Stream) {
  const PhiloxStream s(seed, offset);
  parallel_for(n, kPhiloxElementsPerTask, 32, [&](int64_t b, int64_t e) { noise_range(y, x, b, e, s, std); });
}

void philox4x32_10_blocks(uint32_t* out, const uint32_t* counters, int64_t n, uint32_t k0, uint32_t k1, Stream) {
  for (int64_t b = 0; b < n; ++b) {
    uint32_t c0 = counters[4 * b], c1 = counters[4 * b + 1], c2 = counters[4 * b + 2], c3 = counters[4 * b + 3];
    philox4x32_10(c0, c1, c2, c3, k0, k1);
    out[4 * b] = c0;
    out[4 * b + 1] = c1;
    out[4 * b + 2] = c2;
    out[4 * b + 3] = c3;
  }
}

FDNN_DROPOUT_INSTANTIATE(float)
FDNN_DROPOUT_INSTANTIATE(double)

}  // namespace fdnn
