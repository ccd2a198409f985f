r"""Learning-rate schedules: pure functions of the step count.

A schedule is called with ``step``, the number of optimizer updates done so far (0, 1, 2,
...), and returns the learning rate (a ``float``) for the next update::

    sched = warmup(cosine(0.1, T_max=9_000), steps=1_000)
    for step in range(10_000):
        lr = sched(step)
        ...

Every schedule is a :class:`Schedule`: ``sched(step)``, ``repr(sched)``, ``sched.values(n)``
(the first n values as a float64 array) and ``sched.plot()`` (matplotlib). Schedules compose:
:func:`warmup` ramps into another schedule, :func:`sequential` joins several at milestones,
and :class:`ReduceLROnPlateau` scales one by a factor that shrinks when a metric stalls.
Arguments are checked when a schedule is built (``ValueError``/``TypeError`` naming the
argument); calling one with a negative or non-integer step raises too.

Where ``torch.optim.lr_scheduler`` has the schedule, the value at ``step`` equals the lr torch
reports after ``step`` scheduler steps (its chainable ``step()`` path, which for several
classes is a recursion whose rounding differs from the closed forms below by a few ulps; the
two agree to a relative 1e-12 in float64). With ``t`` the step:

- ``constant(lr)``: ``lr``.
- ``piecewise_constant(boundaries, values)``: ``values[i]`` for
  ``boundaries[i-1] <= t < boundaries[i]``. torch's ``ConstantLR(factor, total_iters)`` is
  ``piecewise_constant([total_iters], [lr * factor, lr])``.
- ``step_decay(lr, step_size, gamma=0.1)``: ``lr * gamma ** (t // step_size)``. torch ``StepLR``.
- ``multistep(lr, milestones, gamma=0.1)``: ``lr * gamma ** k``, k the number of milestones
  ``<= t``. torch ``MultiStepLR``.
- ``inverse_time(lr, decay_rate, decay_steps=1, staircase=False)``:
  ``lr / (1 + decay_rate * p)`` with ``p = t / decay_steps``. Keras ``InverseTimeDecay``.
- ``exponential(lr, gamma, decay_steps=1, staircase=False)``: ``lr * gamma ** p``. torch
  ``ExponentialLR`` (decay_steps=1); Keras ``ExponentialDecay``.
- ``natural_exponential(lr, decay_rate, decay_steps=1, staircase=False)``:
  ``lr * exp(-decay_rate * p)``. TF ``natural_exp_decay``.
- ``cosine(lr, T_max, eta_min=0.0)``:
  ``eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``. torch ``CosineAnnealingLR``.
- ``linear(lr, start_factor=1/3, end_factor=1.0, total_iters=5)``:
  ``lr * (s + (e - s) * min(t, total_iters) / total_iters)``. torch ``LinearLR``.
- ``warmup(schedule, steps, start_factor=0.0)``: ``schedule(0) * (s + (1 - s) * (t + 1) / steps)``
  for t < steps (the course's ``lr0 * t' / T'`` for update t' = t + 1 = 1..T'), then
  ``schedule(t - steps)``. torch ``SequentialLR([LinearLR(s + (1 - s) / steps, 1.0, steps - 1),
  scheduler], [steps])``.
- ``cyclic(base_lr, max_lr, step_size_up=2000, step_size_down=None, mode, gamma)``: a
  triangle wave: up from base_lr over step_size_up steps, down over step_size_down, with the
  amplitude ``max_lr - base_lr`` times 1 ("triangular"), ``1 / 2 ** (cycle - 1)``
  ("triangular2", cycle = 1, 2, ...) or ``gamma ** t`` ("exp_range"). torch ``CyclicLR``.
- ``cosine_warm_restarts(lr, T_0, T_mult=1, eta_min=0.0)``: the cosine above restarted after
  cycles of T_0, T_0 T_mult, T_0 T_mult^2, ... steps. torch ``CosineAnnealingWarmRestarts``.
- ``sequential(schedules, milestones)``: ``schedules[i](t - milestones[i-1])`` for
  ``milestones[i-1] <= t < milestones[i]``. torch ``SequentialLR``.
- ``ReduceLROnPlateau(...)``: ``max(schedule(t) * factor ** reductions, min_lr)``, reducing
  when the metric given to ``.step(metric)`` stalls. torch ``ReduceLROnPlateau``.
- ``scale_lr(base_lr, batch_size, base_batch_size=256, rule="linear")``: the linear (or
  square-root) scaling of the lr with the batch size (Goyal et al. 2017).

``inverse_time``, ``exponential`` and ``natural_exponential`` take ``staircase=True`` to use
``p = t // decay_steps`` (the rate drops every decay_steps updates), as Keras does.

Differences from torch, all in what is accepted rather than in values: ``linear`` allows any
factors >= 0 (torch wants start_factor in (0, 1] and end_factor in [0, 1], because its
recursion divides by the factor); ``cosine(..., hold_eta_min=True)`` stays at eta_min after
T_max (torch's cosine rises again, periodic in 2 T_max, which is the default here too);
``sequential`` gives each schedule its own lr (torch's sub-schedulers all start from the
optimizer's lr); ``piecewise_constant`` switches *at* a boundary, like milestones here and
in torch (Keras' ``PiecewiseConstantDecay`` switches one step later, at ``t > boundary``);
``ReduceLROnPlateau`` never returns less than min_lr, even before its first reduction (torch
leaves an initial lr below min_lr alone until it reduces).
"""

