"""fusednn.ops softmax / log_softmax / softmax cross-entropy against the NumPy reference,
gradchecks, independent hand-computed values, non-finite input, threads and bad input."""

import inspect
import itertools
import subprocess
import sys

import numpy as np
import pytest
from conftest import (DEVICES, GRADCHECK_ATOL, GRADCHECK_RTOL, assert_close, seed_of, to_device, to_numpy,
                      wider)

import fusednn
from fusednn import ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]

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
# Who runs the argument checks: the NumPy reference, and the ops on every device.
IMPLS = [("reference", "cpu")] + [("ops", d) for d in DEVICES]
IMPL_IDS = [f"{m}-{d}" for m, d in IMPLS]


def impl_of(name):
    return {"ops": ops, "reference": reference}[name]


def on_device(device, value):
    """NumPy arrays moved to the device; anything else (lists, scalars, None) as it is."""
    return to_device(device, value) if isinstance(value, np.ndarray) else value


def assert_same_nonfinite(actual, ref):
    """NaN at the same positions, the same infinities."""
    actual, ref = np.asarray(to_numpy(actual)), np.asarray(ref)
    assert actual.shape == ref.shape and actual.dtype == ref.dtype
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(ref))
    np.testing.assert_array_equal(actual[np.isinf(ref)], ref[np.isinf(ref)])
    np.testing.assert_array_equal(np.isinf(actual), np.isinf(ref))


def assert_dtype(value, dtype):
    """A result of the dtype: an array, or for the reduced losses a NumPy scalar (on either device)."""
    if np.ndim(to_numpy(value)) == 0:
        assert isinstance(value, np.dtype(dtype).type), f"expected a NumPy scalar of {np.dtype(dtype)}, got {type(value)}"
    else:
        assert value.dtype == dtype


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
def test_softmax_and_backward_match_reference(device, shape, dtype):
    rng = np.random.default_rng(seed_of("softmax", shape))
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    x_d, dy_d = to_device(device, x, dy)
    for name, back in (("softmax", "softmax_backward"), ("log_softmax", "log_softmax_backward")):
        y = getattr(ops, name)(x_d)
        assert y.shape == shape and y.dtype == dtype
        assert_close(y, getattr(reference, name)(x), getattr(reference, name)(*wider(x)), err_msg=name)
        y_ref = getattr(reference, name)(x)  # the backward of the same y
        dx = getattr(ops, back)(dy_d, to_device(device, y_ref))
        assert dx.shape == shape and dx.dtype == dtype
        assert_close(dx, getattr(reference, back)(dy, y_ref), getattr(reference, back)(*wider(dy, y_ref)),
                     err_msg=back)


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e4, 1e5])
def test_log_softmax_keeps_float32_precision_for_large_logits(device, offset):
    """Issue 12: the shift m + log s rounded to float32 before z - shift lost the low bits once
    |m| is large ([[1000, 1001, 1002]]: error 1.3e-5; 1.4e-3 at 1e5). (z - m) - log s keeps them
    at every offset, as PyTorch does."""
    rng = np.random.default_rng(seed_of("log_softmax offset", offset))
    x = np.float32(offset) + np.concatenate([np.array([[0.0, 1.0, 2.0]], np.float32),
                                             (rng.standard_normal((5, 3)) * 3).astype(np.float32)])
    x_wide = x.astype(np.float64)
    y = ops.log_softmax(to_device(device, x))
    assert_close(y, reference.log_softmax(x), reference.log_softmax(x_wide))
    # The result depends on z only through z - m: shifting the rows by their max first gives the
    # same bits (both compute the same float32 z - m), so the error does not grow with the offset.
    y0 = to_numpy(ops.log_softmax(to_device(device, x - x.max(axis=1, keepdims=True))))
    np.testing.assert_array_equal(to_numpy(y), y0)
    # log_softmax_backward and DistillationLoss take log_softmax's output: their error follows it.
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx = ops.log_softmax_backward(to_device(device, dy), y)
    assert_close(dx, reference.log_softmax_backward(dy, reference.log_softmax(x)),
                 reference.log_softmax_backward(*wider(dy), reference.log_softmax(x_wide)))


@pytest.mark.parametrize("n", [1 << 22])
def test_softmax_of_a_long_row_sums_to_one(device, n):
    """Issue 13: a float32 accumulator over a long row drifts (softmax of 3e8 equal values summed
    to 1.118; 2**22 random values were off by 1e-5, 50x NumPy's pairwise sum). The row sum is now
    accumulated in 1024-term blocks added in double (CUDA: in double)."""
    x = np.random.default_rng(seed_of("long row", n)).random(n).astype(np.float32)
    x_d = to_device(device, x)
    assert_close(ops.softmax(x_d), reference.softmax(x), reference.softmax(*wider(x)))
    assert_close(ops.log_softmax(x_d), reference.log_softmax(x), reference.log_softmax(*wider(x)))
    logits = x.reshape(1, n)
    loss, dl = ops.softmax_cross_entropy_with_grad(to_device(device, logits), to_device(device, np.array([3])),
                                                   label_smoothing=0.1)
    ref, ref_dl = reference.softmax_cross_entropy_with_grad(logits, np.array([3]), label_smoothing=0.1)
    ref_w, ref_dl_w = reference.softmax_cross_entropy_with_grad(*wider(logits), np.array([3]), label_smoothing=0.1)
    assert_close(loss, ref, ref_w)
    assert_close(dl, ref_dl, ref_dl_w)
    # Equal values: exactly 1/n each (n a power of two), so exactly 1 in all.
    p = to_numpy(ops.softmax(to_device(device, np.full(n, 7.0, np.float32))))
    np.testing.assert_array_equal(p, np.float32(1.0 / n))


