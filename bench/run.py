"""fusednn microbenchmarks: python bench/run.py [--ops linear] [--json results.json].

Prints the machine's measured ceilings, then for each case fusednn vs the NumPy reference vs
PyTorch CPU (when torch is importable), as median times, speedups and % of the ceiling.
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
from harness import HEADER, memory_bandwidth, run_cases, sgemm_peak  # noqa: E402

FAMILIES = ["linear", "xent", "norm", "dropout", "activation", "gather", "optim", "train"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ops", default=",".join(FAMILIES),
                   help=f"comma-separated families to run (default: all = {','.join(FAMILIES)})")
    p.add_argument("--repeat", type=int, default=15, help="timed calls per implementation (median is reported)")
    p.add_argument("--threads", type=int, default=None, help="threads for fusednn and torch (default: fusednn's)")
    p.add_argument("--no-torch", action="store_true", help="skip PyTorch even if it is installed")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: the same families on CuPy arrays (bench_cuda.py), vs CuPy references and PyTorch CUDA")
    args = p.parse_args(argv)

    families = [f.strip() for f in args.ops.split(",") if f.strip()]
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        p.error(f"--ops: unknown families {unknown}; choose from {FAMILIES}")
    if args.threads is not None:
        if args.threads < 1:
            p.error("--threads: expected >= 1")
        fusednn.set_num_threads(args.threads)
    threads = fusednn.get_num_threads()
    th = None if args.no_torch else torch
    if th is not None:
        th.set_num_threads(threads)

    if args.device == "cuda":
        import bench_cuda
        return bench_cuda.main(families, args, None if args.no_torch else torch)

    info = fusednn.build_info()
    print(f"fusednn {info['version']} | {platform.processor() or platform.machine()} | {threads} threads | "
          f"ISA path {info['isa_path_selected']} | BLAS core {info['blas_core']}"
          f"{' (OPENBLAS_CORETYPE=' + os.environ['OPENBLAS_CORETYPE'] + ')' if 'OPENBLAS_CORETYPE' in os.environ else ''}"
          f" | torch {th.__version__ if th is not None else 'not installed'}")
    peaks = {"sgemm_gflops": sgemm_peak(), "bandwidth_gbytes": memory_bandwidth()}
    print(f"ceilings: SGEMM peak {peaks['sgemm_gflops']:.0f} GFLOP/s (NumPy sgemm 3072^3), memory bandwidth "
          f"{peaks['bandwidth_gbytes']:.1f} GB/s (x *= a over 256 MB, read + write)\n")
    print(HEADER)
    results = []
    for family in families:
        module = importlib.import_module(f"bench_{family}")
        results += run_cases(module.cases(torch=th), args.repeat, peaks)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"build_info": info, "threads": threads, "ceilings": peaks, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
