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

from fusednn import _checks, ops
from fusednn._backend import is_array as _is_array

__all__ = ["L1", "L2", "ElasticNet"]


def _type_name(a):
    return f"{type(a).__module__}.{type(a).__qualname__}"


def _check_params(params, mask):
    """``where`` for the ufuncs: True, or the checked mask."""
    if not _is_array(params) or params.dtype not in (np.float32, np.float64):
        got = params.dtype if _is_array(params) else _type_name(params)
        raise TypeError(f"params: expected a float32 or float64 numpy.ndarray, got {got}")
    if mask is None:
        return True
    if not _is_array(mask) or mask.dtype != np.bool_:
        got = mask.dtype if _is_array(mask) else _type_name(mask)
        raise TypeError(f"mask: expected a boolean numpy.ndarray, got {got}")
    if mask.shape != params.shape:
        raise ValueError(f"mask: expected shape {params.shape} (the shape of params), got {mask.shape}")
    return mask


def _check_grads(grads, params):
    if not _is_array(grads):
        raise TypeError(f"grads: expected a numpy.ndarray, got {_type_name(grads)}")
    if grads.dtype != params.dtype:
        raise TypeError(f"grads: expected dtype {params.dtype} (the dtype of params), got {grads.dtype}")
    if grads.shape != params.shape:
        raise ValueError(f"grads: expected shape {params.shape} (the shape of params), got {grads.shape}")
    if not (grads.flags.c_contiguous and getattr(grads.flags, "aligned", True)
            and getattr(grads.flags, "writeable", True)):
        raise ValueError("grads: expected a C-contiguous, aligned, writable array (the gradient is added in place)")


def _selected(params, where):
    return params if where is True else params[where]


class _Penalty:
    def value(self, params, mask=None):
        """The penalty of ``params`` (of the entries selected by ``mask``)."""
        return self._value(params, _check_params(params, mask))

    def add_grad(self, params, grads, mask=None):
        """Adds the penalty's gradient to ``grads`` in place, in one fused pass
        (:func:`fusednn.ops.add_penalty_grad`); returns the penalty."""
        _check_params(params, mask)
        _check_grads(grads, params)
        return ops.add_penalty_grad(params, grads, l1=self._l1, l2=self._l2, mask=mask)


class L2(_Penalty):
    """``(strength / 2) * sum(w^2)``; gradient ``strength * w``."""

    def __init__(self, strength):
        self.strength = _checks.at_least_zero("strength", strength)

    def _value(self, params, where):
        w = _selected(params, where)
        return 0.5 * self.strength * float(np.vdot(w, w))

    @property
    def _l1(self):
        return 0.0

    @property
    def _l2(self):
        return self.strength

    def __repr__(self):
        return f"L2(strength={self.strength})"


class L1(_Penalty):
    """``strength * sum(|w|)``; gradient ``strength * sign(w)`` (0 at w = 0)."""

    def __init__(self, strength):
        self.strength = _checks.at_least_zero("strength", strength)

    def _value(self, params, where):
        return self.strength * float(np.abs(_selected(params, where)).sum())

    @property
    def _l1(self):
        return self.strength

    @property
    def _l2(self):
        return 0.0

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

    @property
    def _l1(self):
        return self.l1

    @property
    def _l2(self):
        return self.l2

    def __repr__(self):
        return f"ElasticNet(l1={self.l1}, l2={self.l2})"
