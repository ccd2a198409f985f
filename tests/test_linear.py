"""fusednn.ops.linear / linear_backward against the NumPy reference, gradchecks, bad input, on
every device; on the CPU every case runs with each GEMM kernel the CPU has."""

import numpy as np
import pytest
from conftest import (DEVICES, GRADCHECK_ATOL, GRADCHECK_RTOL, array_module, assert_close, seed_of, to_device,
                      to_numpy, wider)

import fusednn
from fusednn import _C, ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]
ACTIVATIONS = [None, "relu"]
# (N, in, out): 1x1, one row, one column, odd sizes, sizes off the SIMD widths, large; more
# rows than a work unit of the own kernels takes (144) and a longer k than one of their
# k-blocks (512).
SHAPES = [(1, 1, 1), (1, 7, 5), (9, 1, 3), (6, 4, 1), (17, 33, 15), (31, 64, 129), (128, 784, 256),
          (257, 300, 513), (150, 1100, 40), (256, 1000, 9)]
GEMM_KERNELS = [k for k in ("fusednn-avx512", "fusednn-avx2", "openblas") if _C._gemm_kernel_available(k)]
# (device, CPU GEMM kernel): the CPU once per kernel, the GPU once.
BACKENDS = [("cpu", k) for k in GEMM_KERNELS] + [(d, None) for d in DEVICES if d != "cpu"]


def _with_kernel(kernel):
    before = _C._gemm_kernel()
    _C._set_gemm_kernel(kernel)
    return before


@pytest.fixture(params=BACKENDS, ids=[d if k is None else f"{d}-{k}" for d, k in BACKENDS])
def device(request):
    """This file's device fixture (it replaces conftest's): "cpu" with each GEMM kernel of the
    CPU selected in turn, and "cuda" where present."""
    dev, kernel = request.param
    if kernel is None:
        yield dev
        return
    before = _with_kernel(kernel)
    yield dev
    _C._set_gemm_kernel(before)


@pytest.fixture
def xp(device):
    return array_module(device)


@pytest.fixture(params=GEMM_KERNELS)
def cpu_gemm_kernel(request):
    """For the CPU-only cases: each GEMM kernel of the CPU in turn."""
    before = _with_kernel(request.param)
    yield request.param
    _C._set_gemm_kernel(before)


def on_device(device, value):
    """NumPy arrays moved to the device; anything else (lists, scalars, None) as it is."""
    return to_device(device, value) if isinstance(value, np.ndarray) else value


def make(shape_in, rng, dtype, scale=1.0):
    n, i, o = shape_in
    x = (rng.standard_normal((n, i)) * scale).astype(dtype)
    w = (rng.standard_normal((o, i)) / np.sqrt(max(i, 1))).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    return x, w, b


