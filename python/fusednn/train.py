"""Mini-batch training: :func:`fit`, :func:`evaluate`, :class:`History` and callbacks.

``fit`` runs epochs of mini-batch steps over ``(x, y)`` arrays. Epochs are numbered from 1
(history rows, callbacks, checkpoint files); epoch ``e`` takes its batches from
:func:`fusednn.data.batches` with ``epoch=e`` (the order ``np.random.default_rng([seed, e])
.permutation(n)``), so a resumed run sees the same batches. A NaN or infinite training loss
stops training with :class:`NonFiniteLossError` (``on_nonfinite="continue"`` trains on).
One step: ``model.zero_grad()`` (left out for a :class:`fusednn.nn.Module` without a
regularizer: its backward overwrites the gradients), ``out = model.forward(xb, training=True)``,
``loss.value_and_grad``, ``model.backward``, optionally ``regularizer.add_grad(params.data, params.grad, mask)``, the
learning rate from the schedule, ``optimizer.step()``.

Learning rate. With ``schedule`` (a callable step -> lr, e.g. from :mod:`fusednn.optim.schedules`)
every parameter group's lr is set to ``schedule(t)`` before each step, where ``t`` counts the
updates done so far (``schedule_unit="iteration"``) or the epochs done so far (``"epoch"``).
:class:`ReduceLROnPlateau` then multiplies the schedule's value: the lr is
``max(schedule(t) * factor ** reductions, min_lr)``. Without a schedule it multiplies each
group's lr in place, as torch's ReduceLROnPlateau does.

Resume. A checkpoint (:class:`Checkpoint` callback, or ``fit(checkpoint=dir)``) holds the model,
the optimizer, the dropout RNG, the epoch and step counts, the history and every callback's
``state_dict()``. ``fit(..., resume=path_or_dir)`` restores all of it and continues with the next
epoch, so a run killed at any moment and resumed from its last checkpoint ends with the same
parameters, bit for bit, as one that was never interrupted (given the same arguments, data and
thread count).
"""

import math
import os
import sys
import time

import numpy as np

from fusednn import _checks
from fusednn import checkpoint as _ckpt
from fusednn import data as _data
from fusednn._backend import device_module, to_host
from fusednn.nn.module import Module
from fusednn.optim import schedules as _schedules

__all__ = ["fit", "evaluate", "History", "Trainer", "Callback", "EarlyStopping", "ReduceLROnPlateau", "Checkpoint",
           "NonFiniteLossError", "load_training_checkpoint", "accuracy"]


class NonFiniteLossError(FloatingPointError):
    """The training loss of a batch was NaN or infinite (``fit(on_nonfinite="raise")``). The
    attributes ``epoch``, ``batch`` (within the epoch, from 0), ``step`` (updates done before
    it) and ``loss`` say where; the model holds the parameters that gave that loss (the batch's
    update was not applied)."""

    def __init__(self, epoch, batch, step, loss):
        self.epoch, self.batch, self.step, self.loss = epoch, batch, step, loss
        super().__init__(f"the training loss is {loss} at epoch {epoch}, batch {batch} (after {step} updates): "
                         "training diverged (a learning rate too large?); fit(on_nonfinite='continue') trains on")


# ---- helpers


def _mode(monitor, mode):
    """"min" or "max"; "auto" is "max" for accuracies and "min" otherwise."""
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    if mode not in ("min", "max"):
        raise ValueError(f"mode: expected 'auto', 'min' or 'max', got {mode!r}")
    return mode


def _monitored(who, logs, monitor):
    if monitor not in logs:
        raise KeyError(f"{who}: {monitor!r} is not in the epoch's logs {sorted(logs)} (val_* needs val_data)")
    return logs[monitor]


def _count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _model_dtype(model):
    """The model's float dtype (``model.dtype``, else its flat parameters'), or None."""
    dtype = getattr(model, "dtype", None)
    if dtype is None:
        dtype = getattr(getattr(getattr(model, "params", None), "data", None), "dtype", None)
    return None if dtype is None else np.dtype(dtype)


