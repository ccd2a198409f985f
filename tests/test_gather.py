"""fusednn.ops.gather_rows against x[index]: shapes, repeated and negative indices, out=,
strided x, threads, and bad input."""

import inspect

import numpy as np
import pytest

from fusednn import ops, reference

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (7,), (5, 1), (1, 9), (30, 17), (12, 3, 4)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_numpy_indexing(shape, dtype):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    n = shape[0]
    for index in (rng.permutation(n), rng.integers(0, n, 3 * n), np.array([], np.int64), np.array([n - 1, 0]),
                  -np.arange(1, n + 1), rng.integers(-n, n, 11).astype(np.int32), np.arange(n, dtype=np.uint8)):
        got = ops.gather_rows(x, index)
        assert got.dtype == dtype and got.shape == (len(index),) + shape[1:]
        np.testing.assert_array_equal(got, x[index])
        np.testing.assert_array_equal(reference.gather_rows(x, index), x[index])


def test_the_index_is_not_modified_and_nan_is_copied():
    x = np.array([[np.nan, 1.0], [np.inf, -0.0]], np.float32)
    index = np.array([-1, 0, -2])
    got = ops.gather_rows(x, index)
    np.testing.assert_array_equal(index, [-1, 0, -2])
    np.testing.assert_array_equal(got.view(np.uint32), x[[1, 0, 0]].view(np.uint32))


def test_out_strided_x_and_threads(threads):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 300)).astype(np.float32)[:, ::3]
    index = rng.integers(0, 400, 257)
    out = np.full((257, 100), np.nan, np.float32)
    assert ops.gather_rows(x, index, out=out) is out
    np.testing.assert_array_equal(out, x[index])
    results = []
    for n in (1, 2):
        threads(n)
        results.append(ops.gather_rows(x, index))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])
def test_bad_index(impl):
    x = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"index: expected row indices in \[-4, 4\) \(x has 4 rows\), got 4 at position 1"):
        impl.gather_rows(x, np.array([0, 4]))
    with pytest.raises(ValueError, match=r"index: expected row indices in \[-4, 4\).*got -5 at position 0"):
        impl.gather_rows(x, np.array([-5]))
    with pytest.raises(TypeError, match="index: expected an integer array, got float64"):
        impl.gather_rows(x, np.array([0.0]))
    with pytest.raises(ValueError, match=r"index: expected shape \(M,\)"):
        impl.gather_rows(x, np.zeros((2, 2), np.int64))


def test_bad_x_and_out():
    with pytest.raises(TypeError, match="x: expected"):
        ops.gather_rows([[1.0]], np.array([0]))
    with pytest.raises(ValueError, match="x: expected an array with ndim >= 1"):
        ops.gather_rows(np.array(1.0, np.float32), np.array([0]))
    with pytest.raises(ValueError, match="index: expected row indices, got a value >= 2\\*\\*63"):
        ops.gather_rows(np.ones((2, 2), np.float32), np.array([2**63], np.uint64))
    with pytest.raises(ValueError, match="out: "):
        ops.gather_rows(np.ones((2, 2), np.float32), np.array([0]), out=np.empty((2, 2), np.float32))


def test_reference_has_the_same_signature():
    assert inspect.signature(ops.gather_rows) == inspect.signature(reference.gather_rows)
