"""fusednn.ops softmax / log_softmax / softmax cross-entropy against the NumPy reference,
gradchecks, independent hand-computed values, non-finite input, threads and bad input."""

import inspect
import itertools

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, seed_of, wider

import fusednn
from fusednn import ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]
# Error allowed against the wide reference (float64 for float32, long double for float64):
# the ops reduce over K (and N for the scalar losses) in their own order, so a few hundred
# ulps relative, plus an absolute floor relative to the largest entry for values near 0.
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}
ATOL_OF_SCALE = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-14}

# Softmax shapes: the last axis is the one reduced; any ndim >= 1.
SOFTMAX_SHAPES = [(1,), (7,), (1, 1), (1, 9), (6, 1), (17, 33), (3, 1000), (2, 3, 5), (257, 1001)]
# (N, K): 1x1, one row, K = 1, odd sizes, K off the SIMD widths, large.
XENT_SHAPES = [(1, 1), (1, 7), (9, 1), (17, 33), (64, 10), (3, 1000)]
LARGE_XENT_SHAPES = [(257, 1001)]
REDUCTIONS = ["mean", "sum", "none"]
# (label_smoothing, smoothing, weighted, with_ignored_rows)
OPTIONS = list(itertools.product([0.0, 0.1], ["others", "all"], [False, True], [False, True]))
LARGE_OPTIONS = [(0.0, "others", False, False), (0.1, "others", True, True), (0.1, "all", True, True)]
XENT_FUNCS = ["softmax_cross_entropy", "softmax_cross_entropy_with_grad"]
ALL_FUNCS = ["softmax", "log_softmax", "softmax_backward", "log_softmax_backward", *XENT_FUNCS]


def assert_close(actual, ref_wide, dtype, scale=0.0):
    """actual (of dtype) within RTOL / ATOL_OF_SCALE of the wide reference; non-finite
    entries equal in position and value. The absolute tolerance is relative to the largest
    finite reference entry, or to `scale` (the problem's natural magnitude) when larger, so an
    all-zero reference still allows rounding noise."""
    dtype = np.dtype(dtype)
    assert np.asarray(actual).dtype == dtype
    if np.ndim(actual) == 0:
        assert isinstance(actual, dtype.type), f"expected a NumPy scalar of {dtype}, got {type(actual)}"
    actual = np.asarray(actual, np.longdouble)
    ref = np.asarray(ref_wide, np.longdouble)
    assert actual.shape == ref.shape
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(actual[~finite], ref[~finite])
    if finite.any():
        scale = max(np.abs(ref[finite]).max(), scale)
        np.testing.assert_allclose(actual[finite], ref[finite], rtol=RTOL[dtype], atol=ATOL_OF_SCALE[dtype] * scale)


def assert_same_nonfinite(actual, ref):
    """NaN at the same positions, the same infinities."""
    actual, ref = np.asarray(actual), np.asarray(ref)
    assert actual.shape == ref.shape and actual.dtype == ref.dtype
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(ref))
    np.testing.assert_array_equal(actual[np.isinf(ref)], ref[np.isinf(ref)])
    np.testing.assert_array_equal(np.isinf(actual), np.isinf(ref))


def make_xent(shape, rng, dtype, *, weighted=False, ignored=False, scale=2.0, ignore_index=-100):
    n, k = shape
    logits = (rng.standard_normal((n, k)) * scale).astype(dtype)
    labels = rng.integers(0, k, n)
    if ignored and n > 1:  # row 1 and about a quarter of the others, never row 0
        labels[1:][rng.random(n - 1) < 0.25] = ignore_index
        labels[1] = ignore_index
    weight = (rng.random(k) + 0.1).astype(dtype) if weighted else None
    return logits, labels, weight


def xent_kwargs(eps, smoothing, weight, reduction):
    return dict(label_smoothing=eps, smoothing=smoothing, weight=weight, reduction=reduction)


def valid_options(shape, options):
    # smoothing="others" spreads eps over the K - 1 other classes: K = 1 allows only eps = 0.
    return [(shape, *o) for o in options if not (shape[1] == 1 and o[1] == "others" and o[0] > 0)]


# ---- against the reference ----

