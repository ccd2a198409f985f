"""fusednn.ops.gather_rows against x[index] (a copy, so bit for bit) on every device: shapes,
repeated and negative indices, out=, strided x, bad input; on the CPU also threads and an index
array written by another thread during the call."""

import inspect
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import to_device, to_numpy

from fusednn import ops, reference

DTYPES = [np.float32, np.float64]
SHAPES = [(1,), (7,), (5, 1), (1, 9), (30, 17), (12, 3, 4), (50, 7, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_numpy_indexing(device, xp, shape, dtype):
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape).astype(dtype)
    n = shape[0]
    for index in (rng.permutation(n), rng.integers(0, n, 3 * n), np.array([], np.int64), np.array([n - 1, 0]),
                  -np.arange(1, n + 1), rng.integers(-n, n, 11).astype(np.int32), np.arange(n, dtype=np.uint8)):
        expected = reference.gather_rows(x, index)
        np.testing.assert_array_equal(expected, x[index])
        got = ops.gather_rows(*to_device(device, x, index))
        assert isinstance(got, xp.ndarray)
        assert got.dtype == dtype and got.shape == (len(index),) + shape[1:]
        np.testing.assert_array_equal(to_numpy(got), expected)


def test_the_index_is_not_modified_and_nan_is_copied(device):
    x = np.array([[np.nan, 1.0], [np.inf, -0.0]], np.float32)
    index = to_device(device, np.array([-1, 0, -2]))
    got = ops.gather_rows(to_device(device, x), index)
    np.testing.assert_array_equal(to_numpy(index), [-1, 0, -2])
    np.testing.assert_array_equal(to_numpy(got).view(np.uint32), x[[1, 0, 0]].view(np.uint32))


def test_out_and_strided_x(device):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((400, 300)).astype(np.float32)
    index = rng.integers(0, 400, 257)
    expected = reference.gather_rows(x[:, ::3], index)
    xd, index_d, out = to_device(device, x, index, np.full((257, 100), np.nan, np.float32))
    assert ops.gather_rows(xd[:, ::3], index_d, out=out) is out
    np.testing.assert_array_equal(to_numpy(out), expected)


def test_the_thread_count_does_not_change_the_result(threads):
    # 2000 rows of 100: 200,000 elements, above the work from which parallel_for uses the pool
    # (kMinParallelWork, 2^15, in csrc/common/parallel.h)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 300)).astype(np.float32)[:, ::3]
    index = rng.integers(0, 4000, 2000)
    results = []
    for n in (1, 2):
        threads(n)
        results.append(ops.gather_rows(x, index))
    np.testing.assert_array_equal(results[0], results[1])


def test_bad_index(device):
    x = np.ones((4, 2), np.float32)
    calls = [(reference.gather_rows, lambda *a: a), (ops.gather_rows, lambda *a: to_device(device, *a))]
    for gather_rows, put in calls:
        with pytest.raises(ValueError,
                           match=r"index: expected row indices in \[-4, 4\) \(x has 4 rows\), got 4 at position 1"):
            gather_rows(*put(x, np.array([0, 4])))
        with pytest.raises(ValueError, match=r"index: expected row indices in \[-4, 4\).*got -5 at position 0"):
            gather_rows(*put(x, np.array([-5])))
        with pytest.raises(TypeError, match="index: expected an integer array, got float64"):
            gather_rows(*put(x, np.array([0.0])))
        with pytest.raises(ValueError, match=r"index: expected shape \(M,\)"):
            gather_rows(*put(x, np.zeros((2, 2), np.int64)))


def test_bad_x_and_out(device):
    with pytest.raises(TypeError, match="x: expected"):
        ops.gather_rows([[1.0]], to_device(device, np.array([0])))
    with pytest.raises(ValueError, match="x: expected an array with ndim >= 1"):
        ops.gather_rows(*to_device(device, np.array(1.0, np.float32), np.array([0])))
    with pytest.raises(ValueError, match="index: expected row indices, got a value >= 2\\*\\*63"):
        ops.gather_rows(*to_device(device, np.ones((2, 2), np.float32), np.array([2**63], np.uint64)))
    with pytest.raises(ValueError, match="out: "):
        ops.gather_rows(*to_device(device, np.ones((2, 2), np.float32), np.array([0])),
                        out=to_device(device, np.empty((2, 2), np.float32)))


# Another thread writes the caller's int64 index array while gather_rows runs, flipping every
# value between a valid row and one far outside x. The binding checks a private copy of the index
# and the kernel reads that copy (host_indices), so every call either raises the ValueError of
# the check or copies rows of x. Before, the kernel read the caller's array after the check,
# with the GIL released, and copied from outside x: a segfault. Run in a child process so that a
# crash fails this test instead of the whole session; about 0.5 s of calls.
_RACE = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    import fusednn
    from fusednn import ops

    fusednn.set_num_threads(2)
    sys.setswitchinterval(1e-6)
    n, row = 64, 2048
    x = np.repeat(np.arange(n, dtype=np.float32)[:, None], row, axis=1)  # row i holds i
    good = np.arange(256, dtype=np.int64) % n
    bad = np.full_like(good, 1 << 40)
    index = good.copy()
    stop = False

    def flip():
        while not stop:
            index[:] = bad
            index[:] = good

    writer = threading.Thread(target=flip)
    writer.start()
    calls = 0
    try:
        deadline = time.perf_counter() + 0.5
        while time.perf_counter() < deadline or calls < 20:
            calls += 1
            try:
                y = ops.gather_rows(x, index)
            except ValueError as e:
                assert "index: expected row indices" in str(e), e
                continue
            assert (y == y[:, :1]).all() and ((y[:, 0] >= 0) & (y[:, 0] < n)).all(), "a row not of x"
    finally:
        stop = True
        writer.join()
    print("calls", calls)
""")


def test_an_index_written_by_another_thread_during_the_call_never_reaches_the_kernel():
    child = subprocess.run([sys.executable, "-c", _RACE], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, f"rc {child.returncode}\n{child.stdout}\n{child.stderr}"
    assert child.stdout.startswith("calls ")


def test_reference_has_the_same_signature():
    assert inspect.signature(ops.gather_rows) == inspect.signature(reference.gather_rows)
