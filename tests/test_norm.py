"""fusednn.ops norm family (batch, layer, weight and local response norm) against the NumPy
reference, independent checks, gradchecks, thread counts and bad input."""

import inspect

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, assert_reduction_close, seed_of, wider

import fusednn
from fusednn import ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]
# Against the wide reference (float64 for float32 inputs, long double for float64 inputs):
# |error| <= RTOL * (|ref| + scale), scale the size of the terms the value is computed from
# (by default the largest |ref|), so a result that cancels to near 0 is not held to a
# tolerance relative to itself.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}
NORM_OPS = ["batch_norm", "batch_norm_backward", "layer_norm", "layer_norm_backward", "weight_norm",
            "weight_norm_backward", "local_response_norm", "local_response_norm_backward"]


def assert_close(actual, ref_wide, scale=None, dtype=None):
    """actual (of dtype, when given) matches the wide reference within RTOL; NaNs sit where
    the reference has them and infinities are equal."""
    assert isinstance(actual, np.ndarray), type(actual)
    if dtype is not None:
        assert actual.dtype == dtype, (actual.dtype, dtype)
    rtol = RTOL[actual.dtype]
    a = np.asarray(actual, dtype=np.longdouble)
    r = np.asarray(ref_wide, dtype=np.longdouble)
    assert a.shape == r.shape, (a.shape, r.shape)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(r))
    np.testing.assert_array_equal(a[np.isinf(r)], r[np.isinf(r)])
    finite = np.isfinite(r)
    if not finite.any():
        return
    if scale is None:
        scale = np.abs(r[finite]).max()
    scale = np.broadcast_to(np.asarray(scale, dtype=np.longdouble), r.shape)[finite]
    err = np.abs(a[finite] - r[finite])
    bound = rtol * (np.abs(r[finite]) + scale)
    bad = ~(err <= bound)
    assert not bad.any(), (f"{bad.sum()} of {bad.size} values off; worst error {err[bad].max():.3g} "
                           f"(bound there {bound[bad][np.argmax(err[bad])]:.3g})")


# ---------------------------------------------------------------------------------------------
# batch norm
# ---------------------------------------------------------------------------------------------

