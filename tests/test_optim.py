"""The optim family of fusednn.ops (optimizer updates, gradient norms, clipping, scaling, the
elastic-net gradient) against the NumPy reference, on every device: 100-step trajectories for
every rule and option, non-finite gradients, single steps worked out by hand, norms, the same
bits for any thread count (CPU), bad input (scalars by one rule, memory overlap across all the
lists of a call) and the signatures. The optimizer classes: test_optimizers.py."""

import importlib
import inspect
import math
import re

import numpy as np
import pytest
from conftest import assert_close, seed_of, to_device, to_numpy

from fusednn import ops, reference
from fusednn._backend import array_module

DTYPES = [np.float32, np.float64]
STEPS = 100
# A flat buffer of 1, 7, 1000 (2-D) and 4097 elements (one past a multiple of every SIMD width),
# passed as bare arrays, and three parameters of different shapes passed as lists.
SHAPES = [(1,), (7,), (40, 25), (4097,), [(3, 4), (17,), (2, 5, 33)]]
SHAPE_IDS = ["1", "7", "40x25", "4097", "list3"]
# The state arguments of each rule, in their positional order after params and grads.
STATES = {
    "sgd_step": ["momentum_buffers"],
    "adagrad_step": ["state_sums"],
    "rmsprop_step": ["square_avgs", "momentum_buffers", "grad_avgs"],
    "adadelta_step": ["square_avgs", "acc_deltas"],
    "adam_step": ["exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"],
    "nadam_step": ["exp_avgs", "exp_avg_sqs"],
}
UPDATES = list(STATES)
PUBLIC = UPDATES + ["grad_norm", "clip_grad_value_", "scale_", "add_penalty_grad"]

# Every option of every rule, alone and combined, with grad_scale != 1 and maximize. The
# test-only key `initial_accumulator_value` fills Adagrad's sums, as torch.optim.Adagrad does.
CONFIGS = [
    ("sgd_step", dict(lr=0.1)),
    ("sgd_step", dict(lr=0.1, weight_decay=0.1, maximize=True)),
    ("sgd_step", dict(lr=0.05, momentum=0.9)),
    ("sgd_step", dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.01)),
    ("sgd_step", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("sgd_step", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True, grad_scale=0.25)),
    ("sgd_step", dict(lr=0.05, momentum=0.5, dampening=0.9, grad_scale=3.0)),
    ("adagrad_step", dict()),
    ("adagrad_step", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1)),
    ("adagrad_step", dict(lr=0.05, lr_decay=0.1, weight_decay=0.01, eps=1e-6, maximize=True, grad_scale=0.5)),
    ("rmsprop_step", dict()),
    ("rmsprop_step", dict(centered=True)),
    ("rmsprop_step", dict(momentum=0.9)),
    ("rmsprop_step", dict(centered=True, momentum=0.5, weight_decay=0.01, alpha=0.9)),
    # 1 - alpha >= 0.5: torch's lerp of the centered average takes its other branch.
    ("rmsprop_step", dict(lr=1e-3, alpha=0.3, centered=True, maximize=True, grad_scale=2.0)),
    ("adadelta_step", dict()),
    ("adadelta_step", dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01, maximize=True, grad_scale=2.0)),
    ("adam_step", dict()),
    ("adam_step", dict(amsgrad=True)),
    ("adam_step", dict(weight_decay=0.01)),
    ("adam_step", dict(weight_decay=0.01, decoupled_weight_decay=True)),
    ("adam_step", dict(lr=1e-2, amsgrad=True, weight_decay=0.05, decoupled_weight_decay=True, maximize=True,
                       grad_scale=0.5)),
    ("adam_step", dict(amsgrad=True, weight_decay=0.01, grad_scale=4.0)),
    # beta1 <= 0.5: torch's lerp of exp_avg takes its other branch.
    ("adam_step", dict(lr=1e-2, beta1=0.3, beta2=0.9, eps=1e-6)),
    ("nadam_step", dict()),
    ("nadam_step", dict(weight_decay=0.01)),
    ("nadam_step", dict(weight_decay=0.01, decoupled_weight_decay=True, maximize=True, grad_scale=2.0)),
    ("nadam_step", dict(lr=1e-2, beta1=0.5, beta2=0.99, momentum_decay=0.1, eps=1e-6)),
]
CONFIG_IDS = [f"{name[:-5]}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}" for name, kw in CONFIGS]


# ---- helpers ----

def where(impl, device):
    """The device an implementation's arrays live on: the reference is NumPy only."""
    return device if impl is ops else "cpu"


def on(impl, device, values, dtype):
    """An array of these values where impl runs."""
    return to_device(where(impl, device), np.array(values, dtype))


def assert_same(got, want, dtype, err_msg=""):
    """got (either device) has want's dtype and shape and matches it by conftest's rule (NaN and
    infinities in the same places)."""
    assert got.dtype == want.dtype == dtype and got.shape == want.shape, err_msg
    assert_close(got, want, err_msg=err_msg)


def as_shapes(shape):
    return shape if isinstance(shape, list) else [shape]


def pack(arrays, as_list):
    """A list of arrays as the call takes them: the list, or the one array itself."""
    if arrays is None:
        return None
    return arrays if as_list else arrays[0]


def split_options(name, kw):
    """(the call's keyword arguments, the initial value of each state; None where unused)."""
    kw = dict(kw)
    init = kw.pop("initial_accumulator_value", 0.0)
    used = dict.fromkeys(STATES[name], 0.0)
    if name == "sgd_step":
        # NaN: the first update (first_step=True) must not read the buffers.
        used["momentum_buffers"] = np.nan if kw.get("momentum", 0) else None
    elif name == "adagrad_step":
        used["state_sums"] = init
    elif name == "rmsprop_step":
        used["momentum_buffers"] = 0.0 if kw.get("momentum", 0) > 0 else None
        used["grad_avgs"] = 0.0 if kw.get("centered") else None
    elif name == "adam_step":
        used["max_exp_avg_sqs"] = 0.0 if kw.get("amsgrad") else None
    return kw, used


def new_states(used, params):
    """The rule's states, on the parameters' device (None where unused)."""
    return {s: None if v is None else [array_module(p).full_like(p, v) for p in params] for s, v in used.items()}


def call(impl, name, kw, params, grads, states, t, mu_product, as_list=True):
    """Update number t (from 1) of rule `name`; returns NAdam's mu_product (else the one given)."""
    args = [pack(params, as_list), pack(grads, as_list)] + [pack(states[s], as_list) for s in STATES[name]]
    extra = {}
    if name == "sgd_step":
        extra["first_step"] = t == 1
    if name in ("adagrad_step", "adam_step", "nadam_step"):
        extra["step"] = t
    if name == "nadam_step":
        extra["mu_product"] = mu_product
    out = getattr(impl, name)(*args, **kw, **extra)
    if name == "nadam_step":
        assert isinstance(out, float)
        return out
    assert out is None
    return mu_product


def random_grads(key, t, shapes, dtype):
    rng = np.random.default_rng(seed_of("grads", key, t))
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


