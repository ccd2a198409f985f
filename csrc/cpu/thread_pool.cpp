// fusednn's thread pool: the workers behind parallel_for (common/parallel.h).
//
// Why not OpenMP: libgomp's team does not survive fork() (a child forked after any parallel
// region hung on its first one), and its default wait policy spins, so with another busy
// process on the cores a training run slowed down by up to 20x. Here:
// - workers spin for kSpin after a loop (back-to-back kernels find them awake), then sleep on a
//   condition variable, so an idle pool takes no CPU;
// - each participant (the caller and the workers that join) owns a contiguous range of the
//   blocks, as OpenMP's static schedule gives it, and takes its blocks one at a time from that
//   range's atomic cursor; when its range is done it takes blocks from the others' ranges, so a
//   worker that the OS has not scheduled yet leaves its share to the threads that run. (Handing
//   every block out from one counter made both threads first-touch the pages of a fresh output
//   in alternation, and the allocating ops ran 15-45% slower on 2 threads.) The partition into
//   blocks, and so every result, stays the same whoever runs a block;
// - a pthread_atfork child handler drops the pool (its threads do not exist in the child), and
//   the child's first parallel loop starts a new one;
// - on Linux, workers keep off the caller's CPU (avoid_caller_cpu): a worker may run on the
//   process's CPUs other than the one the caller ran on when it published the job (set again only
//   when that CPU changed; left alone when the process has no other CPU); the caller is never
//   pinned (threads it starts later inherit its mask). FUSEDNN_PIN_THREADS=0 leaves the workers
//   alone. Why: this project's VMs run a guest
//   scheduler that packs woken threads onto busy vCPUs (sched_vcpu_pack); a worker woken from
//   its sleep landed on the caller's vCPU and the two took turns on one for seconds at a time
//   (docs/design.md, "Threads and determinism", has the numbers).
// A loop started inside a loop (from a block) or while another thread's loop holds the pool
// runs on its calling thread.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

#include "common/parallel.h"

namespace fdnn {
namespace {

// How long an idle worker, and a caller waiting for the workers' last blocks, spin before they
// sleep: longer than the gap between two kernels of a training step (Python's overhead), short
// enough that other processes hardly notice.
constexpr auto kSpin = std::chrono::microseconds(50);

int initial_thread_count() {
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {  // as libgomp reads it: the first entry
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && v > 0 && (*end == '\0' || *end == ',' || *end == ' '))
      return static_cast<int>(std::min(v, 4096L));
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

std::atomic<int>& thread_count() {
  static std::atomic<int> n{initial_thread_count()};
  return n;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Whether workers keep off the caller's CPU: Linux, unless FUSEDNN_PIN_THREADS=0.
bool keep_off_caller_cpu() {
#if defined(__linux__)
  const char* env = std::getenv("FUSEDNN_PIN_THREADS");
  return !(env && std::strcmp(env, "0") == 0);
#else
  return false;
#endif
}

// The CPU the calling thread runs on (-1 unknown).
int current_cpu() {
#if defined(__linux__)
  return sched_getcpu();
#else
  return -1;
#endif
}

// Lets `thread` (a worker) run on the process's CPUs (its main thread's mask, which taskset and
// os.sched_setaffinity narrow) other than `caller_cpu`; leaves it alone when there is no other.
// Advice: a failure leaves the thread where it is.
void avoid_caller_cpu(pthread_t thread, int caller_cpu) {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(getpid(), sizeof(set), &set) != 0) return;
  if (caller_cpu >= 0 && caller_cpu < CPU_SETSIZE) CPU_CLR(caller_cpu, &set);
  if (CPU_COUNT(&set) > 0) pthread_setaffinity_np(thread, sizeof(set), &set);
#else
  (void)thread, (void)caller_cpu;
#endif
}

// Spins until done() or for kSpin; returns done().
template <class Done> bool spin_until(Done done) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 64 == 0 && std::chrono::steady_clock::now() - start > kSpin) return done();
  }
}

// True on pool workers, and on a caller while it runs its loop's blocks.
thread_local bool t_in_loop = false;

// The blocks [begin, end) of one participant; next is the first not yet taken.
struct alignas(64) Range {
  std::atomic<int64_t> next{0};
  int64_t end = 0;
};

struct Job {
  detail::BlockFn fn;
  void* context;
  int64_t n_blocks;
  int helpers_wanted;                // workers that may join (threads - 1)
  int caller_cpu = -1;               // where the caller ran when it published the job
  int helpers_joined = 0;            // under Pool::mutex
  std::unique_ptr<Range[]> ranges;   // one per participant: 0 the caller, 1.. the workers
  std::atomic<bool> failed{false};   // stop handing out blocks
  std::mutex error_mutex;
  std::exception_ptr error;          // the first exception, under error_mutex

  // Cuts [0, n_blocks) into helpers_wanted + 1 contiguous ranges (before any participant runs).
  void split() {
    const int parts = helpers_wanted + 1;
    ranges.reset(new Range[parts]);
    for (int i = 0; i < parts; ++i) {
      ranges[i].next.store(n_blocks * i / parts, std::memory_order_relaxed);
      ranges[i].end = n_blocks * (i + 1) / parts;
    }
  }

  // Participant `self` runs its own range, then what is left of the others'.
  void run_blocks(int self) {
    const int parts = helpers_wanted + 1;
    for (int i = 0; i < parts; ++i) run_range(ranges[(self + i) % parts]);
  }

