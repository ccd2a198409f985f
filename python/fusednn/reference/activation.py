"""NumPy reference of :mod:`fusednn.ops.activation`."""

import numpy as np


def _check(a, name, ref=None):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__module__}.{type(a).__qualname__}")
    if ref is not None and (a.dtype != ref.dtype or a.shape != ref.shape):
        raise ValueError(f"{name}: expected a {ref.dtype} array of shape {ref.shape} (as dy), got a {a.dtype} array "
                         f"of shape {a.shape}")


def _result(y, out):
    if out is not None:
        out[...] = y
        return out
    return y


def relu(x, *, out=None):
    _check(x, "x")
    return _result(np.maximum(x, x.dtype.type(0)), out)


def relu_backward(dy, y, *, out=None):
    _check(dy, "dy")
    _check(y, "y", dy)
    return _result(np.where(y > 0, dy, dy.dtype.type(0)), out)
