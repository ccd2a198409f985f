"""NumPy reference of :mod:`fusednn.ops.norm`, written the way a NumPy user would.

Batch norm, layer norm, weight norm and local response norm with their backwards, straight
from the formulas in ``docs/ops.md``. Everything is computed in the inputs' dtype, so the same
code run on ``np.longdouble`` copies of float64 inputs is the wide reference.
"""

import math

import numpy as np

from fusednn import _checks
from fusednn.reference.linear import write_outputs
from fusednn.reference.linear import check_activation


# ---- argument checks: every message starts with the argument's name ----

def _array(a, name, dtype=None, ref="x"):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__module__}.{type(a).__qualname__}")
    if dtype is None:
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{name}: expected a floating-point dtype, got {a.dtype}")
    elif a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the dtype of {ref}), got {a.dtype}")
    return a


def _min_ndim(a, name, ndim, layout):
    if a.ndim < ndim:
        raise ValueError(f"{name}: expected an array with ndim >= {ndim} {layout}, got {a.ndim}-D")


def _shape(a, name, expected, what):
    if a.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {what} = {tuple(expected)}, got {a.shape}")


def _stat_shape(a, name, x):
    if a.shape != x.shape[:-1]:
        raise ValueError(f"{name}: expected shape {x.shape[:-1]} (x.shape[:-1]), got {a.shape}")


def _same_shape(a, name, expected, ref_name):
    if a.shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} (the shape of {ref_name}), got {a.shape}")


def _positive(value, name):
    return _checks.positive(name, value)


def _buffer(a, name, dtype, channels):
    """A running-statistics buffer: exactly x's dtype and shape (C,), C-contiguous, aligned
    and writable, in evaluation too (training writes it in place, so it is never copied)."""
    _array(a, name, dtype)
    _shape(a, name, (channels,), "(C,)")
    if not a.flags.writeable:
        raise ValueError(f"{name}: expected a writable array, got a read-only one")
    if not (a.flags.c_contiguous and a.flags.aligned):
        raise ValueError(f"{name}: expected a C-contiguous, aligned array (it is written in place, so it "
                         f"cannot be copied), got strides {a.strides}")


def _channel_axes(x):
    """The axes batch norm reduces over (N and the spatial ones) and the shape that broadcasts
    a (C,) vector against x."""
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return axes, bshape


def _check_batch_norm_params(x, gamma, beta):
    _array(x, "x")
    _min_ndim(x, "x", 2, "(N, C, ...)")
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None:
            _array(a, name, x.dtype)
            _shape(a, name, (x.shape[1],), "(C,)")


# ---- batch norm ----

def _activate(y, activation):
    check_activation(activation)
    return np.maximum(y, 0) if activation == "relu" else y


def _through_activation(dy, y, activation):
    """The gradient at the normalized values: through the fused ReLU (a select on y > 0)."""
    check_activation(activation)
    if activation is None:
        return dy
    if y is None:
        raise ValueError("y: the forward output is required when activation is 'relu', got None")
    _array(y, "y", dy.dtype, "dy")
    _same_shape(y, "y", dy.shape, "dy")
    return np.where(y > 0, dy, dy.dtype.type(0))


def batch_norm(x, gamma, beta, running_mean=None, running_var=None, *, training, momentum=0.1, eps=1e-5,
               activation=None, out=None):
    _check_batch_norm_params(x, gamma, beta)
    check_activation(activation)
    training = _checks.flag("training", training)
    c = x.shape[1]
    for name, buf in (("running_mean", running_mean), ("running_var", running_var)):
        if buf is None:
            if not training:
                raise ValueError(f"{name}: required when training=False")
        else:
            _buffer(buf, name, x.dtype, c)
    momentum = _checks.in_unit_interval("momentum", momentum)
    eps = _positive(eps, "eps")
    m = x.shape[0] * math.prod(x.shape[2:])  # values per channel (a Python int)
    if training and m <= 1:
        raise ValueError(f"x: batch norm in training needs more than 1 value per channel, got N * spatial = {m}")

    axes, bshape = _channel_axes(x)
    if training:
        mean = x.mean(axis=axes)
        var = ((x - mean.reshape(bshape)) ** 2).mean(axis=axes)  # biased, two passes
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * running_mean + momentum * mean
        if running_var is not None:
            running_var[...] = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    else:
        mean = running_mean.copy()
        var = running_var
    inv_std = 1 / np.sqrt(var + eps)

    y = (x - mean.reshape(bshape)) * inv_std.reshape(bshape)
    if gamma is not None:
        y = y * gamma.reshape(bshape)
    if beta is not None:
        y = y + beta.reshape(bshape)
    return write_outputs(out, (_activate(y, activation), mean, inv_std))


def batch_norm_backward(dy, x, gamma, mean, inv_std, *, training=True, y=None, activation=None, out=None):
    _check_batch_norm_params(x, gamma, None)
    training = _checks.flag("training", training)
    _array(dy, "dy", x.dtype)
    _same_shape(dy, "dy", x.shape, "x")
    dy = _through_activation(dy, y, activation)
    for name, a in (("mean", mean), ("inv_std", inv_std)):
        _array(a, name, x.dtype)
        _shape(a, name, (x.shape[1],), "(C,)")

    axes, bshape = _channel_axes(x)
    m = x.shape[0] * math.prod(x.shape[2:])
    xhat = (x - mean.reshape(bshape)) * inv_std.reshape(bshape)
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    scale = inv_std if gamma is None else gamma * inv_std
    if training:
        dx = scale.reshape(bshape) * (dy - dbeta.reshape(bshape) / m - xhat * dgamma.reshape(bshape) / m)
    else:
        dx = scale.reshape(bshape) * dy
    return write_outputs(out, (dx, dgamma, dbeta))


