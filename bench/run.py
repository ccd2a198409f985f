"""fusednn microbenchmarks: python bench/run.py [--device cuda] [--quick] [--ops linear] [--json out.json].

Prints the machine's measured ceilings, then for each case fusednn vs the reference (NumPy on
the CPU, CuPy on the GPU) vs PyTorch on the same device (when torch is importable), as median
times, speedups and % of the ceiling. Every family has one case list (bench_<family>.py) that
runs on either device; --quick runs its first, small sizes with few repeats.
"""

import argparse
import importlib
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:  # torch first, so its own OpenMP runtime starts the way it does in user code
    import torch
except ImportError:
    torch = None

import fusednn  # noqa: E402
from harness import (DRAM_FACTOR, HEADER, BandwidthProbe, Device, cuda_ceilings, cuda_median_seconds,  # noqa: E402
                     l3_cache_bytes, median_seconds, run_cases, sgemm_peak, thread_scaling)

FAMILIES = ["linear", "xent", "norm", "dropout", "activation", "gather", "optim", "rnn", "augment", "conv", "train",
            "train_contention"]
# Where each family's case list lives: bench_<family>.cases, except these.
CASE_LISTS = {"train_contention": ("bench_train", "contention_cases")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", default=",".join(FAMILIES),
                   help=f"comma-separated families to run (default: all = {','.join(FAMILIES)})")
    p.add_argument("--repeat", type=int, default=None,
                   help="timed calls per implementation (median is reported; default 15, 3 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: each family's first (small) sizes, few repeats, smaller CPU ceilings")
    p.add_argument("--threads", type=int, default=None, help="threads for fusednn and torch (default: fusednn's)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: the same cases on CuPy arrays, vs CuPy references and PyTorch CUDA, timed with "
                        "CUDA events")
    args = p.parse_args(argv)

    families = [f.strip() for f in args.ops.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        p.error(f"--ops: unknown families {unknown}; choose from {FAMILIES}")
    if args.repeat is None:
        args.repeat = 3 if args.quick else 15
    if args.repeat < 1:
        p.error("--repeat: expected >= 1")
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads: expected >= 1")
        fusednn.set_num_threads(args.threads)
    threads = fusednn.get_num_threads()
    th = None if args.no_torch else torch
    if th is not None:
        th.set_num_threads(threads)

    if args.device == "cuda" and th is not None and not th.cuda.is_available():
        print("(this torch has no CUDA: the torch column is empty)")
        th = None
    dev = Device(args.device, args.quick, th)
    info = fusednn.build_info()
    if dev.cuda:
        try:
            import cupy as cp
        except ImportError:
            p.error("--device cuda needs CuPy (pip install cupy-cuda13x) and a GPU")
        if not info["cuda"]:
            p.error("--device cuda needs fusednn's CUDA module: FUSEDNN_CUDA=ON pip install '.[cuda]'")
        peaks = cuda_ceilings()
        name = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)["name"]
        print(f"fusednn {info['version']} | {name.decode() if isinstance(name, bytes) else name} | "
              f"torch {th.__version__ if th is not None else 'not installed'}")
        print(f"ceilings: copy bandwidth {peaks['bandwidth_gbytes']:.0f} GB/s, SGEMM {peaks['sgemm_gflops']:.0f} "
              "GFLOP/s (CuPy matmul 8192^3); the 'numpy' column is the CuPy reference\n")
        timer = cuda_median_seconds
        roof_probe = None
    else:
        print(f"fusednn {info['version']} | {platform.processor() or platform.machine()} | {threads} threads | "
              f"ISA path {info['isa_path_selected']} | BLAS core {info['blas_core']}"
              f"{' (OPENBLAS_CORETYPE=' + os.environ['OPENBLAS_CORETYPE'] + ')' if 'OPENBLAS_CORETYPE' in os.environ else ''}"
              f" | torch {th.__version__ if th is not None else 'not installed'}")
        size, mb = (1024, 64) if args.quick else (3072, 256)
        l3 = l3_cache_bytes()
        mb = max(mb, 0 if args.quick else DRAM_FACTOR * l3 // 2**20)
        roof_probe = BandwidthProbe(megabytes=mb)
        peaks = {"sgemm_gflops": sgemm_peak(size=size), "bandwidth_gbytes": roof_probe.measure(), "l3_bytes": l3}
        print(f"ceilings: SGEMM peak {peaks['sgemm_gflops']:.0f} GFLOP/s (NumPy sgemm {size}^3), memory bandwidth "
              f"{peaks['bandwidth_gbytes']:.1f} GB/s (x *= a over {mb} MB, read + write) | L3 {l3 / 2**20:.0f} MiB "
              f"(OS report): memory-bound cases stream >= {DRAM_FACTOR}x that per call"
              f"{' (not in --quick)' if args.quick else ''}; each memory-bound row's % is of the roof measured "
              "again just before and after it (the larger)")
        peaks["thread_scaling_start"] = thread_scaling()
        print(f"threads: a compute-bound kernel in cache ran {peaks['thread_scaling_start']:.2f}x faster on "
              f"{threads} threads than on 1 (printed again after the cases: near 1 when this machine ran "
              "one thread at a time: the threads then took turns on one CPU)\n")
        timer = median_seconds
    print(HEADER)
    results = []
    for family in families:
        module_name, list_name = CASE_LISTS.get(family, (f"bench_{family}", "cases"))
        module = importlib.import_module(module_name)
        results += run_cases(getattr(module, list_name)(dev), args.repeat, peaks, timer=timer, roof_probe=roof_probe)
        if list_name == "cases" and hasattr(module, "report"):  # a family's own summary after its rows
            results += module.report(dev, peaks)
    if not dev.cuda:
        peaks["thread_scaling_end"] = thread_scaling()
        print(f"\nthreads after the cases: {peaks['thread_scaling_end']:.2f}x on {threads} threads against 1 "
              f"(before: {peaks['thread_scaling_start']:.2f}x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"build_info": info, "device": args.device, "quick": args.quick, "threads": threads,
                       "ceilings": peaks, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
