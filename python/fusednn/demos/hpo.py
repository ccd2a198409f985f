"""Hyperparameter search: grid against random search, random search against Gaussian-process
Bayesian optimization (fusednn.hpo)."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "hpo"
TITLE = "Hyperparameter search"
CLAIM = ("With the same number of trials, random search beats grid search when only some hyperparameters matter, "
         "because every trial tries a new value of each (Bergstra & Bengio 2012); Bayesian optimization with a "
         "Gaussian process uses the results so far and gets closer to the optimum than random search in the same "
         "number of trials.")


def lr_only(center):
    """A made-up validation loss in which only the learning rate matters: best at lr = 10^center."""
    def objective(config, trial=None):
        return (np.log10(config["lr"]) - center) ** 2 + 0.01 * (config["momentum"] - 0.5) ** 2
    return objective


def _space():
    from fusednn import hpo
    return {"lr": hpo.LogUniform(1e-4, 1.0), "momentum": hpo.Uniform(0.0, 0.99)}


def _study(sampler, objective, n_trials, seed):
    from fusednn import hpo
    study = hpo.Study(sampler=sampler, storage=":memory:", name="demo", seed=seed)
    study.optimize(objective, n_trials=n_trials)
    return study.trials


def _best_so_far(trials):
    return np.minimum.accumulate([t.value for t in trials])


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import hpo
    from fusednn.hpo import functions
    started = time.perf_counter()
    seeds, bo_seeds, bo_trials = (10, 1, 8) if quick else (20, 3, 25)
    # 1. grid against random search, 9 trials each, on objectives where only lr matters; the best
    # lr is drawn anew for each run (the grid is the same every time)
    centers = np.random.default_rng(0).uniform(-3.5, -0.5, seeds)
    grids = [_study(hpo.GridSearch(_space(), resolution=3), lr_only(c), 9, 0) for c in centers]
    randoms = [_study(hpo.RandomSearch(_space()), lr_only(c), 9, s) for s, c in enumerate(centers)]
    grid_best = [min(t.value for t in trials) for trials in grids]
    random_best = [min(t.value for t in trials) for trials in randoms]
    grid, wins = grids[0], int(sum(r < g for r, g in zip(random_best, grid_best)))
    rows = [{"comparison": "only lr matters, 9 trials", "search": "grid 3 x 3", "runs": seeds,
             "distinct lr values tried": len({t.config["lr"] for t in grid}),
             "mean best value": float(np.mean(grid_best))},
            {"comparison": "only lr matters, 9 trials", "search": "random", "runs": seeds,
             "distinct lr values tried": len({t.config["lr"] for t in randoms[0]}),
             "mean best value": float(np.mean(random_best)), "runs better than grid": wins}]
    # 2. random search against GP Bayesian optimization on the Branin function
    curves, notes = {}, []
    searches = [("random", lambda: hpo.RandomSearch(functions.BRANIN_SPACE))]
    try:
        hpo.GaussianProcessSearch(functions.BRANIN_SPACE)
        searches.append(("GP Bayesian optimization",
                         lambda: hpo.GaussianProcessSearch(functions.BRANIN_SPACE, n_initial=5)))
    except ImportError as err:  # scikit-learn or scipy missing
        notes.append(f"the Gaussian-process search was skipped: {err}")
    for label, make in searches:
        runs = [_best_so_far(_study(make(), functions.branin, bo_trials, s)) for s in range(bo_seeds)]
        curves[label] = np.mean(runs, axis=0)
        rows.append({"comparison": f"Branin, {bo_trials} trials", "search": label, "runs": bo_seeds,
                     "mean best value": float(curves[label][-1]),
                     "gap to the minimum": float(curves[label][-1] - functions.BRANIN_MINIMUM)})
    rand_mean = rows[2]["mean best value"]
    gp_mean = rows[3]["mean best value"] if len(rows) > 3 else float("nan")
    measured = (f"only lr matters (the best lr drawn from 10^U(-3.5, -0.5) for each of {seeds} runs): the 3 x 3 grid "
                f"tries 3 learning rates and its best value averages {np.mean(grid_best):.3g}; 9 random trials try 9 "
                f"and average {np.mean(random_best):.3g} (better than the grid in {wins} of {seeds} runs). Branin "
                f"(minimum {functions.BRANIN_MINIMUM:.4f}): after {bo_trials} trials random search reaches "
                f"{rand_mean:.3g} and GP Bayesian optimization {gp_mean:.3g} (mean over {bo_seeds} seeds)")
    columns = ["comparison", "search", "runs", "distinct lr values tried", "mean best value",
               "runs better than grid", "gap to the minimum"]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured,
        holds=bool(np.mean(random_best) < np.mean(grid_best) and gp_mean < rand_mean), notes=notes,
        check="random search's mean best value is below the grid's, and GP Bayesian optimization's below random "
              "search's on Branin")

    def draw(fig):
        axes = fig.subplots(1, 2)
        lr, mom = np.meshgrid(np.geomspace(1e-4, 1.0, 100), np.linspace(0.0, 0.99, 100))
        z = lr_only(centers[0])({"lr": lr, "momentum": mom})
        axes[0].contourf(lr, mom, z, levels=20, cmap="viridis_r")
        axes[0].scatter([t.config["lr"] for t in grid], [t.config["momentum"] for t in grid], c="w", edgecolors="k",
                        s=50, label="grid 3 x 3")
        axes[0].scatter([t.config["lr"] for t in randoms[0]], [t.config["momentum"] for t in randoms[0]], c="C3",
                        marker="^", s=40, label="random (seed 0)")
        axes[0].set_xscale("log")
        axes[0].set_xlabel("learning rate (the only one that matters)")
        axes[0].set_ylabel("momentum")
        axes[0].legend(fontsize=7)
        axes[0].set_title(f"grid vs random, 9 trials (best lr 10^{centers[0]:.2f})", fontsize=9)
        for label, curve in curves.items():
            axes[1].plot(np.arange(1, len(curve) + 1), curve - functions.BRANIN_MINIMUM, marker=".", label=label)
        axes[1].set_yscale("log")
        axes[1].set_xlabel("trial")
        axes[1].set_ylabel("best value so far - minimum")
        axes[1].legend(fontsize=7)
        axes[1].set_title(f"Branin, mean over {bo_seeds} seed(s)", fontsize=9)
    return _common.finish(result, out_dir, [("hpo.png", (10, 3.8), draw)], dpi, started)
