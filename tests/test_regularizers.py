"""fusednn.regularizers: values and gradients against the documented formulas (on every
device), finite differences, masks, accumulation into the gradient buffer, dtypes and bad
arguments."""

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, assert_close, seed_of, to_device, to_numpy

from fusednn.gradcheck import gradcheck
from fusednn.regularizers import L1, L2, ElasticNet

DTYPES = [np.float32, np.float64]


def formula(penalty, w, mask):
    """(value, gradient) in float64 from the documented conventions; 0 gradient outside mask."""
    if isinstance(penalty, ElasticNet):
        l1, l2 = penalty.l1, penalty.l2
    else:
        l1, l2 = (penalty.strength, 0.0) if isinstance(penalty, L1) else (0.0, penalty.strength)
    w = np.where(mask, w.astype(np.float64), 0.0)
    return l1 * np.abs(w).sum() + 0.5 * l2 * (w * w).sum(), l1 * np.sign(w) + l2 * w


PENALTIES = [L1(0.03), L2(0.2), ElasticNet(0.03, 0.2), ElasticNet(0.0, 0.1), L2(0.0)]


def params_of(n, dtype, *key):
    rng = np.random.default_rng(seed_of(n, *key))
    w = rng.standard_normal(n).astype(dtype)
    w[::7] = 0  # sign(0) = 0: no L1 gradient there
    return w, rng.standard_normal(n).astype(dtype), rng.random(n) < 0.6


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("n", [1, 13, 1000])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("penalty", PENALTIES, ids=repr)
def test_value_and_gradient_match_formula(penalty, dtype, n, masked, device):
    w, g0, mask = params_of(n, dtype, "formula")
    mask = mask if masked else None
    value, grad = formula(penalty, w, True if mask is None else mask)
    dw, dmask = to_device(device, w, mask)
    # The table's row of the dtype (value() computes in the parameters' dtype).
    assert_close(dtype(penalty.value(dw, dmask)), dtype(value))
    grads = to_device(device, g0.copy())
    returned = penalty.add_grad(dw, grads, dmask)
    assert type(returned) is float
    assert_close(dtype(returned), dtype(value))
    assert grads.dtype == dtype
    assert_close(grads, (g0.astype(np.float64) + grad).astype(dtype))
    if mask is not None:  # entries outside the mask are untouched, bit for bit
        np.testing.assert_array_equal(to_numpy(grads)[~mask], g0[~mask])


@pytest.mark.parametrize("penalty", PENALTIES, ids=repr)
def test_gradient_by_finite_differences(penalty):
    rng = np.random.default_rng(seed_of("fd", repr(penalty)))
    w = rng.standard_normal(20)
    w += np.where(w >= 0, 0.1, -0.1)  # away from L1's kink at 0
    mask = rng.random(20) < 0.5

    def backward(dy, w):
        grads = np.zeros_like(w)
        penalty.add_grad(w, grads, mask)
        return (dy * grads,)
    assert gradcheck(lambda w: np.array(penalty.value(w, mask)), w, backward=backward,
                     rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradient_accumulates(dtype, device):
    w, g0, mask = params_of(50, dtype, "accumulate")
    w, mask = to_device(device, w, mask)
    penalty = ElasticNet(0.1, 0.3)
    once = to_device(device, g0.copy())
    penalty.add_grad(w, once, mask)
    twice = to_device(device, g0.copy())
    penalty.add_grad(w, twice, mask)
    penalty.add_grad(w, twice, mask)
    # the second call adds the same term to the rounded first sum: one more rounding of g0's size
    assert_close(to_numpy(twice) - g0, 2 * (to_numpy(once) - g0), kind="transcendental")


def test_elastic_net_is_l1_plus_l2():
    w, g0, mask = params_of(100, np.float64, "elastic")
    both = g0.copy()
    value = ElasticNet(0.05, 0.4).add_grad(w, both, mask)
    parts = g0.copy()
    value_parts = L1(0.05).add_grad(w, parts, mask) + L2(0.4).add_grad(w, parts, mask)
    assert_close(np.float64(value), np.float64(value_parts))
    assert_close(both, parts)


def test_l2_gradient_is_weight_decay():
    w = np.random.default_rng(seed_of("decay")).standard_normal(30)
    grads = np.zeros_like(w)
    L2(0.01).add_grad(w, grads)
    assert_close(w - 0.5 * grads, w * (1 - 0.5 * 0.01))  # an SGD step with lr=0.5 is weight decay


@pytest.mark.parametrize("make, exc, match", [
    (lambda: L1(-0.1), ValueError, "strength: expected a value >= 0, got -0.1"),
    (lambda: L2(float("nan")), ValueError, "strength: expected a value >= 0"),
    (lambda: L2("0.1"), TypeError, "strength: expected a value >= 0"),
    (lambda: L1(True), TypeError, "strength"),
    (lambda: ElasticNet(0.1, -1), ValueError, "l2: expected a value >= 0, got -1"),
    (lambda: ElasticNet(None, 0.1), TypeError, "l1"),
])
def test_bad_strengths(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def read_only(a):
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("args, exc, match", [
    ((np.zeros(4, np.int64), np.zeros(4)), TypeError, "params: expected a float32 or float64 numpy.ndarray, got int64"),
    (([0.0, 1.0], np.zeros(2)), TypeError, "params: expected .* got builtins.list"),
    ((np.zeros(4), [0.0] * 4), TypeError, "grads: expected a numpy.ndarray, got builtins.list"),
    ((np.zeros(4), np.zeros(4, np.float32)), TypeError, "grads: expected dtype float64 .* got float32"),
    ((np.zeros(4), np.zeros(5)), ValueError, r"grads: expected shape \(4,\) .* got \(5,\)"),
    ((np.zeros(4), np.zeros(8)[::2]), ValueError, "grads: expected a C-contiguous, aligned, writable array"),
    ((np.zeros(4), read_only(np.zeros(4))), ValueError, "grads: expected a C-contiguous, aligned, writable array"),
    ((np.zeros(4), np.zeros(4), np.ones(4, np.int8)), TypeError, "mask: expected a boolean numpy.ndarray, got int8"),
    ((np.zeros(4), np.zeros(4), np.ones(3, bool)), ValueError, r"mask: expected shape \(4,\) .* got \(3,\)"),
])
@pytest.mark.parametrize("penalty", [L1(0.1), L2(0.1), ElasticNet(0.1, 0.1)], ids=repr)
def test_bad_buffers(penalty, args, exc, match):
    with pytest.raises(exc, match=match):
        penalty.add_grad(*args)


def test_value_checks_params_and_mask():
    with pytest.raises(TypeError, match="params"):
        L2(0.1).value(np.arange(3))
    with pytest.raises(ValueError, match="mask"):
        L1(0.1).value(np.zeros(3), np.ones(2, bool))


def test_reprs():
    assert repr(L1(0.5)) == "L1(strength=0.5)"
    assert repr(L2(0.25)) == "L2(strength=0.25)"
    assert repr(ElasticNet(0.5, 0.25)) == "ElasticNet(l1=0.5, l2=0.25)"
