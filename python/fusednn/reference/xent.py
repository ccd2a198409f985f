"""NumPy reference of :mod:`fusednn.ops.xent` (softmax, log-softmax, softmax cross-entropy),
written the way a NumPy user would: over the last axis, with the row maximum subtracted.

Everything is computed in the input's dtype (float32, float64 or, for the tests' wide
reference, np.longdouble); outputs have that dtype. The semantics are those of
``docs/ops.md``; where that page leaves a choice open, this file decides it:

- a cross-entropy term whose target probability ``q_j`` is 0 contributes 0 to the loss (the
  usual ``0 * log 0 = 0``), so with ``label_smoothing=0`` the loss is ``-w_y log p_y`` as in
  PyTorch's ``nll_loss``, even when another logit is -inf; likewise such a class has no weight
  in the loss or the gradient whatever ``w_j`` (an infinite weight on a class that is not the
  label, without smoothing, leaves the row finite). Weights multiply as they are where
  ``q_j > 0`` (``w_j = 0`` with ``log p_j = -inf`` gives NaN, as in PyTorch);
- rows whose label is ``ignore_index`` have loss 0 and gradient 0 whatever their logits
  (NaN included, where PyTorch's gradient of such a row is NaN);
- ``reduction="mean"`` divides by ``sum(w[y_i])`` over the non-ignored rows; when that sum is
  0 the loss is NaN and so is the gradient of every non-ignored row (``c = NaN``; ignored
  rows stay 0), as in PyTorch: zero gradient when every row is ignored.
"""


import numpy as np

from fusednn import _checks

_SMOOTHINGS = ("others", "all")
_REDUCTIONS = ("mean", "sum", "none")


# ---- argument checks (the same exception types and wording as the compiled ops) ----

def _check_array(a, name):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(a).__module__}.{type(a).__qualname__}")


def _check_float(a, name):
    _check_array(a, name)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name}: expected a floating-point array (float32 or float64), got {a.dtype}")


def _check_like(a, name, ref, ref_name):
    """a has ref's dtype and shape."""
    _check_array(a, name)
    if a.dtype != ref.dtype:
        raise TypeError(f"{name}: expected dtype {ref.dtype} (the dtype of {ref_name}), got {a.dtype}")
    if a.shape != ref.shape:
        raise ValueError(f"{name}: expected shape {ref.shape} (the shape of {ref_name}), got {a.shape}")


def _check_out(out, shape, dtype, name="out"):
    _check_array(out, name)
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {out.shape}")
    if not (out.flags.c_contiguous and out.flags.aligned):
        raise ValueError(f"{name}: expected a C-contiguous, aligned array")
    if not out.flags.writeable:
        raise ValueError(f"{name}: expected a writable array")


def _check_ndim_at_least_1(x, name):
    if x.ndim < 1:
        raise ValueError(f"{name}: expected an array with ndim >= 1, got 0-D")


def _write(out, value):
    if out is None:
        return value
    out[...] = value
    return out


# ---- softmax and log-softmax ----

def _log_softmax(x):
    if x.shape[-1] == 0:
        return x.copy()
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(x, *, out=None):
    _check_float(x, "x")
    _check_ndim_at_least_1(x, "x")
    if out is not None:
        _check_out(out, x.shape, x.dtype)
    if x.shape[-1] == 0:
        return _write(out, x.copy())
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return _write(out, e / e.sum(axis=-1, keepdims=True))


def log_softmax(x, *, out=None):
    _check_float(x, "x")
    _check_ndim_at_least_1(x, "x")
    if out is not None:
        _check_out(out, x.shape, x.dtype)
    return _write(out, _log_softmax(x))


def softmax_backward(dy, y, *, out=None):
    _check_float(dy, "dy")
    _check_ndim_at_least_1(dy, "dy")
    _check_like(y, "y", dy, "dy")
    if out is not None:
        _check_out(out, dy.shape, dy.dtype)
    return _write(out, y * (dy - (dy * y).sum(axis=-1, keepdims=True)))


def log_softmax_backward(dy, y, *, out=None):
    _check_float(dy, "dy")
    _check_ndim_at_least_1(dy, "dy")
    _check_like(y, "y", dy, "dy")
    if out is not None:
        _check_out(out, dy.shape, dy.dtype)
    return _write(out, dy - np.exp(y) * dy.sum(axis=-1, keepdims=True))


# ---- softmax cross-entropy ----