from __future__ import annotations

import math
import numbers
import operator
from bisect import bisect_right

import numpy as np

__all__ = [
    "Schedule", "constant", "piecewise_constant", "step_decay", "multistep", "inverse_time", "exponential",
    "natural_exponential", "cosine", "linear", "warmup", "cyclic", "cosine_warm_restarts", "sequential",
    "ReduceLROnPlateau", "scale_lr",
]


# ----------------------------------------------------------------------------------------------
# argument checks


def _int(name, value, minimum, what=None):
    """value as an int >= minimum; TypeError for a non-integer (bool included), else ValueError."""
    expected = f"{name}: expected " + (what or f"an integer >= {minimum}, got {value!r}")
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(expected)
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(expected) from None
    if value < minimum:
        raise ValueError(expected)
    return value


def _fmt(x):
    return repr(int(x)) if float(x).is_integer() else repr(x)


def _real(name, value, lo=None, hi=None, lo_open=False, hi_open=False):
    """value as a finite float in the given range; TypeError for a non-number, else ValueError."""
    if lo is not None and hi is not None:
        rng = f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    elif lo is not None:
        rng = f"{'>' if lo_open else '>='} {_fmt(lo)}"
    elif hi is not None:
        rng = f"{'<' if hi_open else '<='} {_fmt(hi)}"
    else:
        rng = ""
    expected = f"{name}: expected a finite number {rng}".rstrip() + f", got {value!r}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(expected)
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(expected)
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise ValueError(expected)
    if hi is not None and (value > hi or (hi_open and value == hi)):
        raise ValueError(expected)
    return value


def _int_list(name, values, minimum, strict):
    """A list of ints >= minimum, increasing (strictly or not)."""
    order = "an increasing" if strict else "a non-decreasing"
    expected = f"{name}: expected {order} sequence of integers >= {minimum}, got {values!r}"
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(expected)
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)):
            raise TypeError(expected)
        try:
            v = operator.index(v)
        except TypeError:
            raise TypeError(expected) from None
        if v < minimum:
            raise ValueError(expected)
        out.append(v)
    for a, b in zip(out, out[1:]):
        if b < a or (strict and b == a):
            raise ValueError(expected)
    return out


def _check_step(step):
    return _int("step", step, 0)


def _as_schedule(name, value):
    """A Schedule as is, a number as constant(number), any other callable wrapped."""
    if isinstance(value, Schedule):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return constant(value)
    if callable(value):
        return _Function(value)
    raise TypeError(f"{name}: expected a Schedule, a callable step -> lr or a number, got {value!r}")


# ----------------------------------------------------------------------------------------------
# base class


