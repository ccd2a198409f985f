"""Differential fuzz tests: every public op of fusednn.ops against its twin in fusednn.reference.

Hypothesis draws shapes (0-size, one row, one column, odd sizes), layouts (C, Fortran,
non-contiguous, negative strides), dtypes (float32, float64), values (with NaN and inf in the
elementwise cases), scalar arguments (valid ones and hostile ones: NaN, inf, negative, huge,
wrong type) and out= arrays (fresh ones, and ones that alias an input). The rule:

- the op and the reference agree (conftest's assert_close: against the float64 reference for
  float32 inputs, else the table), inputs that are not written in place are left unchanged,
  and arrays written in place hold the same values afterwards; or
- both raise, with the same exception type;
- an out= that overlaps an input either raises a ValueError/TypeError or gives the answer the
  reference gives without aliasing;
- a scalar of a type no scalar argument takes (a string, an array, a complex, a list), in
  otherwise valid arguments, is a TypeError that names the argument.

Bugs the tests found have regression tests of their own (test_optimizer_step_beyond_int64...,
below the builders).

Examples per test: the conftest hypothesis profile ("ci": fixed seed, 60; ``--fuzz-long``:
5000). Each op has three tests (matches, hostile scalars, out= aliasing where it has out=).
"""

import inspect
import math

import numpy as np
import pytest
from hypothesis import Phase, given, note, settings
from hypothesis import strategies as st

from conftest import DEVICES, array_module, assert_close, to_numpy
from fusednn import ops
from fusednn import reference as ref
from fusednn.ops.augment import PARAM_KEYS

DIMS = [0, 1, 2, 3, 5, 7, 16]
LAYOUTS = ["C", "F", "strided", "reversed"]
FLOATS = [np.float32, np.float64]


# ----------------------------------------------------------------------------------------------
# Inputs: each array is described by its values and a layout, and materialized separately for
# the op (on the device), the reference and the wide reference, so that nothing is shared.
# ----------------------------------------------------------------------------------------------
class Arr:
    """An input array: contiguous NumPy values plus the layout to present them in.
    written: the op writes it in place (it must then be C-contiguous to be accepted)."""

    def __init__(self, values, layout="C", written=False):
        self.values, self.layout, self.written = values, layout, written

    def __repr__(self):
        v = self.values
        return f"Arr({v.dtype}{list(v.shape)}, {self.layout}{', written' if self.written else ''})"


def _lay(a, layout, xp):
    """A fresh array with a's values in the given layout."""
    if layout == "F":
        return xp.asfortranarray(a.copy())
    if layout == "strided" and a.ndim >= 1:
        big = xp.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype)
        big[..., 1::2] = a
        return big[..., 1::2]
    if layout == "reversed" and a.ndim >= 1:
        return xp.ascontiguousarray(a[::-1])[::-1]
    return xp.ascontiguousarray(a.copy())


def materialize(obj, xp, wide=False):
    if isinstance(obj, Arr):
        v = obj.values
        if wide and v.dtype == np.float32:
            v = v.astype(np.float64)
        return _lay(xp.asarray(v), obj.layout, xp)
    if isinstance(obj, list):
        return [materialize(o, xp, wide) for o in obj]
    if isinstance(obj, tuple):
        return tuple(materialize(o, xp, wide) for o in obj)
    if isinstance(obj, dict):  # augment's params, an rnn cache, augment_params' spec
        return {k: materialize(v, xp, wide) for k, v in obj.items()}
    return obj


def _arrays(obj):
    """The Arr leaves of obj, in order."""
    if isinstance(obj, Arr):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [a for o in obj for a in _arrays(o)]
    if isinstance(obj, dict):
        return [a for o in obj.values() for a in _arrays(o)]
    return []


def _leaves(obj):
    if isinstance(obj, (list, tuple)):
        return [a for o in obj for a in _leaves(o)]
    if isinstance(obj, dict):
        return [a for o in obj.values() for a in _leaves(o)]
    return [obj]


def _has_float32(obj):
    return any(a.values.dtype == np.float32 for a in _arrays(obj))


def _call(fn, args, kwargs, xp, wide=False):
    """(result, the materialized arrays after the call) or the exception raised."""
    a, k = materialize(args, xp, wide), {n: materialize(v, xp, wide) for n, v in kwargs.items()}
    try:
        with np.errstate(all="ignore"):
            result = fn(*a, **k)
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return e, None
    arrays = [x for x in _leaves((a, k)) if hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, type)]
    return result, arrays


def _compare(actual, expected, expected_wide, kind, what):
    if expected is None:
        assert actual is None, f"{what}: expected None, got {type(actual)}"
        return
    if isinstance(expected, dict):  # augment_params' parameters, an rnn cache or its gradients
        assert isinstance(actual, dict) and list(actual) == list(expected), \
            f"{what}: expected a dict with the keys {list(expected)}, got {actual!r}"
        for k in expected:
            w = expected_wide[k] if expected_wide is not None else None
            _compare(actual[k], expected[k], w, kind, f"{what}[{k!r}]")
        return
    if isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected), \
            f"{what}: expected a sequence of {len(expected)}, got {actual!r}"
        wides = expected_wide if expected_wide is not None else [None] * len(expected)
        for i, (a, e, w) in enumerate(zip(actual, expected, wides)):
            _compare(a, e, w, kind, f"{what}[{i}]")
        return
    a, e = to_numpy(actual), np.asarray(expected)
    assert np.ndim(a) == e.ndim, f"{what}: ndim {np.ndim(a)} != reference's {e.ndim}"
    a = np.asarray(a)
    if e.dtype.kind != "f":
        np.testing.assert_array_equal(a, e, err_msg=what)
        return
    if isinstance(expected, np.ndarray) or isinstance(expected, np.generic):
        assert a.dtype == e.dtype, f"{what}: dtype {a.dtype} != reference's {e.dtype}"
    w = None if expected_wide is None else np.asarray(to_numpy(expected_wide))
    if w is not None and (w.shape != e.shape or w.dtype == e.dtype):
        # No wider twin (a float64 result such as a norm or a penalty sum): the table, with
        # the reductions' row.
        w, kind = None, "transcendental"
    assert_close(a.astype(e.dtype), e, w, kind=kind, err_msg=what)


def check(name, device, args, kwargs=None, *, kind="elementwise", wide=True):
    """ops.<name> and reference.<name> agree on these inputs, or both raise the same type (then
    the op's exception is returned; else None)."""
    kwargs = kwargs or {}
    note(f"{name}: args={args!r} kwargs={kwargs!r}")
    xp = array_module(device)
    got, got_arrays = _call(getattr(ops, name), args, kwargs, xp)
    exp, exp_arrays = _call(getattr(ref, name), args, kwargs, np)
    if isinstance(exp, Exception) or isinstance(got, Exception):
        assert isinstance(exp, Exception), f"{name}: the op raised {got!r}, the reference returned"
        assert isinstance(got, Exception), f"{name}: the reference raised {exp!r}, the op returned"
        assert type(got) is type(exp), f"{name}: the op raised {got!r}, the reference {exp!r}"
        return got
    wide_result = wide_arrays = None
    if wide and _has_float32((args, kwargs)):
        wide_result, wide_arrays = _call(getattr(ref, name), args, kwargs, np, wide=True)
        if isinstance(wide_result, Exception):
            wide_result = wide_arrays = None
    if wide_result is None:
        # float64 inputs (or no wide twin): the table, transcendental row for the reductions.
        kind = "transcendental" if wide else kind
    _compare(got, exp, wide_result, kind, f"{name} result")
    for i, (g, e) in enumerate(zip(got_arrays, exp_arrays)):
        w = wide_arrays[i] if wide_arrays is not None else None
        _compare(g, e, w, kind, f"{name} array argument {i} after the call")


