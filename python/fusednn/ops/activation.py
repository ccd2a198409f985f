"""ReLU as elementwise passes, for layers that do not fuse it into another op (``linear``,
``batch_norm``, ``layer_norm`` and ``dropout`` take ``activation="relu"``)."""

from fusednn._backend import backend_for


def relu(x, *, out=None):
    """``max(x, 0)``; NaN stays NaN, as in ``np.maximum(x, 0)`` and ``torch.relu``."""
    return backend_for(x=x, out=out).relu(x, out)


def relu_backward(dy, y, *, out=None):
    """Gradient of :func:`relu` from its output ``y``: ``dy`` where y > 0, else 0 (a select,
    as torch's ``threshold_backward``: an infinite ``dy`` where y <= 0 gives 0)."""
    return backend_for(dy=dy, y=y, out=out).relu_backward(dy, y, out)
