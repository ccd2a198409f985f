"""fusednn.ops optimizer updates, gradient norms, clipping and scaling against the NumPy
reference: 100-step trajectories for every rule and option, non-finite gradients, single steps
worked out by hand, norms, the same bits for any thread count, bad input and the signatures."""

import importlib
import inspect
import math

import numpy as np
import pytest
from conftest import ELEMENTWISE_RTOL, seed_of

from fusednn import ops, reference

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

def assert_close(got, want, dtype):
    """got matches want within ELEMENTWISE_RTOL of |want| plus of the array's largest |want|
    (a parameter crossing zero, or a momentum changing sign, is not held to a tolerance relative
    to itself); NaNs sit where want has them and infinities are equal."""
    assert isinstance(got, np.ndarray) and got.dtype == want.dtype == dtype and got.shape == want.shape
    rtol = ELEMENTWISE_RTOL[dtype]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf])
    finite = np.isfinite(want)
    if not finite.any():
        return
    g, w = got[finite].astype(np.float64), want[finite].astype(np.float64)
    err = np.abs(g - w)
    bound = rtol * (np.abs(w) + np.abs(w).max())
    bad = ~(err <= bound)
    assert not bad.any(), f"{bad.sum()} of {bad.size} values off; worst error {err[bad].max():.3g}"


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
    return {s: None if v is None else [np.full_like(p, v) for p in params] for s, v in used.items()}


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
    """One implementation's parameters, states and mu_product, from a seeded start."""

    def __init__(self, impl, name, kw, shapes, dtype):
        self.impl, self.name = impl, name
        self.kw, used = split_options(name, kw)
        rng = np.random.default_rng(seed_of("params", name, tuple(map(tuple, shapes)), np.dtype(dtype).name))
        self.params = [rng.standard_normal(s).astype(dtype) for s in shapes]
        self.states = new_states(used, self.params)
        self.mu_product = 1.0
        self.as_list = len(shapes) > 1

    def step(self, t, grads):
        before = [g.copy() for g in grads]
        self.mu_product = call(self.impl, self.name, self.kw, self.params, grads, self.states, t, self.mu_product,
                               as_list=self.as_list)
        for g, b in zip(grads, before):  # gradients are only read
            np.testing.assert_array_equal(g, b)


def trajectory(impl, name, kw, shapes, dtype, steps, grads_at):
    run = Run(impl, name, kw, shapes, dtype)
    for t in range(1, steps + 1):
        run.step(t, grads_at(t))
    return run


def assert_same_run(got, want, dtype):
    for g, w in zip(got.params, want.params):
        assert_close(g, w, dtype)
    for s in STATES[got.name]:
        assert (got.states[s] is None) == (want.states[s] is None)
        for g, w in zip(got.states[s] or [], want.states[s] or []):
            assert_close(g, w, dtype)
    assert got.mu_product == pytest.approx(want.mu_product, rel=1e-14, abs=0)


def assert_same_trajectory(name, kw, shapes, dtype, steps, grads_at, every_step=False):
    """ops and the reference from the same start on the same gradients, compared after the
    last update (or after every one)."""
    got, want = Run(ops, name, kw, shapes, dtype), Run(reference, name, kw, shapes, dtype)
    for t in range(1, steps + 1):
        got.step(t, grads_at(t))
        want.step(t, grads_at(t))
        if every_step or t == steps:
            assert_same_run(got, want, dtype)


# ---- ops against the reference: 100-step trajectories ----

