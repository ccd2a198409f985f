"""fusednn.hpo benchmark (a standalone script; it does not fit run.py's timed-kernel harness):

    python bench/bench_hpo.py [--seeds 10] [--evals 50] [--skip quality,overhead,parallel]

1. Optimization quality: the median (over seeds) of the best value after ``--evals``
   evaluations on Branin (minimum 0.397887) and Hartmann-6 (minimum -3.32237), for fusednn's
   GaussianProcessSearch and RandomSearch, Optuna's GPSampler and Optuna's default TPE
   (same budget, 10 initial random points for both GP samplers). Also: the fraction of seeds
   where fusednn GP gets within 1e-2 of Branin's minimum in <= 40 evaluations.
2. Sampler overhead: seconds to suggest the 100th point (99 random points of Hartmann-6 known),
   fusednn GP vs Optuna GPSampler, median of 3.
3. Parallel speed-up: a Hyperband(27, 3) study of the digits MLP (``python -m fusednn hpo``'s
   objective; 49 configurations, 357 epochs in all), wall time with the process executor at
   2 workers (1 fusednn thread each) vs the serial executor (fusednn's default threads, and 1).

Optuna (``pip install "fusednn[bench]"``; its GPSampler needs torch) is skipped if missing.
Takes ~25 minutes on 2 busy cores, most of it Optuna's GPSampler (the quality part; --seeds 3
for a quick look).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from fusednn import hpo
from fusednn.hpo import functions as F

PROBLEMS = {"branin": (F.branin, F.BRANIN_SPACE, F.BRANIN_MINIMUM),
            "hartmann6": (F.hartmann6, F.HARTMANN6_SPACE, F.HARTMANN6_MINIMUM)}


def run_fusednn(sampler, fn, evals, seed):
    study = hpo.Study(sampler=sampler, storage=":memory:", name="bench", seed=seed)
    study.optimize(fn, n_trials=evals)
    return [t.value for t in study.trials]


def run_optuna(kind, fn, space, evals, seed):
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.GPSampler(seed=seed, n_startup_trials=10) if kind == "gp"
               else optuna.samplers.TPESampler(seed=seed))
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: fn({k: t.suggest_float(k, d.lo, d.hi) for k, d in space.items()}), n_trials=evals)
    return [t.value for t in study.trials]


def quality(seeds, evals):
    try:
        import optuna  # noqa: F401
        import torch  # noqa: F401  (GPSampler)
        have_optuna = True
    except ImportError:
        have_optuna = False
        print("(optuna or torch missing: its samplers are skipped)")
    methods = {"fusednn GP": lambda fn, sp, s: run_fusednn(hpo.GaussianProcessSearch(sp), fn, evals, s),
               "fusednn random": lambda fn, sp, s: run_fusednn(hpo.RandomSearch(sp), fn, evals, s)}
    if have_optuna:
        methods["optuna GPSampler"] = lambda fn, sp, s: run_optuna("gp", fn, sp, evals, s)
        methods["optuna TPE"] = lambda fn, sp, s: run_optuna("tpe", fn, sp, evals, s)
    print(f"\n## Median best value after {evals} evaluations over {seeds} seeds (lower is better)\n")
    print("| problem (minimum) | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    hits = None
    for name, (fn, space, minimum) in PROBLEMS.items():
        cells = []
        for method, run in methods.items():
            t0 = time.perf_counter()
            traces = [run(fn, space, seed) for seed in range(seeds)]
            best = [min(tr) for tr in traces]
            cells.append(f"{statistics.median(best):.5g} ({time.perf_counter() - t0:.0f} s)")
            if name == "branin" and method == "fusednn GP":
                hits = sum(min(tr[:40]) - minimum <= 1e-2 for tr in traces)
        print(f"| {name} ({minimum:.6g}) | " + " | ".join(cells) + " |", flush=True)
    print(f"\nfusednn GP within 1e-2 of Branin's minimum in <= 40 evaluations: {hits}/{seeds} seeds")


def overhead(repeats=3):
    fn, space, _ = PROBLEMS["hartmann6"]
    rng = np.random.default_rng(0)
    sampler = hpo.GaussianProcessSearch(space)
    history = []
    for _ in range(99):
        c = sampler.space.sample(rng)
        history.append((c, fn(c)))
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        sampler.suggest(history, rng=np.random.default_rng([1, r]))
        times.append(time.perf_counter() - t0)
    ours = statistics.median(times)
    line = f"| fusednn GP | {ours * 1e3:.0f} ms |"
    try:
        import optuna
        import torch  # noqa: F401
    except ImportError:
        print("\n## Time to suggest the 100th point\n\n| sampler | median |\n|---|---|\n" + line)
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {k: optuna.distributions.FloatDistribution(d.lo, d.hi) for k, d in space.items()}
    theirs = []
    for r in range(repeats):
        study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=r))
        for c, v in history:
            study.add_trial(optuna.trial.create_trial(params=c, distributions=dists, value=v))
        t0 = time.perf_counter()
        trial = study.ask(dists)
        theirs.append(time.perf_counter() - t0)
        study.tell(trial, fn(trial.params))
    theirs = statistics.median(theirs)
    print("\n## Time to suggest the 100th point (Hartmann-6, 99 points known; median of 3)\n")
    print("| sampler | time |\n|---|---|")
    print(line)
    print(f"| optuna GPSampler | {theirs * 1e3:.0f} ms |")
    print(f"\nfusednn / optuna: {ours / theirs:.2f}x (target <= 1x)")


def parallel():
    from fusednn.cli.hpo import _Objective, space

    def run(executor):
        with tempfile.TemporaryDirectory() as d:
            study = hpo.Study(sampler=hpo.RandomSearch(space()), scheduler=hpo.Hyperband(27, 3),
                              storage=os.path.join(d, "s.db"), name="par", seed=0)
            t0 = time.perf_counter()
            study.optimize(_Objective(27), executor=executor)
            elapsed = time.perf_counter() - t0
            return elapsed, sum(t.duration for t in study.trials), study.best.value

    import fusednn
    threads = fusednn.get_num_threads()
    serial, _, best_s = run("serial")
    fusednn.set_num_threads(1)
    serial1, _, best_1 = run("serial")
    fusednn.set_num_threads(threads)
    process, busy, best_p = run(hpo.ProcessExecutor(2))
    print("\n## Hyperband(27, 3) on digits: 49 configurations, 357 epochs\n")
    print("| executor | wall time | best val loss |\n|---|---|---|")
    print(f"| serial ({threads} fusednn threads, the default) | {serial:.1f} s | {best_s:.4f} |")
    print(f"| serial (1 fusednn thread) | {serial1:.1f} s | {best_1:.4f} |")
    print(f"| process, 2 workers x 1 thread | {process:.1f} s | {best_p:.4f} |")
    print(f"\nspeed-up {serial / process:.2f}x over the default serial run, {serial1 / process:.2f}x over 1 thread "
          f"(target >= 1.7x on 2 idle cores; {os.cpu_count()} CPUs here, load average {os.getloadavg()[0]:.1f} at "
          "the end)")
    print(f"the 2 workers ran jobs {busy / (2 * process):.0%} of the wall time (the rest: worker start-up, the "
          "driver, and waits for a rung to fill)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--evals", type=int, default=50)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: quality, overhead, parallel")
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - {"quality", "overhead", "parallel"}
    if unknown:
        p.error(f"--skip: unknown parts {sorted(unknown)}")
    print(f"fusednn.hpo benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    if "quality" not in skip:
        quality(args.seeds, args.evals)
    if "overhead" not in skip:
        overhead()
    if "parallel" not in skip:
        parallel()


if __name__ == "__main__":
    main()