@pytest.mark.parametrize("shape", SOFTMAX_SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_backward_match_reference(shape, dtype):
    rng = np.random.default_rng(seed_of("softmax", shape))
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    (x_w, dy_w) = wider(x, dy)
    for name, back in (("softmax", "softmax_backward"), ("log_softmax", "log_softmax_backward")):
        y = getattr(ops, name)(x)
        assert y.shape == shape
        assert_close(y, getattr(reference, name)(x_w), dtype)
        y_ref = getattr(reference, name)(x)  # the backward of the same y
        dx = getattr(ops, back)(dy, y_ref)
        assert dx.shape == shape
        assert_close(dx, getattr(reference, back)(*wider(dy, y_ref)), dtype)
    # a row sums to 1
    p = ops.softmax(x)
    np.testing.assert_allclose(p.sum(axis=-1), 1, rtol=RTOL[np.dtype(dtype)] / 10)


def _check_xent_against_reference(shape, dtype, eps, smoothing, weighted, ignored):
    rng = np.random.default_rng(seed_of("xent", shape, eps, smoothing, weighted, ignored))
    logits, labels, weight = make_xent(shape, rng, dtype, weighted=weighted, ignored=ignored)
    logits_w, weight_w = wider(logits, weight)
    w = np.ones(shape[1]) if weight is None else weight.astype(np.float64)
    kept = labels != -100
    for reduction in REDUCTIONS:
        # |dlogits| <= c * 2 max(w): the scale of the gradient, and of the loss's rounding
        scale = w.max() / (w[labels[kept]].sum() if reduction == "mean" and kept.any() else 1.0)
        kw = xent_kwargs(eps, smoothing, weight, reduction)
        kw_w = xent_kwargs(eps, smoothing, weight_w, reduction)
        loss, dlogits = ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
        ref_loss, ref_dlogits = reference.softmax_cross_entropy_with_grad(logits_w, labels, **kw_w)
        assert np.shape(loss) == ((shape[0],) if reduction == "none" else ())
        assert dlogits.shape == shape
        assert_close(loss, ref_loss, dtype, scale)
        assert_close(dlogits, ref_dlogits, dtype, scale)
        np.testing.assert_array_equal(ops.softmax_cross_entropy(logits, labels, **kw), loss)


@pytest.mark.parametrize("shape, eps, smoothing, weighted, ignored",
                         [c for s in XENT_SHAPES for c in valid_options(s, OPTIONS)]
                         + [c for s in LARGE_XENT_SHAPES for c in valid_options(s, LARGE_OPTIONS)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_matches_reference(shape, dtype, eps, smoothing, weighted, ignored):
    _check_xent_against_reference(shape, dtype, eps, smoothing, weighted, ignored)


@pytest.mark.parametrize("eps", [0.5, 1.0])
@pytest.mark.parametrize("smoothing", ["others", "all"])
def test_xent_large_smoothing_matches_reference(eps, smoothing):
    _check_xent_against_reference((13, 6), np.float64, eps, smoothing, True, True)


@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint64])
def test_any_integer_label_dtype(label_dtype):
    rng = np.random.default_rng(10)
    logits, labels, weight = make_xent((11, 5), rng, np.float32, weighted=True)
    ref = ops.softmax_cross_entropy_with_grad(logits, labels, label_smoothing=0.1, weight=weight)
    got = ops.softmax_cross_entropy_with_grad(logits, labels.astype(label_dtype), label_smoothing=0.1, weight=weight)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


def test_ignore_index_inside_the_class_range():
    rng = np.random.default_rng(11)
    logits, labels, _ = make_xent((20, 4), rng, np.float64)
    labels[:3] = 2
    for reduction in REDUCTIONS:
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, ignore_index=2, label_smoothing=0.1,
                                                       reduction=reduction)
        ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(*wider(logits), labels, ignore_index=2,
                                                                     label_smoothing=0.1, reduction=reduction)
        assert_close(loss, ref_loss, np.float64)
        assert_close(dl, ref_dl, np.float64)
        np.testing.assert_array_equal(dl[labels == 2], 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_give_finite_results(dtype):
    rng = np.random.default_rng(12)
    for eps, smoothing, weighted in itertools.product([0.0, 0.1], ["others", "all"], [False, True]):
        logits, labels, weight = make_xent((33, 17), rng, dtype, weighted=weighted, ignored=True, scale=1e4)
        logits[0, :] = 1e4  # ties at the maximum
        logits[2, :] = -1e4
        for reduction in REDUCTIONS:
            kw = xent_kwargs(eps, smoothing, weight, reduction)
            loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
            assert np.isfinite(loss).all() and np.isfinite(dl).all()
            ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(
                *wider(logits), labels, **xent_kwargs(eps, smoothing, *wider(weight), reduction))
            assert_close(loss, ref_loss, dtype)
            assert_close(dl, ref_dl, dtype)
    x = (rng.standard_normal((5, 40)) * 1e4).astype(dtype)
    for name in ("softmax", "log_softmax"):
        y = getattr(ops, name)(x)
        assert np.isfinite(y).all()
        assert_close(y, getattr(reference, name)(*wider(x)), dtype)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate_like_the_reference(dtype):
    rng = np.random.default_rng(13)
    logits, labels, weight = make_xent((9, 6), rng, dtype)
    labels[:] = [0, 1, 2, 3, 4, 5, 0, -100, 1]
    logits[0, 3] = np.nan  # NaN: the row is NaN
    logits[1, 2] = np.inf  # +inf: NaN (inf - inf)
    logits[2, 0] = -np.inf  # -inf away from the label: finite without smoothing, inf loss with it
    logits[3, 3] = -np.inf  # -inf at the label: inf loss
    logits[4, :] = -np.inf  # a row of -inf: NaN
    logits[5, :] = np.inf  # a row of +inf: NaN
    logits[7, 1] = np.nan  # ignored row: loss 0, gradient 0
    for eps, smoothing, w, reduction in itertools.product([0.0, 0.1], ["others", "all"], [None, weight], REDUCTIONS):
        kw = xent_kwargs(eps, smoothing, w, reduction)
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
        ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(logits, labels, **kw)
        assert_same_nonfinite(loss, ref_loss)
        assert_same_nonfinite(dl, ref_dl)
        np.testing.assert_array_equal(dl[7], 0)
        if reduction == "none":
            assert loss[7] == 0 and np.isfinite(loss[6]) and np.isfinite(loss[8])
            assert np.isnan(loss[[0, 1, 4, 5]]).all() and loss[3] == np.inf
            assert (loss[2] == np.inf) if eps > 0 else np.isfinite(loss[2])
            assert np.isfinite(dl[2]).all() and np.isfinite(dl[3]).all()
    dy = rng.standard_normal(logits.shape).astype(dtype)
    dy[6, 2] = np.inf
    dy[8, 0] = np.nan
    for name, back in (("softmax", "softmax_backward"), ("log_softmax", "log_softmax_backward")):
        y = getattr(ops, name)(logits)
        ref_y = getattr(reference, name)(logits)
        assert_same_nonfinite(y, ref_y)
        np.testing.assert_array_equal(y[np.isfinite(ref_y)] == 0, ref_y[np.isfinite(ref_y)] == 0)
        assert_same_nonfinite(getattr(ops, back)(dy, ref_y), getattr(reference, back)(dy, ref_y))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_all_rows_ignored(dtype, weighted):
    rng = np.random.default_rng(14)
    logits, _, weight = make_xent((5, 4), rng, dtype, weighted=weighted)
    logits[0, 0] = np.nan  # ignored: makes no difference
    labels = np.full(5, -100)
    for eps in (0.0, 0.1):
        kw = dict(label_smoothing=eps, weight=weight)
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
        assert isinstance(loss, dtype) and np.isnan(loss)
        np.testing.assert_array_equal(dl, np.zeros((5, 4), dtype))
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, reduction="sum", **kw)
        assert isinstance(loss, dtype) and loss == 0
        np.testing.assert_array_equal(dl, 0)
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, reduction="none", **kw)
        assert loss.dtype == dtype
        np.testing.assert_array_equal(loss, np.zeros(5, dtype))
        np.testing.assert_array_equal(dl, 0)