@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_trajectory_matches_reference(name, kw, dtype, shape):
    shapes = as_shapes(shape)
    key = (name, repr(kw), repr(shape), np.dtype(dtype).name)
    assert_same_trajectory(name, kw, shapes, dtype, STEPS, lambda t: random_grads(key, t, shapes, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_non_finite_gradients_propagate_as_in_reference(name, kw, dtype):
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

    assert_same_trajectory(name, kw, shapes, dtype, 12, grads_at, every_step=True)


@pytest.mark.parametrize("name, kw", [c for c in CONFIGS if c[1].get("maximize")],
                         ids=[i for c, i in zip(CONFIGS, CONFIG_IDS) if c[1].get("maximize")])
def test_maximize_is_minimizing_the_negated_gradient(name, kw):
    # Both calls go through ops: maximize=True on g is maximize=False on -g, bit for bit.
    shapes = [(7,), (3, 4)]
    flipped = {k: v for k, v in kw.items() if k != "maximize"}
    a = trajectory(ops, name, kw, shapes, np.float32, 5, lambda t: random_grads("max", t, shapes, np.float32))
    b = trajectory(ops, name, flipped, shapes, np.float32, 5,
                   lambda t: [-g for g in random_grads("max", t, shapes, np.float32)])
    for x, y in zip(a.params, b.params):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_list_call_equals_one_call_per_array(name, kw):
    # One multi-tensor call updates each parameter exactly as a call on that parameter alone.
    shapes = [(3, 4), (70_001,), (2, 5, 33)]
    kw, used = split_options(name, kw)
    rng = np.random.default_rng(seed_of("multi", name))
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    alone = [p.copy() for p in params]
    states, states_alone = new_states(used, params), new_states(used, params)
    mu, mu_alone = 1.0, [1.0] * len(shapes)
    for t in (1, 2, 3):
        grads = random_grads(("multi", name), t, shapes, np.float32)
        mu = call(ops, name, kw, params, grads, states, t, mu)
        for i in range(len(shapes)):
            one = {s: None if v is None else [v[i]] for s, v in states_alone.items()}
            mu_alone[i] = call(ops, name, kw, [alone[i]], [grads[i]], one, t, mu_alone[i], as_list=False)
    for i in range(len(shapes)):
        np.testing.assert_array_equal(params[i], alone[i])
        for s, v in states.items():
            if v is not None:
                np.testing.assert_array_equal(v[i], states_alone[s][i])
        assert mu_alone[i] == mu


@pytest.mark.parametrize("name, kw", CONFIGS, ids=CONFIG_IDS)
def test_strided_gradients_are_read_as_they_are(name, kw):
    # Gradients may have any strides: the same bits as contiguous copies of them.
    shapes = [(6, 5), (1001,)]
    kw, used = split_options(name, kw)
    rng = np.random.default_rng(seed_of("strided", name))
    params = [rng.standard_normal(s).astype(np.float64) for s in shapes]
    copies = [p.copy() for p in params]
    states, states_c = new_states(used, params), new_states(used, params)
    mu = mu_c = 1.0
    for t in (1, 2, 3):
        contiguous = random_grads(("strided", name), t, shapes, np.float64)
        strided = [np.asfortranarray(contiguous[0]), np.repeat(contiguous[1], 2)[::2]]
        assert not strided[0].flags.c_contiguous and not strided[1].flags.c_contiguous
        mu = call(ops, name, kw, params, strided, states, t, mu)
        mu_c = call(ops, name, kw, copies, contiguous, states_c, t, mu_c)
    for p, c in zip(params, copies):
        np.testing.assert_array_equal(p, c)


@pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("name", UPDATES)
def test_empty_updates_are_no_ops(impl, name):
    kw, used = split_options(name, dict(CONFIGS[[n for n, _ in CONFIGS].index(name)][1], lr=0.1))
    # An empty list (states may be None or empty lists) and zero-size arrays.
    call(impl, name, kw, [], [], {s: [] for s in STATES[name]}, 1, 1.0)
    call(impl, name, kw, [], [], {s: None for s in STATES[name]}, 1, 1.0)
    params = [np.zeros((0,), np.float32), np.zeros((3, 0), np.float32)]
    call(impl, name, kw, params, [p.copy() for p in params], new_states(used, params), 1, 1.0)
    assert [p.shape for p in params] == [(0,), (3, 0)]


# ---- single steps worked out by hand ----

IMPLS = pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_by_hand(impl, dtype):
    rtol = ELEMENTWISE_RTOL[dtype]
    p0, g, b0 = [1.0, -2.0, 0.5], [0.5, 0.25, -4.0], [0.2, -0.1, 1.0]
    lr, mom, wd = 0.1, 0.9, 0.1

    def run(**kw):
        p, b = np.array(p0, dtype), np.array(b0, dtype)
        impl.sgd_step(p, np.array(g, dtype), b, lr=lr, momentum=mom, weight_decay=wd, **kw)
        return p, b

    gw = [gi + wd * pi for gi, pi in zip(g, p0)]  # g + wd p
    # Momentum with dampening 0.1: b = 0.9 b + 0.9 g, p -= lr b.
    b = [mom * bi + 0.9 * gi for bi, gi in zip(b0, gw)]
    p, buf = run(dampening=0.1)
    np.testing.assert_allclose(buf, b, rtol=rtol)
    np.testing.assert_allclose(p, [pi - lr * bi for pi, bi in zip(p0, b)], rtol=rtol)
    assert np.allclose(b, [0.72, -0.045, -2.655])
    # Nesterov: b = 0.9 b + g, p -= lr (g + 0.9 b).
    b = [mom * bi + gi for bi, gi in zip(b0, gw)]
    p, buf = run(nesterov=True)
    np.testing.assert_allclose(buf, b, rtol=rtol)
    np.testing.assert_allclose(p, [pi - lr * (gi + mom * bi) for pi, gi, bi in zip(p0, gw, b)], rtol=rtol)
    # First step: the buffer becomes the gradient, whatever it held.
    p, buf = run(first_step=True)
    np.testing.assert_allclose(buf, gw, rtol=rtol)
    np.testing.assert_allclose(p, [pi - lr * gi for pi, gi in zip(p0, gw)], rtol=rtol)
    # No momentum, maximize and grad_scale 2: p += lr (2 g) - lr wd p.
    p = np.array(p0, dtype)
    impl.sgd_step(p, np.array(g, dtype), None, lr=lr, weight_decay=wd, maximize=True, grad_scale=2.0)
    np.testing.assert_allclose(p, [pi - lr * (-2 * gi + wd * pi) for pi, gi in zip(p0, g)], rtol=rtol)


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_first_step_is_lr_times_sign(impl, dtype):
    # With m = v = 0 the bias corrections cancel: p -= lr g / (|g| + eps), about lr sign(g).
    rtol = ELEMENTWISE_RTOL[dtype]
    g = [2.0, -0.5, 1e-3, 0.0, -30.0, 1e-7]
    lr, eps = 1e-3, 1e-8
    for amsgrad in (False, True):
        p = np.zeros(len(g), dtype)
        m, v, vmax = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p) if amsgrad else None
        impl.adam_step(p, np.array(g, dtype), m, v, vmax, step=1, lr=lr, eps=eps, amsgrad=amsgrad)
        np.testing.assert_allclose(p, [-lr * gi / (abs(gi) + eps) for gi in g], rtol=rtol)
        np.testing.assert_allclose(m, [0.1 * gi for gi in g], rtol=rtol)
        np.testing.assert_allclose(v, [0.001 * gi * gi for gi in g], rtol=rtol)
        if amsgrad:
            np.testing.assert_array_equal(vmax, v)
    assert abs(p[0] + lr) < 1e-8 and abs(p[4] - lr) < 1e-8 and p[3] == 0
    # AdamW from p = 1 and weight decay 0.1: p = (1 - lr wd) - lr g / (|g| + eps).
    p = np.ones(len(g), dtype)
    impl.adam_step(p, np.array(g, dtype), np.zeros_like(p), np.zeros_like(p), None, step=1, lr=lr, eps=eps,
                   weight_decay=0.1, decoupled_weight_decay=True)
    np.testing.assert_allclose(p, [1 - lr * 0.1 - lr * gi / (abs(gi) + eps) for gi in g], rtol=rtol)


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_adagrad_by_hand(impl, dtype):
    rtol = ELEMENTWISE_RTOL[dtype]
    p0, g, s0 = [1.0, -1.0, 3.0], [2.0, -1.0, 0.5], 0.1
    lr, lr_decay, step, wd = 0.1, 0.5, 3, 0.2
    clr = lr / (1 + (step - 1) * lr_decay)  # 0.05
    p, s = np.array(p0, dtype), np.full(3, s0, dtype)
    impl.adagrad_step(p, np.array(g, dtype), s, step=step, lr=lr, lr_decay=lr_decay, weight_decay=wd)
    gw = [gi + wd * pi for gi, pi in zip(g, p0)]
    want_s = [s0 + gi * gi for gi in gw]
    np.testing.assert_allclose(s, want_s, rtol=rtol)
    np.testing.assert_allclose(p, [pi - clr * gi / (math.sqrt(si) + 1e-10) for pi, gi, si in zip(p0, gw, want_s)],
                               rtol=rtol)
    assert np.allclose(s, [4.94, 1.54, 1.31])


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_nadam_first_step_and_mu_product_by_hand(impl, dtype):
    rtol = ELEMENTWISE_RTOL[dtype]
    beta1, psi, lr, eps = 0.9, 4e-3, 2e-3, 1e-8
    mu = [beta1 * (1 - 0.5 * 0.96 ** (t * psi)) for t in (1, 2, 3, 4)]
    g = [2.0, -0.5, 0.0]
    p, m, v = np.zeros(3, dtype), np.zeros(3, dtype), np.zeros(3, dtype)
    got = impl.nadam_step(p, np.array(g, dtype), m, v, step=1, mu_product=1.0)
    assert got == pytest.approx(mu[0], rel=1e-15)
    # m = 0.1 g, d = |g| + eps: p = -lr g / d - lr mu_2 / (1 - mu_1 mu_2) 0.1 g / d.
    c = 1 + 0.1 * mu[1] / (1 - mu[0] * mu[1])
    np.testing.assert_allclose(p, [-lr * c * gi / (abs(gi) + eps) for gi in g], rtol=rtol)
    for t in (2, 3):
        got = impl.nadam_step(p, np.array(g, dtype), m, v, step=t, mu_product=got)
    assert got == pytest.approx(mu[0] * mu[1] * mu[2], rel=1e-15)


# ---- norms, clipping, scaling ----

NORM_SHAPES = [(3, 4), (1,), (0,), (4097,), (70_000,), (2, 3, 5)]  # 70000: more than one 65536 chunk


def norm_arrays(dtype, key):
    rng = np.random.default_rng(seed_of("norm", key))
    return [(rng.standard_normal(s) * rng.uniform(0.1, 10)).astype(dtype) for s in NORM_SHAPES]


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm_matches_numpy(impl, dtype):
    grads = norm_arrays(dtype, "norm")
    flat = np.concatenate([g.ravel() for g in grads]).astype(np.float64)
    two, inf = impl.grad_norm(grads), impl.grad_norm(grads, norm_type=math.inf)
    assert type(two) is float and type(inf) is float
    assert two == pytest.approx(np.linalg.norm(flat), rel=1e-12)
    assert impl.grad_norm(grads, 2) == two
    assert inf == np.abs(flat).max()
    assert impl.grad_norm(grads, float("inf")) == inf
    # One bare array, a strided one, and no arrays at all.
    assert impl.grad_norm(grads[4]) == pytest.approx(np.linalg.norm(grads[4].astype(np.float64)), rel=1e-12)
    strided = grads[4][::3]
    assert impl.grad_norm([strided]) == pytest.approx(np.linalg.norm(strided.astype(np.float64)), rel=1e-12)
    assert impl.grad_norm([strided], np.inf) == np.abs(strided).max()
    assert impl.grad_norm([]) == 0.0 and impl.grad_norm([], math.inf) == 0.0
    assert impl.grad_norm([np.zeros(0, dtype)], math.inf) == 0.0


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_norm_non_finite(impl, dtype):
    for where in (0, 4):  # in the first array, and in the second chunk of a large one
        for values, two, inf in [((np.nan,), math.nan, math.nan), ((np.inf,), math.inf, math.inf),
                                 ((-np.inf,), math.inf, math.inf), ((np.inf, np.nan), math.nan, math.nan),
                                 ((np.nan, -np.inf), math.nan, math.nan)]:
            grads = norm_arrays(dtype, "non-finite")
            for k, value in enumerate(values):
                grads[where].reshape(-1)[-1 - 7 * k] = value
            for norm_type, want in ((2.0, two), (math.inf, inf)):
                got = impl.grad_norm(grads, norm_type)
                assert (math.isnan(got) and math.isnan(want)) or got == want, (where, values, norm_type, got)


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_value_in_place(impl, dtype):
    grads = norm_arrays(dtype, "clip")
    grads[0][1, 2] = np.nan
    grads[3][5], grads[3][6] = np.inf, -np.inf
    want = [np.clip(g, -dtype(0.75), dtype(0.75)) for g in grads]
    objects = list(grads)
    assert impl.clip_grad_value_(grads, 0.75) is None
    for g, obj, w in zip(grads, objects, want):
        assert g is obj
        np.testing.assert_array_equal(g, w)
    assert np.isnan(grads[0][1, 2]) and grads[3][5] == 0.75 and grads[3][6] == -0.75
    single = norm_arrays(dtype, "clip single")[4]
    want = np.clip(single, -dtype(1), dtype(1))
    impl.clip_grad_value_(single, 1)
    np.testing.assert_array_equal(single, want)
    impl.clip_grad_value_(single, 0.0)
    assert not single.any()
    impl.clip_grad_value_([], 1.0)


@IMPLS
@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_in_place(impl, dtype):
    for factor in (0.5, -3.0, 1e-3, 0.0):
        arrays = norm_arrays(dtype, "scale")
        arrays[0][0, 0] = np.inf
        objects = list(arrays)
        with np.errstate(invalid="ignore"):  # inf * 0
            want = [a * dtype(factor) for a in arrays]
            assert impl.scale_(arrays, factor) is None
        for a, obj, w in zip(arrays, objects, want):
            assert a is obj
            np.testing.assert_array_equal(a, w)
    single = np.arange(5, dtype=dtype)
    impl.scale_(single, 2)
    np.testing.assert_array_equal(single, np.arange(5, dtype=dtype) * 2)
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

def valid_arrays(name, shapes=((3, 4), (17,), (2, 5)), dtype=np.float32):
    """params, grads and every state of the rule (all given), as lists."""
    rng = np.random.default_rng(seed_of("bad", name))
    arrays = {"params": [rng.standard_normal(s).astype(dtype) for s in shapes],
              "grads": [rng.standard_normal(s).astype(dtype) for s in shapes]}
    for s in STATES[name]:
        arrays[s] = [np.abs(rng.standard_normal(sh)).astype(dtype) for sh in shapes]
    return arrays


def valid_kwargs(name):
    kw = {"sgd_step": dict(lr=0.1, momentum=0.9), "rmsprop_step": dict(momentum=0.9, centered=True),
          "adam_step": dict(amsgrad=True)}.get(name, {})
    if name in ("adagrad_step", "adam_step", "nadam_step"):
        kw["step"] = 2
    if name == "nadam_step":
        kw["mu_product"] = 0.9
    return kw


def assert_raises_and_writes_nothing(impl, name, arrays, kw, exc, match):
    flat = [a for v in arrays.values() if isinstance(v, list) for a in v if isinstance(a, np.ndarray)]
    before = [a.copy() for a in flat]
    args = [arrays["params"], arrays["grads"]] + [arrays[s] for s in STATES[name]]
    with pytest.raises(exc, match=match):
        getattr(impl, name)(*args, **kw)
    for a, b in zip(flat, before):
        np.testing.assert_array_equal(a, b)


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
def test_bad_hyperparameter(impl, name, bad, exc, match):
    assert_raises_and_writes_nothing(impl, name, valid_arrays(name), {**valid_kwargs(name), **bad}, exc, match)


@IMPLS
@pytest.mark.parametrize("norm_type", [1.0, 3, 0, -math.inf, float("nan")])
def test_bad_norm_type(impl, norm_type):
    with pytest.raises(ValueError, match=rf"norm_type: expected 2.0 or inf, got {norm_type}"):
        impl.grad_norm([np.ones(3)], norm_type)
    with pytest.raises(TypeError, match=r"norm_type: expected 2.0 or inf"):
        impl.grad_norm([np.ones(3)], "fro")


@IMPLS
def test_bad_clip_value_and_factor(impl):
    g = np.ones(3)
    for bad in (-1, float("nan")):
        with pytest.raises(ValueError, match=rf"clip_value: expected a value >= 0, got {bad}"):
            impl.clip_grad_value_([g], bad)
    with pytest.raises(TypeError, match=r"factor: expected a real number"):
        impl.scale_([g], "2")
    np.testing.assert_array_equal(g, 1)


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
def test_missing_state(impl, name, kw, state, match):
    arrays = valid_arrays(name)
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
def test_list_length_mismatch(impl, name):
    kw = valid_kwargs(name)
    arrays = valid_arrays(name)
    arrays["grads"] = arrays["grads"][:2]
    assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                     r"grads: expected 3 arrays \(one per parameter\), got 2")
    for state in STATES[name]:
        arrays = valid_arrays(name)
        arrays[state] = arrays[state] + [np.zeros(3, np.float32)]
        assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                         rf"{state}: expected 3 arrays \(one per parameter\), got 4")
        arrays = valid_arrays(name)
        arrays[state] = arrays[state][2]  # one bare array for three parameters
        assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                         rf"{state}: expected 3 arrays \(one per parameter\), got 1")