# ----------------------------------------------------------------------------------------------
# Strategies.
# ----------------------------------------------------------------------------------------------
def shapes(min_ndim=1, max_ndim=3, min_side=0):
    return st.lists(st.sampled_from([d for d in DIMS if d >= min_side]), min_size=min_ndim, max_size=max_ndim).map(tuple)


class Gen:
    """Values from a seeded NumPy generator (fast), choices from hypothesis (shrinkable)."""

    def __init__(self, data):
        self.data = data
        self.rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))

    def draw(self, strategy, label=None):
        return self.data.draw(strategy, label=label)

    def dtype(self):
        return self.draw(st.sampled_from(FLOATS), "dtype")

    def layout(self):
        return self.draw(st.sampled_from(LAYOUTS), "layout")

    def values(self, shape, dtype, *, special=False, positive=False, scale=None):
        scale = self.draw(st.sampled_from([1.0, 1e-3, 30.0]), "scale") if scale is None else scale
        v = self.rng.standard_normal(shape) * scale
        if positive:
            v = np.abs(v) + 0.1
        if special and v.size and self.draw(st.booleans(), "specials"):
            flat = v.reshape(-1)
            for _ in range(self.draw(st.integers(1, 3), "how many specials")):
                flat[self.rng.integers(flat.size)] = self.rng.choice([np.nan, np.inf, -np.inf, 0.0, -0.0])
        return v.astype(dtype)

    def arr(self, shape, dtype, *, layout=None, written=False, **kw):
        layout = "C" if written else (self.layout() if layout is None else layout)
        return Arr(self.values(shape, dtype, **kw), layout, written)

    def out(self, shape, dtype):
        """None or a fresh out= array (C-contiguous, the right dtype and shape)."""
        if self.draw(st.booleans(), "use out="):
            return Arr(np.full(shape, 7, dtype), "C", written=True)
        return None


# Hostile scalars: non-finite, negative, huge, and the wrong types.
HUGE = 2**70
HOSTILE = [math.nan, math.inf, -math.inf, -1.0, -0.0, 1e300, -1e300, HUGE, -HUGE, True, None, "0.5",
           np.array([0.5]), np.array(0.5), 1 + 0j, [0.5], np.float32(0.5), np.int64(3)]
WRONG_TYPES = [HOSTILE[i] for i in (11, 12, 13, 14, 15)]  # "0.5", arrays, a complex, a list


# ----------------------------------------------------------------------------------------------
# One builder per op: (args, kwargs, kind, wide) from a Gen, and the names of its scalar
# arguments (the targets of the hostile-scalar test).
# ----------------------------------------------------------------------------------------------
def _relu(g):
    dt, shape = g.dtype(), g.draw(shapes(0, 3))
    return (g.arr(shape, dt, special=True),), {"out": g.out(shape, dt)}, "elementwise", False


def _relu_backward(g):
    dt, shape = g.dtype(), g.draw(shapes(1, 3))
    return (g.arr(shape, dt, special=True), g.arr(shape, dt, special=True)), {"out": g.out(shape, dt)}, \
        "elementwise", False


def _gather_rows(g):
    dt, shape = g.dtype(), g.draw(shapes(1, 3))
    n = shape[0]
    m = g.draw(st.sampled_from([0, 1, 3, 8]), "rows")
    lo, hi = (-n, n) if g.draw(st.integers(0, 9)) else (-n - 2, n + 2)
    idx = g.rng.integers(lo, hi, m) if hi > lo else np.zeros(m, np.int64)
    idx = idx.astype(g.draw(st.sampled_from([np.int64, np.int32, np.intp])))
    return (g.arr(shape, dt, special=True), Arr(idx, g.layout())), \
        {"out": g.out((m,) + shape[1:], dt)}, "elementwise", False


def _linear(g):
    dt = g.dtype()
    n, k, m = (g.draw(st.sampled_from(DIMS)) for _ in range(3))
    b = g.arr((m,), dt) if g.draw(st.booleans()) else None
    act = g.draw(st.sampled_from([None, "relu"]))
    return (g.arr((n, k), dt), g.arr((m, k), dt), b, act), {"out": g.out((n, m), dt)}, "elementwise", True


def _linear_backward(g):
    dt = g.dtype()
    n, k, m = (g.draw(st.sampled_from(DIMS)) for _ in range(3))
    x, w = g.values((n, k), dt), g.values((m, k), dt)
    act = g.draw(st.sampled_from([None, "relu"]))
    y = ref.linear(x, w, g.values((m,), dt), act) if act or g.draw(st.booleans()) else None
    kwargs = {"bias": g.draw(st.booleans()), "input_grad": g.draw(st.booleans())}
    if g.draw(st.booleans()):
        kwargs["out"] = (Arr(np.zeros((n, k), dt), written=True) if kwargs["input_grad"] else None,
                         Arr(np.zeros((m, k), dt), written=True),
                         Arr(np.zeros((m,), dt), written=True) if kwargs["bias"] else None)
    yarr = None if y is None else Arr(y, g.layout())
    return (g.arr((n, m), dt), Arr(x, g.layout()), Arr(w, g.layout()), yarr, act), kwargs, "elementwise", True


def _softmax_like(g):
    dt, shape = g.dtype(), g.draw(shapes(1, 3))
    return (g.arr(shape, dt, special=True),), {"out": g.out(shape, dt)}, "transcendental", True


def _softmax_backward_like(forward):
    def build(g):
        dt, shape = g.dtype(), g.draw(shapes(1, 3))
        y = getattr(ref, forward)(g.values(shape, dt))
        return (g.arr(shape, dt), Arr(y, g.layout())), {"out": g.out(shape, dt)}, "transcendental", True
    return build


def _xent_common(g, with_out):
    dt = g.dtype()
    n, k = g.draw(st.sampled_from(DIMS)), g.draw(st.sampled_from([d for d in DIMS if d >= 1]))
    ignore = g.draw(st.sampled_from([-100, 0, -1]), "ignore_index")
    labels = g.rng.integers(0, k, n)
    if n and g.draw(st.booleans(), "ignored rows"):
        labels[g.rng.random(n) < 0.3] = ignore
    labels = labels.astype(g.draw(st.sampled_from([np.int64, np.int32, np.int16])))
    kwargs = {"label_smoothing": g.draw(st.sampled_from([0.0, 0.1, 1.0])),
              "smoothing": g.draw(st.sampled_from(["others", "all"])),
              "weight": g.arr((k,), dt, positive=True) if g.draw(st.booleans()) else None,
              "ignore_index": ignore,
              "reduction": g.draw(st.sampled_from(["mean", "sum", "none"]))}
    if with_out:
        kwargs["out"] = g.out((n, k), dt)
    return (g.arr((n, k), dt, special=g.draw(st.booleans())), Arr(labels, g.layout())), kwargs, "transcendental", True


def _batch_norm(g):
    dt, c = g.dtype(), g.draw(st.sampled_from([d for d in DIMS if d >= 1]))
    shape = (g.draw(st.sampled_from(DIMS)), c) + g.draw(shapes(0, 2))
    training = g.draw(st.booleans(), "training")
    buffers = not training or g.draw(st.booleans(), "running buffers")
    kwargs = {"training": training, "momentum": g.draw(st.sampled_from([0.1, 0.0, 1.0])),
              "eps": g.draw(st.sampled_from([1e-5, 1e-3])),
              "activation": g.draw(st.sampled_from([None, "relu"]))}
    rm = g.arr((c,), dt, written=True) if buffers else None
    rv = g.arr((c,), dt, written=True, positive=True) if buffers else None
    gamma = g.arr((c,), dt) if g.draw(st.booleans()) else None
    beta = g.arr((c,), dt) if g.draw(st.booleans()) else None
    return (g.arr(shape, dt), gamma, beta, rm, rv), kwargs, "transcendental", True