# (1, 1) and (1, 4, 1, 1) have one value per channel: evaluation only.
BN_SHAPES = [(1, 1), (2, 1), (9, 1), (1, 4, 1, 1), (17, 33), (4, 3, 10), (2, 3, 5, 7), (8, 16, 9, 9),
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


@pytest.mark.parametrize("shape", BN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_reference(shape, dtype, affine, training):
    rng = np.random.default_rng(seed_of("bn", shape, affine, training))
    x, gamma, beta, rm, rv = make_bn(shape, rng, dtype, affine)
    if training and bn_values_per_channel(shape) == 1:
        with pytest.raises(ValueError, match=r"x: batch norm in training needs more than 1 value per channel, "
                                             r"got N \* spatial = 1"):
            ops.batch_norm(x, gamma, beta, rm, rv, training=True)
        return
    rm_wide, rv_wide = wider(rm, rv)
    y_ref, mean_ref, inv_std_ref = reference.batch_norm(*wider(x, gamma, beta), rm_wide, rv_wide,
                                                        training=training, momentum=0.3)
    rm_before, rv_before = rm.copy(), rv.copy()
    y, mean, inv_std = ops.batch_norm(x, gamma, beta, rm, rv, training=training, momentum=0.3)
    c = shape[1]
    assert y.shape == shape and mean.shape == (c,) and inv_std.shape == (c,)
    assert_close(y, y_ref, dtype=dtype)
    assert_close(mean, mean_ref, scale=np.abs(x).max(), dtype=dtype)
    assert_close(inv_std, inv_std_ref, dtype=dtype)
    if training:
        assert_close(rm, rm_wide, scale=np.abs(x).max() + np.abs(rm_before).max())
        assert_close(rv, rv_wide)
    else:
        np.testing.assert_array_equal(rm, rm_before)
        np.testing.assert_array_equal(rv, rv_before)
        np.testing.assert_array_equal(mean, rm)


BN_BACKWARD_CASES = [(s, t) for s in BN_SHAPES for t in (True, False) if not (t and bn_values_per_channel(s) == 1)]


@pytest.mark.parametrize("shape, training", BN_BACKWARD_CASES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_backward_matches_reference(shape, training, dtype, affine):
    rng = np.random.default_rng(seed_of("bn_backward", shape, affine, training))
    x, gamma, beta, rm, rv = make_bn(shape, rng, dtype, affine)
    _, mean, inv_std = reference.batch_norm(x, gamma, beta, rm, rv, training=training)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = ops.batch_norm_backward(dy, x, gamma, mean, inv_std, training=training)
    dy_w, x_w, gamma_w, mean_w, inv_std_w = wider(dy, x, gamma, mean, inv_std)
    dx_ref, dgamma_ref, dbeta_ref = reference.batch_norm_backward(dy_w, x_w, gamma_w, mean_w, inv_std_w,
                                                                  training=training)
    # The sizes of the terms each result is a sum of.
    axes, bshape = bn_axes(x)
    m = bn_values_per_channel(shape)
    xhat = (x_w - mean_w.reshape(bshape)) * inv_std_w.reshape(bshape)
    g = np.abs(inv_std_w if gamma is None else gamma_w * inv_std_w).reshape(bshape)
    dgamma_terms = np.abs(dy_w * xhat).sum(axis=axes)
    dbeta_terms = np.abs(dy_w).sum(axis=axes)
    dx_terms = g * (np.abs(dy_w) + (dbeta_terms.reshape(bshape) + np.abs(xhat) * dgamma_terms.reshape(bshape)) / m)
    assert_close(dx, dx_ref, scale=dx_terms.max(), dtype=dtype)
    assert_close(dgamma, dgamma_ref, scale=dgamma_terms, dtype=dtype)
    assert_close(dbeta, dbeta_ref, scale=dbeta_terms, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.7, 1.0])
def test_batch_norm_running_stats_are_updated_in_place(dtype, momentum):
    rng = np.random.default_rng(seed_of("bn_running", momentum))
    x, gamma, beta, _, _ = make_bn((6, 3, 4), rng, dtype)
    # The buffers are views into one array: only an in-place update shows up in `store`.
    store = np.stack([rng.standard_normal(3), rng.random(3) + 0.5]).astype(dtype)
    rm, rv = store[0], store[1]
    before = store.copy()
    rm_ref, rv_ref = wider(before[0], before[1])
    for step in range(2):
        xs = x * (step + 1)
        ops.batch_norm(xs, gamma, beta, rm, rv, training=True, momentum=momentum)
        reference.batch_norm(*wider(xs, gamma, beta), rm_ref, rv_ref, training=True, momentum=momentum)
    assert rm.base is store and rv.base is store
    assert_close(store[0], rm_ref, scale=np.abs(x).max() * 2 + np.abs(before[0]).max(), dtype=dtype)
    assert_close(store[1], rv_ref, dtype=dtype)
    if momentum == 0.0:
        np.testing.assert_array_equal(store, before)
    if momentum == 1.0:  # the last batch's mean and unbiased variance
        xw = wider(x * 2)[0]
        assert_close(store[0], xw.mean(axis=(0, 2)), scale=np.abs(xw).max())
        assert_close(store[1], xw.var(axis=(0, 2), ddof=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_without_running_stats(dtype):
    rng = np.random.default_rng(10)
    x, gamma, beta, rm, rv = make_bn((7, 5, 3), rng, dtype)
    with_buffers = ops.batch_norm(x, gamma, beta, rm, rv, training=True)
    without = ops.batch_norm(x, gamma, beta, training=True)
    for a, b in zip(with_buffers, without):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("given", ["running_mean", "running_var"])
def test_batch_norm_training_with_one_running_buffer_updates_that_one(given):
    rng = np.random.default_rng(seed_of("bn_one_buffer", given))
    x, gamma, beta, rm, rv = make_bn((7, 5, 3), rng, np.float64)
    buf, ref_buf = (rm, rm.copy()) if given == "running_mean" else (rv, rv.copy())
    args = (buf, None) if given == "running_mean" else (None, buf)
    ref_args = (ref_buf, None) if given == "running_mean" else (None, ref_buf)
    got = ops.batch_norm(x, gamma, beta, *args, training=True)
    ref = reference.batch_norm(x, gamma, beta, *ref_args, training=True)
    for g, r in zip(got + (buf,), ref + (ref_buf,)):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_eval_uses_running_stats(dtype):
    rng = np.random.default_rng(11)
    x, gamma, beta, rm, rv = make_bn((7, 5, 3), rng, dtype)
    before = rm.copy(), rv.copy()
    y, mean, inv_std = ops.batch_norm(x, gamma, beta, rm, rv, training=False, momentum=0.5, eps=1e-3)
    np.testing.assert_array_equal(rm, before[0])
    np.testing.assert_array_equal(rv, before[1])
    xw, gw, bw, rmw, rvw = wider(x, gamma, beta, rm, rv)
    assert_close(inv_std, 1 / np.sqrt(rvw + 1e-3), dtype=dtype)
    expect = (xw - rmw[:, None]) / np.sqrt(rvw[:, None] + 1e-3) * gw[:, None] + bw[:, None]
    assert_close(y, expect, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 5), (8, 3, 4, 5)])
def test_batch_norm_training_output_is_standardized(dtype, shape):
    """Not using the reference: with gamma = 1 and beta = 0 each channel of y has mean 0 and
    (biased) variance var / (var + eps)."""
    rng = np.random.default_rng(seed_of("bn_standard", shape))
    x = (rng.standard_normal(shape) * 3 + 7).astype(dtype)
    axes = (0,) + tuple(range(2, x.ndim))
    c = shape[1]
    y, mean, inv_std = ops.batch_norm(x, np.ones(c, dtype), np.zeros(c, dtype), training=True)
    y_none, _, _ = ops.batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(y_none, y, rtol=1e-6, atol=1e-6)
    y64 = y.astype(np.float64)
    np.testing.assert_allclose(y64.mean(axis=axes), 0, atol=1e-5)
    var = x.astype(np.float64).var(axis=axes)
    np.testing.assert_allclose(y64.var(axis=axes), var / (var + 1e-5), rtol=1e-4)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=axes), rtol=1e-5)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(var + 1e-5), rtol=1e-4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset, scale", [(1e4, 1.0), (0.0, 1e4), (-1e4, 10.0)])
