// Memory for the large arrays that the CPU module allocates for its outputs.
//
// A fresh 16-64 MB output costs more to fault in than to compute: on the 2-core Zen 4 VM of
// issue 19, relu into a new 64 MB array took 12-25 ms (and now and then 120-300 ms) against
// 5-8 ms into an existing one, nearly all of it in page faults. So outputs of at least
// kMinPooledBytes come from 2 MiB-aligned blocks (transparent huge pages requested with
// madvise; the data kPooledDataOffset bytes in) that go back to a pool when the NumPy array that owns them is freed, and the next
// output of the same size class reuses a block whose pages are already there.
//
// Reuse is never visible: a block returns to the pool only when the last reference to its
// array (and to every view of it) is gone, from the array's base object's destructor. The pool
// keeps at most its limit of idle bytes (default 512 MiB; FUSEDNN_OUTPUT_POOL_MB, or
// fusednn.set_output_pool_limit) and unmaps what does not fit; a limit of 0 turns pooling off.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fdnn {

constexpr size_t kMinPooledBytes = size_t(4) << 20;  // below this, NumPy's allocator (malloc)

struct OutputPoolStats {
  size_t limit_bytes, idle_bytes, idle_blocks, hits, misses;
};

// The data of a pooled output starts this many bytes past a 2 MiB boundary: where glibc's
// malloc puts the data of a block it maps on its own (behind the chunk's 16-byte header), as it
// usually does for NumPy arrays of 32 MiB or more (smaller ones, and large ones that fit a free
// chunk of the heap, may lie at any 16-byte offset). A
// kernel then finds the large arrays of a call at the same offsets modulo a page whether they came
// from NumPy or from the pool, and some kernels depend on that: dropout fwd+bwd on 16M float32
// from NumPy arrays took 3.5-3.6 ms of one thread's CPU time into 2 MiB-aligned outputs against
// 3.0-3.1 ms into outputs 16 bytes past a page (Zen 4, 2026-12-07); relu, softmax, batch and
// layer norm were within noise.
constexpr size_t kPooledDataOffset = 16;

// Memory for `bytes` (>= kMinPooledBytes) of output data at kPooledDataOffset past a 2 MiB
// boundary; release it with pooled_release(data, bytes) with the same `bytes`. Throws
// std::bad_alloc when the system has no memory.
void* pooled_allocate(size_t bytes);
void pooled_release(void* data, size_t bytes);

void set_output_pool_limit(size_t bytes);  // unmaps idle blocks beyond the new limit
OutputPoolStats output_pool_stats();

}  // namespace fdnn
