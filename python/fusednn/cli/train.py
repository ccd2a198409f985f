"""``python -m fusednn train``: train an MLP with good defaults and report what it reached.

The defaults train on the embedded 8x8 digits (standardized with the training split's
statistics): MLP 64-256-128-10 with batch norm and dropout 0.2, AdamW, cosine schedule with
linear warmup, early stopping on the validation loss (restoring the best epoch). The run's
history plot, history table and final checkpoint go to ``./runs/<name>/``.
"""

import argparse
import datetime
import itertools
import json
import math
import os
import re
import time

import numpy as np

from fusednn.cli import models
from fusednn.cli._args import (UsageError, _existing_path, _fraction, _non_negative, _positive, _positive_int,
                               _seed)

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "nadam")
# Each optimizer's peak learning rate when --lr is not given (one lr for all did not fit: 0.003
# gave Adadelta 26.7% and SGD 87.5% on digits). Measured on digits (seeds 0-2): with the default
# configuration each reaches 96.7-99% test accuracy, and 95% or more in 20 epochs of a 64-unit
# MLP (tests/test_output.py); the adaptive rules' values are torch's defaults or 3x them.
DEFAULT_LR = {"sgd": 0.3, "momentum": 0.03, "nesterov": 0.03, "adagrad": 0.03, "rmsprop": 3e-3, "adadelta": 1.0,
              "adam": 3e-3, "adamw": 3e-3, "nadam": 3e-3}
SCHEDULES = ("constant", "cosine", "step", "exponential", "inverse-time", "natural-exp", "cyclic", "sgdr")
DATASETS = ("digits", "spirals", "moons", "xor")
# The (channels, height, width) of the image data sets' flat rows (the others are plain features).
IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}