def test_zero_weight_mean_is_nan():
    """The mean's divisor sum(w[y]) is 0: NaN loss and NaN gradient on the rows that count
    (as PyTorch), 0 on ignored rows."""
    logits = np.random.default_rng(15).standard_normal((3, 3))
    labels = np.array([0, -100, 0])
    weight = np.array([0.0, 1.0, 2.0])
    for eps in (0.0, 0.1):
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, weight=weight, label_smoothing=eps,
                                                       smoothing="all")
        assert np.isnan(loss)
        assert np.isnan(dl[[0, 2]]).all()
        np.testing.assert_array_equal(dl[1], 0)
        ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(logits, labels, weight=weight, label_smoothing=eps,
                                                                     smoothing="all")
        assert_same_nonfinite(dl, ref_dl)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_rows(dtype):
    logits = np.zeros((0, 4), dtype)
    labels = np.zeros(0, np.int64)
    loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels)
    assert isinstance(loss, dtype) and np.isnan(loss) and dl.shape == (0, 4)
    assert ops.softmax_cross_entropy(logits, labels, reduction="sum") == 0
    assert ops.softmax_cross_entropy(logits, labels, reduction="none").shape == (0,)
    assert ops.softmax(logits).shape == (0, 4)


# ---- independent of the reference ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 10, 1000])
def test_uniform_logits_give_log_k(dtype, k):
    n = 6
    logits = np.full((n, k), 3.5, dtype)
    labels = np.arange(n) % k
    tol = RTOL[np.dtype(dtype)]
    for eps, smoothing in itertools.product([0.0, 0.1, 1.0], ["others", "all"]):
        if k == 1 and smoothing == "others" and eps > 0:
            continue
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, label_smoothing=eps, smoothing=smoothing)
        np.testing.assert_allclose(loss, np.log(k), rtol=tol, atol=tol)
        q = np.full((n, k), eps / k if smoothing == "all" else eps / max(k - 1, 1))
        q[np.arange(n), labels] = 1 - eps + (eps / k if smoothing == "all" else 0)
        np.testing.assert_allclose(dl, (1 / k - q) / n, rtol=tol, atol=tol / n)
    np.testing.assert_allclose(ops.softmax(logits), np.full((n, k), 1 / k), rtol=tol)
    np.testing.assert_allclose(ops.log_softmax(logits), np.full((n, k), -np.log(k)), rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_classes_by_hand(dtype):
    # p = softmax([0, ln 3]) = [1/4, 3/4]
    logits = np.array([[0.0, np.log(3.0)]], dtype)
    labels = np.array([0])
    tol = RTOL[np.dtype(dtype)]
    np.testing.assert_allclose(ops.softmax(logits), [[0.25, 0.75]], rtol=tol)
    np.testing.assert_allclose(ops.log_softmax(logits), [[np.log(0.25), np.log(0.75)]], rtol=tol)
    loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels)
    np.testing.assert_allclose(loss, np.log(4.0), rtol=tol)
    np.testing.assert_allclose(dl, [[-0.75, 0.75]], rtol=tol)
    eps = 0.2
    # others: q = [0.8, 0.2]; all: q = [0.9, 0.1]
    for smoothing, q0 in (("others", 0.8), ("all", 0.9)):
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, label_smoothing=eps, smoothing=smoothing)
        np.testing.assert_allclose(loss, -q0 * np.log(0.25) - (1 - q0) * np.log(0.75), rtol=tol)
        np.testing.assert_allclose(dl, [[0.25 - q0, 0.75 - (1 - q0)]], rtol=tol)
    # weight [2, 1], two rows with labels 0 and 1, mean: (2 ln 4 + ln(4/3)) / (2 + 1)
    logits2 = np.repeat(logits, 2, axis=0)
    loss = ops.softmax_cross_entropy(logits2, np.array([0, 1]), weight=np.array([2.0, 1.0], dtype))
    np.testing.assert_allclose(loss, (2 * np.log(4.0) + np.log(4.0 / 3.0)) / 3, rtol=tol)