# ---- layer norm ----

def _check_layer_norm_params(x, gamma, beta):
    _array(x, "x")
    _min_ndim(x, "x", 1, "(..., D)")
    for name, a in (("gamma", gamma), ("beta", beta)):
        if a is not None:
            _array(a, name, x.dtype)
            _shape(a, name, (x.shape[-1],), "(D,)")


def layer_norm(x, gamma, beta, *, eps=1e-5, activation=None, out=None):
    _check_layer_norm_params(x, gamma, beta)
    check_activation(activation)
    eps = _positive(eps, "eps")
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # biased, two passes
    inv_std = 1 / np.sqrt(var + eps)
    y = (x - mean) * inv_std
    if gamma is not None:
        y = y * gamma
    if beta is not None:
        y = y + beta
    # statistics of shape x.shape[:-1] (0-d for a 1-D x)
    return write_outputs(out, (_activate(y, activation), mean[..., 0], inv_std[..., 0]))


def layer_norm_backward(dy, x, gamma, mean, inv_std, *, y=None, activation=None, out=None):
    _check_layer_norm_params(x, gamma, None)
    _array(dy, "dy", x.dtype)
    _same_shape(dy, "dy", x.shape, "x")
    dy = _through_activation(dy, y, activation)
    for name, a in (("mean", mean), ("inv_std", inv_std)):
        _array(a, name, x.dtype)
        _stat_shape(a, name, x)

    xhat = (x - mean[..., None]) * inv_std[..., None]
    g = dy if gamma is None else dy * gamma
    dx = inv_std[..., None] * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    other = tuple(range(x.ndim - 1))
    dgamma = (dy * xhat).sum(axis=other)
    dbeta = dy.sum(axis=other)
    return write_outputs(out, (dx, dgamma, dbeta))


# ---- weight norm ----

def _check_weight_norm_params(v, g):
    _array(v, "v")
    _min_ndim(v, "v", 1, "(out, ...)")
    _array(g, "g", v.dtype, "v")
    _shape(g, "g", (v.shape[0],), "(out,)")


def _row_norm(v):
    """||v|| over all axes but the first, shaped to broadcast against v."""
    return np.sqrt((v ** 2).sum(axis=tuple(range(1, v.ndim)), keepdims=True))


def weight_norm(v, g):
    _check_weight_norm_params(v, g)
    gb = g.reshape((-1,) + (1,) * (v.ndim - 1))
    return gb * v / _row_norm(v)


def weight_norm_backward(dw, v, g):
    _check_weight_norm_params(v, g)
    _array(dw, "dw", v.dtype, "v")
    _same_shape(dw, "dw", v.shape, "v")
    axes = tuple(range(1, v.ndim))
    norm = _row_norm(v)
    gb = g.reshape((-1,) + (1,) * (v.ndim - 1))
    s = (dw * v).sum(axis=axes, keepdims=True)
    dg = (s / norm).reshape(g.shape)
    dv = gb / norm * (dw - v * s / norm ** 2)
    return dv, dg


# ---- local response norm ----

def _check_lrn_params(x, size):
    _array(x, "x")
    _min_ndim(x, "x", 3, "(N, C, ...)")
    size = _checks.integer("size", size, "an integer >= 1")
    if size < 1:
        raise ValueError(f"size: expected an integer >= 1, got {size}")
    return size  # a Python int: a NumPy integer would promote float32 arithmetic to float64


def _channel_window_sum(a, before, after):
    """s[:, c] = sum of a[:, c'] for c' in [c - before, c + after] that exist."""
    c = a.shape[1]
    padded = np.zeros((a.shape[0], c + before + after) + a.shape[2:], dtype=a.dtype)
    padded[:, before:before + c] = a
    s = np.zeros_like(a)
    for i in range(before + after + 1):
        s += padded[:, i:i + c]
    return s


def _lrn_divisor(x, size, alpha, k):
    """d = k + alpha / size * (sum of x^2 over the window [c - size // 2, c + (size - 1) // 2])."""
    return k + alpha / size * _channel_window_sum(x * x, size // 2, (size - 1) // 2)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    size = _check_lrn_params(x, size)
    alpha, beta, k = _checks.real("alpha", alpha), _checks.real("beta", beta), _checks.real("k", k)
    return x / _lrn_divisor(x, size, alpha, k) ** beta


def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    size = _check_lrn_params(x, size)
    _array(dy, "dy", x.dtype)
    _same_shape(dy, "dy", x.shape, "x")
    alpha, beta, k = _checks.real("alpha", alpha), _checks.real("beta", beta), _checks.real("k", k)
    # y_c = x_c d_c^-beta with d_c depending on x_j for j in window(c); channel j is in the
    # window of c for c in [j - (size - 1) // 2, j + size // 2] (the transposed window).
    d = _lrn_divisor(x, size, alpha, k)
    t = dy * x * d ** (-beta - 1)
    return dy * d ** -beta - 2 * alpha * beta / size * x * _channel_window_sum(t, (size - 1) // 2, size // 2)
