"""NumPy reference of :mod:`fusednn.ops.gather`."""

import numpy as np


def gather_rows(x, index, *, out=None):
    if not isinstance(x, np.ndarray) or x.ndim < 1:
        raise ValueError("x: expected an array with ndim >= 1 (rows first)")
    index = np.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"index: expected an integer array, got {index.dtype}")
    if index.ndim != 1:
        raise ValueError(f"index: expected shape (M,), got {index.shape}")
    n = x.shape[0]
    bad = (index < -n) | (index >= n)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"index: expected row indices in [-{n}, {n}) (x has {n} rows), got {index[i]} at position {i}")
    y = x[index]
    if out is not None:
        out[...] = y
        return out
    return y
