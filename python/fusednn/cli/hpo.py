"""``python -m fusednn hpo``: tune an MLP on the embedded digits with :mod:`fusednn.hpo`.

The search space: learning rate (log-uniform 1e-4..1e-1), weight decay (log-uniform
1e-6..1e-2), dropout (0..0.5), hidden width (integer, log-uniform 16..256) and batch size
(32, 64, 128 or 256). Each trial trains MLP 64-width-10 with batch norm, AdamW and a cosine
schedule over ``--epochs`` epochs (a scheduler stops it earlier at its rungs; a promoted trial
resumes from its checkpoint), minimizing the validation loss. At the end the best trial's
final checkpoint is evaluated on the test split: no retraining.
"""

import argparse
import math
import sys

from fusednn.cli._args import UsageError, _positive_int, _seed

SAMPLERS = ("grid", "random", "gp")
SCHEDULERS = ("none", "sh", "hyperband", "asha")
EXECUTORS = ("serial", "process", "ray")


def space():
    """The search space of the digits MLP."""
    from fusednn import hpo
    return {"lr": hpo.LogUniform(1e-4, 1e-1), "weight_decay": hpo.LogUniform(1e-6, 1e-2),
            "dropout": hpo.Uniform(0.0, 0.5), "hidden": hpo.IntUniform(16, 256, log=True),
            "batch_size": hpo.Choice([32, 64, 128, 256])}


def _model(config, seed):
    from fusednn import nn
    return nn.MLP([64, config["hidden"], 10], norm="batch", dropout=config["dropout"], seed=seed)


_DATA = []


def _data():
    """The digits train/val/test splits (seed 0), standardized with the training split's
    statistics, as float32 (loaded once per process)."""
    if not _DATA:
        import numpy as np

        from fusednn import data
        splits = [data.digits(s, seed=0) for s in ("train", "val", "test")]
        scaler = data.StandardScaler().fit(splits[0][0])
        _DATA.extend((scaler.transform(x).astype(np.float32), y) for x, y in splits)
    return _DATA


def digits_objective(config, trial, max_epochs=27):
    """Train the digits MLP of ``config`` under ``trial``; the validation loss."""
    from fusednn import hpo, optim
    from fusednn.nn.losses import SoftmaxCrossEntropy
    from fusednn.optim import schedules

    (x, y), val, _ = _data()
    model = _model(config, trial.seed)
    optimizer = optim.AdamW(model.parameter_groups(weight_decay=config["weight_decay"]), lr=config["lr"])
    steps = math.ceil(len(x) / config["batch_size"])
    schedule = schedules.cosine(config["lr"], max_epochs * steps)
    value = hpo.fit_trial(trial, model, SoftmaxCrossEntropy(), optimizer, (x, y), val, max_epochs=max_epochs,
                          batch_size=config["batch_size"], schedule=schedule)
    return value


class _Objective:
    """digits_objective with the run's --epochs (a picklable callable)."""

    def __init__(self, max_epochs):
        self.max_epochs = max_epochs

    def __call__(self, config, trial):
        return digits_objective(config, trial, self.max_epochs)