def test_batch_norm_large_values(dtype, offset, scale):
    """A mean of 1e4 next to a spread of 1 must not cost the variance its accuracy
    (E[x^2] - E[x]^2 would)."""
    rng = np.random.default_rng(seed_of("bn_large", offset, scale))
    x, gamma, beta, rm, rv = make_bn((300, 6, 5), rng, dtype, scale=scale, offset=offset)
    gamma = gamma * np.asarray(scale, dtype)
    rm_same, rv_same = rm.copy(), rv.copy()
    rm_wide, rv_wide = wider(rm, rv)
    got = ops.batch_norm(x, gamma, beta, rm, rv, training=True)
    same = reference.batch_norm(x, gamma, beta, rm_same, rv_same, training=True)
    wide = reference.batch_norm(*wider(x, gamma, beta), rm_wide, rv_wide, training=True)
    for g, s, w in zip(got + (rm, rv), same + (rm_same, rv_same), wide + (rm_wide, rv_wide)):
        assert_reduction_close(g, s, w)
    assert_close(got[2], wide[2], scale=0)  # inv_std to RTOL of itself
    dy = (rng.standard_normal(x.shape) * scale).astype(dtype)
    for training in (True, False):
        args = (dy, x, gamma, got[1], got[2])
        for g, s, w in zip(ops.batch_norm_backward(*args, training=training),
                           reference.batch_norm_backward(*args, training=training),
                           reference.batch_norm_backward(*wider(*args), training=training)):
            assert_reduction_close(g, s, w)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_nan_propagates_like_reference(dtype, training):
    rng = np.random.default_rng(12)
    x, gamma, beta, rm, rv = make_bn((6, 5, 3), rng, dtype)
    x[2, 1, 0] = np.nan
    gamma[3] = np.nan
    rv[4] = np.nan
    rm_ref, rv_ref = rm.copy(), rv.copy()
    got = ops.batch_norm(x, gamma, beta, rm, rv, training=training)
    ref = reference.batch_norm(x, gamma, beta, rm_ref, rv_ref, training=training)
    for g, r in zip(got + (rm, rv), ref + (rm_ref, rv_ref)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)  # equal_nan
    assert np.isnan(got[0][:, 1]).all() == training and np.isnan(got[0][:, 3]).all()
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[0, 2, 2] = np.nan
    args = (dy, x, gamma, ref[1], ref[2])
    for g, r in zip(ops.batch_norm_backward(*args, training=training),
                    reference.batch_norm_backward(*args, training=training)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(4, 3), (3, 2, 2, 3), (5, 1)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_gradcheck_training(shape, affine):
    rng = np.random.default_rng(seed_of("bn_grad", shape, affine))
    x, gamma, beta, _, _ = make_bn(shape, rng, np.float64, affine)
    r = rng.standard_normal(shape)

    def loss():  # no running buffers: they would change on every call
        return float((ops.batch_norm(x, gamma, beta, None, None, training=True)[0] * r).sum())

    _, mean, inv_std = ops.batch_norm(x, gamma, beta, training=True)
    dx, dgamma, dbeta = ops.batch_norm_backward(r, x, gamma, mean, inv_std, training=True)
    pairs = [(dx, x)] + ([(dgamma, gamma), (dbeta, beta)] if affine else [])
    for analytic, wrt in pairs:
        np.testing.assert_allclose(analytic, numerical_gradient(loss, wrt), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)
    if not affine:  # the gradients of gamma = 1 and beta = 0
        axes, bshape = bn_axes(x)
        xhat = (x - mean.reshape(bshape)) * inv_std.reshape(bshape)
        np.testing.assert_allclose(dgamma, (r * xhat).sum(axis=axes), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dbeta, r.sum(axis=axes), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 3), (4, 3), (2, 2, 3)])
def test_batch_norm_gradcheck_eval(shape):
    rng = np.random.default_rng(seed_of("bn_grad_eval", shape))
    x, gamma, beta, rm, rv = make_bn(shape, rng, np.float64)
    r = rng.standard_normal(shape)

    def loss():
        return float((ops.batch_norm(x, gamma, beta, rm, rv, training=False)[0] * r).sum())

    _, mean, inv_std = ops.batch_norm(x, gamma, beta, rm, rv, training=False)
    dx, dgamma, dbeta = ops.batch_norm_backward(r, x, gamma, mean, inv_std, training=False)
    for analytic, wrt in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, wrt), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


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


@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_reference(shape, dtype, affine):
    rng = np.random.default_rng(seed_of("ln", shape, affine))
    x, gamma, beta = make_ln(shape, rng, dtype, affine)
    y, mean, inv_std = ops.layer_norm(x, gamma, beta, eps=1e-5)
    y_ref, mean_ref, inv_std_ref = reference.layer_norm(*wider(x, gamma, beta), eps=1e-5)
    assert y.shape == shape and mean.shape == shape[:-1] and inv_std.shape == shape[:-1]
    assert_close(y, y_ref, dtype=dtype)
    assert_close(mean, mean_ref, scale=np.abs(x).max(), dtype=dtype)
    assert_close(inv_std, inv_std_ref, dtype=dtype)