def _log_softmax_by_hand(z):
    z = np.asarray(z, np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_all_smoothing_formula(reduction):
    """PyTorch's definition: l_i = -(1 - eps) w_y log p_y - eps / K sum_j w_j log p_j, the mean
    divided by sum_i w_{y_i} over non-ignored rows."""
    rng = np.random.default_rng(16)
    n, k, eps = 12, 7, 0.3
    logits, labels, weight = make_xent((n, k), rng, np.float64, weighted=True, ignored=True)
    logp = _log_softmax_by_hand(logits)
    kept = labels != -100
    y = np.where(kept, labels, 0)
    rows = -(1 - eps) * weight[y] * logp[np.arange(n), y] - eps / k * (weight * logp).sum(axis=1)
    rows[~kept] = 0
    expected = {"none": rows, "sum": rows.sum(), "mean": rows.sum() / weight[y][kept].sum()}[reduction]
    got = ops.softmax_cross_entropy(logits, labels, label_smoothing=eps, smoothing="all", weight=weight,
                                    reduction=reduction)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_others_smoothing_is_cross_entropy_with_soft_targets():
    rng = np.random.default_rng(17)
    n, k, eps = 10, 5, 0.25
    logits, labels, _ = make_xent((n, k), rng, np.float64)
    q = np.full((n, k), eps / (k - 1))
    q[np.arange(n), labels] = 1 - eps
    logp = _log_softmax_by_hand(logits)
    loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, label_smoothing=eps, smoothing="others")
    np.testing.assert_allclose(loss, -(q * logp).sum() / n, rtol=1e-12)
    np.testing.assert_allclose(dl, (np.exp(logp) - q) / n, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_class(dtype):
    logits = np.array([[5.0], [-3.0], [1e4]], dtype)
    labels = np.zeros(3, np.int64)
    np.testing.assert_array_equal(ops.softmax(logits), 1)
    np.testing.assert_array_equal(ops.log_softmax(logits), 0)
    for eps, smoothing in ((0.0, "others"), (0.0, "all"), (0.5, "all"), (1.0, "all")):
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, label_smoothing=eps, smoothing=smoothing,
                                                       reduction="none")
        np.testing.assert_array_equal(loss, 0)
        np.testing.assert_array_equal(dl, 0)