class Schedule:
    """Base class of all schedules: ``schedule(step) -> lr`` for step = 0, 1, 2, ...

    A subclass implements ``_value(step)``, which receives a checked ``int >= 0`` and returns
    the learning rate; ``__call__`` checks the step and returns ``float(self._value(step))``.
    ``repr`` shows the call that builds the schedule (from ``_name`` and ``_params``), and
    ``_default_steps()`` says how many steps ``plot()`` draws by default (100).
    """

    _name = None  # the factory's name; None: the class name
    _params = ()  # (argument name or None, value) pairs shown by repr

    def _value(self, step):
        raise NotImplementedError

    def _default_steps(self):
        """How many steps plot() draws when it is not told."""
        return 100

    def __call__(self, step):
        return float(self._value(_check_step(step)))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" if k else repr(v) for k, v in self._params)
        return f"{self._name or type(self).__name__}({args})"

    def values(self, n):
        """The first ``n`` values (steps 0 .. n-1) as a float64 array of shape ``(n,)``."""
        n = _int("n", n, 0)
        return np.array([float(self._value(t)) for t in range(n)], dtype=np.float64)

    def plot(self, steps=None, ax=None):
        """Draw the schedule with matplotlib and return the Axes.

        ``steps``: an int n (steps 0 .. n-1), a sequence of steps, or None for a length that
        shows the schedule's shape (one cosine period, three cycles, ...). ``ax``: the Axes to
        draw on; None makes a new figure (this needs ``matplotlib.pyplot``).
        """
        if steps is None:
            steps = range(self._default_steps())
        elif isinstance(steps, numbers.Integral) and not isinstance(steps, (bool, np.bool_)):
            steps = range(_int("steps", steps, 1))
        elif hasattr(steps, "__iter__"):
            steps = [_check_step(t) for t in steps]
        else:
            raise TypeError(f"steps: expected None, an integer or a sequence of steps, got {steps!r}")
        lrs = [float(self._value(t)) for t in steps]
        if ax is None:
            try:
                import matplotlib.pyplot as plt
            except ImportError as err:
                raise ImportError("Schedule.plot needs matplotlib; install it with `pip install matplotlib`") from err
            _, ax = plt.subplots()
        ax.plot(list(steps), lrs, label=repr(self))
        ax.set_xlabel("step")
        ax.set_ylabel("learning rate")
        return ax


class _Function(Schedule):
    _name = "schedule"

    def __init__(self, fn):
        self._fn = fn
        self._params = ((None, fn),)

    def _value(self, step):
        return float(self._fn(step))


# ----------------------------------------------------------------------------------------------
# closed-form schedules


class _Constant(Schedule):
    _name = "constant"

    def __init__(self, lr):
        self.lr = _real("lr", lr, lo=0)
        self._params = (("lr", self.lr),)

    def _value(self, step):
        return self.lr


def constant(lr):
    """``lr`` at every step."""
    return _Constant(lr)


class _PiecewiseConstant(Schedule):
    _name = "piecewise_constant"

    def __init__(self, boundaries, values):
        self.boundaries = _int_list("boundaries", boundaries, 1, strict=True)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise TypeError(f"values: expected a sequence of numbers, got {values!r}")
        values = list(values)
        if len(values) != len(self.boundaries) + 1:
            raise ValueError(f"values: expected len(boundaries) + 1 = {len(self.boundaries) + 1} values, "
                             f"got {len(values)}")
        self.lr_values = [_real(f"values[{i}]", v, lo=0) for i, v in enumerate(values)]
        self._params = (("boundaries", self.boundaries), ("values", self.lr_values))

    def _value(self, step):
        return self.lr_values[bisect_right(self.boundaries, step)]

    def _default_steps(self):
        return self.boundaries[-1] * 5 // 4 + 1 if self.boundaries else 100


def piecewise_constant(boundaries, values):
    """``values[0]`` for step < boundaries[0], ``values[i]`` for boundaries[i-1] <= step <
    boundaries[i], ``values[-1]`` from boundaries[-1] on. ``boundaries``: increasing integers
    >= 1; ``values``: one more than boundaries. (Keras' PiecewiseConstantDecay switches one
    step later, at step > boundary.) torch's ``ConstantLR(factor, total_iters)`` is
    ``piecewise_constant([total_iters], [lr * factor, lr])``."""
    return _PiecewiseConstant(boundaries, values)


