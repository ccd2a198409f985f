"""Softmax, log-softmax and softmax cross-entropy (forward and backward in one pass)."""

from fusednn._backend import backend_for


def softmax(x, *, out=None):
    """Softmax over the last axis of ``x`` (any ndim >= 1), max-subtracted."""
    return backend_for(x=x, out=out).softmax(x, out)


def softmax_backward(dy, y, *, out=None):
    """Gradient of :func:`softmax` given its output ``y``: ``y * (dy - sum(dy * y, -1))``."""
    return backend_for(dy=dy, y=y, out=out).softmax_backward(dy, y, out)


def log_softmax(x, *, out=None):
    """Log-softmax over the last axis of ``x``: ``x - max - log(sum(exp(x - max)))``."""
    return backend_for(x=x, out=out).log_softmax(x, out)


def log_softmax_backward(dy, y, *, out=None):
    """Gradient of :func:`log_softmax` given its output ``y``: ``dy - exp(y) * sum(dy, -1)``."""
    return backend_for(dy=dy, y=y, out=out).log_softmax_backward(dy, y, out)


def softmax_cross_entropy(logits, labels, *, label_smoothing=0.0, smoothing="others", weight=None,
                          ignore_index=-100, reduction="mean"):
    """Cross-entropy of softmax(logits) against integer labels.

    Args:
        logits: (N, K) float32 or float64.
        labels: (N,) integers in [0, K), or ``ignore_index`` for rows that do not count.
        label_smoothing: eps in [0, 1].
        smoothing: ``"others"`` (the true class gets 1 - eps, every other class
            eps / (K - 1)) or ``"all"`` (PyTorch's: (1 - eps) one-hot + eps / K).
        weight: optional (K,) class weights, as in ``torch.nn.functional.cross_entropy``.
        ignore_index: label value of rows to skip.
        reduction: ``"mean"`` (divided by the summed weight of the counted rows),
            ``"sum"`` or ``"none"``.

    Returns:
        A NumPy scalar of the logits' dtype, or the (N,) row losses for ``"none"``.
        See docs/ops.md for the exact formulas.
    """
    return backend_for(logits=logits, labels=labels, weight=weight).softmax_cross_entropy(
        logits, labels, label_smoothing, smoothing, weight, ignore_index, reduction, False, None)


def softmax_cross_entropy_with_grad(logits, labels, *, label_smoothing=0.0, smoothing="others", weight=None,
                                    ignore_index=-100, reduction="mean", out=None):
    """:func:`softmax_cross_entropy` and its gradient, ``(loss, dlogits)``, in one pass over
    the logits without storing the probabilities.

    ``dlogits`` is the gradient of the returned loss (for ``reduction="none"``, of the sum of
    the row losses); ``out``, a C-contiguous (N, K) array of the logits' dtype, receives it.
    """
    return backend_for(logits=logits, labels=labels, weight=weight, out=out).softmax_cross_entropy(
        logits, labels, label_smoothing, smoothing, weight, ignore_index, reduction, True, out)
