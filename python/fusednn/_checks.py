"""Checks of scalar hyperparameters, shared by the functional ops and the optimizer classes.
Each raises TypeError/ValueError naming the argument, the expectation and the value."""

import math
import numbers

import numpy as np


def _show(value):
    return str(value) if isinstance(value, (numbers.Number, np.number)) else repr(value)


def real(name, value, expected):
    """value as a float; TypeError unless it is a real number (bool is not)."""
    if type(value) is float or type(value) is int:  # the common case, without the ABC checks
        return float(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name}: expected {expected}, got {_show(value)}")
    return float(value)


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
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected an integer >= 1, got {_show(value)}")
    if value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {_show(value)}")
    return int(value)


def norm_type(value):
    v = real("norm_type", value, "2.0 or inf")
    if v != 2.0 and v != math.inf:
        raise ValueError(f"norm_type: expected 2.0 or inf, got {_show(value)}")
    return v