# ---- gradchecks (float64, central differences) ----

@pytest.mark.parametrize("shape", [(1, 3), (4, 5), (3, 1)])
@pytest.mark.parametrize("eps, smoothing", [(0.0, "others"), (0.1, "others"), (0.0, "all"), (0.1, "all")])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignored", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_xent(shape, eps, smoothing, weighted, ignored, reduction):
    rng = np.random.default_rng(seed_of("gradcheck", shape, eps, smoothing, weighted, ignored, reduction))
    logits, labels, weight = make_xent(shape, rng, np.float64, weighted=weighted, ignored=ignored)
    kw = xent_kwargs(eps, smoothing, weight, reduction)
    if shape[1] == 1 and smoothing == "others" and eps > 0:  # no other class to spread eps over
        with pytest.raises(ValueError, match=r"label_smoothing: smoothing='others' .* K = 1"):
            ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
        return

    def loss():
        return float(np.sum(ops.softmax_cross_entropy(logits, labels, **kw)))

    _, dl = ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
    np.testing.assert_allclose(dl, numerical_gradient(loss, logits), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (2, 3, 4), (4, 1)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_gradcheck_softmax(shape, name):
    rng = np.random.default_rng(seed_of("gradcheck", name, shape))
    x = rng.standard_normal(shape)
    r = rng.standard_normal(shape)  # loss = sum(r * f(x)), so dL/dy = r
    f = getattr(ops, name)

    def loss():
        return float((f(x) * r).sum())

    dx = getattr(ops, name + "_backward")(r, f(x))
    np.testing.assert_allclose(dx, numerical_gradient(loss, x), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


# ---- out=, strides, threads ----

@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_out_is_written_in_place_and_returned(module, dtype):
    rng = np.random.default_rng(18)
    logits, labels, weight = make_xent((8, 5), rng, dtype, weighted=True, ignored=True)
    dy = rng.standard_normal((8, 5)).astype(dtype)
    for name, args in (("softmax", (logits,)), ("log_softmax", (logits,)),
                       ("softmax_backward", (dy, reference.softmax(logits))),
                       ("log_softmax_backward", (dy, reference.log_softmax(logits)))):
        f = getattr(module, name)
        out = np.full((8, 5), np.nan, dtype)
        assert f(*args, out=out) is out, name
        np.testing.assert_array_equal(out, f(*args))
    for reduction in REDUCTIONS:
        kw = dict(label_smoothing=0.1, weight=weight, reduction=reduction)
        out = np.full((8, 5), np.nan, dtype)
        loss, dl = module.softmax_cross_entropy_with_grad(logits, labels, out=out, **kw)
        assert dl is out
        ref_loss, ref_dl = module.softmax_cross_entropy_with_grad(logits, labels, **kw)
        np.testing.assert_array_equal(out, ref_dl)
        np.testing.assert_array_equal(loss, ref_loss)


def test_strided_inputs_are_accepted():
    rng = np.random.default_rng(19)
    logits_t = rng.standard_normal((6, 10)).T  # (10, 6), not C-contiguous
    labels_s = rng.integers(0, 6, 20)[::2]
    weight_s = (rng.random(12) + 0.1)[::2]
    kw = dict(label_smoothing=0.1, weight=weight_s)
    for g, r in zip(ops.softmax_cross_entropy_with_grad(logits_t, labels_s, **kw),
                    reference.softmax_cross_entropy_with_grad(np.ascontiguousarray(logits_t), labels_s.copy(),
                                                              label_smoothing=0.1, weight=weight_s.copy())):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)
    x = rng.standard_normal((4, 7, 9))[:, ::2, 1:]
    dy = rng.standard_normal((4, 4, 8, 2))[..., 0]
    for name, back in (("softmax", "softmax_backward"), ("log_softmax", "log_softmax_backward")):
        y = getattr(ops, name)(x)
        np.testing.assert_allclose(y, getattr(reference, name)(x), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(getattr(ops, back)(dy, np.asfortranarray(y)), getattr(reference, back)(dy, y),
                                   rtol=1e-12, atol=1e-15)


def test_identical_results_for_one_and_two_threads(threads):
    rng = np.random.default_rng(20)
    logits, labels, weight = make_xent((3000, 1000), rng, np.float32, weighted=True, ignored=True)
    dy = rng.standard_normal((3000, 1000)).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        assert fusednn.get_num_threads() == n
        p = ops.softmax(logits)
        lp = ops.log_softmax(logits)
        got = [p, lp, ops.softmax_backward(dy, p), ops.log_softmax_backward(dy, lp)]
        for reduction in REDUCTIONS:
            got.extend(ops.softmax_cross_entropy_with_grad(logits, labels, label_smoothing=0.1, weight=weight,
                                                           reduction=reduction))
        got.append(ops.softmax_cross_entropy(logits, labels, smoothing="all", label_smoothing=0.1))
        results.append(got)
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_reference_has_the_same_signatures():
    for name in ALL_FUNCS:
        assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name)), name


