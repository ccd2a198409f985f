// Non-temporal ("streaming") stores for large outputs: a plain store first reads the
// destination line into the cache (read-for-ownership), so writing an output that will not be
// read back soon costs a read and a write of memory; a streaming store costs the write only and
// leaves the cache to the inputs. Used when a kernel's output is larger than the caches.
#pragma once

#include <algorithm>
#include <cstdint>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace fdnn {

// Outputs at least this large are streamed.
constexpr int64_t kStreamBytes = int64_t{4} << 20;

inline bool stream_output(int64_t elements, int64_t itemsize) { return elements * itemsize >= kStreamBytes; }

// dst[0, n) = src[0, n), with streaming stores when `stream` (SSE2: every x86-64 CPU).
template <typename T> inline void store_row(T* dst, const T* src, int64_t n, bool stream) {
#if defined(__SSE2__)
  if (stream) {
    int64_t i = 0;
    for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15) != 0; ++i) dst[i] = src[i];
    if constexpr (sizeof(T) == 4) {
      for (; i + 4 <= n; i += 4)
        _mm_stream_ps(reinterpret_cast<float*>(dst + i), _mm_loadu_ps(reinterpret_cast<const float*>(src + i)));
    } else {
      for (; i + 2 <= n; i += 2)
        _mm_stream_pd(reinterpret_cast<double*>(dst + i), _mm_loadu_pd(reinterpret_cast<const double*>(src + i)));
    }
    for (; i < n; ++i) dst[i] = src[i];
    return;
  }
#endif
  std::copy(src, src + n, dst);
}

// Makes this thread's streaming stores visible before the data is handed on (end of a task).
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace fdnn
