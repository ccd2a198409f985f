"""fusednn.ops norm family (batch, layer, weight and local response norm) against the NumPy
reference on every device (conftest's ``device`` fixture), independent checks, gradchecks, zero
sizes, precision at scale, thread counts (CPU) and bad input."""

import inspect

import numpy as np
import pytest
from conftest import (GRADCHECK_ATOL, GRADCHECK_RTOL, array_module, assert_close, seed_of, to_device, to_numpy,
                      wider)

import fusednn
from fusednn import ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]
NORM_OPS = ["batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward", "weight_norm",
            "weight_norm_backward", "local_response_norm", "local_response_norm_backward"]


def assert_all_close(got, same, wide):
    """assert_close for each output of an op, against the same-dtype and the wide reference."""
    assert len(got) == len(same) == len(wide)
    for i, (g, s, w) in enumerate(zip(got, same, wide)):
        assert_close(g, s, w, err_msg=f"output {i}")


def on_device(device, *arrays):
    """to_device, always as a tuple (for unpacking into an op's arguments)."""
    return to_device(device, *arrays) if len(arrays) > 1 else (to_device(device, *arrays),)


def assert_equal(a, b):
    """Bit equality of two results (either device)."""
    np.testing.assert_array_equal(to_numpy(a), to_numpy(b))


# ---------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------

# (1, 1) and (1, 4, 1, 1) have one value per channel: evaluation only. (4097, 33) is an (N, C)
# case with more rows than one chunk of the column partials holds on either device.
BN_SHAPES = [(1, 1), (2, 1), (9, 1), (1, 4, 1, 1), (17, 33), (4097, 33), (4, 3, 10), (2, 3, 5, 7), (8, 16, 9, 9),
             (2, 2, 3, 2, 2), (257, 1025)]


def bn_axes(x):
    return (0,) + tuple(range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def make_bn(shape, rng, dtype, affine=True, scale=1.0, offset=0.0):
    c = shape[1]
    center = rng.standard_normal(c).reshape((1, c) + (1,) * (len(shape) - 2))
    x = (rng.standard_normal(shape) * scale + offset + center).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype) if affine else None
    beta = rng.standard_normal(c).astype(dtype) if affine else None
    running_mean = rng.standard_normal(c).astype(dtype)
    running_var = (rng.random(c) + 0.5).astype(dtype)
    return x, gamma, beta, running_mean, running_var


def bn_values_per_channel(shape):
    return shape[0] * int(np.prod(shape[2:], dtype=np.int64))


def bn_forward_all(device, x, gamma, beta, rm, rv, **kw):
    """ops.batch_norm on the device and the reference in x's dtype and wide, each with its own
    copy of the running buffers: (got, same, wide) with the buffers appended to the outputs."""
    rm_same, rv_same = (None if b is None else b.copy() for b in (rm, rv))
    rm_wide, rv_wide = wider(rm, rv)
    d_rm, d_rv = (None if b is None else to_device(device, b.copy()) for b in (rm, rv))
    got = ops.batch_norm(*to_device(device, x, gamma, beta), d_rm, d_rv, **kw)
    same = reference.batch_norm(x, gamma, beta, rm_same, rv_same, **kw)
    wide = reference.batch_norm(*wider(x, gamma, beta), rm_wide, rv_wide, **kw)
    buffers = [b is not None for b in (rm, rv)]
    pick = (lambda bufs: tuple(b for b, given in zip(bufs, buffers) if given))
    return got + pick((d_rm, d_rv)), same + pick((rm_same, rv_same)), wide + pick((rm_wide, rv_wide))


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_reference(device, shape, dtype, affine, training):
    rng = np.random.default_rng(seed_of("bn", shape, affine, training))
    x, gamma, beta, rm, rv = make_bn(shape, rng, dtype, affine)
    if training and bn_values_per_channel(shape) == 1:
        with pytest.raises(ValueError, match=r"x: batch norm in training needs more than 1 value per channel, "
                                             r"got N \* spatial = 1"):
            ops.batch_norm(*to_device(device, x, gamma, beta, rm, rv), training=True)
        return
    got, same, wide = bn_forward_all(device, x, gamma, beta, rm, rv, training=training, momentum=0.3)
    c = shape[1]
    assert got[0].shape == shape and got[1].shape == (c,) and got[2].shape == (c,)
    assert all(g.dtype == dtype for g in got)
    assert_all_close(got, same, wide)
    if not training:  # the buffers are read, not written, and mean is running_mean
        assert_equal(got[3], rm)
        assert_equal(got[4], rv)
        assert_equal(got[1], rm)


BN_BACKWARD_CASES = [(s, t) for s in BN_SHAPES for t in (True, False) if not (t and bn_values_per_channel(s) == 1)]


@pytest.mark.parametrize("shape, training", BN_BACKWARD_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_backward_matches_reference(device, shape, training, dtype, affine):
    rng = np.random.default_rng(seed_of("bn_backward", shape, affine, training))
    x, gamma, beta, rm, rv = make_bn(shape, rng, dtype, affine)
    _, mean, inv_std = reference.batch_norm(x, gamma, beta, rm, rv, training=training)
    dy = rng.standard_normal(shape).astype(dtype)
    args = (dy, x, gamma, mean, inv_std)
    got = ops.batch_norm_backward(*to_device(device, *args), training=training)
    assert [g.shape for g in got] == [shape, (shape[1],), (shape[1],)]
    assert_all_close(got, reference.batch_norm_backward(*args, training=training),
                     reference.batch_norm_backward(*wider(*args), training=training))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.7, 1.0])
def test_batch_norm_running_stats_are_updated_in_place(device, dtype, momentum):
    rng = np.random.default_rng(seed_of("bn_running", momentum))
    x, gamma, beta, _, _ = make_bn((6, 3, 4), rng, dtype)
    # The buffers are views into one array: only an in-place update shows up in `store`.
    before = np.stack([rng.standard_normal(3), rng.random(3) + 0.5]).astype(dtype)
    store = to_device(device, before.copy())
    rm, rv = store[0], store[1]
    rm_same, rv_same = before[0].copy(), before[1].copy()
    rm_wide, rv_wide = wider(before[0], before[1])
    for step in range(2):
        xs = x * dtype(step + 1)
        ops.batch_norm(*to_device(device, xs, gamma, beta), rm, rv, training=True, momentum=momentum)
        reference.batch_norm(xs, gamma, beta, rm_same, rv_same, training=True, momentum=momentum)
        reference.batch_norm(*wider(xs, gamma, beta), rm_wide, rv_wide, training=True, momentum=momentum)
    assert rm.base is store and rv.base is store
    assert_close(store[0], rm_same, rm_wide)
    assert_close(store[1], rv_same, rv_wide)
    if momentum == 0.0:
        assert_equal(store, before)
    if momentum == 1.0:  # the last batch's mean and unbiased variance, computed here
        xs = x * dtype(2)
        xw = wider(xs)[0]
        assert_close(store[0], xs.mean(axis=(0, 2)), xw.mean(axis=(0, 2)))
        assert_close(store[1], xs.var(axis=(0, 2), ddof=1), xw.var(axis=(0, 2), ddof=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_without_running_stats(device, dtype):
    rng = np.random.default_rng(10)
    x, gamma, beta, rm, rv = to_device(device, *make_bn((7, 5, 3), rng, dtype))
    with_buffers = ops.batch_norm(x, gamma, beta, rm, rv, training=True)
    without = ops.batch_norm(x, gamma, beta, training=True)
    for a, b in zip(with_buffers, without):
        assert_equal(a, b)


@pytest.mark.parametrize("given", ["running_mean", "running_var"])
def test_batch_norm_training_with_one_running_buffer_updates_that_one(device, given):
    rng = np.random.default_rng(seed_of("bn_one_buffer", given))
    x, gamma, beta, rm, rv = make_bn((7, 5, 3), rng, np.float64)
    buffers = (rm, None) if given == "running_mean" else (None, rv)
    got, same, wide = bn_forward_all(device, x, gamma, beta, *buffers, training=True)
    assert len(got) == 4
    assert_all_close(got, same, wide)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_eval_uses_running_stats(device, dtype):
    """Not using the reference: y = (x - running_mean) / sqrt(running_var + eps) * gamma + beta."""
    rng = np.random.default_rng(11)
    x, gamma, beta, rm, rv = make_bn((7, 5, 3), rng, dtype)
    d_rm, d_rv = to_device(device, rm, rv)
    y, mean, inv_std = ops.batch_norm(*to_device(device, x, gamma, beta), d_rm, d_rv, training=False, momentum=0.5,
                                      eps=1e-3)
    assert_equal(d_rm, rm)
    assert_equal(d_rv, rv)
    assert_equal(mean, rm)
    xw, gw, bw, rmw, rvw = wider(x, gamma, beta, rm, rv)
    assert_close(inv_std, 1 / np.sqrt(rvw + 1e-3))
    assert_close(y, (xw - rmw[:, None]) / np.sqrt(rvw[:, None] + 1e-3) * gw[:, None] + bw[:, None])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 5), (8, 3, 4, 5)])
def test_batch_norm_training_output_is_standardized(device, dtype, shape):
    """Not using the reference: with gamma = 1 and beta = 0 (or None) each channel of y has mean
    0 and (biased) variance var / (var + eps)."""
    rng = np.random.default_rng(seed_of("bn_standard", shape))
    x = (rng.standard_normal(shape) * 3 + 7).astype(dtype)
    axes = (0,) + tuple(range(2, x.ndim))
    c = shape[1]
    y, mean, inv_std = ops.batch_norm(*to_device(device, x, np.ones(c, dtype), np.zeros(c, dtype)), training=True)
    y_none, _, _ = ops.batch_norm(to_device(device, x), None, None, training=True)
    assert_equal(y_none, y)  # gamma = 1 and beta = 0 are exact
    y64, x64 = to_numpy(y).astype(np.float64), x.astype(np.float64)
    var = x64.var(axis=axes)
    assert_close(y64.mean(axis=axes).astype(dtype), np.zeros(c, dtype))
    assert_close(y64.var(axis=axes).astype(dtype), var / (var + 1e-5))
    assert_close(mean, x64.mean(axis=axes))
    assert_close(inv_std, 1 / np.sqrt(var + 1e-5))


