"""Batch, layer, weight and local response normalization, forward and backward."""

from fusednn import _checks
from fusednn._backend import backend_for


def batch_norm(x, gamma, beta, running_mean=None, running_var=None, *, training, momentum=0.1, eps=1e-5,
               activation=None, out=None):
    """Batch normalization of (N, C) or (N, C, *spatial) input, per channel.

    Training uses the batch mean and biased variance and, when given, updates
    ``running_mean`` / ``running_var`` in place as PyTorch does (``momentum`` weights the new
    value; the running variance takes the unbiased batch variance; the course's rho is
    1 - momentum). Evaluation uses the running statistics. ``activation="relu"`` returns
    ``relu`` of the normalized values, fused into the same pass.

    Args:
        x: (N, C, ...) float32 or float64.
        gamma, beta: (C,) scale and shift, or None for 1 and 0.
        running_mean, running_var: (C,) C-contiguous writable arrays of x's dtype, or None
            (required when ``training=False``).
        out: None, or a tuple ``(y, mean, inv_std)`` of arrays (or None entries) that receive
            the results in place: C-contiguous, writable, of x's dtype and the results' shapes,
            overlapping no input and no other output; they are returned in their places.

    Returns:
        ``(y, mean, inv_std)``; ``mean`` and ``inv_std`` (C,) are what
        :func:`batch_norm_backward` needs.
    """
    training = _checks.flag("training", training)
    return backend_for(x=x, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var,
                       out=out).batch_norm(x, gamma, beta, running_mean, running_var, training, momentum, eps,
                                           activation, out)


def batch_norm_backward(dy, x, gamma, mean, inv_std, *, training=True, y=None, activation=None, out=None):
    """``(dx, dgamma, dbeta)`` of :func:`batch_norm` from the forward's ``mean`` and
    ``inv_std``; ``training=False`` treats the statistics as constants. With
    ``activation="relu"`` pass the forward's output ``y``: ``dy`` goes through the ReLU's
    backward (a select on y > 0) first. ``out``: None or a tuple ``(dx, dgamma, dbeta)`` of
    arrays (or None entries) written in place, as in :func:`batch_norm`."""
    training = _checks.flag("training", training)
    return backend_for(dy=dy, x=x, gamma=gamma, mean=mean, inv_std=inv_std, y=y, out=out).batch_norm_backward(
        dy, x, gamma, mean, inv_std, training, y, activation, out)


def layer_norm(x, gamma, beta, *, eps=1e-5, activation=None, out=None):
    """Layer normalization over the last axis; returns ``(y, mean, inv_std)`` with the
    statistics of shape ``x.shape[:-1]``. ``gamma``/``beta``: (D,) or None.
    ``activation="relu"`` returns ``relu`` of the normalized values, fused into the same pass.
    ``out``: None or a tuple ``(y, mean, inv_std)`` of arrays (or None entries) written in
    place, as in :func:`batch_norm`."""
    return backend_for(x=x, gamma=gamma, beta=beta, out=out).layer_norm(x, gamma, beta, eps, activation, out)


def layer_norm_backward(dy, x, gamma, mean, inv_std, *, y=None, activation=None, out=None):
    """``(dx, dgamma, dbeta)`` of :func:`layer_norm`; with ``activation="relu"``, from the
    forward's output ``y`` as in :func:`batch_norm_backward`. ``out``: None or a tuple
    ``(dx, dgamma, dbeta)`` of arrays (or None entries) written in place."""
    return backend_for(dy=dy, x=x, gamma=gamma, mean=mean, inv_std=inv_std, y=y, out=out).layer_norm_backward(
        dy, x, gamma, mean, inv_std, y, activation, out)


def weight_norm(v, g):
    """``w = g * v / ||v||`` with one norm per output row (all axes but the first), as
    ``torch.nn.utils.weight_norm`` with ``dim=0``."""
    return backend_for(v=v, g=g).weight_norm(v, g)


def weight_norm_backward(dw, v, g):
    """``(dv, dg)`` of :func:`weight_norm`."""
    return backend_for(dw=dw, v=v, g=g).weight_norm_backward(dw, v, g)


def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalization across the channels of (N, C, *spatial) input, with
    ``torch.nn.functional.local_response_norm``'s definition."""
    return backend_for(x=x).local_response_norm(x, size, alpha, beta, k)


def local_response_norm_backward(dy, x, size, alpha=1e-4, beta=0.75, k=1.0):
    """``dx`` of :func:`local_response_norm`."""
    return backend_for(dy=dy, x=x).local_response_norm_backward(dy, x, size, alpha, beta, k)
