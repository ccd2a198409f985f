"""Sequence tasks that need no download, for the recurrent layers (:mod:`fusednn.nn.rnn`).

- :func:`sequential_digits`: the bundled 8x8 digits read as sequences, one image row per step
  (8 steps of 8 features);
- :func:`adding_problem`: Hochreiter & Schmidhuber's adding problem with the sequence length a
  parameter, where long sequences make gradient clipping and the forget-gate bias matter.

Sequences are batch first: ``x`` float32 of shape (n, steps, features).
"""

import numpy as np

from fusednn import _checks
from fusednn.data.datasets import digits

__all__ = ["sequential_digits", "adding_problem"]


def sequential_digits(split="train", seed=0):
    """:func:`fusednn.data.digits` as sequences: ``x`` (n, 8, 8) float32, row t of each image
    the t-th step, pixel counts scaled from 0..16 to [0, 1]; ``y`` int64 labels. ``split`` and
    ``seed`` choose the samples as in :func:`~fusednn.data.digits`."""
    x, y = digits(split, seed)
    return (x / np.float32(16.0)).reshape(-1, 8, 8), y


def adding_problem(n, steps, seed=0):
    """``n`` sequences of the adding problem of length ``steps`` (>= 2).

    Each step has two features: a value drawn U[0, 1) and a marker, 1 at exactly two steps (one
    drawn uniformly in the first half of the sequence, one in the second half) and 0 elsewhere.
    The target, of shape (n, 1), is the sum of the two marked values. Predicting 1 (the mean)
    gives an MSE of about 0.167; the usual criterion of success is an MSE below 0.01.
    Returns ``(x, y)``: x float32 (n, steps, 2), y float32 (n, 1), the same for the same
    arguments.
    """
    n = _checks.integer("n", n)
    steps = _checks.integer("steps", steps)
    if n < 1:
        raise ValueError(f"n: expected a positive integer, got {n}")
    if steps < 2:
        raise ValueError(f"steps: expected an integer >= 2 (one marker in each half), got {steps}")
    rng = np.random.default_rng(_checks.integer("seed", seed))
    values = rng.random((n, steps))
    half = steps // 2
    first = rng.integers(0, half, n)
    second = rng.integers(half, steps, n)
    markers = np.zeros((n, steps))
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=2).astype(np.float32)
    y = (values[rows, first] + values[rows, second]).astype(np.float32)[:, None]
    return x, y