def _batch_norm_backward(g):
    dt, c = g.dtype(), g.draw(st.sampled_from([d for d in DIMS if d >= 1]))
    shape = (g.draw(st.sampled_from([2, 3, 7])), c) + g.draw(shapes(0, 2, min_side=1))
    x, gamma = g.values(shape, dt), g.values((c,), dt)
    training = g.draw(st.booleans(), "training")
    act = g.draw(st.sampled_from([None, "relu"]))
    rm, rv = g.values((c,), dt), g.values((c,), dt, positive=True)
    y, mean, inv_std = ref.batch_norm(x, gamma, None, rm.copy(), rv.copy(), training=training, activation=act)
    kwargs = {"training": training, "activation": act, "y": Arr(y, g.layout()) if act else None}
    # dx is a difference of nearly equal terms for few values per channel (0 for two): against the
    # table, as weight_norm_backward.
    return (g.arr(shape, dt), Arr(x, g.layout()), Arr(gamma), Arr(mean), Arr(inv_std)), kwargs, "transcendental", \
        False


def _layer_norm(g):
    dt, shape = g.dtype(), g.draw(shapes(1, 3))
    d = shape[-1]
    gamma = g.arr((d,), dt) if g.draw(st.booleans()) else None
    beta = g.arr((d,), dt) if g.draw(st.booleans()) else None
    kwargs = {"eps": g.draw(st.sampled_from([1e-5, 1e-3])), "activation": g.draw(st.sampled_from([None, "relu"]))}
    return (g.arr(shape, dt), gamma, beta), kwargs, "transcendental", True


def _layer_norm_backward(g):
    dt, shape = g.dtype(), g.draw(shapes(1, 3, min_side=1))
    d = shape[-1]
    x, gamma = g.values(shape, dt), g.values((d,), dt)
    act = g.draw(st.sampled_from([None, "relu"]))
    y, mean, inv_std = ref.layer_norm(x, gamma, None, activation=act)
    kwargs = {"activation": act, "y": Arr(y, g.layout()) if act else None}
    return (g.arr(shape, dt), Arr(x, g.layout()), Arr(gamma), Arr(mean), Arr(inv_std)), kwargs, "transcendental", \
        False  # dx: a cancellation for short rows, as batch_norm_backward


def _weight_norm(g):
    dt, shape = g.dtype(), g.draw(shapes(1, 3, min_side=1))
    return (g.arr(shape, dt), g.arr(shape[:1], dt)), {}, "transcendental", True


def _weight_norm_backward(g):
    # dv is a difference of nearly equal terms (exactly 0 for rows of one element) scaled by
    # g / ||v||: the float64 reference's error does not bound it, the table's absolute floor does,
    # for rows whose norm is not tiny (v of scale 1).
    dt, shape = g.dtype(), g.draw(shapes(1, 3, min_side=1))
    return (g.arr(shape, dt), g.arr(shape, dt, scale=1.0), g.arr(shape[:1], dt)), {}, "transcendental", False


def _lrn_kwargs(g):
    return {"size": g.draw(st.sampled_from([1, 2, 3, 5])), "alpha": g.draw(st.sampled_from([1e-4, 0.5])),
            "beta": g.draw(st.sampled_from([0.75, 0.5, 1.0])), "k": g.draw(st.sampled_from([1.0, 2.0]))}


def _local_response_norm(g):
    dt, shape = g.dtype(), g.draw(shapes(3, 4))
    return (g.arr(shape, dt),), _lrn_kwargs(g), "transcendental", True


def _local_response_norm_backward(g):
    dt, shape = g.dtype(), g.draw(shapes(3, 4))
    return (g.arr(shape, dt), g.arr(shape, dt)), _lrn_kwargs(g), "transcendental", True


def _random_kwargs(g):
    return {"seed": g.draw(st.sampled_from([0, 42, 2**32 + 5, 2**64 - 1]), "seed"),
            "offset": g.draw(st.sampled_from([0, 3, 2**40]), "offset")}


def _p(g):
    return g.draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]), "p")


def _dropout_mask(g):
    return (g.draw(shapes(0, 3)), _p(g)), _random_kwargs(g), "elementwise", False


def _dropout(g):
    dt, shape = g.dtype(), g.draw(shapes(0, 3))
    kwargs = dict(_random_kwargs(g), training=g.draw(st.booleans()), mode=g.draw(st.sampled_from(["inverted", "vanilla"])),
                  activation=g.draw(st.sampled_from([None, "relu"])), out=g.out(shape, dt))
    return (g.arr(shape, dt, special=True), _p(g)), kwargs, "elementwise", False


def _dropout_backward(g):
    dt, shape = g.dtype(), g.draw(shapes(0, 3))
    p, rk = _p(g), _random_kwargs(g)
    mode, act = g.draw(st.sampled_from(["inverted", "vanilla"])), g.draw(st.sampled_from([None, "relu"]))
    y = None
    if act:
        y = Arr(ref.dropout(g.values(shape, dt), p, mode=mode, activation="relu", **rk), g.layout())
    kwargs = dict(rk, mode=mode, activation=act, y=y, out=g.out(shape, dt))
    return (g.arr(shape, dt, special=True), p), kwargs, "elementwise", False


def _drop_connect(g):
    dt, shape = g.dtype(), g.draw(shapes(0, 3))
    kwargs = dict(_random_kwargs(g), training=g.draw(st.booleans()), mode=g.draw(st.sampled_from(["inverted", "vanilla"])),
                  out=g.out(shape, dt))
    return (g.arr(shape, dt, special=True), _p(g)), kwargs, "elementwise", False


def _drop_connect_backward(g):
    dt, shape = g.dtype(), g.draw(shapes(0, 3))
    kwargs = dict(_random_kwargs(g), mode=g.draw(st.sampled_from(["inverted", "vanilla"])), out=g.out(shape, dt))
    return (g.arr(shape, dt, special=True), _p(g)), kwargs, "elementwise", False


def _gaussian_noise(g):
    dt, shape = g.dtype(), g.draw(shapes(0, 3))
    kwargs = dict(_random_kwargs(g), training=g.draw(st.booleans()), out=g.out(shape, dt))
    return (g.arr(shape, dt, special=True), g.draw(st.sampled_from([0.0, 0.5, 3.0]), "std")), kwargs, \
        "transcendental", False


def _param_lists(g, n_states, *, positive_states=()):
    """params, grads and n_states state lists over 0-3 arrays of one dtype."""
    dt = g.dtype()
    shapes_ = [g.draw(shapes(0, 2)) for _ in range(g.draw(st.integers(0, 3), "how many params"))]
    params = [g.arr(s, dt, written=True) for s in shapes_]
    grads = [g.arr(s, dt, special=g.draw(st.integers(0, 9)) == 0) for s in shapes_]
    states = [[g.arr(s, dt, written=True, positive=i in positive_states) for s in shapes_] for i in range(n_states)]
    return params, grads, states


def _maybe_single(g, params, grads, states):
    """One array instead of a list of one, sometimes (both are accepted)."""
    if len(params) == 1 and g.draw(st.booleans(), "bare arrays"):
        return params[0], grads[0], [s[0] for s in states]
    return params, grads, states


def _sgd_step(g):
    p, gr, (buf,) = _maybe_single(g, *_param_lists(g, 1))
    momentum = g.draw(st.sampled_from([0.0, 0.9]))
    kwargs = {"lr": g.draw(st.sampled_from([0.1, 0.0, 1e-3])), "momentum": momentum,
              "dampening": g.draw(st.sampled_from([0.0, 0.1])), "nesterov": g.draw(st.booleans()),
              "weight_decay": g.draw(st.sampled_from([0.0, 1e-2])), "maximize": g.draw(st.booleans()),
              "first_step": g.draw(st.booleans()), "grad_scale": g.draw(st.sampled_from([1.0, 0.5]))}
    return (p, gr, buf), kwargs, "elementwise", False


