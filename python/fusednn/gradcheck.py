"""Check an analytic gradient against central finite differences in float64.

Two ways to call :func:`gradcheck`:

- a layer: an object with ``forward(x[, training=True])`` and ``backward(dy) -> dx``, and
  ``inputs`` the one input ``x``. The scalar checked is ``sum(forward(x) * r)`` for a fixed random
  ``r`` (so backward gets ``dy = r``). If the layer has ``named_parameters()`` and
  ``named_gradients()`` (``(name, view)`` pairs), each parameter's gradient is checked too, by
  perturbing the parameter in place (and restoring it). ``zero_grad()`` is called before
  ``backward`` when the layer has it. The forward must be deterministic for a fixed input (a
  fixed dropout seed and offset, say).
- a function ``fn(*inputs) -> array`` with ``backward(dy, *inputs) -> tuple of input
  gradients`` (a None entry is not checked).

An entry passes when ``|analytic - numeric| <= atol + rtol * |numeric|``. The caller's input
arrays are not modified (they are copied); parameters are perturbed in place and restored.
"""

import functools
import inspect

import numpy as np

from fusednn.testing import numerical_gradient

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences."""


def _check_float64(name, a):
    if not isinstance(a, np.ndarray) or a.dtype != np.float64:
        got = a.dtype if isinstance(a, np.ndarray) else f"{type(a).__module__}.{type(a).__qualname__}"
        raise TypeError(f"{name}: expected a float64 numpy.ndarray (finite differences in lower precision are "
                        f"meaningless), got {got}")


def _compare(name, analytic, numeric, rtol, atol):
    """None when they agree, else the failure message."""
    analytic = np.asarray(analytic)
    if analytic.shape != numeric.shape:
        return f"gradient of {name}: expected shape {numeric.shape}, the analytic gradient has {analytic.shape}"
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    bad = ~(excess <= 0)  # NaN fails
    if not bad.any():
        return None
    idx = np.unravel_index(int(np.argmax(np.where(np.isnan(excess), np.inf, excess))), excess.shape)
    a, n = float(analytic[idx]), float(numeric[idx])
    return (f"gradient of {name}: {int(bad.sum())} of {bad.size} entries out of tolerance; worst at index "
            f"{tuple(int(i) for i in idx)}: analytic {a:.10g}, numeric {n:.10g}, |difference| {abs(a - n):.3g} > "
            f"atol + rtol * |numeric| = {atol + rtol * abs(n):.3g}")


def _forward_of(layer):
    """layer.forward, with training=True when it takes that keyword."""
    try:
        params = inspect.signature(layer.forward).parameters.values()
    except (TypeError, ValueError):
        return layer.forward
    if any(p.name == "training" or p.kind is p.VAR_KEYWORD for p in params):
        return functools.partial(layer.forward, training=True)
    return layer.forward


def _layer_checks(layer, x, rng):
    """(name, analytic, f, array to perturb) for the input and every parameter."""
    forward = _forward_of(layer)
    r = rng.standard_normal(np.shape(forward(x)))
    if hasattr(layer, "zero_grad"):
        layer.zero_grad()
    dx = layer.backward(r)

    def f():
        return float(np.vdot(forward(x), r))

    checks = [] if dx is None else [("inputs[0]", np.array(dx, dtype=np.float64), f, x)]
    if hasattr(layer, "named_parameters") and hasattr(layer, "named_gradients"):
        grads = {name: np.array(g, dtype=np.float64) for name, g in layer.named_gradients()}
        for name, p in layer.named_parameters():
            _check_float64(f"parameter {name!r}", p)
            if name not in grads:
                raise GradcheckError(f"gradient of parameter {name!r}: named_gradients() has no entry {name!r}")
            checks.append((f"parameter {name!r}", grads[name], f, p))
    return checks


def _function_checks(fn, backward, inputs, rng):
    r = rng.standard_normal(np.shape(fn(*inputs)))
    grads = tuple(backward(r, *inputs))
    if len(grads) != len(inputs):
        raise GradcheckError(f"backward: expected {len(inputs)} gradients (one per input), got {len(grads)}")

    def f():
        return float(np.vdot(fn(*inputs), r))

    return [(f"inputs[{i}]", g, f, x) for i, (g, x) in enumerate(zip(grads, inputs)) if g is not None]


def gradcheck(fn, inputs, *, backward=None, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0, raise_exception=True):
    """True when every analytic gradient matches central finite differences (step ``eps``).

    Args:
        fn: a layer (``forward``/``backward``), or a function of the inputs when ``backward`` is
            given.
        inputs: a float64 array or a sequence of them (exactly one for a layer).
        backward: ``backward(dy, *inputs) -> tuple of gradients``, for a plain function.
        eps, rtol, atol: finite-difference step and tolerances.
        seed: seed of the random output weights ``r``.
        raise_exception: raise :class:`GradcheckError` on a mismatch (naming the input or
            parameter, the worst index, the analytic and numeric values) instead of returning
            False.
    """
    inputs = (inputs,) if isinstance(inputs, np.ndarray) else tuple(inputs)
    for i, x in enumerate(inputs):
        _check_float64(f"inputs[{i}]", x)
    inputs = tuple(x.copy() for x in inputs)
    if backward is None:
        if not (hasattr(fn, "forward") and hasattr(fn, "backward")):
            raise TypeError("backward: expected a function backward(dy, *inputs) when fn is not a layer with "
                            "forward and backward methods")
        if len(inputs) != 1:
            raise ValueError(f"inputs: a layer takes one input array, got {len(inputs)}")
    rng = np.random.default_rng(seed)
    try:
        checks = (_layer_checks(fn, inputs[0], rng) if backward is None
                  else _function_checks(fn, backward, inputs, rng))
        for name, analytic, f, x in checks:
            message = _compare(name, analytic, numerical_gradient(f, x, eps), rtol, atol)
            if message is not None:
                raise GradcheckError(message)
    except GradcheckError:
        if raise_exception:
            raise
        return False
    return True