def _check_xent_against_reference(device, shape, dtype, eps, smoothing, weighted, ignored):
    rng = np.random.default_rng(seed_of("xent", shape, eps, smoothing, weighted, ignored))
    logits, labels, weight = make_xent(shape, rng, dtype, weighted=weighted, ignored=ignored)
    logits_w, weight_w = wider(logits, weight)
    logits_d, labels_d, weight_d = to_device(device, logits, labels, weight)
    for reduction in REDUCTIONS:
        loss, dlogits = ops.softmax_cross_entropy_with_grad(logits_d, labels_d,
                                                            **xent_kwargs(eps, smoothing, weight_d, reduction))
        ref_loss, ref_dlogits = reference.softmax_cross_entropy_with_grad(
            logits, labels, **xent_kwargs(eps, smoothing, weight, reduction))
        wide_loss, wide_dlogits = reference.softmax_cross_entropy_with_grad(
            logits_w, labels, **xent_kwargs(eps, smoothing, weight_w, reduction))
        assert np.shape(loss) == ((shape[0],) if reduction == "none" else ())
        assert_dtype(loss, dtype)
        assert dlogits.shape == shape and dlogits.dtype == dtype
        assert_close(loss, ref_loss, wide_loss, err_msg=f"loss, {reduction}")
        assert_close(dlogits, ref_dlogits, wide_dlogits, err_msg=f"dlogits, {reduction}")
        np.testing.assert_array_equal(
            to_numpy(ops.softmax_cross_entropy(logits_d, labels_d, **xent_kwargs(eps, smoothing, weight_d, reduction))),
            to_numpy(loss))


@pytest.mark.parametrize("shape, eps, smoothing, weighted, ignored",
                         [c for s in XENT_SHAPES for c in valid_options(s, OPTIONS)]
                         + [c for s in LARGE_XENT_SHAPES for c in valid_options(s, LARGE_OPTIONS)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_xent_matches_reference(device, shape, dtype, eps, smoothing, weighted, ignored):
    _check_xent_against_reference(device, shape, dtype, eps, smoothing, weighted, ignored)


@pytest.mark.parametrize("eps", [0.5, 1.0])
@pytest.mark.parametrize("smoothing", ["others", "all"])
def test_xent_large_smoothing_matches_reference(device, eps, smoothing):
    _check_xent_against_reference(device, (13, 6), np.float64, eps, smoothing, True, True)


@pytest.mark.parametrize("shape", [(1, 5), (7, 1), (33, 17), (256, 1000)])
@pytest.mark.parametrize("smoothing", ["others", "all"])
def test_wide_logits_match_reference(device, shape, smoothing):
    """Logits spread over +-100 (from the former GPU-only suite): cross-entropy, softmax and
    log-softmax against the reference."""
    n, k = shape
    rng = np.random.default_rng(seed_of("wide logits", shape))
    z = (rng.standard_normal(shape) * 30).astype(np.float32)
    labels = rng.integers(0, k, n)
    kw = dict(label_smoothing=0.1 if k > 1 else 0.0, smoothing=smoothing)
    z_d, labels_d = to_device(device, z, labels)
    loss, dz = ops.softmax_cross_entropy_with_grad(z_d, labels_d, **kw)
    ref_loss, ref_dz = reference.softmax_cross_entropy_with_grad(z, labels, **kw)
    wide_loss, wide_dz = reference.softmax_cross_entropy_with_grad(*wider(z), labels, **kw)
    assert_close(loss, ref_loss, wide_loss)
    assert_close(dz, ref_dz, wide_dz)
    for name in ("softmax", "log_softmax"):
        assert_close(getattr(ops, name)(z_d), getattr(reference, name)(z), getattr(reference, name)(*wider(z)),
                     err_msg=name)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_infinite_weight_on_an_absent_class(device, reduction, dtype):
    """Issue 13: weight = [1, inf, 1] with class 1 never a label gave NaN on every row (the term
    0 * inf of a class whose target probability is 0); loss and gradient are now the reference's,
    finite, and as if that class had any other weight. With smoothing every class has a target
    probability, and the infinite weight shows in the loss as in the reference."""
    logits = np.array([[1.0, 0.0, -0.5], [0.2, 0.1, 1.5], [3.0, -1.0, 0.0]], dtype)
    labels = np.array([0, 2, 0])
    weight = np.array([1.0, np.inf, 1.0], dtype)
    logits_d, labels_d, weight_d = to_device(device, logits, labels, weight)
    loss, dl = ops.softmax_cross_entropy_with_grad(logits_d, labels_d, weight=weight_d, reduction=reduction)
    ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(logits, labels, weight=weight, reduction=reduction)
    wide_loss, wide_dl = reference.softmax_cross_entropy_with_grad(*wider(logits), labels, weight=wider(weight)[0],
                                                                   reduction=reduction)
    assert np.isfinite(to_numpy(loss)).all() and np.isfinite(to_numpy(dl)).all()
    assert_close(loss, ref_loss, wide_loss)
    assert_close(dl, ref_dl, wide_dl)
    finite_weight = np.array([1.0, 5.0, 1.0], dtype)  # the absent class's weight does not matter
    same = ops.softmax_cross_entropy_with_grad(logits_d, labels_d, weight=to_device(device, finite_weight),
                                               reduction=reduction)
    np.testing.assert_array_equal(to_numpy(loss), to_numpy(same[0]))
    np.testing.assert_array_equal(to_numpy(dl), to_numpy(same[1]))
    assert np.isfinite(to_numpy(ops.softmax_cross_entropy(logits_d, labels_d, weight=weight_d,
                                                          reduction=reduction))).all()
    # With smoothing, class 1 has q = eps / (K - 1) > 0: an infinite loss, like the reference.
    smoothed = ops.softmax_cross_entropy(logits_d, labels_d, weight=weight_d, reduction=reduction,
                                         label_smoothing=0.1)
    assert_same_nonfinite(smoothed, reference.softmax_cross_entropy(logits, labels, weight=weight,
                                                                     reduction=reduction, label_smoothing=0.1))



@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_minus_inf_logit_on_a_label_with_target_probability_zero(device, reduction, dtype):
    """Found by the long fuzz run: with label_smoothing=1 and smoothing="others" the label's target
    probability is 0, so a -inf logit there adds 0 log 0 = 0 to the loss (the op gave NaN)."""
    logits = np.array([[-np.inf, 0.0], [0.5, -0.25], [-np.inf, 2.0]], dtype)
    labels = np.array([0, 1, 0])
    z_d, labels_d = to_device(device, logits, labels)
    kw = dict(label_smoothing=1.0, smoothing="others", reduction=reduction)
    loss, dz = ops.softmax_cross_entropy_with_grad(z_d, labels_d, **kw)
    ref_loss, ref_dz = reference.softmax_cross_entropy_with_grad(logits, labels, **kw)
    wide_loss, wide_dz = reference.softmax_cross_entropy_with_grad(*wider(logits), labels, **kw)
    assert np.isfinite(to_numpy(loss)).all()
    assert_close(loss, ref_loss, wide_loss)
    assert_close(dz, ref_dz, wide_dz)
    assert_close(ops.softmax_cross_entropy(z_d, labels_d, **kw), ref_loss, wide_loss)

@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint64])
def test_any_integer_label_dtype(device, label_dtype):
    rng = np.random.default_rng(10)
    logits, labels, weight = make_xent((11, 5), rng, np.float32, weighted=True)
    logits, weight = to_device(device, logits, weight)
    ref = ops.softmax_cross_entropy_with_grad(logits, to_device(device, labels), label_smoothing=0.1, weight=weight)
    got = ops.softmax_cross_entropy_with_grad(logits, to_device(device, labels.astype(label_dtype)),
                                              label_smoothing=0.1, weight=weight)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(to_numpy(g), to_numpy(r))


