// Thread count and a parallel-for over a fixed partition.
//
// Results never depend on the number of threads: parallel_for splits [0, n) into blocks whose
// boundaries depend only on n and the block size the caller chooses, and every block is
// computed the same way whichever thread runs it. Reductions write one partial per block and
// combine the partials in block order.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <exception>

namespace fdnn {

namespace detail {
inline std::atomic<int>& thread_count() {
  static std::atomic<int> n{std::max(1, omp_get_max_threads())};
  return n;
}
}  // namespace detail

inline int num_threads() { return detail::thread_count().load(std::memory_order_relaxed); }
inline void set_num_threads(int n) { detail::thread_count().store(std::max(1, n), std::memory_order_relaxed); }

// Below this much work (elements touched) a loop runs on the calling thread: waking the
// team costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 15;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t v, int64_t multiple) { return ceil_div(v, multiple) * multiple; }

// Calls f(begin, end) for the blocks [0, block), [block, 2 block), ... of [0, n).
// work_per_index estimates the elements touched per index, to decide whether threads pay.
// An exception thrown by f (e.g. std::bad_alloc from a scratch buffer) is caught on its thread
// (one escaping an OpenMP region would terminate the process), the remaining blocks are skipped,
// and the first exception is rethrown on the calling thread.
template <class F>
void parallel_for(int64_t n, int64_t block, int64_t work_per_index, F&& f) {
  if (n <= 0) return;
  block = std::max<int64_t>(1, block);
  const int64_t n_blocks = ceil_div(n, block);
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), n_blocks));
  if (threads <= 1 || n * work_per_index < kMinParallelWork) {
    for (int64_t b = 0; b < n_blocks; ++b) f(b * block, std::min(n, (b + 1) * block));
    return;
  }
  std::exception_ptr error;
  std::atomic<bool> failed{false};
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t b = 0; b < n_blocks; ++b) {
    if (failed.load(std::memory_order_relaxed)) continue;
    try {
      f(b * block, std::min(n, (b + 1) * block));
    } catch (...) {
#pragma omp critical(fdnn_parallel_for_error)
      if (!error) error = std::current_exception();
      failed.store(true, std::memory_order_relaxed);
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace fdnn
