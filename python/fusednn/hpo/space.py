"""Search spaces: one :class:`Dimension` per hyperparameter, collected in a dict.

Every dimension maps its values to and from the unit interval, so the samplers work on the
unit cube ``[0, 1]^d`` whatever the space: :meth:`Dimension.from_unit` turns a point of
``[0, 1]`` into a value, :meth:`Dimension.to_unit` a value into the point that maps back to
it. Uniform dimensions map linearly, log-uniform ones linearly in ``log(value)``; an integer
takes the cell of width ``1 / (hi - lo + 1)`` (of the log axis for ``log=True``) that holds the
point, a :class:`Choice` of ``k`` options the cell of width ``1 / k`` (the options in their
given order, so an ordered choice such as batch sizes keeps its order for the GP).
"""

import math

import numpy as np

from fusednn import _checks

__all__ = ["Dimension", "Uniform", "LogUniform", "IntUniform", "Choice", "SearchSpace"]

# the value types a Choice option may have (they go into the study's JSON storage as they are)
_OPTION_TYPES = (str, int, float, bool, type(None))


def _finite(name, value):
    v = _checks.real(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return v


def _unit(u):
    """u as a float clipped to [0, 1]; TypeError/ValueError for anything else than a finite real."""
    u = _finite("u", u)
    return min(max(u, 0.0), 1.0)


class Dimension:
    """One hyperparameter: ``from_unit(u)`` (u in [0, 1], clipped), ``to_unit(value)``,
    ``grid(resolution)`` (the values a grid search tries) and ``sample(rng)``."""

    def from_unit(self, u):
        raise NotImplementedError

    def to_unit(self, value):
        raise NotImplementedError

    def grid(self, resolution):
        raise NotImplementedError

    def sample(self, rng):
        """A value drawn uniformly on the unit interval and mapped by :meth:`from_unit`."""
        return self.from_unit(float(rng.random()))

    def describe(self):
        """A JSON-able description (the storage compares it when a study is resumed)."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.describe() == other.describe()

    def __hash__(self):
        return hash(repr(self))

    def __repr__(self):
        d = self.describe()
        args = ", ".join(f"{k}={v!r}" for k, v in d.items() if k != "type")
        return f"{d['type']}({args})"


class Uniform(Dimension):
    """A float uniform on ``[lo, hi]`` (``lo < hi``, both finite)."""

    def __init__(self, lo, hi):
        self.lo, self.hi = _finite("lo", lo), _finite("hi", hi)
        if not self.lo < self.hi:
            raise ValueError(f"Uniform: expected lo < hi, got lo={lo!r}, hi={hi!r}")

    def from_unit(self, u):
        u = _unit(u)
        return self.hi if u == 1.0 else min(self.lo + u * (self.hi - self.lo), self.hi)

    def to_unit(self, value):
        v = _finite("value", value)
        if not self.lo <= v <= self.hi:
            raise ValueError(f"value: expected a number in [{self.lo}, {self.hi}], got {value!r}")
        return (v - self.lo) / (self.hi - self.lo)

    def grid(self, resolution):
        return [self.from_unit(u) for u in _grid_points(resolution)]

    def describe(self):
        return {"type": "Uniform", "lo": self.lo, "hi": self.hi}


class LogUniform(Dimension):
    """A float whose logarithm is uniform on ``[log lo, log hi]`` (``0 < lo < hi``): learning
    rates, weight decays."""

    def __init__(self, lo, hi):
        self.lo, self.hi = _finite("lo", lo), _finite("hi", hi)
        if not self.lo > 0:
            raise ValueError(f"LogUniform: expected lo > 0 (a log range cannot include 0 or negative values), got "
                             f"lo={lo!r}")
        if not self.lo < self.hi:
            raise ValueError(f"LogUniform: expected lo < hi, got lo={lo!r}, hi={hi!r}")
        self._a, self._b = math.log(self.lo), math.log(self.hi)

    def from_unit(self, u):
        u = _unit(u)
        if u == 0.0 or u == 1.0:  # the ends exactly
            return self.lo if u == 0.0 else self.hi
        return min(max(math.exp(self._a + u * (self._b - self._a)), self.lo), self.hi)

    def to_unit(self, value):
        v = _finite("value", value)
        if not self.lo <= v <= self.hi:
            raise ValueError(f"value: expected a number in [{self.lo}, {self.hi}], got {value!r}")
        return min(max((math.log(v) - self._a) / (self._b - self._a), 0.0), 1.0)

    def grid(self, resolution):
        return [self.from_unit(u) for u in _grid_points(resolution)]

    def describe(self):
        return {"type": "LogUniform", "lo": self.lo, "hi": self.hi}


class IntUniform(Dimension):
    """An integer in ``[lo, hi]`` (both included, ``lo < hi``), uniform, or log-uniform with
    ``log=True`` (then ``lo >= 1``): hidden widths, batch sizes."""

    def __init__(self, lo, hi, log=False):
        self.lo, self.hi = _checks.integer("lo", lo), _checks.integer("hi", hi)
        self.log = _checks.flag("log", log)
        if not self.lo < self.hi:
            raise ValueError(f"IntUniform: expected lo < hi, got lo={lo!r}, hi={hi!r}")
        if self.log and self.lo < 1:
            raise ValueError(f"IntUniform: a log range needs lo >= 1 (it cannot include 0 or negative values), got "
                             f"lo={lo!r}")
        # each integer k owns [k - 0.5, k + 0.5) of the (log) axis
        lo_edge, hi_edge = self.lo - 0.5, self.hi + 0.5
        self._a, self._b = (math.log(lo_edge), math.log(hi_edge)) if self.log else (lo_edge, hi_edge)

    def from_unit(self, u):
        t = self._a + _unit(u) * (self._b - self._a)
        v = math.exp(t) if self.log else t
        return int(min(max(math.floor(v + 0.5), self.lo), self.hi))

    def to_unit(self, value):
        v = _checks.integer("value", value)
        if not self.lo <= v <= self.hi:
            raise ValueError(f"value: expected an integer in [{self.lo}, {self.hi}], got {value!r}")
        t = math.log(v) if self.log else float(v)
        return (t - self._a) / (self._b - self._a)

    def grid(self, resolution):
        count = self.hi - self.lo + 1
        if count <= _resolution(resolution):
            return list(range(self.lo, self.hi + 1))
        # evenly spaced from lo to hi on the (log) axis of the values themselves
        a, b = (math.log(self.lo), math.log(self.hi)) if self.log else (self.lo, self.hi)
        values = []
        for u in _grid_points(resolution):
            t = a + u * (b - a)
            k = int(min(max(round(math.exp(t) if self.log else t), self.lo), self.hi))
            if k not in values:
                values.append(k)
        return values

    def describe(self):
        return {"type": "IntUniform", "lo": self.lo, "hi": self.hi, "log": self.log}


class Choice(Dimension):
    """One of ``options`` (a non-empty list of strings, numbers, booleans or None, no two equal)."""

    def __init__(self, options):
        if isinstance(options, (str, bytes)) or not hasattr(options, "__iter__"):
            raise TypeError(f"options: expected a list of options, got {options!r}")
        options = list(options)
        if not options:
            raise ValueError("Choice: expected at least one option, got an empty list")
        for i, o in enumerate(options):
            if isinstance(o, np.generic):
                o = options[i] = o.item()
            if not isinstance(o, _OPTION_TYPES):
                raise TypeError(f"options[{i}]: expected a str, int, float, bool or None, got {o!r} "
                                f"({type(o).__name__})")
            if isinstance(o, float) and not math.isfinite(o):
                raise ValueError(f"options[{i}]: expected a finite number, got {o!r}")
        keys = [(type(o), o) for o in options]
        if len(set(keys)) != len(keys):
            raise ValueError(f"Choice: expected distinct options, got {options!r}")
        self.options = options

    def _index(self, value):
        for i, o in enumerate(self.options):
            if type(o) is type(value) and o == value:
                return i
        raise ValueError(f"value: expected one of {self.options!r}, got {value!r}")

    def from_unit(self, u):
        k = len(self.options)
        return self.options[min(int(_unit(u) * k), k - 1)]

    def to_unit(self, value):
        return (self._index(value) + 0.5) / len(self.options)

    def grid(self, resolution):
        return list(self.options)

    def describe(self):
        return {"type": "Choice", "options": list(self.options)}


def _resolution(resolution):
    r = _checks.integer("resolution", resolution)
    if r < 1:
        raise ValueError(f"resolution: expected an integer >= 1, got {resolution!r}")
    return r


def _grid_points(resolution):
    """``resolution`` evenly spaced points of [0, 1], both ends included (0.5 for one point)."""
    r = _resolution(resolution)
    return [0.5] if r == 1 else [i / (r - 1) for i in range(r)]


class SearchSpace:
    """An ordered ``name -> Dimension`` mapping (a dict's order), with the maps between
    configurations (``{name: value}`` dicts) and points of the unit cube."""

    def __init__(self, space):
        if isinstance(space, SearchSpace):
            space = space.dimensions
        if not isinstance(space, dict):
            raise TypeError(f"space: expected a dict of name -> Uniform/LogUniform/IntUniform/Choice, got "
                            f"{type(space).__name__}")
        if not space:
            raise ValueError("space: expected at least one hyperparameter, got an empty dict")
        for name, dim in space.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"space: expected non-empty string names, got {name!r}")
            if not isinstance(dim, Dimension):
                raise TypeError(f"space[{name!r}]: expected a Uniform, LogUniform, IntUniform or Choice, got {dim!r}")
        self.dimensions = dict(space)
        self.names = list(space)

    def __len__(self):
        return len(self.names)

    def __eq__(self, other):
        return isinstance(other, SearchSpace) and self.describe() == other.describe()

    def __repr__(self):
        return f"SearchSpace({self.dimensions!r})"

    def describe(self):
        return {name: dim.describe() for name, dim in self.dimensions.items()}

    def from_unit(self, point):
        """The configuration of a point of the unit cube (values outside [0, 1] are clipped)."""
        point = np.asarray(point, dtype=float)
        if point.shape != (len(self),):
            raise ValueError(f"point: expected shape ({len(self)},), got {point.shape}")
        return {name: self.dimensions[name].from_unit(float(u)) for name, u in zip(self.names, point)}

    def to_unit(self, config):
        """The unit-cube point of a configuration (a dict with exactly this space's names)."""
        self.check(config)
        return np.array([self.dimensions[name].to_unit(config[name]) for name in self.names])

    def sample(self, rng):
        return self.from_unit(rng.random(len(self)))

    def check(self, config):
        if not isinstance(config, dict):
            raise TypeError(f"config: expected a dict, got {type(config).__name__}")
        if set(config) != set(self.names):
            raise ValueError(f"config: expected the keys {self.names}, got {sorted(config)}")

    def key(self, config):
        """A hashable key of a configuration (to tell configurations apart)."""
        return tuple((type(config[n]).__name__, config[n]) for n in self.names)

