// Thread count and a parallel-for over a fixed partition, on fusednn's own thread pool
// (csrc/cpu/thread_pool.cpp).
//
// Results never depend on the number of threads: parallel_for splits [0, n) into blocks whose
// boundaries depend only on n and the block size the caller chooses, and every block is
// computed the same way whichever thread runs it. Reductions write one partial per block and
// combine the partials in block order.
//
// The pool's workers spin briefly after a loop, then sleep, so they cost nothing when other
// processes need the cores; after fork() the child starts a new pool on its first parallel loop.
#pragma once

#include <algorithm>
#include <cstdint>

namespace fdnn {

// Threads used by parallel loops: OMP_NUM_THREADS at load time when it is a positive integer
// (its first entry), else the CPUs this process may run on; then what set_num_threads sets.
int num_threads();
void set_num_threads(int n);  // n >= 1 (the binding checks)

// Below this much work (elements touched) a loop runs on the calling thread: waking the
// workers costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 15;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t v, int64_t multiple) { return ceil_div(v, multiple) * multiple; }

namespace detail {
using BlockFn = void (*)(void* context, int64_t block_index);
// Calls fn(context, b) for every b in [0, n_blocks) on the calling thread and up to threads - 1
// pool workers, each block once, and returns true; the first exception a block throws is
// rethrown here once the others have stopped (blocks not started by then are skipped). Returns
// false without running anything when the loop must run serially instead: called from inside a
// parallel loop (nesting), or while another thread's loop holds the pool.
bool run_on_pool(int64_t n_blocks, int threads, BlockFn fn, void* context);
}  // namespace detail

// Calls f(begin, end) for the blocks [0, block), [block, 2 block), ... of [0, n).
// work_per_index estimates the elements touched per index, to decide whether threads pay.
// An exception thrown by f (e.g. std::bad_alloc from a scratch buffer) stops the loop (blocks not
// yet started are skipped) and is rethrown on the calling thread.
template <class F>
void parallel_for(int64_t n, int64_t block, int64_t work_per_index, F&& f) {
  if (n <= 0) return;
  block = std::max<int64_t>(1, block);
  const int64_t n_blocks = ceil_div(n, block);
  const int threads = static_cast<int>(std::min<int64_t>(num_threads(), n_blocks));
  if (threads > 1 && n * work_per_index >= kMinParallelWork) {
    auto body = [&](int64_t b) { f(b * block, std::min(n, (b + 1) * block)); };
    using Body = decltype(body);
    const detail::BlockFn call = [](void* context, int64_t b) { (*static_cast<Body*>(context))(b); };
    if (detail::run_on_pool(n_blocks, threads, call, &body)) return;
  }
  for (int64_t b = 0; b < n_blocks; ++b) f(b * block, std::min(n, (b + 1) * block));
}

}  // namespace fdnn