class Run:
    """One implementation's parameters, states and mu_product, from a seeded start, on a device
    (the reference always on the CPU)."""

    def __init__(self, impl, name, kw, shapes, dtype, device="cpu"):
        self.impl, self.name, self.device = impl, name, where(impl, device)
        self.kw, used = split_options(name, kw)
        rng = np.random.default_rng(seed_of("params", name, tuple(map(tuple, shapes)), np.dtype(dtype).name))
        self.params = [to_device(self.device, rng.standard_normal(s).astype(dtype)) for s in shapes]
        self.states = new_states(used, self.params)
        self.mu_product = 1.0
        self.as_list = len(shapes) > 1

    def step(self, t, grads):
        """Update t with these (NumPy) gradients, moved to the run's device."""
        grads = [to_device(self.device, g.copy()) for g in grads]
        before = [to_numpy(g).copy() for g in grads]
        self.mu_product = call(self.impl, self.name, self.kw, self.params, grads, self.states, t, self.mu_product,
                               as_list=self.as_list)
        for g, b in zip(grads, before):  # gradients are only read
            np.testing.assert_array_equal(to_numpy(g), b)


def trajectory(impl, name, kw, shapes, dtype, steps, grads_at, device="cpu"):
    run = Run(impl, name, kw, shapes, dtype, device)
    for t in range(1, steps + 1):
        run.step(t, grads_at(t))
    return run


def assert_same_run(got, want, dtype, t):
    for i, (g, w) in enumerate(zip(got.params, want.params)):
        assert_same(g, w, dtype, f"params[{i}] after update {t}")
    for s in STATES[got.name]:
        assert (got.states[s] is None) == (want.states[s] is None)
        for i, (g, w) in enumerate(zip(got.states[s] or [], want.states[s] or [])):
            assert_same(g, w, dtype, f"{s}[{i}] after update {t}")
    assert got.mu_product == pytest.approx(want.mu_product, rel=1e-14, abs=0)


def assert_same_trajectory(name, kw, shapes, dtype, steps, grads_at, device, every_step=False):
    """ops (on the device) and the reference from the same start on the same gradients, compared
    after the last update (or after every one)."""
    got, want = Run(ops, name, kw, shapes, dtype, device), Run(reference, name, kw, shapes, dtype)
    for t in range(1, steps + 1):
        got.step(t, grads_at(t))
        want.step(t, grads_at(t))
        if every_step or t == steps:
            assert_same_run(got, want, dtype, t)


# ---- ops against the reference: 100-step trajectories ----

@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_reference(name, kw, dtype, shape, device):
    shapes = as_shapes(shape)
    key = (name, repr(kw), repr(shape), np.dtype(dtype).name)
    assert_same_trajectory(name, kw, shapes, dtype, STEPS, lambda t: random_grads(key, t, shapes, dtype), device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_non_finite_gradients_propagate_as_in_reference(name, kw, dtype, device):
    shapes = [(7,), (3, 4)]

    def grads_at(t):
        grads = random_grads(("non-finite", name, repr(kw)), t, shapes, dtype)
        if t == 2:
            grads[0][0] = np.nan
        if t == 4:
            grads[0][2] = np.inf
            grads[1][1, 1] = -np.inf
        if t == 6:
            grads[1][2, 3] = np.nan
            grads[0][5] = -np.inf
        return grads

    assert_same_trajectory(name, kw, shapes, dtype, 12, grads_at, device, every_step=True)


@pytest.mark.parametrize("name, kw", [c for c in CONFIGS if c[1].get("maximize")],
                         ids=[i for c, i in zip(CONFIGS, CONFIG_IDS) if c[1].get("maximize")])
def test_maximize_is_minimizing_the_negated_gradient(name, kw, device):
    # Both calls go through ops: maximize=True on g is maximize=False on -g, bit for bit.
    shapes = [(7,), (3, 4)]
    flipped = {k: v for k, v in kw.items() if k != "maximize"}
    a = trajectory(ops, name, kw, shapes, np.float32, 5, lambda t: random_grads("max", t, shapes, np.float32), device)
    b = trajectory(ops, name, flipped, shapes, np.float32, 5,
                   lambda t: [-g for g in random_grads("max", t, shapes, np.float32)], device)
    for x, y in zip(a.params, b.params):
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))


@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_list_call_equals_one_call_per_array(name, kw, device):
    # One multi-tensor call updates each parameter exactly as a call on that parameter alone.
    shapes = [(3, 4), (70_001,), (2, 5, 33)]
    kw, used = split_options(name, kw)
    rng = np.random.default_rng(seed_of("multi", name))
    params = [to_device(device, rng.standard_normal(s).astype(np.float32)) for s in shapes]
    alone = [p.copy() for p in params]
    states, states_alone = new_states(used, params), new_states(used, params)
    mu, mu_alone = 1.0, [1.0] * len(shapes)
    for t in (1, 2, 3):
        grads = [to_device(device, g) for g in random_grads(("multi", name), t, shapes, np.float32)]
        mu = call(ops, name, kw, params, grads, states, t, mu)
        for i in range(len(shapes)):
            one = {s: None if v is None else [v[i]] for s, v in states_alone.items()}
            mu_alone[i] = call(ops, name, kw, [alone[i]], [grads[i]], one, t, mu_alone[i], as_list=False)
    for i in range(len(shapes)):
        np.testing.assert_array_equal(to_numpy(params[i]), to_numpy(alone[i]))
        for s, v in states.items():
            if v is not None:
                np.testing.assert_array_equal(to_numpy(v[i]), to_numpy(states_alone[s][i]))
        assert mu_alone[i] == mu


@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_strided_gradients_are_read_as_they_are(name, kw, device, xp):
    # Gradients may have any strides: the same bits as contiguous copies of them.
    shapes = [(6, 5), (1001,)]
    kw, used = split_options(name, kw)
    rng = np.random.default_rng(seed_of("strided", name))
    params = [to_device(device, rng.standard_normal(s).astype(np.float64)) for s in shapes]
    copies = [p.copy() for p in params]
    states, states_c = new_states(used, params), new_states(used, params)
    mu = mu_c = 1.0
    for t in (1, 2, 3):
        contiguous = [to_device(device, g) for g in random_grads(("strided", name), t, shapes, np.float64)]
        strided = [xp.asfortranarray(contiguous[0]), xp.repeat(contiguous[1], 2)[::2]]
        assert not strided[0].flags.c_contiguous and not strided[1].flags.c_contiguous
        mu = call(ops, name, kw, params, strided, states, t, mu)
        mu_c = call(ops, name, kw, copies, contiguous, states_c, t, mu_c)
    for p, c in zip(params, copies):
        np.testing.assert_array_equal(to_numpy(p), to_numpy(c))


IMPLS = pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])


@IMPLS
@pytest.mark.parametrize("name", UPDATES)
def test_empty_updates_are_no_ops(impl, name, device):
    kw, used = split_options(name, dict(CONFIGS[[n for n, _ in CONFIGS].index(name)][1], lr=0.1))
    # An empty list (states may be None or empty lists) and zero-size arrays.
    call(impl, name, kw, [], [], {s: [] for s in STATES[name]}, 1, 1.0)
    call(impl, name, kw, [], [], {s: None for s in STATES[name]}, 1, 1.0)
    params = [to_device(where(impl, device), np.zeros(s, np.float32)) for s in ((0,), (3, 0))]
    call(impl, name, kw, params, [p.copy() for p in params], new_states(used, params), 1, 1.0)
    assert [p.shape for p in params] == [(0,), (3, 0)]