def assert_relative_close(actual, expected_wide):
    """actual within the elementwise tolerance of expected_wide relative to itself (for values that
    must keep their accuracy whatever their size)."""
    actual = to_numpy(actual)
    assert_close((actual / expected_wide).astype(actual.dtype), np.ones(actual.shape, actual.dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset, scale", [(1e4, 1.0), (0.0, 1e4), (-1e4, 10.0)])
def test_batch_norm_large_values(device, dtype, offset, scale):
    """A mean of 1e4 next to a spread of 1 must not cost the variance its accuracy
    (E[x^2] - E[x]^2 would)."""
    rng = np.random.default_rng(seed_of("bn_large", offset, scale))
    for shape in ((300, 6, 5), (1500, 6)):
        x, gamma, beta, rm, rv = make_bn(shape, rng, dtype, scale=scale, offset=offset)
        gamma = gamma * np.asarray(scale, dtype)
        got, same, wide = bn_forward_all(device, x, gamma, beta, rm, rv, training=True)
        assert_all_close(got, same, wide)
        assert_relative_close(got[2], wide[2])
        dy = (rng.standard_normal(x.shape) * scale).astype(dtype)
        args = (dy, x, gamma, to_numpy(got[1]), to_numpy(got[2]))
        for training in (True, False):
            assert_all_close(ops.batch_norm_backward(*to_device(device, *args), training=training),
                             reference.batch_norm_backward(*args, training=training),
                             reference.batch_norm_backward(*wider(*args), training=training))


def test_batch_norm_many_rows_keep_float32_accuracy(device):
    """Regression (issue 13, item 10): on (10**7, 1) float32 the column partials summed N / 64 rows
    in float32, for an inv_std error of 1.6e-5 (NumPy: 2.5e-8) and dgamma/dbeta errors 200x
    NumPy's. The partials are now double."""
    rng = np.random.default_rng(seed_of("bn_many_rows"))
    x = (rng.standard_normal((10**7, 1)) + 3).astype(np.float32)
    rm, rv = np.zeros(1, np.float32), np.ones(1, np.float32)
    got, same, wide = bn_forward_all(device, x, None, None, rm, rv, training=True)
    assert_all_close(got[1:], same[1:], wide[1:])  # mean, inv_std and the running buffers
    assert_relative_close(got[2], wide[2])
    dy = rng.standard_normal(x.shape).astype(np.float32)
    args = (dy, x, None, to_numpy(got[1]), to_numpy(got[2]))
    got = ops.batch_norm_backward(*to_device(device, *args))
    assert_all_close(got[1:], reference.batch_norm_backward(*args)[1:],
                     reference.batch_norm_backward(*wider(*args))[1:])


@pytest.mark.parametrize("shape", [(16, 2), (8, 2, 2)])
def test_batch_norm_backward_products_near_the_float32_range(device, shape):
    """Regression: the sums of dy * xhat formed each product in float32 (the (N, C) column sums,
    the planes of spatial inputs, and CUDA's kernels), so with |dy| near the float range and
    |xhat| = 2.83 a product overflowed to +-inf and dgamma and dx were NaN where the exact
    results are finite (the +-3.7e38 products cancel). The products are now formed in double."""
    # Channel 0: the values 1, -1 and fourteen 0s (mean 0, xhat +-2.83 and 0), dy +-1.3e38 at
    # both +-2.83 and at two of the zeros (dbeta and dgamma exactly 0); channel 1 ordinary.
    values = np.zeros(16, np.float32)
    values[:2] = [1.0, -1.0]
    grads = np.zeros(16, np.float32)
    grads[:4] = [1.3e38, 1.3e38, -1.3e38, -1.3e38]
    rng = np.random.default_rng(seed_of("bn float range", shape))
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    xs, ds = np.moveaxis(x, 1, -1), np.moveaxis(dy, 1, -1)  # views: channel last
    xs[..., 0] = values.reshape(xs.shape[:-1])
    ds[..., 0] = grads.reshape(ds.shape[:-1])
    gamma = np.array([0.1, 1.5], np.float32)  # dx = 0.28 * dy in channel 0 stays finite
    _, mean, inv_std = reference.batch_norm(x, gamma, None, training=True)
    args = (dy, x, gamma, mean, inv_std)
    dx, dg, db = (to_numpy(a) for a in ops.batch_norm_backward(*to_device(device, *args)))
    assert np.isfinite(dx).all() and np.isfinite(dg).all() and np.isfinite(db).all()
    np.testing.assert_array_equal([dg[0], db[0]], [0.0, 0.0])
    for got, want in zip((dx, dg, db), reference.batch_norm_backward(*wider(*args))):
        assert_close(got, want.astype(np.float32))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_nan_propagates_like_reference(device, dtype, training):
    rng = np.random.default_rng(12)
    x, gamma, beta, rm, rv = make_bn((6, 5, 3), rng, dtype)
    x[2, 1, 0] = np.nan
    gamma[3] = np.nan
    rv[4] = np.nan
    got, same, wide = bn_forward_all(device, x, gamma, beta, rm, rv, training=training)
    assert_all_close(got, same, wide)
    y = to_numpy(got[0])
    assert np.isnan(y[:, 1]).all() == training and np.isnan(y[:, 3]).all()
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[0, 2, 2] = np.nan
    args = (dy, x, gamma, same[1], same[2])
    assert_all_close(ops.batch_norm_backward(*to_device(device, *args), training=training),
                     reference.batch_norm_backward(*args, training=training),
                     reference.batch_norm_backward(*wider(*args), training=training))


# Every combination of a zero-size N, C and spatial axis. Training needs more than one value per
# channel (N * spatial > 1), in the ops and the reference alike.
BN_ZERO_SHAPES = [(0, 3), (2, 0), (0, 0), (0, 3, 2), (2, 0, 3), (2, 3, 0), (0, 0, 4), (0, 3, 0), (2, 0, 0),
                  (3, 2, 0, 4), (0, 2, 3, 4)]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("shape", BN_ZERO_SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_zero_size(device, shape, training):
    """Regression (issue 13, item 1): a zero-size spatial axis divided by zero (SIGFPE) in the
    evaluation forward and in the backward. Every zero-size combination now does what the
    reference does."""
    rng = np.random.default_rng(seed_of("bn_zero", shape, training))
    x, gamma, beta, rm, rv = make_bn(shape, rng, np.float32)
    if training and bn_values_per_channel(shape) <= 1:
        message = (r"x: batch norm in training needs more than 1 value per channel, got N \* spatial = "
                   f"{bn_values_per_channel(shape)}")
        for impl, arrays in ((ops, to_device(device, x, gamma, beta, rm, rv)), (reference, (x, gamma, beta, rm, rv))):
            with pytest.raises(ValueError, match=message):
                impl.batch_norm(*arrays, training=True)
    else:
        got, same, wide = bn_forward_all(device, x, gamma, beta, rm, rv, training=training)
        assert got[0].shape == shape and got[1].shape == (shape[1],)
        assert_all_close(got, same, wide)
    # The backward takes any statistics, in training too (dx is empty whenever N * spatial is 0).
    dy = rng.standard_normal(shape).astype(np.float32)
    args = (dy, x, gamma, rm, rv + np.float32(1))
    got = ops.batch_norm_backward(*to_device(device, *args), training=training)
    assert [g.shape for g in got] == [shape, (shape[1],), (shape[1],)]
    assert_all_close(got, reference.batch_norm_backward(*args, training=training),
                     reference.batch_norm_backward(*wider(*args), training=training))


def gradcheck(device, op, inputs, wrt, r):
    """The gradient of sum(op(*inputs)[0] * r) with respect to each array in wrt (NumPy float64
    arrays among inputs), by central differences, each evaluation on the device."""

    def loss():
        return float((to_numpy(op(*on_device(device, *inputs))[0]) * r).sum())

    return [numerical_gradient(loss, a) for a in wrt]


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 2, 3), (5, 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_gradcheck_training(device, shape, affine):
    rng = np.random.default_rng(seed_of("bn_grad", shape, affine))
    x, gamma, beta, _, _ = make_bn(shape, rng, np.float64, affine)
    r = rng.standard_normal(shape)

    def forward(x, gamma, beta):  # no running buffers: they would change on every call
        return ops.batch_norm(x, gamma, beta, None, None, training=True)

    _, mean, inv_std = forward(*to_device(device, x, gamma, beta))
    dx, dgamma, dbeta = ops.batch_norm_backward(*to_device(device, r, x, gamma), mean, inv_std, training=True)
    pairs = [(dx, x)] + ([(dgamma, gamma), (dbeta, beta)] if affine else [])
    numeric = gradcheck(device, forward, (x, gamma, beta), [w for _, w in pairs], r)
    for (analytic, _), num in zip(pairs, numeric):
        np.testing.assert_allclose(to_numpy(analytic), num, rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)
    if not affine:  # the gradients of gamma = 1 and beta = 0, computed here
        axes, bshape = bn_axes(x)
        xhat = (x - to_numpy(mean).reshape(bshape)) * to_numpy(inv_std).reshape(bshape)
        assert_close(dgamma, (r * xhat).sum(axis=axes), wider(r * xhat)[0].sum(axis=axes))
        assert_close(dbeta, r.sum(axis=axes), wider(r)[0].sum(axis=axes))


@pytest.mark.parametrize("shape", [(1, 3), (4, 3), (2, 2, 3)])
def test_batch_norm_gradcheck_eval(device, shape):
    rng = np.random.default_rng(seed_of("bn_grad_eval", shape))
    x, gamma, beta, rm, rv = make_bn(shape, rng, np.float64)
    r = rng.standard_normal(shape)

    def forward(x, gamma, beta, rm, rv):
        return ops.batch_norm(x, gamma, beta, rm, rv, training=False)

    _, mean, inv_std = forward(*to_device(device, x, gamma, beta, rm, rv))
    grads = ops.batch_norm_backward(*to_device(device, r, x, gamma), mean, inv_std, training=False)
    for analytic, num in zip(grads, gradcheck(device, forward, (x, gamma, beta, rm, rv), (x, gamma, beta), r)):
        np.testing.assert_allclose(to_numpy(analytic), num, rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


@pytest.mark.parametrize("shape", [(2000, 300), (16, 64, 14, 14)])
def test_batch_norm_identical_for_one_and_two_threads(threads, shape):
    rng = np.random.default_rng(seed_of("bn_threads", shape))
    x, gamma, beta, rm0, rv0 = make_bn(shape, rng, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        assert fusednn.get_num_threads() == n
        rm, rv = rm0.copy(), rv0.copy()
        y, mean, inv_std = ops.batch_norm(x, gamma, beta, rm, rv, training=True)
        out = [y, mean, inv_std, rm, rv, *ops.batch_norm_backward(dy, x, gamma, mean, inv_std)]
        out += ops.batch_norm(x, gamma, beta, rm, rv, training=False)
        out += ops.batch_norm_backward(dy, x, gamma, mean, inv_std, training=False)
        results.append(out)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("shape", [(2, 3), (64, 7), (8, 4, 5, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_forward_then_backward(device, shape, training):
    """The backward from the statistics the forward returned on the same device (the chain a
    layer runs), against the reference chain."""
    rng = np.random.default_rng(seed_of("bn_chain", shape, training))
    x = (rng.standard_normal(shape) * 3).astype(np.float32)
    c = shape[1]
    gamma, beta = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    got, same, wide = bn_forward_all(device, x, gamma, beta, rm, rv, training=training)
    assert_all_close(got, same, wide)
    dy = rng.standard_normal(shape).astype(np.float32)
    back = ops.batch_norm_backward(*to_device(device, dy, x, gamma), got[1], got[2], training=training)
    args = (dy, x, gamma, to_numpy(got[1]), to_numpy(got[2]))
    assert_all_close(back, reference.batch_norm_backward(*args, training=training),
                     reference.batch_norm_backward(*wider(*args), training=training))


# ---------------------------------------------------------------------------------------------
# layer norm
# ---------------------------------------------------------------------------------------------

LN_SHAPES = [(1, 1), (5, 1), (7,), (1, 7), (17, 33), (2, 3, 5), (4, 3, 2, 7), (257, 1025)]


def make_ln(shape, rng, dtype, affine=True, scale=1.0, offset=0.0):
    d = shape[-1]
    center = rng.standard_normal(shape[:-1] + (1,))
    x = (rng.standard_normal(shape) * scale + offset + center).astype(dtype)
    gamma = rng.standard_normal(d).astype(dtype) if affine else None
    beta = rng.standard_normal(d).astype(dtype) if affine else None
    return x, gamma, beta


def ln_forward_all(device, x, gamma, beta, **kw):
    return (ops.layer_norm(*to_device(device, x, gamma, beta), **kw), reference.layer_norm(x, gamma, beta, **kw),
            reference.layer_norm(*wider(x, gamma, beta), **kw))


def ln_backward_all(device, args, **kw):
    return (ops.layer_norm_backward(*to_device(device, *args), **kw), reference.layer_norm_backward(*args, **kw),
            reference.layer_norm_backward(*wider(*args), **kw))


@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_reference(device, shape, dtype, affine):
    rng = np.random.default_rng(seed_of("ln", shape, affine))
    x, gamma, beta = make_ln(shape, rng, dtype, affine)
    got, same, wide = ln_forward_all(device, x, gamma, beta, eps=1e-5)
    assert got[0].shape == shape and got[1].shape == shape[:-1] and got[2].shape == shape[:-1]
    assert all(g.dtype == dtype for g in got)
    assert_all_close(got, same, wide)


@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_backward_matches_reference(device, shape, dtype, affine):
    rng = np.random.default_rng(seed_of("ln_backward", shape, affine))
    x, gamma, _ = make_ln(shape, rng, dtype, affine)
    _, mean, inv_std = reference.layer_norm(x, gamma, None)
    dy = rng.standard_normal(shape).astype(dtype)
    assert_all_close(*ln_backward_all(device, (dy, x, gamma, mean, inv_std)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_rows_are_standardized(device, dtype):
    """Not using the reference: each row of y has mean 0 and variance var / (var + eps)."""
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((40, 3, 64)) * 5 - 3).astype(dtype)
    y, mean, inv_std = ops.layer_norm(to_device(device, x), None, None)
    y64, x64 = to_numpy(y).astype(np.float64), x.astype(np.float64)
    var = x64.var(axis=-1)
    assert_close(y64.mean(axis=-1).astype(dtype), np.zeros(var.shape, dtype))
    assert_close(y64.var(axis=-1).astype(dtype), var / (var + 1e-5))
    assert_close(mean, x64.mean(axis=-1))
    assert_close(inv_std, 1 / np.sqrt(var + 1e-5))
    gamma, beta = np.full(64, 2.0, dtype), np.full(64, -1.0, dtype)
    assert_close(ops.layer_norm(*to_device(device, x, gamma, beta))[0], 2 * y64 - 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset, scale", [(1e4, 1.0), (0.0, 1e4), (-1e4, 10.0)])
def test_layer_norm_large_values(device, dtype, offset, scale):
    rng = np.random.default_rng(seed_of("ln_large", offset, scale))
    x, gamma, beta = make_ln((50, 300), rng, dtype, scale=scale, offset=offset)
    got, same, wide = ln_forward_all(device, x, gamma, beta)
    assert_all_close(got, same, wide)
    assert_relative_close(got[2], wide[2])
    dy = (rng.standard_normal(x.shape) * scale).astype(dtype)
    assert_all_close(*ln_backward_all(device, (dy, x, gamma, to_numpy(got[1]), to_numpy(got[2]))))


def test_layer_norm_many_rows_keep_float32_accuracy(device):
    """Regression (issue 13, item 10): the dgamma / dbeta partials of the CPU summed up to rows / 64
    rows each in float32 (65536 rows of |dy| near 10 whose signs cancel over the whole column: an
    error of 38 against NumPy's 1.7); they are double now, as on the GPU. Two columns, so that
    xhat is +-1 and dgamma = sum(dy xhat) is a long sum too (with one column xhat, dx and dgamma
    are exactly 0). The yardstick of the two column sums is NumPy's float32 sum of each column
    made contiguous (pairwise): the reference sums a strided axis row by row, with an error (210
    for dbeta here) that would bound nothing; against it a float32 sum in blocks of 65536 rows is
    off by 0.08 in dgamma, 20x the bound."""
    rng = np.random.default_rng(seed_of("ln_many_rows"))
    n = 2 * 10**6
    x, gamma, _ = make_ln((n, 2), rng, np.float32)
    _, mean, inv_std = ops.layer_norm(x, gamma, None)
    sign = np.where(np.arange(n) < n // 2, 1.0, -1.0)[:, None]
    dy = ((rng.standard_normal(x.shape) + 10) * sign).astype(np.float32)
    got, same, wide = ln_backward_all(device, (dy, x, gamma, mean, inv_std))
    assert_close(got[0], same[0], wide[0], err_msg="dx")
    xhat = (x - mean[:, None]) * inv_std[:, None]  # float32, as the reference's
    for name, g, terms, w in (("dgamma", got[1], dy * xhat, wide[1]), ("dbeta", got[2], dy, wide[2])):
        pairwise = np.array([np.ascontiguousarray(terms[:, j]).sum() for j in range(2)], np.float32)
        assert_close(g, pairwise, w, err_msg=name)


@pytest.mark.parametrize("gamma", [False, True])
def test_layer_norm_backward_sums_near_the_float32_range(device, gamma):
    """Regression (review of the float32 AVX-512 backward): its row sums and dgamma/dbeta column
    partials are float partials added into double, and with |dy| near the float range a partial
    overflowed to inf where the sum in double is finite (dx NaN everywhere; dbeta NaN for an
    exact 0). Those partials are now redone in double; and the row means are taken in double
    before the cast (a sum beyond the float range with a mean inside it overflowed on every path)."""
    d = 1024
    x = np.tile(np.where(np.arange(d) % 2 == 0, 1.0, -1.0), (3, 1)).astype(np.float32)
    g = np.ones(d, np.float32) if gamma else None
    _, mean, inv_std = ops.layer_norm(x, g, None)
    dy = np.full((3, d), 1e38, np.float32)
    dy[:, d // 2:] = -1e38
    dx, dg, db = (to_numpy(a) for a in ops.layer_norm_backward(*to_device(device, dy, x, g, mean, inv_std)))
    dx_w, dg_w, db_w = reference.layer_norm_backward(*wider(dy, x, g, mean, inv_std))
    assert np.isfinite(dx).all()
    assert_close(dx, dx_w.astype(np.float32))
    # Columns: 32 rows of +-3e37 cancel exactly in each column.
    rows, d = 32, 16
    x = np.random.default_rng(seed_of("ln float range")).standard_normal((rows, d)).astype(np.float32)
    g = np.ones(d, np.float32) if gamma else None
    _, mean, inv_std = ops.layer_norm(x, g, None)
    dy = np.full((rows, d), 3e37, np.float32)
    dy[rows // 2:] = -3e37
    dx, dg, db = (to_numpy(a) for a in ops.layer_norm_backward(*to_device(device, dy, x, g, mean, inv_std)))
    dx_w, dg_w, db_w = reference.layer_norm_backward(*wider(dy, x, g, mean, inv_std))
    np.testing.assert_array_equal(db, np.zeros(d, np.float32))
    assert np.isfinite(dg).all() and np.isfinite(dx).all()
    assert_close(dg, dg_w.astype(np.float32))
    # A product g * xhat beyond the float range (xhat = 3.87) in a row whose sums are finite: the
    # portable loops formed it in float (dx inf/NaN there; run by test_portable_paths.py).
    d = 16
    x = np.zeros((1, d), np.float32)
    x[0, 0] = 1.0
    g = np.ones(d, np.float32) if gamma else None
    _, mean, inv_std = ops.layer_norm(x, g, None)
    dy = np.full((1, d), 1e38, np.float32)
    dx, _, db = (to_numpy(a) for a in ops.layer_norm_backward(*to_device(device, dy, x, g, mean, inv_std)))
    assert np.isfinite(dx).all() and np.isfinite(db).all()
    # exactly 0 in exact arithmetic; float32's rounding of g = 1e38 is 6e30
    assert np.abs(dx).max() <= 1e-6 * 1e38


def test_layer_norm_statistics_beyond_the_float32_squares(device):
    """Regression (review of the float32 AVX-512 forward): its row statistics are float partials
    added into double, and with |x| near 1e20 the squared deviations overflow float where their
    sum in double is finite (inv_std 0, y 0 or NaN). Such rows are redone in double."""
    rng = np.random.default_rng(seed_of("ln float squares"))
    d = 1030  # a partial vector at the end of each row
    x = (rng.standard_normal((4, d)) * 1e20).astype(np.float32)
    x[1, 1::2] = rng.standard_normal(d // 2) * 1e-20  # huge and tiny values in one row
    x[2] = 1e-3
    x[2, 7] = -3e20  # one huge value among small ones
    gamma, beta = rng.standard_normal(d).astype(np.float32), rng.standard_normal(d).astype(np.float32)
    y, mean, inv_std = (to_numpy(a) for a in ops.layer_norm(*to_device(device, x, gamma, beta)))
    y_w, mean_w, inv_std_w = reference.layer_norm(*wider(x, gamma, beta))
    assert np.isfinite(y).all() and np.isfinite(mean).all() and (inv_std > 0).all()
    assert_close(y, y_w.astype(np.float32))
    assert_close(mean, mean_w.astype(np.float32))
    assert_relative_close(inv_std, inv_std_w)


@pytest.mark.parametrize("d", [37, 1025, 4099])
def test_layer_norm_mean_where_deviations_round_alike(device, d):
    """Regression (review of 5c89601): the float32 AVX-512 forward took the mean from float
    partials corrected by sum(x - mu) in float, and x - mu rounds the same way for every x of a
    binade: here (values +-1.25, 1.5, 1.75, whose float sums are exact) every x - mu rounded the
    same way, and the mean was up to half an ulp of 1.5 (6e-8) off, many times NumPy float32's own
    error (N(0, 1) rows of 4099: up to 1.9e-8 against a bound of 1.5e-8). The mean is a sum in
    double now."""
    rng = np.random.default_rng(seed_of("ln mean", d))
    x = (rng.choice([1.25, 1.5, 1.75], (16, d)) * rng.choice([-1.0, 1.0], (16, d))).astype(np.float32)
    got, same, wide = ln_forward_all(device, x, None, None)
    assert_all_close(got, same, wide)


def test_layer_norm_tiny_spread_with_tiny_eps(device):
    """Regression (review of 5c89601): the float32 AVX-512 forward's squares (x - mean)^2 of a row
    of spread 1e-25 are below float's subnormal range (M2 0: with eps = 1e-300, inv_std inf and y
    NaN). Rows whose float M2 is that small (< 2^-100 per column) are redone in double."""
    rng = np.random.default_rng(seed_of("ln tiny"))
    x = (rng.standard_normal((3, 70)) * 1e-25).astype(np.float32)
    y, mean, inv_std = (to_numpy(a) for a in ops.layer_norm(to_device(device, x), None, None, eps=1e-300))
    # float32 NumPy's variance underflows too (inv_std inf): float64 only
    y_w, mean_w, inv_std_w = reference.layer_norm(*wider(x), None, None, eps=1e-300)
    assert np.isfinite(y).all()
    assert_close(y, y_w.astype(np.float32))
    assert_close(mean, mean_w.astype(np.float32))
    assert_relative_close(inv_std, inv_std_w)


@pytest.mark.parametrize("d", [1024, 4099])
def test_layer_norm_constant_rows_give_beta(device, d):
    """A constant row's mean is its value and y is beta exactly (the AVX-512 forward's mean is a
    sum in double; its float M2 of such a row is 0, below its threshold: the row is redone in
    double)."""
    values = np.array([0.1, -3.3e3, 7e-30, 1.0 / 3.0], np.float32)
    x = np.repeat(values[:, None], d, axis=1)
    gamma = np.random.default_rng(seed_of("ln const", d)).standard_normal(d).astype(np.float32)
    beta = np.random.default_rng(seed_of("ln const beta", d)).standard_normal(d).astype(np.float32)
    y, mean, inv_std = (to_numpy(a) for a in ops.layer_norm(*to_device(device, x, gamma, beta)))
    assert np.array_equal(mean, values)
    assert np.array_equal(y, np.broadcast_to(beta, x.shape))
    assert_close(inv_std, np.full(4, 1 / np.sqrt(1e-5)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("shape", [(3, 0), (0,), (2, 4, 0), (0, 5), (0, 0), (3, 0, 2)])
def test_layer_norm_zero_size(device, shape):
    """Regression (issue 13, item 10): over a zero-length axis the statistics were mean 0 and
    inv_std NaN. The mean of nothing is NaN (NumPy's and torch's mean), so both are NaN now,
    as in the reference; y and dx are empty."""
    rng = np.random.default_rng(seed_of("ln_zero", shape))
    x, gamma, beta = make_ln(shape, rng, np.float32)
    got, same, wide = ln_forward_all(device, x, gamma, beta)
    assert got[0].shape == shape and got[1].shape == shape[:-1]
    assert_all_close(got, same, wide)
    if shape[-1] == 0 and got[1].size:
        assert np.isnan(to_numpy(got[1])).all() and np.isnan(to_numpy(got[2])).all()
    dy = rng.standard_normal(shape).astype(np.float32)
    args = (dy, x, gamma, same[1], same[2])
    back = ln_backward_all(device, args)
    assert [g.shape for g in back[0]] == [shape, shape[-1:], shape[-1:]]
    assert_all_close(*back)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_nan_propagates_like_reference(device, dtype):
    rng = np.random.default_rng(14)
    x, gamma, beta = make_ln((6, 9), rng, dtype)
    x[1, 4] = np.nan
    gamma[7] = np.nan
    got, same, wide = ln_forward_all(device, x, gamma, beta)
    assert_all_close(got, same, wide)
    y = to_numpy(got[0])
    assert np.isnan(y[1]).all() and np.isnan(y[:, 7]).all()
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[3, 0] = np.nan
    assert_all_close(*ln_backward_all(device, (dy, x, gamma, same[1], same[2])))


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (4, 1), (6,)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_gradcheck(device, shape, affine):
    rng = np.random.default_rng(seed_of("ln_grad", shape, affine))
    x, gamma, beta = make_ln(shape, rng, np.float64, affine)
    r = rng.standard_normal(shape)
    _, mean, inv_std = ops.layer_norm(*to_device(device, x, gamma, beta))
    grads = ops.layer_norm_backward(*to_device(device, r, x, gamma), mean, inv_std)
    pairs = list(zip(grads, (x, gamma, beta)))[:3 if affine else 1]
    numeric = gradcheck(device, ops.layer_norm, (x, gamma, beta), [w for _, w in pairs], r)
    for (analytic, _), num in zip(pairs, numeric):
        np.testing.assert_allclose(to_numpy(analytic), num, rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


def test_layer_norm_identical_for_one_and_two_threads(threads):
    rng = np.random.default_rng(15)
    x, gamma, beta = make_ln((2000, 300), rng, np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        assert fusednn.get_num_threads() == n
        y, mean, inv_std = ops.layer_norm(x, gamma, beta)
        results.append((y, mean, inv_std, *ops.layer_norm_backward(dy, x, gamma, mean, inv_std)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("activation", [None, "relu"])
def test_layer_norm_streamed_output_matches_small_calls(device, activation):
    """Float32 outputs of 16 MiB or more (here 4100 rows of 1024) are written with streaming
    stores on x86-64 (csrc/cpu/stream_store.h). Rows are independent, so the large call's rows
    equal, bit for bit, those of small calls on a few rows (ordinary stores); out= buffers 4 bytes
    off a 16-byte boundary put every row's first and last elements on the ordinary stores."""
    shape = (4100, 1024)
    rng = np.random.default_rng(seed_of("ln streamed", activation))
    x, gamma, beta = make_ln(shape, rng, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    xd, dyd, gd, bd = to_device(device, x, dy, gamma, beta)
    xp = array_module(device)
    y, mean, inv_std = ops.layer_norm(xd, gd, bd, activation=activation)
    y_buf = xp.zeros(x.size + 1, np.float32)
    y_off = y_buf[1:].reshape(shape)
    ops.layer_norm(xd, gd, bd, activation=activation, out=(y_off, xp.empty(shape[0], np.float32),
                                                           xp.empty(shape[0], np.float32)))
    y_arg = y if activation else None
    grads = ops.layer_norm_backward(dyd, xd, gd, mean, inv_std, y=y_arg, activation=activation)
    dx_off = xp.zeros(x.size + 1, np.float32)[1:].reshape(shape)
    ops.layer_norm_backward(dyd, xd, gd, mean, inv_std, y=y_arg, activation=activation,
                            out=(dx_off, xp.empty(shape[1], np.float32), xp.empty(shape[1], np.float32)))
    for rows in (slice(0, 3), slice(2047, 2050), slice(shape[0] - 3, shape[0])):
        y_s, mean_s, inv_std_s = ops.layer_norm(xd[rows], gd, bd, activation=activation)
        dx_s = ops.layer_norm_backward(dyd[rows], xd[rows], gd, mean_s, inv_std_s, y=y_s if activation else None,
                                       activation=activation)[0]
        for got, small in ((y, y_s), (y_off, y_s), (mean, mean_s), (inv_std, inv_std_s), (grads[0], dx_s),
                           (dx_off, dx_s)):
            np.testing.assert_array_equal(to_numpy(got[rows]).view(np.uint32), to_numpy(small).view(np.uint32))


def _at_offset(like, offset):
    """An uninitialized float32 array of like's shape whose address is like's plus `offset` bytes
    modulo 4096 (offset a multiple of 4)."""
    n = like.size
    buf = np.empty(n + 2048, np.float32)
    start = (like.ctypes.data + offset - buf.ctypes.data) % 4096 // 4
    return buf[start:start + n].reshape(like.shape)


@pytest.mark.parametrize("shape", [(4096, 1024), (300, 1040), (40, 1041), (64, 1024), (7, 33)])
def test_layer_norm_out_address_does_not_change_results(shape):
    """The float32 AVX-512 loops (and the AVX2 forward) store a row from its end to its start where
    the output lies, modulo 4096, just past an input (csrc/ops/norm_cpu.cpp, store_backward), and
    from its start otherwise; (4096, 1024) is streamed (16 MiB outputs), 1040 columns move each
    row's offset modulo 4096. The results (y, mean, inv_std, dx, dgamma, dbeta) are the same bits
    for y and dx at every address relative to x, dy, gamma and beta as in the allocating calls."""
    rng = np.random.default_rng(seed_of("ln out address", *shape))
    x, gamma, beta = make_ln(shape, rng, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    # Without gamma, beta only, and with the ReLU too, on the small shapes.
    variants = [(gamma, beta, None)] + ([(None, None, None), (None, beta, "relu")] if shape[0] < 100 else [])
    for g, b, act in variants:
        y, mean, inv_std = ops.layer_norm(x, g, b, activation=act)
        expected = (y, mean, inv_std, *ops.layer_norm_backward(dy, x, g, mean, inv_std))
        for offset in (-1024, -64, -48, -4, 0, 4, 16, 48, 64, 256, 1024, 2048):
            y_o, dx_o = _at_offset(x, offset), _at_offset(dy, offset)
            stats = (np.empty(shape[0], np.float32), np.empty(shape[0], np.float32))
            ops.layer_norm(x, g, b, activation=act, out=(y_o, *stats))
            got = (y_o, *stats, *ops.layer_norm_backward(dy, x, g, *stats,
                                                         out=(dx_o, np.empty(shape[1], np.float32),
                                                              np.empty(shape[1], np.float32))))
            for i, (u, v) in enumerate(zip(got, expected)):
                assert np.array_equal(u.view(np.uint32), v.view(np.uint32)), (g is None, act, offset, i)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_layer_norm_backward_streamed_rows_with_overflow_and_nan(threads):
    """The float32 AVX-512 backward where dx is streamed (outputs >= 16 MiB), per 16-row column
    block of each 65-row partial block (4100 rows of 1024: rows_per_partial). Row 100 has
    |dy| = 2e38, so its float row sums and its block's float column partials overflow and are redone
    in double; row 199 holds a NaN (a NaN row of dx, a NaN column of dgamma / dbeta); in row 100 one
    dy * xhat is beyond the float range (dgamma inf there, exactly as float64 rounds it). dx of every
    row must equal, bit for bit, the non-streamed calls on half the rows, so a streamed row that
    took another row's statistics, sums or fallback fails here; dgamma / dbeta (streamed column
    partials) against float64; 1 and 2 threads bitwise equal."""
    rows, d = 4100, 1024
    rng = np.random.default_rng(seed_of("ln streamed pairs"))
    x = (rng.standard_normal((rows, d)) + rng.standard_normal((rows, 1))).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, d).astype(np.float32)  # |dy * gamma| stays below the float max
    dy = rng.standard_normal((rows, d)).astype(np.float32)
    huge, nan = 100, 199
    x[huge] = np.where(np.arange(d) % 2 == 0, 1.0, -1.0)
    x[huge, 9] = 20.0  # xhat 17: dy * xhat beyond the float range, so dgamma[9] is inf
    dy[huge] = 2e38
    dy[nan, 5] = np.nan
    _, mean, inv_std = ops.layer_norm(x, gamma, None)
    results = []
    for n in (1, 2):
        threads(n)
        results.append([to_numpy(a) for a in ops.layer_norm_backward(dy, x, gamma, mean, inv_std)])
    for one, two in zip(*results):
        assert np.array_equal(one.view(np.uint32), two.view(np.uint32))
    dx, dg, db = results[0]
    half = rows // 2  # 8 MB of dx per call: ordinary stores, one row at a time
    small = np.concatenate([to_numpy(ops.layer_norm_backward(dy[s], x[s], gamma, mean[s], inv_std[s])[0])
                            for s in (slice(0, half), slice(half, rows))])
    for r in (huge - 1, huge, nan, nan + 1):
        assert np.array_equal(dx[r].view(np.uint32), small[r].view(np.uint32)), r
    assert np.array_equal(dx.view(np.uint32), small.view(np.uint32))
    assert np.isnan(dx[nan]).all() and np.isfinite(dx[huge]).all()
    wide = reference.layer_norm_backward(*wider(dy, x, gamma, mean, inv_std))
    # float32 NumPy overflows in the |dy| = 2e38 row; dx is linear in dy, so its own float32 error
    # there is that of dy * 2^-100 (exact scalings)
    scale = np.float32(2.0 ** 100)
    row = (dy[huge:huge + 1] / scale, x[huge:huge + 1], gamma, mean[huge:huge + 1], inv_std[huge:huge + 1])
    assert_close(dx[huge], reference.layer_norm_backward(*row)[0][0] * scale, wide[0][huge])
    for got, w in zip((dg, db), wide[1:]):
        assert np.isnan(got[5]) and np.isfinite(np.delete(got, [5, 9])).all()
        assert_close(got, w.astype(np.float32))
    assert np.isinf(dg[9])
    # the other rows of the two 16-row column blocks (97..112, 195..210); all rows are the small calls'
    near = np.setdiff1d(np.r_[97:113, 195:211], [huge, nan])
    args = (dy[near], x[near], gamma, mean[near], inv_std[near])
    assert_close(dx[near], reference.layer_norm_backward(*args)[0], wide[0][near])


def test_batch_norm_streamed_output_matches_reference(device):
    """Batch norm of (4096, 1024) float32: y and dx of 16 MiB, written with streaming stores on
    x86-64 (csrc/cpu/stream_store.h), into fresh arrays and into out= buffers 4 bytes off a
    16-byte boundary; in training against the reference; in evaluation the rows are independent,
    so the large call's rows equal those of a small call (ordinary stores) bit for bit."""
    shape = (4096, 1024)
    training = True
    rng = np.random.default_rng(seed_of("bn streamed"))
    x, gamma, beta, rm, rv = make_bn(shape, rng, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    got, same, wide = bn_forward_all(device, x, gamma, beta, rm, rv, training=training)
    assert_all_close(got[:3], same[:3], wide[:3])
    xp = array_module(device)
    y_off = xp.zeros(x.size + 1, np.float32)[1:].reshape(shape)
    rm_d, rv_d = to_device(device, rm.copy(), rv.copy())
    ops.batch_norm(*to_device(device, x, gamma, beta), rm_d, rv_d, training=training,
                   out=(y_off, xp.empty(shape[1], np.float32), xp.empty(shape[1], np.float32)))
    np.testing.assert_array_equal(to_numpy(y_off), to_numpy(got[0]))
    _, mean, inv_std = same[:3]
    args = (dy, x, gamma, mean, inv_std)
    grads = ops.batch_norm_backward(*to_device(device, *args), training=training)
    assert_all_close(grads, reference.batch_norm_backward(*args, training=training),
                     reference.batch_norm_backward(*wider(*args), training=training))
    dx_off = xp.zeros(x.size + 1, np.float32)[1:].reshape(shape)
    ops.batch_norm_backward(*to_device(device, *args), training=training,
                            out=(dx_off, xp.empty(shape[1], np.float32), xp.empty(shape[1], np.float32)))
    np.testing.assert_array_equal(to_numpy(dx_off), to_numpy(grads[0]))
    xd, dyd, gd, bd, md, isd = to_device(device, x, dy, gamma, beta, mean, inv_std)
    y = ops.batch_norm(xd, gd, bd, *to_device(device, rm.copy(), rv.copy()), training=False)[0]
    dx = ops.batch_norm_backward(dyd, xd, gd, md, isd, training=False)[0]
    for rows in (slice(0, 3), slice(1000, 1003), slice(shape[0] - 3, shape[0])):
        y_s = ops.batch_norm(xd[rows], gd, bd, *to_device(device, rm.copy(), rv.copy()), training=False)[0]
        dx_s = ops.batch_norm_backward(dyd[rows], xd[rows], gd, md, isd, training=False)[0]
        np.testing.assert_array_equal(to_numpy(y[rows]).view(np.uint32), to_numpy(y_s).view(np.uint32))
        np.testing.assert_array_equal(to_numpy(dx[rows]).view(np.uint32), to_numpy(dx_s).view(np.uint32))


# ---------------------------------------------------------------------------------------------
# batch and layer norm into caller's buffers (out=)
# ---------------------------------------------------------------------------------------------

def _norm_pair(kind, xp, shape, dtype, activation):
    """(forward(out=None or tuple), backward(out=...)) for kind on fresh inputs of the device."""
    rng = np.random.default_rng(seed_of(kind, shape, dtype, activation))
    x = xp.asarray(rng.standard_normal(shape).astype(dtype))
    dy = xp.asarray(rng.standard_normal(shape).astype(dtype))
    d = shape[1] if kind == "batch_norm" else shape[-1]
    gamma, beta = (xp.asarray(rng.standard_normal(d).astype(dtype)) for _ in range(2))

    def forward(out=None):
        if kind == "batch_norm":
            return ops.batch_norm(x, gamma, beta, None, None, training=True, activation=activation, out=out)
        return ops.layer_norm(x, gamma, beta, activation=activation, out=out)

    def backward(y, mean, inv_std, out=None):
        kw = {"y": y, "activation": activation, "out": out}
        if kind == "batch_norm":
            return ops.batch_norm_backward(dy, x, gamma, mean, inv_std, training=True, **kw)
        return ops.layer_norm_backward(dy, x, gamma, mean, inv_std, **kw)
    return x, forward, backward


@pytest.mark.parametrize("kind, shape", [("batch_norm", (33, 17)), ("batch_norm", (3, 4, 5, 6)),
                                         ("layer_norm", (33, 17)), ("layer_norm", (2, 3, 7)),
                                         ("layer_norm", (1, 1))])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_norm_out_buffers_receive_the_allocating_results(device, xp, kind, shape, dtype, activation):
    x, forward, backward = _norm_pair(kind, xp, shape, dtype, activation)
    expected = forward()
    buffers = tuple(xp.full_like(e, np.nan) for e in expected)
    got = forward(out=buffers)
    assert all(g is b for g, b in zip(got, buffers))
    for g, e in zip(got, expected):
        assert_equal(g, e)
    grads = backward(*expected)
    grad_buffers = tuple(xp.full_like(g, np.nan) for g in grads)
    got = backward(*expected, out=grad_buffers)
    assert all(g is b for g, b in zip(got, grad_buffers))
    for g, e in zip(got, grads):
        assert_equal(g, e)
    # None entries are allocated; the arrays given are written.
    partial = forward(out=(xp.empty_like(x), None, None))
    for g, e in zip(partial, expected):
        assert_equal(g, e)


@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
def test_norm_out_reference_writes_the_same_buffers(kind):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 5))
    gamma, beta = rng.standard_normal(5), rng.standard_normal(5)
    call = ((lambda **kw: reference.batch_norm(x, gamma, beta, training=True, **kw)) if kind == "batch_norm"
            else (lambda **kw: reference.layer_norm(x, gamma, beta, **kw)))
    expected = call()
    y = np.empty_like(x)
    got = call(out=(y, None, None))
    assert got[0] is y
    for g, e in zip(got, expected):
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
def test_norm_out_bad_buffers_are_clear_errors(device, xp, kind):
    x, forward, backward = _norm_pair(kind, xp, (8, 6), np.float32, None)
    y, mean, inv_std = forward()
    with pytest.raises(TypeError, match=r"out: expected a tuple \(y, mean, inv_std\)"):
        forward(out=xp.empty_like(x))
    with pytest.raises(TypeError, match=r"out: expected a tuple \(dx, dgamma, dbeta\).*length 2"):
        backward(y, mean, inv_std, out=(None, None))
    with pytest.raises(ValueError, match=r"out\[0\] \(y\)"):
        forward(out=(xp.empty((8, 5), np.float32), None, None))
    with pytest.raises(TypeError, match=r"out\[0\] \(y\)"):
        forward(out=(xp.empty_like(x, dtype=np.float64), None, None))
    with pytest.raises(ValueError, match=r"out\[0\] \(y\).*x"):
        forward(out=(x, None, None))  # an output may not overlap an input (not silently in place)
    with pytest.raises(ValueError, match=r"out\[1\] \(mean\).*out\[2\] \(inv_std\)"):
        forward(out=(None, mean, mean))
    with pytest.raises(ValueError, match=r"out\[0\] \(dx\).*x"):
        backward(y, mean, inv_std, out=(x, None, None))
    with pytest.raises(ValueError, match=r"not C-contiguous|contiguous"):
        forward(out=(xp.empty((6, 8), np.float32).T, None, None))


# ---------------------------------------------------------------------------------------------
# batch and layer norm with a fused ReLU (activation="relu")
# ---------------------------------------------------------------------------------------------

def _norm_call(kind, x, gamma, beta, **kw):
    if kind == "batch_norm":
        return ops.batch_norm(x, gamma, beta, None, None, training=True, **kw)
    return ops.layer_norm(x, gamma, beta, **kw)


def _norm_backward(kind, dy, x, gamma, mean, inv_std, **kw):
    if kind == "batch_norm":
        return ops.batch_norm_backward(dy, x, gamma, mean, inv_std, training=True, **kw)
    return ops.layer_norm_backward(dy, x, gamma, mean, inv_std, **kw)


NORM_RELU_SHAPES = [(2, 1), (17, 33), (4, 3, 10), (2, 3, 5, 7), (257, 1025)]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
@pytest.mark.parametrize("shape", NORM_RELU_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_relu_is_relu_of_the_normalized_values(device, kind, shape, dtype):
    """Forward: the same values as the plain op, through relu. Backward: the plain backward of
    dy masked by y > 0. Both exactly, NaN included."""
    rng = np.random.default_rng(seed_of("norm relu", kind, shape))
    x, gamma, beta, _, _ = make_bn(shape, rng, dtype)
    if kind == "layer_norm":
        gamma, beta = (rng.standard_normal(shape[-1]).astype(dtype) for _ in range(2))
    x.reshape(-1)[-1] = np.nan
    xp = array_module(device)
    x, gamma, beta = to_device(device, x, gamma, beta)
    y_plain, mean, inv_std = _norm_call(kind, x, gamma, beta)
    y, mean2, inv_std2 = _norm_call(kind, x, gamma, beta, activation="relu")
    assert_equal(y, xp.maximum(y_plain, dtype(0)))
    assert_equal(mean2, mean)
    assert_equal(inv_std2, inv_std)
    dy = rng.standard_normal(shape).astype(dtype)
    dy.reshape(-1)[0] = np.inf  # an infinite gradient is dropped where y <= 0 (a select)
    dy = to_device(device, dy)
    got = _norm_backward(kind, dy, x, gamma, mean, inv_std, y=y, activation="relu")
    want = _norm_backward(kind, xp.where(y > 0, dy, dtype(0)), x, gamma, mean, inv_std)
    for g, w in zip(got, want):
        assert_equal(g, w)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
@pytest.mark.parametrize("shape", [(31, 40), (7, 1), (33, 17), (256, 1000)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_relu_matches_reference(device, kind, shape, dtype):
    """Forward and backward with the fused ReLU against the reference; x[0, 0] is NaN except in
    the first shape. The backward of both takes the device's forward output y."""
    rng = np.random.default_rng(seed_of("norm relu ref", kind, shape))
    x, gamma, beta, _, _ = make_bn(shape, rng, dtype)
    if shape != (31, 40):
        x[0, 0] = np.nan
    ref = getattr(reference, kind)
    kw = dict(training=True) if kind == "batch_norm" else {}
    y, mean, inv_std = getattr(ops, kind)(*to_device(device, x, gamma, beta), activation="relu", **kw)
    assert_close(y, ref(x, gamma, beta, activation="relu", **kw)[0],
                 ref(*wider(x, gamma, beta), activation="relu", **kw)[0])
    dy = rng.standard_normal(shape).astype(dtype)
    got = getattr(ops, kind + "_backward")(*to_device(device, dy, x, gamma), mean, inv_std, y=y, activation="relu",
                                           **kw)
    args = (dy, x, gamma, to_numpy(mean), to_numpy(inv_std))
    y_host = to_numpy(y)
    backward = getattr(reference, kind + "_backward")
    assert_all_close(got, backward(*args, y=y_host, activation="relu", **kw),
                     backward(*wider(*args), y=wider(y_host)[0], activation="relu", **kw))


@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
def test_fused_relu_gradcheck(device, kind):
    rng = np.random.default_rng(seed_of("norm relu grad", kind))
    x, gamma, beta, _, _ = make_bn((6, 5), rng, np.float64)
    r = rng.standard_normal((6, 5))

    def forward(x, gamma, beta):
        return _norm_call(kind, x, gamma, beta, activation="relu")

    y, mean, inv_std = forward(*to_device(device, x, gamma, beta))
    y_plain = to_numpy(_norm_call(kind, *to_device(device, x, gamma, beta))[0])
    assert np.abs(y_plain).min() > 1e-4, "a value at the kink: pick another seed"
    grads = _norm_backward(kind, *to_device(device, r, x, gamma), mean, inv_std, y=y, activation="relu")
    for analytic, num in zip(grads, gradcheck(device, forward, (x, gamma, beta), (x, gamma, beta), r)):
        np.testing.assert_allclose(to_numpy(analytic), num, rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
def test_fused_relu_bad_arguments(device, kind):
    x = np.ones((4, 3), np.float32)
    stats = (np.zeros(3, np.float32), np.ones(3, np.float32)) if kind == "batch_norm" else (
        np.zeros(4, np.float32), np.ones(4, np.float32))
    kw = dict(training=True) if kind == "batch_norm" else {}
    for impl, move in ((ops, lambda *a: to_device(device, *a)), (reference, lambda *a: a)):
        backward = getattr(impl, kind + "_backward")
        xd, m, s, bad_y = move(x, *stats, np.ones((3, 4), np.float32))
        with pytest.raises(ValueError, match="y: the forward output is required when activation is 'relu'"):
            backward(xd, xd, None, m, s, activation="relu", **kw)
        with pytest.raises(ValueError, match=r"y: expected shape \(4, 3\)"):
            backward(xd, xd, None, m, s, y=bad_y, activation="relu", **kw)
        with pytest.raises(ValueError, match="activation: expected None or 'relu'"):
            getattr(impl, kind)(xd, None, None, activation="gelu", **kw)


# ---------------------------------------------------------------------------------------------
# weight norm
# ---------------------------------------------------------------------------------------------

WN_SHAPES = [(1, 1), (5,), (7, 13), (3, 4, 5), (16, 3, 3, 3), (300, 257)]


def make_wn(shape, rng, dtype, scale=1.0):
    v = (rng.standard_normal(shape) * scale).astype(dtype)
    g = rng.standard_normal(shape[0]).astype(dtype)  # negative entries included
    return v, g


def wn_all(device, name, *args):
    """(got, same, wide) of weight_norm or weight_norm_backward, each as a tuple of outputs."""
    results = (getattr(ops, name)(*to_device(device, *args)), getattr(reference, name)(*args),
               getattr(reference, name)(*wider(*args)))
    return [r if isinstance(r, tuple) else (r,) for r in results]


@pytest.mark.parametrize("shape", WN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm_matches_reference(device, shape, dtype):
    rng = np.random.default_rng(seed_of("wn", shape))
    got, same, wide = wn_all(device, "weight_norm", *make_wn(shape, rng, dtype))
    assert got[0].shape == shape and got[0].dtype == dtype
    assert_all_close(got, same, wide)


@pytest.mark.parametrize("shape", WN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm_backward_matches_reference(device, shape, dtype):
    rng = np.random.default_rng(seed_of("wn_backward", shape))
    v, g = make_wn(shape, rng, dtype)
    dw = rng.standard_normal(shape).astype(dtype)
    got, same, wide = wn_all(device, "weight_norm_backward", dw, v, g)
    assert got[0].shape == shape and got[1].shape == (shape[0],)
    if v.size == shape[0]:
        # Rows of one value: dv is exactly 0 (a row's direction cannot change), so the reduction
        # rule's floor (ulps of the largest |dv|) is 0 too; a rounding residual is within the
        # elementwise tolerance instead.
        assert_close(got[0], wide[0])
        assert_close(got[1], same[1], wide[1])
    else:
        assert_all_close(got, same, wide)


@pytest.mark.parametrize("shape", [(1, 5), (7, 1), (33, 17), (256, 1000)])
def test_layer_norm_and_weight_norm_chains(device, shape):
    """Each forward's outputs feed its backward on the device, against the reference chain."""
    rng = np.random.default_rng(seed_of("ln_wn_chain", shape))
    x, gamma, beta = make_ln(shape, rng, np.float32)
    got, same, wide = ln_forward_all(device, x, gamma, beta)
    assert_all_close(got, same, wide)
    dy = rng.standard_normal(shape).astype(np.float32)
    back = ops.layer_norm_backward(*to_device(device, dy, x, gamma), got[1], got[2])
    args = (dy, x, gamma, to_numpy(got[1]), to_numpy(got[2]))
    assert_all_close(back, reference.layer_norm_backward(*args), reference.layer_norm_backward(*wider(*args)))
    g_row = np.abs(rng.standard_normal(shape[0])).astype(np.float32) + np.float32(0.5)
    assert_all_close(*wn_all(device, "weight_norm", x, g_row))
    assert_all_close(*wn_all(device, "weight_norm_backward", dy, x, g_row))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 13), (4, 3, 5), (6,)])
def test_weight_norm_rows_have_norm_abs_g(device, dtype, shape):
    """Not using the reference: row i of w points along v's row i (times the sign of g_i)
    and has norm |g_i|."""
    rng = np.random.default_rng(seed_of("wn_rows", shape))
    v, g = make_wn(shape, rng, dtype, scale=3.0)
    w = to_numpy(ops.weight_norm(*to_device(device, v, g))).astype(np.float64).reshape(shape[0], -1)
    v64 = v.astype(np.float64).reshape(shape[0], -1)
    assert_close(np.linalg.norm(w, axis=1).astype(dtype), np.abs(g.astype(np.float64)))
    cos = (w * v64).sum(axis=1) / (np.linalg.norm(w, axis=1) * np.linalg.norm(v64, axis=1))
    assert_close(cos.astype(dtype), np.sign(g.astype(np.float64)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, 1e-4])
def test_weight_norm_large_and_small_values(device, dtype, scale):
    rng = np.random.default_rng(seed_of("wn_large", scale))
    v, g = make_wn((64, 300), rng, dtype, scale=scale)
    g = g * np.asarray(scale, dtype)
    assert_all_close(*wn_all(device, "weight_norm", v, g))
    dw = (rng.standard_normal(v.shape) * scale).astype(dtype)
    assert_all_close(*wn_all(device, "weight_norm_backward", dw, v, g))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm_nan_propagates_like_reference(device, dtype):
    rng = np.random.default_rng(16)
    v, g = make_wn((6, 5), rng, dtype)
    v[2, 3] = np.nan
    g[4] = np.nan
    got, same, wide = wn_all(device, "weight_norm", v, g)
    assert_all_close(got, same, wide)
    w = to_numpy(got[0])
    assert np.isnan(w[2]).all() and np.isnan(w[4]).all() and not np.isnan(w[[0, 1, 3, 5]]).any()
    dw = rng.standard_normal(v.shape).astype(dtype)
    dw[0, 1] = np.nan
    assert_all_close(*wn_all(device, "weight_norm_backward", dw, v, g))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,), (2, 0, 4)])
def test_weight_norm_zero_size(device, shape):
    """No rows: empty results. Empty rows: ||v|| = 0, so w is empty and dg = 0 / 0 = NaN, as in
    the reference."""
    rng = np.random.default_rng(seed_of("wn_zero", shape))
    v, g = make_wn(shape, rng, np.float32)
    assert_all_close(*wn_all(device, "weight_norm", v, g))
    assert_all_close(*wn_all(device, "weight_norm_backward", rng.standard_normal(shape).astype(np.float32), v, g))


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (3, 2, 2), (5,)])
def test_weight_norm_gradcheck(device, shape):
    rng = np.random.default_rng(seed_of("wn_grad", shape))
    v, g = make_wn(shape, rng, np.float64)
    r = rng.standard_normal(shape)
    grads = ops.weight_norm_backward(*to_device(device, r, v, g))
    numeric = gradcheck(device, lambda v, g: (ops.weight_norm(v, g),), (v, g), (v, g), r)
    for analytic, num in zip(grads, numeric):
        np.testing.assert_allclose(to_numpy(analytic), num, rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


def test_weight_norm_identical_for_one_and_two_threads(threads):
    rng = np.random.default_rng(17)
    v, g = make_wn((512, 2048), rng, np.float32)
    dw = rng.standard_normal(v.shape).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        assert fusednn.get_num_threads() == n
        results.append((ops.weight_norm(v, g), *ops.weight_norm_backward(dw, v, g)))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------------------------------------
# local response norm
# ---------------------------------------------------------------------------------------------

LRN_SHAPES = [(1, 1, 1, 1), (2, 7, 3, 3), (3, 16, 5, 5), (2, 5, 7), (1, 3, 2, 2, 2)]
LRN_SIZES = [1, 2, 3, 5, 20]  # 20 is more than every C above
# (alpha, beta, k): the defaults, where the window barely matters, and strong ones.
LRN_PARAMS = [(1e-4, 0.75, 1.0), (0.5, 0.6, 2.0), (0.5, 0.75, 2.0), (0.3, 1.0, 0.5), (2.0, 0.5, 0.25)]
LRN_IDS = ["default", "strong", "strong beta 3/4", "beta 1", "beta 1/2"]  # 3/4, 1/2, 1: the CPU's square-root forms


def lrn_all(device, name, args, *params):
    """(got, same, wide) of local_response_norm or its backward, as 1-tuples."""
    return ((getattr(ops, name)(*on_device(device, *args), *params),), (getattr(reference, name)(*args, *params),),
            (getattr(reference, name)(*wider(*args), *params),))


@pytest.mark.parametrize("shape", LRN_SHAPES)
@pytest.mark.parametrize("size", LRN_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", LRN_PARAMS, ids=LRN_IDS)
def test_local_response_norm_matches_reference(device, shape, size, dtype, params):
    rng = np.random.default_rng(seed_of("lrn", shape, size, params))
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    got, same, wide = lrn_all(device, "local_response_norm", (x,), size, *params)
    assert got[0].shape == shape and got[0].dtype == dtype
    assert_all_close(got, same, wide)


@pytest.mark.parametrize("shape", LRN_SHAPES)
@pytest.mark.parametrize("size", LRN_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", LRN_PARAMS, ids=LRN_IDS)
def test_local_response_norm_backward_matches_reference(device, shape, size, dtype, params):
    rng = np.random.default_rng(seed_of("lrn_backward", shape, size, params))
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    assert_all_close(*lrn_all(device, "local_response_norm_backward", (dy, x), size, *params))


def test_local_response_norm_forward_and_backward_with_alpha(device):
    rng = np.random.default_rng(seed_of("lrn_alpha"))
    x = rng.standard_normal((2, 7, 3, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    assert_all_close(*lrn_all(device, "local_response_norm", (x,), 3, 0.1))
    assert_all_close(*lrn_all(device, "local_response_norm_backward", (dy, x), 3, 0.1))


def test_local_response_norm_keyword_arguments_and_defaults(device):
    rng = np.random.default_rng(18)
    x, dy = to_device(device, *(rng.standard_normal((2, 6, 3)).astype(np.float32) for _ in range(2)))
    assert_equal(ops.local_response_norm(x, 3), ops.local_response_norm(x, 3, 1e-4, 0.75, 1.0))
    assert_equal(ops.local_response_norm(x, 3, k=2.0, beta=0.5, alpha=0.1),
                 ops.local_response_norm(x, 3, 0.1, 0.5, 2.0))
    assert_equal(ops.local_response_norm_backward(dy, x, 3, k=2.0, beta=0.5, alpha=0.1),
                 ops.local_response_norm_backward(dy, x, 3, 0.1, 0.5, 2.0))
    # size 1, alpha 0: y = x / k^beta
    assert_close(ops.local_response_norm(x, 1, 0.0, 0.5, 4.0), to_numpy(x).astype(np.float64) / 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, 1e-4])
def test_local_response_norm_large_and_small_values(device, dtype, scale):
    rng = np.random.default_rng(seed_of("lrn_large", scale))
    x = (rng.standard_normal((2, 9, 4, 4)) * scale).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    for size in (3, 5):
        assert_all_close(*lrn_all(device, "local_response_norm", (x,), size))
        assert_all_close(*lrn_all(device, "local_response_norm_backward", (dy, x), size))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [2, 3, 5])
def test_local_response_norm_nan_and_inf_stay_in_their_windows(device, dtype, size):
    """A NaN (or Inf) reaches the channels whose window holds it and no others, as in the
    reference (a running window sum that subtracts would smear it along the channels)."""
    rng = np.random.default_rng(seed_of("lrn_nan", size))
    x = rng.standard_normal((2, 12, 3, 3)).astype(dtype)
    x[0, 2, 1, 1] = np.nan
    x[1, 6, 0, 2] = np.inf
    x[1, 9, 2, 0] = -np.inf
    got, same, wide = lrn_all(device, "local_response_norm", (x,), size, 0.5, 0.6, 2.0)
    assert_all_close(got, same, wide)
    y = to_numpy(got[0])
    assert not np.isnan(y[0, 5:, 1, 1]).any() and not np.isnan(y[1, :, 1, 1]).any()
    x[1, 6, 0, 2], x[1, 9, 2, 0] = 1.5, -0.5  # the backward with NaN only
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[0, 10, 0, 0] = np.nan
    assert_all_close(*lrn_all(device, "local_response_norm_backward", (dy, x), size, 0.5, 0.6, 2.0))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("beta", [-0.5, 0.0, 0.75])
@pytest.mark.parametrize("k", [0.0, 2.0])
def test_local_response_norm_backward_where_the_divisor_is_zero_or_infinite(device, beta, k):
    """Regression (issue 13, item 10): the backward took d^(-beta-1) as d^-beta / d, which is
    inf / inf or 0 / 0 where d is infinite (an infinite x in the window) or 0 (k = 0 and a window
    of zeros), and gave NaN where the reference is finite (for beta < 0, next to an infinite x)."""
    rng = np.random.default_rng(seed_of("lrn_special", beta, k))
    x = rng.choice(np.array([0.0, -0.0, 1.0, -2.0, 0.5], np.float32), (2, 9, 3))
    x[:, 3:6, 0] = 0  # a window of zeros
    x[0, 7, 1], x[1, 1, 2] = np.inf, -np.inf
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for size in (1, 3, 4):
        assert_all_close(*lrn_all(device, "local_response_norm", (x,), size, 0.5, beta, k))
        assert_all_close(*lrn_all(device, "local_response_norm_backward", (dy, x), size, 0.5, beta, k))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("beta", [0.5, 0.75, 1.0, 0.6])
def test_local_response_norm_elements_do_not_depend_on_a_special_neighbour(device, beta):
    # With k = 0 a zero input makes its d = 0 (p and q by pow there): the other elements' results
    # keep their bits, and a tiny k (d ~ 1e-220, beyond float's range) gives 0 for zero inputs.
    rng = np.random.default_rng(seed_of("lrn special", beta))
    x = (rng.standard_normal((1, 6, 16, 16)) * 1e3).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    x2 = x.copy()
    x2[:, :, 0, 0] = 0
    others = np.ones(x.shape, bool)
    others[:, :, 0, 0] = False
    for size in (1, 3):
        a = to_numpy(ops.local_response_norm_backward(*on_device(device, dy, x), size, 1.0, beta, 0.0))
        b = to_numpy(ops.local_response_norm_backward(*on_device(device, dy, x2), size, 1.0, beta, 0.0))
        np.testing.assert_array_equal(a[others].view(np.uint32), b[others].view(np.uint32))
    zeros = to_device(device, np.zeros((1, 3, 1, 1), np.float32))
    np.testing.assert_array_equal(to_numpy(ops.local_response_norm(zeros, 3, 1e-4, beta, 1e-220)), 0)


@pytest.mark.parametrize("shape", [(0, 3, 2), (2, 0, 2), (2, 3, 0), (0, 0, 0)])
def test_local_response_norm_zero_size(device, shape):
    x = np.ones(shape, np.float32)
    assert_all_close(*lrn_all(device, "local_response_norm", (x,), 3))
    assert_all_close(*lrn_all(device, "local_response_norm_backward", (x, x), 3))


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("params", LRN_PARAMS, ids=LRN_IDS)
def test_local_response_norm_gradcheck(device, size, params):
    rng = np.random.default_rng(seed_of("lrn_grad", size, params))
    x = rng.standard_normal((2, 5, 2, 3))
    r = rng.standard_normal(x.shape)
    dx = ops.local_response_norm_backward(*to_device(device, r, x), size, *params)
    numeric = gradcheck(device, lambda x: (ops.local_response_norm(x, size, *params),), (x,), (x,), r)
    np.testing.assert_allclose(to_numpy(dx), numeric[0], rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


def test_local_response_norm_identical_for_one_and_two_threads(threads):
    rng = np.random.default_rng(19)
    x = rng.standard_normal((8, 32, 16, 16)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        assert fusednn.get_num_threads() == n
        results.append([ops.local_response_norm(x, 5), ops.local_response_norm_backward(dy, x, 5),
                        ops.local_response_norm(x, 4, 0.5, 0.6, 2.0),
                        ops.local_response_norm_backward(dy, x, 4, 0.5, 0.6, 2.0)])
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# ---------------------------------------------------------------------------------------------
# signatures and bad input: every case names the argument
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NORM_OPS)
def test_reference_has_the_same_signatures(name):
    assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name))


F32 = np.float32


def _x(*shape, dtype=F32):
    return np.random.default_rng(20).standard_normal(shape).astype(dtype)


def _v(c, dtype=F32):
    return np.linspace(0.5, 1.5, c).astype(dtype)


# Each case takes d, which puts a NumPy array on the device under test. The dtype messages name
# the dtype without its spelling ("int64" on the CPU, "<i8" in the CUDA module).
X = _x(3, 4, 5)  # (N, C, L)
BN_BAD = [
    (lambda d: ops.batch_norm(d(X[0, 0]), None, None, training=True), ValueError,
     r"x: expected an array with ndim >= 2 \(N, C, \.\.\.\), got 1-D"),
    (lambda d: ops.batch_norm(d(X), d(_v(3)), None, training=True), ValueError,
     r"gamma: expected shape \(C,\) = \(4,\), got \(3,\)"),
    (lambda d: ops.batch_norm(d(X), None, d(_v(4)[None]), training=True), ValueError,
     r"beta: expected shape \(C,\) = \(4,\), got \(1, 4\)"),
    (lambda d: ops.batch_norm(d(X), None, None, None, d(_v(4)), training=False), ValueError,
     r"running_mean: required when training=False"),
    (lambda d: ops.batch_norm(d(X), None, None, d(_v(4)), None, training=False), ValueError,
     r"running_var: required when training=False"),
    (lambda d: ops.batch_norm(d(X), None, None, d(_v(4)), d(_v(4)), training=True, momentum=2), ValueError,
     r"momentum: expected a value in \[0, 1\], got 2"),
    (lambda d: ops.batch_norm(d(X), None, None, training=True, momentum=-0.1), ValueError,
     r"momentum: expected a value in \[0, 1\], got"),
    (lambda d: ops.batch_norm(d(X), None, None, training=True, momentum=float("nan")), ValueError,
     r"momentum: expected a value in \[0, 1\], got"),
    (lambda d: ops.batch_norm(d(X), None, None, training=True, eps=0), ValueError, r"eps: expected a value > 0, got 0"),
    (lambda d: ops.batch_norm(d(X), None, None, d(_v(4)), d(_v(4)), training=False, eps=-1e-5), ValueError,
     r"eps: expected a value > 0, got"),
    (lambda d: ops.batch_norm(d(X[:1, :, :1]), None, None, training=True), ValueError,
     r"x: batch norm in training needs more than 1 value per channel, got N \* spatial = 1"),
    (lambda d: ops.batch_norm(d(_x(1, 4)), None, None, d(_v(4)), d(_v(4)), training=True), ValueError,
     r"x: batch norm in training needs more than 1 value per channel, got N \* spatial = 1"),
    (lambda d: ops.batch_norm(d(X.astype(np.int64)), None, None, training=True), TypeError,
     r"x: expected dtype float32 or float64, got"),
    (lambda d: ops.batch_norm(d(X.astype(np.float16)), None, None, training=True), TypeError,
     r"x: expected dtype float32 or float64, got"),
    (lambda d: ops.batch_norm(d(X), d(_v(4, np.float64)), None, training=True), TypeError,
     r"gamma: expected dtype float32 \(the dtype of x\), got float64"),
    (lambda d: ops.batch_norm(X.tolist(), None, None, training=True), TypeError, r"x: expected a numpy.ndarray"),
    (lambda d: ops.batch_norm(d(X), 1.0, None, training=True), TypeError, r"gamma: expected a numpy.ndarray"),
]
BN_BACKWARD_BAD = [
    (lambda d: ops.batch_norm_backward(d(X[:2]), d(X), None, d(_v(4)), d(_v(4))), ValueError,
     r"dy: expected shape \(3, 4, 5\)"),
    (lambda d: ops.batch_norm_backward(d(X), d(X), d(_v(5)), d(_v(4)), d(_v(4))), ValueError,
     r"gamma: expected shape \(C,\) = \(4,\), got \(5,\)"),
    (lambda d: ops.batch_norm_backward(d(X), d(X), None, d(_v(3)), d(_v(4))), ValueError,
     r"mean: expected shape \(C,\) = \(4,\), got \(3,\)"),
    (lambda d: ops.batch_norm_backward(d(X), d(X), None, d(_v(4)), d(_v(4)[None])), ValueError,
     r"inv_std: expected shape \(C,\) = \(4,\), got \(1, 4\)"),
    (lambda d: ops.batch_norm_backward(d(X), d(X[0, 0]), None, d(_v(4)), d(_v(4))), ValueError,
     r"x: expected an array with ndim >= 2"),
    (lambda d: ops.batch_norm_backward(d(X.astype(np.float64)), d(X), None, d(_v(4)), d(_v(4))), TypeError,
     r"dy: expected dtype float32 \(the dtype of x\), got float64"),
    (lambda d: ops.batch_norm_backward(d(X), d(X), None, d(_v(4, np.float64)), d(_v(4))), TypeError,
     r"mean: expected dtype float32 \(the dtype of x\), got float64"),
]
Y = _x(3, 5)  # (rows, D)
LN_BAD = [
    (lambda d: ops.layer_norm(d(np.array(1.0, F32)), None, None), ValueError, r"x: expected an array with ndim >= 1"),
    (lambda d: ops.layer_norm(d(Y), d(_v(4)), None), ValueError, r"gamma: expected shape \(D,\) = \(5,\), got \(4,\)"),
    (lambda d: ops.layer_norm(d(Y), None, d(_v(3))), ValueError, r"beta: expected shape \(D,\) = \(5,\), got \(3,\)"),
    (lambda d: ops.layer_norm(d(Y), None, None, eps=0.0), ValueError, r"eps: expected a value > 0, got 0"),
    (lambda d: ops.layer_norm(d(Y.astype(np.int32)), None, None), TypeError,
     r"x: expected dtype float32 or float64, got"),
    (lambda d: ops.layer_norm(d(Y), None, d(_v(5, np.float64))), TypeError,
     r"beta: expected dtype float32 \(the dtype of x\), got float64"),
    (lambda d: ops.layer_norm_backward(d(Y[:2]), d(Y), None, d(_v(3)), d(_v(3))), ValueError,
     r"dy: expected shape \(3, 5\)"),
    (lambda d: ops.layer_norm_backward(d(Y), d(Y), None, d(_v(5)), d(_v(3))), ValueError,
     r"mean: expected shape \(3,\).*, got \(5,\)"),
    (lambda d: ops.layer_norm_backward(d(Y), d(Y), None, d(_v(3)), d(_v(3)[None])), ValueError,
     r"inv_std: expected shape \(3,\).*, got \(1, 3\)"),
    (lambda d: ops.layer_norm_backward(d(Y), d(Y), d(_v(4)), d(_v(3)), d(_v(3))), ValueError,
     r"gamma: expected shape \(D,\) = \(5,\)"),
    (lambda d: ops.layer_norm_backward(d(Y), d(Y), None, d(_v(3)), d(_v(3, np.float64))), TypeError,
     r"inv_std: expected dtype float32 \(the dtype of x\), got float64"),
]
V = _x(7, 13)
WN_BAD = [
    (lambda d: ops.weight_norm(d(np.array(1.0, F32)), d(_v(1))), ValueError, r"v: expected an array with ndim >= 1"),
    (lambda d: ops.weight_norm(d(V), d(_v(6))), ValueError, r"g: expected shape \(out,\) = \(7,\), got \(6,\)"),
    (lambda d: ops.weight_norm(d(V), d(_v(7)[:, None])), ValueError,
     r"g: expected shape \(out,\) = \(7,\), got \(7, 1\)"),
    (lambda d: ops.weight_norm(d(V), d(_v(7, np.float64))), TypeError, r"g: expected dtype float32 \(the dtype of v\)"),
    (lambda d: ops.weight_norm(d(V.astype(np.complex64)), d(_v(7))), TypeError,
     r"v: expected dtype float32 or float64"),
    (lambda d: ops.weight_norm(d(V), None), TypeError, r"g: expected a numpy.ndarray"),
    (lambda d: ops.weight_norm_backward(d(V[:3]), d(V), d(_v(7))), ValueError, r"dw: expected shape \(7, 13\)"),
    (lambda d: ops.weight_norm_backward(d(V), d(V), d(_v(8))), ValueError,
     r"g: expected shape \(out,\) = \(7,\), got \(8,\)"),
    (lambda d: ops.weight_norm_backward(d(V.astype(np.float64)), d(V), d(_v(7))), TypeError,
     r"dw: expected dtype float32 \(the dtype of v\)"),
]
Z = _x(2, 6, 3, 3)
LRN_BAD = [
    (lambda d: ops.local_response_norm(d(Z[0, 0]), 3), ValueError,
     r"x: expected an array with ndim >= 3 \(N, C, \.\.\.\), got 2-D"),
    (lambda d: ops.local_response_norm(d(Z), 0), ValueError, r"size: expected an integer >= 1, got 0"),
    (lambda d: ops.local_response_norm(d(Z), -3), ValueError, r"size: expected an integer >= 1, got -3"),
    (lambda d: ops.local_response_norm(d(Z), 2.5), TypeError, r"size: expected an integer"),
    (lambda d: ops.local_response_norm(d(Z.astype(np.int64)), 3), TypeError, r"x: expected dtype float32 or float64"),
    (lambda d: ops.local_response_norm_backward(d(Z[:1]), d(Z), 3), ValueError, r"dy: expected shape \(2, 6, 3, 3\)"),
    (lambda d: ops.local_response_norm_backward(d(Z), d(Z), 0), ValueError, r"size: expected an integer >= 1, got 0"),
    (lambda d: ops.local_response_norm_backward(d(Z.astype(np.float64)), d(Z), 3), TypeError,
     r"dy: expected dtype float32 \(the dtype of x\)"),
    (lambda d: ops.local_response_norm_backward(d(Z[0, 0]), d(Z[0, 0]), 3), ValueError,
     r"x: expected an array with ndim >= 3"),
]


@pytest.mark.parametrize("call, exc, match", BN_BAD + BN_BACKWARD_BAD + LN_BAD + WN_BAD + LRN_BAD)
def test_bad_arguments(device, call, exc, match):
    with pytest.raises(exc, match=match):
        call(lambda a: to_device(device, a))


def _read_only(a):
    a.flags.writeable = False
    return a


def _unaligned_copy(a):
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype)
    out[...] = a
    assert not out.flags.aligned
    return out


# (what, mutate(rm, rv, xp) -> (rm, rv), exception, message).
RUNNING_BAD = [
    ("wrong dtype", lambda rm, rv, xp: (rm.astype(np.float64), rv), TypeError, r"running_mean: expected dtype float32"),
    ("wrong dtype", lambda rm, rv, xp: (rm, rv.astype(np.float16)), TypeError, r"running_var: expected dtype float32"),
    ("wrong shape", lambda rm, rv, xp: (rm[:3], rv), ValueError, r"running_mean: expected shape .*\(4,\), got \(3,\)"),
    ("wrong shape", lambda rm, rv, xp: (rm, rv[None]), ValueError,
     r"running_var: expected shape .*\(4,\), got \(1, 4\)"),
    ("strided", lambda rm, rv, xp: (xp.repeat(rm, 2)[::2], rv), ValueError, r"running_mean: expected a C-contiguous"),
    ("strided", lambda rm, rv, xp: (rm, xp.repeat(rv, 2)[1::2]), ValueError, r"running_var: expected a C-contiguous"),
    ("read-only", lambda rm, rv, xp: (_read_only(rm), rv), ValueError, r"running_mean: expected a writable array"),
    ("read-only", lambda rm, rv, xp: (rm, _read_only(rv)), ValueError, r"running_var: expected a writable array"),
    ("unaligned", lambda rm, rv, xp: (rm, _unaligned_copy(rv)), ValueError,
     r"running_var: expected a C-contiguous, aligned"),
    ("list", lambda rm, rv, xp: (rm.tolist(), rv), TypeError, r"running_mean: expected a numpy.ndarray"),
]
NUMPY_ONLY = {"read-only", "unaligned"}


def _check_running_buffers_refused(device, training, mutate, exc, match):
    rm, rv = mutate(*to_device(device, _v(4), _v(4)), array_module(device))
    before = [np.array(to_numpy(b), copy=True) for b in (rm, rv)]
    with pytest.raises(exc, match=match):
        ops.batch_norm(to_device(device, X), None, None, rm, rv, training=training)
    for b, orig in zip((rm, rv), before):  # nothing was written before the error
        np.testing.assert_array_equal(np.asarray(to_numpy(b)), orig)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("what, mutate, exc, match", [r for r in RUNNING_BAD if r[0] not in NUMPY_ONLY],
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(RUNNING_BAD) if r[0] not in NUMPY_ONLY])
def test_bad_running_buffers_are_refused_not_copied(device, training, what, mutate, exc, match):
    _check_running_buffers_refused(device, training, mutate, exc, match)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("what, mutate, exc, match", [r for r in RUNNING_BAD if r[0] in NUMPY_ONLY],
                         ids=[f"{r[0]}-{i}" for i, r in enumerate(RUNNING_BAD) if r[0] in NUMPY_ONLY])
def test_bad_numpy_running_buffers_are_refused_not_copied(training, what, mutate, exc, match):
    """Read-only and unaligned buffers: NumPy notions (CuPy arrays are neither)."""
    _check_running_buffers_refused("cpu", training, mutate, exc, match)