@pytest.mark.parametrize("shape", LN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_backward_matches_reference(shape, dtype, affine):
    rng = np.random.default_rng(seed_of("ln_backward", shape, affine))
    x, gamma, _ = make_ln(shape, rng, dtype, affine)
    _, mean, inv_std = reference.layer_norm(x, gamma, None)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dgamma, dbeta = ops.layer_norm_backward(dy, x, gamma, mean, inv_std)
    dy_w, x_w, gamma_w, mean_w, inv_std_w = wider(dy, x, gamma, mean, inv_std)
    dx_ref, dgamma_ref, dbeta_ref = reference.layer_norm_backward(dy_w, x_w, gamma_w, mean_w, inv_std_w)
    xhat = (x_w - mean_w[..., None]) * inv_std_w[..., None]
    g = np.abs(dy_w if gamma is None else dy_w * gamma_w)
    other = tuple(range(x.ndim - 1))
    dx_terms = inv_std_w[..., None] * (g + g.mean(axis=-1, keepdims=True)
                                       + np.abs(xhat) * (g * np.abs(xhat)).mean(axis=-1, keepdims=True))
    assert_close(dx, dx_ref, scale=dx_terms.max(), dtype=dtype)
    assert_close(dgamma, dgamma_ref, scale=np.abs(dy_w * xhat).sum(axis=other), dtype=dtype)
    assert_close(dbeta, dbeta_ref, scale=np.abs(dy_w).sum(axis=other), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_rows_are_standardized(dtype):
    """Not using the reference: each row of y has mean 0 and variance var / (var + eps)."""
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((40, 3, 64)) * 5 - 3).astype(dtype)
    y, mean, inv_std = ops.layer_norm(x, None, None)
    y64, x64 = y.astype(np.float64), x.astype(np.float64)
    np.testing.assert_allclose(y64.mean(axis=-1), 0, atol=1e-5)
    var = x64.var(axis=-1)
    np.testing.assert_allclose(y64.var(axis=-1), var / (var + 1e-5), rtol=1e-4)
    np.testing.assert_allclose(mean, x64.mean(axis=-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(var + 1e-5), rtol=1e-4)
    gamma, beta = np.full(64, 2.0, dtype), np.full(64, -1.0, dtype)
    np.testing.assert_allclose(ops.layer_norm(x, gamma, beta)[0], 2 * y - 1, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset, scale", [(1e4, 1.0), (0.0, 1e4), (-1e4, 10.0)])
def test_layer_norm_large_values(dtype, offset, scale):
    rng = np.random.default_rng(seed_of("ln_large", offset, scale))
    x, gamma, beta = make_ln((50, 300), rng, dtype, scale=scale, offset=offset)
    got = ops.layer_norm(x, gamma, beta)
    same = reference.layer_norm(x, gamma, beta)
    wide = reference.layer_norm(*wider(x, gamma, beta))
    for g, s, w in zip(got, same, wide):
        assert_reduction_close(g, s, w)
    assert_close(got[2], wide[2], scale=0)  # inv_std to RTOL of itself
    dy = (rng.standard_normal(x.shape) * scale).astype(dtype)
    args = (dy, x, gamma, got[1], got[2])
    for g, s, w in zip(ops.layer_norm_backward(*args), reference.layer_norm_backward(*args),
                       reference.layer_norm_backward(*wider(*args))):
        assert_reduction_close(g, s, w)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_nan_propagates_like_reference(dtype):
    rng = np.random.default_rng(14)
    x, gamma, beta = make_ln((6, 9), rng, dtype)
    x[1, 4] = np.nan
    gamma[7] = np.nan
    got = ops.layer_norm(x, gamma, beta)
    ref = reference.layer_norm(x, gamma, beta)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
    assert np.isnan(got[0][1]).all() and np.isnan(got[0][:, 7]).all()
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[3, 0] = np.nan
    args = (dy, x, gamma, ref[1], ref[2])
    for g, r in zip(ops.layer_norm_backward(*args), reference.layer_norm_backward(*args)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r))
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(3, 5), (2, 3, 4), (4, 1), (6,)])
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_gradcheck(shape, affine):
    rng = np.random.default_rng(seed_of("ln_grad", shape, affine))
    x, gamma, beta = make_ln(shape, rng, np.float64, affine)
    r = rng.standard_normal(shape)

    def loss():
        return float((ops.layer_norm(x, gamma, beta)[0] * r).sum())

    _, mean, inv_std = ops.layer_norm(x, gamma, beta)
    dx, dgamma, dbeta = ops.layer_norm_backward(r, x, gamma, mean, inv_std)
    pairs = [(dx, x)] + ([(dgamma, gamma), (dbeta, beta)] if affine else [])
    for analytic, wrt in pairs:
        np.testing.assert_allclose(analytic, numerical_gradient(loss, wrt), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


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
def test_fused_relu_is_relu_of_the_normalized_values(kind, shape, dtype):
    """Forward: the same values as the plain op, through relu. Backward: the plain backward of
    dy masked by y > 0. Both exactly, NaN included."""
    rng = np.random.default_rng(seed_of("norm relu", kind, shape))
    x, gamma, beta, _, _ = make_bn(shape, rng, dtype)
    if kind == "layer_norm":
        gamma, beta = (rng.standard_normal(shape[-1]).astype(dtype) for _ in range(2))
    x.reshape(-1)[-1] = np.nan
    y_plain, mean, inv_std = _norm_call(kind, x, gamma, beta)
    y, mean2, inv_std2 = _norm_call(kind, x, gamma, beta, activation="relu")
    np.testing.assert_array_equal(y, np.maximum(y_plain, dtype(0)))
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(inv_std2, inv_std)
    dy = rng.standard_normal(shape).astype(dtype)
    dy.reshape(-1)[0] = np.inf  # an infinite gradient is dropped where y <= 0 (a select)
    got = _norm_backward(kind, dy, x, gamma, mean, inv_std, y=y, activation="relu")
    want = _norm_backward(kind, np.where(y > 0, dy, dtype(0)), x, gamma, mean, inv_std)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_relu_matches_reference(kind, dtype):
    rng = np.random.default_rng(seed_of("norm relu ref", kind))
    shape = (31, 40)
    x, gamma, beta, _, _ = make_bn(shape, rng, dtype)
    ref = getattr(reference, kind)
    kw = dict(training=True) if kind == "batch_norm" else {}
    y, mean, inv_std = getattr(ops, kind)(x, gamma, beta, activation="relu", **kw)
    y_ref, _, _ = ref(*wider(x, gamma, beta), activation="relu", **kw)
    assert_close(y, y_ref, dtype=dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    got = getattr(ops, kind + "_backward")(dy, x, gamma, mean, inv_std, y=y, activation="relu", **kw)
    want = getattr(reference, kind + "_backward")(*wider(dy, x, gamma, mean, inv_std), y=y.astype(wider(y)[0].dtype),
                                                  activation="relu", **kw)
    for g, w in zip(got, want):
        assert_close(g, w, dtype=dtype)


@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
def test_fused_relu_gradcheck(kind):
    rng = np.random.default_rng(seed_of("norm relu grad", kind))
    x, gamma, beta, _, _ = make_bn((6, 5), rng, np.float64)
    r = rng.standard_normal((6, 5))

    def loss():
        return float((_norm_call(kind, x, gamma, beta, activation="relu")[0] * r).sum())

    y, mean, inv_std = _norm_call(kind, x, gamma, beta, activation="relu")
    y_plain = _norm_call(kind, x, gamma, beta)[0]
    assert np.abs(y_plain).min() > 1e-4, "a value at the kink: pick another seed"
    dx, dgamma, dbeta = _norm_backward(kind, r, x, gamma, mean, inv_std, y=y, activation="relu")
    for analytic, wrt in ((dx, x), (dgamma, gamma), (dbeta, beta)):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, wrt), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


@pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("kind", ["batch_norm", "layer_norm"])
def test_fused_relu_bad_arguments(impl, kind):
    x = np.ones((4, 3), np.float32)
    stats = (np.zeros(3, np.float32), np.ones(3, np.float32)) if kind == "batch_norm" else (
        np.zeros(4, np.float32), np.ones(4, np.float32))
    kw = dict(training=True) if kind == "batch_norm" else {}
    backward = getattr(impl, kind + "_backward")
    with pytest.raises(ValueError, match="y: the forward output is required when activation is 'relu'"):
        backward(x, x, None, *stats, activation="relu", **kw)
    with pytest.raises(ValueError, match=r"y: expected shape \(4, 3\)"):
        backward(x, x, None, *stats, y=np.ones((3, 4), np.float32), activation="relu", **kw)
    with pytest.raises(ValueError, match="activation: expected None or 'relu'"):
        getattr(impl, kind)(x, None, None, activation="gelu", **kw)


# ---------------------------------------------------------------------------------------------
# weight norm
# ---------------------------------------------------------------------------------------------

WN_SHAPES = [(1, 1), (5,), (7, 13), (3, 4, 5), (16, 3, 3, 3), (300, 257)]


def make_wn(shape, rng, dtype, scale=1.0):
    v = (rng.standard_normal(shape) * scale).astype(dtype)
    g = rng.standard_normal(shape[0]).astype(dtype)  # negative entries included
    return v, g


@pytest.mark.parametrize("shape", WN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm_matches_reference(shape, dtype):
    rng = np.random.default_rng(seed_of("wn", shape))
    v, g = make_wn(shape, rng, dtype)
    w = ops.weight_norm(v, g)
    assert_close(w, reference.weight_norm(*wider(v, g)), dtype=dtype)


@pytest.mark.parametrize("shape", WN_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm_backward_matches_reference(shape, dtype):
    rng = np.random.default_rng(seed_of("wn_backward", shape))
    v, g = make_wn(shape, rng, dtype)
    dw = rng.standard_normal(shape).astype(dtype)
    dv, dg = ops.weight_norm_backward(dw, v, g)
    dw_w, v_w, g_w = wider(dw, v, g)
    dv_ref, dg_ref = reference.weight_norm_backward(dw_w, v_w, g_w)
    axes = tuple(range(1, v.ndim))
    norm = np.sqrt((v_w ** 2).sum(axis=axes, keepdims=True))
    s_terms = np.abs(dw_w * v_w).sum(axis=axes, keepdims=True)
    gb = np.abs(g_w).reshape(norm.shape)
    assert_close(dv, dv_ref, scale=(gb / norm * (np.abs(dw_w) + np.abs(v_w) * s_terms / norm ** 2)).max(), dtype=dtype)
    assert_close(dg, dg_ref, scale=(s_terms / norm).reshape(g.shape), dtype=dtype)
    assert dv.shape == shape and dg.shape == (shape[0],)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 13), (4, 3, 5), (6,)])
