"""fusednn.nn.init: sample statistics against each initializer's formula (with tolerances that
shrink as 1/sqrt(n)), orthogonality, seeding, dtype independence and bad arguments."""

import math

import numpy as np
import pytest

from fusednn.nn import init

K = 5.0  # tolerance in standard errors


def assert_stats(a, mean, std):
    """Sample mean within K std/sqrt(n) of mean, sample std within K std/sqrt(n) of std."""
    x = np.asarray(a, np.float64).ravel()
    n = x.size
    assert abs(x.mean() - mean) <= K * std / math.sqrt(n), (x.mean(), mean)
    assert abs(x.std() - std) <= K * std / math.sqrt(n), (x.std(), std)


def test_fans():
    assert init.fan_in_and_fan_out((3, 4)) == (4, 3)
    assert init.fan_in_and_fan_out((8, 3, 5, 5)) == (3 * 25, 8 * 25)
    assert init.fan_in_and_fan_out([2, 7, 4]) == (28, 8)
    for shape in [(), (5,)]:
        with pytest.raises(ValueError, match="shape: expected at least 2 dimensions"):
            init.fan_in_and_fan_out(shape)


def test_gains():
    for name in ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose2d", "sigmoid"]:
        assert init.calculate_gain(name) == 1.0
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 0.01 ** 2)))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("leaky_relu", 0) == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="nonlinearity: expected .* got 'gelu'"):
        init.calculate_gain("gelu")
    with pytest.raises(TypeError, match="param"):
        init.calculate_gain("leaky_relu", True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zeros_and_constant(dtype):
    a = np.full((4, 5), 7.0, dtype)
    assert init.zeros(a) is a and not a.any()
    assert init.constant(a, 0.25) is a and (a == dtype(0.25)).all() and a.dtype == dtype


def test_normal_and_uniform_statistics():
    a = np.empty((200, 500), np.float32)
    assert init.normal(a, mean=0.5, std=2.0, rng=0) is a
    assert_stats(a, 0.5, 2.0)
    init.uniform(a, low=-1.0, high=3.0, rng=1)
    assert a.min() >= -1.0 and a.max() <= 3.0
    assert a.min() < -0.99 and a.max() > 2.99
    assert_stats(a, 1.0, 4.0 / math.sqrt(12))
    init.uniform(a, rng=2)  # default U(0, 1)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert_stats(a, 0.5, 1.0 / math.sqrt(12))


# (initializer, kwargs, expected std from the shape's fans, uniform?)
FAN_CASES = [
    ("xavier_uniform", {}, lambda fi, fo: math.sqrt(2 / (fi + fo)), True),
    ("xavier_uniform", {"gain": 2.0}, lambda fi, fo: 2 * math.sqrt(2 / (fi + fo)), True),
    ("xavier_normal", {"gain": 5 / 3}, lambda fi, fo: 5 / 3 * math.sqrt(2 / (fi + fo)), False),
    ("he_uniform", {}, lambda fi, fo: math.sqrt(2 / fi), True),  # leaky_relu with a=0: gain sqrt(2)
    ("he_uniform", {"a": 0.2, "mode": "fan_out"}, lambda fi, fo: math.sqrt(2 / 1.04 / fo), True),
    ("he_normal", {"nonlinearity": "relu"}, lambda fi, fo: math.sqrt(2 / fi), False),
    ("he_normal", {"mode": "fan_out", "nonlinearity": "tanh"}, lambda fi, fo: 5 / 3 / math.sqrt(fo), False),
    ("kaiming_normal", {"nonlinearity": "linear"}, lambda fi, fo: 1 / math.sqrt(fi), False),
    ("lecun_normal", {}, lambda fi, fo: 1 / math.sqrt(fi), False),
]


@pytest.mark.parametrize("shape", [(300, 700), (64, 16, 5, 5)])
@pytest.mark.parametrize("name, kwargs, std_of, is_uniform", FAN_CASES)
def test_fan_based_statistics(name, kwargs, std_of, is_uniform, shape):
    fan_in = shape[1] * math.prod(shape[2:])
    fan_out = shape[0] * math.prod(shape[2:])
    std = std_of(fan_in, fan_out)
    a = np.empty(shape, np.float32)
    assert getattr(init, name)(a, **kwargs, rng=3) is a
    assert_stats(a, 0.0, std)
    if is_uniform:
        bound = math.sqrt(3) * std
        assert np.abs(a).max() <= np.float32(bound) and np.abs(a).max() > 0.99 * bound


def test_kaiming_aliases():
    assert init.kaiming_uniform is init.he_uniform and init.kaiming_normal is init.he_normal


@pytest.mark.parametrize("shape, gain", [((50, 80), 1.0), ((80, 50), 1.0), ((16, 3, 3, 3), 2.0), ((7, 7), 0.5)])
def test_orthogonal(shape, gain):
    a = init.orthogonal(np.empty(shape), gain=gain, rng=4)
    w = a.reshape(shape[0], -1)
    rows, cols = w.shape
    gram = w @ w.T if rows <= cols else w.T @ w
    np.testing.assert_allclose(gram, gain ** 2 * np.eye(min(rows, cols)), atol=1e-12)


def test_orthogonal_is_haar_distributed():
    # Without the sign correction by diag(R), LAPACK's Q has Q[0, 0] < 0 always.
    first = np.array([init.orthogonal(np.empty((4, 4)), rng=s)[0, 0] for s in range(400)])
    assert abs(first.mean()) <= K * 0.5 / math.sqrt(first.size)  # E[q00^2] = 1/4 for 4x4


NAMES = ["normal", "uniform", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "lecun_normal",
         "orthogonal"]


@pytest.mark.parametrize("name", NAMES)
def test_seeding_and_dtype_independence(name):
    f = getattr(init, name)
    a64 = f(np.empty((6, 9)), rng=11)
    np.testing.assert_array_equal(f(np.empty((6, 9)), rng=11), a64)
    np.testing.assert_array_equal(f(np.empty((6, 9)), rng=np.random.default_rng(11)), a64)
    np.testing.assert_array_equal(f(np.empty((6, 9), np.float32), rng=11), a64.astype(np.float32))
    assert not np.array_equal(f(np.empty((6, 9)), rng=12), a64)
    assert not np.array_equal(f(np.empty((6, 9)), rng=None), a64)
    gen = np.random.default_rng(5)  # a Generator advances: two draws differ
    assert not np.array_equal(f(np.empty((6, 9)), rng=gen), f(np.empty((6, 9)), rng=gen))


def test_fills_a_strided_view_in_place():
    big = np.zeros((20, 40))
    view = big[:, ::2]
    assert init.xavier_normal(view, rng=0) is view
    assert (big[:, 1::2] == 0).all() and (big[:, ::2] != 0).all()
    np.testing.assert_array_equal(view, init.xavier_normal(np.empty((20, 20)), rng=0))


@pytest.mark.parametrize("name", ["xavier_uniform", "he_normal", "lecun_normal", "orthogonal"])
def test_empty_arrays_are_left_alone(name):
    a = np.empty((0, 5))
    assert getattr(init, name)(a, rng=0) is a


@pytest.mark.parametrize("call, exc, match", [
    (lambda: init.zeros([1.0, 2.0]), TypeError, "array: expected a numpy.ndarray, got builtins.list"),
    (lambda: init.normal(np.zeros(3, np.int32)), TypeError, "array: expected a floating-point array, got int32"),
    (lambda: init.constant(np.zeros(3), "1"), TypeError, "value: expected a number"),
    (lambda: init.normal(np.zeros(3), std=-1.0), ValueError, "std: expected a value >= 0, got -1.0"),
    (lambda: init.uniform(np.zeros(3), low=2.0, high=1.0), ValueError, "low <= high"),
    (lambda: init.uniform(np.zeros(3), high=math.inf), ValueError, "finite"),
    (lambda: init.xavier_uniform(np.zeros(3)), ValueError, "at least 2 dimensions"),
    (lambda: init.xavier_uniform(np.zeros((3, 3)), gain="2"), TypeError, "gain"),
    (lambda: init.he_normal(np.zeros((3, 3)), mode="fan_avg"), ValueError, "mode: expected 'fan_in' or 'fan_out'"),
    (lambda: init.he_normal(np.zeros((3, 3)), nonlinearity="swish"), ValueError, "nonlinearity"),
    (lambda: init.lecun_normal(np.zeros(4)), ValueError, "at least 2 dimensions"),
    (lambda: init.orthogonal(np.zeros(4)), ValueError, "at least 2 dimensions"),
    (lambda: init.normal(np.zeros(3), rng=1.5), TypeError, "rng: expected a numpy.random.Generator"),
    (lambda: init.normal(np.zeros(3), rng=-1), TypeError, "rng"),
    (lambda: init.normal(np.zeros(3), rng=True), TypeError, "rng"),
    (lambda: init.normal(np.zeros(3), rng=np.random.RandomState(0)), TypeError, "rng"),
])
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_read_only_array():
    a = np.zeros((3, 3))
    a.setflags(write=False)
    with pytest.raises(ValueError, match="array: expected a writable array"):
        init.he_uniform(a, rng=0)