def _pair(name, data, dtype=None):
    """``(x, y)`` as NumPy arrays. Floating-point x (and floating-point y: regression targets)
    of another dtype than the model's ``dtype`` are cast to it (float64, NumPy's and
    scikit-learn's default, to a float32 model); integer, boolean or other x, and lists, are a
    TypeError that says how to convert."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name}: expected an (x, y) pair of arrays, got {type(data).__name__}")
    arrays = []
    for part, value in zip("xy", data):
        if isinstance(value, (list, tuple)):
            convert = "np.asarray(x, dtype=np.float32)" if part == "x" else "np.asarray(y)"
            raise TypeError(f"{name}: expected {part} as a numpy.ndarray, got a {type(value).__name__}; convert it "
                            f"with {convert}")
        arrays.append(np.asarray(value))
    x, y = arrays
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{name}: expected x and y with the same number (> 0) of samples along axis 0, got shapes "
                         f"{x.shape} and {y.shape}")
    if dtype is not None:
        if x.dtype.kind != "f":
            raise TypeError(f"{name}: expected floating-point x, got dtype {x.dtype}; convert it with "
                            f"x.astype(np.{dtype}) (scaled as the model expects)")
        if x.dtype != dtype:
            x = x.astype(dtype)
        if y.dtype.kind == "f" and y.dtype != dtype:
            y = y.astype(dtype)
    return x, y


def accuracy(output, target):
    """The fraction of rows whose argmax is the integer label; None (skipped) unless the output
    is 2-D and the targets are 1-D integers (e.g. regression)."""
    if type(output) is not np.ndarray or type(target) is not np.ndarray:
        output, target = to_host(output), np.asarray(to_host(target))
    if output.ndim != 2 or target.ndim != 1 or target.dtype.kind not in "iu":
        return None
    if len(target) == 0:
        return math.nan
    return np.count_nonzero(output.argmax(axis=1) == target) / len(target)


def _to_model(model, *arrays):
    """The batch arrays on the model's device (CuPy copies for a model moved to "cuda")."""
    device = getattr(model, "device", "cpu")
    if device == "cpu":
        return arrays
    xp = device_module(device)
    return tuple(xp.asarray(a) for a in arrays)


def _metric_fns(metrics):
    """name -> fn(output, target) -> float or None, from names ("accuracy") and callables."""
    fns = {}
    for m in metrics:
        if m == "accuracy":
            fns[m] = accuracy
        elif callable(m):
            fns[getattr(m, "__name__", "metric")] = m
        else:
            raise ValueError(f"metrics: expected 'accuracy' or callables (output, target) -> float, got {m!r}")
    return fns


class _Mean:
    """Sample-weighted means of per-batch values (None values are skipped)."""

    def __init__(self):
        self.sums, self.counts = {}, {}

    def add(self, n, values):
        for k, v in values.items():
            if v is not None:
                self.sums[k] = self.sums.get(k, 0.0) + n * float(v)
                self.counts[k] = self.counts.get(k, 0) + n

    def result(self):
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


def _describe(row):
    """The values of an epoch's row: "loss 0.1234 - accuracy 0.95 - lr 0.001 - 0.52 s -
    3.1e+04 samples/s" (no epoch)."""
    parts = []
    for k, v in row.items():
        if k == "time":
            parts.append(f"{v:.2f} s")
        elif k == "samples_per_s":
            parts.append(f"{v:.3g} samples/s")
        elif k != "epoch":
            parts.append(f"{k} {v:.4g}")
    return " - ".join(parts)


def _verbosity(verbose, progress):
    """fit's verbosity 0, 1 or 2 from ``verbose`` and its older spelling ``progress``."""
    if progress is not None:
        if verbose is not None:
            raise TypeError("fit: give verbose only (progress=True/False is its older spelling: verbose=1/0)")
        return 1 if _checks.flag("progress", progress) else 0
    if verbose is None:
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose: expected 0 (silent), 1 (a progress bar) or 2 (one line per epoch), got {verbose!r}")
    return int(verbose)


