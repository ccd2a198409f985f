// AVX2 building blocks of the hand-written AVX2 paths of the kernels (x86-64 with GCC only; the
// callers check avx2_paths_enabled() and FMA first): every function carries the avx2 and fma
// target attributes, as cpu/avx512.h's do AVX-512F, so the rest of the module stays compiled for
// the portable baseline.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#define FDNN_AVX2 __attribute__((target("avx2,fma")))
#define FDNN_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

namespace fdnn {

// The lanes [0, min(count, 8)) of a vector, as the mask of maskload and maskstore.
FDNN_AVX2_INLINE __m256i first_lanes8(int64_t count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(count, 8))),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The largest of v's 8 lanes (v holds no NaN: the max passes keep their running maxima).
FDNN_AVX2_INLINE float max_lanes8(__m256 v) {
  __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  b = _mm_max_ps(b, _mm_movehl_ps(b, b));
  b = _mm_max_ss(b, _mm_shuffle_ps(b, b, 1));
  return _mm_cvtss_f32(b);
}

}  // namespace fdnn
