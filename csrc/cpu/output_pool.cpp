// The pool of large output blocks (see output_pool.h).
#include "cpu/output_pool.h"

#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>

namespace fdnn {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;

// A size class is the byte count rounded up to 2 MiB; its blocks are that and one 4 KiB page
// more, which the data offset pushes the end of an array of whole huge pages into (4 KiB, not a
// whole huge page more).
constexpr size_t kPage = 4096;
size_t size_class(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage + kPage; }

size_t default_limit() {
  const char* env = std::getenv("FUSEDNN_OUTPUT_POOL_MB");
  if (env && *env) {
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(env, &end, 10);
    if (end && *end == '\0') return static_cast<size_t>(mb) << 20;
  }
  return size_t(512) << 20;
}

// A 2 MiB-aligned anonymous mapping of `bytes` (a multiple of 4 KiB), with huge pages asked for.
void* map_block(size_t bytes) {
  const size_t padded = bytes + kHugePage;
  void* raw = mmap(nullptr, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) / kHugePage * kHugePage;
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t tail = aligned + bytes, end = start + padded;
  if (end > tail) munmap(reinterpret_cast<void*>(tail), end - tail);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // advice only: ignore failure
#endif
  return reinterpret_cast<void*>(aligned);
}

struct Pool {
  std::mutex mutex;
  std::multimap<size_t, void*> idle;  // size class -> blocks
  size_t limit = default_limit(), idle_bytes = 0, hits = 0, misses = 0;

  // Unmaps idle blocks, largest first, until idle_bytes <= target. Holds the mutex.
  void trim(size_t target) {
    while (idle_bytes > target && !idle.empty()) {
      auto last = std::prev(idle.end());
      munmap(last->second, last->first);
      idle_bytes -= last->first;
      idle.erase(last);
    }
  }
};

// Never destroyed: arrays freed during interpreter shutdown still return their blocks.
Pool& pool() {
  static Pool* p = new Pool();
  return *p;
}

}  // namespace

void* pooled_allocate(size_t bytes) {
  const size_t cls = size_class(bytes);
  Pool& p = pool();
  void* block = nullptr;
  {
    std::lock_guard<std::mutex> lock(p.mutex);
    auto it = p.idle.find(cls);
    if (it != p.idle.end()) {
      block = it->second;
      p.idle.erase(it);
      p.idle_bytes -= cls;
      ++p.hits;
    } else {
      ++p.misses;
    }
  }
  if (block == nullptr) block = map_block(cls);
  return static_cast<char*>(block) + kPooledDataOffset;
}

void pooled_release(void* data, size_t bytes) {
  const size_t cls = size_class(bytes);
  void* ptr = static_cast<char*>(data) - kPooledDataOffset;
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  if (cls > p.limit) {
    munmap(ptr, cls);
    return;
  }
  p.idle.emplace(cls, ptr);
  p.idle_bytes += cls;
  p.trim(p.limit);
}

void set_output_pool_limit(size_t bytes) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  p.limit = bytes;
  p.trim(bytes);
}

OutputPoolStats output_pool_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return {p.limit, p.idle_bytes, p.idle.size(), p.hits, p.misses};
}

}  // namespace fdnn