# ---- single steps worked out by hand ----


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_by_hand(impl, dtype, device):
    p0, g, b0 = [1.0, -2.0, 0.5], [0.5, 0.25, -4.0], [0.2, -0.1, 1.0]
    lr, mom, wd = 0.1, 0.9, 0.1

    def run(**kw):
        p, b = on(impl, device, p0, dtype), on(impl, device, b0, dtype)
        impl.sgd_step(p, on(impl, device, g, dtype), b, lr=lr, momentum=mom, weight_decay=wd, **kw)
        return p, b

    def want(values):
        return np.array(values, dtype)

    gw = [gi + wd * pi for gi, pi in zip(g, p0)]  # g + wd p
    # Momentum with dampening 0.1: b = 0.9 b + 0.9 g, p -= lr b.
    b = [mom * bi + 0.9 * gi for bi, gi in zip(b0, gw)]
    p, buf = run(dampening=0.1)
    assert_close(buf, want(b))
    assert_close(p, want([pi - lr * bi for pi, bi in zip(p0, b)]))
    assert np.allclose(b, [0.72, -0.045, -2.655])
    # Nesterov: b = 0.9 b + g, p -= lr (g + 0.9 b).
    b = [mom * bi + gi for bi, gi in zip(b0, gw)]
    p, buf = run(nesterov=True)
    assert_close(buf, want(b))
    assert_close(p, want([pi - lr * (gi + mom * bi) for pi, gi, bi in zip(p0, gw, b)]))
    # First step: the buffer becomes the gradient, whatever it held.
    p, buf = run(first_step=True)
    assert_close(buf, want(gw))
    assert_close(p, want([pi - lr * gi for pi, gi in zip(p0, gw)]))
    # No momentum, maximize and grad_scale 2: p += lr (2 g) - lr wd p.
    p = on(impl, device, p0, dtype)
    impl.sgd_step(p, on(impl, device, g, dtype), None, lr=lr, weight_decay=wd, maximize=True, grad_scale=2.0)
    assert_close(p, want([pi - lr * (-2 * gi + wd * pi) for pi, gi in zip(p0, g)]))


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_is_lr_times_sign(impl, dtype, device):
    # With m = v = 0 the bias corrections cancel: p -= lr g / (|g| + eps), about lr sign(g).
    g = [2.0, -0.5, 1e-3, 0.0, -30.0, 1e-7]
    lr, eps = 1e-3, 1e-8
    zeros = [0.0] * len(g)
    for amsgrad in (False, True):
        p, m, v = (on(impl, device, zeros, dtype) for _ in range(3))
        vmax = on(impl, device, zeros, dtype) if amsgrad else None
        impl.adam_step(p, on(impl, device, g, dtype), m, v, vmax, step=1, lr=lr, eps=eps, amsgrad=amsgrad)
        assert_close(p, np.array([-lr * gi / (abs(gi) + eps) for gi in g], dtype))
        assert_close(m, np.array([0.1 * gi for gi in g], dtype))
        assert_close(v, np.array([0.001 * gi * gi for gi in g], dtype))
        if amsgrad:
            np.testing.assert_array_equal(to_numpy(vmax), to_numpy(v))
    p = to_numpy(p)
    assert abs(p[0] + lr) < 1e-8 and abs(p[4] - lr) < 1e-8 and p[3] == 0
    # AdamW from p = 1 and weight decay 0.1: p = (1 - lr wd) - lr g / (|g| + eps).
    p = on(impl, device, [1.0] * len(g), dtype)
    impl.adam_step(p, on(impl, device, g, dtype), on(impl, device, zeros, dtype), on(impl, device, zeros, dtype),
                   None, step=1, lr=lr, eps=eps, weight_decay=0.1, decoupled_weight_decay=True)
    assert_close(p, np.array([1 - lr * 0.1 - lr * gi / (abs(gi) + eps) for gi in g], dtype))


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_by_hand(impl, dtype, device):
    p0, g, s0 = [1.0, -1.0, 3.0], [2.0, -1.0, 0.5], 0.1
    lr, lr_decay, step, wd = 0.1, 0.5, 3, 0.2
    clr = lr / (1 + (step - 1) * lr_decay)  # 0.05
    p, s = on(impl, device, p0, dtype), on(impl, device, [s0] * 3, dtype)
    impl.adagrad_step(p, on(impl, device, g, dtype), s, step=step, lr=lr, lr_decay=lr_decay, weight_decay=wd)
    gw = [gi + wd * pi for gi, pi in zip(g, p0)]
    want_s = [s0 + gi * gi for gi in gw]
    assert_close(s, np.array(want_s, dtype))
    assert_close(p, np.array([pi - clr * gi / (math.sqrt(si) + 1e-10) for pi, gi, si in zip(p0, gw, want_s)], dtype))
    assert np.allclose(want_s, [4.94, 1.54, 1.31])


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_nadam_first_step_and_mu_product_by_hand(impl, dtype, device):
    beta1, psi, lr, eps = 0.9, 4e-3, 2e-3, 1e-8
    mu = [beta1 * (1 - 0.5 * 0.96 ** (t * psi)) for t in (1, 2, 3, 4)]
    g = [2.0, -0.5, 0.0]
    p, m, v = (on(impl, device, [0.0] * 3, dtype) for _ in range(3))
    got = impl.nadam_step(p, on(impl, device, g, dtype), m, v, step=1, mu_product=1.0)
    assert got == pytest.approx(mu[0], rel=1e-15)
    # m = 0.1 g, d = |g| + eps: p = -lr g / d - lr mu_2 / (1 - mu_1 mu_2) 0.1 g / d.
    c = 1 + 0.1 * mu[1] / (1 - mu[0] * mu[1])
    assert_close(p, np.array([-lr * c * gi / (abs(gi) + eps) for gi in g], dtype))
    for t in (2, 3):
        got = impl.nadam_step(p, on(impl, device, g, dtype), m, v, step=t, mu_product=got)
    assert got == pytest.approx(mu[0] * mu[1] * mu[2], rel=1e-15)


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_centered_rmsprop_clamps_its_variance_at_zero(impl, dtype, momentum, device):
    # Regression (issue 13): sqrt(square_avg - grad_avg^2) was taken unclamped. With alpha = 0
    # both terms are g^2 and rounding (a fused multiply-add) can make their difference negative:
    # NaN parameters. Clamped, the estimate is 0 or a rounding residual r <= ulp(g^2), so
    # p = -lr g / (sqrt(r) + eps): with eps = 1e6, -lr g / eps to well within the tolerance.
    rng = np.random.default_rng(seed_of("rmsprop-clamp", np.dtype(dtype).name))
    g = rng.standard_normal(1000).astype(dtype)
    p = on(impl, device, np.zeros(1000), dtype)
    sq, avg = on(impl, device, np.zeros(1000), dtype), on(impl, device, np.zeros(1000), dtype)
    buf = on(impl, device, np.zeros(1000), dtype) if momentum else None
    impl.rmsprop_step(p, to_device(where(impl, device), g), sq, buf, avg, lr=1.0, alpha=0.0, eps=1e6,
                      momentum=momentum, centered=True)
    assert np.isfinite(to_numpy(p)).all()
    assert_close(p, (-g / dtype(1e6)).astype(dtype))
    # alpha = 1 keeps square_avg at 0 while grad_avg holds a value: the estimate -grad_avg^2 < 0.
    p = on(impl, device, np.zeros(4), dtype)
    sq, avg = on(impl, device, np.zeros(4), dtype), on(impl, device, [1.0, -2.0, 0.5, 3.0], dtype)
    buf = on(impl, device, np.zeros(4), dtype) if momentum else None
    impl.rmsprop_step(p, on(impl, device, [1.0, 1.0, -1.0, 2.0], dtype), sq, buf, avg, lr=0.5, alpha=1.0, eps=0.25,
                      momentum=momentum, centered=True)
    assert_close(p, np.array([-2.0, -2.0, 2.0, -4.0], dtype))  # -lr g / eps


# ---- norms, clipping, scaling ----