class _Output:
    """What fit prints to ``stream`` (sys.stdout when fit starts), by verbosity: 0 nothing;
    2 one line per epoch, "epoch 3/60: loss 0.1234 - ..."; 1 the same lines, and while an
    epoch runs a transient tqdm bar (batches done, running loss and metrics) that the
    epoch's line replaces. A bar needs a terminal: when the stream is not one (a file, a pipe,
    a notebook's captured output) or tqdm is missing, 1 prints the lines of 2 only.
    Messages (early stopping's) are lines too, printed at verbosity 1 and 2."""

    def __init__(self, verbose, epochs, stream):
        self.verbose, self.epochs, self.stream, self.bar, self.tqdm = verbose, epochs, stream, None, None
        if verbose == 1 and _isatty(stream):
            try:
                from tqdm import tqdm
                self.tqdm = tqdm
            except ImportError:
                pass

    def start(self, epoch, batches):
        if self.tqdm is not None:
            self.bar = self.tqdm(total=batches, desc=f"epoch {epoch}/{self.epochs}", unit="batch", file=self.stream,
                                 leave=False, dynamic_ncols=True)

    def batch(self, logs):
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()}, refresh=False)
            self.bar.update()

    def abort(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def end(self, row):
        self.abort()  # the bar goes; the epoch's line takes its place
        self.message(f"epoch {row['epoch']}/{self.epochs}: {_describe(row)}")

    def message(self, text):
        if self.verbose:
            print(text, file=self.stream, flush=True)


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


# ---- evaluation and history


def evaluate(model, data, loss=None, batch_size=1024, metrics=("accuracy",)):
    """Mean loss (when ``loss`` is given) and metrics of ``model`` on ``data = (x, y)`` in eval
    mode (the previous mode is restored); a dict such as ``{"loss": ..., "accuracy": ...}``.
    ``data`` is cast to the model's dtype as :func:`fit`'s train_data."""
    x, y = _pair("data", data, _model_dtype(model))
    batch_size = _count("batch_size", batch_size, 1)
    fns = _metric_fns(metrics)
    was_training = model.training
    model.eval()
    mean = _Mean()
    try:
        for start in range(0, len(x), batch_size):
            xb, yb = _to_model(model, x[start:start + batch_size], y[start:start + batch_size])
            out = model.forward(xb)
            values = {} if loss is None else {"loss": loss(out, yb)}
            values.update({name: fn(out, yb) for name, fn in fns.items()})
            mean.add(len(xb), values)
    finally:
        if was_training:
            model.train()
    return mean.result()


class History:
    """What :func:`fit` returns: ``epochs``, one dict per epoch with ``epoch`` (from 1),
    ``loss`` and the metrics (means over the epoch's batches, weighted by batch size),
    ``penalty`` (with a regularizer), ``lr`` (group 0's, at the epoch's last step),
    ``val_loss`` and ``val_<metric>`` (with val_data), ``time`` (seconds, validation included)
    and ``samples_per_s`` (training only). ``history["val_loss"]`` lists one key over epochs.
    ``restored_epoch``: the epoch whose weights :class:`EarlyStopping` loaded back at the end
    (None if none); ``stopped_epoch``: the epoch after which it stopped training (None if it
    did not); ``name``: a title for :meth:`plot` (the CLI sets the run name)."""

    def __init__(self, epochs=(), *, name=None, restored_epoch=None, stopped_epoch=None):
        self.epochs = [dict(row) for row in epochs]
        self.name, self.restored_epoch, self.stopped_epoch = name, restored_epoch, stopped_epoch

    def __len__(self):
        return len(self.epochs)

    def __getitem__(self, key):
        if not any(key in row for row in self.epochs):
            raise KeyError(f"{key!r}: not recorded; keys: {sorted({k for row in self.epochs for k in row})}")
        return [row.get(key) for row in self.epochs]

    def __repr__(self):
        return f"History({len(self)} epochs)"

    def best(self, monitor="val_loss", mode="auto"):
        """The row of the best epoch by ``monitor`` (the first one on ties; NaN never wins)."""
        sign = 1.0 if _mode(monitor, mode) == "min" else -1.0
        rows = [row for row in self.epochs if row.get(monitor) is not None and not math.isnan(row[monitor])]
        if not rows:
            raise ValueError(f"monitor: no epoch recorded a number for {monitor!r}")
        return min(rows, key=lambda row: sign * row[monitor])

    def plot(self, path=None, *, title=None, log_scale=False):
        """Draw the history with matplotlib (``pip install "fusednn[plot]"``): one panel per
        quantity, loss (train and validation), accuracy (when recorded) and the learning rate,
        over epochs; save to ``path`` (format from its extension) when given; return the Figure
        (no pyplot state involved).

        ``title``: the figure's title (default: ``self.name``). ``log_scale``: a logarithmic
        y axis for the loss and learning-rate panels. The epoch that :class:`EarlyStopping`
        restored is marked (a dotted line and a star on the validation curve). Epochs whose
        value is NaN or infinite cannot be drawn: a red dashed line marks the first one, and
        the panel says "loss NaN from epoch 3" (a run that diverged at once shows that text,
        not an empty panel)."""
        try:
            from matplotlib.figure import Figure
        except ImportError as err:
            raise ImportError('History.plot needs matplotlib: pip install "fusednn[plot]" (or pip install '
                              "matplotlib)") from err
        keys = [k for k in ("loss", "accuracy", "lr") if any(k in row for row in self.epochs)]
        if not keys:
            raise ValueError("History.plot: nothing to plot (no epochs with a loss, accuracy or lr)")
        fig = Figure(figsize=(4.5 * len(keys), 4), layout="constrained")
        title = self.name if title is None else title
        if title:
            fig.suptitle(str(title))
        for ax, key in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys):
            series = ((key, "learning rate"),) if key == "lr" else ((key, "train"), (f"val_{key}", "validation"))
            notes = []
            for name, label in series:
                points = [(row["epoch"], row[name]) for row in self.epochs if row.get(name) is not None]
                finite = [(e, v) for e, v in points if math.isfinite(v)]
                if finite:
                    ax.plot(*zip(*finite), marker="o", markersize=3, label=label)
                bad = [(e, v) for e, v in points if not math.isfinite(v)]
                if bad:
                    e, v = bad[0]
                    what = "NaN" if math.isnan(v) else f"{v}"
                    ax.axvline(e, color="red", linestyle="--", label=f"{name} {what} from epoch {e}")
                    notes.append(f"{name} {what} from epoch {e}")
                if name == f"val_{key}" and self.restored_epoch is not None:
                    restored = [v for e, v in finite if e == self.restored_epoch]
                    if restored:
                        ax.plot([self.restored_epoch], restored, marker="*", markersize=12, color="black",
                                linestyle="none")
            if self.restored_epoch is not None:
                ax.axvline(self.restored_epoch, color="gray", linestyle=":",
                           label=f"restored epoch {self.restored_epoch}")
            if notes:
                ax.text(0.5, 0.5, "\n".join(notes), transform=ax.transAxes, ha="center", va="center", color="red")
            if log_scale and key in ("loss", "lr"):
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel(key)
            ax.set_title("learning rate" if key == "lr" else key)
            ax.legend(fontsize="small")
        if path is not None:
            fig.savefig(path)
        return fig