class _StepDecay(Schedule):
    _name = "step_decay"

    def __init__(self, lr, step_size, gamma):
        self.lr = _real("lr", lr, lo=0)
        self.step_size = _int("step_size", step_size, 1)
        self.gamma = _real("gamma", gamma, lo=0)
        self._params = (("lr", self.lr), ("step_size", self.step_size), ("gamma", self.gamma))

    def _value(self, step):
        return self.lr * self.gamma ** (step // self.step_size)

    def _default_steps(self):
        return 4 * self.step_size


def step_decay(lr, step_size, gamma=0.1):
    """``lr * gamma ** (step // step_size)``: decays by gamma every step_size steps (torch StepLR)."""
    return _StepDecay(lr, step_size, gamma)


class _MultiStep(Schedule):
    _name = "multistep"

    def __init__(self, lr, milestones, gamma):
        self.lr = _real("lr", lr, lo=0)
        self.milestones = _int_list("milestones", milestones, 0, strict=False)
        self.gamma = _real("gamma", gamma, lo=0)
        self._params = (("lr", self.lr), ("milestones", self.milestones), ("gamma", self.gamma))

    def _value(self, step):
        return self.lr * self.gamma ** bisect_right(self.milestones, step)

    def _default_steps(self):
        return self.milestones[-1] * 5 // 4 + 1 if self.milestones else 100


def multistep(lr, milestones, gamma=0.1):
    """``lr * gamma ** k`` with k the number of milestones <= step (torch MultiStepLR; a
    milestone listed twice decays twice, as in torch). ``milestones``: non-decreasing integers >= 0."""
    return _MultiStep(lr, milestones, gamma)


class _Decay(Schedule):
    """Shared by the three decay_steps/staircase schedules."""

    def __init__(self, lr, rate_name, rate, decay_steps, staircase, rate_lo, rate_lo_open):
        self.lr = _real("lr", lr, lo=0)
        self.rate = _real(rate_name, rate, lo=rate_lo, lo_open=rate_lo_open)
        self.decay_steps = _int("decay_steps", decay_steps, 1)
        if not isinstance(staircase, (bool, np.bool_)):
            raise TypeError(f"staircase: expected a bool, got {staircase!r}")
        self.staircase = bool(staircase)
        self._params = (("lr", self.lr), (rate_name, self.rate), ("decay_steps", self.decay_steps),
                        ("staircase", self.staircase))

    def _p(self, step):
        return step // self.decay_steps if self.staircase else step / self.decay_steps

    def _default_steps(self):
        return max(100, 10 * self.decay_steps)


class _InverseTime(_Decay):
    _name = "inverse_time"

    def __init__(self, lr, decay_rate, decay_steps, staircase):
        super().__init__(lr, "decay_rate", decay_rate, decay_steps, staircase, 0, False)

    def _value(self, step):
        return self.lr / (1 + self.rate * self._p(step))


def inverse_time(lr, decay_rate, decay_steps=1, staircase=False):
    """``lr / (1 + decay_rate * p)`` with ``p = step / decay_steps`` (``step // decay_steps``
    with staircase), as Keras InverseTimeDecay (in float64). decay_rate >= 0."""
    return _InverseTime(lr, decay_rate, decay_steps, staircase)


class _Exponential(_Decay):
    _name = "exponential"

    def __init__(self, lr, gamma, decay_steps, staircase):
        super().__init__(lr, "gamma", gamma, decay_steps, staircase, 0, True)

    def _value(self, step):
        return self.lr * self.rate ** self._p(step)


def exponential(lr, gamma, decay_steps=1, staircase=False):
    """``lr * gamma ** p`` with ``p = step / decay_steps`` (``step // decay_steps`` with
    staircase). With decay_steps=1 this is torch ExponentialLR; otherwise Keras
    ExponentialDecay with decay_rate=gamma. gamma > 0."""
    return _Exponential(lr, gamma, decay_steps, staircase)


class _NaturalExponential(_Decay):
    _name = "natural_exponential"

    def __init__(self, lr, decay_rate, decay_steps, staircase):
        super().__init__(lr, "decay_rate", decay_rate, decay_steps, staircase, 0, False)

    def _value(self, step):
        return self.lr * math.exp(-self.rate * self._p(step))


def natural_exponential(lr, decay_rate, decay_steps=1, staircase=False):
    """``lr * exp(-decay_rate * p)`` with ``p = step / decay_steps`` (``step // decay_steps``
    with staircase), as TF's natural_exp_decay. decay_rate >= 0."""
    return _NaturalExponential(lr, decay_rate, decay_steps, staircase)


class _Cosine(Schedule):
    _name = "cosine"

    def __init__(self, lr, T_max, eta_min, hold_eta_min):
        self.lr = _real("lr", lr, lo=0)
        self.T_max = _int("T_max", T_max, 1)
        self.eta_min = _real("eta_min", eta_min, lo=0)
        if not isinstance(hold_eta_min, (bool, np.bool_)):
            raise TypeError(f"hold_eta_min: expected a bool, got {hold_eta_min!r}")
        self.hold_eta_min = bool(hold_eta_min)
        self._params = (("lr", self.lr), ("T_max", self.T_max), ("eta_min", self.eta_min))
        if self.hold_eta_min:
            self._params += (("hold_eta_min", True),)

    def _value(self, step):
        if self.hold_eta_min and step >= self.T_max:
            return self.eta_min
        return self.eta_min + (self.lr - self.eta_min) * (1 + math.cos(math.pi * step / self.T_max)) / 2

    def _default_steps(self):
        return self.T_max + 1


def cosine(lr, T_max, eta_min=0.0, *, hold_eta_min=False):
    """``eta_min + (lr - eta_min) * (1 + cos(pi * step / T_max)) / 2``: from lr at step 0 to
    eta_min at step T_max (torch CosineAnnealingLR). After T_max the curve rises again
    (period 2 T_max), as torch's does; ``hold_eta_min=True`` stays at eta_min instead."""
    return _Cosine(lr, T_max, eta_min, hold_eta_min)


class _Linear(Schedule):
    _name = "linear"

    def __init__(self, lr, start_factor, end_factor, total_iters):
        self.lr = _real("lr", lr, lo=0)
        self.start_factor = _real("start_factor", start_factor, lo=0)
        self.end_factor = _real("end_factor", end_factor, lo=0)
        self.total_iters = _int("total_iters", total_iters, 1)
        self._params = (("lr", self.lr), ("start_factor", self.start_factor), ("end_factor", self.end_factor),
                        ("total_iters", self.total_iters))

    def _value(self, step):
        s, e, n = self.start_factor, self.end_factor, self.total_iters
        return self.lr * (s + (e - s) * min(n, step) / n)

    def _default_steps(self):
        return 2 * self.total_iters + 1


def linear(lr, start_factor=1 / 3, end_factor=1.0, total_iters=5):
    """``lr * (s + (e - s) * min(step, total_iters) / total_iters)``: the factor moves linearly
    from start_factor to end_factor over total_iters steps, then stays (torch LinearLR; torch
    restricts start_factor to (0, 1] and end_factor to [0, 1], here any factor >= 0 is allowed)."""
    return _Linear(lr, start_factor, end_factor, total_iters)


class _Warmup(Schedule):
    _name = "warmup"

    def __init__(self, schedule, steps, start_factor):
        self.schedule = _as_schedule("schedule", schedule)
        self.steps = _int("steps", steps, 0)
        self.start_factor = _real("start_factor", start_factor, lo=0, hi=1)
        self._params = ((None, self.schedule), ("steps", self.steps), ("start_factor", self.start_factor))

    def _value(self, step):
        if step >= self.steps:
            return self.schedule(step - self.steps)
        s = self.start_factor
        return self.schedule(0) * (s + (1.0 - s) * (step + 1) / self.steps)

    def _default_steps(self):
        return self.steps + self.schedule._default_steps()


def warmup(schedule, steps, start_factor=0.0):
    """Ramp linearly into ``schedule``: ``schedule(0) * (s + (1 - s) * (step + 1) / steps)``
    for step < steps (s = start_factor, in [0, 1]; ``step`` counts the updates done before
    this one), then ``schedule(step - steps)``. With s = 0 this is the course's warmup
    ``lr0 * t / T'`` for the updates t = 1..T' (T' = steps): the first update uses lr0 / T',
    not 0, and the last update of the ramp uses lr0 = schedule(0), where the wrapped
    schedule's clock then starts. (To decay over a total of T steps, give the decay
    T - steps.) steps=0 is no warmup. For steps >= 2 this is torch's
    ``SequentialLR([LinearLR(s + (1 - s) / steps, 1.0, steps - 1), scheduler],
    milestones=[steps])``. ``schedule`` may also be a number (a constant lr)."""
    return _Warmup(schedule, steps, start_factor)


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


class _Cyclic(Schedule):
    _name = "cyclic"

    def __init__(self, base_lr, max_lr, step_size_up, step_size_down, mode, gamma):
        self.base_lr = _real("base_lr", base_lr, lo=0)
        self.max_lr = _real("max_lr", max_lr, lo=0)
        self.step_size_up = _int("step_size_up", step_size_up, 1)
        if step_size_down is None:
            self.step_size_down = self.step_size_up
        else:
            self.step_size_down = _int("step_size_down", step_size_down, 0,
                                       f"None or an integer >= 0, got {step_size_down!r}")
        if mode not in _CYCLIC_MODES:
            raise ValueError(f"mode: expected one of {', '.join(map(repr, _CYCLIC_MODES))}, got {mode!r}")
        self.mode = mode
        self.gamma = _real("gamma", gamma, lo=0, lo_open=True)
        # the same float arithmetic as torch's CyclicLR.get_lr
        up, down = float(self.step_size_up), float(self.step_size_down)
        self._total = up + down
        self._ratio = up / self._total
        self._params = (("base_lr", self.base_lr), ("max_lr", self.max_lr), ("step_size_up", self.step_size_up),
                        ("step_size_down", self.step_size_down), ("mode", self.mode), ("gamma", self.gamma))

    def _value(self, step):
        cycle = math.floor(1 + step / self._total)
        x = 1.0 + step / self._total - cycle
        if x <= self._ratio:
            scale_factor = x / self._ratio
        else:
            scale_factor = (x - 1) / (self._ratio - 1)
        height = (self.max_lr - self.base_lr) * scale_factor
        if self.mode == "triangular":
            return self.base_lr + height * 1.0
        if self.mode == "triangular2":
            return self.base_lr + height * (1 / (2.0 ** (cycle - 1)))
        return self.base_lr + height * self.gamma ** step

    def _default_steps(self):
        return 3 * (self.step_size_up + self.step_size_down) + 1


def cyclic(base_lr, max_lr, step_size_up=2000, step_size_down=None, mode="triangular", gamma=1.0):
    """A triangle wave (torch CyclicLR, Smith 2017): each cycle rises linearly from base_lr to
    max_lr over step_size_up steps and falls back over step_size_down (default: step_size_up)
    steps. The amplitude ``max_lr - base_lr`` is multiplied by 1 ("triangular"),
    ``1 / 2 ** (cycle - 1)`` with cycle = 1, 2, ... ("triangular2": halved every cycle) or
    ``gamma ** step`` ("exp_range"). step_size_down=0 gives a sawtooth."""
    return _Cyclic(base_lr, max_lr, step_size_up, step_size_down, mode, gamma)


class _CosineWarmRestarts(Schedule):
    _name = "cosine_warm_restarts"

    def __init__(self, lr, T_0, T_mult, eta_min):
        self.lr = _real("lr", lr, lo=0)
        self.T_0 = _int("T_0", T_0, 1)
        self.T_mult = _int("T_mult", T_mult, 1)
        self.eta_min = _real("eta_min", eta_min, lo=0)
        self._params = (("lr", self.lr), ("T_0", self.T_0), ("T_mult", self.T_mult), ("eta_min", self.eta_min))

    def cycle(self, step):
        """(T_cur, T_i): steps since the last restart and the length of the current cycle."""
        step = _check_step(step)
        if self.T_mult == 1:
            return step % self.T_0, self.T_0
        start, T_i = 0, self.T_0  # exact integers: restarts at T_0, T_0 (1 + T_mult), ...
        while step >= start + T_i:
            start += T_i
            T_i *= self.T_mult
        return step - start, T_i

    def _value(self, step):
        T_cur, T_i = self.cycle(step)
        return self.eta_min + (self.lr - self.eta_min) * (1 + math.cos(math.pi * T_cur / T_i)) / 2

    def _default_steps(self):
        return self.T_0 * (1 + self.T_mult + self.T_mult ** 2)


def cosine_warm_restarts(lr, T_0, T_mult=1, eta_min=0.0):
    """SGDR (Loshchilov & Hutter 2017; torch CosineAnnealingWarmRestarts):
    ``eta_min + (lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2`` where T_cur counts the
    steps since the last restart and T_i is the current cycle length: T_0, T_0 T_mult,
    T_0 T_mult^2, ...; restarts (back to lr) happen at T_0, T_0 (1 + T_mult), ..."""
    return _CosineWarmRestarts(lr, T_0, T_mult, eta_min)


class _Sequential(Schedule):
    _name = "sequential"

    def __init__(self, schedules, milestones):
        if isinstance(schedules, (str, bytes)) or not hasattr(schedules, "__iter__"):
            raise TypeError(f"schedules: expected a sequence of schedules, got {schedules!r}")
        schedules = list(schedules)
        if not schedules:
            raise ValueError("schedules: expected at least one schedule, got none")
        self.schedules = [_as_schedule(f"schedules[{i}]", s) for i, s in enumerate(schedules)]
        self.milestones = _int_list("milestones", milestones, 1, strict=True)
        if len(self.milestones) != len(self.schedules) - 1:
            raise ValueError(f"milestones: expected len(schedules) - 1 = {len(self.schedules) - 1} milestones, "
                             f"got {len(self.milestones)}")
        self._params = ((None, self.schedules), ("milestones", self.milestones))

    def _value(self, step):
        i = bisect_right(self.milestones, step)
        return self.schedules[i](step - self.milestones[i - 1] if i else step)

    def _default_steps(self):
        return (self.milestones[-1] if self.milestones else 0) + self.schedules[-1]._default_steps()


def sequential(schedules, milestones):
    """``schedules[0](step)`` for step < milestones[0], then ``schedules[i](step - milestones[i-1])``
    for milestones[i-1] <= step < milestones[i]: each schedule starts from its own step 0 when
    its turn comes (torch SequentialLR). ``milestones``: increasing integers >= 1, one fewer
    than schedules. A schedule may also be a number (a constant lr) or a callable step -> lr."""
    return _Sequential(schedules, milestones)


# ----------------------------------------------------------------------------------------------
# the one stateful schedule


class ReduceLROnPlateau(Schedule):
    """Scale a schedule down by ``factor`` when a metric stops improving (torch ReduceLROnPlateau).

    Call :meth:`step` with the metric once per evaluation; ``self(step)`` is
    ``max(schedule(step) * scale, min_lr)``, where ``scale`` starts at 1 and is multiplied by
    ``factor`` at each reduction. ``schedule``: a Schedule, a float lr, or None for 1.0 (then
    ``self(step)`` is the multiplier itself). With a float lr the values equal torch's lr after
    the same metrics.

    The rules are torch's: a metric improves on the best so far when it is below
    ``best * (1 - threshold)`` (mode "min", threshold_mode "rel"), below ``best - threshold``
    ("min", "abs"), above ``best * (1 + threshold)`` ("max", "rel") or above
    ``best + threshold`` ("max", "abs"). Evaluations without improvement are counted; when
    the count exceeds ``patience`` the lr is reduced, the count restarts and the next
    ``cooldown`` evaluations are not counted. A reduction that would lower the lr by no more
    than ``eps`` (because it is at ``min_lr`` already) is skipped, as torch skips it; with a
    schedule, "the lr" is its value at the step last asked for (``self(step)``; 0 before any).

    ``state_dict()`` holds plain numbers (best, num_bad_epochs, cooldown_counter, scale,
    last_epoch: the number of evaluations, last_step); ``load_state_dict`` restores them.
    """

    _name = "ReduceLROnPlateau"
    _STATE = ("best", "num_bad_epochs", "cooldown_counter", "scale", "last_epoch", "last_step")

    def __init__(self, mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel", cooldown=0,
                 min_lr=0.0, eps=1e-8, schedule=None):
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode: expected 'rel' or 'abs', got {threshold_mode!r}")
        self.mode = mode
        self.threshold_mode = threshold_mode
        self.factor = _real("factor", factor, lo=0, hi=1, hi_open=True)
        self.patience = _int("patience", patience, 0)
        self.threshold = _real("threshold", threshold, lo=0)
        self.cooldown = _int("cooldown", cooldown, 0)
        self.min_lr = _real("min_lr", min_lr, lo=0)
        self.eps = _real("eps", eps, lo=0)
        self.schedule = constant(1.0) if schedule is None else _as_schedule("schedule", schedule)
        self._params = (("mode", self.mode), ("factor", self.factor), ("patience", self.patience),
                        ("threshold", self.threshold), ("threshold_mode", self.threshold_mode),
                        ("cooldown", self.cooldown), ("min_lr", self.min_lr), ("eps", self.eps),
                        ("schedule", schedule if schedule is None else self.schedule))
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.scale = 1.0
        self.last_epoch = 0
        self.last_step = 0

    @property
    def in_cooldown(self):
        return self.cooldown_counter > 0

    def _is_better(self, a, best):
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metric):
        """Record one evaluation's metric (a number; a NaN never improves); reduce if due."""
        if isinstance(metric, (bool, np.bool_)):
            raise TypeError(f"metric: expected a number, got {metric!r}")
        try:
            current = float(metric)
        except (TypeError, ValueError):
            raise TypeError(f"metric: expected a number, got {metric!r}") from None
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad evaluations in cooldown are not counted
        if self.num_bad_epochs > self.patience:
            old_lr = self._value(self.last_step)
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.scale *= self.factor
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def __call__(self, step):
        step = _check_step(step)
        self.last_step = step
        return float(self._value(step))

    def _value(self, step):
        return max(self.schedule(step) * self.scale, self.min_lr)

    def _default_steps(self):
        return self.schedule._default_steps()

    def state_dict(self):
        return {k: getattr(self, k) for k in self._STATE}

    def load_state_dict(self, state_dict):
        missing = [k for k in self._STATE if k not in state_dict]
        unknown = [k for k in state_dict if k not in self._STATE]
        if missing or unknown:
            raise KeyError(f"state_dict: missing keys {missing}, unexpected keys {unknown}")
        best = state_dict["best"]
        if isinstance(best, (bool, np.bool_)) or not isinstance(best, numbers.Real):
            raise TypeError(f"state_dict['best']: expected a number, got {best!r}")
        new = {
            "best": float(best),
            "num_bad_epochs": _int("state_dict['num_bad_epochs']", state_dict["num_bad_epochs"], 0),
            "cooldown_counter": _int("state_dict['cooldown_counter']", state_dict["cooldown_counter"], 0),
            "scale": _real("state_dict['scale']", state_dict["scale"], lo=0),
            "last_epoch": _int("state_dict['last_epoch']", state_dict["last_epoch"], 0),
            "last_step": _int("state_dict['last_step']", state_dict["last_step"], 0),
        }
        self.__dict__.update(new)