def _check_xent_args(logits, labels, label_smoothing, smoothing, weight, ignore_index, reduction):
    """Every check before any work; returns (ignore_index as an int, label_smoothing as a float)."""
    _check_float(logits, "logits")
    if logits.ndim != 2:
        raise ValueError(f"logits: expected a 2-D array (N, K), got {logits.ndim}-D with shape {logits.shape}")
    n, k = logits.shape
    _check_array(labels, "labels")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels: expected an integer array, got {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels: expected shape (N,) = ({n},), got {labels.shape}")
    ignore_index = _checks.int64("ignore_index", ignore_index)
    eps = _checks.in_unit_interval("label_smoothing", label_smoothing)
    if not isinstance(smoothing, str) or smoothing not in _SMOOTHINGS:
        raise ValueError(f"smoothing: expected 'others' or 'all', got {smoothing!r}")
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', got {reduction!r}")
    if weight is not None:
        _check_array(weight, "weight")
        if weight.dtype != logits.dtype:
            raise TypeError(f"weight: expected dtype {logits.dtype} (the dtype of logits), got {weight.dtype}")
        if weight.shape != (k,):
            raise ValueError(f"weight: expected shape (K,) = ({k},), got {weight.shape}")
    if smoothing == "others" and k == 1 and eps > 0:
        raise ValueError(f"label_smoothing: smoothing='others' spreads label_smoothing over the K - 1 other "
                         f"classes and K = 1; got label_smoothing={label_smoothing!r} (use smoothing='all' or 0)")
    bad = ~((labels == ignore_index) | ((labels >= 0) & (labels < k)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"labels: expected class indices in [0, {k}) or ignore_index={ignore_index}, "
                         f"got {labels[i]} at position {i}")
    return ignore_index, eps


def _xent(logits, labels, label_smoothing, smoothing, weight, ignore_index, reduction, with_grad):
    dtype = logits.dtype
    one = dtype.type(1)
    n, k = logits.shape
    ignored = labels == ignore_index
    y = np.where(ignored, 0, labels).astype(np.intp)
    rows = np.arange(n)
    w = np.ones(k, dtype) if weight is None else weight

    # Target distribution q (N, K).
    eps = dtype.type(label_smoothing)
    if smoothing == "all":
        q = np.full((n, k), eps / dtype.type(k), dtype)
        q[rows, y] += one - eps
    else:
        q = np.full((n, k), eps / dtype.type(k - 1) if k > 1 else 0, dtype)
        q[rows, y] = one - eps
    with np.errstate(invalid="ignore"):
        wq = np.where(q != 0, w * q, 0).astype(dtype, copy=False)  # w_j q_j, 0 where q_j = 0 (even w_j = inf)

    logp = _log_softmax(logits)
    with np.errstate(invalid="ignore"):
        terms = np.where(q != 0, wq * logp, 0)  # 0 * log 0 = 0
    row_loss = np.where(ignored, 0, 0 - terms.sum(axis=-1)).astype(dtype, copy=False)  # 0 - x: no -0.0

    if reduction == "none":
        loss, c = row_loss, one
    else:
        total = row_loss.sum()
        if reduction == "sum":
            loss, c = dtype.type(total), one
        else:
            divisor = w[y][~ignored].sum(dtype=dtype)
            if divisor == 0:  # no weight to average over: NaN, as in PyTorch
                loss = c = dtype.type(np.nan)
            else:
                loss, c = dtype.type(total / divisor), one / divisor
    if not with_grad:
        return loss

    p = np.exp(logp)
    big_w = wq.sum(axis=-1, keepdims=True)  # W_i = sum_j w_j q_j
    with np.errstate(invalid="ignore"):
        dlogits = np.where(ignored[:, None], 0, c * (big_w * p - wq)).astype(dtype, copy=False)
    return loss, dlogits


def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, smoothing="others", weight=None,
                          ignore_index=-100, reduction="mean"):
    ignore_index, eps = _check_xent_args(logits, labels, label_smoothing, smoothing, weight, ignore_index,
                                         reduction)
    return _xent(logits, labels, eps, smoothing, weight, ignore_index, reduction, with_grad=False)


def softmax_cross_entropy_with_grad(logits, labels, *, label_smoothing=0.0, smoothing="others", weight=None,
                                    ignore_index=-100, reduction="mean", out=None):
    ignore_index, eps = _check_xent_args(logits, labels, label_smoothing, smoothing, weight, ignore_index,
                                         reduction)
    if out is not None:
        _check_out(out, logits.shape, logits.dtype)
    loss, dlogits = _xent(logits, labels, eps, smoothing, weight, ignore_index, reduction, with_grad=True)
    return loss, _write(out, dlogits)