def add_parser(sub):
    """The ``hpo`` subcommand's parser, added to the subparsers ``sub``."""
    p = sub.add_parser("hpo", help="tune lr, weight decay, dropout, width and batch size of an MLP on digits",
                       description="Tune the learning rate, weight decay, dropout, hidden width and batch size of "
                                   "an MLP on the embedded digits (minimizing the validation loss), then print the "
                                   "best configuration and its test accuracy. See docs/hpo.md.",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--sampler", choices=SAMPLERS, default="random",
                   help="grid search, random search or Gaussian-process Bayesian optimization")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="none",
                   help="sh: successive halving; hyperband; asha: asynchronous successive halving")
    p.add_argument("--trials", type=_positive_int, default=20,
                   help="trials (configurations) in the study; a resumed study runs the rest")
    p.add_argument("--executor", choices=EXECUTORS, default="serial",
                   help="serial, process (local worker processes) or ray (Ray tasks)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="parallel jobs for process/ray (None: one per core, or one per Ray CPU)")
    p.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (auto, or an address) instead of starting a local Ray")
    p.add_argument("--epochs", type=_positive_int, default=27, help="the most epochs a trial trains (max resource)")
    p.add_argument("--min-epochs", type=_positive_int, default=1, help="the lowest rung of sh/hyperband/asha")
    p.add_argument("--eta", type=_positive_int, default=3, help="the halving rate of sh/hyperband/asha (>= 2)")
    p.add_argument("--resolution", type=_positive_int, default=3, help="grid values per continuous dimension")
    p.add_argument("--storage", default="runs/hpo/study.db", help="the SQLite file of the study")
    p.add_argument("--name", default=None,
                   help="the study's name in the storage (None: digits-SAMPLER-SCHEDULER); an existing study of that "
                        "name is resumed")
    p.add_argument("--seed", type=_seed, default=0, help="the study seed (trial seeds and sampler draws)")
    return p


def _sampler(args):
    from fusednn import hpo
    if args.sampler == "grid":
        return hpo.GridSearch(space(), resolution=args.resolution)
    if args.sampler == "random":
        return hpo.RandomSearch(space())
    return hpo.GaussianProcessSearch(space(), n_initial=min(10, args.trials))


def _scheduler(args):
    from fusednn import hpo
    if args.eta < 2:
        raise UsageError(f"--eta: expected an integer >= 2, got {args.eta}")
    if args.min_epochs > args.epochs:
        raise UsageError(f"--min-epochs {args.min_epochs} exceeds --epochs {args.epochs}")
    if args.scheduler == "sh":
        return hpo.SuccessiveHalving(args.min_epochs, args.epochs, args.eta, n_configs=args.trials)
    if args.scheduler == "hyperband":
        return hpo.Hyperband(args.epochs, args.eta, min_resource=args.min_epochs, iterations=None)
    if args.scheduler == "asha":
        return hpo.ASHA(args.min_epochs, args.epochs, args.eta)
    return None


def _executor(args):
    from fusednn import hpo
    if args.executor == "serial":
        if args.workers not in (None, 1):
            raise UsageError("--workers: the serial executor runs one trial at a time")
        return "serial"
    if args.executor == "process":
        return hpo.ProcessExecutor(args.workers)
    try:
        return hpo.RayExecutor(address=args.ray_address, workers=args.workers)
    except ImportError as e:
        raise UsageError(str(e)) from None


def run(args):
    """Run ``hpo`` with the parsed ``args``; the exit status."""
    from fusednn import checkpoint, hpo
    from fusednn import train as fit_mod
    from fusednn.nn.losses import SoftmaxCrossEntropy

    if args.ray_address is not None and args.executor != "ray":
        raise UsageError("--ray-address needs --executor ray")
    name = args.name or f"digits-{args.sampler}-{args.scheduler}"
    executor = _executor(args)
    try:
        study = hpo.Study(sampler=_sampler(args), scheduler=_scheduler(args), storage=args.storage, name=name,
                          seed=args.seed)
    except ValueError as e:  # an existing study of this name with other settings
        raise UsageError(f"--storage {args.storage} --name {name}: {e}") from None
    print(f"fusednn hpo: study {name!r} in {args.storage}: {args.sampler} sampler, {args.scheduler} scheduler, "
          f"{args.trials} trials, {args.executor} executor", flush=True)
    study.optimize(_Objective(args.epochs), n_trials=args.trials, executor=executor)
    counts = {}
    for r in study.trials:
        counts[r.status] = counts.get(r.status, 0) + 1
    print("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    try:
        best = study.best
    except ValueError:
        print("no trial completed", file=sys.stderr)
        return 1
    config = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.config.items())
    print(f"best: trial {best.number}: {config} | val loss {best.value:.4f} after {best.reports[-1][0]} epochs")
    model = _model(best.config, best.seed)
    path = checkpoint.latest(study.checkpoint_dir(best.number))
    model.load_state_dict(checkpoint.load(path).model)
    _, _, test = _data()
    result = fit_mod.evaluate(model, test, SoftmaxCrossEntropy())
    print(f"test accuracy {result['accuracy']:.2%}, test loss {result['loss']:.4f} (the best trial's checkpoint "
          f"{path})")
    return 0