# ----------------------------------------------------------------------------------------------
# batch-size scaling


def scale_lr(base_lr, batch_size, base_batch_size=256, rule="linear"):
    """The learning rate for ``batch_size``, given one tuned at ``base_batch_size``.

    ``rule="linear"``: ``base_lr * batch_size / base_batch_size``, the linear scaling rule of
    Goyal et al. 2017 ("Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"): when the
    batch is k times larger, use a k times larger lr, so that one large-batch update moves the
    weights about as far as k small-batch updates would. It holds for SGD (with momentum) up to
    batches of ~8k on ImageNet, and needs a warmup (they ramp linearly over the first 5
    epochs: :func:`warmup`) because the scaled lr is too large while the weights change fast.
    ``rule="sqrt"``: ``base_lr * sqrt(batch_size / base_batch_size)``, which keeps the
    variance of the update constant (Krizhevsky 2014; Hoffer et al. 2017) and is often the
    better choice for adaptive optimizers such as Adam.
    """
    base_lr = _real("base_lr", base_lr, lo=0)
    batch_size = _int("batch_size", batch_size, 1)
    base_batch_size = _int("base_batch_size", base_batch_size, 1)
    if rule == "linear":
        return float(base_lr * batch_size / base_batch_size)
    if rule == "sqrt":
        return float(base_lr * math.sqrt(batch_size / base_batch_size))
    raise ValueError(f"rule: expected 'linear' or 'sqrt', got {rule!r}")
