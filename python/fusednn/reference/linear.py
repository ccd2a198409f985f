"""NumPy reference of :mod:`fusednn.ops.linear`, written the way a NumPy user would."""

import numpy as np

from fusednn import _checks


def check_activation(activation):
    if activation not in (None, "relu"):
        raise ValueError(f"activation: expected None or 'relu', got {activation!r}")


def linear(x, w, b=None, activation=None, *, out=None):
    check_activation(activation)
    y = x @ w.T
    if b is not None:
        y = y + b
    if activation == "relu":
        y = np.maximum(y, 0)
    if out is not None:
        out[...] = y
        return out
    return y


def linear_backward(dy, x, w, y=None, activation=None, *, bias=True, input_grad=True, out=None):
    check_activation(activation)
    bias = _checks.flag("bias", bias)
    input_grad = _checks.flag("input_grad", input_grad)
    # A select, as torch.relu's backward: an infinite dy where y <= 0 gives 0, not inf * 0 = NaN.
    dz = np.where(y > 0, dy, 0).astype(dy.dtype, copy=False) if activation == "relu" else dy
    dx = dz @ w if input_grad else None
    dw = dz.T @ x
    db = dz.sum(axis=0) if bias else None
    return write_outputs(out, (dx, dw, db))


def write_outputs(out, results):
    """The op's results, each copied into its entry of the ``out`` tuple where that is an array
    (the array is then returned in its place); ``out=None`` returns the results as they are."""
    if out is None:
        return tuple(results)
    for dst, src in zip(out, results):
        if dst is not None:
            dst[...] = src
    return tuple(src if dst is None else dst for dst, src in zip(out, results))