# ---- callbacks


class Callback:
    """Base class of fit's callbacks: override the hooks you need. Each receives the
    :class:`Trainer`; set ``trainer.stop_training = True`` to stop after the current batch.
    ``epoch`` is the epoch number (from 1), ``batch`` the batch index within the epoch (from 0);
    ``logs`` is the batch's values (loss, metrics, lr, batch_size) or the epoch's history row
    (callbacks may add entries to it). ``state_dict()`` (JSON-able values and arrays) is saved
    in checkpoints and handed back to ``load_state_dict`` on resume, after ``on_train_begin``."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_begin(self, trainer, epoch):
        pass

    def on_batch_end(self, trainer, batch, logs):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_train_end(self, trainer):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs. With ``restore_best`` the model's state_dict at the best epoch is copied and loaded
    back at the end of training, whether or not training stopped early. ``mode``: "min",
    "max" or "auto" ("max" for accuracies)."""

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto", restore_best=True):
        self.monitor, self.mode, self.restore_best = monitor, _mode(monitor, mode), restore_best
        self.patience = _count("patience", patience, 0)
        self.min_delta = abs(float(min_delta))
        self.on_train_begin(None)

    def on_train_begin(self, trainer):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch, self.wait, self.best_state = None, 0, None

    def on_epoch_end(self, trainer, epoch, logs):
        value = float(_monitored("EarlyStopping", logs, self.monitor))
        if (value < self.best - self.min_delta) if self.mode == "min" else (value > self.best + self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best:
                self.best_state = {k: np.array(v, copy=True) for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True

    def on_train_end(self, trainer):
        """Load the best epoch's weights back (with ``restore_best``), record the stopping and
        restored epochs in the history, and say what happened (``self.summary``, also printed
        by fit at verbosity 1 and 2), e.g. "early stopping: stopped at epoch 37 (no val_loss
        improvement for 15 epochs); restored epoch 22 (val_loss 0.0696)"."""
        stopped = trainer.epoch if trainer.stop_training and self.wait >= self.patience else None
        restored = self.best_epoch if self.best_state is not None else None
        if restored is not None:
            trainer.model.load_state_dict(self.best_state)
        trainer.history.stopped_epoch, trainer.history.restored_epoch = stopped, restored
        if stopped is not None:
            done = (f"stopped at epoch {stopped} (no {self.monitor} improvement for {self.patience} "
                    f"epoch{'s' if self.patience != 1 else ''})")
        else:
            done = f"ran to epoch {trainer.epoch} without stopping"
        if self.best_epoch is None:
            result = f"no epoch recorded a better {self.monitor}"
        elif restored is not None:
            result = f"restored epoch {restored} ({self.monitor} {self.best:.4g})"
        else:
            result = f"best epoch {self.best_epoch} ({self.monitor} {self.best:.4g}), not restored"
        self.summary = f"early stopping: {done}; {result}"
        trainer.log(self.summary)

    def state_dict(self):
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_state": self.best_state}

    def load_state_dict(self, state):
        self.best, self.best_epoch, self.wait = float(state["best"]), state["best_epoch"], int(state["wait"])
        self.best_state = state["best_state"]


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stalls, by the rules (and
    bookkeeping) of :class:`fusednn.optim.schedules.ReduceLROnPlateau`, i.e. torch's: more than
    ``patience`` epochs without an improvement beyond ``threshold`` ("rel" or "abs"), then
    ``cooldown`` epochs that are not counted. The lr never goes below ``min_lr``. With a fit
    schedule the factor multiplies the schedule's value; without one, each group's lr."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel", cooldown=0,
                 min_lr=0.0, mode="auto"):
        if not float(min_lr) >= 0:
            raise ValueError(f"min_lr: expected a number >= 0, got {min_lr!r}")
        self.monitor, self.min_lr = monitor, float(min_lr)
        self._args = dict(mode=_mode(monitor, mode), factor=factor, patience=patience, threshold=threshold,
                          threshold_mode=threshold_mode, cooldown=cooldown)
        self.on_train_begin(None)  # checks the arguments now

    def on_train_begin(self, trainer):
        # the plateau schedule of a multiplier (1.0 times its scale); its scale changes when it reduces
        self.plateau = _schedules.ReduceLROnPlateau(**self._args, eps=0.0)

    def on_epoch_end(self, trainer, epoch, logs):
        scale = self.plateau.scale
        self.plateau.step(_monitored("ReduceLROnPlateau", logs, self.monitor))
        if self.plateau.scale != scale:
            trainer.reduce_lr(self.plateau.factor, self.min_lr)

    def state_dict(self):
        return self.plateau.state_dict()

    def load_state_dict(self, state):
        self.plateau.load_state_dict(state)


class Checkpoint(Callback):
    """Save the training state (see :meth:`Trainer.save`) every ``every`` epochs and after the
    last one. ``path``: a directory, holding ``epoch-0005.npz`` etc. of which the newest
    ``keep`` stay (None: all), or a file name ending in ``.npz``, rewritten each time.
    fit runs Checkpoint callbacks after the others, so they save the others' updated state."""

    def __init__(self, path, every=1, keep=3):
        self.path = os.fspath(path)
        self.every = _count("every", every, 1)
        self.keep = None if keep is None else _count("keep", keep, 1)

    def on_train_begin(self, trainer):
        """A directory must not hold checkpoints of epochs after the one training starts from:
        they belong to another run (or to a later point of this one), and mixing them would
        make ``keep`` delete this run's newest files and ``latest`` find the other run's."""
        if self.path.endswith(".npz") or not os.path.isdir(self.path):
            return
        later = [os.path.basename(f) for f in _ckpt.epoch_files(self.path)
                 if int(os.path.basename(f)[6:-4]) > trainer.epoch]
        if later:
            where = "a fresh run" if trainer.epoch == 0 else f"a run resumed at epoch {trainer.epoch}"
            raise ValueError(f"Checkpoint: {self.path} already holds {', '.join(later)}, which {where} would mix "
                             "with its own; checkpoint into another directory, resume from the newest, or delete "
                             "them")

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch % self.every and not (trainer.stop_training or epoch >= trainer.epochs):
            return
        if self.path.endswith(".npz"):
            trainer.save(self.path)
            return
        os.makedirs(self.path, exist_ok=True)
        trainer.save(_ckpt.epoch_path(self.path, epoch))
        for old in _ckpt.epoch_files(self.path)[:-self.keep] if self.keep else ():
            os.remove(old)


# ---- the loop


def load_training_checkpoint(path):
    """``(checkpoint, trainer_state)`` of a checkpoint written by :meth:`Trainer.save` (the
    Checkpoint callback's files), which ``fit(resume=...)`` continues from. A checkpoint without
    the trainer's state (one written by :func:`fusednn.checkpoint.save` directly, such as the
    CLI's ``final.npz``) is a CheckpointError that names the newest training checkpoint in its
    directory; so is a trainer state of the wrong structure."""
    ckpt = _ckpt.load(path)
    state = ckpt.extra.get("trainer")
    if state is None:
        newest = _ckpt.latest(os.path.dirname(os.path.abspath(path)))
        hint = (f"resume from {newest} (or its directory)" if newest else
                "resume from an epoch-NNNN.npz file written by fit's Checkpoint callback")
        raise _ckpt.CheckpointError(f"{path}: not a training checkpoint (it holds no trainer state: epoch, step "
                                    f"and schedule counts, history, callbacks); {hint}")
    try:
        parsed = {"history": [dict(row) for row in state["history"]], "lr_scale": float(state["lr_scale"]),
                  "min_lr": float(state["min_lr"]), "stop_training": state["stop_training"],
                  "callbacks": [(str(name), cb_state) for name, cb_state in state["callbacks"]]}
        if type(parsed["stop_training"]) is not bool:
            raise TypeError(f"stop_training: expected a bool, got {parsed['stop_training']!r}")
    except (KeyError, TypeError, ValueError) as err:
        raise _ckpt.CheckpointError(f"{path}: damaged trainer state: {type(err).__name__}: {err}") from None
    return ckpt, parsed



class Trainer:
    """The state of one :func:`fit` call, as callbacks see it: ``model``, ``loss``,
    ``optimizer``, ``history``, ``epochs`` (the total), ``epoch`` (the current or last finished
    epoch's number), ``global_step`` (updates done), ``stop_training``, ``lr``."""

    def __init__(self, model, loss, optimizer, *, epochs, schedule, schedule_unit, callbacks):
        self.model, self.loss, self.optimizer, self.epochs = model, loss, optimizer, epochs
        self.schedule, self.schedule_unit, self.callbacks = schedule, schedule_unit, callbacks
        self.history = History()
        self.epoch = self.global_step = 0
        self.stop_training = False
        self.lr_scale, self.min_lr = 1.0, 0.0  # what ReduceLROnPlateau did to the schedule
        self.output = None  # fit's printer (verbosity), for log()

    def log(self, text):
        """Print a line of the callbacks' (early stopping's summary) as fit prints its epoch
        lines: at verbosity 1 and 2, not at 0."""
        if self.output is not None:
            self.output.message(text)

    @property
    def lr(self):
        """Parameter group 0's learning rate for the next update."""
        lr = self.optimizer.param_groups[0]["lr"]
        return float(lr(self.optimizer.step_count) if callable(lr) else lr)

    def apply_schedule(self):
        """Set every group's lr to ``max(schedule(t) * lr_scale, min_lr)``, ``t`` the updates done
        (schedule_unit "iteration") or the epochs done before the current one ("epoch")."""
        lr = self.schedule(self.global_step if self.schedule_unit == "iteration" else self.epoch - 1) * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = max(lr, self.min_lr)

    def reduce_lr(self, factor, min_lr=0.0, eps=1e-8):
        """Multiply the learning rate by ``factor``, not below ``min_lr``: the schedule's scale
        when there is a schedule, else each group's lr (a change of at most ``eps`` is skipped,
        as in torch)."""
        if self.schedule is not None:
            self.lr_scale *= factor
            self.min_lr = min_lr
            return
        for i, group in enumerate(self.optimizer.param_groups):
            if callable(group["lr"]):
                raise TypeError(f"optimizer.param_groups[{i}]['lr'] is a schedule; pass it as fit(schedule=...) "
                                "for ReduceLROnPlateau to scale it")
            new = max(group["lr"] * factor, min_lr)
            if group["lr"] - new > eps:
                group["lr"] = new

    def save(self, path):
        """Checkpoint the model, optimizer, RNG, epoch and step counts, history, lr scale and
        every callback's state to ``path`` (atomically; see :mod:`fusednn.checkpoint`)."""
        state = {"history": self.history.epochs, "lr_scale": self.lr_scale, "min_lr": self.min_lr,
                 "stop_training": self.stop_training,
                 "callbacks": [[type(cb).__name__, cb.state_dict()] for cb in self.callbacks]}
        schedule_step = self.global_step if self.schedule_unit == "iteration" else self.epoch
        return _ckpt.save(path, self.model, self.optimizer, epoch=self.epoch, step=self.global_step,
                          schedule_step=schedule_step, extra={"trainer": state})

    def restore(self, path):
        """Load a checkpoint written by :meth:`save` into the model, optimizer and this trainer;
        return the callbacks' saved states (``[[class name, state], ...]``). See
        :func:`load_training_checkpoint` for what is refused."""
        ckpt, state = load_training_checkpoint(path)
        _ckpt.restore(ckpt, self.model, self.optimizer)
        self.epoch, self.global_step = ckpt.epoch, ckpt.step
        self.history = History(state["history"])
        self.lr_scale, self.min_lr, self.stop_training = state["lr_scale"], state["min_lr"], state["stop_training"]
        return state["callbacks"]

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)


