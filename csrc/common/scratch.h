// Aligned scratch buffers for kernels.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace fdnn {

template <typename T> struct FreeDeleter {
  void operator()(T* p) const { std::free(p); }
};
template <typename T> using Buffer = std::unique_ptr<T[], FreeDeleter<T>>;

// Uninitialized, 64-byte aligned scratch of `count` elements.
template <typename T> Buffer<T> scratch(int64_t count) {
  const size_t bytes = (static_cast<size_t>(std::max<int64_t>(count, 1)) * sizeof(T) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw std::bad_alloc();
  return Buffer<T>(static_cast<T*>(p));
}

// Per-thread scratch of at least `count` elements that grows as needed and lives as long as its
// thread, for kernels called many times (a fresh buffer each call would fault its pages in
// again). Slot tells apart the buffers that are live at the same time (gemm: 0-3; conv: 16-26; linear: 30, 31; xent: 40).
template <typename T, int Slot> T* thread_scratch(int64_t count) {
  thread_local Buffer<T> buffer;
  thread_local int64_t size = 0;
  if (size < count) {
    buffer = scratch<T>(count);
    size = count;
  }
  return buffer.get();
}

}  // namespace fdnn
