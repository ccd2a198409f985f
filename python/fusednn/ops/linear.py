"""Fully connected layer with the bias and ReLU fused around one GEMM."""

from fusednn import _checks
from fusednn._backend import backend_for


def linear(x, w, b=None, activation=None, *, out=None):
    """``y = act(x @ w.T + b)``, as ``torch.nn.functional.linear`` followed by the activation.

    Args:
        x: inputs, shape (N, in_features), float32 or float64 (any strides).
        w: weights, shape (out_features, in_features), same dtype as ``x``.
        b: bias, shape (out_features,), or None.
        activation: None or ``"relu"``.
        out: optional C-contiguous array of shape (N, out_features) and the same dtype,
            written in place and returned.

    Returns:
        y, shape (N, out_features).
    """
    return backend_for(x=x, w=w, b=b, out=out).linear(x, w, b, activation, out)


def linear_backward(dy, x, w, y=None, activation=None, *, bias=True, input_grad=True, out=None):
    """Gradients of :func:`linear`: ``(dx, dw, db)``.

    With ``activation="relu"``, ``y`` (the forward output) gives the mask; one pass applies
    it and reduces ``db`` before the two GEMMs ``dx = dz @ w`` and ``dw = dz.T @ x``.

    Args:
        dy: gradient of the loss with respect to y, shape (N, out_features).
        x, w: the forward inputs.
        y: the forward output; required when ``activation`` is not None.
        activation: the forward's activation, None or ``"relu"``.
        bias: whether the forward had a bias (True or False); if False, ``db`` is None.
        input_grad: whether to compute ``dx`` (True or False); if False (e.g. the first
            layer), ``dx`` is None and one GEMM is skipped.
        out: optional tuple ``(dx, dw, db)`` of C-contiguous arrays (or None entries) written
            in place.

    Returns:
        ``(dx, dw, db)`` with shapes (N, in), (out, in), (out,); ``dx``/``db`` may be None
        as described above.
    """
    bias = _checks.flag("bias", bias)
    input_grad = _checks.flag("input_grad", input_grad)
    return backend_for(dy=dy, x=x, w=w, y=y, out=out).linear_backward(
        dy, x, w, y, activation, bias, input_grad, out)
