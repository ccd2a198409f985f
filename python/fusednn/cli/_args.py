"""argparse types shared by the subcommands: each parses one flag's text or raises
argparse.ArgumentTypeError('expected ..., got ...')."""

import argparse
import math
import os


class UsageError(Exception):
    """A problem with the command line that argparse could not see (exit code 2)."""


def _integer_at_least(minimum, expected):
    """An argparse type: an integer >= minimum, else the error 'expected <expected>, got ...'."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_positive_int = _integer_at_least(1, "a positive integer")
_seed = _integer_at_least(0, "an integer >= 0")


def _non_negative(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _positive(text):
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _existing_path(text):
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"no such checkpoint file or run directory: {text!r}")
    return text


def _fraction(text):
    value = _non_negative(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value
