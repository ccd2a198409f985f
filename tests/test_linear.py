"""fusednn.ops.linear / linear_backward against the NumPy reference, gradchecks, bad input."""

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, assert_reduction_close, seed_of, wider

import fusednn
from fusednn import _C, ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]
ACTIVATIONS = [None, "relu"]
# (N, in, out): 1x1, one row, one column, odd sizes, sizes off the SIMD widths, large; more
# rows than a work unit of the AVX-512 kernel takes (144) and a longer k than one of its
# packed blocks (512).
SHAPES = [(1, 1, 1), (1, 7, 5), (9, 1, 3), (6, 4, 1), (17, 33, 15), (31, 64, 129), (128, 784, 256),
          (257, 300, 513), (150, 1100, 40)]
GEMM_KERNELS = [k for k in ("fusednn-avx512", "openblas") if _C._gemm_kernel_available(k)]


@pytest.fixture(autouse=True, params=GEMM_KERNELS)
def gemm_kernel(request):
    """Every test of this file runs with each GEMM kernel this CPU has."""
    before = _C._gemm_kernel()
    _C._set_gemm_kernel(request.param)
    yield request.param
    _C._set_gemm_kernel(before)


def make(shape_in, rng, dtype, scale=1.0):
    n, i, o = shape_in
    x = (rng.standard_normal((n, i)) * scale).astype(dtype)
    w = (rng.standard_normal((o, i)) / np.sqrt(max(i, 1))).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_matches_reference(shape, dtype, activation, with_bias):
    rng = np.random.default_rng(seed_of(shape, activation, with_bias))
    x, w, b = make(shape, rng, dtype)
    b = b if with_bias else None
    y = ops.linear(x, w, b, activation)
    assert y.dtype == dtype and y.shape == (shape[0], shape[2])
    assert_reduction_close(y, reference.linear(x, w, b, activation), reference.linear(*wider(x, w, b), activation))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_reference(shape, dtype, activation):
    rng = np.random.default_rng(seed_of(shape, activation))
    x, w, b = make(shape, rng, dtype)
    y = reference.linear(x, w, b, activation)
    dy = rng.standard_normal(y.shape).astype(dtype)
    got = ops.linear_backward(dy, x, w, y, activation)
    ref_same = reference.linear_backward(dy, x, w, y, activation)
    ref64 = reference.linear_backward(*wider(dy, x, w, y), activation)
    for name, g, r, r64 in zip(("dx", "dw", "db"), got, ref_same, ref64):
        assert g.dtype == dtype, name
        assert_reduction_close(g, r, r64)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_values(dtype):
    rng = np.random.default_rng(1)
    x, w, b = make((33, 65, 17), rng, dtype, scale=1e15)
    b = b * 1e15
    for act in ACTIVATIONS:
        y = ops.linear(x, w, b, act)
        assert_reduction_close(y, reference.linear(x, w, b, act), reference.linear(*wider(x, w, b), act))
        dy = rng.standard_normal(y.shape).astype(dtype) * 1e10
        for g, r, r64 in zip(ops.linear_backward(dy, x, w, y, act), reference.linear_backward(dy, x, w, y, act),
                             reference.linear_backward(*wider(dy, x, w, y), act)):
            assert_reduction_close(g, r, r64)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_and_inf_propagate_like_numpy(dtype, activation):
    rng = np.random.default_rng(2)
    x, w, b = make((20, 13, 11), rng, dtype)
    x[3, 4] = np.nan
    x[5, :] = np.inf
    x[7, 2] = -np.inf
    b[6] = np.nan
    y = ops.linear(x, w, b, activation)
    ref = reference.linear(x, w, b, activation)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(y[np.isinf(ref)], ref[np.isinf(ref)])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy[0, 0] = np.inf
    for g, r in zip(ops.linear_backward(dy, x, w, y, activation), reference.linear_backward(dy, x, w, y, activation)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_array_equal(g[np.isinf(r)], r[np.isinf(r)])


def test_relu_of_nan_is_nan_and_negative_is_zero():
    x = np.array([[1.0], [-1.0], [np.nan], [-np.inf]], np.float32)
    w = np.ones((1, 1), np.float32)
    y = ops.linear(x, w, activation="relu")
    np.testing.assert_array_equal(y[[0, 1, 3], 0], [1.0, 0.0, 0.0])
    assert np.isnan(y[2, 0])


def _pre_activation_away_from_kink(x, w, rng):
    """A bias that keeps every pre-activation at least 1e-3 from 0, so finite differences
    never straddle the ReLU kink."""
    z = x @ w.T
    b = rng.standard_normal(w.shape[0])
    for _ in range(100):
        if np.abs(z + b).min() > 1e-3:
            return b
        b = rng.standard_normal(w.shape[0])
    raise AssertionError("could not draw a bias away from the kink")


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 4, 5), (7, 2, 3), (4, 9, 1)])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradcheck_float64(shape, activation):
    rng = np.random.default_rng(seed_of(shape, activation))
    n, i, o = shape
    x = rng.standard_normal((n, i))
    w = rng.standard_normal((o, i))
    b = _pre_activation_away_from_kink(x, w, rng)
    r = rng.standard_normal((n, o))  # loss = sum(r * y), so dL/dy = r

    def loss():
        return float((ops.linear(x, w, b, activation) * r).sum())

    y = ops.linear(x, w, b, activation)
    dx, dw, db = ops.linear_backward(r, x, w, y, activation)
    for analytic, wrt in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, wrt), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


