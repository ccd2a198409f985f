// Non-temporal (streaming) stores for the memory-bound kernels' large float32 outputs (x86-64).
//
// An ordinary store to a line that is not in cache first reads the line from memory (the read
// for ownership), so a kernel that reads x and writes a separate y moves three bytes for every
// two it needs: on the 2-core Zen 4 of issue 19, y = a * x ran at 17-19 GB/s with ordinary
// stores and 27-29 GB/s with streaming ones, on one core, against 45 GB/s for x *= a in place.
// A streaming store writes the whole line without reading it and leaves it out of the cache,
// which is right only when the output is too large to be read back from the cache anyway: the
// kernels stream outputs of at least kStreamMinBytes and store smaller ones (a training step's
// activations, which the next layer reads at once) as before.
//
// The stores must sit in the loop that computes the values: computing a tile into an L1 buffer
// and streaming it out afterwards ran at 19-21 GB/s (the reads and the stores no longer overlap).
// So the streamed loops are written with SSE intrinsics (4 floats; SSE2 is in every ISA clone,
// and movntps is as fast at 16 bytes as at 64 on that machine), on float32 only; float64 outputs
// keep the ordinary loops.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/isa.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#define FDNN_HAS_STREAM_STORE 1
#else
#define FDNN_HAS_STREAM_STORE 0
#endif

namespace fdnn {

constexpr int64_t kStreamMinBytes = int64_t(16) << 20;

// Whether a float32 output of `bytes` is written with streaming stores.
inline bool stream_output(int64_t bytes) { return FDNN_HAS_STREAM_STORE && bytes >= kStreamMinBytes; }

#if FDNN_HAS_STREAM_STORE
// out[i] = element i for i in [0, n), vec4(i) giving elements [i, i + 4) as an __m128 (it may
// read the inputs of those four elements): streaming stores from out's first 16-byte boundary
// on; the elements before it and after the last full vector are stored one by one from a
// vec4 of the first or the last four, so that every element comes out of the same vector
// arithmetic. scalar(i) gives element i where out is not float-aligned or n < 4.
template <class Scalar, class Vec4>
FDNN_CLONE_INLINE void stream_loop(float* out, int64_t n, Scalar scalar, Vec4 vec4) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(out);
  if (address % sizeof(float) != 0 || n < 4) {
    for (int64_t i = 0; i < n; ++i) out[i] = scalar(i);
    return;
  }
  alignas(16) float part[4];
  const int64_t head = static_cast<int64_t>((16 - address % 16) % 16 / sizeof(float));
  if (head > 0) {
    _mm_store_ps(part, vec4(0));
    for (int64_t i = 0; i < head; ++i) out[i] = part[i];
  }
  int64_t i = head;
  for (; i + 4 <= n; i += 4) _mm_stream_ps(out + i, vec4(i));
  if (i < n) {
    _mm_store_ps(part, vec4(n - 4));
    for (; i < n; ++i) out[i] = part[i - (n - 4)];
  }
}
#endif

// Orders a task's streaming stores before whatever follows it (the thread pool's hand-back), as
// their weak ordering requires: call once at the end of a task that streamed.
inline void stream_fence() {
#if FDNN_HAS_STREAM_STORE
  _mm_sfence();
#endif
}

}  // namespace fdnn