@IMPLS
@pytest.mark.parametrize("name", UPDATES)
def test_arrays_must_not_share_memory(impl, name):
    kw = valid_kwargs(name)
    arrays = valid_arrays(name)
    arrays["grads"][0] = arrays["params"][0]
    assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                     r"params\[0\]: must not share memory with grads\[0\]")
    state = STATES[name][0]
    arrays = valid_arrays(name)
    arrays[state][1] = arrays["params"][1]
    assert_raises_and_writes_nothing(impl, name, arrays, kw, ValueError,
                                     rf"{state}\[1\]: must not share memory with params\[1\]")


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
def test_add_penalty_grad_matches_reference(dtype, n, masked, l1, l2):
    rng = np.random.default_rng(n)
    w = rng.standard_normal(n).astype(dtype)
    w[:: max(1, n // 5)] = 0.0  # sign(0) = 0
    g = rng.standard_normal(n).astype(dtype)
    mask = rng.random(n) < 0.6 if masked else None
    g_ref = g.copy()
    value = ops.add_penalty_grad(w, g, l1=l1, l2=l2, mask=mask)
    expected = reference.add_penalty_grad(w, g_ref, l1=l1, l2=l2, mask=mask)
    # elementwise: the kernel may fuse g + l2 * w into one FMA (one rounding fewer)
    np.testing.assert_allclose(g, g_ref, rtol=ELEMENTWISE_RTOL[dtype], atol=ELEMENTWISE_RTOL[dtype])
    np.testing.assert_allclose(value, expected, rtol=1e-12)


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


def test_add_penalty_grad_propagates_nan_and_leaves_unmasked_entries():
    w = np.array([1.0, np.nan, -2.0, 3.0], np.float32)
    g = np.zeros(4, np.float32)
    value = ops.add_penalty_grad(w, g, l1=1.0, l2=1.0, mask=np.array([True, True, True, False]))
    assert np.isnan(value) and np.isnan(g[1])
    np.testing.assert_array_equal(g[[0, 2, 3]], [2.0, -3.0, 0.0])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(l1=-1.0), ValueError, "l1"),
    (dict(l2=float("nan")), ValueError, "l2"),
    (dict(mask=np.ones(5, np.int8)), TypeError, "mask: expected a boolean array"),
    (dict(mask=np.ones(4, bool)), ValueError, r"mask: expected shape \(5,\)"),
])
def test_add_penalty_grad_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ops.add_penalty_grad(np.ones(5, np.float32), np.zeros(5, np.float32), **kwargs)


def test_add_penalty_grad_refuses_grads_it_cannot_update_in_place():
    w = np.ones(6, np.float32)
    with pytest.raises(ValueError, match="grads: expected a C-contiguous"):
        ops.add_penalty_grad(w[::2], np.zeros(6, np.float32)[::2], l2=1.0)
    with pytest.raises(TypeError, match="grads: expected dtype float32"):
        ops.add_penalty_grad(w, np.zeros(6), l2=1.0)
