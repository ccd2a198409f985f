"""The course's experiments, one command each: ``python -m fusednn demo NAME``.

Every demo is a module of this package with ``NAME``, ``TITLE``, ``CLAIM`` (what the course
says) and ``run(quick=False, out_dir=None, *, dpi=100)``, which measures, writes ``NAME.csv``,
``NAME.md`` and PNG figures into ``out_dir`` (nothing when None; figures only with matplotlib)
and returns a :class:`DemoResult`: the table rows, what was measured, and whether the claim's
direction was seen. :data:`DEMOS` lists them in the order ``demo list`` shows.
"""

import importlib

from fusednn.demos._common import DemoResult

DEMOS = {
    "xor": "xor",
    "learning-rate": "learning_rate",
    "optimizers": "optimizers",
    "schedules": "schedules",
    "init": "init",
    "normalization": "normalization",
    "regularization": "regularization",
    "early-stopping": "early_stopping",
    "distillation": "distillation",
    "landscape": "landscape",
    "mc-dropout": "mc_dropout",
    "augmentation": "augmentation",
    "hpo": "hpo",
    "cnn": "cnn",
    "rnn": "rnn",
}

__all__ = ["DEMOS", "DemoResult", "names", "get", "run"]


def names():
    """The demos' names, in order."""
    return list(DEMOS)


def get(name):
    """The module of demo ``name`` (``NAME``, ``TITLE``, ``CLAIM``, ``run``)."""
    if name not in DEMOS:
        raise ValueError(f"name: expected one of {', '.join(DEMOS)}, got {name!r}")
    return importlib.import_module(f"fusednn.demos.{DEMOS[name]}")


def run(name, quick=False, out_dir=None, *, dpi=100):
    """Run demo ``name``; see the module docstring."""
    return get(name).run(quick=quick, out_dir=out_dir, dpi=dpi)