NORM_SHAPES = [(3, 4), (1,), (0,), (4097,), (70_000,), (2, 3, 5)]  # 70000: several 16384-element chunks


def norm_arrays(dtype, key, device="cpu"):
    rng = np.random.default_rng(seed_of("norm", key))
    return [to_device(device, (rng.standard_normal(s) * rng.uniform(0.1, 10)).astype(dtype)) for s in NORM_SHAPES]


def host(arrays):
    return [to_numpy(a) for a in arrays]


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm_matches_numpy(impl, dtype, device):
    grads = norm_arrays(dtype, "norm", where(impl, device))
    flat = np.concatenate([g.ravel() for g in host(grads)]).astype(np.float64)
    two, inf = impl.grad_norm(grads), impl.grad_norm(grads, norm_type=math.inf)
    assert type(two) is float and type(inf) is float
    assert two == pytest.approx(np.linalg.norm(flat), rel=1e-12)
    assert impl.grad_norm(grads, 2) == two
    assert inf == np.abs(flat).max()
    assert impl.grad_norm(grads, float("inf")) == inf
    # One bare array, a strided one, and no arrays at all.
    big = to_numpy(grads[4])
    assert impl.grad_norm(grads[4]) == pytest.approx(np.linalg.norm(big.astype(np.float64)), rel=1e-12)
    strided = grads[4][::3]
    assert impl.grad_norm([strided]) == pytest.approx(np.linalg.norm(big[::3].astype(np.float64)), rel=1e-12)
    assert impl.grad_norm([strided], np.inf) == np.abs(big[::3]).max()
    assert impl.grad_norm([]) == 0.0 and impl.grad_norm([], math.inf) == 0.0
    assert impl.grad_norm([on(impl, device, np.zeros(0), dtype)], math.inf) == 0.0


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm_non_finite(impl, dtype, device):
    for at in (0, 4):  # in the first array, and in the second chunk of a large one
        for values, two, inf in [((np.nan,), math.nan, math.nan), ((np.inf,), math.inf, math.inf),
                                 ((-np.inf,), math.inf, math.inf), ((np.inf, np.nan), math.nan, math.nan),
                                 ((np.nan, -np.inf), math.nan, math.nan)]:
            grads = norm_arrays(dtype, "non-finite")
            for k, value in enumerate(values):
                grads[at].reshape(-1)[-1 - 7 * k] = value
            grads = [to_device(where(impl, device), g) for g in grads]
            for norm_type, want in ((2.0, two), (math.inf, inf)):
                got = impl.grad_norm(grads, norm_type)
                assert (math.isnan(got) and math.isnan(want)) or got == want, (at, values, norm_type, got)


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value_in_place(impl, dtype, device):
    grads = norm_arrays(dtype, "clip")
    grads[0][1, 2] = np.nan
    grads[3][5], grads[3][6] = np.inf, -np.inf
    want = [np.clip(g, -dtype(0.75), dtype(0.75)) for g in grads]
    grads = [to_device(where(impl, device), g) for g in grads]
    objects = list(grads)
    assert impl.clip_grad_value_(grads, 0.75) is None
    for g, obj, w in zip(grads, objects, want):
        assert g is obj
        np.testing.assert_array_equal(to_numpy(g), w)
    single = norm_arrays(dtype, "clip single")[4]
    want = np.clip(single, -dtype(1), dtype(1))
    single = to_device(where(impl, device), single)
    impl.clip_grad_value_(single, 1)
    np.testing.assert_array_equal(to_numpy(single), want)
    impl.clip_grad_value_(single, 0.0)
    assert not to_numpy(single).any()
    impl.clip_grad_value_([], 1.0)


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_in_place(impl, dtype, device):
    for factor in (0.5, -3.0, 1e-3, 0.0):
        arrays = norm_arrays(dtype, "scale")
        arrays[0][0, 0] = np.inf
        with np.errstate(invalid="ignore"):  # inf * 0
            want = [a * dtype(factor) for a in arrays]
        arrays = [to_device(where(impl, device), a) for a in arrays]
        objects = list(arrays)
        assert impl.scale_(arrays, factor) is None
        for a, obj, w in zip(arrays, objects, want):
            assert a is obj
            np.testing.assert_array_equal(to_numpy(a), w)
    single = on(impl, device, np.arange(5), dtype)
    impl.scale_(single, 2)
    np.testing.assert_array_equal(to_numpy(single), np.arange(5, dtype=dtype) * 2)
    impl.scale_([], 2.0)


# ---- the same bits for any thread count ----

def test_adam_and_grad_norm_do_not_depend_on_thread_count(threads):
    n = 3_000_000
    rng = np.random.default_rng(seed_of("threads"))
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    cuts = [0, 1_000_003, 2_500_000, n]
    # One flat buffer, and the same numbers cut into a list of three parameters.
    layouts = {"flat": lambda a: a, "list": lambda a: [a[i:j] for i, j in zip(cuts, cuts[1:])]}
    results = {}
    for count in (1, 2):
        threads(count)
        for layout, views in layouts.items():
            p = p0.copy()
            m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
            for t, g in enumerate(grads, start=1):
                ops.adam_step(views(p), views(g), views(m), views(v), views(vmax), step=t, lr=1e-2, amsgrad=True,
                              weight_decay=0.01, grad_scale=0.5)
            norms = [ops.grad_norm(views(g), norm_type) for g in grads for norm_type in (2.0, math.inf)]
            results[count, layout] = (p, m, v, vmax, norms)
    for layout in layouts:
        one, two = results[1, layout], results[2, layout]
        for a, b in zip(one[:4], two[:4]):
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
        assert one[4] == two[4]  # exactly
        assert one[4][0] == pytest.approx(np.linalg.norm(grads[0].astype(np.float64)), rel=1e-12)
        assert one[4][1] == np.abs(grads[0]).max()


# ---- bad input: every case names the argument, and nothing is written ----

def valid_arrays(name, shapes=((3, 4), (17,), (2, 5)), dtype=np.float32, device="cpu"):
    """params, grads and every state of the rule (all given), as lists, on the device."""
    rng = np.random.default_rng(seed_of("bad", name))
    arrays = {"params": [rng.standard_normal(s).astype(dtype) for s in shapes],
              "grads": [rng.standard_normal(s).astype(dtype) for s in shapes]}
    for s in STATES[name]:
        arrays[s] = [np.abs(rng.standard_normal(sh)).astype(dtype) for sh in shapes]
    return {k: [to_device(device, a) for a in v] for k, v in arrays.items()}


def valid_kwargs(name):
    kw = {"sgd_step": dict(lr=0.1, momentum=0.9), "rmsprop_step": dict(momentum=0.9, centered=True),
          "adam_step": dict(amsgrad=True)}.get(name, {})
    if name in ("adagrad_step", "adam_step", "nadam_step"):
        kw["step"] = 2
    if name == "nadam_step":
        kw["mu_product"] = 0.9
    return kw


def assert_raises_and_writes_nothing(impl, name, arrays, kw, exc, match):
    flat = [a for v in arrays.values() if isinstance(v, list) for a in v if hasattr(a, "dtype")]
    before = [to_numpy(a).copy() for a in flat]
    args = [arrays["params"], arrays["grads"]] + [arrays[s] for s in STATES[name]]
    with pytest.raises(exc, match=match):
        getattr(impl, name)(*args, **kw)
    for a, b in zip(flat, before):
        np.testing.assert_array_equal(to_numpy(a), b)


