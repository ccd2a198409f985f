"""fusednn.ops conv2d / pooling against the NumPy reference (fusednn.reference.conv) on every
device, float64 finite-difference gradchecks of every backward, thread invariance, pooling ties
and NaN, and the argument errors."""

import numpy as np
import pytest
from conftest import assert_close, seed_of, to_device, to_numpy, wider

import fusednn
from fusednn import ops, reference

DTYPES = [np.float32, np.float64]

# (N, C_in, H, W, C_out, kH, kW, stride, padding, dilation, groups)
CONV_SHAPES = [
    (2, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1),            # odd sizes, same padding
    (2, 4, 9, 8, 6, 3, 2, 2, (2, 1), (2, 1), 2),  # stride, asymmetric padding/dilation, groups
    (1, 1, 5, 5, 2, 5, 5, 1, 0, 1, 1),            # N = 1, C = 1, kernel = image size
    (3, 5, 4, 7, 3, 1, 1, 1, 0, 1, 1),            # 1x1 kernel
    (2, 4, 6, 6, 4, 3, 3, 1, 1, 1, 4),            # depthwise
    (2, 6, 5, 5, 12, 3, 3, (1, 2), 3, 1, 3),      # channel multiplier 4 per group, padding > kernel
    (1, 2, 3, 3, 2, 2, 2, 3, 0, 1, 1),            # a stride larger than the kernel
    # More output positions than a CPU block (256) over the batch, in blocks of whole images.
    (6, 3, 13, 11, 5, 3, 3, 1, 1, 1, 1),
    (5, 2, 21, 23, 3, 3, 3, 2, 1, 1, 1),
    # Images of more than 256 positions, cut into parts: same width (one shifted copy per kernel
    # row), and a width that grows with the padding (row by row).
    (2, 3, 17, 19, 4, 3, 3, 1, 1, 1, 1),
    (1, 2, 20, 14, 3, 3, 3, 1, (1, 2), 1, 1),
    (2, 16, 10, 9, 8, 3, 3, 1, 2, 2, 1),         # dilation with 16 channels (packed im2col, float32)
    # Small images, several per block (and a last block with fewer), with groups.
    (12, 4, 5, 5, 6, 3, 3, 1, 1, 1, 2),
]


