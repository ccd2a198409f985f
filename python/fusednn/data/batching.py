"""Minibatch iteration: a seeded order per epoch and a parallel row gather."""

import numpy as np

from fusednn import ops
from fusednn.data._args import _flag, _integer

__all__ = ["batches", "num_batches"]

# ---------------------------------------------------------------------------------------------
# Minibatches


def num_batches(n, batch_size, drop_last=False):
    """How many batches ``batches`` yields for ``n`` samples: ``ceil(n / batch_size)``, or
    ``n // batch_size`` with ``drop_last``."""
    n = _integer("n", n, 0)
    batch_size = _integer("batch_size", batch_size, 1)
    return n // batch_size if _flag("drop_last", drop_last) else -(-n // batch_size)


def batches(x, y, batch_size, *, shuffle=True, seed=0, epoch=0, drop_last=False):
    """Iterate over ``(x[idx], y[idx])`` minibatches of ``batch_size`` rows.

    With ``shuffle`` the sample order of an epoch is ``np.random.default_rng([seed, epoch])
    .permutation(len(x))``, a function of ``(seed, epoch)`` alone, so a run resumed at epoch
    ``e`` sees the same batches as one that never stopped; without it the order is
    ``0..n-1``. Each epoch visits every sample once; the last batch is smaller when
    ``batch_size`` does not divide ``len(x)``, unless ``drop_last`` leaves it out.
    ``batch_size=len(x)`` gives full-batch gradient descent, 1 plain SGD. The arguments are
    checked when ``batches`` is called; the batches are copied lazily (float arrays by
    :func:`fusednn.ops.gather_rows`, in parallel; others by fancy indexing). ``num_batches``
    says how many there are.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"y: expected {n} labels, one per row of x, got {len(y)}")
    count = num_batches(n, batch_size, drop_last)
    seed, epoch = _integer("seed", seed, 0), _integer("epoch", epoch, 0)
    order = np.random.default_rng([seed, epoch]).permutation(n) if _flag("shuffle", shuffle) else np.arange(n)
    return ((_rows(x, order[i:i + batch_size]), y[order[i:i + batch_size]])
            for i in range(0, count * batch_size, batch_size))


def _rows(x, index):
    """x[index], by the parallel gather for float NumPy arrays."""
    if type(x) is np.ndarray and x.dtype in (np.float32, np.float64) and x.ndim >= 1:
        return ops.gather_rows(x, index)
    return x[index]