  void run_range(Range& r) {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      const int64_t b = r.next.fetch_add(1, std::memory_order_relaxed);
      if (b >= r.end) return;
      try {
        fn(context, b);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
        failed.store(true, std::memory_order_relaxed);
      }
    }
  }
};

class Pool {
 public:
  std::mutex submit;  // held by the thread whose loop runs on the pool

  // Runs job on the calling thread and up to job.helpers_wanted workers (submit held).
  void run(Job& job) {
    job.helpers_wanted = std::min(job.helpers_wanted, grow(job.helpers_wanted));
    job.split();
    if (keep_off_) job.caller_cpu = current_cpu();
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &job;
      generation_.fetch_add(1, std::memory_order_release);
      wake = sleepers_ > 0;
    }
    if (wake) wake_.notify_all();
    job.run_blocks(0);
    // Every block is handed out: no new worker may join; wait for those inside.
    std::unique_lock<std::mutex> lock(mutex_);
    job_ = nullptr;
    if (active_.load(std::memory_order_relaxed) > 0) {
      lock.unlock();
      spin_until([&] { return active_.load(std::memory_order_acquire) == 0; });
      lock.lock();
      caller_waiting_ = true;
      done_.wait(lock, [&] { return active_.load(std::memory_order_relaxed) == 0; });
      caller_waiting_ = false;
    }
  }

  Pool* retired_next = nullptr;  // pools dropped in forked children, kept reachable

 private:
  // Starts workers until there are `workers`; returns how many there are (fewer when the
  // system refuses a thread: the loop then runs on those).
  int grow(int workers) {
    if (workers_ >= workers) return workers_;
    // Workers block every signal, so signals reach the threads that expect them (Python's main
    // thread); the mask is inherited from the creating thread.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    const uint64_t seen = generation_.load(std::memory_order_relaxed);  // before the job is published
    // Placed off the caller's CPU from the start (a new thread too was put on the busy one).
    const int caller_cpu = keep_off_ ? current_cpu() : -1;
    try {
      for (; workers_ < workers; ++workers_) {
        std::thread worker([this, seen, caller_cpu] { work(seen, caller_cpu); });
#if defined(__linux__)
        pthread_setname_np(worker.native_handle(), "fusednn-worker");
        if (caller_cpu >= 0) avoid_caller_cpu(worker.native_handle(), caller_cpu);
#endif
        worker.detach();
      }
    } catch (const std::system_error&) {
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return workers_;
  }

  // avoided: the caller CPU this worker was last placed away from (-1: none).
  void work(uint64_t seen, int avoided) {
    t_in_loop = true;
    for (;;) {
      if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
        std::unique_lock<std::mutex> lock(mutex_);
        ++sleepers_;
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_relaxed) != seen; });
        --sleepers_;
      }
      std::unique_lock<std::mutex> lock(mutex_);
      seen = generation_.load(std::memory_order_relaxed);
      Job* job = job_;
      if (job == nullptr || job->helpers_joined >= job->helpers_wanted) continue;
      const int self = ++job->helpers_joined;
      active_.fetch_add(1, std::memory_order_relaxed);
      lock.unlock();
      if (job->caller_cpu >= 0 && job->caller_cpu != avoided) {
        avoid_caller_cpu(pthread_self(), job->caller_cpu);
        avoided = job->caller_cpu;
      }
      job->run_blocks(self);
      lock.lock();
      if (active_.fetch_sub(1, std::memory_order_release) == 1 && caller_waiting_) done_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;  // workers wait here for a new generation
  std::condition_variable done_;  // the caller waits here for active_ == 0
  std::atomic<uint64_t> generation_{0};  // incremented (under mutex_) for each job
  Job* job_ = nullptr;                   // under mutex_: the job workers may join
  std::atomic<int> active_{0};           // workers inside a job (changed under mutex_)
  int sleepers_ = 0;                     // under mutex_
  bool caller_waiting_ = false;          // under mutex_
  int workers_ = 0;                      // under submit
  const bool keep_off_ = keep_off_caller_cpu();
};

std::atomic<Pool*> g_pool{nullptr};
Pool* g_retired = nullptr;

// In a forked child only the forking thread exists: the pool's workers are gone and its
// mutexes may be held. Drop it (kept reachable, never used again); the next loop makes a new one.
void drop_pool_in_child() {
  if (Pool* p = g_pool.load(std::memory_order_relaxed)) {
    p->retired_next = g_retired;
    g_retired = p;
    g_pool.store(nullptr, std::memory_order_relaxed);
  }
  t_in_loop = false;
}

[[maybe_unused]] const bool g_atfork_registered = pthread_atfork(nullptr, nullptr, drop_pool_in_child) == 0;

Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return *p;
  Pool* fresh = new Pool;  // no threads until its first loop
  if (g_pool.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
  delete fresh;  // another thread made one first
  return *p;
}

}  // namespace

int num_threads() { return thread_count().load(std::memory_order_relaxed); }
void set_num_threads(int n) { thread_count().store(std::max(1, n), std::memory_order_relaxed); }

namespace detail {

bool run_on_pool(int64_t n_blocks, int threads, BlockFn fn, void* context) {
  if (t_in_loop || threads <= 1) return false;
  Pool& p = pool();
  std::unique_lock<std::mutex> hold(p.submit, std::try_to_lock);
  if (!hold.owns_lock()) return false;
  Job job{fn, context, n_blocks, threads - 1};
  t_in_loop = true;
  p.run(job);
  t_in_loop = false;
  if (job.error) std::rethrow_exception(job.error);
  return true;
}

}  // namespace detail
}  // namespace fdnn
