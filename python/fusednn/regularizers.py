"""Weight penalties added to the loss: L1, L2 and elastic net.

Conventions (over the penalized entries w):

- ``L2(strength)``: ``(strength / 2) * sum(w^2)``, gradient ``strength * w``; the same update as
  SGD's (coupled) ``weight_decay=strength``.
- ``L1(strength)``: ``strength * sum(|w|)``, gradient ``strength * sign(w)`` (0 at w = 0).
- ``ElasticNet(l1, l2)``: ``L1(l1) + L2(l2)``.

``value(params, mask=None)`` returns the penalty; ``add_grad(params, grads, mask=None)`` adds
its gradient to ``grads`` in place and returns the penalty. ``params`` and ``grads`` are float
arrays of the same shape and dtype, typically a model's flat parameter and gradient buffers;
``grads`` must be C-contiguous, aligned and writable (it is never copied). ``mask``, an optional
boolean array of that shape, selects the penalized entries (e.g. weights but not biases);
the others get neither penalty nor gradient.
"""

import numpy as np

from fusednn import _checks


def _type_name(a):
    return f"{type(a).__module__}.{type(a).__qualname__}"


def _check_params(params, mask):
    """``where`` for the ufuncs: True, or the checked mask."""
    if not isinstance(params, np.ndarray) or params.dtype not in (np.float32, np.float64):
        got = params.dtype if isinstance(params, np.ndarray) else _type_name(params)
        raise TypeError(f"params: expected a float32 or float64 numpy.ndarray, got {got}")
    if mask is None:
        return True
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = mask.dtype if isinstance(mask, np.ndarray) else _type_name(mask)
        raise TypeError(f"mask: expected a boolean numpy.ndarray, got {got}")
    if mask.shape != params.shape:
        raise ValueError(f"mask: expected shape {params.shape} (the shape of params), got {mask.shape}")
    return mask


def _check_grads(grads, params):
    if not isinstance(grads, np.ndarray):
        raise TypeError(f"grads: expected a numpy.ndarray, got {_type_name(grads)}")
    if grads.dtype != params.dtype:
        raise TypeError(f"grads: expected dtype {params.dtype} (the dtype of params), got {grads.dtype}")
    if grads.shape != params.shape:
        raise ValueError(f"grads: expected shape {params.shape} (the shape of params), got {grads.shape}")
    if not (grads.flags.c_contiguous and grads.flags.aligned and grads.flags.writeable):
        raise ValueError("grads: expected a C-contiguous, aligned, writable array (the gradient is added in place)")


def _selected(params, where):
    return params if where is True else params[where]


class _Penalty:
    def value(self, params, mask=None):
        """The penalty of ``params`` (of the entries selected by ``mask``)."""
        return self._value(params, _check_params(params, mask))

    def add_grad(self, params, grads, mask=None):
        """Adds the penalty's gradient to ``grads`` in place; returns the penalty."""
        where = _check_params(params, mask)
        _check_grads(grads, params)
        return self._add_grad(params, grads, where)


class L2(_Penalty):
    """``(strength / 2) * sum(w^2)``; gradient ``strength * w``."""

    def __init__(self, strength):
        self.strength = _checks.at_least_zero("strength", strength)

    def _value(self, params, where):
        w = _selected(params, where)
        return 0.5 * self.strength * float(np.vdot(w, w))

    def _add_grad(self, params, grads, where):
        # strength * w, 0 outside the mask
        g = np.multiply(params, self.strength, out=np.zeros(params.shape, params.dtype), where=where)
        np.add(grads, g, out=grads)
        return 0.5 * float(np.vdot(g, params))

    def __repr__(self):
        return f"L2(strength={self.strength})"


class L1(_Penalty):
    """``strength * sum(|w|)``; gradient ``strength * sign(w)`` (0 at w = 0)."""

    def __init__(self, strength):
        self.strength = _checks.at_least_zero("strength", strength)

    def _value(self, params, where):
        return self.strength * float(np.abs(_selected(params, where)).sum())

    def _add_grad(self, params, grads, where):
        g = np.sign(params, out=np.zeros(params.shape, params.dtype), where=where)  # 0 outside the mask
        value = self.strength * float(np.vdot(g, params))  # sign(w) . w = sum |w|
        np.multiply(g, self.strength, out=g)
        np.add(grads, g, out=grads)
        return value

    def __repr__(self):
        return f"L1(strength={self.strength})"


class ElasticNet(_Penalty):
    """``L1(l1) + L2(l2)``: ``l1 * sum(|w|) + (l2 / 2) * sum(w^2)``."""

    def __init__(self, l1, l2):
        self.l1 = _checks.at_least_zero("l1", l1)
        self.l2 = _checks.at_least_zero("l2", l2)
        self._terms = (L1(self.l1), L2(self.l2))

    def _value(self, params, where):
        return sum(t._value(params, where) for t in self._terms)

    def _add_grad(self, params, grads, where):
        return sum(t._add_grad(params, grads, where) for t in self._terms)

    def __repr__(self):
        return f"ElasticNet(l1={self.l1}, l2={self.l2})"