BAD_HYPERPARAMETERS = [
    ("sgd_step", dict(lr=-1), ValueError, r"lr: expected a value >= 0, got -1"),
    ("sgd_step", dict(lr=float("nan")), ValueError, r"lr: expected a value >= 0, got nan"),
    ("sgd_step", dict(lr="0.1"), TypeError, r"lr: expected a value >= 0, got '0.1'"),
    ("sgd_step", dict(momentum=-0.1), ValueError, r"momentum: expected a value >= 0, got -0.1"),
    ("sgd_step", dict(weight_decay=-1), ValueError, r"weight_decay: expected a value >= 0, got -1"),
    ("sgd_step", dict(momentum=0.0, nesterov=True), ValueError, r"nesterov: requires momentum > 0 and dampening = 0"),
    ("sgd_step", dict(dampening=0.1, nesterov=True), ValueError,
     r"nesterov: requires momentum > 0 and dampening = 0"),
    ("adagrad_step", dict(step=0), ValueError, r"step: expected an integer >= 1, got 0"),
    ("adagrad_step", dict(step=-2), ValueError, r"step: expected an integer >= 1, got -2"),
    ("adagrad_step", dict(step=1.0), TypeError, r"step: expected an integer >= 1, got 1.0"),
    ("adagrad_step", dict(step=True), TypeError, r"step: expected an integer >= 1, got True"),
    ("adagrad_step", dict(lr=-1), ValueError, r"lr: expected a value >= 0, got -1"),
    ("adagrad_step", dict(lr_decay=-0.5), ValueError, r"lr_decay: expected a value >= 0, got -0.5"),
    ("adagrad_step", dict(weight_decay=-1), ValueError, r"weight_decay: expected a value >= 0, got -1"),
    ("adagrad_step", dict(eps=0), ValueError, r"eps: expected a value > 0, got 0"),
    ("rmsprop_step", dict(lr=-1), ValueError, r"lr: expected a value >= 0, got -1"),
    ("rmsprop_step", dict(alpha=2), ValueError, r"alpha: expected a value in \[0, 1\], got 2"),
    ("rmsprop_step", dict(alpha=-0.1), ValueError, r"alpha: expected a value in \[0, 1\], got -0.1"),
    ("rmsprop_step", dict(eps=0), ValueError, r"eps: expected a value > 0, got 0"),
    ("rmsprop_step", dict(eps=-1e-8), ValueError, r"eps: expected a value > 0, got -1e-08"),
    ("rmsprop_step", dict(weight_decay=-1), ValueError, r"weight_decay: expected a value >= 0, got -1"),
    ("rmsprop_step", dict(momentum=-0.1), ValueError, r"momentum: expected a value >= 0, got -0.1"),
    ("adadelta_step", dict(lr=-1), ValueError, r"lr: expected a value >= 0, got -1"),
    ("adadelta_step", dict(rho=2), ValueError, r"rho: expected a value in \[0, 1\], got 2"),
    ("adadelta_step", dict(eps=0), ValueError, r"eps: expected a value > 0, got 0"),
    ("adadelta_step", dict(weight_decay=-1), ValueError, r"weight_decay: expected a value >= 0, got -1"),
    ("adam_step", dict(step=0), ValueError, r"step: expected an integer >= 1, got 0"),
    ("adam_step", dict(lr=-1), ValueError, r"lr: expected a value >= 0, got -1"),
    ("adam_step", dict(beta1=1.0), ValueError, r"beta1: expected a value in \[0, 1\), got 1.0"),
    ("adam_step", dict(beta1=-0.1), ValueError, r"beta1: expected a value in \[0, 1\), got -0.1"),
    ("adam_step", dict(beta2=1.0), ValueError, r"beta2: expected a value in \[0, 1\), got 1.0"),
    ("adam_step", dict(eps=0), ValueError, r"eps: expected a value > 0, got 0"),
    ("adam_step", dict(weight_decay=-1), ValueError, r"weight_decay: expected a value >= 0, got -1"),
    ("nadam_step", dict(step=0), ValueError, r"step: expected an integer >= 1, got 0"),
    ("nadam_step", dict(lr=-1), ValueError, r"lr: expected a value >= 0, got -1"),
    ("nadam_step", dict(beta1=1.0), ValueError, r"beta1: expected a value in \[0, 1\), got 1.0"),
    ("nadam_step", dict(beta2=1.5), ValueError, r"beta2: expected a value in \[0, 1\), got 1.5"),
    ("nadam_step", dict(eps=0), ValueError, r"eps: expected a value > 0, got 0"),
    ("nadam_step", dict(weight_decay=-1), ValueError, r"weight_decay: expected a value >= 0, got -1"),
    ("nadam_step", dict(momentum_decay=-1), ValueError, r"momentum_decay: expected a value >= 0, got -1"),
    ("nadam_step", dict(mu_product="1"), TypeError, r"mu_product: expected a real number"),
]


@IMPLS
@pytest.mark.parametrize("name, bad, exc, match", BAD_HYPERPARAMETERS,
                         ids=[f"{n[:-5]}-{next(iter(b))}={list(b.values())[-1]!r}" for n, b, _, _ in
                              BAD_HYPERPARAMETERS])
def test_bad_hyperparameter(impl, name, bad, exc, match, device):
    arrays = valid_arrays(name, device=where(impl, device))
    assert_raises_and_writes_nothing(impl, name, arrays, {**valid_kwargs(name), **bad}, exc, match)


@IMPLS
@pytest.mark.parametrize("norm_type", [1.0, 3, 0, -math.inf, float("nan")])
def test_bad_norm_type(impl, norm_type, device):
    g = on(impl, device, np.ones(3), np.float64)
    with pytest.raises(ValueError, match=rf"norm_type: expected 2.0 or inf, got {norm_type}"):
        impl.grad_norm([g], norm_type)
    with pytest.raises(TypeError, match=r"norm_type: expected 2.0 or inf"):
        impl.grad_norm([g], "fro")


@IMPLS
def test_bad_clip_value_and_factor(impl, device):
    g = on(impl, device, np.ones(3), np.float64)
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match=rf"clip_value: expected a value >= 0, got {bad}"):
            impl.clip_grad_value_([g], bad)
    with pytest.raises(TypeError, match=r"factor: expected a real number"):
        impl.scale_([g], "2")
    np.testing.assert_array_equal(to_numpy(g), 1)


MISSING_STATES = [
    ("sgd_step", dict(lr=0.1, momentum=0.9), "momentum_buffers",
     r"momentum_buffers: required when momentum > 0, got None"),
    ("adagrad_step", dict(step=1), "state_sums", r"state_sums: expected arrays, got None"),
    ("rmsprop_step", dict(), "square_avgs", r"square_avgs: expected arrays, got None"),
    ("rmsprop_step", dict(momentum=0.5), "momentum_buffers", r"momentum_buffers: required when momentum > 0, got None"),
    ("rmsprop_step", dict(centered=True), "grad_avgs", r"grad_avgs: required when centered=True, got None"),
    ("adadelta_step", dict(), "square_avgs", r"square_avgs: expected arrays, got None"),
    ("adadelta_step", dict(), "acc_deltas", r"acc_deltas: expected arrays, got None"),
    ("adam_step", dict(step=1), "exp_avgs", r"exp_avgs: expected arrays, got None"),
    ("adam_step", dict(step=1), "exp_avg_sqs", r"exp_avg_sqs: expected arrays, got None"),
    ("adam_step", dict(step=1, amsgrad=True), "max_exp_avg_sqs",
     r"max_exp_avg_sqs: required when amsgrad=True, got None"),
    ("nadam_step", dict(step=1, mu_product=1.0), "exp_avgs", r"exp_avgs: expected arrays, got None"),
    ("nadam_step", dict(step=1, mu_product=1.0), "exp_avg_sqs", r"exp_avg_sqs: expected arrays, got None"),
]