def test_ignore_index_inside_the_class_range(device):
    rng = np.random.default_rng(11)
    logits, labels, _ = make_xent((20, 4), rng, np.float64)
    labels[:3] = 2
    for reduction in REDUCTIONS:
        kw = dict(ignore_index=2, label_smoothing=0.1, reduction=reduction)
        loss, dl = ops.softmax_cross_entropy_with_grad(*to_device(device, logits, labels), **kw)
        ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(logits, labels, **kw)
        wide_loss, wide_dl = reference.softmax_cross_entropy_with_grad(*wider(logits), labels, **kw)
        assert_close(loss, ref_loss, wide_loss)
        assert_close(dl, ref_dl, wide_dl)
        np.testing.assert_array_equal(to_numpy(dl)[labels == 2], 0)


@pytest.mark.parametrize("k", [3, 40])
@pytest.mark.parametrize("weighted", [False, True])
def test_smoothing_terms_near_the_float32_range_do_not_overflow(device, k, weighted):
    """With label smoothing the loss sums m - z_j over the other classes: for logits near -3e38 a
    float32 sum overflows where the loss (about k 3e37) is finite in float32."""
    logits = np.full((2, k), -3e38, np.float32)
    logits[:, 1] = 0.0
    labels = np.array([1, 0])
    weight = np.linspace(0.5, 1.0, k).astype(np.float32) if weighted else None
    for smoothing in ("all", "others"):
        kw = dict(label_smoothing=0.1, smoothing=smoothing, reduction="none")
        logits_d, labels_d, weight_d = to_device(device, logits, labels, weight)
        loss = ops.softmax_cross_entropy(logits_d, labels_d, weight=weight_d, **kw)
        ref = reference.softmax_cross_entropy(logits, labels, weight=weight, **kw)
        wide = reference.softmax_cross_entropy(*wider(logits), labels, weight=wider(weight)[0], **kw)
        assert np.isfinite(to_numpy(loss)[0]), smoothing
        assert_close(loss, ref, wide)


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_logits_give_finite_results(device, dtype):
    rng = np.random.default_rng(12)
    for eps, smoothing, weighted in itertools.product([0.0, 0.1], ["others", "all"], [False, True]):
        logits, labels, weight = make_xent((33, 17), rng, dtype, weighted=weighted, ignored=True, scale=1e4)
        logits[0, :] = 1e4  # ties at the maximum
        logits[2, :] = -1e4
        logits_d, labels_d, weight_d = to_device(device, logits, labels, weight)
        for reduction in REDUCTIONS:
            loss, dl = ops.softmax_cross_entropy_with_grad(logits_d, labels_d,
                                                           **xent_kwargs(eps, smoothing, weight_d, reduction))
            assert np.isfinite(to_numpy(loss)).all() and np.isfinite(to_numpy(dl)).all()
            ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(
                logits, labels, **xent_kwargs(eps, smoothing, weight, reduction))
            wide_loss, wide_dl = reference.softmax_cross_entropy_with_grad(
                *wider(logits), labels, **xent_kwargs(eps, smoothing, *wider(weight), reduction))
            assert_close(loss, ref_loss, wide_loss)
            assert_close(dl, ref_dl, wide_dl)
    x = (rng.standard_normal((5, 40)) * 1e4).astype(dtype)
    for name in ("softmax", "log_softmax"):
        y = getattr(ops, name)(to_device(device, x))
        assert np.isfinite(to_numpy(y)).all()
        assert_close(y, getattr(reference, name)(x), getattr(reference, name)(*wider(x)))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate_like_the_reference(device, dtype):
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
    logits_d, labels_d = to_device(device, logits, labels)
    for eps, smoothing, w, reduction in itertools.product([0.0, 0.1], ["others", "all"], [None, weight], REDUCTIONS):
        loss, dl = ops.softmax_cross_entropy_with_grad(logits_d, labels_d,
                                                       **xent_kwargs(eps, smoothing, to_device(device, w), reduction))
        ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(logits, labels,
                                                                     **xent_kwargs(eps, smoothing, w, reduction))
        assert_same_nonfinite(loss, ref_loss)
        assert_same_nonfinite(dl, ref_dl)
        loss, dl = to_numpy(loss), to_numpy(dl)
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
        y = to_numpy(getattr(ops, name)(logits_d))
        ref_y = getattr(reference, name)(logits)
        assert_same_nonfinite(y, ref_y)
        np.testing.assert_array_equal(y[np.isfinite(ref_y)] == 0, ref_y[np.isfinite(ref_y)] == 0)
        assert_same_nonfinite(getattr(ops, back)(*to_device(device, dy, ref_y)), getattr(reference, back)(dy, ref_y))