def _adagrad_step(g):
    p, gr, (s,) = _maybe_single(g, *_param_lists(g, 1, positive_states=(0,)))
    kwargs = {"step": g.draw(st.sampled_from([1, 2, 100])), "lr": g.draw(st.sampled_from([0.01, 0.5])),
              "lr_decay": g.draw(st.sampled_from([0.0, 0.1])), "weight_decay": g.draw(st.sampled_from([0.0, 1e-2])),
              "eps": g.draw(st.sampled_from([1e-10, 1e-3])), "maximize": g.draw(st.booleans()),
              "grad_scale": g.draw(st.sampled_from([1.0, 2.0]))}
    return (p, gr, s), kwargs, "elementwise", False


def _rmsprop_step(g):
    p, gr, (sq, buf, ga) = _maybe_single(g, *_param_lists(g, 3, positive_states=(0,)))
    momentum, centered = g.draw(st.sampled_from([0.0, 0.9])), g.draw(st.booleans())
    kwargs = {"lr": g.draw(st.sampled_from([0.01, 0.1])), "alpha": g.draw(st.sampled_from([0.99, 0.5, 0.0])),
              "eps": g.draw(st.sampled_from([1e-8, 1e-3])), "weight_decay": g.draw(st.sampled_from([0.0, 1e-2])),
              "momentum": momentum, "centered": centered, "maximize": g.draw(st.booleans()),
              "grad_scale": g.draw(st.sampled_from([1.0, 0.5]))}
    return (p, gr, sq, buf if momentum or g.draw(st.booleans()) else None,
            ga if centered or g.draw(st.booleans()) else None), kwargs, "elementwise", False


def _adadelta_step(g):
    p, gr, (sq, acc) = _maybe_single(g, *_param_lists(g, 2, positive_states=(0, 1)))
    kwargs = {"lr": g.draw(st.sampled_from([1.0, 0.1])), "rho": g.draw(st.sampled_from([0.9, 0.0, 1.0])),
              "eps": g.draw(st.sampled_from([1e-6, 1e-2])), "weight_decay": g.draw(st.sampled_from([0.0, 1e-2])),
              "maximize": g.draw(st.booleans()), "grad_scale": g.draw(st.sampled_from([1.0, 0.5]))}
    return (p, gr, sq, acc), kwargs, "elementwise", False


def _adam_step(g):
    p, gr, (m, v, vmax) = _maybe_single(g, *_param_lists(g, 3, positive_states=(1, 2)))
    amsgrad = g.draw(st.booleans())
    kwargs = {"step": g.draw(st.sampled_from([1, 2, 1000])), "lr": g.draw(st.sampled_from([1e-3, 0.1])),
              "beta1": g.draw(st.sampled_from([0.9, 0.0])), "beta2": g.draw(st.sampled_from([0.999, 0.5])),
              "eps": g.draw(st.sampled_from([1e-8, 1e-3])), "weight_decay": g.draw(st.sampled_from([0.0, 1e-2])),
              "amsgrad": amsgrad, "decoupled_weight_decay": g.draw(st.booleans()),
              "maximize": g.draw(st.booleans()), "grad_scale": g.draw(st.sampled_from([1.0, 0.5]))}
    return (p, gr, m, v, vmax if amsgrad or g.draw(st.booleans()) else None), kwargs, "elementwise", False


def _nadam_step(g):
    p, gr, (m, v) = _maybe_single(g, *_param_lists(g, 2, positive_states=(1,)))
    kwargs = {"step": g.draw(st.sampled_from([1, 2, 1000])), "mu_product": g.draw(st.sampled_from([1.0, 0.5])),
              "lr": g.draw(st.sampled_from([2e-3, 0.1])), "beta1": g.draw(st.sampled_from([0.9, 0.0])),
              "beta2": g.draw(st.sampled_from([0.999, 0.5])), "eps": g.draw(st.sampled_from([1e-8, 1e-3])),
              "weight_decay": g.draw(st.sampled_from([0.0, 1e-2])),
              "momentum_decay": g.draw(st.sampled_from([4e-3, 0.0])),
              "decoupled_weight_decay": g.draw(st.booleans()), "maximize": g.draw(st.booleans()),
              "grad_scale": g.draw(st.sampled_from([1.0, 0.5]))}
    return (p, gr, m, v), kwargs, "elementwise", False


def _grad_list(g, written):
    dt = g.dtype()
    arrs = [g.arr(g.draw(shapes(0, 2)), dt, written=written, special=g.draw(st.integers(0, 4)) == 0)
            for _ in range(g.draw(st.integers(0, 3), "how many arrays"))]
    if len(arrs) == 1 and g.draw(st.booleans(), "bare array"):
        return arrs[0]
    return arrs


def _grad_norm(g):
    return (_grad_list(g, False), g.draw(st.sampled_from([2.0, math.inf]), "norm_type")), {}, "elementwise", True


def _clip_grad_value_(g):
    return (_grad_list(g, True), g.draw(st.sampled_from([0.0, 0.5, 3.0]), "clip_value")), {}, "elementwise", False


def _scale_(g):
    return (_grad_list(g, True), g.draw(st.sampled_from([0.0, -2.0, 0.5]), "factor")), {}, "elementwise", False


def _add_penalty_grad(g):
    dt, shape = g.dtype(), g.draw(shapes(1, 2))
    mask = Arr(g.rng.random(shape) < 0.5, "C") if g.draw(st.booleans(), "mask") else None
    kwargs = {"l1": g.draw(st.sampled_from([0.0, 1e-3, 0.5])), "l2": g.draw(st.sampled_from([0.0, 1e-2])), "mask": mask}
    return (g.arr(shape, dt, written=True), g.arr(shape, dt, written=True)), kwargs, "elementwise", True