@IMPLS
@pytest.mark.parametrize("name, kw, state, match", MISSING_STATES,
                         ids=[f"{n[:-5]}-{s}" for n, _, s, _ in MISSING_STATES])
def test_missing_state(impl, name, kw, state, match, device):
    arrays = valid_arrays(name, device=where(impl, device))
    arrays[state] = None
    assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError, match)


def _read_only(a):
    a.flags.writeable = False
    return a


def _unaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)[1:]
    return buf.view(a.dtype).reshape(a.shape)


# (how to spoil an array written in place, given a valid one, exception, message after "name[1]: ")
BAD_IN_PLACE = [
    (lambda a: np.zeros(a.shape + (2,), a.dtype)[..., 0], ValueError, r"expected a C-contiguous, aligned array"),
    (lambda a: np.asfortranarray(np.zeros(a.shape, a.dtype)), ValueError, r"expected a C-contiguous, aligned array"),
    (_unaligned, ValueError, r"expected a C-contiguous, aligned array"),
    (lambda a: _read_only(np.zeros_like(a)), ValueError, r"expected a writable array, got a read-only one"),
    (lambda a: np.zeros(a.shape, np.float64), TypeError, r"expected dtype float32, got float64"),
    (lambda a: np.zeros(a.shape, np.float16), TypeError, r"expected dtype float32, got float16"),
    (lambda a: np.zeros(a.shape[::-1], a.dtype), ValueError, r"expected shape \(2, 5\), got \(5, 2\)"),
    (lambda a: np.zeros(a.size, a.dtype), ValueError, r"expected shape \(2, 5\), got \(10,\)"),
    (lambda a: a.tolist(), TypeError, r"expected a numpy.ndarray"),
]
BAD_IN_PLACE_IDS = ["strided", "fortran", "unaligned", "read-only", "float64", "float16", "transposed-shape",
                    "flattened", "list"]
STATE_ARGS = [(name, s) for name in UPDATES for s in STATES[name]]
# A parameter has no expected shape (its gradient is checked against it), so the shape cases
# apply to the states only.
BAD_IN_PLACE_CASES = [
    pytest.param(name, arg, spoil, exc, match, id=f"{name[:-5]}-{arg}-{case_id}")
    for name, arg in STATE_ARGS + [(name, "params") for name in UPDATES]
    for (spoil, exc, match), case_id in zip(BAD_IN_PLACE, BAD_IN_PLACE_IDS)
    if not (arg == "params" and "shape" in match)
]


@IMPLS
@pytest.mark.parametrize("name, arg, spoil, exc, match", BAD_IN_PLACE_CASES)
def test_bad_array_written_in_place(impl, name, arg, spoil, exc, match):
    # Index 2 of 3 (shape (2, 5)): never silently copied, whatever the rule's options use.
    arrays = valid_arrays(name)
    arrays[arg][2] = spoil(arrays[arg][2])
    assert_raises_and_writes_nothing(impl, name, arrays, valid_kwargs(name), exc, rf"{arg}\[2\]: {match}")


@IMPLS
@pytest.mark.parametrize("name", UPDATES)
def test_bad_params_and_grads(impl, name):
    kw = valid_kwargs(name)
    cases = [
        ("params", 0, lambda a: a.astype(np.int64), TypeError,
         r"params\[0\]: expected dtype float32 or float64, got int64"),
        ("params", 0, lambda a: a.astype(np.float16), TypeError,
         r"params\[0\]: expected dtype float32 or float64, got float16"),
        ("grads", 1, lambda a: a.astype(np.float64), TypeError,
         r"grads\[1\]: expected dtype float32 \(the dtype of params\[1\]\), got float64"),
        ("grads", 1, lambda a: a.astype(np.int32), TypeError,
         r"grads\[1\]: expected dtype float32 or float64, got int32"),
        ("grads", 1, lambda a: np.zeros(18, a.dtype), ValueError,
         r"grads\[1\]: expected shape \(17,\) \(the shape of params\[1\]\), got \(18,\)"),
        ("grads", 0, lambda a: a.T, ValueError,
         r"grads\[0\]: expected shape \(3, 4\) \(the shape of params\[0\]\), got \(4, 3\)"),
        ("grads", 1, lambda a: a.tolist(), TypeError, r"grads\[1\]: expected a numpy.ndarray"),
    ]
    for arg, i, spoil, exc, match in cases:
        arrays = valid_arrays(name)
        arrays[arg][i] = spoil(arrays[arg][i])
        assert_raises_and_writes_nothing(impl, name, arrays, kw, exc, match)
    # float64 everywhere is fine; float64 params among float32 ones are not.
    arrays = valid_arrays(name)
    arrays["params"][1] = arrays["params"][1].astype(np.float64)
    assert_raises_and_writes_nothing(impl, name, arrays, kw, TypeError,
                                     r"params\[1\]: expected dtype float32, got float64")


@IMPLS
@pytest.mark.parametrize("name", UPDATES)
def test_list_length_mismatch(impl, name, device):
    kw = valid_kwargs(name)
    dev = where(impl, device)
    arrays = valid_arrays(name, device=dev)
    arrays["grads"] = arrays["grads"][:2]
    assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                     r"grads: expected 3 arrays \(one per parameter\), got 2")
    for state in STATES[name]:
        arrays = valid_arrays(name, device=dev)
        arrays[state] = arrays[state] + [to_device(dev, np.zeros(3, np.float32))]
        assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                         rf"{state}: expected 3 arrays \(one per parameter\), got 4")
        arrays = valid_arrays(name, device=dev)
        arrays[state] = arrays[state][2]  # one bare array for three parameters
        assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                         rf"{state}: expected 3 arrays \(one per parameter\), got 1")


@IMPLS
@pytest.mark.parametrize("name", UPDATES)
def test_arrays_must_not_share_memory(impl, name, device):
    kw, dev = valid_kwargs(name), where(impl, device)
    arrays = valid_arrays(name, device=dev)
    arrays["grads"][0] = arrays["params"][0]
    assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                     r"params\[0\]: must not share memory with grads\[0\] \(the kernel reads grads\[0\]")
    state = STATES[name][0]
    arrays = valid_arrays(name, device=dev)
    arrays[state][1] = arrays["params"][1]
    assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                     rf"{state}\[1\]: must not share memory with params\[1\] \(both are written")


# Regression (issue 13): aliasing across list entries was accepted and gave racy or NaN results.
ALIASING = [(name, case) for name in UPDATES
            for case in ("the same parameter twice", "params[0] is grads[1]", "a state is params[1]",
                         "one list for two states")
            if case != "one list for two states" or len(STATES[name]) > 1]


@IMPLS
@pytest.mark.parametrize("name, case", ALIASING, ids=[f"{n[:-5]}-{c}" for n, c in ALIASING])
def test_aliasing_across_list_entries_is_refused(impl, name, case, device):
    states, dev = STATES[name], where(impl, device)
    arrays = valid_arrays(name, shapes=((3, 4), (17,), (2, 5)), device=dev)
    big = to_device(dev, np.zeros(40, np.float32))
    arrays["params"][0], arrays["params"][1] = big[:12].reshape(3, 4), big[20:37]  # disjoint views of one buffer
    if case == "the same parameter twice":
        arrays["params"][1] = big[:17]  # overlaps params[0]
        match = r"params\[1\]: must not share memory with params\[0\] \(both are written in place\)"
    elif case == "params[0] is grads[1]":
        arrays["grads"][1] = big[:17]
        match = (r"params\[0\]: must not share memory with grads\[1\] "
                 r"\(the kernel reads grads\[1\] while it writes params\[0\]\)")
    elif case == "a state is params[1]":
        arrays[states[0]][0] = big[20:32].reshape(3, 4)
        match = rf"{states[0]}\[0\]: must not share memory with params\[1\] \(both are written in place\)"
    else:  # e.g. the same arrays as exp_avgs and exp_avg_sqs
        arrays[states[-1]] = arrays[states[0]]
        match = rf"{states[-1]}\[(\d)\]: must not share memory with {states[0]}\[\1\] \(both are written in place\)"
    assert_raises_and_writes_nothing(impl, name, arrays, valid_kwargs(name), ValueError, match)