def test_nan_and_ignore_index_in_one_batch(device):
    """A NaN row among counted rows and an ignored row: NaN where the reference has it, for every
    reduction (from the former GPU-only suite)."""
    z = np.random.default_rng(seed_of("nan-ignore")).standard_normal((4, 6)).astype(np.float32)
    z[1, 2] = np.nan
    labels = np.array([0, 1, -100, 5])
    for reduction in REDUCTIONS:
        got = ops.softmax_cross_entropy(*to_device(device, z, labels), reduction=reduction)
        assert_same_nonfinite(got, reference.softmax_cross_entropy(z, labels, reduction=reduction))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_all_rows_ignored(device, dtype, weighted):
    rng = np.random.default_rng(14)
    logits, _, weight = make_xent((5, 4), rng, dtype, weighted=weighted)
    logits[0, 0] = np.nan  # ignored: makes no difference
    logits, labels, weight = to_device(device, logits, np.full(5, -100), weight)
    for eps in (0.0, 0.1):
        kw = dict(label_smoothing=eps, weight=weight)
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
        assert_dtype(loss, dtype)
        assert np.isnan(loss)
        np.testing.assert_array_equal(to_numpy(dl), np.zeros((5, 4), dtype))
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, reduction="sum", **kw)
        assert_dtype(loss, dtype)
        assert loss == 0
        np.testing.assert_array_equal(to_numpy(dl), 0)
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, reduction="none", **kw)
        assert loss.dtype == dtype
        np.testing.assert_array_equal(to_numpy(loss), np.zeros(5, dtype))
        np.testing.assert_array_equal(to_numpy(dl), 0)


def test_zero_weight_mean_is_nan(device):
    """The mean's divisor sum(w[y]) is 0: NaN loss and NaN gradient on the rows that count
    (as PyTorch), 0 on ignored rows."""
    logits = np.random.default_rng(15).standard_normal((3, 3))
    labels = np.array([0, -100, 0])
    weight = np.array([0.0, 1.0, 2.0])
    for eps in (0.0, 0.1):
        kw = dict(label_smoothing=eps, smoothing="all")
        loss, dl = ops.softmax_cross_entropy_with_grad(*to_device(device, logits, labels), weight=to_device(device, weight),
                                                       **kw)
        dl = to_numpy(dl)
        assert np.isnan(loss)
        assert np.isnan(dl[[0, 2]]).all()
        np.testing.assert_array_equal(dl[1], 0)
        ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(logits, labels, weight=weight, **kw)
        assert_same_nonfinite(dl, ref_dl)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_rows(device, dtype):
    logits, labels = to_device(device, np.zeros((0, 4), dtype), np.zeros(0, np.int64))
    loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels)
    assert_dtype(loss, dtype)
    assert np.isnan(loss) and dl.shape == (0, 4)
    assert ops.softmax_cross_entropy(logits, labels, reduction="sum") == 0
    assert ops.softmax_cross_entropy(logits, labels, reduction="none").shape == (0,)
    assert ops.softmax(logits).shape == (0, 4)


# ---- independent of the reference ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 10, 1000])
def test_uniform_logits_give_log_k(device, dtype, k):
    n = 6
    logits = np.full((n, k), 3.5, dtype)
    labels = np.arange(n) % k
    logits_d, labels_d = to_device(device, logits, labels)
    for eps, smoothing in itertools.product([0.0, 0.1, 1.0], ["others", "all"]):
        if k == 1 and smoothing == "others" and eps > 0:
            continue
        loss, dl = ops.softmax_cross_entropy_with_grad(logits_d, labels_d, label_smoothing=eps, smoothing=smoothing)
        assert_close(loss, dtype(np.log(k)))
        q = np.full((n, k), eps / k if smoothing == "all" else eps / max(k - 1, 1))
        q[np.arange(n), labels] = 1 - eps + (eps / k if smoothing == "all" else 0)
        assert_close(dl, ((1 / k - q) / n).astype(dtype))
    assert_close(ops.softmax(logits_d), np.full((n, k), 1 / k, dtype))
    assert_close(ops.log_softmax(logits_d), np.full((n, k), -np.log(k), dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_classes_by_hand(device, dtype):
    # p = softmax([0, ln 3]) = [1/4, 3/4]
    logits = to_device(device, np.array([[0.0, np.log(3.0)]], dtype))
    labels = to_device(device, np.array([0]))
    assert_close(ops.softmax(logits), np.array([[0.25, 0.75]], dtype))
    assert_close(ops.log_softmax(logits), np.array([[np.log(0.25), np.log(0.75)]], dtype))
    loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels)
    assert_close(loss, dtype(np.log(4.0)))
    assert_close(dl, np.array([[-0.75, 0.75]], dtype))
    eps = 0.2
    # others: q = [0.8, 0.2]; all: q = [0.9, 0.1]
    for smoothing, q0 in (("others", 0.8), ("all", 0.9)):
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, label_smoothing=eps, smoothing=smoothing)
        assert_close(loss, dtype(-q0 * np.log(0.25) - (1 - q0) * np.log(0.75)))
        assert_close(dl, np.array([[0.25 - q0, 0.75 - (1 - q0)]], dtype))
    # weight [2, 1], two rows with labels 0 and 1, mean: (2 ln 4 + ln(4/3)) / (2 + 1)
    logits2 = to_device(device, np.repeat(np.array([[0.0, np.log(3.0)]], dtype), 2, axis=0))
    loss = ops.softmax_cross_entropy(logits2, to_device(device, np.array([0, 1])),
                                     weight=to_device(device, np.array([2.0, 1.0], dtype)))
    assert_close(loss, dtype((2 * np.log(4.0) + np.log(4.0 / 3.0)) / 3))


def _log_softmax_by_hand(z):
    z = np.asarray(z, np.float64)
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_weighted_all_smoothing_formula(device, reduction):
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
    logits, labels, weight = to_device(device, logits, labels, weight)
    got = ops.softmax_cross_entropy(logits, labels, label_smoothing=eps, smoothing="all", weight=weight,
                                    reduction=reduction)
    assert_close(got, np.float64(expected) if np.ndim(expected) == 0 else expected)


