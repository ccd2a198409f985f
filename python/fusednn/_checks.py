"""Checks of scalar arguments, the one home of their rule and messages: the functional ops, the
NumPy references and the optimizer classes call these (the compiled bindings follow the same
rule in ``float_arg``, csrc/bind/args.cpp). Each raises TypeError/ValueError naming the
argument, the expectation and the value.

The rule:
- a real-valued argument (a rate, probability, epsilon, momentum, ...) is a Python ``int`` or
  ``float`` or a NumPy real scalar (``numpy.floating``, ``numpy.integer``); ``bool`` and
  ``numpy.bool_``, arrays of any shape (0-d and 1-element ones too), complex numbers, ``None`` and
  strings are a TypeError;
- an integer argument (a step count, a seed) is a Python ``int`` or a NumPy integer, not a bool;
- a flag (``training``, ``nesterov``, ``amsgrad``, ...) is ``True``/``False`` or a ``numpy.bool_``;
  anything else, ``None`` and 0/1 included, is a TypeError.
Then the value's range is checked (ValueError; NaN is outside every range).
"""

import math
import numbers

import numpy as np

_REAL = (int, float, np.integer, np.floating)
_INTEGER = (int, np.integer)
_BOOL = (bool, np.bool_)


def _show(value):
    """A value in a ValueError message (one of the accepted types)."""
    return str(value) if isinstance(value, (numbers.Number, np.number)) else repr(value)


def _rejected(name, expected, value):
    """The TypeError for a value of the wrong type: its repr and its type."""
    t = type(value)
    return TypeError(f"{name}: expected {expected}, got {value!r} ({t.__module__}.{t.__qualname__})")


def real(name, value, expected="a real number"):
    """value as a float; TypeError unless it is a real number by the rule above."""
    t = type(value)
    if t is float or t is int:  # the common case, without the isinstance checks
        v = value
    elif isinstance(value, _REAL) and not isinstance(value, _BOOL):
        v = value
    else:
        raise _rejected(name, expected, value)
    try:
        return float(v)
    except OverflowError:  # a Python int beyond float64
        raise ValueError(f"{name}: expected {expected}, got {value!r} (too large for a float64)") from None


def integer(name, value, expected="an integer"):
    """value as an int; TypeError unless it is a Python or NumPy integer (not a bool)."""
    if type(value) is int or (isinstance(value, _INTEGER) and not isinstance(value, _BOOL)):
        return int(value)
    raise _rejected(name, expected, value)


def int64(name, value):
    """value as an int; integer() and, like the bindings' int64 arguments, in [-2**63, 2**63)."""
    v = integer(name, value)
    if not -(1 << 63) <= v < (1 << 63):
        raise ValueError(f"{name}: expected an integer in [-2**63, 2**63), got {v!r}")
    return v


def flag(name, value):
    """value as a bool; TypeError unless it is True/False or a numpy.bool_."""
    if value is True or value is False:
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    raise _rejected(name, "True or False", value)


def at_least_zero(name, value):
    v = real(name, value, "a value >= 0")
    if not v >= 0.0:  # also refuses NaN
        raise ValueError(f"{name}: expected a value >= 0, got {_show(value)}")
    return v


def positive(name, value):
    v = real(name, value, "a value > 0")
    if not v > 0.0:
        raise ValueError(f"{name}: expected a value > 0, got {_show(value)}")
    return v


def in_unit_interval(name, value, closed_right=True):
    """[0, 1] (or [0, 1) when closed_right is False)."""
    interval = "[0, 1]" if closed_right else "[0, 1)"
    v = real(name, value, f"a value in {interval}")
    if not (0.0 <= v <= 1.0 if closed_right else 0.0 <= v < 1.0):
        raise ValueError(f"{name}: expected a value in {interval}, got {_show(value)}")
    return v


def step_number(name, value):
    """An optimizer's step count: an integer in [1, 2**63) (the kernels take int64)."""
    v = integer(name, value, "an integer >= 1")
    if v < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {_show(value)}")
    if v >= 2**63:
        raise ValueError(f"{name}: expected an integer < 2**63 (steps are counted in int64), got {_show(value)}")
    return v


def norm_type(value):
    v = real("norm_type", value, "2.0 or inf")
    if v != 2.0 and v != math.inf:
        raise ValueError(f"norm_type: expected 2.0 or inf, got {_show(value)}")
    return v


def clip_interval(name, value):
    """A clipping interval ``(lo, hi)`` as floats: a number c >= 0 gives (-c, c); a pair (a, b)
    of real numbers (infinite allowed, NaN not) with a <= b gives (a, b)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected a number >= 0 or a pair (a, b) with a <= b, got {value!r}")
        lo = real(f"{name}[0]", value[0], "a real number (the lower bound)")
        hi = real(f"{name}[1]", value[1], "a real number (the upper bound)")
        if not lo <= hi:  # also refuses NaN
            raise ValueError(f"{name}: expected a pair (a, b) with a <= b, got ({_show(value[0])}, {_show(value[1])})")
        return lo, hi
    c = at_least_zero(name, value)
    return -c, c


def p_norm(name, value):
    """The order p of a gradient norm, as torch's ``clip_grad_norm_`` takes it: a real number
    p > 0, inf (max |x|) or -inf (min |x|). 0 (a count of nonzeros, which torch's nested
    per-tensor norm turns into a count of tensors), NaN and negative p are a ValueError."""
    v = real(name, value, "a norm order p > 0, inf or -inf")
    if not (v > 0.0 or v == -math.inf):
        raise ValueError(f"{name}: expected a norm order p > 0, inf or -inf, got {_show(value)}")
    return v


def dtype_str(dtype):
    """A dtype for messages: its name, and for a byte-swapped one ('>f4' on a little-endian
    machine) what it is and how to convert it."""
    dt = np.dtype(dtype)
    if dt.isnative:
        return str(dt)
    native = dt.newbyteorder("=")
    return f"{dt.str} ({native} in non-native byte order; convert with .astype(np.{native}))"


def nesterov(value, momentum, dampening):
    """SGD's nesterov flag, which needs momentum > 0 and no dampening."""
    value = flag("nesterov", value)
    if value and (momentum <= 0 or dampening != 0):
        raise ValueError("nesterov: requires momentum > 0 and dampening = 0")
    return value