@IMPLS
def test_overlap_is_found_past_neighbours(impl, device, xp):
    # Sorted by start: a long read region [0, 250), a short one [10, 20), then params[0] at
    # [200, 210): params[0] overlaps the long one, which is not its neighbour.
    dev = where(impl, device)
    big = to_device(dev, np.zeros(300, np.float32))
    z = lambda n: to_device(dev, np.zeros(n, np.float32))  # noqa: E731
    params, grads = [big[200:210], z(250), z(10)], [z(10), big[0:250], big[10:20]]
    with pytest.raises(ValueError, match=r"params\[0\]: must not share memory with grads\[1\]"):
        impl.sgd_step(params, grads, None, lr=0.1)
    # Disjoint views of one buffer, in any order, are fine, and gradients may share memory.
    flat = to_device(dev, np.arange(1000, dtype=np.float32))
    views = [flat[i:i + 10] for i in range(0, 1000, 10)][::-1]
    g = to_device(dev, np.ones(10, np.float32))
    impl.sgd_step(views, [g] * len(views), None, lr=1.0)
    np.testing.assert_array_equal(to_numpy(flat), np.arange(1000, dtype=np.float32) - 1)
    # One overlap among many: the pair is named.
    views[37] = flat[503:513]
    with pytest.raises(ValueError, match=r"params\[(37|49)\]: must not share memory with params\[(49|50|37)\]"):
        impl.sgd_step(views, [g] * len(views), None, lr=1.0)


@IMPLS
@pytest.mark.parametrize("fn", ["scale_", "clip_grad_value_"])
def test_in_place_lists_refuse_aliasing(impl, fn, device):
    # Regression (issue 13): scale_([g, g], 2) sometimes left 2 where 4 was due.
    dev = where(impl, device)
    g = to_device(dev, np.ones(100, np.float32))
    arg = "arrays" if fn == "scale_" else "grads"
    for aliased in ([g, g], [g[:60], g[50:]], [to_device(dev, np.ones(3, np.float32)), g, g[99:]]):
        with pytest.raises(ValueError, match=rf"{arg}\[\d\]: must not share memory with {arg}\[\d\] \(both"):
            getattr(impl, fn)(aliased, 2.0)
        np.testing.assert_array_equal(to_numpy(g), 1)
    # A norm only reads: the same array twice counts twice.
    assert impl.grad_norm([g, g]) == pytest.approx(math.sqrt(200))


@IMPLS
@pytest.mark.parametrize("fn, arg, in_place", [("grad_norm", "grads", False), ("clip_grad_value_", "grads", True),
                                               ("scale_", "arrays", True)])
def test_bad_arrays_for_norm_clip_and_scale(impl, fn, arg, in_place):
    run = {"grad_norm": lambda a: impl.grad_norm(a), "clip_grad_value_": lambda a: impl.clip_grad_value_(a, 0.5),
           "scale_": lambda a: impl.scale_(a, 2.0)}[fn]
    first = np.full((3, 4), 2, np.float32)
    cases = [
        ([first, np.ones(5, np.float64)], TypeError,
         rf"{arg}\[1\]: expected dtype float32 \(the dtype of {arg}\[0\]\), got float64"),
        ([first, np.ones(5, np.int64)], TypeError, rf"{arg}\[1\]: expected dtype float32 or float64, got int64"),
        ([first, [1.0, 2.0]], TypeError, rf"{arg}\[1\]: expected a numpy.ndarray"),
    ]
    if in_place:
        cases += [
            ([first, _read_only(np.ones(5, np.float32))], ValueError, rf"{arg}\[1\]: expected a writable array"),
            ([first, np.ones(10, np.float32)[::2]], ValueError, rf"{arg}\[1\]: expected a C-contiguous"),
            ([np.ones((4, 3), np.float32).T], ValueError, rf"{arg}\[0\]: expected a C-contiguous"),
        ]
    else:  # a norm reads any strides
        assert run([np.ones(10, np.float32)[::2], np.ones((4, 3), np.float32).T]) == pytest.approx(math.sqrt(17))
    for arrays, exc, match in cases:
        with pytest.raises(exc, match=match):
            run(arrays)
        np.testing.assert_array_equal(first, 2)  # nothing written


# ---- the one rule for scalar arguments (fusednn._checks in Python, float_arg in the bindings) ----
# A real-valued argument is a Python int/float or a NumPy real scalar; bool, arrays of any shape
# (0-d and 1-element too), complex numbers, None and strings are a TypeError naming the argument,
# for the ops and their references alike. Regression (issue 13): array-valued scalars raised
# "RuntimeError: Unable to cast", and 0-d arrays and complex scalars were accepted.

def _scalar_calls(device):
    """{"op argument": call(impl, value)} for scalar arguments of several families' ops."""
    rng = np.random.default_rng(seed_of("scalars"))
    x4 = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    x2 = x4.reshape(4, 12)
    labels = np.array([0, 1, 2, 3])
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)

    def dev(impl, *arrays):
        return to_device(where(impl, device), *arrays)

    return {
        "dropout p": lambda impl, v: impl.dropout(dev(impl, x2), v, seed=1),
        "gaussian_noise std": lambda impl, v: impl.gaussian_noise(dev(impl, x2), v, seed=1),
        "softmax_cross_entropy label_smoothing":
            lambda impl, v: impl.softmax_cross_entropy(*dev(impl, x2, labels), label_smoothing=v),
        "batch_norm momentum": lambda impl, v: impl.batch_norm(*dev(impl, x4, ones, zeros, zeros.copy(), ones.copy()),
                                                               training=True, momentum=v),
        "batch_norm eps": lambda impl, v: impl.batch_norm(*dev(impl, x4, ones, zeros), training=True, eps=v),
        "local_response_norm alpha": lambda impl, v: impl.local_response_norm(dev(impl, x4), 3, alpha=v),
        "local_response_norm beta": lambda impl, v: impl.local_response_norm(dev(impl, x4), 3, beta=v),
        "local_response_norm k": lambda impl, v: impl.local_response_norm(dev(impl, x4), 3, k=v),
        "adam_step lr": lambda impl, v: impl.adam_step(*dev(impl, x2.copy(), x2, np.zeros_like(x2), np.zeros_like(x2)),
                                                       None, step=1, lr=v),
        "rmsprop_step alpha": lambda impl, v: impl.rmsprop_step(*dev(impl, x2.copy(), x2, np.zeros_like(x2)), None,
                                                                None, alpha=v),
        "scale_ factor": lambda impl, v: impl.scale_(dev(impl, x2.copy()), v),
    }


SCALAR_ARGS = list(_scalar_calls("cpu"))
NOT_REAL = {"1-element array": np.array([0.5]), "0-d array": np.array(0.5), "complex": 0.5j,
            "numpy complex": np.complex64(0.5), "None": None, "bool": True, "numpy bool": np.bool_(False),
            "string": "0.5"}
