"""Argument checks shared by the data modules (the package-wide rule is in fusednn._checks)."""

import numbers

import numpy as np

from fusednn._checks import _show


def _integer(name, value, low):
    """value as an int; TypeError unless it is an integer (bool is not), ValueError if < low."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected an integer >= {low}, got {_show(value)}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {_show(value)}")
    return int(value)


def _flag(name, value):
    """value as a bool; TypeError unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {_show(value)}")
    return bool(value)


def _choice(name, value, allowed):
    """value, which must be one of the strings in allowed (ValueError otherwise)."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {_show(value)}")
    return value
