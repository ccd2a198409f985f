"""fusednn.ops.relu / relu_backward against the NumPy reference on every device (exact: a select),
shapes, NaN and Inf, the select semantics of the backward, out=, bad input; on the CPU also
threads and a gradcheck."""

import inspect

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, array_module, seed_of, to_device, to_numpy

from fusednn import ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]
SHAPES = [(0,), (1,), (7,), (1, 1), (3, 1), (1, 5), (1, 33), (7, 1), (17, 33), (33, 17), (2, 3, 5), (300, 257),
          (256, 1000)]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(device, xp, shape, dtype):
    rng = np.random.default_rng(seed_of("relu", shape))
    x = (rng.standard_normal(shape) * 1e30).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    if x.size >= 4:
        x.reshape(-1)[:4] = [np.nan, np.inf, -np.inf, -0.0]
        dy.reshape(-1)[:3] = [np.inf, -np.inf, np.nan]
    y_ref = reference.relu(x)
    xd, dyd = to_device(device, x, dy)
    y = ops.relu(xd)
    assert isinstance(y, xp.ndarray) and y.dtype == dtype and y.shape == shape
    np.testing.assert_array_equal(to_numpy(y), y_ref)
    np.testing.assert_array_equal(to_numpy(ops.relu_backward(dyd, y)), reference.relu_backward(dy, y_ref))


def test_nan_stays_nan_and_the_backward_is_a_select(device):
    x = to_device(device, np.array([np.nan, -1.0, 2.0, 0.0], np.float32))
    y = ops.relu(x)
    y_host = to_numpy(y)
    assert np.isnan(y_host[0]) and list(y_host[1:]) == [0.0, 2.0, 0.0]
    dy = to_device(device, np.array([1.0, np.inf, 3.0, -np.inf], np.float32))
    np.testing.assert_array_equal(to_numpy(ops.relu_backward(dy, y)), [0.0, 0.0, 3.0, 0.0])


def test_out_and_strided_inputs(device, xp):
    rng = np.random.default_rng(1)
    x_full = rng.standard_normal((8, 6)).astype(np.float32)
    x = x_full[:, ::2]
    y = reference.relu(x)
    xd = to_device(device, x_full)[:, ::2]
    out = xp.full((8, 3), np.nan, np.float32)
    assert ops.relu(xd, out=out) is out
    np.testing.assert_array_equal(to_numpy(out), y)
    dx = xp.empty_like(out)
    assert ops.relu_backward(xd, out, out=dx) is dx
    np.testing.assert_array_equal(to_numpy(dx), reference.relu_backward(x, y))


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


def test_bad_input(device):
    x = to_device(device, np.ones((2, 3), np.float32))
    with pytest.raises(TypeError, match="x: expected"):
        ops.relu([1.0, 2.0])
    with pytest.raises(ValueError, match=r"y: expected shape \(2, 3\)"):
        ops.relu_backward(x, to_device(device, np.ones((3, 2), np.float32)))
    with pytest.raises(TypeError, match="y: expected dtype float32"):
        ops.relu_backward(x, to_device(device, np.ones((2, 3), np.float64)))
    with pytest.raises(ValueError, match="out: "):
        ops.relu(x, out=to_device(device, np.empty((3, 2), np.float32)))
    with pytest.raises(ValueError, match="out: must not share memory with x"):
        ops.relu(x.reshape(-1)[:-1], out=x.reshape(-1)[1:])  # partial overlap (out=x works in place: test_compat)


def test_reference_has_the_same_signatures():
    for name in ("relu", "relu_backward"):
        assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name)), name


@pytest.mark.parametrize("offset", [0, 1])
def test_streamed_large_output_matches_reference(device, offset):
    """Float32 outputs of 16 MiB or more are written with streaming stores on x86-64
    (csrc/cpu/stream_store.h); offset 1 puts x, dy and the outputs 4 bytes off a 16-byte
    boundary, so the head and tail elements take the ordinary stores. Equal to the reference, and
    bit for bit (relu(-0) is -0 in both) to small calls, which store as before."""
    n = (4 << 20) + 5
    rng = np.random.default_rng(seed_of("relu streamed", offset))
    x_buf = rng.standard_normal(n + 1).astype(np.float32)
    dy_buf = rng.standard_normal(n + 1).astype(np.float32)
    x_buf[1:5] = [np.nan, np.inf, -np.inf, -0.0]
    x_buf[-5:] = [np.nan, np.inf, -np.inf, -0.0, 0.0]
    dy_buf[5:8] = [np.inf, -np.inf, np.nan]
    x, dy = x_buf[offset:offset + n], dy_buf[offset:offset + n]
    y_ref = reference.relu(x)
    dx_ref = reference.relu_backward(dy, y_ref)
    xd, dyd = to_device(device, x, dy)
    xp = array_module(device)
    y_out, dx_out = (xp.zeros(n + 1, np.float32)[offset:offset + n] for _ in range(2))
    assert ops.relu(xd, out=y_out) is y_out
    assert ops.relu_backward(dyd, y_out, out=dx_out) is dx_out
    y, dx = ops.relu(xd), ops.relu_backward(dyd, ops.relu(xd))
    for got, ref in ((y_out, y_ref), (dx_out, dx_ref), (y, y_ref), (dx, dx_ref)):
        np.testing.assert_array_equal(to_numpy(got), ref)
    for part in (slice(0, 4099), slice(n - 4099, n)):
        y_small = ops.relu(xd[part])
        dx_small = ops.relu_backward(dyd[part], y_small)
        for got, small in ((y_out, y_small), (dx_out, dx_small), (y, y_small), (dx, dx_small)):
            np.testing.assert_array_equal(to_numpy(got[part]).view(np.uint32), to_numpy(small).view(np.uint32))