def test_identical_results_for_one_and_two_threads(threads):
    rng = np.random.default_rng(3)
    x, w, b = make((2000, 300, 257), rng, np.float32)
    dy = rng.standard_normal((2000, 257)).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        assert fusednn.get_num_threads() == n
        y = ops.linear(x, w, b, "relu")
        results.append((y, *ops.linear_backward(dy, x, w, y, "relu"), *ops.linear_backward(dy, x, w)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_strided_inputs_are_accepted():
    rng = np.random.default_rng(4)
    x_t = rng.standard_normal((12, 10)).astype(np.float32).T  # (10, 12), not C-contiguous
    w_f = np.asfortranarray(rng.standard_normal((6, 12)).astype(np.float32))
    b_s = rng.standard_normal(12).astype(np.float32)[::2]
    y = ops.linear(x_t, w_f, b_s, "relu")
    np.testing.assert_allclose(y, reference.linear(x_t, w_f, b_s, "relu"), rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal((20, 6)).astype(np.float32)[::2]
    for g, r in zip(ops.linear_backward(dy, x_t, w_f, y, "relu"), reference.linear_backward(dy, x_t, w_f, y, "relu")):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


def test_unaligned_inputs_are_accepted():
    rng = np.random.default_rng(9)
    x, w, b = make((7, 5, 3), rng, np.float32)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    x_unaligned = raw[1:].view(np.float32).reshape(x.shape)
    x_unaligned[...] = x
    assert not x_unaligned.flags.aligned
    np.testing.assert_allclose(ops.linear(x_unaligned, w, b), reference.linear(x, w, b), rtol=1e-5, atol=1e-6)


def test_out_is_written_in_place_and_returned():
    rng = np.random.default_rng(5)
    x, w, b = make((8, 5, 3), rng, np.float32)
    out = np.full((8, 3), np.nan, np.float32)
    y = ops.linear(x, w, b, "relu", out=out)
    assert y is out
    np.testing.assert_allclose(out, reference.linear(x, w, b, "relu"), rtol=1e-5, atol=1e-6)
    out_nobias = np.full((8, 3), np.nan, np.float32)  # BLAS must not read the stale contents
    ops.linear(x, w, out=out_nobias)
    np.testing.assert_allclose(out_nobias, x @ w.T, rtol=1e-5, atol=1e-6)

    dy = rng.standard_normal((8, 3)).astype(np.float32)
    dx, dw, db = (np.full(s, np.nan, np.float32) for s in ((8, 5), (3, 5), (3,)))
    got = ops.linear_backward(dy, x, w, y, "relu", out=(dx, dw, None))
    assert got[0] is dx and got[1] is dw and got[2] is not None
    for g, r in zip(got, reference.linear_backward(dy, x, w, y, "relu")):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


def test_backward_without_bias_or_input_grad():
    rng = np.random.default_rng(6)
    x, w, _ = make((8, 5, 3), rng, np.float64)
    dy = rng.standard_normal((8, 3))
    dx, dw, db = ops.linear_backward(dy, x, w, bias=False, input_grad=False)
    assert dx is None and db is None
    np.testing.assert_allclose(dw, dy.T @ x, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_sizes(dtype):
    rng = np.random.default_rng(7)
    # N = 0: empty output, zero gradients for the parameters.
    x, w, b = make((0, 4, 3), rng, dtype)
    y = ops.linear(x, w, b, "relu")
    assert y.shape == (0, 3) and y.dtype == dtype
    dx, dw, db = ops.linear_backward(np.zeros((0, 3), dtype), x, w, y, "relu")
    assert dx.shape == (0, 4)
    np.testing.assert_array_equal(dw, np.zeros((3, 4)))
    np.testing.assert_array_equal(db, np.zeros(3))
    # in_features = 0: the output is the bias.
    x, w, b = make((5, 0, 3), rng, dtype)
    np.testing.assert_array_equal(ops.linear(x, w, b), np.broadcast_to(b, (5, 3)))
    np.testing.assert_array_equal(ops.linear(x, w), np.zeros((5, 3)))
    dx, dw, db = ops.linear_backward(np.ones((5, 3), dtype), x, w)
    assert dx.shape == (5, 0) and dw.shape == (3, 0)
    np.testing.assert_array_equal(db, np.full(3, 5.0))
    # out_features = 0.
    x, w, b = make((5, 4, 0), rng, dtype)
    assert ops.linear(x, w, b, "relu").shape == (5, 0)
    dx, dw, db = ops.linear_backward(np.zeros((5, 0), dtype), x, w, np.zeros((5, 0), dtype), "relu")
    np.testing.assert_array_equal(dx, np.zeros((5, 4)))
    assert dw.shape == (0, 4) and db.shape == (0,)


# ---- bad input: every case names the argument ----

def _arrays(dtype=np.float32):
    rng = np.random.default_rng(8)
    return make((4, 3, 2), rng, dtype)


@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (lambda x, w, b: (x[0], w, b), ValueError, r"x: expected a 2-D array, got 1-D"),
        (lambda x, w, b: (x, w[None], b), ValueError, r"w: expected a 2-D array, got 3-D"),
        (lambda x, w, b: (x, w[:, :2], b), ValueError, r"w: expected shape\[1\] == 3"),
        (lambda x, w, b: (x, w, b[:1]), ValueError, r"b: expected shape\[0\] == 2"),
        (lambda x, w, b: (x, w, b[None]), ValueError, r"b: expected a 1-D array"),
        (lambda x, w, b: (x.astype(np.int64), w, b), TypeError, r"x: expected dtype float32 or float64, got int64"),
        (lambda x, w, b: (x, w.astype(np.complex64), b), TypeError, r"w: expected dtype float32 or float64, got complex64"),
        (lambda x, w, b: (x, w.astype(np.float16), b), TypeError, r"w: expected dtype float32 or float64, got float16"),
        (lambda x, w, b: (x, w.astype(np.float64), b), TypeError, r"w: expected dtype float32 \(the dtype of x\), got float64"),
        (lambda x, w, b: (x, w, b.astype(np.float64)), TypeError, r"b: expected dtype float32 \(the dtype of x\)"),
        (lambda x, w, b: (x.tolist(), w, b), TypeError, r"x: expected a numpy.ndarray or cupy.ndarray, got builtins.list"),
        (lambda x, w, b: (x, w, 1.0), TypeError, r"b: expected a numpy.ndarray"),
    ],
)
def test_forward_bad_arguments(mutate, exc, match):
    x, w, b = mutate(*_arrays())
    with pytest.raises(exc, match=match):
        ops.linear(x, w, b, "relu")


def test_forward_bad_activation():
    x, w, b = _arrays()
    with pytest.raises(ValueError, match=r"activation: expected None or 'relu', got 'tanh'"):
        ops.linear(x, w, b, "tanh")


@pytest.mark.parametrize(
    "make_out, exc, match",
    [
        (lambda: np.empty((4, 3), np.float32), ValueError, r"out: expected shape \(4, 2\), got \(4, 3\)"),
        (lambda: np.empty((4, 2), np.float64), TypeError, r"out: expected dtype float32, got float64"),
        (lambda: np.empty((2, 4), np.float32).T, ValueError, r"out: expected a C-contiguous"),
        (lambda: np.empty((4, 4), np.float32)[:, ::2], ValueError, r"out: expected a C-contiguous"),
        (lambda: _read_only(np.empty((4, 2), np.float32)), ValueError, r"out: expected a writable array"),
        (lambda: np.zeros(33, np.uint8)[1:].view(np.float32).reshape(4, 2), ValueError, r"out: expected a C-contiguous, aligned"),
        (lambda: [[0.0] * 2] * 4, TypeError, r"out: expected a numpy.ndarray"),
    ],
)
def test_forward_bad_out(make_out, exc, match):
    x, w, b = _arrays()
    with pytest.raises(exc, match=match):
        ops.linear(x, w, b, out=make_out())


def _read_only(a):
    a.flags.writeable = False
    return a


def test_out_overlapping_an_input_is_refused():
    x = np.ones((4, 4), np.float32)
    w = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"out: must not share memory with x"):
        ops.linear(x, w, out=x)
    with pytest.raises(ValueError, match=r"out\[1\] \(dw\): must not share memory with w"):
        ops.linear_backward(x.copy(), x.copy(), w, out=(None, w, None))


def test_backward_bad_arguments():
    x, w, b = _arrays()
    y = ops.linear(x, w, b, "relu")
    with pytest.raises(ValueError, match=r"y: the forward output is required when activation is 'relu'"):
        ops.linear_backward(y, x, w, None, "relu")
    with pytest.raises(ValueError, match=r"dy: expected shape\[1\] == 2"):
        ops.linear_backward(np.ones((4, 3), np.float32), x, w)
    with pytest.raises(ValueError, match=r"dy: expected shape\[0\] == 4"):
        ops.linear_backward(np.ones((5, 2), np.float32), x, w)
    with pytest.raises(ValueError, match=r"y: expected shape\[0\] == 4"):
        ops.linear_backward(y, x, w, y[:3], "relu")
    with pytest.raises(TypeError, match=r"dy: expected dtype float32 \(the dtype of x\), got float64"):
        ops.linear_backward(y.astype(np.float64), x, w)
    with pytest.raises(TypeError, match=r"out: expected a tuple \(dx, dw, db\)"):
        ops.linear_backward(y, x, w, out=np.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"out\[2\] \(db\): expected shape \(2,\), got \(3,\)"):
        ops.linear_backward(y, x, w, out=(None, None, np.empty(3, np.float32)))
    with pytest.raises(ValueError, match=r"out: db was given but bias=False"):
        ops.linear_backward(y, x, w, bias=False, out=(None, None, np.empty(2, np.float32)))
    with pytest.raises(ValueError, match=r"activation: expected None or 'relu'"):
        ops.linear_backward(y, x, w, y, "gelu")


def test_reference_has_the_same_signatures():
    import inspect
    for name in ("linear", "linear_backward"):
        assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name))