def _check_backward(device, dy, x, w, y, activation, **kw):
    got = ops.linear_backward(*to_device(device, dy, x, w, y), activation, **kw)
    ref_same = reference.linear_backward(dy, x, w, y, activation, **kw)
    ref_wide = reference.linear_backward(*wider(dy, x, w, y), activation, **kw)
    for name, g, r, r_wide in zip(("dx", "dw", "db"), got, ref_same, ref_wide):
        if r is None:
            assert g is None, name
            continue
        assert g.dtype == x.dtype and g.shape == r.shape, name
        assert_close(g, r, r_wide, err_msg=name)
    return got


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("with_bias", [True, False])
def test_forward_matches_reference(device, shape, dtype, activation, with_bias):
    rng = np.random.default_rng(seed_of(shape, activation, with_bias))
    x, w, b = make(shape, rng, dtype)
    b = b if with_bias else None
    y = ops.linear(*to_device(device, x, w, b), activation)
    assert y.dtype == dtype and y.shape == (shape[0], shape[2])
    assert_close(y, reference.linear(x, w, b, activation), reference.linear(*wider(x, w, b), activation))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_reference(device, shape, dtype, activation):
    rng = np.random.default_rng(seed_of(shape, activation))
    x, w, b = make(shape, rng, dtype)
    y = reference.linear(x, w, b, activation)
    dy = rng.standard_normal(y.shape).astype(dtype)
    _check_backward(device, dy, x, w, y, activation)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_values(device, dtype):
    rng = np.random.default_rng(1)
    x, w, b = make((33, 65, 17), rng, dtype, scale=1e15)
    b = b * 1e15
    for act in ACTIVATIONS:
        y = ops.linear(*to_device(device, x, w, b), act)
        assert_close(y, reference.linear(x, w, b, act), reference.linear(*wider(x, w, b), act))
        dy = rng.standard_normal(y.shape).astype(dtype) * 1e10
        _check_backward(device, dy, x, w, to_numpy(y), act)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bias_gradient_of_a_narrow_layer_with_an_unaligned_bias(device, xp, dtype):
    """Issue 12: a bias gradient inside a flat gradient buffer (a view at an offset that is not
    16-byte aligned) cannot take cuBLASLt's BGRADB epilogue; its fallback summed every row of a
    10-class head in one GPU block. The rows are now summed in fixed chunks merged in order: many
    rows, few columns, db at an offset of one element, against the reference (on the CPU, the same
    body checks the same contract)."""
    rng = np.random.default_rng(seed_of("narrow db", dtype))
    x, w, b = make((4097, 33, 10), rng, dtype)
    dy = rng.standard_normal((4097, 10)).astype(dtype)
    for activation in ACTIVATIONS:
        y = reference.linear(x, w, b, activation)
        flat = xp.full(1 + 10 + 3, np.nan, dtype)
        db = flat[1:11]
        got = ops.linear_backward(*to_device(device, dy, x, w, y), activation, out=(None, None, db))
        assert got[2] is db
        # db and dx (dw, a GEMM over the 4097 rows, is the GEMM tests' business)
        ref, ref_wide = reference.linear_backward(dy, x, w, y, activation), \
            reference.linear_backward(*wider(dy, x, w, y), activation)
        assert_close(db, ref[2], ref_wide[2], err_msg=f"db, activation={activation}")
        assert_close(got[0], ref[0], ref_wide[0], err_msg=f"dx, activation={activation}")
        assert np.isnan(to_numpy(flat)[[0, 11, 12, 13]]).all()  # nothing written outside db


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_and_inf_propagate_like_numpy(device, dtype, activation):
    rng = np.random.default_rng(2)
    x, w, b = make((20, 13, 11), rng, dtype)
    x[3, 4] = np.nan
    x[5, :] = np.inf
    x[7, 2] = -np.inf
    b[6] = np.nan
    y = to_numpy(ops.linear(*to_device(device, x, w, b), activation))
    ref = reference.linear(x, w, b, activation)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(y[np.isinf(ref)], ref[np.isinf(ref)])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy[0, 0] = np.inf
    for g, r in zip(ops.linear_backward(*to_device(device, dy, x, w, y), activation),
                    reference.linear_backward(dy, x, w, y, activation)):
        g = to_numpy(g)
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_array_equal(g[np.isinf(r)], r[np.isinf(r)])


def test_relu_of_nan_is_nan_and_negative_is_zero(device):
    x = np.array([[1.0], [-1.0], [np.nan], [-np.inf]], np.float32)
    w = np.ones((1, 1), np.float32)
    y = to_numpy(ops.linear(*to_device(device, x, w), activation="relu"))
    np.testing.assert_array_equal(y[[0, 1, 3], 0], [1.0, 0.0, 0.0])
    assert np.isnan(y[2, 0])


