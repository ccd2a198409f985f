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

}  // namespace fdnn
