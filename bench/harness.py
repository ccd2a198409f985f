"""Benchmark harness: the device, machine ceilings, timing, and the report.

Every family file (bench_<family>.py) has one case list, ``cases(dev)``, with the device as a
parameter (``Device``: "cpu" or "cuda", and ``quick`` for a few small cases). Every case times
fusednn, the reference written the way a user would (NumPy on the CPU, CuPy on the GPU) and
PyTorch on the same device (when importable) in the same run, each as the median of repeated
calls after warm-up (wall time on the CPU, CUDA events on the GPU). The machine's ceilings are
measured in the same run: on the CPU the SGEMM peak (a large BLAS sgemm) and the memory
bandwidth (an in-place streaming pass, one thread per core, counting bytes read and written),
on the GPU the copy bandwidth and CuPy's SGEMM rate. On the CPU the bandwidth is measured again
around each memory-bound case, whose "% of" is of that local roof (``run_cases``).
"""

import dataclasses
import os
import threading
import time
from typing import Callable, Dict, Optional

import numpy as np


DRAM_FACTOR = 4
_FALLBACK_L3 = 32 * 2**20


def l3_cache_bytes():
    """The largest last-level (L3) cache of one CPU as the OS reports it (Linux sysfs, then
    sysconf), or 32 MiB when it reports none. Virtual machines may report a host's whole L3
    (a Xeon VM here reported 480 MB): the bench sizes its cases from this number, so a large
    report gives larger (slower) cases, never cache-resident ones."""
    sizes = []
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in os.listdir(base):
            try:
                with open(os.path.join(base, entry, "level")) as f:
                    level = int(f.read())
                with open(os.path.join(base, entry, "size")) as f:
                    text = f.read().strip()
            except (OSError, ValueError):
                continue
            if level == 3 and text:
                unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1].upper(), 1)
                sizes.append(int(text.rstrip("KMGkmg")) * unit)
    except OSError:
        pass
    if not sizes:
        try:
            sizes.append(os.sysconf("SC_LEVEL3_CACHE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    best = max(sizes, default=0)
    return best if best > 0 else _FALLBACK_L3


@dataclasses.dataclass
class Device:
    """Where the cases run: name "cpu" or "cuda"; quick: the first (small) sizes only; torch:
    the torch module or None."""
    name: str = "cpu"
    quick: bool = False
    torch: object = None

    @property
    def cuda(self):
        return self.name == "cuda"

    @property
    def xp(self):
        """The array module: numpy, or cupy on "cuda"."""
        if self.cuda:
            import cupy
            return cupy
        return np

    def array(self, a):
        """A NumPy array on the device."""
        return self.xp.asarray(a)

    def tensor(self, a):
        """A torch tensor on the device sharing a's memory (NumPy or CuPy)."""
        return self.torch.as_tensor(a, device=self.name)

    def dram_shape(self, shape, arrays, itemsize=4):
        """``shape`` with its first axis grown, on the CPU, until the ``arrays`` arrays of that
        shape that a case streams total at least ``DRAM_FACTOR`` (4) times the L3 cache (so no
        call finds the previous call's data in cache; see ``l3_cache_bytes``). Unchanged on a
        GPU and in a quick run."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        if self.cuda or self.quick:
            return shape if len(shape) > 1 else shape[0]
        per_row = arrays * itemsize * int(np.prod(shape[1:], dtype=np.int64))
        rows = max(shape[0], -(-DRAM_FACTOR * l3_cache_bytes() // per_row))
        shape = (int(rows),) + shape[1:]
        return shape if len(shape) > 1 else shape[0]

    def sizes(self, items):
        """The entries of a family's size list for this run: each is a size or (size, "cuda")
        for sizes that only a GPU fills; quick keeps the first entry."""
        mine = [i[0] if isinstance(i, tuple) and i[-1:] == ("cuda",) else i for i in items
                if not (isinstance(i, tuple) and i[-1:] == ("cuda",)) or self.cuda]
        return mine[:1] if self.quick else mine


@dataclasses.dataclass
class Case:
    family: str
    name: str
    # "fusednn", "numpy" (the reference: NumPy, or CuPy on the GPU), "torch"; any other key is
    # another fusednn path, reported on a row of its own against the same references.
    impls: Dict[str, Optional[Callable[[], object]]]
    flops: float = 0.0  # for GEMM-bound cases: % of SGEMM peak
    bytes: float = 0.0  # for memory-bound cases (minimal traffic): % of bandwidth
    repeat: int = 0  # timed calls for this case (0: the run's --repeat), for cases of seconds
    warmup: int = 2
    # Time the implementations in turns (one call each per round) rather than one after the
    # other, for cases of seconds: a machine whose speed drifts over tens of seconds (seen here:
    # stretches 50% slower) then slows every implementation alike.
    interleave: bool = False
    # Also report the fastest of the timed calls of each implementation, on rows of their own
    # ("[best of n]"), for cases whose medians this VM made bimodal: its scheduler at times stacked
    # the two threads on one vCPU for seconds, and a 2-thread call then took one thread's time
    # (with interleave, each round's calls are the same rounds' as the medians').
    best_of: bool = False


def call_seconds(fn, repeat, warmup=2, settle=0.25):
    """Wall times of `repeat` calls of fn(), after `warmup` calls. Sleeps `settle` seconds first
    so the thread pools of whatever ran before have gone idle: OpenMP workers spin for
    milliseconds and OpenBLAS workers yield-spin for ~0.1 s after their last call, taking cores
    from the next implementation."""
    time.sleep(settle)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_seconds(fn, repeat, warmup=2, settle=0.25):
    """Median wall time of fn() over `repeat` calls, after `warmup` calls (``call_seconds``)."""
    return float(np.median(call_seconds(fn, repeat, warmup, settle)))


def sgemm_peak(repeat=5, size=3072):
    """GFLOP/s of a large square float32 matmul through NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), np.float32)
    b = rng.standard_normal((size, size), np.float32)
    c = np.empty((size, size), np.float32)
    t = median_seconds(lambda: np.matmul(a, b, out=c), repeat, warmup=1)
    return 2.0 * size**3 / t / 1e9