def test_weight_norm_rows_have_norm_abs_g(dtype, shape):
    """Not using the reference: row i of w points along v's row i (times the sign of g_i)
    and has norm |g_i|."""
    rng = np.random.default_rng(seed_of("wn_rows", shape))
    v, g = make_wn(shape, rng, dtype, scale=3.0)
    w = ops.weight_norm(v, g).astype(np.float64).reshape(shape[0], -1)
    v64 = v.astype(np.float64).reshape(shape[0], -1)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), np.abs(g), rtol=1e-5)
    cos = (w * v64).sum(axis=1) / (np.linalg.norm(w, axis=1) * np.linalg.norm(v64, axis=1))
    np.testing.assert_allclose(cos, np.sign(g), rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, 1e-4])
def test_weight_norm_large_and_small_values(dtype, scale):
    rng = np.random.default_rng(seed_of("wn_large", scale))
    v, g = make_wn((64, 300), rng, dtype, scale=scale)
    g = g * np.asarray(scale, dtype)
    assert_reduction_close(ops.weight_norm(v, g), reference.weight_norm(v, g), reference.weight_norm(*wider(v, g)))
    dw = (rng.standard_normal(v.shape) * scale).astype(dtype)
    for got, s, w in zip(ops.weight_norm_backward(dw, v, g), reference.weight_norm_backward(dw, v, g),
                         reference.weight_norm_backward(*wider(dw, v, g))):
        assert_reduction_close(got, s, w)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_norm_nan_propagates_like_reference(dtype):
    rng = np.random.default_rng(16)
    v, g = make_wn((6, 5), rng, dtype)
    v[2, 3] = np.nan
    g[4] = np.nan
    w, ref = ops.weight_norm(v, g), reference.weight_norm(v, g)
    np.testing.assert_array_equal(np.isnan(w), np.isnan(ref))
    np.testing.assert_allclose(w, ref, rtol=1e-4, atol=1e-4)
    assert np.isnan(w[2]).all() and np.isnan(w[4]).all() and not np.isnan(w[[0, 1, 3, 5]]).any()
    dw = rng.standard_normal(v.shape).astype(dtype)
    dw[0, 1] = np.nan
    for got, r in zip(ops.weight_norm_backward(dw, v, g), reference.weight_norm_backward(dw, v, g)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(r))
        np.testing.assert_allclose(got, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 1), (4, 3), (3, 2, 2), (5,)])
