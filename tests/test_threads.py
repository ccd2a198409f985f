"""fusednn's thread pool (csrc/cpu/thread_pool.cpp): a child forked after parallel loops runs
its own, loops called from several Python threads at once, and thread counts above the core
count give the same results. CPU only: the pool runs the CPU kernels."""

import multiprocessing
import os
import threading
import time

import numpy as np
import pytest

import fusednn
from fusednn import ops

# Big enough for parallel_for to use 2 threads (several fixed blocks, work above its threshold).
SHAPE = (512, 1024)
# Forking a process that has threads is what these tests check (Python >= 3.12 warns about it).
FORK_WITH_THREADS = pytest.mark.filterwarnings("ignore:This process.*is multi-threaded:DeprecationWarning")


def _work(x):
    """A few parallel kernels: dropout (Philox), relu and gather_rows."""
    y = ops.dropout(x, 0.3, seed=7, offset=3, activation="relu")
    return ops.gather_rows(y, np.arange(SHAPE[0])[::-1].copy()) + ops.relu(x)


def _wait(pid, seconds):
    """The child's exit status, or None if it is still running after `seconds` (then killed)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


@FORK_WITH_THREADS
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_after_parallel_loops_runs_its_own(threads):
    # With OpenMP (libgomp) the child hung on its first parallel loop.
    threads(2)
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    expected = _work(x)  # the parent's pool is running
    pid = os.fork()
    if pid == 0:  # the child: exit 0 when its loops give the parent's results
        try:
            ok = all(np.array_equal(_work(x), expected) for _ in range(3))
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    status = _wait(pid, 60)
    assert status is not None, "the forked child hung in a parallel loop"
    assert os.waitstatus_to_exitcode(status) == 0
    np.testing.assert_array_equal(_work(x), expected)  # the parent's pool still works


def _child_work(seed):
    x = np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)
    return _work(x)


@FORK_WITH_THREADS
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method")
def test_a_fork_multiprocessing_pool_after_parallel_loops(threads):
    threads(2)
    expected = [_child_work(s) for s in range(4)]
    with multiprocessing.get_context("fork").Pool(2) as pool:
        result = pool.map_async(_child_work, range(4))
        got = result.get(timeout=60)  # a hang fails here instead of hanging the suite
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


def test_loops_from_several_python_threads_at_once(threads):
    # One loop holds the pool at a time; the others run on their calling threads. Same results.
    threads(2)
    xs = [np.random.default_rng(s).standard_normal(SHAPE).astype(np.float32) for s in range(4)]
    expected = [_work(x) for x in xs]
    errors = []

    def run(i):
        try:
            for _ in range(10):
                np.testing.assert_array_equal(_work(xs[i]), expected[i])
        except BaseException as e:  # reported on the main thread
            errors.append(e)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a thread hung"
    assert not errors, errors[0]


@pytest.mark.parametrize("n", [1, 2, 3, 8])
def test_any_thread_count_gives_the_same_results(threads, n):
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32)
    threads(1)
    expected = _work(x)
    threads(n)
    assert fusednn.get_num_threads() == n
    np.testing.assert_array_equal(_work(x), expected)


def test_build_info_names_the_thread_runtime():
    info = fusednn.build_info()
    assert "openmp" not in info
    assert "thread pool" in info["threads"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs os.sched_setaffinity")
def test_the_initial_count_is_omp_num_threads_else_the_cpus_the_process_may_use():
    import subprocess
    import sys
    cpu = min(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    code = "import fusednn; print(fusednn.get_num_threads())"

    def count(extra_env):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra_env}, capture_output=True, text=True,
                             check=True, timeout=60, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        return int(out.stdout)

    assert count({}) == 1  # one CPU allowed
    assert count({"OMP_NUM_THREADS": "3"}) == 3
    assert count({"OMP_NUM_THREADS": "2,1"}) == 2  # a nesting list: its first entry, as libgomp
    assert count({"OMP_NUM_THREADS": "zero"}) == 1  # not a positive integer: the CPU count


# The worker's CPUs after parallel loops called from a thread pinned to each CPU in turn (the main
# thread, whose mask is the process's, keeps every CPU).
_WORKER_CPUS = """
import json, os, threading, numpy as np, fusednn
from fusednn import ops
fusednn.set_num_threads(2)
x = np.ones(2**22, np.float32)
cpus = sorted(os.sched_getaffinity(0))
seen = {}
for _ in range(5):
    ops.relu(x)  # the pool starts from the main thread: its worker inherits every CPU

def call_from(cpu):
    os.sched_setaffinity(0, {cpu})  # this caller thread only
    for _ in range(20):
        ops.relu(x)
    worker = [t for t in os.listdir("/proc/self/task")
              if open(f"/proc/self/task/{t}/comm").read().strip() == "fusednn-worker"]
    seen[cpu] = [len(worker), sorted(os.sched_getaffinity(int(worker[0])))]

for cpu in cpus + cpus[:1]:
    t = threading.Thread(target=call_from, args=(cpu,))
    t.start()
    t.join()
    print(json.dumps([cpu, cpus, *seen[cpu]]))
"""


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two CPUs")
@pytest.mark.parametrize("pin", ["1", "0"])
def test_workers_keep_off_the_callers_cpu_unless_told_not_to(pin):
    """The worker may run on every CPU of the process but the one its caller ran on, and follows
    the caller when it moves; FUSEDNN_PIN_THREADS=0 leaves it on all of them."""
    import json
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", _WORKER_CPUS], env={**os.environ, "FUSEDNN_PIN_THREADS": pin},
                         capture_output=True, text=True, check=True, timeout=120).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(os.sched_getaffinity(0)) + 1
    for caller_cpu, cpus, workers, worker_cpus in rows:
        assert workers == 1
        assert worker_cpus == (sorted(set(cpus) - {caller_cpu}) if pin == "1" else cpus)
