"""fusednn.ops.relu / relu_backward against the NumPy reference: shapes, NaN and Inf, the
select semantics of the backward, out=, threads, a gradcheck and bad input."""

import inspect

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, seed_of

from fusednn import ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]
SHAPES = [(0,), (1,), (7,), (1, 1), (3, 1), (1, 33), (17, 33), (2, 3, 5), (300, 257)]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(shape, dtype):
    rng = np.random.default_rng(seed_of("relu", shape))
    x = (rng.standard_normal(shape) * 1e30).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    if x.size >= 4:
        x.reshape(-1)[:4] = [np.nan, np.inf, -np.inf, -0.0]
        dy.reshape(-1)[:3] = [np.inf, -np.inf, np.nan]
    y = ops.relu(x)
    assert y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(y, reference.relu(x))
    dx = ops.relu_backward(dy, y)
    np.testing.assert_array_equal(dx, reference.relu_backward(dy, y))


def test_nan_stays_nan_and_the_backward_is_a_select():
    x = np.array([np.nan, -1.0, 2.0, 0.0], np.float32)
    y = ops.relu(x)
    assert np.isnan(y[0]) and list(y[1:]) == [0.0, 2.0, 0.0]
    dy = np.array([1.0, np.inf, 3.0, -np.inf], np.float32)
    np.testing.assert_array_equal(ops.relu_backward(dy, y), [0.0, 0.0, 3.0, 0.0])


def test_out_and_strided_inputs():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 6)).astype(np.float32)[:, ::2]
    out = np.full((8, 3), np.nan, np.float32)
    assert ops.relu(x, out=out) is out
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    dx = np.empty_like(out)
    assert ops.relu_backward(x, out, out=dx) is dx
    np.testing.assert_array_equal(dx, np.where(out > 0, x, 0))


def test_identical_for_one_and_two_threads(threads):
    x = np.random.default_rng(2).standard_normal((1000, 333)).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        y = ops.relu(x)
        results.append((y, ops.relu_backward(x, y)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_gradcheck_float64():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4))
    x[np.abs(x) < 1e-3] = 0.5
    r = rng.standard_normal((5, 4))
    analytic = ops.relu_backward(r, ops.relu(x))
    np.testing.assert_allclose(analytic, numerical_gradient(lambda: float((ops.relu(x) * r).sum()), x),
                               rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


def test_bad_input():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="x: expected"):
        ops.relu([1.0, 2.0])
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 3\)"):
        ops.relu_backward(x, np.ones((3, 2), np.float32))
    with pytest.raises(TypeError, match="y: expected dtype float32"):
        ops.relu_backward(x, np.ones((2, 3), np.float64))
    with pytest.raises(ValueError, match="out: "):
        ops.relu(x, out=np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match="out: "):
        ops.relu(x, out=x)


def test_reference_has_the_same_signatures():
    for name in ("relu", "relu_backward"):
        assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name)), name