def make_conv(shape, dtype, rng):
    n, c, h, w, co, kh, kw, stride, padding, dilation, groups = shape
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((co, c // groups, kh, kw)).astype(dtype)
    b = rng.standard_normal(co).astype(dtype)
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv2d_matches_reference(device, shape, activation, dtype):
    rng = np.random.default_rng(seed_of("conv", shape, activation, dtype))
    x, w, b, kw = make_conv(shape, dtype, rng)
    use_bias = shape[0] != 1  # one case without a bias
    b = b if use_bias else None
    y = ops.conv2d(*to_device(device, x, w, b), activation=activation, **kw)
    expected = reference.conv2d(x, w, b, activation=activation, **kw)
    xw, ww, bw = wider(x, w, b)
    assert_close(y, expected, reference.conv2d(xw, ww, bw, activation=activation, **kw), err_msg="y")
    dy = rng.standard_normal(expected.shape).astype(dtype)
    got = ops.conv2d_backward(*to_device(device, dy, x, w, y), activation=activation, bias=use_bias, **kw)
    want = reference.conv2d_backward(dy, x, w, expected, activation=activation, bias=use_bias, **kw)
    (dyw,) = wider(dy)
    wide = reference.conv2d_backward(dyw, xw, ww, reference.conv2d(xw, ww, bw, activation=activation, **kw),
                                     activation=activation, bias=use_bias, **kw)
    for name, g, e, ew in zip(("dx", "dw", "db"), got, want, wide):
        if e is None:
            assert g is None, name
        else:
            assert_close(g, e, ew, err_msg=name)


def test_conv2d_out_and_input_grad(device):
    rng = np.random.default_rng(1)
    x, w, b, kw = make_conv(CONV_SHAPES[0], np.float64, rng)
    xp = np.asarray if device == "cpu" else __import__("cupy").asarray
    xd, wd, bd = to_device(device, x, w, b)
    out = xp(np.empty((2, 4, 7, 6)))
    y = ops.conv2d(xd, wd, bd, out=out, **kw)
    assert y is out
    assert_close(out, reference.conv2d(x, w, b, **kw))
    dy = rng.standard_normal((2, 4, 7, 6))
    dw, db = xp(np.empty(w.shape)), xp(np.empty(4))
    dx, dw2, db2 = ops.conv2d_backward(to_device(device, dy), xd, wd, input_grad=False, out=(None, dw, db), **kw)
    assert dx is None and dw2 is dw and db2 is db
    _, rdw, rdb = reference.conv2d_backward(dy, x, w, **kw)
    assert_close(dw, rdw)
    assert_close(db, rdb)
    # An empty batch: y is empty, dw and db are empty sums.
    empty = np.zeros((0, 3, 7, 6))
    assert ops.conv2d(*to_device(device, empty, w), **kw).shape == (0, 4, 7, 6)
    dx, dw, db = ops.conv2d_backward(*to_device(device, np.zeros((0, 4, 7, 6)), empty, w), **kw)
    assert dx.shape == (0, 3, 7, 6) and not to_numpy(dw).any() and not to_numpy(db).any()


def test_conv2d_many_blocks_and_threads(threads):
    """A batch whose positions span many blocks (of 256 positions: 40 tasks here): the same as
    the reference, and bitwise the same on 1 and 2 threads."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 16, 16, 16)).astype(np.float32)
    w = rng.standard_normal((24, 16, 3, 3)).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    dy = rng.standard_normal((40, 24, 16, 16)).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        y = ops.conv2d(x, w, b, padding=1, activation="relu")
        results.append((y, *ops.conv2d_backward(dy, x, w, y, padding=1, activation="relu")))
    for one, two in zip(*results):
        assert np.array_equal(one, two)
    xw, ww, bw, dyw = wider(x, w, b, dy)
    yw = reference.conv2d(xw, ww, bw, padding=1, activation="relu")
    y = results[0][0]
    assert_close(y, reference.conv2d(x, w, b, padding=1, activation="relu"), yw)
    want = reference.conv2d_backward(dy, x, w, y, padding=1, activation="relu")
    wide = reference.conv2d_backward(dyw, xw, ww, yw, padding=1, activation="relu")
    for g, e, ew in zip(results[0][1:], want, wide):
        assert_close(g, e, ew)


# (N, C_in, H, W, C_out, stride, padding, groups) of 3x3 convolutions whose CPU blocks differ:
# images cut into parts (same width, and a width grown by the padding), several images per
# block with a shorter last block and groups, and stride 2.
BLOCKINGS = [
    (3, 8, 20, 20, 8, 1, 1, 1),
    (2, 6, 24, 26, 6, 1, (0, 2), 1),
    (23, 6, 6, 6, 9, 1, 1, 3),
    (9, 8, 11, 11, 8, 2, 1, 1),
    # C_in/groups a multiple of 16: float32 writes im2col straight into the GEMM's packed panels
    # (the forward's for blocks within one image at stride 1 and a same width; the dw product's
    # tap-major from a padded HWC copy), for parts of an image with K % 32 = 16, whole images,
    # several images per block with groups, stride 2 and a width grown by the padding.
    (3, 16, 20, 20, 8, 1, 1, 1),
    (4, 32, 12, 12, 16, 1, 1, 1),
    (9, 32, 6, 6, 8, 1, 1, 2),
    (5, 16, 11, 11, 8, 2, 1, 1),
    (2, 16, 9, 13, 8, 1, (0, 2), 1),
]


@pytest.mark.parametrize("shape", BLOCKINGS)
def test_conv2d_blockings_match_reference_and_threads(threads, shape):
    """Every way the CPU cuts the positions into blocks and tasks: the same as the reference,
    and bitwise the same on 1 and 2 threads (forward, dx, dw, db; with and without dx). The
    thread comparison runs on the batch repeated 8 times, so that every shape's task loop has
    the work to use the pool (some batches alone are below kMinParallelWork)."""
    n, c, h, w_, co, stride, padding, groups = shape
    rng = np.random.default_rng(seed_of("conv_blockings", shape))
    kw = dict(stride=stride, padding=padding, groups=groups, activation="relu")
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    w = rng.standard_normal((co, c // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(co).astype(np.float32)

    def forward_and_backward(x):
        y = ops.conv2d(x, w, b, **kw)
        dy = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
        return (y, dy, *ops.conv2d_backward(dy, x, w, y, **kw),
                *ops.conv2d_backward(dy, x, w, y, input_grad=False, **kw)[1:])
    results = []
    for t in (1, 2):
        threads(t)
        results.append(forward_and_backward(np.concatenate([x] * 8)))
    for one, two in zip(*results):
        assert np.array_equal(one, two)
    y, dy, dx, dw, db, dw_only, db_only = forward_and_backward(x)
    assert np.array_equal(dw, dw_only) and np.array_equal(db, db_only)
    xw, ww, bw, dyw = wider(x, w, b, dy)
    yw = reference.conv2d(xw, ww, bw, **kw)
    assert_close(y, reference.conv2d(x, w, b, **kw), yw)
    want = reference.conv2d_backward(dy, x, w, y, **kw)
    wide = reference.conv2d_backward(dyw, xw, ww, yw, **kw)
    for g, e, ew in zip((dx, dw, db), want, wide):
        assert_close(g, e, ew)


def test_pooling_identical_for_one_and_two_threads(threads):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((16, 32, 20, 20)).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        y, idx = ops.max_pool2d(x, 3, 2, 1)
        a = ops.avg_pool2d(x, 3, 2, 1)
        g = ops.global_avg_pool2d(x)
        results.append((y, idx, a, g, ops.max_pool2d_backward(y, idx, x.shape),
                        ops.avg_pool2d_backward(a, x.shape, 3, 2, 1), ops.global_avg_pool2d_backward(g, x.shape)))
    for one, two in zip(*results):
        assert np.array_equal(one, two)


# ---- gradchecks (float64, finite differences)

@pytest.mark.parametrize("shape", [CONV_SHAPES[1], CONV_SHAPES[5]])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d_gradcheck(shape, activation):
    rng = np.random.default_rng(seed_of("conv_gc", shape, activation))
    x, w, b, kw = make_conv(shape, np.float64, rng)

    def forward(x, w, b):
        return ops.conv2d(x, w, b, activation=activation, **kw)

    def backward(dy, x, w, b):
        return ops.conv2d_backward(dy, x, w, forward(x, w, b), activation=activation, **kw)

    fusednn.gradcheck(forward, (x, w, b), backward=backward)


POOL_CASES = [(2, None, 0), (3, 2, 1), ((3, 2), (1, 2), (1, 0)), (3, 1, 1)]


@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_pool_gradchecks(kernel, stride, padding):
    rng = np.random.default_rng(seed_of("pool_gc", kernel, stride, padding))
    x = rng.standard_normal((2, 3, 7, 6))  # distinct values: max pooling is differentiable here

    def max_forward(x):
        return ops.max_pool2d(x, kernel, stride, padding)[0]

    def max_backward(dy, x):
        return (ops.max_pool2d_backward(dy, ops.max_pool2d(x, kernel, stride, padding)[1], x.shape),)

    fusednn.gradcheck(max_forward, (x,), backward=max_backward)
    for cip in (True, False):
        fusednn.gradcheck(lambda x: ops.avg_pool2d(x, kernel, stride, padding, cip), (x,),
                          backward=lambda dy, x: (ops.avg_pool2d_backward(dy, x.shape, kernel, stride, padding,
                                                                          cip),))
    fusednn.gradcheck(ops.global_avg_pool2d, (x,),
                      backward=lambda dy, x: (ops.global_avg_pool2d_backward(dy, x.shape),))


# ---- pooling against the reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (3, 3, 0), (5, 2, 2)])
def test_avg_pooling_wide_rows_with_nan_and_inf(device, kernel, stride, padding, dtype):
    # Rows of over 64 windows (the CPU's vectorized chunks of inside windows, their ends and the
    # border windows), NaN and inf spreading only into the windows that hold them.
    rng = np.random.default_rng(seed_of("avg pool wide", kernel, stride, padding, dtype))
    x = (rng.standard_normal((2, 2, 9, 203)) * 100).astype(dtype)
    x[0, 0, 4, 100] = np.nan
    x[1, 1, 0, 7] = np.inf
    x[1, 0, 8, 202] = -np.inf
    for cip in (True, False):
        got = ops.avg_pool2d(to_device(device, x), kernel, stride, padding, count_include_pad=cip)
        assert_close(got, reference.avg_pool2d(x, kernel, stride, padding, cip),
                     reference.avg_pool2d(*wider(x), kernel, stride, padding, cip))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", [1, 2, 3, (2, 3), (3, 1)])
@pytest.mark.parametrize("hw", [(6, 6), (7, 11), (3, 4)], ids=str)
def test_avg_pooling_backward_of_tiling_windows(device, dtype, kernel, hw):
    # stride = kernel, no padding (the CPU writes dx rows directly): rows and columns past the
    # last window stay 0, and dx is exactly dy / (kh kw) spread over each window.
    rng = np.random.default_rng(seed_of("avg pool tiled", dtype, kernel, hw))
    x = rng.standard_normal((2, 3) + hw).astype(dtype)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    y = reference.avg_pool2d(x, kernel)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy.reshape(-1)[::5] = -0.0
    got = to_numpy(ops.avg_pool2d_backward(to_device(device, dy), x.shape, kernel))
    want = np.zeros_like(x)
    oh, ow = y.shape[2:]
    want[:, :, :oh * kh, :ow * kw] = np.repeat(np.repeat(dy / dtype(kh * kw), kh, axis=2), kw, axis=3)
    np.testing.assert_array_equal(got, want)
    assert_close(got, reference.avg_pool2d_backward(dy, x.shape, kernel))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel, stride, padding", POOL_CASES)
def test_pooling_matches_reference(device, kernel, stride, padding, dtype):
    rng = np.random.default_rng(seed_of("pool", kernel, stride, padding, dtype))
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    xd = to_device(device, x)
    y, idx = ops.max_pool2d(xd, kernel, stride, padding)
    ry, ridx = reference.max_pool2d(x, kernel, stride, padding)
    assert np.array_equal(to_numpy(y), ry) and np.array_equal(to_numpy(idx), ridx)
    assert to_numpy(idx).dtype == np.int64
    dy = rng.standard_normal(ry.shape).astype(dtype)
    assert_close(ops.max_pool2d_backward(to_device(device, dy), idx, x.shape),
                 reference.max_pool2d_backward(dy, ridx, x.shape))
    for cip in (True, False):
        a = ops.avg_pool2d(xd, kernel, stride, padding, count_include_pad=cip)
        assert_close(a, reference.avg_pool2d(x, kernel, stride, padding, cip),
                     reference.avg_pool2d(*wider(x), kernel, stride, padding, cip))
        assert_close(ops.avg_pool2d_backward(to_device(device, dy), x.shape, kernel, stride, padding, cip),
                     reference.avg_pool2d_backward(dy, x.shape, kernel, stride, padding, cip),
                     reference.avg_pool2d_backward(*wider(dy), x.shape, kernel, stride, padding, cip))
    g = ops.global_avg_pool2d(xd)
    assert_close(g, reference.global_avg_pool2d(x), reference.global_avg_pool2d(*wider(x)))
    dg = rng.standard_normal(g.shape).astype(dtype)
    assert_close(ops.global_avg_pool2d_backward(to_device(device, dg), x.shape),
                 reference.global_avg_pool2d_backward(dg, x.shape))


def test_max_pool_ties_nan_and_padding(device):
    """Ties: the first maximum in row-major window order (torch's CPU choice); a NaN wins (the
    last NaN of its window); the padding never wins, even over -inf."""
    x = np.array([[[[1.0, 1.0, 0.0, 2.0],
                    [1.0, 0.0, 2.0, 2.0],
                    [np.nan, 5.0, -np.inf, -np.inf],
                    [3.0, np.nan, -np.inf, -np.inf]]]])
    y, idx = ops.max_pool2d(to_device(device, x), 2)
    assert np.array_equal(to_numpy(idx), [[[[0, 3], [13, 10]]]])
    np.testing.assert_array_equal(to_numpy(y), [[[[1.0, 2.0], [np.nan, -np.inf]]]])
    ry, ridx = reference.max_pool2d(x, 2)
    assert np.array_equal(ridx, to_numpy(idx))
    # With padding 1 and kernel 2, stride 2: the corner window holds one input position.
    y, idx = ops.max_pool2d(to_device(device, -np.ones((1, 1, 3, 3))), 2, 2, 1)
    assert np.array_equal(to_numpy(idx), [[[[0, 1], [3, 4]]]]) and (to_numpy(y) == -1).all()
    # The tie's gradient goes to the chosen (first) position only; repeated indices add.
    dx = ops.max_pool2d_backward(to_device(device, np.ones((1, 1, 2, 2))),
                                 to_device(device, np.array([[[[0, 0], [0, 15]]]])), (1, 1, 4, 4))
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 0, 0], expected[0, 0, 3, 3] = 3, 1
    assert np.array_equal(to_numpy(dx), expected)


@pytest.mark.parametrize("hw", [(9, 37), (4, 32), (2, 2)])
def test_max_pool_2x2_ties_and_nan_float32(device, hw):
    """2x2 windows at stride 2 in float32 (the CPU's vectorized path: 16 outputs at a time, a
    masked tail, odd sizes dropping the last row/column): values and indices exactly the
    reference's, with many ties, NaNs and infinities."""
    rng = np.random.default_rng(seed_of("pool2x2", hw))
    x = rng.integers(-2, 3, (3, 2, *hw)).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, flat.size // 7)] = np.nan
    flat[rng.choice(flat.size, flat.size // 11)] = -np.inf
    flat[rng.choice(flat.size, flat.size // 13)] = np.inf
    y, idx = ops.max_pool2d(to_device(device, x), 2)
    ry, ridx = reference.max_pool2d(x, 2)
    assert np.array_equal(to_numpy(idx), ridx)
    np.testing.assert_array_equal(to_numpy(y), ry)


# ---- bad arguments

def test_conv_errors():
    x = np.zeros((2, 4, 5, 5), np.float32)
    w = np.zeros((6, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="stride: expected a positive integer"):
        ops.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="dilation"):
        ops.conv2d(x, w, dilation=(1, 0))
    with pytest.raises(ValueError, match="padding: expected an integer >= 0"):
        ops.conv2d(x, w, padding=-1)
    with pytest.raises(TypeError, match="stride"):
        ops.conv2d(x, w, stride=1.5)
    with pytest.raises(TypeError, match="padding"):
        ops.conv2d(x, w, padding=(1, 2, 3))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        ops.conv2d(x, w, dilation=3)
    with pytest.raises(ValueError, match=r"w: expected shape \(C_out, C_in / groups, kH, kW\)"):
        ops.conv2d(x, np.zeros((4, 6, 3, 3), np.float32))  # (C_in, C_out, ...): the wrong layout
    with pytest.raises(ValueError, match="w: expected a 4-D array"):
        ops.conv2d(x, np.zeros((6, 36), np.float32))
    with pytest.raises(ValueError, match="groups: x has C_in = 4 channels, not divisible by groups = 3"):
        ops.conv2d(x, np.zeros((6, 1, 3, 3), np.float32), groups=3)
    with pytest.raises(ValueError, match="divisible by groups"):
        ops.conv2d(x, np.zeros((5, 2, 3, 3), np.float32), groups=2)
    with pytest.raises(ValueError, match="groups: expected an integer >= 1"):
        ops.conv2d(x, w, groups=0)
    with pytest.raises(ValueError, match="x: expected a 4-D array"):
        ops.conv2d(x[0], w)
    with pytest.raises(TypeError, match="w: expected dtype float32"):
        ops.conv2d(x, w.astype(np.float64))
    with pytest.raises(ValueError, match="b: expected shape"):
        ops.conv2d(x, w, np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="activation"):
        ops.conv2d(x, w, activation="tanh")
    with pytest.raises(ValueError, match="out: expected shape"):
        ops.conv2d(x, w, out=np.zeros((2, 6, 5, 5), np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.conv2d(x, w, out=np.zeros((2, 6, 3, 6), np.float32)[..., :3])
    dy = np.zeros((2, 6, 3, 3), np.float32)
    with pytest.raises(ValueError, match="dy: expected shape"):
        ops.conv2d_backward(dy[:, :5], x, w)
    with pytest.raises(ValueError, match="y: the forward output is required"):
        ops.conv2d_backward(dy, x, w, activation="relu")
    with pytest.raises(ValueError, match="input_grad=False"):
        ops.conv2d_backward(dy, x, w, input_grad=False, out=(np.zeros_like(x), None, None))
    with pytest.raises(TypeError, match="bias"):
        ops.conv2d_backward(dy, x, w, bias=1)
    with pytest.raises(ValueError, match="overlap|share"):
        ops.conv2d_backward(dy, x, w, out=(x, None, None))
    # The reference refuses the same arguments.
    with pytest.raises(ValueError, match="stride"):
        reference.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="w: expected shape"):
        reference.conv2d(x, np.zeros((4, 6, 3, 3), np.float32))


def test_pool_errors():
    x = np.zeros((2, 3, 6, 6), np.float32)
    for op in (ops.max_pool2d, ops.avg_pool2d, reference.max_pool2d, reference.avg_pool2d):
        with pytest.raises(ValueError, match=r"padding: expected at most half the kernel size \(1, 1\)"):
            op(x, 3, 1, 2)
        with pytest.raises(ValueError, match="stride: expected a positive integer"):
            op(x, 2, 0)
        with pytest.raises(ValueError, match="kernel_size"):
            op(x, 0)
    with pytest.raises(ValueError, match="padding: expected at most half"):
        ops.max_pool2d(x, (2, 4), 1, (2, 1))  # per axis: 2 > 2 // 2
    with pytest.raises(ValueError, match="smaller than the kernel"):
        ops.max_pool2d(x, 7)
    with pytest.raises(ValueError, match="x: expected a 4-D array"):
        ops.avg_pool2d(x[0], 2)
    with pytest.raises(ValueError, match="x: expected a 4-D array"):
        ops.global_avg_pool2d(x[0])
    y, idx = ops.max_pool2d(x, 2)
    with pytest.raises(ValueError, match=r"indices: 1 indices outside \[0, H \* W\) = \[0, 36\)"):
        bad = idx.copy()
        bad[0, 0, 0, 0] = 36
        ops.max_pool2d_backward(y, bad, x.shape)
    with pytest.raises(TypeError, match="indices: expected dtype int64"):
        ops.max_pool2d_backward(y, idx.astype(np.int32), x.shape)
    with pytest.raises(ValueError, match="indices: expected the shape of dy"):
        ops.max_pool2d_backward(y, idx[:, :, :2], x.shape)
    with pytest.raises(TypeError, match="input_shape"):
        ops.max_pool2d_backward(y, idx, (2, 3, 6))
    with pytest.raises(ValueError, match="dy: expected shape"):
        ops.avg_pool2d_backward(y[:, :, :2], x.shape, 2)
    with pytest.raises(ValueError, match="dy: expected shape"):
        ops.global_avg_pool2d_backward(y, x.shape)
    with pytest.raises(TypeError, match="count_include_pad"):
        ops.avg_pool2d(x, 2, count_include_pad=None)


# ---- the CPU direct path (csrc/ops/conv_direct_cpu.cpp): groups = 1, K = C_in kH kW <= 32 and
# OH * OW >= 256 on a CPU with AVX-512F; the rest goes through im2col + GEMM. The shapes below
# sit on both sides of both thresholds, and cover the direct path's chunks: one image of <= 1024
# positions per chunk, several images per chunk (and a last chunk with fewer), and an image cut
# into parts (with a shorter last part and partial vectors).
DIRECT_MAX_K, DIRECT_MIN_POSITIONS = 32, 256  # conv.h's kConvDirectMaxK, kConvDirectMinPositions

# (N, C_in, H, W, C_out, kH, kW, stride, padding, dilation)
DIRECT_SHAPES = [
    (3, 1, 28, 28, 32, 3, 3, 1, 1, 1),              # a first layer: 784 positions per image
    (2, 1, 40, 40, 5, 3, 3, 1, 1, 1),               # 1600 positions: two parts per image
    (1, 2, 33, 35, 3, 3, 3, 1, 1, 1),               # N = 1, odd sizes: parts of 578 and 577
    (2, 3, 37, 41, 6, 3, 2, (2, 1), (0, 2), (1, 2)),  # stride, asymmetric padding and dilation
    (5, 2, 16, 16, 7, 3, 3, 1, 1, 1),               # 256 positions (the threshold): 4 images a chunk
    (2, 2, 15, 17, 3, 3, 3, 1, 1, 1),               # 255 positions: im2col
    (2, 32, 16, 16, 4, 1, 1, 1, 0, 1),              # K = 32 (the threshold), 1x1 kernel
    (2, 4, 18, 18, 4, 3, 3, 1, 1, 1),               # K = 36: im2col
    (3, 1, 20, 20, 9, 5, 5, 1, 2, 1),               # 5x5, C_out not a multiple of the register blocks
    (2, 3, 20, 20, 4, 3, 3, 1, 5, 1),               # padding larger than the kernel
    (2, 1, 1, 1, 3, 3, 3, 1, 9, 1),                 # a 1x1 image, padded to 17x17 outputs
]


def _direct(shape):
    """Whether the CPU takes the direct path for this shape (on a CPU with AVX-512F)."""
    n, c, h, w, co, kh, kw, stride, padding, dilation = shape
    (sh, sw), (ph, pw), (dh, dw) = (v if isinstance(v, tuple) else (v, v) for v in (stride, padding, dilation))
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return c * kh * kw <= DIRECT_MAX_K and oh * ow >= DIRECT_MIN_POSITIONS


def test_direct_shapes_straddle_the_thresholds():
    """The shapes sit on both sides of the thresholds, and the CPU takes the direct path exactly
    where this file's copy of the rule says, on a CPU with AVX-512F (elsewhere never: the
    direct-path tests then check the im2col path on the same shapes)."""
    from fusednn import _C
    taken = [_direct(s) for s in DIRECT_SHAPES]
    assert sum(taken) >= 8 and not all(taken)
    avx512 = fusednn.build_info()["avx512_paths"]
    for shape, direct in zip(DIRECT_SHAPES, taken):
        n, c, h, w, co, kh, kw, stride, padding, dilation = shape
        x, wt = np.zeros((n, c, h, w), np.float32), np.zeros((co, c, kh, kw), np.float32)
        assert _C._conv_direct_applies(x, wt, stride, padding, dilation) == (direct and avx512), shape


def _direct_case(shape, dtype, rng):
    n, c, h, w, co, kh, kw, stride, padding, dilation = shape
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((co, c, kh, kw)) / np.sqrt(c * kh * kw)).astype(dtype)
    b = rng.standard_normal(co).astype(dtype)
    return x, wt, b, dict(stride=stride, padding=padding, dilation=dilation)


def _check_conv_against_reference(x, w, b, dy, kw, activation, input_grad=True):
    y = ops.conv2d(x, w, b, activation=activation, **kw)
    expected = reference.conv2d(x, w, b, activation=activation, **kw)
    xw, ww, bw, dyw = wider(x, w, b, dy)
    yw = reference.conv2d(xw, ww, bw, activation=activation, **kw)
    assert_close(y, expected, yw, err_msg="y")
    got = ops.conv2d_backward(dy, x, w, y, activation=activation, input_grad=input_grad, **kw)
    want = reference.conv2d_backward(dy, x, w, expected, activation=activation, input_grad=input_grad, **kw)
    wide = reference.conv2d_backward(dyw, xw, ww, yw, activation=activation, input_grad=input_grad, **kw)
    for name, g, e, ew in zip(("dx", "dw", "db"), got, want, wide):
        if e is None:
            assert g is None, name
        else:
            assert_close(g, e, ew, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("shape", DIRECT_SHAPES)
def test_conv2d_direct_matches_reference(shape, activation, dtype):
    rng = np.random.default_rng(seed_of("conv_direct", shape, activation, dtype))
    x, w, b, kw = _direct_case(shape, dtype, rng)
    out_shape = reference.conv2d(x, w, b, **kw).shape
    dy = rng.standard_normal(out_shape).astype(dtype)
    _check_conv_against_reference(x, w, b, dy, kw, activation, input_grad=shape[0] != 3)


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_direct_nan_and_inf(dtype):
    """NaN and Inf in x, w's neighbourhood and dy go where the reference puts them (the ReLU
    passes NaN; an infinite dy where y <= 0 gives 0)."""
    rng = np.random.default_rng(seed_of("conv_direct_nan", dtype))
    x, w, b, kw = _direct_case((2, 2, 18, 17, 5, 3, 3, 1, 1, 1), dtype, rng)
    x[0, 0, 3, 4], x[1, 1, 17, 16], x[1, 0, 9, 0] = np.nan, np.inf, -np.inf
    y = reference.conv2d(x, w, b, activation="relu", **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy[0, 1, 10, 10], dy[1, 2, 0, 5] = np.nan, np.inf
    dy[0, 3][y[0, 3] <= 0] = np.inf  # masked by the ReLU
    assert np.isnan(y).any() and (y[0, 3] <= 0).any()
    with np.errstate(invalid="ignore"):  # the reference's inf - inf and 0 * inf
        for activation in (None, "relu"):
            _check_conv_against_reference(x, w, b, dy, kw, activation)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [DIRECT_SHAPES[0], DIRECT_SHAPES[2], DIRECT_SHAPES[4]])
def test_conv2d_direct_threads(threads, shape, dtype):
    """The direct path's forward, dx, dw and db are bitwise the same on 1 and 2 threads, and dw and
    db do not change when dx is skipped."""
    rng = np.random.default_rng(seed_of("conv_direct_threads", shape, dtype))
    x, w, b, kw = _direct_case(shape, dtype, rng)
    x = np.concatenate([x] * 8)  # more images than backward tasks of one image
    results = []
    for t in (1, 2):
        threads(t)
        y = ops.conv2d(x, w, b, activation="relu", **kw)
        dy = np.random.default_rng(7).standard_normal(y.shape).astype(dtype)
        results.append((y, *ops.conv2d_backward(dy, x, w, y, activation="relu", **kw),
                        *ops.conv2d_backward(dy, x, w, y, activation="relu", input_grad=False, **kw)[1:]))
    for one, two in zip(*results):
        assert np.array_equal(one, two)
    y, dx, dw, db, dw_only, db_only = results[0]
    assert np.array_equal(dw, dw_only) and np.array_equal(db, db_only)


@pytest.mark.parametrize("shape", [(1, 1, 16, 16, 2, 3, 3, 1, 1, 1),
                                   (2, 2, 20, 40, 3, 3, 2, (1, 2), (2, 1), (2, 1))])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d_direct_gradcheck(shape, activation):
    assert _direct(shape)
    rng = np.random.default_rng(seed_of("conv_direct_gc", shape, activation))
    x, w, b, kw = _direct_case(shape, np.float64, rng)

    def forward(x, w, b):
        return ops.conv2d(x, w, b, activation=activation, **kw)

    def backward(dy, x, w, b):
        return ops.conv2d_backward(dy, x, w, forward(x, w, b), activation=activation, **kw)

    fusednn.gradcheck(forward, (x, w, b), backward=backward)