# ---- bad input: every case names the argument ----

def _xent_args(dtype=np.float32):
    rng = np.random.default_rng(21)
    logits = rng.standard_normal((4, 10)).astype(dtype)
    labels = np.array([1, 2, 3, 4])
    return logits, labels


_BAD_XENT = [
    (dict(labels=np.array([1, 2, 3, 12])), ValueError,
     r"labels: expected class indices in \[0, 10\) or ignore_index=-100, got 12 at position 3"),
    (dict(labels=np.array([-1, 2, 3, 4])), ValueError, r"labels: expected class indices in \[0, 10\)"),
    (dict(labels=np.array([1, 2, 3, 10]), ignore_index=5), ValueError,
     r"labels: expected class indices in \[0, 10\) or ignore_index=5, got 10 at position 3"),
    (dict(labels=np.array([1.0, 2.0, 3.0, 4.0], np.float32)), TypeError,
     r"labels: expected an integer array, got float32"),
    (dict(labels=np.array([True, False, True, True])), TypeError, r"labels: expected an integer array, got bool"),
    (dict(labels=np.array([1, 2, 3])), ValueError, r"labels: expected shape \(N,\) = \(4,\), got \(3,\)"),
    (dict(labels=np.array([[1], [2], [3], [4]])), ValueError, r"labels: expected shape \(N,\) = \(4,\), got \(4, 1\)"),
    (dict(labels=[1, 2, 3, 4]), TypeError, r"labels: expected a numpy.ndarray"),
    (dict(label_smoothing=1.5), ValueError, r"label_smoothing: expected a value in \[0, 1\], got 1.5"),
    (dict(label_smoothing=-0.1), ValueError, r"label_smoothing: expected a value in \[0, 1\], got -0.1"),
    (dict(label_smoothing=float("nan")), ValueError, r"label_smoothing: expected a value in \[0, 1\], got nan"),
    (dict(smoothing="x"), ValueError, r"smoothing: expected 'others' or 'all', got 'x'"),
    (dict(reduction="avg"), ValueError, r"reduction: expected 'mean', 'sum' or 'none', got 'avg'"),
    (dict(reduction=None), ValueError, r"reduction: expected 'mean', 'sum' or 'none', got None"),
    (dict(weight=np.ones(4, np.float32)), ValueError, r"weight: expected shape \(K,\) = \(10,\), got \(4,\)"),
    (dict(weight=np.ones((1, 10), np.float32)), ValueError, r"weight: expected shape \(K,\) = \(10,\), got \(1, 10\)"),
    (dict(weight=np.ones(10, np.float64)), TypeError, r"weight: expected dtype float32"),
    (dict(logits=np.ones(10, np.float32)), ValueError, r"logits: expected a 2-D array"),
    (dict(logits=np.ones((4, 10), np.int64)), TypeError, r"logits: expected"),
    (dict(logits=np.ones((4, 1), np.float32), labels=np.zeros(4, np.int64), label_smoothing=0.1), ValueError,
     r"smoothing"),
]


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("func", XENT_FUNCS)
@pytest.mark.parametrize("change, exc, match", _BAD_XENT)
def test_xent_bad_arguments(module, func, change, exc, match):
    logits, labels = _xent_args()
    kw = dict(logits=logits, labels=labels)
    kw.update(change)
    logits, labels = kw.pop("logits"), kw.pop("labels")
    with pytest.raises(exc, match=match):
        getattr(module, func)(logits, labels, **kw)


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
def test_bad_labels_are_refused_before_any_work(module):
    logits, labels = _xent_args()
    labels[2] = 99
    out = np.full(logits.shape, 7.0, np.float32)
    with pytest.raises(ValueError, match=r"labels: "):
        module.softmax_cross_entropy_with_grad(logits, labels, out=out)
    np.testing.assert_array_equal(out, 7.0)