def _resume_path(resume, callbacks):
    """The checkpoint file to resume from, or None for a fresh start."""
    if resume is None:
        return None
    path = os.fspath(resume)
    if os.path.isdir(path):
        return _ckpt.latest(path)  # None when the directory has no checkpoints yet
    if os.path.exists(path):
        return path
    own = {os.path.abspath(cb.path) for cb in callbacks if isinstance(cb, Checkpoint)}
    if os.path.abspath(path) in own:  # checkpoint=d, resume=d: the run's first start
        return None
    raise FileNotFoundError(f"resume: there is no checkpoint file or directory {path!r} (a path that does not "
                            "exist yet starts a fresh run only when it is also where the run checkpoints)")


def fit(model, loss, optimizer, train_data, val_data=None, *, epochs=10, batch_size=32, schedule=None,
        schedule_unit="iteration", callbacks=(), regularizer=None, regularizer_mask=None, seed=0, shuffle=True,
        verbose=None, progress=None, checkpoint=None, resume=None, metrics=("accuracy",), on_nonfinite="raise",
        transform=None):
    """Train ``model`` on ``train_data = (x, y)`` for ``epochs`` epochs; return the :class:`History`.

    Args:
        model, loss, optimizer: see the module docstring; the optimizer updates ``model.params``.
        train_data: ``(x, y)``, NumPy arrays (or objects NumPy converts, such as a DataFrame;
            a Python list is a TypeError that says how to convert it). Floating-point x (and a
            floating-point y: regression targets) of another dtype than the model's is cast to
            the model's dtype once, before training: float64 data (NumPy's and scikit-learn's
            default) trains a float32 model. Integer or boolean x is a TypeError (convert and
            scale it yourself: ``x.astype(np.float32)``).
        val_data: ``(x, y)`` evaluated after each epoch (``val_loss``, ``val_accuracy``), cast
            as train_data.
        batch_size: samples per update (the last batch of an epoch may be smaller);
            ``len(x)`` gives batch gradient descent, 1 stochastic gradient descent.
        schedule, schedule_unit: a callable step -> lr, applied per "iteration" or "epoch".
        callbacks: :class:`Callback` objects, called in order (Checkpoint ones last).
        regularizer, regularizer_mask: an object whose ``add_grad(params, grads, mask)`` adds the
            penalty's gradient to ``model.params.grad`` and returns the penalty (logged as
            ``penalty``; ``loss`` stays the data loss, comparable with ``val_loss``).
        seed, shuffle: the batches of epoch ``e`` are those of
            ``fusednn.data.batches(x, y, batch_size, shuffle=shuffle, seed=seed, epoch=e)``.
        verbose: what is printed to sys.stdout, as Keras' ``verbose``: 0 nothing; 1 (default) a
            progress bar while each epoch runs, replaced by the epoch's line when it ends; 2 one
            line per epoch, "epoch 3/60: loss 0.1234 - accuracy 0.9512 - val_loss ... - lr
            0.003 - 0.52 s - 3.1e+04 samples/s". When stdout is not a terminal (a file, a pipe)
            or tqdm is missing, 1 prints the lines of 2 only. Both also print early stopping's
            summary line.
        progress: the older spelling of verbose: True is verbose=1, False verbose=0 (give one
            of the two).
        checkpoint: a directory or ``.npz`` path, short for ``callbacks=[..., Checkpoint(path)]``.
        resume: a checkpoint file to continue from (written by the Checkpoint callback or
            :meth:`Trainer.save`; any file name), or a directory: its newest ``epoch-*.npz``, or
            a fresh start when it has none. A path that does not exist is a FileNotFoundError,
            except the run's own checkpoint path (so that ``checkpoint=d, resume=d`` both
            starts and resumes a run).
        metrics: "accuracy" (skipped for non-classification targets) and callables
            ``(output, target) -> float``, named by their ``__name__``; a training batch's are
            computed on its output after the step's update (which leaves the output as it was).
        on_nonfinite: "raise" (default): a NaN or infinite training loss stops training with a
            :class:`NonFiniteLossError` before that batch's update; "continue": train on.
        transform: a callable ``transform(xb, seed=s, offset=t)`` (e.g. a
            :class:`fusednn.data.transforms.Compose`) applied to every training batch, never to
            val_data: ``t`` is the global step (updates done before the batch) and ``s`` is
            ``seed ^ 0x9E3779B97F4A7C15`` (not the model's dropout stream), so a resumed run
            augments its batches exactly as an uninterrupted one.
    """
    dtype = _model_dtype(model)
    x, y = _pair("train_data", train_data, dtype)
    val = None if val_data is None else _pair("val_data", val_data, dtype)
    verbose = _verbosity(verbose, progress)
    epochs = _count("epochs", epochs, 0)
    batch_size = _count("batch_size", batch_size, 1)
    if schedule_unit not in ("iteration", "epoch"):
        raise ValueError(f"schedule_unit: expected 'iteration' or 'epoch', got {schedule_unit!r}")
    if on_nonfinite not in ("raise", "continue"):
        raise ValueError(f"on_nonfinite: expected 'raise' or 'continue', got {on_nonfinite!r}")
    fns = _metric_fns(metrics)
    if transform is not None and not callable(transform):
        raise TypeError(f"transform: expected a callable transform(x, seed=, offset=), got {type(transform).__name__}")
    callbacks = list(callbacks) + ([] if checkpoint is None else [Checkpoint(checkpoint)])
    callbacks.sort(key=lambda cb: isinstance(cb, Checkpoint))  # stable: the others keep their order
    batches = _data.num_batches(len(x), batch_size)
    _data.batches(x, y, batch_size, shuffle=shuffle, seed=seed)  # checks the arguments before any work
    trainer = Trainer(model, loss, optimizer, epochs=epochs, schedule=schedule, schedule_unit=schedule_unit,
                      callbacks=callbacks)
    bar = trainer.output = _Output(verbose, epochs, sys.stdout)
    resume = _resume_path(resume, callbacks)
    saved_states = trainer.restore(resume) if resume is not None else []
    trainer._call("on_train_begin")
    for cb, (name, state) in zip(callbacks, saved_states):
        if type(cb).__name__ == name:
            cb.load_state_dict(state)

    device_mask = None if regularizer_mask is None else _to_model(model, regularizer_mask)[0]
    # A fusednn Module's backward overwrites every gradient (its contract), so its step needs no
    # zero_grad (a pass over 4 or 8 bytes per parameter); other models get one, and so does a step
    # with a regularizer, which adds to the gradients (a parameter that backward leaves alone would
    # collect the penalty's gradient step after step).
    zero_grad = not isinstance(model, Module) or regularizer is not None
    while trainer.epoch < epochs and not trainer.stop_training:
        trainer.epoch += 1
        epoch = trainer.epoch
        trainer._call("on_epoch_begin", epoch)
        start = time.perf_counter()
        model.train()
        bar.start(epoch, batches)
        mean = _Mean()
        try:
            for b, (xb, yb) in enumerate(_data.batches(x, y, batch_size, shuffle=shuffle, seed=seed, epoch=epoch)):
                xb, yb = _to_model(model, xb, yb)
                if transform is not None:
                    xb = transform(xb, seed=int(seed) ^ 0x9E3779B97F4A7C15, offset=trainer.global_step)
                if schedule is not None:
                    trainer.apply_schedule()
                if zero_grad:
                    model.zero_grad()
                out = model.forward(xb, training=True)
                value, d_out = loss.value_and_grad(out, yb)
                value = float(value)
                if on_nonfinite == "raise" and not math.isfinite(value):
                    raise NonFiniteLossError(epoch, b, trainer.global_step, value)
                model.backward(d_out)
                penalty = None if regularizer is None else float(
                    regularizer.add_grad(model.params.data, model.params.grad, device_mask))
                lr = trainer.lr
                optimizer.step()
                trainer.global_step += 1
                # The step's bookkeeping comes after its kernels (backward and the update leave the
                # output as it was), so that no Python runs between them: the thread pool's idle
                # workers spin only briefly before they sleep.
                logs = {"loss": value}
                for name, fn in fns.items():
                    v = fn(out, yb)
                    if v is not None:
                        logs[name] = v
                if penalty is not None:
                    logs["penalty"] = penalty
                n = len(yb)
                mean.add(n, logs)
                logs["lr"] = lr
                if bar.bar is not None:
                    bar.batch({**mean.result(), "lr": lr})
                logs["batch_size"] = n
                trainer._call("on_batch_end", b, logs)
                if trainer.stop_training:
                    break
        except BaseException:
            bar.abort()
            raise
        train_time = time.perf_counter() - start
        row = {"epoch": epoch, **mean.result(), "lr": logs["lr"]}
        if val is not None:
            row.update({f"val_{k}": v for k, v in evaluate(model, val, loss, metrics=metrics).items()})
        row["time"] = time.perf_counter() - start
        row["samples_per_s"] = mean.counts["loss"] / train_time
        trainer.history.epochs.append(row)
        bar.end(row)
        trainer._call("on_epoch_end", epoch, row)
    trainer._call("on_train_end")
    return trainer.history