def _hidden(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer sizes such as 256,128, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected positive layer sizes, got {text!r}")
    return sizes


def _dataset(text):
    if text in DATASETS:
        return text
    if text.startswith("mnist:"):
        if not os.path.isdir(text.split(":", 1)[1]):
            raise argparse.ArgumentTypeError(f"no such directory: {text.split(':', 1)[1]!r} (mnist:<directory with "
                                             "the four MNIST IDX files>)")
        return text
    raise argparse.ArgumentTypeError(f"expected one of {', '.join(DATASETS)} or mnist:<directory>, got {text!r}")


def _augment(text):
    from fusednn.data import transforms
    try:
        transforms.from_string(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_parser(sub):
    """The ``train`` subcommand's parser, added to the subparsers ``sub``."""
    t = sub.add_parser("train", help="train an MLP and report its test accuracy and throughput",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--dataset", type=_dataset, default="digits",
                   help=f"one of {', '.join(DATASETS)}, or mnist:<directory with the IDX files>")
    t.add_argument("--model", choices=tuple(models.MODELS), default="mlp",
                   help="the network: mlp (--hidden, --activation, --norm, --dropout); cnn (conv-bn-relu-pool "
                        "blocks on the rows as images: digits 1x8x8, MNIST 1x28x28); lstm or gru (the image's rows "
                        "as time steps)")
    t.add_argument("--hidden", type=_hidden, default=[256, 128], help="hidden layer sizes")
    t.add_argument("--activation", choices=("relu", "tanh", "sigmoid", "abs"), default="relu",
                   help="the hidden layers' activation")
    t.add_argument("--norm", choices=("batch", "layer", "none"), default="batch",
                   help="normalization after each hidden Linear")
    t.add_argument("--dropout", type=_fraction, default=0.2, help="dropout rate after each hidden layer")
    t.add_argument("--input-dropout", type=_fraction, default=0.0, help="dropout rate of the input features")
    t.add_argument("--augment", type=_augment, default=None,
                   help="augment each training batch of an image data set, e.g. "
                        "rotate=10,shift=0.1,zoom=0.1,noise=0.05,erase=0.25 (keys: rotate, shift, zoom, shear, hflip, "
                        "vflip, brightness, contrast, noise, erase; docs/data.md)")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="the update rule")
    # "%(default).0s" prints nothing: it keeps the formatter from appending "(default: None)".
    t.add_argument("--lr", type=_non_negative, default=None,
                   help="peak learning rate (default: the optimizer's own: " +
                        ", ".join(f"{name} {lr:g}" for name, lr in DEFAULT_LR.items()) + ")%(default).0s")
    t.add_argument("--momentum", type=_fraction, default=0.9, help="for momentum and nesterov")
    t.add_argument("--weight-decay", type=_non_negative, default=1e-4,
                   help="decoupled for adamw, coupled (L2 in the update) otherwise; never on biases and norms")
    t.add_argument("--l1", type=_non_negative, default=0.0, help="L1 penalty on the weights")
    t.add_argument("--l2", type=_non_negative, default=0.0, help="L2 penalty (strength/2 * sum w^2) on the weights")
    t.add_argument("--label-smoothing", type=_fraction, default=0.0,
                   help="weight of the uniform distribution mixed into the one-hot targets")
    t.add_argument("--clip-norm", type=_positive, default=None,
                   help="clip the global gradient 2-norm to this value (default: no clipping)%(default).0s")
    t.add_argument("--schedule", choices=SCHEDULES, default="cosine",
                   help="learning-rate schedule after the warmup, over the remaining steps")
    t.add_argument("--warmup-epochs", type=_non_negative, default=2.0,
                   help="linear warmup: lr * t / T' for the first T' updates (T' = this many epochs of them)")
    t.add_argument("--batch-size", type=_positive_int, default=64, help="samples per update")
    t.add_argument("--epochs", type=_positive_int, default=60, help="the most epochs to train (early stopping may end "
                                                                     "sooner)")
    t.add_argument("--patience", type=_positive_int, default=15, help="early stopping patience (epochs)")
    t.add_argument("--seed", type=_seed, default=0, help="seeds the data split, initialization, batches and dropout")
    t.add_argument("--threads", type=_positive_int, default=None,
                   help="threads of fusednn's pool (default: fusednn's own choice, the machine's cores)%(default).0s")
    t.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: the model and batches as CuPy arrays (needs CuPy and fusednn's CUDA module)")
    t.add_argument("--name", default=None,
                   help="run name (default: <dataset>-<optimizer>-<date>-<time>-<microseconds>, a new "
                        "directory)%(default).0s")
    t.add_argument("--runs-dir", default="runs", help="where the run directories go")
    t.add_argument("--resume", type=_existing_path, default=None,
                   help="a run directory (its newest epoch-NNNN.npz) or one of its epoch-NNNN.npz files to continue "
                        "from (default: a fresh run)%(default).0s")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the checkpoints, history and plot of an earlier run of the same --name")
    t.add_argument("--on-nonfinite", choices=("stop", "continue"), default="stop",
                   help="what a NaN or infinite training loss does: stop the run with an error, or train on")
    t.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                   help="0: silent until the result line; 1: a progress bar per epoch (on a terminal; elsewhere as "
                        "2); 2: one line per epoch")
    t.add_argument("--no-progress", dest="verbose", action="store_const", const=2,
                   help="no progress bar: the same as --verbose 2")
    return t


def _splits(name, seed):
    """The (x, y) train, val and test splits of the data set ``name``, as read."""
    from fusednn import data
    if name == "digits":
        splits = [data.digits(s, seed=seed) for s in ("train", "val", "test")]
    elif name.startswith("mnist:"):
        directory = name.split(":", 1)[1]
        train, test = data.mnist(directory, "train"), data.mnist(directory, "test")
        n_val = len(train[0]) // 6
        splits = [(train[0][n_val:], train[1][n_val:]), (train[0][:n_val], train[1][:n_val]), test]
    else:
        x, y = data.xor() if name == "xor" else getattr(data, name)(seed=seed)
        if name == "xor":
            splits = [(x, y)] * 3
        else:
            order = np.random.default_rng(seed).permutation(len(x))
            a, b = int(0.6 * len(x)), int(0.8 * len(x))
            splits = [(x[order[:a]], y[order[:a]]), (x[order[a:b]], y[order[a:b]]), (x[order[b:]], y[order[b:]])]
    return splits


def _load_data(name, seed):
    """The splits standardized with the training split's statistics, and the fitted scaler."""
    from fusednn import data
    splits = _splits(name, seed)
    scaler = data.StandardScaler().fit(splits[0][0])
    return [(scaler.transform(x).astype(np.float32), y) for x, y in splits], scaler


def _optimizer(args, model):
    from fusednn import optim
    groups = model.parameter_groups(weight_decay=args.weight_decay)
    kw = {"max_grad_norm": args.clip_norm}
    o = args.optimizer
    if o in ("sgd", "momentum", "nesterov"):
        return optim.SGD(groups, lr=args.lr, momentum=0.0 if o == "sgd" else args.momentum, nesterov=o == "nesterov",
                         **kw)
    cls = {"adagrad": optim.Adagrad, "rmsprop": optim.RMSprop, "adadelta": optim.Adadelta, "adam": optim.Adam,
           "adamw": optim.AdamW, "nadam": optim.NAdam}[o]
    return cls(groups, lr=args.lr, **kw)


def _schedule(args, steps_per_epoch):
    from fusednn.optim import schedules as s
    total = args.epochs * steps_per_epoch
    warm = int(round(args.warmup_epochs * steps_per_epoch))
    lr, rest = args.lr, max(1, total - warm)
    base = {
        "constant": lambda: s.constant(lr),
        "cosine": lambda: s.cosine(lr, rest),
        "step": lambda: s.step_decay(lr, max(1, rest // 3), 0.1),
        "exponential": lambda: s.exponential(lr, 0.01 ** (1 / rest)),
        "inverse-time": lambda: s.inverse_time(lr, 10.0 / rest),
        "natural-exp": lambda: s.natural_exponential(lr, math.log(100) / rest),
        "cyclic": lambda: s.cyclic(lr / 10, lr, step_size_up=max(1, 2 * steps_per_epoch)),
        "sgdr": lambda: s.cosine_warm_restarts(lr, T_0=max(1, 10 * steps_per_epoch), T_mult=2),
    }[args.schedule]()
    return s.warmup(base, warm) if warm else base


def run(args):
    """Run ``train`` with the parsed ``args``; the exit status."""
    import fusednn
    from fusednn import checkpoint, regularizers, train as fit_mod
    from fusednn.nn.losses import SoftmaxCrossEntropy

    if args.threads:
        fusednn.set_num_threads(args.threads)
    if args.lr is None:
        args.lr = DEFAULT_LR[args.optimizer]
    try:
        ((x_train, y_train), val, test), scaler = _load_data(args.dataset, args.seed)
    except (FileNotFoundError, ValueError) as e:  # MNIST files missing or damaged
        raise UsageError(f"--dataset {args.dataset}: {e}") from None
    classes = int(max(y.max() for _, y in (val, test, (x_train, y_train)))) + 1
    model = models.build(args, x_train.shape[1], classes, IMAGE_SHAPES.get(args.dataset.split(":")[0]))
    transform = None
    if args.augment is not None:
        from fusednn.data import transforms
        if args.dataset.split(":")[0] not in IMAGE_SHAPES:
            raise UsageError(f"--augment: needs an image data set (digits or mnist:<directory>), got {args.dataset}")
        pipeline = transforms.from_string(args.augment, image_shape=IMAGE_SHAPES[args.dataset.split(":")[0]])
        # Augmented images are standardized by one mean and std over all pixels: with per-pixel
        # statistics a stroke moved into a nearly blank border pixel (digits: scale_ down to 0.03)
        # becomes an outlier of hundreds of standard deviations. The transform runs in pixel space.
        raw = [(scaler.inverse_transform(x), y) for x, y in ((x_train, y_train), val, test)]
        mean, std = float(raw[0][0].mean()), float(raw[0][0].std())
        (x_train, y_train), val, test = [(((x - mean) / std).astype(np.float32), y) for x, y in raw]
        transform = transforms.Standardized(pipeline, np.full(x_train.shape[1], mean), np.full(x_train.shape[1], std))
    if args.device != "cpu":
        try:
            model.to(args.device)
        except (ValueError, TypeError) as e:
            raise SystemExit(f"--device {args.device}: {e}") from None
    optimizer = _optimizer(args, model)
    steps_per_epoch = math.ceil(len(x_train) / args.batch_size)
    schedule = _schedule(args, steps_per_epoch)
    loss = SoftmaxCrossEntropy(label_smoothing=args.label_smoothing)
    regularizer, mask = None, None
    if args.l1 or args.l2:
        regularizer = regularizers.ElasticNet(args.l1, args.l2)
        mask = np.zeros(model.params.data.size, bool)
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                mask[model.params.slice_of(name)] = True

    resume = _resume_file(args, model, optimizer) if args.resume else None
    run_dir = _run_dir(args, resume)
    callbacks = [fit_mod.EarlyStopping(monitor="val_loss", patience=args.patience, restore_best=True),
                 fit_mod.Checkpoint(run_dir, every=1, keep=2)]
    print(f"fusednn {fusednn.__version__}: {args.dataset}, {len(x_train)} train / {len(val[0])} val / "
          f"{len(test[0])} test samples, model {model.sizes}, {model.num_parameters()} parameters, "
          f"{type(optimizer).__name__} lr {args.lr}, {args.schedule} schedule, {fusednn.get_num_threads()} threads")
    started = time.perf_counter()
    try:
        history = fit_mod.fit(model, loss, optimizer, (x_train, y_train), val, epochs=args.epochs,
                              batch_size=args.batch_size, schedule=schedule, callbacks=callbacks,
                              regularizer=regularizer, regularizer_mask=mask, seed=args.seed,
                              verbose=args.verbose, resume=resume,
                              on_nonfinite="raise" if args.on_nonfinite == "stop" else "continue",
                              transform=transform)
    except fit_mod.NonFiniteLossError:
        if not os.listdir(run_dir):  # stopped before its first checkpoint: leave no empty run behind
            os.rmdir(run_dir)
        raise
    elapsed = time.perf_counter() - started
    result = fit_mod.evaluate(model, test, loss)
    trained = sum(row.get("samples_per_s", 0) * row.get("time", 0) for row in history.epochs)
    train_time = sum(row.get("time", 0) for row in history.epochs)
    final = os.path.join(run_dir, "final.npz")
    # The restored best weights with the last epoch's optimizer: no trainer state, so not resumable.
    # With the architecture and the scaler: `python -m fusednn predict/evaluate` and fusednn.load read it.
    checkpoint.save(final, model, optimizer, epoch=len(history.epochs), extra={"args": vars(args)},
                    preprocessing=scaler)
    with open(os.path.join(run_dir, "history.json"), "w") as f:
        json.dump(history.epochs, f, indent=1)
    plot = os.path.join(run_dir, "history.png")
    history.name = os.path.basename(run_dir)
    try:
        history.plot(plot)
    except ImportError:
        plot = '(history.png not drawn: matplotlib is not installed; pip install "fusednn[plot]")'
    print(f"test accuracy {result['accuracy']:.2%}, test loss {result['loss']:.4f} | {len(history.epochs)} epochs "
          f"in {elapsed:.1f} s, {trained / max(train_time, 1e-9):,.0f} samples/s | {final} | {plot}")
    return 0


def _resume_file(args, model, optimizer):
    """The checkpoint file that --resume names (the newest of a run directory), checked to be
    a training checkpoint that fits this model, of the same architecture and optimizer."""
    from fusednn import checkpoint
    from fusednn import train as fit_mod
    resume = args.resume
    if os.path.isdir(resume):
        resume = checkpoint.latest(resume)
        if resume is None:
            raise UsageError(f"--resume: no checkpoint (epoch-NNNN.npz) in {args.resume}")
    try:
        ckpt, _ = fit_mod.load_training_checkpoint(resume)
        model.load_state_dict(ckpt.model)  # fit loads it again, with the optimizer
    except checkpoint.CheckpointError as e:
        raise UsageError(f"--resume: {e}") from None
    except (ValueError, TypeError) as e:
        raise UsageError(f"--resume {resume}: the checkpoint does not fit this model (give the --hidden, --norm and "
                         f"--dataset it was trained with): {e}") from None
    _refuse_another_setup(resume, ckpt, model, optimizer)
    return resume


def _optimizer_flag(class_name, group):
    """The --optimizer value of an optimizer class and its first parameter group."""
    if class_name == "SGD":
        return "nesterov" if group.get("nesterov") else "momentum" if group.get("momentum") else "sgd"
    return class_name.lower() if class_name.lower() in OPTIMIZERS else class_name


def _refuse_another_setup(resume, ckpt, model, optimizer):
    """UsageError when the checkpoint was trained with another optimizer or architecture (of
    the same parameter shapes) than the flags give now; checkpoints that do not record them
    (older files) pass."""
    from fusednn import serialize
    if ckpt.optimizer_class is not None and ckpt.optimizer and ckpt.optimizer.get("param_groups"):
        saved = _optimizer_flag(ckpt.optimizer_class, ckpt.optimizer["param_groups"][0])
        wanted = _optimizer_flag(type(optimizer).__name__, optimizer.param_groups[0])
        if saved != wanted:
            raise UsageError(f"--resume {resume}: the checkpoint was trained with --optimizer {saved}, not {wanted}; "
                             f"resume with --optimizer {saved}, or start a new run")
    if ckpt.architecture is not None:
        try:
            difference = serialize.architecture_difference(serialize.build(ckpt.architecture), model)
        except (TypeError, ValueError) as e:
            raise UsageError(f"--resume {resume}: the checkpoint's architecture cannot be built: {e}") from None
        if difference:
            raise UsageError(f"--resume {resume}: the checkpoint's model differs from the one these flags build "
                             f"(checkpoint vs flags: {difference}); give the --model, --activation, --norm and "
                             "--dropout flags it was trained with")


_RUN_FILES = re.compile(r"epoch-\d+\.npz|final\.npz|history\.json|history\.png")


def _run_dir(args, resume):
    """The run's directory: a new one for a default name (an exclusive mkdir, so two runs
    started at once never share one); for --name, an empty or new one, unless --overwrite
    (the earlier run's files are deleted) or --resume from a checkpoint in it (the run goes on)."""
    if args.name is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
        base = os.path.join(args.runs_dir, f"{args.dataset.split(':')[0]}-{args.optimizer}-{stamp}")
        os.makedirs(args.runs_dir, exist_ok=True)
        for k in itertools.count():
            run_dir = base if k == 0 else f"{base}-{k}"
            try:
                os.mkdir(run_dir)
                return run_dir
            except FileExistsError:
                continue
    run_dir = os.path.join(args.runs_dir, args.name)
    os.makedirs(run_dir, exist_ok=True)
    files = sorted(os.listdir(run_dir))
    if not files:
        return run_dir
    if args.overwrite:
        for name in files:
            if _RUN_FILES.fullmatch(name):
                os.remove(os.path.join(run_dir, name))
        return run_dir
    if resume is not None and os.path.samefile(os.path.dirname(os.path.abspath(resume)), run_dir):
        from fusednn import checkpoint
        later = [os.path.basename(f) for f in checkpoint.epoch_files(run_dir)
                 if int(os.path.basename(f)[6:-4]) > checkpoint.load(resume).epoch]
        if later:
            raise UsageError(f"--resume {resume}: {run_dir} holds later checkpoints ({', '.join(later)}); resume from "
                             "the newest, or continue under another --name")
        return run_dir
    raise UsageError(f"--name {args.name}: {run_dir} already holds a run ({', '.join(files[:4])}"
                     f"{', ...' if len(files) > 4 else ''}); pass --overwrite to replace it, --resume {run_dir} to "
                     "continue it, or another --name")