def thread_scaling(repeat=40):
    """How much faster a compute-bound fusednn kernel runs on all of fusednn's threads than on one:
    ops.gaussian_noise (Philox and Box-Muller) over 400K float32 held in cache, medians of
    `repeat` calls each. Near the thread count when the threads run side by side; near 1 when
    they take turns on one CPU (this VM's scheduler stacked woken threads on the busy vCPU until
    the pool's workers kept off the caller's CPU), and then every 2-thread row takes one thread's
    time. run.py prints it before and after the cases."""
    import fusednn
    from fusednn import ops
    x = np.random.default_rng(0).random(400_000, dtype=np.float32)
    y = np.empty_like(x)
    threads = fusednn.get_num_threads()

    def call():
        ops.gaussian_noise(x, 0.05, seed=1, out=y)

    try:
        fusednn.set_num_threads(1)
        one = median_seconds(call, repeat, warmup=3, settle=0.0)
    finally:
        fusednn.set_num_threads(threads)
    return one / median_seconds(call, repeat, warmup=3, settle=0.0)


class BandwidthProbe:
    """The in-place memory roof: GB/s of `x *= a` over a float32 array of `megabytes` MB, split
    over one thread per core (NumPy releases the GIL in ufuncs), counting each byte read and
    written. The array is kept, so the probe can be measured again next to each memory-bound case
    (``run_cases``): this VM's roof was seen to move between 47 and 88 GB/s from one minute to
    the next, so a roof taken at the start of a run says little about a case timed a minute
    later."""

    def __init__(self, megabytes=256, threads=None):
        self.threads = threads or os.cpu_count() or 1
        self.x = np.ones(megabytes * 2**20 // 4, np.float32)
        self.parts = np.array_split(self.x, self.threads)
        self.factor = np.float32(1.0000001)

    def _scale_all(self):
        workers = [threading.Thread(target=np.multiply, args=(p, self.factor), kwargs={"out": p}) for p in self.parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def measure(self, repeat=7, settle=0.25):
        """GB/s of the median pass of `repeat`, after one warm-up pass."""
        t = median_seconds(self._scale_all, repeat, warmup=1, settle=settle)
        return 2.0 * self.x.nbytes / t / 1e9


def streaming_passes(reads=(), copies=(), pairs=()):
    """A callable that makes the given passes over memory with plain streaming kernels: the floor
    of a kernel that needs the same passes, for a row measured in the same run. Each array in
    ``reads`` is read once (a sum, on one thread per core: NumPy releases the GIL), each (x, y) in
    ``copies`` reads x and writes y (fusednn.ops.relu with out=), each (a, b, out) in ``pairs``
    reads a and b and writes out (fusednn.ops.relu_backward with out=); both on fusednn's threads,
    with the streaming stores its kernels give float32 outputs of 16 MiB or more."""
    from fusednn import ops
    threads = os.cpu_count() or 1

    def read_all(a):
        if not isinstance(a, np.ndarray):  # CuPy: one reduction on the device
            return a.sum()
        parts = np.array_split(a.reshape(-1), threads)
        workers = [threading.Thread(target=np.add.reduce, args=(p,)) for p in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def run():
        for a in reads:
            read_all(a)
        for x, y in copies:
            ops.relu(x, out=y)
        for a, b, out in pairs:
            ops.relu_backward(a, b, out=out)

    return run


def format_time(seconds):
    if seconds is None:
        return "-"
    if seconds >= 1e-1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def cuda_median_seconds(fn, repeat, warmup=2, settle=0.0):
    """Median GPU time of fn() over `repeat` calls, measured with CUDA events on CuPy's current
    stream (PyTorch's default stream is the same legacy default stream)."""
    import cupy
    for _ in range(warmup):
        fn()
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for _ in range(repeat):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    return float(np.median(times))


def interleaved_call_seconds(fns, repeat, warmup=1, settle=0.25):
    """Wall times of each fn() over `repeat` rounds that call every fn once, in turn, after
    `warmup` such rounds; `settle` seconds of sleep before each call, as in call_seconds."""
    for _ in range(warmup):
        for fn in fns.values():
            time.sleep(settle)
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            time.sleep(settle)
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def cuda_ceilings():
    """The GPU's copy bandwidth (1 GiB device-to-device) and SGEMM rate (CuPy matmul 8192^3)."""
    import cupy as cp
    x = cp.empty(256 * 2**20, cp.float32)
    y = cp.empty_like(x)
    copy = cuda_median_seconds(lambda: cp.copyto(y, x), 10)
    n = 8192
    a, b = cp.random.standard_normal((n, n), cp.float32), cp.random.standard_normal((n, n), cp.float32)
    gemm = cuda_median_seconds(lambda: cp.matmul(a, b), 5)
    del x, y, a, b
    return {"bandwidth_gbytes": 2 * 256 * 2**20 * 4 / copy / 1e9, "sgemm_gflops": 2 * n**3 / gemm / 1e9}


def _rows(case, times, peaks, local_roof=None):
    rows = []
    for impl in ["fusednn"] + [k for k in case.impls if k not in ("fusednn", "numpy", "torch")]:
        t = times[impl]
        row = {"family": case.family, "case": case.name if impl == "fusednn" else f"{case.name} [{impl}]",
               "seconds": {"fusednn": t, "numpy": times.get("numpy"), "torch": times.get("torch")}}
        for other in ("numpy", "torch"):
            row[f"speedup_vs_{other}"] = times[other] / t if times.get(other) and t else None
        if case.flops:
            row["gflops"] = case.flops / t / 1e9
            row["fraction_of_peak"] = row["gflops"] / peaks["sgemm_gflops"]
            row["roof"] = "SGEMM peak"
        elif case.bytes:
            row["gbytes_per_s"] = case.bytes / t / 1e9
            row["roof_gbytes_per_s"] = local_roof or peaks["bandwidth_gbytes"]
            row["fraction_of_peak"] = row["gbytes_per_s"] / row["roof_gbytes_per_s"]
            row["roof"] = "memory bandwidth next to the case" if local_roof else "memory bandwidth"
            if times.get("torch"):  # how near torch came to the same roof (a target "x torch" needs room)
                row["torch_fraction_of_peak"] = case.bytes / times["torch"] / 1e9 / row["roof_gbytes_per_s"]
        rows.append(row)
    return rows


def run_cases(cases, repeat, peaks, timer=median_seconds, roof_probe=None):
    """Times every case with `timer`; returns the result dicts (one per fusednn path). With a
    ``BandwidthProbe``, each memory-bound case (``bytes``) gets its own roof: the probe's median
    of 3 passes just before the case and just after it, the larger of the two (a roof taken
    minutes away from the case would compare it with another state of the machine)."""
    results = []
    for case in cases:
        before = roof_probe.measure(3) if roof_probe is not None and case.bytes else None
        if (case.interleave or case.best_of) and timer is median_seconds:
            calls = {impl: None for impl in case.impls}
            present = {impl: fn for impl, fn in case.impls.items() if fn is not None}
            if case.interleave:
                calls.update(interleaved_call_seconds(present, case.repeat or repeat, case.warmup))
            else:
                calls.update({impl: call_seconds(fn, case.repeat or repeat, case.warmup)
                              for impl, fn in present.items()})
            times = {impl: None if t is None else float(np.median(t)) for impl, t in calls.items()}
            best = {impl: None if t is None else min(t) for impl, t in calls.items()}
        else:
            times = {}
            for impl, fn in case.impls.items():
                times[impl] = None if fn is None else timer(fn, case.repeat or repeat, case.warmup)
        local_roof = max(before, roof_probe.measure(3)) if before is not None else None
        rows = _rows(case, times, peaks, local_roof)
        if case.best_of and timer is median_seconds:
            n = case.repeat or repeat
            best_case = dataclasses.replace(case, name=f"{case.name} [best of {n}]")
            rows += _rows(best_case, best, peaks, local_roof)  # each fusednn path's fastest call against the others'
        for row in rows:
            results.append(row)
            print(format_row(row), flush=True)
    return results


HEADER = (f"{'case':44} {'fusednn':>10} {'numpy':>10} {'torch':>10} {'vs numpy':>9} {'vs torch':>9}  "
          f"{'fusednn rate, % of roof (torch %)':<}")


def format_row(row):
    s = row["seconds"]
    vs = {k: (f"{row[f'speedup_vs_{k}']:.2f}x" if row[f"speedup_vs_{k}"] else "-") for k in ("numpy", "torch")}
    if "gflops" in row:
        rate = f"{row['gflops']:.0f} GFLOP/s = {row['fraction_of_peak']:.0%} of SGEMM peak"
    elif "gbytes_per_s" in row:
        rate = f"{row['gbytes_per_s']:.1f} GB/s = {row['fraction_of_peak']:.0%} of {row['roof_gbytes_per_s']:.1f} GB/s"
        if row.get("torch_fraction_of_peak", 0) >= 0.005:  # (not "torch 0%" on compute-bound rows)
            rate += f" (torch {row['torch_fraction_of_peak']:.0%})"
    else:
        rate = ""
    return (f"{row['family'] + ' ' + row['case']:44} {format_time(s['fusednn']):>10} {format_time(s.get('numpy')):>10} "
            f"{format_time(s.get('torch')):>10} {vs['numpy']:>9} {vs['torch']:>9}  {rate}")