# ---- conv: convolution and pooling on NCHW arrays (small images: every size is an odd case).
def _two(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv_geometry(g):
    """(N, C_in, H, W, C_out, the (C_out, C_in/groups, kH, kW) weight shape, the keyword
    arguments, (OH, OW)). The input is large enough for the dilated kernel unless the draw says
    otherwise (then OH or OW is <= 0 and both sides must refuse)."""
    groups = g.draw(st.sampled_from([1, 1, 2, 3]), "groups")
    cin_g = g.draw(st.sampled_from([1, 2, 3]), "C_in per group")
    if g.draw(st.booleans(), "shape-preserving"):  # C_out = C_in, OH = H, OW = W: an out= that can alias x
        k, d = g.draw(st.sampled_from([1, 3]), "kernel"), g.draw(st.sampled_from([1, 2]), "dilation")
        cout_g, kh, kw, kwargs = cin_g, k, k, {"stride": 1, "padding": d * (k - 1) // 2, "dilation": d}
    else:
        cout_g = g.draw(st.sampled_from([1, 2, 4]), "C_out per group")
        kh, kw = g.draw(st.sampled_from([1, 2, 3])), g.draw(st.sampled_from([1, 2, 3]))
        kwargs = {"stride": g.draw(st.sampled_from([1, 2, 3, (1, 2), [2, 1]]), "stride"),
                  "padding": g.draw(st.sampled_from([0, 1, 2, (1, 0)]), "padding"),
                  "dilation": g.draw(st.sampled_from([1, 2, (2, 1)]), "dilation")}
    kwargs["groups"] = groups
    (sh, sw), (ph, pw), (dh, dw) = (_two(kwargs[a]) for a in ("stride", "padding", "dilation"))
    h, w = g.draw(st.sampled_from([1, 2, 3, 5, 7]), "H"), g.draw(st.sampled_from([1, 2, 3, 5, 7]), "W")
    if g.draw(st.integers(0, 9), "too small an input") != 5:
        h, w = max(h, dh * (kh - 1) + 1 - 2 * ph), max(w, dw * (kw - 1) + 1 - 2 * pw)
    oh, ow = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    n = g.draw(st.sampled_from([0, 1, 2, 3]), "N")
    return n, groups * cin_g, h, w, groups * cout_g, (groups * cout_g, cin_g, kh, kw), kwargs, (oh, ow)


def _conv2d(g):
    dt = g.dtype()
    n, cin, h, w, cout, wshape, kwargs, (oh, ow) = _conv_geometry(g)
    b = g.arr((cout,), dt) if g.draw(st.booleans(), "bias") else None
    kwargs["activation"] = g.draw(st.sampled_from([None, "relu"]), "activation")
    kwargs["out"] = g.out((n, cout, oh, ow), dt) if oh > 0 and ow > 0 else None
    return (g.arr((n, cin, h, w), dt, special=True), g.arr(wshape, dt), b), kwargs, "elementwise", True


def _conv2d_backward(g):
    dt = g.dtype()
    n, cin, h, w, cout, wshape, kwargs, (oh, ow) = _conv_geometry(g)
    act = g.draw(st.sampled_from([None, "relu"]), "activation")
    kwargs.update(activation=act, bias=g.draw(st.booleans(), "bias"), input_grad=g.draw(st.booleans(), "input_grad"))
    x, wt = g.values((n, cin, h, w), dt), g.values(wshape, dt)
    y = None
    if oh > 0 and ow > 0 and (act or g.draw(st.booleans(), "y")):
        geometry = {k: kwargs[k] for k in ("stride", "padding", "dilation", "groups")}
        y = Arr(ref.conv2d(x, wt, g.values((cout,), dt), activation=act, **geometry), g.layout())
    if oh > 0 and ow > 0 and g.draw(st.booleans(), "use out="):
        kwargs["out"] = (Arr(np.zeros(x.shape, dt), written=True) if kwargs["input_grad"] else None,
                         Arr(np.zeros(wshape, dt), written=True),
                         Arr(np.zeros((cout,), dt), written=True) if kwargs["bias"] else None)
    dy = g.arr((n, cout, max(oh, 0), max(ow, 0)), dt, special=True)
    return (dy, Arr(x, g.layout()), Arr(wt, g.layout()), y), kwargs, "elementwise", True


def _pool_geometry(g, *, invalid):
    """(N, C, H, W), kernel_size, stride, padding and (OH, OW): padding <= kernel // 2 and an
    input at least as large as the kernel, unless invalid and the draw says otherwise."""
    k = g.draw(st.sampled_from([1, 2, 3, (2, 3), [3, 1]]), "kernel_size")
    stride = g.draw(st.sampled_from([None, 1, 2, (1, 2)]), "stride")
    (kh, kw), (sh, sw) = _two(k), _two(k if stride is None else stride)
    padding = g.draw(st.sampled_from([0, (kh // 2, kw // 2), min(kh, kw) // 2]), "padding")
    if invalid and g.draw(st.integers(0, 9), "invalid padding") == 5:
        padding = 1 + max(kh, kw) // 2
    ph, pw = _two(padding)
    h, w = g.draw(st.sampled_from([1, 2, 3, 5, 7]), "H"), g.draw(st.sampled_from([1, 2, 3, 5, 7]), "W")
    if not invalid or g.draw(st.integers(0, 9), "too small an input") != 5:
        h, w = max(h, kh - 2 * ph), max(w, kw - 2 * pw)
    shape = (g.draw(st.sampled_from([0, 1, 2, 3]), "N"), g.draw(st.sampled_from([0, 1, 2, 5]), "C"), h, w)
    return shape, k, stride, padding, ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)


def _input_shape(g, shape):
    """input_shape as a tuple, sometimes a list or NumPy integers (both are shapes to NumPy)."""
    how = g.draw(st.sampled_from(["tuple", "tuple", "list", "numpy ints"]), "input_shape as")
    return list(shape) if how == "list" else tuple(np.int64(d) for d in shape) if how == "numpy ints" else shape


def _max_pool2d(g):
    dt = g.dtype()
    shape, k, stride, padding, _ = _pool_geometry(g, invalid=True)
    return (g.arr(shape, dt, special=True), k, stride, padding), {}, "elementwise", False  # a max: exact


def _max_pool2d_backward(g):
    dt = g.dtype()
    shape, k, stride, padding, _ = _pool_geometry(g, invalid=False)
    _, idx = ref.max_pool2d(g.values(shape, dt), k, stride, padding)
    if idx.size and g.draw(st.booleans(), "any indices"):  # positions chosen several times, in any order
        idx = g.rng.integers(0, shape[2] * shape[3], idx.shape).astype(np.int64)
    return (g.arr(idx.shape, dt, special=True), Arr(idx, g.layout()), _input_shape(g, shape)), {}, \
        "elementwise", True


def _avg_pool2d(g):
    dt = g.dtype()
    shape, k, stride, padding, _ = _pool_geometry(g, invalid=True)
    cip = g.draw(st.booleans(), "count_include_pad")
    return (g.arr(shape, dt, special=True), k, stride, padding, cip), {}, "elementwise", True


def _avg_pool2d_backward(g):
    dt = g.dtype()
    shape, k, stride, padding, (oh, ow) = _pool_geometry(g, invalid=False)
    cip = g.draw(st.booleans(), "count_include_pad")
    return (g.arr(shape[:2] + (oh, ow), dt, special=True), _input_shape(g, shape), k, stride, padding, cip), {}, \
        "elementwise", True


def _global_avg_pool2d(g):
    dt = g.dtype()
    shape = tuple(g.draw(st.sampled_from(DIMS)) for _ in range(2)) + tuple(g.draw(st.sampled_from([1, 2, 3, 5, 16]))
                                                                          for _ in range(2))
    return (g.arr(shape, dt, special=True),), {}, "elementwise", True


def _global_avg_pool2d_backward(g):
    dt = g.dtype()
    shape = tuple(g.draw(st.sampled_from(DIMS)) for _ in range(2)) + tuple(g.draw(st.sampled_from([1, 2, 3, 5, 16]))
                                                                          for _ in range(2))
    return (g.arr(shape[:2], dt, special=True), _input_shape(g, shape)), {}, "elementwise", False  # one division


# ---- augment: parameter draws and the one-pass transform.
AUGMENT_SPEC_VALUES = {
    "degrees": [25, (-10.0, 30.0), 0], "translate": [0.1, (0.15, 0.0), [0.0, 1.0]], "scale": [(0.8, 1.2), (1, 1)],
    "shear": [10, (-10, 10), (-10, 10, -5, 5)], "hflip": [0.5, 1.0], "vflip": [0.5, 0], "brightness": [0.3, (0.5, 1.5)],
    "contrast": [0.4, 0, (0.0, 2.0)], "noise": [0.1, 0.0, 1.0], "noise_mean": [0.02, -1], "erase": [0.6, 1.0],
    "erase_scale": [(0.02, 0.33), (0.5, 1.0)], "erase_ratio": [(0.3, 3.3), (1.0, 1.0)],
    "erase_value": [0.5, "random", -2],
}


# Extreme values of edited parameters.
AUGMENT_EXTREME_PARAMS = {
    "angle": [-720.0, 450.0], "translate_x": [1e9, -1e300], "translate_y": [3e9, -2.5], "scale": [1e-3, 1e3],
    "shear_x": [89.9, -89.9], "shear_y": [89.9], "brightness": [0.0, 1e300], "contrast": [0.0, 50.0],
    "noise_mean": [1e300, -3.0], "noise_std": [1e300, 5.0], "erase_top": [2**40, 1, 2**63 - 1],
    "erase_left": [2**62, 0],
    "erase_height": [2**40, 2**62, 2**63 - 1, 0], "erase_width": [2**40, 2], "erase_value": [1e300, -1.0],
}


def _augment_spec(g):
    return {k: g.draw(st.sampled_from(v), k) for k, v in AUGMENT_SPEC_VALUES.items() if g.draw(st.booleans(), k)}


def _augment_params(g):
    image_shape = tuple(g.draw(st.sampled_from([1, 2, 3, 5, 8])) for _ in range(g.draw(st.sampled_from([2, 3]))))
    kwargs = dict(_random_kwargs(g), image_shape=image_shape, same_on_batch=g.draw(st.booleans(), "same_on_batch"))
    # No input arrays: the draws (float64, bool and integer arrays) against the reference's.
    return (g.draw(st.sampled_from([0, 1, 3, 8]), "n"), _augment_spec(g)), kwargs, "elementwise", False


def _augment(g):
    dt = g.dtype()
    n, c = g.draw(st.sampled_from([0, 1, 2, 3]), "N"), g.draw(st.sampled_from([1, 3]), "C")
    h, w = g.draw(st.sampled_from([1, 2, 3, 5, 8]), "H"), g.draw(st.sampled_from([1, 2, 3, 5, 8]), "W")
    form = g.draw(st.sampled_from(["N, H, W", "N, C, H, W", "flat rows"]), "images as")
    kwargs = {}
    if form == "N, H, W":
        c, shape = 1, (n, h, w)
        if g.draw(st.booleans(), "image_shape"):
            kwargs["image_shape"] = (h, w)
    elif form == "N, C, H, W":
        shape = (n, c, h, w)
        if g.draw(st.booleans(), "image_shape"):
            kwargs["image_shape"] = (c, h, w)
    else:
        shape = (n, c * h * w)
        kwargs["image_shape"] = (c, h, w) if c > 1 or g.draw(st.booleans(), "(C, H, W)") else (h, w)
    spec = _augment_spec(g)
    params = ref.augment_params(n, spec, seed=g.draw(st.sampled_from([0, 7, 2**64 - 1]), "seed"),
                                offset=g.draw(st.sampled_from([0, 2**40])), image_shape=(c, h, w),
                                same_on_batch=g.draw(st.booleans(), "same_on_batch"))
    if g.draw(st.booleans(), "other parameter dtypes"):  # float32 / int32 arrays are accepted and converted
        params = {k: v.astype({"f": np.float32, "i": np.int32}.get(v.dtype.kind, v.dtype)) for k, v in params.items()}
    edited = g.draw(st.lists(st.sampled_from(sorted(AUGMENT_EXTREME_PARAMS)), max_size=3), "edited parameters")
    for k in edited:
        # Parameters are documented as editable: extreme values that check_params accepts.
        params[k] = np.full(n, g.draw(st.sampled_from(AUGMENT_EXTREME_PARAMS[k]), k), PARAM_KEYS[k])
        if k.startswith("erase_"):
            params["erase"] = np.ones(n, bool)
    params = {k: Arr(v, g.layout()) for k, v in params.items()}
    kwargs.update(interpolation=g.draw(st.sampled_from(["bilinear", "nearest"]), "interpolation"),
                  fill=g.draw(st.sampled_from([0.0, 0.25, -7.0]), "fill"),
                  clip=g.draw(st.sampled_from([None, (-1.5, 2.0), (0.0, 0.0), [-1, 1]]), "clip"),
                  out=g.out(shape, dt))
    # NaN and inf pixels only where the map is exact (flips at most): a resampled coordinate that
    # is an integer in one implementation and 1 ulp off in the other gives a neighbour weight 0 or
    # 1e-16, which decides whether an inf leaks. A resampling with the float64 reference's
    # coordinates: the table, as tests/test_augment.py.
    geometric = {"degrees", "translate", "scale", "shear", "angle", "translate_x", "translate_y", "shear_x", "shear_y"}
    special = not geometric & (set(spec) | set(edited))
    return (g.arr(shape, dt, special=special), params), kwargs, "transcendental", False


# ---- rnn: one LSTM / GRU layer over a sequence, the backward through time, the dropout masks.
GATES = {"lstm": 4, "gru": 3}


def _rnn_sizes(g):
    """(T, B, I, H): T, B >= 1 (docs/ops.md: the op refuses empty sequences and batches)."""
    return (g.draw(st.sampled_from([1, 2, 3]), "steps"), g.draw(st.sampled_from([1, 2, 5]), "batch"),
            g.draw(st.sampled_from([0, 1, 3, 7]), "input_size"), g.draw(st.sampled_from([1, 2, 5]), "hidden_size"))


def _rnn_options(g):
    mode = g.draw(st.sampled_from(["variational", "naive"]), "mode")
    return dict(_random_kwargs(g), dropout=g.draw(st.sampled_from([0.0, 0.3]), "dropout"),
                recurrent_dropout=0.0 if mode == "naive" else g.draw(st.sampled_from([0.0, 0.4]), "recurrent_dropout"),
                mode=mode, weight_drop=g.draw(st.sampled_from([0.0, 0.5]), "weight_drop"),
                training=g.draw(st.booleans(), "training"))


def _rnn_inputs(g, cell, dt, sizes, make, *, ln_one_unit=True):
    """The forward's positional arguments and layer-norm keywords, each array from make(name, shape)."""
    T, B, I, H = sizes
    G = GATES[cell]
    x = make("x", (T, B, I))
    h0 = make("h0", (B, H)) if g.draw(st.booleans(), "h0") else None
    c0 = make("c0", (B, H)) if cell == "lstm" and g.draw(st.booleans(), "c0") else None
    weights = (make("weight_ih", (G * H, I)), make("weight_hh", (G * H, H)))
    biases = tuple(make(name, (G * H,)) if g.draw(st.booleans(), name) else None for name in ("bias_ih", "bias_hh"))
    ln = {}
    if (H > 1 or ln_one_unit) and g.draw(st.booleans(), "layer norm"):
        ln = {"ln_weight": make("ln_weight", (G * H,)), "ln_bias": make("ln_bias", (G * H,))}
    args = (x, h0, c0) + weights + biases if cell == "lstm" else (x, h0) + weights + biases
    return args, ln


def _rnn_forward(cell):
    def build(g):
        dt, sizes = g.dtype(), _rnn_sizes(g)

        def make(name, shape):
            if name == "x":
                return g.arr(shape, dt, special=True)
            return g.arr(shape, dt, scale=0.5)
        args, ln = _rnn_inputs(g, cell, dt, sizes, make)
        # sigmoid and tanh from the op's polynomial (a few ulps): the table, as tests/test_rnn.py.
        return args, dict(ln, **_rnn_options(g)), "transcendental", False
    return build


def _rnn_backward(cell):
    def build(g):
        dt, sizes = g.dtype(), _rnn_sizes(g)
        T, B, _, H = sizes
        # No layer norm over a single unit (H = 1) here: it normalizes a constant, so its input
        # gradient is exactly 0 in the reference and the rounding of dy * ln_weight times
        # 1/sqrt(eps) = 316 in the op (3e-4 in float32 for dy of scale 30), beyond the table's
        # floor: a cancellation, not an error. tests/test_rnn.py has no such case either.
        args, ln = _rnn_inputs(g, cell, dt, sizes, lambda name, shape: g.values(shape, dt, scale=0.5),
                               ln_one_unit=False)
        # The reference forward's cache (its arrays C-contiguous, as a forward returns them), given
        # to both backwards on their device.
        cache = getattr(ref, f"{cell}_forward")(*args, **ln, **_rnn_options(g))[-1]
        cache = {k: Arr(v) if isinstance(v, np.ndarray) else v for k, v in cache.items()}
        grads = (g.arr((T, B, H), dt) if g.draw(st.booleans(), "dy") else None,
                 g.arr((B, H), dt) if g.draw(st.booleans(), "dh_n") else None)
        if cell == "lstm":
            grads += (g.arr((B, H), dt) if g.draw(st.booleans(), "dc_n") else None,)
        return grads + (cache,), {"input_grad": g.draw(st.booleans(), "input_grad")}, "transcendental", False
    return build


def _rnn_dropout_masks(g):
    mode = g.draw(st.sampled_from(["variational", "naive"]), "mode")
    sizes = tuple(g.draw(st.sampled_from([0, 1, 3, 7])) for _ in range(4))
    kwargs = dict(_random_kwargs(g), dropout=g.draw(st.sampled_from([0.0, 0.3, 0.9]), "dropout"),
                  recurrent_dropout=g.draw(st.sampled_from([0.0, 0.4] if mode == "variational" else [0.0])),
                  mode=mode, device="cpu")  # the reference runs on the CPU only (the op's GPU masks: dropout's)
    dtype = g.draw(st.sampled_from([np.float32, np.float64, "float32"]), "dtype")
    return sizes + (dtype,), kwargs, "elementwise", False


BUILDERS = {
    "relu": _relu, "relu_backward": _relu_backward, "gather_rows": _gather_rows,
    "linear": _linear, "linear_backward": _linear_backward,
    "softmax": _softmax_like, "log_softmax": _softmax_like,
    "softmax_backward": _softmax_backward_like("softmax"),
    "log_softmax_backward": _softmax_backward_like("log_softmax"),
    "softmax_cross_entropy": lambda g: _xent_common(g, False),
    "softmax_cross_entropy_with_grad": lambda g: _xent_common(g, True),
    "batch_norm": _batch_norm, "batch_norm_backward": _batch_norm_backward,
    "layer_norm": _layer_norm, "layer_norm_backward": _layer_norm_backward,
    "weight_norm": _weight_norm, "weight_norm_backward": _weight_norm_backward,
    "local_response_norm": _local_response_norm, "local_response_norm_backward": _local_response_norm_backward,
    "dropout_mask": _dropout_mask, "dropout": _dropout, "dropout_backward": _dropout_backward,
    "drop_connect": _drop_connect, "drop_connect_backward": _drop_connect_backward,
    "gaussian_noise": _gaussian_noise,
    "sgd_step": _sgd_step, "adagrad_step": _adagrad_step, "rmsprop_step": _rmsprop_step,
    "adadelta_step": _adadelta_step, "adam_step": _adam_step, "nadam_step": _nadam_step,
    "grad_norm": _grad_norm, "clip_grad_value_": _clip_grad_value_, "scale_": _scale_,
    "add_penalty_grad": _add_penalty_grad,
    "conv2d": _conv2d, "conv2d_backward": _conv2d_backward,
    "max_pool2d": _max_pool2d, "max_pool2d_backward": _max_pool2d_backward,
    "avg_pool2d": _avg_pool2d, "avg_pool2d_backward": _avg_pool2d_backward,
    "global_avg_pool2d": _global_avg_pool2d, "global_avg_pool2d_backward": _global_avg_pool2d_backward,
    "augment_params": _augment_params, "augment": _augment,
    "lstm_forward": _rnn_forward("lstm"), "lstm_backward": _rnn_backward("lstm"),
    "gru_forward": _rnn_forward("gru"), "gru_backward": _rnn_backward("gru"),
    "rnn_dropout_masks": _rnn_dropout_masks,
}

# Scalar arguments (positional index, keyword, or (argument, key) of a dict argument) that the
# hostile-scalar test replaces. Not here: ops without a scalar argument (relu, gather_rows,
# softmax..., weight_norm..., global_avg_pool2d). input_shape and the int-or-pair geometry
# (kernel_size, stride, padding, dilation) are here: they are checked as scalars are.
SCALARS = {
    "linear": [3], "linear_backward": [4, "bias", "input_grad"],
    "softmax_cross_entropy": ["label_smoothing", "smoothing", "ignore_index", "reduction"],
    "softmax_cross_entropy_with_grad": ["label_smoothing", "smoothing", "ignore_index", "reduction"],
    "batch_norm": ["training", "momentum", "eps", "activation"],
    "batch_norm_backward": ["training", "activation"],
    "layer_norm": ["eps", "activation"], "layer_norm_backward": ["activation"],
    "local_response_norm": ["size", "alpha", "beta", "k"],
    "local_response_norm_backward": ["size", "alpha", "beta", "k"],
    "dropout_mask": [1, "seed", "offset"],
    "dropout": [1, "seed", "offset", "training", "mode", "activation"],
    "dropout_backward": [1, "seed", "offset", "mode", "activation"],
    "drop_connect": [1, "seed", "offset", "training", "mode"],
    "drop_connect_backward": [1, "seed", "offset", "mode"],
    "gaussian_noise": [1, "seed", "offset", "training"],
    "sgd_step": ["lr", "momentum", "dampening", "nesterov", "weight_decay", "maximize", "first_step", "grad_scale"],
    "adagrad_step": ["step", "lr", "lr_decay", "weight_decay", "eps", "maximize", "grad_scale"],
    "rmsprop_step": ["lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize", "grad_scale"],
    "adadelta_step": ["lr", "rho", "eps", "weight_decay", "maximize", "grad_scale"],
    "adam_step": ["step", "lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad", "decoupled_weight_decay",
                  "maximize", "grad_scale"],
    "nadam_step": ["step", "mu_product", "lr", "beta1", "beta2", "eps", "weight_decay", "momentum_decay",
                   "decoupled_weight_decay", "maximize", "grad_scale"],
    "grad_norm": [1], "clip_grad_value_": [1], "scale_": [1], "add_penalty_grad": ["l1", "l2"],
    "conv2d": ["stride", "padding", "dilation", "groups", "activation"],
    "conv2d_backward": ["stride", "padding", "dilation", "groups", "activation", "bias", "input_grad"],
    "max_pool2d": [1, 2, 3], "max_pool2d_backward": [2],
    "avg_pool2d": [1, 2, 3, 4], "avg_pool2d_backward": [1, 2, 3, 4, 5],
    "global_avg_pool2d_backward": [1],
    "augment_params": [0, "seed", "offset", "image_shape", "same_on_batch"] + [(1, k) for k in AUGMENT_SPEC_VALUES],
    "augment": ["image_shape", "interpolation", "fill", "clip"],
    "lstm_forward": ["dropout", "recurrent_dropout", "mode", "weight_drop", "seed", "offset", "training"],
    "gru_forward": ["dropout", "recurrent_dropout", "mode", "weight_drop", "seed", "offset", "training"],
    "lstm_backward": ["input_grad"], "gru_backward": ["input_grad"],
    "rnn_dropout_masks": [0, 1, 2, 3, 4, "dropout", "recurrent_dropout", "mode", "seed", "offset", "device"],
}

# Ops with out= and which positional inputs an aliased out= may overlap (same shape and dtype).
# Not here: linear_backward and conv2d_backward, whose out= is a tuple (dx, dw, db) and not the
# one array this test aliases (tests/test_conv.py: out=(x, None, None) is refused). The pools,
# augment_params and the rnn ops have no out=.
OUT_ALIASES = {
    "relu": [0], "relu_backward": [0, 1], "gather_rows": [0],
    "softmax": [0], "log_softmax": [0], "softmax_backward": [0, 1], "log_softmax_backward": [0, 1],
    "softmax_cross_entropy_with_grad": [0], "linear": [0],
    "dropout": [0], "dropout_backward": [0], "drop_connect": [0], "drop_connect_backward": [0],
    "gaussian_noise": [0],
    "conv2d": [0], "augment": [0],
}


# Bugs the fuzz tests found, fixed (each the regression test of its fix): an optimizer step
# >= 2**63 gave pybind11's unnamed TypeError; augment_params(n=2**70) gave NumPy's unnamed
# ValueError (and its reference never returned with same_on_batch); rnn_dropout_masks did not
# check its sizes or dtype; an erase box whose top + height passes 2**63 wrapped and erased
# nothing. The hostile-scalar test draws all of these again.
def test_optimizer_step_beyond_int64_is_a_clear_error():
    f32 = np.float32
    for impl in (ops, ref):
        with pytest.raises(ValueError, match=r"^step: expected an integer < 2\*\*63"):
            impl.adagrad_step([np.zeros(3, f32)], [np.ones(3, f32)], [np.ones(3, f32)], step=2**70, lr=0.01)


def test_augment_params_n_beyond_its_bound_is_a_clear_error():
    for impl in (ops, ref):
        for same in (False, True):
            with pytest.raises(ValueError, match=r"^n: expected an integer in \[0, 2\*\*31\)"):
                impl.augment_params(2**70, {}, seed=0, image_shape=(2, 2), same_on_batch=same)


@pytest.mark.parametrize("top, height", [(1, 2**63 - 1), (1, 2**62), (2**63 - 1, 4), (5, 3)])
def test_augment_erase_box_beyond_the_image(top, height):
    x = np.ones((1, 1, 4, 4))
    p = ref.augment_params(1, {}, seed=1, image_shape=(4, 4))
    p.update(erase=np.array([True]), erase_top=np.array([top]), erase_left=np.array([0]),
             erase_height=np.array([height]), erase_width=np.array([2]), erase_value=np.array([0.0]))
    expected = x.copy()
    expected[0, 0, top:, :2] = 0  # rows [top, top + height) of the image and columns [0, 2)
    assert np.array_equal(ops.augment(x, p), expected)
    assert np.array_equal(ref.augment(x, p), expected)


@pytest.mark.parametrize("position, value, exc", [(0, "0.5", TypeError), (1, 2.5, TypeError), (3, -1, ValueError),
                                                  (4, "0.5", TypeError), (4, np.int32, TypeError)])
def test_rnn_dropout_masks_checks_sizes_and_dtype(position, value, exc):
    names = ["steps", "batch", "input_size", "hidden_size", "dtype"]
    args = [2, 3, 4, 5, np.float32]
    args[position] = value
    for impl in (ops, ref):
        for dropout in (0.5, 0.0):
            with pytest.raises(exc, match=f"^{names[position]}: "):
                impl.rnn_dropout_masks(*args, dropout=dropout, seed=0)


# With the fixed-seed CI profile (conftest's "ci", derandomized) a failing example is reported as
# found, not shrunk: shrinking costs minutes (under the sanitizer build, more), and the note with
# the arguments plus the reproduce_failure blob reproduce it. --fuzz-long ("long") shrinks.
FUZZ = settings(report_multiple_bugs=False,
                phases=[p for p in Phase if p not in (Phase.shrink, Phase.explain)] if settings.default.derandomize
                else list(Phase))



def test_every_public_op_is_fuzzed():
    assert sorted(BUILDERS) == sorted(ops.__all__)
    assert set(SCALARS) <= set(BUILDERS) and set(OUT_ALIASES) <= set(BUILDERS)


# ----------------------------------------------------------------------------------------------
# The tests.
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(BUILDERS))
@FUZZ
@given(data=st.data())
def test_op_matches_reference(name, device, data):
    args, kwargs, kind, wide = BUILDERS[name](Gen(data))
    check(name, device, args, kwargs, kind=kind, wide=wide)


def _replace(args, kwargs, key, value):
    if isinstance(key, tuple):  # (argument, key): an entry of a dict argument (augment_params' spec)
        arg, entry = key
        container = args[arg] if isinstance(arg, int) else kwargs[arg]
        return _replace(args, kwargs, arg, dict(container, **{entry: value}))
    if isinstance(key, int):
        args = args[:key] + (value,) + args[key + 1:]
    else:
        kwargs = dict(kwargs, **{key: value})
    return args, kwargs


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SCALARS))
@FUZZ
@given(data=st.data())
def test_hostile_scalars(name, device, data):
    args, kwargs, kind, wide = BUILDERS[name](Gen(data))
    key = data.draw(st.sampled_from(SCALARS[name]), "argument")
    value = data.draw(st.sampled_from(HOSTILE), "hostile value")
    valid = not isinstance(_call(getattr(ref, name), args, kwargs, np)[0], Exception)
    args, kwargs = _replace(args, kwargs, key, value)
    raised = check(name, device, args, kwargs, kind=kind, wide=wide)
    if valid and isinstance(raised, TypeError) and any(value is v for v in WRONG_TYPES):
        # A value of a type no scalar argument takes, in otherwise valid arguments: the TypeError
        # names the argument (the rule of fusednn._checks), not only the type NumPy could not use.
        arg = key[1] if isinstance(key, tuple) else key if isinstance(key, str) else \
            list(inspect.signature(getattr(ops, name)).parameters)[key]
        assert arg in str(raised), f"{name}: the error for {arg}={value!r} does not name {arg}: {raised!r}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(OUT_ALIASES))
@FUZZ
@given(data=st.data())
def test_out_aliasing_an_input(name, device, data):
    """out= the input itself or a view that overlaps it: a clear error or the right answer."""
    g = Gen(data)
    args, kwargs, kind, wide = BUILDERS[name](g)
    kwargs = dict(kwargs, out=None)
    expected, _ = _call(getattr(ref, name), args, kwargs, np)
    if isinstance(expected, Exception):
        return  # inputs the reference rejects anyway: covered by test_op_matches_reference
    target = data.draw(st.sampled_from(OUT_ALIASES[name]), "aliased input")
    if isinstance(args[target], Arr):  # the aliased input C-contiguous, so that it is a valid out=
        args = args[:target] + (Arr(args[target].values, "C"),) + args[target + 1:]
    xp = array_module(device)
    a, k = materialize(args, xp), {n: materialize(v, xp) for n, v in kwargs.items()}
    src = a[target]
    out_shape = to_numpy(expected[1] if name == "softmax_cross_entropy_with_grad" else expected).shape
    how = data.draw(st.sampled_from(["same", "shifted view"]), "alias")
    if how == "same" or src.size < 2:
        out = src
    else:  # a view of the input's memory, shifted by one element
        flat = xp.zeros(src.size + 1, src.dtype)
        flat[:-1] = src.reshape(-1)
        a = a[:target] + (flat[:-1].reshape(src.shape),) + a[target + 1:]
        out = flat[1:].reshape(src.shape)
    if out.shape != out_shape or out.dtype != src.dtype:
        return  # not a valid out= anyway (gather_rows with another row count)
    if not out.flags.c_contiguous:
        return  # an out= that is not C-contiguous is rejected whatever it aliases
    note(f"{name}: out= aliases input {target} ({how})")
    try:
        with np.errstate(all="ignore"):
            got = getattr(ops, name)(*a, **dict(k, out=out))
    except (ValueError, TypeError) as e:
        assert "out" in str(e), f"{name}: the error for an aliased out= does not name it: {e}"
        return
    exp_wide = None
    if wide and _has_float32(args):
        exp_wide, _ = _call(getattr(ref, name), args, kwargs, np, wide=True)
    if wide and exp_wide is None:
        kind = "transcendental"
    _compare(got, expected, exp_wide, kind, f"{name} with out= aliasing input {target}")