def test_nan_through_relu_with_an_unaligned_bias(device, xp):
    """From the former GPU-only suite: a NaN input stays NaN through the ReLU (cuBLASLt's RELU
    epilogue does not promise it), with a bias at a 4-byte offset, as biases inside a flat
    parameter buffer are (cuBLASLt's BIAS epilogue needs 16 bytes); and the bias gradient into an
    unaligned view."""
    rng = np.random.default_rng(seed_of("nan-unaligned"))
    x, w, _ = make((4, 6, 5), rng, np.float32)
    x[1, 2] = np.nan
    flat = rng.standard_normal(6).astype(np.float32)
    b = flat[1:]
    flat_d = to_device(device, flat)
    y = ops.linear(*to_device(device, x, w), flat_d[1:], "relu")
    assert_close(y, reference.linear(x, w, b, "relu"), reference.linear(*wider(x, w, b), "relu"))
    dy = rng.standard_normal((4, 5)).astype(np.float32)
    y_abs = np.abs(np.nan_to_num(to_numpy(y)))
    db = xp.zeros(6, np.float32)[1:]
    x2 = make((4, 6, 5), rng, np.float32)[0]
    ops.linear_backward(*to_device(device, dy, x2, w, y_abs), "relu", out=(None, None, db))
    ref = reference.linear_backward(dy, x2, w, y_abs, "relu")[2]
    assert_close(db, ref, reference.linear_backward(*wider(dy, x2, w, y_abs), "relu")[2])


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
def test_gradcheck_float64(device, shape, activation):
    rng = np.random.default_rng(seed_of(shape, activation))
    n, i, o = shape
    x = rng.standard_normal((n, i))
    w = rng.standard_normal((o, i))
    b = _pre_activation_away_from_kink(x, w, rng)
    r = rng.standard_normal((n, o))  # loss = sum(r * y), so dL/dy = r
    x, w, b, r = to_device(device, x, w, b, r)

    def loss():
        return float((ops.linear(x, w, b, activation) * r).sum())

    y = ops.linear(x, w, b, activation)
    dx, dw, db = ops.linear_backward(r, x, w, y, activation)
    for analytic, wrt in ((dx, x), (dw, w), (db, b)):
        np.testing.assert_allclose(to_numpy(analytic), numerical_gradient(loss, wrt), rtol=GRADCHECK_RTOL,
                                   atol=GRADCHECK_ATOL)


def test_identical_results_for_one_and_two_threads(cpu_gemm_kernel, threads):
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


