"""What the objective sees: :class:`Trial`, and :func:`fit_trial`, which trains a fusednn
model under a trial (budget, checkpoint resume, reports)."""

import math
import os

from fusednn import _checks

__all__ = ["Trial", "fit_trial"]


class Trial:
    """One evaluation of the objective ``objective(config, trial)``.

    Attributes: ``number`` (from 0 in the study), ``config`` (``name -> value``), ``seed`` (from
    the study's seed and the trial number: seed the model and data order with it), ``budget``
    (the epoch to train up to under a scheduler, None without one), ``checkpoint_dir`` (a
    directory of this trial's own, created on first use: save resumable state there, e.g.
    ``fit(checkpoint=trial.checkpoint_dir, resume=trial.checkpoint_dir)``, so that a promoted
    trial continues instead of starting over) and ``user_attrs`` (a dict of JSON-able values
    stored with the trial).
    """

    def __init__(self, number, config, seed, budget=None, checkpoint_dir=None):
        self.number, self.config, self.seed, self.budget = number, config, seed, budget
        self._checkpoint_dir = checkpoint_dir
        self.reports = []  # (epoch, value) pairs of this run of the objective
        self.user_attrs = {}

    @property
    def checkpoint_dir(self):
        if self._checkpoint_dir is None:
            raise RuntimeError("this trial has no checkpoint directory (it was made outside a Study)")
        os.makedirs(self._checkpoint_dir, exist_ok=True)
        return self._checkpoint_dir

    def report(self, epoch, value):
        """Record the objective's ``value`` after ``epoch`` (an integer >= 0). A NaN or infinite
        value marks the trial failed (and :meth:`should_stop` becomes True)."""
        epoch = _checks.integer("epoch", epoch, "an integer >= 0")
        if epoch < 0:
            raise ValueError(f"epoch: expected an integer >= 0, got {epoch}")
        self.reports.append((epoch, _checks.real("value", value)))

    def should_stop(self):
        """True when the objective should return now: its last report reached ``budget`` (the
        scheduler decides at that rung whether the trial continues later, from its
        checkpoint), or it reported a non-finite value."""
        if any(not math.isfinite(v) for _, v in self.reports):
            return True
        return self.budget is not None and bool(self.reports) and self.reports[-1][0] >= self.budget

    def __repr__(self):
        return f"Trial(number={self.number}, config={self.config}, budget={self.budget})"


def fit_trial(trial, model, loss, optimizer, train_data, val_data, *, max_epochs, monitor="val_loss", **fit_kwargs):
    """Train with :func:`fusednn.train.fit` as a scheduler wants it: up to ``trial.budget``
    epochs (``max_epochs`` without a scheduler), checkpointing every epoch into
    ``trial.checkpoint_dir`` (the newest one kept) and resuming from it, so a promoted trial
    continues where its rung stopped; data order from ``seed=trial.seed`` unless given. Every
    epoch of the history (the resumed part included) is reported with its ``monitor`` value.
    Returns the last epoch's ``monitor`` value. Give the learning-rate schedule in terms of
    ``max_epochs``, so that it is the same whichever rung a trial stops at."""
    from fusednn import train as _train

    max_epochs = _checks.integer("max_epochs", max_epochs, "an integer >= 1")
    if max_epochs < 1:
        raise ValueError(f"max_epochs: expected an integer >= 1, got {max_epochs}")
    for key in ("epochs", "checkpoint", "resume"):
        if key in fit_kwargs:
            raise TypeError(f"fit_trial: {key}= is set by the trial (budget and checkpoint_dir); do not pass it")
    epochs = max_epochs if trial.budget is None else min(trial.budget, max_epochs)
    fit_kwargs.setdefault("seed", trial.seed)
    fit_kwargs.setdefault("progress", False)
    callbacks = list(fit_kwargs.pop("callbacks", ())) + [_train.Checkpoint(trial.checkpoint_dir, keep=1)]
    history = _train.fit(model, loss, optimizer, train_data, val_data, epochs=epochs, callbacks=callbacks,
                         resume=trial.checkpoint_dir, **fit_kwargs)
    for row in history.epochs:
        if monitor not in row:
            raise KeyError(f"monitor: {monitor!r} is not in the epoch's logs {sorted(row)} (val_* needs val_data)")
        trial.report(row["epoch"], row[monitor])
    if not history.epochs:
        raise ValueError("fit_trial: no epoch was trained (budget 0?)")
    return float(history.epochs[-1][monitor])