def test_others_smoothing_is_cross_entropy_with_soft_targets(device):
    rng = np.random.default_rng(17)
    n, k, eps = 10, 5, 0.25
    logits, labels, _ = make_xent((n, k), rng, np.float64)
    q = np.full((n, k), eps / (k - 1))
    q[np.arange(n), labels] = 1 - eps
    logp = _log_softmax_by_hand(logits)
    loss, dl = ops.softmax_cross_entropy_with_grad(*to_device(device, logits, labels), label_smoothing=eps,
                                                   smoothing="others")
    assert_close(loss, np.float64(-(q * logp).sum() / n))
    assert_close(dl, (np.exp(logp) - q) / n)


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_class(device, dtype):
    logits = to_device(device, np.array([[5.0], [-3.0], [1e4]], dtype))
    labels = to_device(device, np.zeros(3, np.int64))
    np.testing.assert_array_equal(to_numpy(ops.softmax(logits)), 1)
    np.testing.assert_array_equal(to_numpy(ops.log_softmax(logits)), 0)
    for eps, smoothing in ((0.0, "others"), (0.0, "all"), (0.5, "all"), (1.0, "all")):
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, label_smoothing=eps, smoothing=smoothing,
                                                       reduction="none")
        np.testing.assert_array_equal(to_numpy(loss), 0)
        np.testing.assert_array_equal(to_numpy(dl), 0)


# ---- gradchecks (float64, central differences) ----

@pytest.mark.parametrize("shape", [(1, 3), (4, 5), (3, 1)])
@pytest.mark.parametrize("eps, smoothing", [(0.0, "others"), (0.1, "others"), (0.0, "all"), (0.1, "all")])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignored", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_xent(device, shape, eps, smoothing, weighted, ignored, reduction):
    rng = np.random.default_rng(seed_of("gradcheck", shape, eps, smoothing, weighted, ignored, reduction))
    logits, labels, weight = make_xent(shape, rng, np.float64, weighted=weighted, ignored=ignored)
    logits, labels, weight = to_device(device, logits, labels, weight)
    kw = xent_kwargs(eps, smoothing, weight, reduction)
    if shape[1] == 1 and smoothing == "others" and eps > 0:  # no other class to spread eps over
        with pytest.raises(ValueError, match=r"label_smoothing: smoothing='others' .* K = 1"):
            ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
        return

    def loss():
        return float(to_numpy(ops.softmax_cross_entropy(logits, labels, **kw)).sum())

    _, dl = ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
    np.testing.assert_allclose(to_numpy(dl), numerical_gradient(loss, logits), rtol=GRADCHECK_RTOL,
                               atol=GRADCHECK_ATOL)


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (2, 3, 4), (4, 1)])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_gradcheck_softmax(device, shape, name):
    rng = np.random.default_rng(seed_of("gradcheck", name, shape))
    x, r = to_device(device, rng.standard_normal(shape), rng.standard_normal(shape))  # loss = sum(r * f(x))
    f = getattr(ops, name)

    def loss():
        return float((f(x) * r).sum())

    dx = getattr(ops, name + "_backward")(r, f(x))
    np.testing.assert_allclose(to_numpy(dx), numerical_gradient(loss, x), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


# ---- out=, strides, threads ----

@pytest.mark.parametrize("dtype", DTYPES)
def test_out_is_written_in_place_and_returned(device, xp, dtype):
    rng = np.random.default_rng(18)
    logits, labels, weight = make_xent((8, 5), rng, dtype, weighted=True, ignored=True)
    dy = rng.standard_normal((8, 5)).astype(dtype)
    logits, labels, weight, dy = to_device(device, logits, labels, weight, dy)
    for name, args in (("softmax", (logits,)), ("log_softmax", (logits,)),
                       ("softmax_backward", (dy, ops.softmax(logits))),
                       ("log_softmax_backward", (dy, ops.log_softmax(logits)))):
        f = getattr(ops, name)
        out = xp.full((8, 5), np.nan, dtype)
        assert f(*args, out=out) is out, name
        np.testing.assert_array_equal(to_numpy(out), to_numpy(f(*args)))
    for reduction in REDUCTIONS:
        kw = dict(label_smoothing=0.1, weight=weight, reduction=reduction)
        out = xp.full((8, 5), np.nan, dtype)
        loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, out=out, **kw)
        assert dl is out
        ref_loss, ref_dl = ops.softmax_cross_entropy_with_grad(logits, labels, **kw)
        np.testing.assert_array_equal(to_numpy(out), to_numpy(ref_dl))
        np.testing.assert_array_equal(to_numpy(loss), to_numpy(ref_loss))


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_out_is_written_in_place_and_returned(dtype):
    rng = np.random.default_rng(18)
    logits, labels, weight = make_xent((8, 5), rng, dtype, weighted=True, ignored=True)
    dy = rng.standard_normal((8, 5)).astype(dtype)
    for name, args in (("softmax", (logits,)), ("log_softmax", (logits,)),
                       ("softmax_backward", (dy, reference.softmax(logits))),
                       ("log_softmax_backward", (dy, reference.log_softmax(logits)))):
        f = getattr(reference, name)
        out = np.full((8, 5), np.nan, dtype)
        assert f(*args, out=out) is out, name
        np.testing.assert_array_equal(out, f(*args))
    for reduction in REDUCTIONS:
        kw = dict(label_smoothing=0.1, weight=weight, reduction=reduction)
        out = np.full((8, 5), np.nan, dtype)
        loss, dl = reference.softmax_cross_entropy_with_grad(logits, labels, out=out, **kw)
        assert dl is out
        ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(logits, labels, **kw)
        np.testing.assert_array_equal(out, ref_dl)
        np.testing.assert_array_equal(loss, ref_loss)


def test_strided_inputs_are_accepted(device, xp):
    rng = np.random.default_rng(19)
    logits_t = xp.asarray(rng.standard_normal((6, 10))).T  # (10, 6), not C-contiguous
    labels_s = xp.asarray(rng.integers(0, 6, 20))[::2]
    weight_s = xp.asarray(rng.random(12) + 0.1)[::2]
    got = ops.softmax_cross_entropy_with_grad(logits_t, labels_s, label_smoothing=0.1, weight=weight_s)
    logits_c, labels_c, weight_c = (np.ascontiguousarray(to_numpy(a)) for a in (logits_t, labels_s, weight_s))
    for g, r, w in zip(got, reference.softmax_cross_entropy_with_grad(logits_c, labels_c, label_smoothing=0.1,
                                                                      weight=weight_c),
                       reference.softmax_cross_entropy_with_grad(*wider(logits_c), labels_c, label_smoothing=0.1,
                                                                 weight=wider(weight_c)[0])):
        assert_close(g, r, w)
    x = xp.asarray(rng.standard_normal((4, 7, 9)))[:, ::2, 1:]
    dy = xp.asarray(rng.standard_normal((4, 4, 8, 2)))[..., 0]
    x_c, dy_c = np.ascontiguousarray(to_numpy(x)), np.ascontiguousarray(to_numpy(dy))
    for name, back in (("softmax", "softmax_backward"), ("log_softmax", "log_softmax_backward")):
        y = getattr(ops, name)(x)
        assert_close(y, getattr(reference, name)(x_c), getattr(reference, name)(*wider(x_c)))
        y_f = xp.asfortranarray(y)
        y_c = np.ascontiguousarray(to_numpy(y))
        assert_close(getattr(ops, back)(dy, y_f), getattr(reference, back)(dy_c, y_c),
                     getattr(reference, back)(*wider(dy_c, y_c)))


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