@pytest.mark.parametrize("shape", [(128, 784, 512), (150, 1100, 40)], ids=["mlp-first-layer", "narrow-long-k"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_panel_units_give_the_one_thread_bits(cpu_gemm_kernel, threads, shape, dtype):
    """Products whose row block of A packed over all of k is small are cut into one unit per
    panel on several threads (k over several packed blocks here): the same bits as one thread."""
    rng = np.random.default_rng(seed_of("panel-units", *shape))
    x, w, b = make(shape, rng, dtype)
    dy = rng.standard_normal((shape[0], shape[2])).astype(dtype)
    results = []
    for n in (1, 2):
        threads(n)
        y = ops.linear(x, w, b, "relu")
        results.append((y, *ops.linear_backward(dy, x, w, y, "relu")))
    for one, two in zip(*results):
        assert np.array_equal(one, two)


def test_strided_inputs_are_accepted(device, xp):
    rng = np.random.default_rng(4)
    x_t = xp.asarray(rng.standard_normal((12, 10)).astype(np.float32)).T  # (10, 12), not C-contiguous
    w_f = xp.asfortranarray(xp.asarray(rng.standard_normal((6, 12)).astype(np.float32)))
    b_s = xp.asarray(rng.standard_normal(12).astype(np.float32))[::2]
    x, w, b = (np.ascontiguousarray(to_numpy(a)) for a in (x_t, w_f, b_s))
    y = ops.linear(x_t, w_f, b_s, "relu")
    assert_close(y, reference.linear(x, w, b, "relu"), reference.linear(*wider(x, w, b), "relu"))
    dy_s = xp.asarray(rng.standard_normal((20, 6)).astype(np.float32))[::2]
    dy = np.ascontiguousarray(to_numpy(dy_s))
    y_h = to_numpy(y)
    for g, r, r_wide in zip(ops.linear_backward(dy_s, x_t, w_f, y, "relu"),
                            reference.linear_backward(dy, x, w, y_h, "relu"),
                            reference.linear_backward(*wider(dy, x, w, y_h), "relu")):
        assert_close(g, r, r_wide)


def test_unaligned_inputs_are_accepted(cpu_gemm_kernel):
    rng = np.random.default_rng(9)
    x, w, b = make((7, 5, 3), rng, np.float32)
    raw = np.zeros(x.nbytes + 1, np.uint8)
    x_unaligned = raw[1:].view(np.float32).reshape(x.shape)
    x_unaligned[...] = x
    assert not x_unaligned.flags.aligned
    assert_close(ops.linear(x_unaligned, w, b), reference.linear(x, w, b), reference.linear(*wider(x, w, b)))


def test_out_is_written_in_place_and_returned(device, xp):
    rng = np.random.default_rng(5)
    x, w, b = make((8, 5, 3), rng, np.float32)
    x_d, w_d, b_d = to_device(device, x, w, b)
    out = xp.full((8, 3), np.nan, np.float32)
    y = ops.linear(x_d, w_d, b_d, "relu", out=out)
    assert y is out
    assert_close(out, reference.linear(x, w, b, "relu"), reference.linear(*wider(x, w, b), "relu"))
    out_nobias = xp.full((8, 3), np.nan, np.float32)  # the GEMM must not read the stale contents
    ops.linear(x_d, w_d, out=out_nobias)
    assert_close(out_nobias, reference.linear(x, w), reference.linear(*wider(x, w)))

    dy = rng.standard_normal((8, 3)).astype(np.float32)
    dx, dw = xp.full((8, 5), np.nan, np.float32), xp.full((3, 5), np.nan, np.float32)
    y_h = to_numpy(y)
    got = ops.linear_backward(to_device(device, dy), x_d, w_d, y, "relu", out=(dx, dw, None))
    assert got[0] is dx and got[1] is dw and got[2] is not None
    for g, r, r_wide in zip(got, reference.linear_backward(dy, x, w, y_h, "relu"),
                            reference.linear_backward(*wider(dy, x, w, y_h), "relu")):
        assert_close(g, r, r_wide)


def test_backward_without_bias_or_input_grad(device):
    rng = np.random.default_rng(6)
    x, w, _ = make((8, 5, 3), rng, np.float64)
    dy = rng.standard_normal((8, 3))
    dx, dw, db = _check_backward(device, dy, x, w, None, None, bias=False, input_grad=False)
    assert dx is None and db is None


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_sizes(device, dtype):
    rng = np.random.default_rng(7)
    # N = 0: empty output, zero gradients for the parameters.
    x, w, b = make((0, 4, 3), rng, dtype)
    y = ops.linear(*to_device(device, x, w, b), "relu")
    assert y.shape == (0, 3) and y.dtype == dtype
    dx, dw, db = ops.linear_backward(*to_device(device, np.zeros((0, 3), dtype), x, w), y, "relu")
    assert dx.shape == (0, 4)
    np.testing.assert_array_equal(to_numpy(dw), np.zeros((3, 4)))
    np.testing.assert_array_equal(to_numpy(db), np.zeros(3))
    # in_features = 0: the output is the bias.
    x, w, b = make((5, 0, 3), rng, dtype)
    np.testing.assert_array_equal(to_numpy(ops.linear(*to_device(device, x, w, b))), np.broadcast_to(b, (5, 3)))
    np.testing.assert_array_equal(to_numpy(ops.linear(*to_device(device, x, w))), np.zeros((5, 3)))
    dx, dw, db = ops.linear_backward(*to_device(device, np.ones((5, 3), dtype), x, w))
    assert dx.shape == (5, 0) and dw.shape == (3, 0)
    np.testing.assert_array_equal(to_numpy(db), np.full(3, 5.0))
    # out_features = 0.
    x, w, b = make((5, 4, 0), rng, dtype)
    assert ops.linear(*to_device(device, x, w, b), "relu").shape == (5, 0)
    dx, dw, db = ops.linear_backward(*to_device(device, np.zeros((5, 0), dtype), x, w, np.zeros((5, 0), dtype)),
                                     "relu")
    np.testing.assert_array_equal(to_numpy(dx), np.zeros((5, 4)))
    assert dw.shape == (0, 4) and db.shape == (0,)


# ---- bad input: every case names the argument ----

def _arrays(dtype=np.float32):
    rng = np.random.default_rng(8)
    return make((4, 3, 2), rng, dtype)


# The dtype in messages: NumPy's name on the CPU, the array interface's typestr on the GPU.
@pytest.mark.parametrize(
    "mutate, exc, match",
    [
        (lambda x, w, b: (x[0], w, b), ValueError, r"x: expected a 2-D array, got 1-D"),
        (lambda x, w, b: (x, w[None], b), ValueError, r"w: expected a 2-D array, got 3-D"),
        (lambda x, w, b: (x, w[:, :2], b), ValueError, r"w: expected shape\[1\] == 3"),
        (lambda x, w, b: (x, w, b[:1]), ValueError, r"b: expected shape\[0\] == 2"),
        (lambda x, w, b: (x, w, b[None]), ValueError, r"b: expected a 1-D array"),
        (lambda x, w, b: (x.astype(np.int64), w, b), TypeError,
         r"x: expected dtype float32 or float64, got (int64|<i8)"),
        (lambda x, w, b: (x, w.astype(np.complex64), b), TypeError,
         r"w: expected dtype float32 or float64, got (complex64|<c8)"),
        (lambda x, w, b: (x, w.astype(np.float16), b), TypeError,
         r"w: expected dtype float32 or float64, got (float16|<f2)"),
        (lambda x, w, b: (x, w.astype(np.float64), b), TypeError, r"w: expected dtype float32 \(the dtype of x\), got float64"),
        (lambda x, w, b: (x, w, b.astype(np.float64)), TypeError, r"b: expected dtype float32 \(the dtype of x\)"),
        (lambda x, w, b: (x.tolist(), w, b), TypeError, r"x: expected a numpy.ndarray or cupy.ndarray, got builtins.list"),
        (lambda x, w, b: (x, w, 1.0), TypeError, r"b: expected a numpy.ndarray"),
    ],
)
def test_forward_bad_arguments(device, mutate, exc, match):
    x, w, b = (on_device(device, a) for a in mutate(*_arrays()))
    with pytest.raises(exc, match=match):
        ops.linear(x, w, b, "relu")


def test_forward_bad_activation(device):
    x, w, b = to_device(device, *_arrays())
    with pytest.raises(ValueError, match=r"activation: expected None or 'relu', got 'tanh'"):
        ops.linear(x, w, b, "tanh")


# out= arrays that are wrong on any device (made with the device's array module) ...
@pytest.mark.parametrize(
    "make_out, exc, match",
    [
        (lambda xp: xp.empty((4, 3), np.float32), ValueError, r"out: expected shape \(4, 2\), got \(4, 3\)"),
        (lambda xp: xp.empty((4, 2), np.float64), TypeError, r"out: expected dtype float32, got (float64|<f8)"),
        (lambda xp: xp.empty((2, 4), np.float32).T, ValueError, r"out: expected a C-contiguous"),
        (lambda xp: xp.empty((4, 4), np.float32)[:, ::2], ValueError, r"out: expected a C-contiguous"),
    ],
)
def test_forward_bad_out(device, xp, make_out, exc, match):
    x, w, b = to_device(device, *_arrays())
    with pytest.raises(exc, match=match):
        ops.linear(x, w, b, out=make_out(xp))


# ... and those only NumPy arrays (or lists) can be.
@pytest.mark.parametrize(
    "make_out, exc, match",
    [
        (lambda: _read_only(np.empty((4, 2), np.float32)), ValueError, r"out: expected a writable array"),
        (lambda: np.zeros(33, np.uint8)[1:].view(np.float32).reshape(4, 2), ValueError,
         r"out: expected a C-contiguous, aligned"),
        (lambda: [[0.0] * 2] * 4, TypeError, r"out: expected a numpy.ndarray"),
    ],
)
def test_forward_bad_numpy_out(cpu_gemm_kernel, make_out, exc, match):
    x, w, b = _arrays()
    with pytest.raises(exc, match=match):
        ops.linear(x, w, b, out=make_out())


def _read_only(a):
    a.flags.writeable = False
    return a


def test_out_overlapping_an_input_is_refused(device, xp):
    x = xp.ones((4, 4), np.float32)
    w = xp.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"out: must not share memory with x"):
        ops.linear(x, w, out=x)
    with pytest.raises(ValueError, match=r"out\[1\] \(dw\): must not share memory with w"):
        ops.linear_backward(x.copy(), x.copy(), w, out=(None, w, None))


def test_backward_bad_arguments(device, xp):
    x, w, b = to_device(device, *_arrays())
    y = ops.linear(x, w, b, "relu")
    with pytest.raises(ValueError, match=r"y: the forward output is required when activation is 'relu'"):
        ops.linear_backward(y, x, w, None, "relu")
    with pytest.raises(ValueError, match=r"dy: expected shape\[1\] == 2"):
        ops.linear_backward(xp.ones((4, 3), np.float32), x, w)
    with pytest.raises(ValueError, match=r"dy: expected shape\[0\] == 4"):
        ops.linear_backward(xp.ones((5, 2), np.float32), x, w)
    with pytest.raises(ValueError, match=r"y: expected shape\[0\] == 4"):
        ops.linear_backward(y, x, w, y[:3], "relu")
    with pytest.raises(TypeError, match=r"dy: expected dtype float32 \(the dtype of x\), got float64"):
        ops.linear_backward(y.astype(np.float64), x, w)
    with pytest.raises(TypeError, match=r"out: expected a tuple \(dx, dw, db\)"):
        ops.linear_backward(y, x, w, out=xp.empty((3, 2), np.float32))
    with pytest.raises(ValueError, match=r"out\[2\] \(db\): expected shape \(2,\), got \(3,\)"):
        ops.linear_backward(y, x, w, out=(None, None, xp.empty(3, np.float32)))
    with pytest.raises(ValueError, match=r"out: db was given but bias=False"):
        ops.linear_backward(y, x, w, bias=False, out=(None, None, xp.empty(2, np.float32)))
    with pytest.raises(ValueError, match=r"activation: expected None or 'relu'"):
        ops.linear_backward(y, x, w, y, "gelu")


@pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("flag", ["bias", "input_grad"])
@pytest.mark.parametrize("value", [[0.5], np.array([True]), None, 1, "yes"])
def test_backward_flags_must_be_bools(impl, flag, value):
    """bias and input_grad take True or False (or a numpy.bool_): anything else is a TypeError that
    names the argument, from the op and the reference alike (the op gave pybind11's "incompatible
    function arguments" for a list, and both accepted 1 or None as a truth value). The check is
    in Python, before the dispatch to a device."""
    x, w, _ = _arrays()
    dy = np.ones((4, 2), np.float32)
    with pytest.raises(TypeError, match=rf"{flag}: expected True or False, got"):
        impl.linear_backward(dy, x, w, **{flag: value})
    impl.linear_backward(dy, x, w, **{flag: np.bool_(False)})


def test_reference_has_the_same_signatures():
    import inspect
    for name in ("linear", "linear_backward"):
        assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name))