REAL = {"int": 0, "float": 0.5, "numpy float32": np.float32(0.5), "numpy int64": np.int64(0)}


@IMPLS
@pytest.mark.parametrize("arg", SCALAR_ARGS)
@pytest.mark.parametrize("kind", list(NOT_REAL))
def test_scalar_arguments_follow_one_rule(impl, arg, kind, device):
    call = _scalar_calls(device)[arg]
    name = arg.split()[-1]
    value = NOT_REAL[kind]
    with pytest.raises(TypeError, match=rf"^{name}: expected .*, got {re.escape(repr(value))} \("):
        call(impl, value)


@IMPLS
@pytest.mark.parametrize("arg", SCALAR_ARGS)
def test_real_scalars_are_accepted(impl, arg, device):
    call = _scalar_calls(device)[arg]
    for kind, value in REAL.items():
        if arg.endswith(("eps", "beta", "k")) and value == 0:
            value = 1 if kind == "int" else type(value)(1)  # these must be > 0
        call(impl, value)


def _training_calls(device):
    """{op: call(impl, training)} of the ops that take the training flag."""
    rng = np.random.default_rng(seed_of("training"))
    x4 = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)

    def dev(impl, *arrays):
        return to_device(where(impl, device), *arrays)

    return {
        "dropout": lambda impl, v: impl.dropout(dev(impl, x4), 0.5, seed=1, training=v),
        "drop_connect": lambda impl, v: impl.drop_connect(dev(impl, x4), 0.5, seed=1, training=v),
        "gaussian_noise": lambda impl, v: impl.gaussian_noise(dev(impl, x4), 0.5, seed=1, training=v),
        "batch_norm": lambda impl, v: impl.batch_norm(*dev(impl, x4, ones, zeros, zeros.copy(), ones.copy()),
                                                      training=v),
        "batch_norm_backward": lambda impl, v: impl.batch_norm_backward(*dev(impl, x4, x4, ones, zeros, ones),
                                                                        training=v),
    }


@IMPLS
@pytest.mark.parametrize("op", list(_training_calls("cpu")))
@pytest.mark.parametrize("value", [None, 1, 0, "False", np.array(True)], ids=["None", "1", "0", "str", "array"])
def test_training_is_a_bool(impl, op, value, device):
    # Regression (issue 13): training=None counted as False.
    call = _training_calls(device)[op]
    with pytest.raises(TypeError, match=rf"^training: expected True or False, got {re.escape(repr(value))} \("):
        call(impl, value)
    for ok in (True, False, np.bool_(True)):
        call(impl, ok)


@IMPLS
@pytest.mark.parametrize("flag", ["maximize", "amsgrad", "decoupled_weight_decay"])
@pytest.mark.parametrize("value", [None, 1, 0, "True", np.array(True)], ids=["None", "1", "0", "str", "array"])
def test_flags_are_bools(impl, flag, value, device):
    # None no longer counts as False, nor 1 as True: a TypeError names the flag.
    arrays = valid_arrays("adam_step", device=where(impl, device))
    assert_raises_and_writes_nothing(impl, "adam_step", arrays, {**valid_kwargs("adam_step"), flag: value},
                                     TypeError, rf"^{flag}: expected True or False, got {re.escape(repr(value))} \(")
    for ok in (True, np.bool_(False)):
        impl.adam_step(arrays["params"], arrays["grads"], *[arrays[s] for s in STATES["adam_step"]],
                       **{**valid_kwargs("adam_step"), flag: ok})


# ---- the surface ----

def test_reference_has_the_same_signatures():
    module = importlib.import_module("fusednn.reference.optim")
    public = sorted(n for n, f in vars(module).items()
                    if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == module.__name__)
    assert sorted(PUBLIC) == public
    for name in PUBLIC:
        assert getattr(reference, name) is getattr(module, name)
        assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name)), name
        assert name in ops.__all__ and name in reference.__all__
    # Everything after params, grads and the states is keyword-only.
    for name in UPDATES:
        params = inspect.signature(getattr(reference, name)).parameters.values()
        positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        assert positional == ["params", "grads"] + STATES[name], name


# ---- add_penalty_grad (the fused elastic-net gradient)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 1000, 200_003])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("l1, l2", [(0.01, 0.0), (0.0, 0.1), (0.003, 0.02)])
def test_add_penalty_grad_matches_reference(dtype, n, masked, l1, l2, device):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(dtype)
    w[:: max(1, n // 5)] = 0.0  # sign(0) = 0
    g = rng.standard_normal(n).astype(dtype)
    mask = rng.random(n) < 0.6 if masked else None
    g_ref = g.copy()
    expected = reference.add_penalty_grad(w, g_ref, l1=l1, l2=l2, mask=mask)
    w, g, mask = to_device(device, w, g, mask)
    value = ops.add_penalty_grad(w, g, l1=l1, l2=l2, mask=mask)
    # elementwise: the kernel may fuse g + l2 * w into one FMA (one rounding fewer)
    assert_close(g, g_ref)
    assert type(value) is float
    assert_close(np.float64(value), np.float64(expected))  # both accumulated in float64


def test_add_penalty_grad_is_the_same_for_any_thread_count(threads):
    w = np.random.default_rng(0).standard_normal((300, 1001)).astype(np.float32)
    results = []
    for t in (1, 2, 3):
        threads(t)
        g = np.zeros_like(w)
        results.append((ops.add_penalty_grad(w, g, l1=0.1, l2=0.2), g))
    for value, g in results[1:]:
        assert value == results[0][0]
        np.testing.assert_array_equal(g, results[0][1])


def test_add_penalty_grad_propagates_nan_and_leaves_unmasked_entries(device):
    w, g, mask = to_device(device, np.array([1.0, np.nan, -2.0, 3.0], np.float32), np.zeros(4, np.float32),
                           np.array([True, True, True, False]))
    value = ops.add_penalty_grad(w, g, l1=1.0, l2=1.0, mask=mask)
    g = to_numpy(g)
    assert np.isnan(value) and np.isnan(g[1])
    np.testing.assert_array_equal(g[[0, 2, 3]], [2.0, -3.0, 0.0])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(l1=-1.0), ValueError, "l1"),
    (dict(l2=float("nan")), ValueError, "l2"),
    (dict(mask=np.ones(5, np.int8)), TypeError, "mask: expected a boolean array"),
    (dict(mask=np.ones(4, bool)), ValueError, r"mask: expected shape \(5,\)"),
])
def test_add_penalty_grad_bad_arguments(kwargs, exc, match, device):
    if "mask" in kwargs:
        kwargs = dict(mask=to_device(device, kwargs["mask"]))
    with pytest.raises(exc, match=match):
        ops.add_penalty_grad(*to_device(device, np.ones(5, np.float32), np.zeros(5, np.float32)), **kwargs)
    # The same array as params and grads: the gradient would be read while it is written.
    w = to_device(device, np.ones(5, np.float32))
    with pytest.raises(ValueError, match="grads: must not share memory with params"):
        ops.add_penalty_grad(w, w, l2=1.0)


def test_add_penalty_grad_refuses_grads_it_cannot_update_in_place():
    w = np.ones(6, np.float32)
    with pytest.raises(ValueError, match="grads: expected a C-contiguous"):
        ops.add_penalty_grad(w[::2], np.zeros(6, np.float32)[::2], l2=1.0)
    with pytest.raises(TypeError, match="grads: expected dtype float32"):
        ops.add_penalty_grad(w, np.zeros(6), l2=1.0)