def test_weight_norm_gradcheck(shape):
    rng = np.random.default_rng(seed_of("wn_grad", shape))
    v, g = make_wn(shape, rng, np.float64)
    r = rng.standard_normal(shape)

    def loss():
        return float((ops.weight_norm(v, g) * r).sum())

    dv, dg = ops.weight_norm_backward(r, v, g)
    for analytic, wrt in ((dv, v), (dg, g)):
        np.testing.assert_allclose(analytic, numerical_gradient(loss, wrt), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


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
LRN_PARAMS = [(1e-4, 0.75, 1.0), (0.5, 0.6, 2.0)]


def lrn_dx_scale(dy, x, size, alpha, beta, k):
    """A bound on the size of the two terms dx is the difference of (d >= k)."""
    return np.abs(dy).max() * (k ** -beta + 2 * alpha * beta * np.abs(x).max() ** 2 * k ** (-beta - 1))


@pytest.mark.parametrize("shape", LRN_SHAPES)
@pytest.mark.parametrize("size", LRN_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", LRN_PARAMS, ids=["default", "strong"])
def test_local_response_norm_matches_reference(shape, size, dtype, params):
    rng = np.random.default_rng(seed_of("lrn", shape, size, params))
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    y = ops.local_response_norm(x, size, *params)
    assert_close(y, reference.local_response_norm(*wider(x), size, *params), dtype=dtype)


@pytest.mark.parametrize("shape", LRN_SHAPES)
@pytest.mark.parametrize("size", LRN_SIZES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("params", LRN_PARAMS, ids=["default", "strong"])
def test_local_response_norm_backward_matches_reference(shape, size, dtype, params):
    rng = np.random.default_rng(seed_of("lrn_backward", shape, size, params))
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dx = ops.local_response_norm_backward(dy, x, size, *params)
    dx_ref = reference.local_response_norm_backward(*wider(dy, x), size, *params)
    assert_close(dx, dx_ref, scale=lrn_dx_scale(dy, x, size, *params), dtype=dtype)


def test_local_response_norm_keyword_arguments_and_defaults():
    rng = np.random.default_rng(18)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.local_response_norm(x, 3), ops.local_response_norm(x, 3, 1e-4, 0.75, 1.0))
    np.testing.assert_array_equal(ops.local_response_norm(x, 3, k=2.0, beta=0.5, alpha=0.1),
                                  ops.local_response_norm(x, 3, 0.1, 0.5, 2.0))
    np.testing.assert_array_equal(ops.local_response_norm_backward(dy, x, 3, k=2.0, beta=0.5, alpha=0.1),
                                  ops.local_response_norm_backward(dy, x, 3, 0.1, 0.5, 2.0))
    # size 1, alpha 0: y = x / k^beta
    np.testing.assert_allclose(ops.local_response_norm(x, 1, 0.0, 0.5, 4.0), x / 2, rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale", [1e4, 1e-4])
def test_local_response_norm_large_and_small_values(dtype, scale):
    rng = np.random.default_rng(seed_of("lrn_large", scale))
    x = (rng.standard_normal((2, 9, 4, 4)) * scale).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    for size in (3, 5):
        assert_reduction_close(ops.local_response_norm(x, size), reference.local_response_norm(x, size),
                               reference.local_response_norm(*wider(x), size))
        assert_reduction_close(ops.local_response_norm_backward(dy, x, size),
                               reference.local_response_norm_backward(dy, x, size),
                               reference.local_response_norm_backward(*wider(dy, x), size))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [2, 3, 5])
def test_local_response_norm_nan_and_inf_stay_in_their_windows(dtype, size):
    """A NaN (or Inf) reaches the channels whose window holds it and no others, as in the
    reference (a running window sum that subtracts would smear it along the channels)."""
    rng = np.random.default_rng(seed_of("lrn_nan", size))
    x = rng.standard_normal((2, 12, 3, 3)).astype(dtype)
    x[0, 2, 1, 1] = np.nan
    x[1, 6, 0, 2] = np.inf
    x[1, 9, 2, 0] = -np.inf
    y, ref = ops.local_response_norm(x, size, 0.5, 0.6, 2.0), reference.local_response_norm(x, size, 0.5, 0.6, 2.0)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    assert not np.isnan(y[0, 5:, 1, 1]).any() and not np.isnan(y[1, :, 1, 1]).any()
    x[1, 6, 0, 2], x[1, 9, 2, 0] = 1.5, -0.5  # the backward with NaN only
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[0, 10, 0, 0] = np.nan
    dx = ops.local_response_norm_backward(dy, x, size, 0.5, 0.6, 2.0)
    dx_ref = reference.local_response_norm_backward(dy, x, size, 0.5, 0.6, 2.0)
    np.testing.assert_array_equal(np.isnan(dx), np.isnan(dx_ref))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("params", LRN_PARAMS, ids=["default", "strong"])
def test_local_response_norm_gradcheck(size, params):
    rng = np.random.default_rng(seed_of("lrn_grad", size, params))
    x = rng.standard_normal((2, 5, 2, 3))
    r = rng.standard_normal(x.shape)

    def loss():
        return float((ops.local_response_norm(x, size, *params) * r).sum())

    dx = ops.local_response_norm_backward(r, x, size, *params)
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


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


def _read_only(a):
    a.flags.writeable = False
    return a


F32 = np.float32


def _x(*shape, dtype=F32):
    return np.random.default_rng(20).standard_normal(shape).astype(dtype)


def _v(c, dtype=F32):
    return np.linspace(0.5, 1.5, c).astype(dtype)


X = _x(3, 4, 5)  # (N, C, L)
BN_BAD = [
    (lambda: ops.batch_norm(X[0, 0], None, None, training=True), ValueError,
     r"x: expected an array with ndim >= 2 \(N, C, \.\.\.\), got 1-D"),
    (lambda: ops.batch_norm(X, _v(3), None, training=True), ValueError, r"gamma: expected shape \(C,\) = \(4,\), got \(3,\)"),
    (lambda: ops.batch_norm(X, None, _v(4)[None], training=True), ValueError,
     r"beta: expected shape \(C,\) = \(4,\), got \(1, 4\)"),
    (lambda: ops.batch_norm(X, None, None, None, _v(4), training=False), ValueError,
     r"running_mean: required when training=False"),
    (lambda: ops.batch_norm(X, None, None, _v(4), None, training=False), ValueError,
     r"running_var: required when training=False"),
    (lambda: ops.batch_norm(X, None, None, _v(4), _v(4), training=True, momentum=2), ValueError,
     r"momentum: expected a value in \[0, 1\], got 2"),
    (lambda: ops.batch_norm(X, None, None, training=True, momentum=-0.1), ValueError,
     r"momentum: expected a value in \[0, 1\], got"),
    (lambda: ops.batch_norm(X, None, None, training=True, momentum=float("nan")), ValueError,
     r"momentum: expected a value in \[0, 1\], got"),
    (lambda: ops.batch_norm(X, None, None, training=True, eps=0), ValueError, r"eps: expected a value > 0, got 0"),
    (lambda: ops.batch_norm(X, None, None, _v(4), _v(4), training=False, eps=-1e-5), ValueError,
     r"eps: expected a value > 0, got"),
    (lambda: ops.batch_norm(X[:1, :, :1], None, None, training=True), ValueError,
     r"x: batch norm in training needs more than 1 value per channel, got N \* spatial = 1"),
    (lambda: ops.batch_norm(_x(1, 4), None, None, _v(4), _v(4), training=True), ValueError,
     r"x: batch norm in training needs more than 1 value per channel, got N \* spatial = 1"),
    (lambda: ops.batch_norm(X.astype(np.int64), None, None, training=True), TypeError,
     r"x: expected dtype float32 or float64, got int64"),
    (lambda: ops.batch_norm(X.astype(np.float16), None, None, training=True), TypeError,
     r"x: expected dtype float32 or float64, got float16"),
    (lambda: ops.batch_norm(X, _v(4, np.float64), None, training=True), TypeError,
     r"gamma: expected dtype float32 \(the dtype of x\), got float64"),
    (lambda: ops.batch_norm(X.tolist(), None, None, training=True), TypeError, r"x: expected a numpy.ndarray"),
    (lambda: ops.batch_norm(X, 1.0, None, training=True), TypeError, r"gamma: expected a numpy.ndarray"),
]
BN_BACKWARD_BAD = [
    (lambda: ops.batch_norm_backward(X[:2], X, None, _v(4), _v(4)), ValueError, r"dy: expected shape \(3, 4, 5\)"),
    (lambda: ops.batch_norm_backward(X, X, _v(5), _v(4), _v(4)), ValueError,
     r"gamma: expected shape \(C,\) = \(4,\), got \(5,\)"),
    (lambda: ops.batch_norm_backward(X, X, None, _v(3), _v(4)), ValueError,
     r"mean: expected shape \(C,\) = \(4,\), got \(3,\)"),
    (lambda: ops.batch_norm_backward(X, X, None, _v(4), _v(4)[None]), ValueError,
     r"inv_std: expected shape \(C,\) = \(4,\), got \(1, 4\)"),
    (lambda: ops.batch_norm_backward(X, X[0, 0], None, _v(4), _v(4)), ValueError, r"x: expected an array with ndim >= 2"),
    (lambda: ops.batch_norm_backward(X.astype(np.float64), X, None, _v(4), _v(4)), TypeError,
     r"dy: expected dtype float32 \(the dtype of x\), got float64"),
    (lambda: ops.batch_norm_backward(X, X, None, _v(4, np.float64), _v(4)), TypeError,
     r"mean: expected dtype float32 \(the dtype of x\), got float64"),
]
Y = _x(3, 5)  # (rows, D)
LN_BAD = [
    (lambda: ops.layer_norm(np.array(1.0, F32), None, None), ValueError, r"x: expected an array with ndim >= 1"),
    (lambda: ops.layer_norm(Y, _v(4), None), ValueError, r"gamma: expected shape \(D,\) = \(5,\), got \(4,\)"),
    (lambda: ops.layer_norm(Y, None, _v(3)), ValueError, r"beta: expected shape \(D,\) = \(5,\), got \(3,\)"),
    (lambda: ops.layer_norm(Y, None, None, eps=0.0), ValueError, r"eps: expected a value > 0, got 0"),
    (lambda: ops.layer_norm(Y.astype(np.int32), None, None), TypeError, r"x: expected dtype float32 or float64, got int32"),
    (lambda: ops.layer_norm(Y, None, _v(5, np.float64)), TypeError,
     r"beta: expected dtype float32 \(the dtype of x\), got float64"),
    (lambda: ops.layer_norm_backward(Y[:2], Y, None, _v(3), _v(3)), ValueError, r"dy: expected shape \(3, 5\)"),
    (lambda: ops.layer_norm_backward(Y, Y, None, _v(5), _v(3)), ValueError, r"mean: expected shape \(3,\).*, got \(5,\)"),
    (lambda: ops.layer_norm_backward(Y, Y, None, _v(3), _v(3)[None]), ValueError,
     r"inv_std: expected shape \(3,\).*, got \(1, 3\)"),
    (lambda: ops.layer_norm_backward(Y, Y, _v(4), _v(3), _v(3)), ValueError, r"gamma: expected shape \(D,\) = \(5,\)"),
    (lambda: ops.layer_norm_backward(Y, Y, None, _v(3), _v(3, np.float64)), TypeError,
     r"inv_std: expected dtype float32 \(the dtype of x\), got float64"),
]
V = _x(7, 13)
WN_BAD = [
    (lambda: ops.weight_norm(np.array(1.0, F32), _v(1)), ValueError, r"v: expected an array with ndim >= 1"),
    (lambda: ops.weight_norm(V, _v(6)), ValueError, r"g: expected shape \(out,\) = \(7,\), got \(6,\)"),
    (lambda: ops.weight_norm(V, _v(7)[:, None]), ValueError, r"g: expected shape \(out,\) = \(7,\), got \(7, 1\)"),
    (lambda: ops.weight_norm(V, _v(7, np.float64)), TypeError, r"g: expected dtype float32 \(the dtype of v\)"),
    (lambda: ops.weight_norm(V.astype(np.complex64), _v(7)), TypeError, r"v: expected dtype float32 or float64"),
    (lambda: ops.weight_norm(V, None), TypeError, r"g: expected a numpy.ndarray"),
    (lambda: ops.weight_norm_backward(V[:3], V, _v(7)), ValueError, r"dw: expected shape \(7, 13\)"),
    (lambda: ops.weight_norm_backward(V, V, _v(8)), ValueError, r"g: expected shape \(out,\) = \(7,\), got \(8,\)"),
    (lambda: ops.weight_norm_backward(V.astype(np.float64), V, _v(7)), TypeError,
     r"dw: expected dtype float32 \(the dtype of v\)"),
]
Z = _x(2, 6, 3, 3)
LRN_BAD = [
    (lambda: ops.local_response_norm(Z[0, 0], 3), ValueError, r"x: expected an array with ndim >= 3 \(N, C, \.\.\.\), got 2-D"),
    (lambda: ops.local_response_norm(Z, 0), ValueError, r"size: expected an integer >= 1, got 0"),
    (lambda: ops.local_response_norm(Z, -3), ValueError, r"size: expected an integer >= 1, got -3"),
    (lambda: ops.local_response_norm(Z, 2.5), TypeError, r"size: expected an integer"),
    (lambda: ops.local_response_norm(Z.astype(np.int64), 3), TypeError, r"x: expected dtype float32 or float64"),
    (lambda: ops.local_response_norm_backward(Z[:1], Z, 3), ValueError, r"dy: expected shape \(2, 6, 3, 3\)"),
    (lambda: ops.local_response_norm_backward(Z, Z, 0), ValueError, r"size: expected an integer >= 1, got 0"),
    (lambda: ops.local_response_norm_backward(Z.astype(np.float64), Z, 3), TypeError,
     r"dy: expected dtype float32 \(the dtype of x\)"),
    (lambda: ops.local_response_norm_backward(Z[0, 0], Z[0, 0], 3), ValueError, r"x: expected an array with ndim >= 3"),
]


@pytest.mark.parametrize("call, exc, match", BN_BAD + BN_BACKWARD_BAD + LN_BAD + WN_BAD + LRN_BAD)
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def _buffers():
    return _v(4), _v(4)


RUNNING_BAD = [
    ("wrong dtype", lambda rm, rv: (rm.astype(np.float64), rv), TypeError, r"running_mean: expected dtype float32"),
    ("wrong dtype", lambda rm, rv: (rm, rv.astype(np.float16)), TypeError, r"running_var: expected dtype float32"),
    ("wrong shape", lambda rm, rv: (rm[:3], rv), ValueError, r"running_mean: expected shape .*\(4,\), got \(3,\)"),
    ("wrong shape", lambda rm, rv: (rm, rv[None]), ValueError, r"running_var: expected shape .*\(4,\), got \(1, 4\)"),
    ("strided", lambda rm, rv: (np.repeat(rm, 2)[::2], rv), ValueError, r"running_mean: expected a C-contiguous"),
    ("strided", lambda rm, rv: (rm, np.repeat(rv, 2)[1::2]), ValueError, r"running_var: expected a C-contiguous"),
    ("read-only", lambda rm, rv: (_read_only(rm), rv), ValueError, r"running_mean: expected a writable array"),
    ("read-only", lambda rm, rv: (rm, _read_only(rv)), ValueError, r"running_var: expected a writable array"),
    ("unaligned", lambda rm, rv: (rm, _unaligned_copy(rv)), ValueError, r"running_var: expected a C-contiguous, aligned"),
    ("list", lambda rm, rv: (rm.tolist(), rv), TypeError, r"running_mean: expected a numpy.ndarray"),
]


def _unaligned_copy(a):
    raw = np.zeros(a.nbytes + 1, np.uint8)
    out = raw[1:].view(a.dtype)
    out[...] = a
    assert not out.flags.aligned
    return out


@pytest.mark.parametrize("what, mutate, exc, match", RUNNING_BAD, ids=[f"{r[0]}-{i}" for i, r in enumerate(RUNNING_BAD)])
def test_bad_running_buffers_are_refused_not_copied(what, mutate, exc, match):
    rm, rv = mutate(*_buffers())
    before = [np.array(b, copy=True) for b in (rm, rv)]
    with pytest.raises(exc, match=match):
        ops.batch_norm(X, None, None, rm, rv, training=True)
    for b, orig in zip((rm, rv), before):  # nothing was written before the error
        np.testing.assert_array_equal(np.asarray(b), orig)


@pytest.mark.parametrize("what, mutate, exc, match", RUNNING_BAD, ids=[f"{r[0]}-{i}" for i, r in enumerate(RUNNING_BAD)])
def test_bad_running_buffers_are_refused_in_evaluation_too(what, mutate, exc, match):
    rm, rv = mutate(*_buffers())
    with pytest.raises(exc, match=match):
        ops.batch_norm(X, None, None, rm, rv, training=False)