@pytest.mark.parametrize("k", [*range(1, 18), 23, 24, 31, 32])
@pytest.mark.parametrize("dtype", DTYPES)
def test_narrow_rows_match_reference(device, k, dtype):
    """Rows of 1..17, 23, 24, 31, 32 columns (the CPU takes narrow rows 16 rows at a time, across
    rows: the forward below 24 float32 or 32 float64 columns, the backward below 16): against
    the reference for 1, 15, 16, 17 and 37 rows (groups and their tails), logits of any scale,
    and each row's result bitwise the same as that row alone."""
    rng = np.random.default_rng(seed_of("narrow softmax", k, np.dtype(dtype).name))
    for n, scale, offset in ((1, 3, 0), (15, 1, 0), (16, 30, -5), (17, 3, 1e4), (37, 1e3, -3e4)):
        x = (rng.standard_normal((n, k)) * scale + offset).astype(dtype)
        dy = rng.standard_normal((n, k)).astype(dtype)
        x_d, dy_d = to_device(device, x, dy)
        for name, back in (("softmax", "softmax_backward"), ("log_softmax", "log_softmax_backward")):
            msg = f"{name} n={n} k={k}"
            y = getattr(ops, name)(x_d)
            assert_close(y, getattr(reference, name)(x), getattr(reference, name)(*wider(x)), err_msg=msg)
            y_ref = getattr(reference, name)(x)
            dx = getattr(ops, back)(dy_d, to_device(device, y_ref))
            assert_close(dx, getattr(reference, back)(dy, y_ref), getattr(reference, back)(*wider(dy, y_ref)),
                         err_msg=msg)
            for r in (0, n // 2, n - 1):
                np.testing.assert_array_equal(to_numpy(getattr(ops, name)(x_d[r:r + 1]))[0], to_numpy(y)[r],
                                              err_msg=msg)
                np.testing.assert_array_equal(
                    to_numpy(getattr(ops, back)(dy_d[r:r + 1], to_device(device, y_ref[r:r + 1])))[0],
                    to_numpy(dx)[r], err_msg=msg)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("k", [1, 2, 3, 10, 15, 17, 23, 31])
@pytest.mark.parametrize("dtype", DTYPES)
def test_narrow_rows_with_nonfinite_values(device, k, dtype):
    """NaN, +inf and -inf logits in narrow rows (one per row, a row all -inf, a row of +inf and
    -inf, huge finite values), among finite rows of the same 16-row group: the same NaN and inf
    positions and zeros as the reference, and the finite rows still match it."""
    rng = np.random.default_rng(seed_of("narrow nonfinite", k))
    x = (rng.standard_normal((21, k)) * 3).astype(dtype)
    x[1, k // 2] = np.nan
    x[3, 0] = np.inf
    x[5, k - 1] = -np.inf
    x[7] = -np.inf
    x[9, 0], x[9, k - 1] = np.inf, -np.inf
    x[11] = np.finfo(dtype).max
    x[13, 0] = -np.finfo(dtype).max
    dy = rng.standard_normal((21, k)).astype(dtype)
    dy[15, 0] = np.nan
    dy[17, k - 1] = np.inf
    finite = [r for r in range(21) if r not in (1, 3, 5, 7, 9, 11, 13, 15, 17)]
    for name, back in (("softmax", "softmax_backward"), ("log_softmax", "log_softmax_backward")):
        y = to_numpy(getattr(ops, name)(to_device(device, x)))
        ref_y = getattr(reference, name)(x)
        assert_same_nonfinite(y, ref_y)
        np.testing.assert_array_equal(y[np.isfinite(ref_y)] == 0, ref_y[np.isfinite(ref_y)] == 0)
        assert_close(y[finite], ref_y[finite], getattr(reference, name)(*wider(x[finite])), err_msg=name)
        assert_same_nonfinite(getattr(ops, back)(*to_device(device, dy, ref_y)), getattr(reference, back)(dy, ref_y))


@pytest.mark.parametrize("k", [3, 10])
def test_narrow_rows_identical_for_one_and_two_threads(threads, k):
    """Narrow rows over several of the pool's row blocks (whose starts are not multiples of 16)."""
    rng = np.random.default_rng(seed_of("narrow threads", k))
    n = 3 * 16384 // k + 5
    for dtype in DTYPES:
        x = (rng.standard_normal((n, k)) * 4).astype(dtype)
        dy = rng.standard_normal((n, k)).astype(dtype)
        results = []
        for count in (1, 2):
            threads(count)
            p, lp = ops.softmax(x), ops.log_softmax(x)
            results.append([p, lp, ops.softmax_backward(dy, p), ops.log_softmax_backward(dy, lp)])
        for one, two in zip(*results):
            np.testing.assert_array_equal(one, two)


def _out_at(n, k, offset_bytes):
    """A C-contiguous float32 (n, k) array starting offset_bytes past a 64-byte line, filled with 7."""
    buffer = np.empty(n * k + 32, np.float32)
    start = ((-buffer.ctypes.data) % 64 + offset_bytes) // 4
    out = buffer[start:start + n * k].reshape(n, k)
    assert out.ctypes.data % 64 == offset_bytes
    out[...] = 7
    return out


@pytest.mark.parametrize("n, k", [(37, 1), (41, 15), (29, 17), (23, 33), (11, 1000), (9, 1001), (300, 1025)])
def test_out_at_any_offset_has_the_bits_of_the_allocating_call(threads, n, k):
    """float32 dlogits written into out= starting 0, 4, 16 or 48 bytes past a 64-byte line (rows of
    odd lengths, so rows start at every offset), at 1 and 2 threads, with ignored rows and a NaN row
    between them: loss and gradient bitwise equal to the allocating call's."""
    rng = np.random.default_rng(seed_of("out offsets", n, k))
    logits = (rng.standard_normal((n, k)) * 3).astype(np.float32)
    labels = rng.integers(0, k, n)
    labels[[1, n // 2, n - 2]] = -100
    logits[n // 3, k // 2] = np.nan
    weight = (rng.random(k) + 0.5).astype(np.float32)
    for kwargs in [{}, dict(label_smoothing=0.1, smoothing="all"), dict(weight=weight, reduction="none")]:
        threads(2)
        ref_loss, ref_d = ops.softmax_cross_entropy_with_grad(logits, labels, **kwargs)
        ref_loss = np.asarray(ref_loss)
        for count in (1, 2):
            threads(count)
            for offset in (0, 4, 16, 48):
                out = _out_at(n, k, offset)
                loss, d = ops.softmax_cross_entropy_with_grad(logits, labels, out=out, **kwargs)
                assert d is out
                where = f"{kwargs} threads={count} offset={offset}"
                np.testing.assert_array_equal(out.view(np.uint32), ref_d.view(np.uint32), err_msg=where)
                loss = np.asarray(loss)
                assert loss.dtype == ref_loss.dtype and loss.tobytes() == ref_loss.tobytes(), where


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


@pytest.mark.parametrize("impl, device", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("func", XENT_FUNCS)
@pytest.mark.parametrize("change, exc, match", _BAD_XENT)
def test_xent_bad_arguments(impl, device, func, change, exc, match):
    logits, labels = _xent_args()
    kw = dict(logits=logits, labels=labels)
    kw.update(change)
    kw = {name: on_device(device, value) for name, value in kw.items()}
    logits, labels = kw.pop("logits"), kw.pop("labels")
    with pytest.raises(exc, match=match):
        getattr(impl_of(impl), func)(logits, labels, **kw)


@pytest.mark.parametrize("impl, device", IMPLS, ids=IMPL_IDS)
def test_bad_labels_are_refused_before_any_work(impl, device):
    logits, labels = _xent_args()
    labels[2] = 99
    out = to_device(device, np.full(logits.shape, 7.0, np.float32))
    with pytest.raises(ValueError, match=r"labels: "):
        impl_of(impl).softmax_cross_entropy_with_grad(*to_device(device, logits, labels), out=out)
    np.testing.assert_array_equal(to_numpy(out), 7.0)


_LABEL_RACE = """
import sys, threading, time
import numpy as np
from fusednn import ops

sys.setswitchinterval(1e-5)
n, k = 20000, 10
logits = np.zeros((n, k), np.float32)
labels = np.zeros(n, np.int64)
stop = False

def scribble():  # labels far out of bounds, then valid again, then a pause for a call to check them
    while not stop:
        labels[:] = 1 << 40
        labels[:] = 0
        time.sleep(0)

thread = threading.Thread(target=scribble)
thread.start()
checked = refused = 0
deadline = time.monotonic() + 60
try:
    while checked < 60 and time.monotonic() < deadline:
        try:
            loss, dl = ops.softmax_cross_entropy_with_grad(logits, labels, reduction="{reduction}")
        except ValueError:  # the check saw the bad labels: refused, as it should
            refused += 1
            time.sleep(0)
            continue
        checked += 1
        # every row has uniform logits: a row loss of log(k) whatever the label, gradient rows sum to 0
        assert np.allclose(loss, np.log(k) * (n if "{reduction}" == "sum" else 1)), loss
        assert np.abs(dl.sum(axis=1)).max() < 1e-6
finally:
    stop = True
    thread.join()
print(checked, refused)
"""


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_labels_changed_by_another_thread_after_the_check_are_not_read(reduction):
    """Issue 13: int64 contiguous labels were checked, then read in place after the GIL was
    released, so another thread that wrote them in between made the kernel index z[label] and
    d[label] out of bounds (a segfault). The binding now checks a private copy and hands the kernel
    that same copy. A race cannot be replayed exactly: this runs 60 calls that pass the check while
    a thread keeps writing labels 2**40 and 0, in a child process (a crash is a failure, not the end
    of the test run), and every call must give the loss of valid labels."""
    result = subprocess.run([sys.executable, "-c", _LABEL_RACE.replace("{reduction}", reduction)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stdout}\n{result.stderr}"
    checked = int(result.stdout.split()[0])
    assert checked == 60, result.stdout


def _read_only(a):
    a.flags.writeable = False
    return a


# out= arrays that are wrong on any device (built with the device's array module)...
_BAD_OUT = [
    (lambda xp: xp.empty((4, 9), np.float32), ValueError, r"out: expected shape \(4, 10\), got \(4, 9\)"),
    (lambda xp: xp.empty((4, 10), np.float64), TypeError, r"out: expected dtype float32, got (float64|<f8)"),
    (lambda xp: xp.empty((10, 4), np.float32).T, ValueError, r"out: expected a C-contiguous"),
    (lambda xp: xp.empty((4, 20), np.float32)[:, ::2], ValueError, r"out: expected a C-contiguous"),
]
# ... and those only NumPy arrays (or lists) can be.
_BAD_OUT_NUMPY = [
    (lambda: _read_only(np.empty((4, 10), np.float32)), ValueError, r"out: expected a writable array"),
    (lambda: np.zeros(161, np.uint8)[1:].view(np.float32).reshape(4, 10), ValueError,
     r"out: expected a C-contiguous, aligned"),
    (lambda: [[0.0] * 10] * 4, TypeError, r"out: expected a numpy.ndarray"),
]


def _out_calls(module, logits, labels):
    return (lambda o: module.softmax(logits, out=o), lambda o: module.log_softmax(logits, out=o),
            lambda o: module.softmax_backward(logits, logits, out=o),
            lambda o: module.log_softmax_backward(logits, logits, out=o),
            lambda o: module.softmax_cross_entropy_with_grad(logits, labels, out=o))


@pytest.mark.parametrize("impl, device", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("make_out, exc, match", _BAD_OUT)
def test_bad_out(impl, device, make_out, exc, match):
    from conftest import array_module
    logits, labels = to_device(device, *_xent_args())
    for call in _out_calls(impl_of(impl), logits, labels):
        with pytest.raises(exc, match=match):
            call(make_out(array_module(device)))


@pytest.mark.parametrize("impl", ["ops", "reference"])
@pytest.mark.parametrize("make_out, exc, match", _BAD_OUT_NUMPY)
def test_bad_numpy_out(impl, make_out, exc, match):
    logits, labels = _xent_args()
    for call in _out_calls(impl_of(impl), logits, labels):
        with pytest.raises(exc, match=match):
            call(make_out())


def test_out_overlapping_an_input_is_refused(device):
    logits, labels = to_device(device, *_xent_args())
    with pytest.raises(ValueError, match=r"out: must not share memory with logits"):
        ops.softmax_cross_entropy_with_grad(logits, labels, out=logits)
    with pytest.raises(ValueError, match=r"out: must not share memory with x"):
        ops.softmax(logits, out=logits)


@pytest.mark.parametrize("impl, device", IMPLS, ids=IMPL_IDS)
def test_softmax_bad_arguments(impl, device):
    module = impl_of(impl)
    x = to_device(device, np.ones((3, 4), np.float32))

    def arr(shape, dtype):
        return to_device(device, np.ones(shape, dtype))

    for name in ("softmax", "log_softmax"):
        f = getattr(module, name)
        with pytest.raises(ValueError, match=r"x: expected"):
            f(arr((), np.float32))
        with pytest.raises(TypeError, match=r"x: expected"):
            f(arr((3, 4), np.int32))
        with pytest.raises(TypeError, match=r"x: expected a numpy.ndarray"):
            f([[1.0, 2.0]])
    for name in ("softmax_backward", "log_softmax_backward"):
        f = getattr(module, name)
        with pytest.raises(ValueError, match=r"y: expected shape"):
            f(x, arr((3, 5), np.float32))
        with pytest.raises(ValueError, match=r"y: expected shape"):
            f(x, arr((4, 4), np.float32))
        with pytest.raises(TypeError, match=r"y: expected dtype float(32|64) \(the dtype of d?y\), got float(64|32)"):
            f(x, arr((3, 4), np.float64))
        with pytest.raises(TypeError, match=r"dy: expected"):
            f(arr((3, 4), np.int64), x)


@pytest.mark.parametrize("smoothing, eps", [("others", 1.0), ("others", 0.5), ("all", 0.9)])
def test_smoothing_term_with_the_label_logit_far_below_the_others(device, smoothing, eps):
    """The smoothing sum over the classes other than the label is taken from the whole row's sum
    less the label's term where that term is at most half of it; a label logit far below the
    others (a term near 1e4 against terms below 1) takes the direct sum, so the small remainder keeps
    its precision."""
    logits = np.array([[-12345.678, 0.31415927, 0.27182818], [0.5772157, -9876.543, 1.4142135],
                       [0.1, 0.3, -0.2]], np.float32)
    labels = np.array([0, 1, 2])
    kwargs = dict(label_smoothing=eps, smoothing=smoothing, reduction="none")
    loss, dl = ops.softmax_cross_entropy_with_grad(*to_device(device, logits, labels), **kwargs)
    ref_loss, ref_dl = reference.softmax_cross_entropy_with_grad(logits, labels, **kwargs)
    wide_loss, wide_dl = reference.softmax_cross_entropy_with_grad(*wider(logits), labels, **kwargs)
    assert_close(loss, ref_loss, wide_loss)
    assert_close(dl, ref_dl, wide_dl)


@pytest.mark.parametrize("k", [1, 15, 16, 17, 33, 1000])
def test_each_row_has_the_bits_of_a_one_row_call(k):
    """On the CPU a row's max is taken by the previous row's gradient pass (float32 AVX-512 and
    AVX2) and the gradient is stored from dlogits' first 64-byte (AVX2: 32-byte) boundary on: every
    row of a call, at any offset of out, with the label at any column, next to ignored rows and
    rows of NaN, NaN and +inf, or -inf, has the bits of the same row computed alone (reduction
    "none" and "sum" scale no row by the others)."""
    rng = np.random.default_rng(seed_of("rows alone", k))
    n = 40
    logits = (rng.standard_normal((n, k)) * 3).astype(np.float32)
    logits[3, k // 2] = np.nan
    logits[4] = -np.inf
    logits[5, 0] = -np.inf
    logits[6] *= 1e4
    logits[7, 0], logits[7, -1] = np.nan, np.inf  # two NaNs of different signs in the gradient
    labels = np.concatenate([np.arange(k), rng.integers(0, k, n)])[:n] if k < n else rng.integers(0, k, n)
    labels[[0, n - 1]] = [k - 1, 0]
    labels[[2, 9, 10]] = -100
    weight = (rng.random(k) + 0.1).astype(np.float32)
    buffer = np.empty(n * k + 16, np.float32)
    for offset, eps, w, reduction in [(0, 0.0, None, "none"), (1, 0.1, None, "sum"), (3, 0.0, weight, "none"),
                                      (8, 0.1, weight, "none"), (15, 0.1, None, "none")]:
        kwargs = dict(label_smoothing=eps, smoothing="all", weight=w, reduction=reduction)
        out = buffer[offset:offset + n * k].reshape(n, k)
        loss, _ = ops.softmax_cross_entropy_with_grad(logits, labels, out=out, **kwargs)
        rows_loss = ops.softmax_cross_entropy(logits, labels, **kwargs)
        assert np.array_equal(np.asarray(loss).view(np.uint32), np.asarray(rows_loss).view(np.uint32))
        for r in range(n):
            one_loss, one_d = ops.softmax_cross_entropy_with_grad(logits[r:r + 1], labels[r:r + 1], **kwargs)
            np.testing.assert_array_equal(one_d.view(np.uint32), out[r:r + 1].view(np.uint32), err_msg=f"row {r}")
            if reduction == "none":
                assert np.array_equal(one_loss.view(np.uint32), loss[r:r + 1].view(np.uint32)), f"row {r}"