def _read_only(a):
    a.flags.writeable = False
    return a


_BAD_OUT = [
    (lambda: np.empty((4, 9), np.float32), ValueError, r"out: expected shape \(4, 10\), got \(4, 9\)"),
    (lambda: np.empty((4, 10), np.float64), TypeError, r"out: expected dtype float32, got float64"),
    (lambda: np.empty((10, 4), np.float32).T, ValueError, r"out: expected a C-contiguous"),
    (lambda: np.empty((4, 20), np.float32)[:, ::2], ValueError, r"out: expected a C-contiguous"),
    (lambda: _read_only(np.empty((4, 10), np.float32)), ValueError, r"out: expected a writable array"),
    (lambda: np.zeros(161, np.uint8)[1:].view(np.float32).reshape(4, 10), ValueError,
     r"out: expected a C-contiguous, aligned"),
    (lambda: [[0.0] * 10] * 4, TypeError, r"out: expected a numpy.ndarray"),
]


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
@pytest.mark.parametrize("make_out, exc, match", _BAD_OUT)
def test_bad_out(module, make_out, exc, match):
    logits, labels = _xent_args()
    for call in (lambda o: module.softmax(logits, out=o), lambda o: module.log_softmax(logits, out=o),
                 lambda o: module.softmax_backward(logits, logits, out=o),
                 lambda o: module.log_softmax_backward(logits, logits, out=o),
                 lambda o: module.softmax_cross_entropy_with_grad(logits, labels, out=o)):
        with pytest.raises(exc, match=match):
            call(make_out())


def test_out_overlapping_an_input_is_refused():
    logits, labels = _xent_args()
    with pytest.raises(ValueError, match=r"out: must not share memory with logits"):
        ops.softmax_cross_entropy_with_grad(logits, labels, out=logits)
    with pytest.raises(ValueError, match=r"out: must not share memory with x"):
        ops.softmax(logits, out=logits)


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
def test_softmax_bad_arguments(module):
    x = np.ones((3, 4), np.float32)
    for name in ("softmax", "log_softmax"):
        f = getattr(module, name)
        with pytest.raises(ValueError, match=r"x: expected"):
            f(np.ones((), np.float32))
        with pytest.raises(TypeError, match=r"x: expected"):
            f(np.ones((3, 4), np.int32))
        with pytest.raises(TypeError, match=r"x: expected a numpy.ndarray"):
            f([[1.0, 2.0]])
    for name in ("softmax_backward", "log_softmax_backward"):
        f = getattr(module, name)
        with pytest.raises(ValueError, match=r"y: expected shape"):
            f(x, np.ones((3, 5), np.float32))
        with pytest.raises(ValueError, match=r"y: expected shape"):
            f(x, np.ones((4, 4), np.float32))
        with pytest.raises(TypeError, match=r"y: expected dtype float(32|64) \(the dtype of d?y\), got float(64|32)"):
            f(x, np.ones((3, 4), np.float64))
        with pytest.raises(TypeError, match=r"dy: expected"):
            f(np.ones((3, 4), np.int64), x)
