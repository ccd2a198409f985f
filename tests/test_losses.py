"""fusednn.nn.losses: values against NumPy formulas (and the cross-entropy reference),
gradients by central finite differences in float64, dtypes and bad arguments."""

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, seed_of

from fusednn import reference
from fusednn.gradcheck import gradcheck
from fusednn.nn.losses import DistillationLoss, MSELoss, SoftmaxCrossEntropy, soft_targets

RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def data(*key, n=7, k=5, dtype=np.float64):
    rng = np.random.default_rng(seed_of(*key))
    return (2 * rng.standard_normal((n, k))).astype(dtype), rng.integers(0, k, n)


def assert_grad_matches_finite_differences(loss, output, target):
    """value_and_grad's gradient is the derivative of loss(output, target) (float64)."""
    def backward(dy, z):
        return (dy * loss.value_and_grad(z, target)[1],)
    assert gradcheck(lambda z: np.array(loss(z, target)), output, backward=backward,
                     rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


def np_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ---- SoftmaxCrossEntropy ----

XENT_OPTIONS = [
    {},
    {"label_smoothing": 0.1},
    {"label_smoothing": 0.2, "smoothing": "all"},
    {"reduction": "sum"},
    {"weight": np.array([1.0, 2.0, 0.5, 1.5, 3.0])},
    {"ignore_index": 2, "label_smoothing": 0.1},
]


@pytest.mark.parametrize("options", XENT_OPTIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_xent_matches_reference(options, dtype):
    logits, labels = data("xent", dtype=dtype)
    loss = SoftmaxCrossEntropy(**options)
    ref_value, ref_grad = reference.softmax_cross_entropy_with_grad(logits.astype(np.float64), labels, **options)
    value = loss(logits, labels)
    assert type(value) is float
    np.testing.assert_allclose(value, ref_value, rtol=RTOL[dtype])
    value2, grad = loss.value_and_grad(logits, labels)
    assert value2 == pytest.approx(value, rel=RTOL[dtype])
    assert grad.dtype == dtype and grad.shape == logits.shape
    np.testing.assert_allclose(grad, ref_grad, rtol=RTOL[dtype], atol=RTOL[dtype] * np.abs(ref_grad).max())


@pytest.mark.parametrize("options", XENT_OPTIONS)
def test_xent_gradient_by_finite_differences(options):
    logits, labels = data("xent-fd")
    assert_grad_matches_finite_differences(SoftmaxCrossEntropy(**options), logits, labels)


def test_xent_smoothing_conventions_differ_as_documented():
    logits, labels = data("xent-smoothing", k=4)
    eps, k = 0.3, 4
    logp = np.log(np_softmax(logits))
    rows = np.arange(len(labels))
    others = np.full_like(logits, eps / (k - 1))
    others[rows, labels] = 1 - eps
    torch_style = np.full_like(logits, eps / k)
    torch_style[rows, labels] += 1 - eps
    for smoothing, q in [("others", others), ("all", torch_style)]:
        value = SoftmaxCrossEntropy(label_smoothing=eps, smoothing=smoothing)(logits, labels)
        assert value == pytest.approx(-(q * logp).sum(axis=1).mean(), rel=1e-12)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing: expected a value in \\[0, 1\\], got 1.5"),
    ({"smoothing": "some"}, ValueError, "smoothing: expected 'others' or 'all', got 'some'"),
    ({"reduction": "none"}, ValueError, "reduction: expected 'mean' or 'sum', got 'none'"),
])
def test_xent_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SoftmaxCrossEntropy(**kwargs)


def test_xent_bad_labels_are_reported_by_the_op():
    logits, labels = data("xent-bad")
    with pytest.raises(ValueError, match="labels"):
        SoftmaxCrossEntropy()(logits, labels + 10)


# ---- MSELoss ----

@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_value_and_gradient(reduction, dtype):
    rng = np.random.default_rng(seed_of("mse", reduction))
    y, t = rng.standard_normal((2, 6, 3))
    y = y.astype(dtype)
    loss = MSELoss(reduction)
    sq = (y.astype(np.float64) - t) ** 2
    expected = sq.mean() if reduction == "mean" else sq.sum()
    value, grad = loss.value_and_grad(y, t)
    assert type(value) is float and type(loss(y, t)) is float
    np.testing.assert_allclose([value, loss(y, t)], expected, rtol=RTOL[dtype])
    assert grad.dtype == dtype and grad.shape == y.shape
    if dtype == np.float64:
        assert_grad_matches_finite_differences(loss, y, t)


def test_mse_bad_arguments():
    with pytest.raises(ValueError, match="reduction"):
        MSELoss("none")
    with pytest.raises(ValueError, match=r"target: expected shape \(4, 2\)"):
        MSELoss()(np.zeros((4, 2)), np.zeros((4, 1)))
    with pytest.raises(TypeError, match="output: expected a floating-point numpy.ndarray"):
        MSELoss()(np.zeros((4, 2), np.int64), np.zeros((4, 2)))


# ---- knowledge distillation ----

def kd_formula(student, teacher, labels, t, alpha, label_smoothing=0.0):
    p_t = np_softmax(teacher / t)
    log_ps = np.log(np_softmax(student / t))
    kl = (p_t * (np.log(p_t) - log_ps)).sum(axis=1).mean()
    ce = reference.softmax_cross_entropy(student, labels, label_smoothing=label_smoothing)
    return alpha * t * t * kl + (1 - alpha) * ce


@pytest.mark.parametrize("t, alpha, label_smoothing", [(4.0, 0.9, 0.0), (1.0, 0.5, 0.1), (2.5, 1.0, 0.0)])
def test_distillation_value_and_gradient(t, alpha, label_smoothing):
    student, labels = data("kd-student")
    teacher, _ = data("kd-teacher")
    loss = DistillationLoss(temperature=t, alpha=alpha, label_smoothing=label_smoothing)
    expected = kd_formula(student, teacher, labels, t, alpha, label_smoothing)
    assert loss(student, (labels, teacher)) == pytest.approx(expected, rel=1e-12)
    value, grad = loss.value_and_grad(student, (labels, teacher))
    assert value == pytest.approx(expected, rel=1e-12) and grad.shape == student.shape
    assert_grad_matches_finite_differences(loss, student, (labels, teacher))


def test_distillation_with_alpha_0_is_cross_entropy():
    student, labels = data("kd-ce")
    teacher, _ = data("kd-ce-teacher")
    value, grad = DistillationLoss(alpha=0.0, label_smoothing=0.1).value_and_grad(student, (labels, teacher))
    ref_value, ref_grad = reference.softmax_cross_entropy_with_grad(student, labels, label_smoothing=0.1)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-15)


def test_distillation_of_the_teacher_itself_has_no_soft_term():
    logits, labels = data("kd-same")
    value, grad = DistillationLoss(alpha=1.0).value_and_grad(logits, (labels, logits))
    assert abs(value) < 1e-12 and np.abs(grad).max() < 1e-12


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distillation_dtypes(dtype):
    student, labels = data("kd-dtype", dtype=dtype)
    teacher, _ = data("kd-dtype-teacher")  # float64 teacher for any student
    value, grad = DistillationLoss().value_and_grad(student, (labels, teacher))
    assert type(value) is float and grad.dtype == dtype
    assert value == pytest.approx(kd_formula(student.astype(np.float64), teacher, labels, 4.0, 0.9), rel=1e-5)


def test_soft_targets():
    teacher, _ = data("soft")
    for t in [1.0, 3.0]:
        p = soft_targets(teacher, t)
        np.testing.assert_allclose(p, np_softmax(teacher / t), rtol=1e-12)
    # A higher temperature gives a flatter distribution.
    assert (soft_targets(teacher, 5.0).max(axis=1) < soft_targets(teacher, 1.0).max(axis=1)).all()
    with pytest.raises(ValueError, match="temperature: expected a value > 0, got 0"):
        soft_targets(teacher, 0)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"temperature": 0.0}, ValueError, "temperature: expected a value > 0"),
    ({"alpha": 1.5}, ValueError, "alpha: expected a value in \\[0, 1\\]"),
    ({"label_smoothing": -0.1}, ValueError, "label_smoothing"),
])
def test_distillation_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DistillationLoss(**kwargs)


def test_distillation_bad_targets():
    student, labels = data("kd-bad")
    loss = DistillationLoss()
    with pytest.raises(TypeError, match="target: expected a pair \\(labels, teacher_logits\\)"):
        loss(student, labels)
    with pytest.raises(ValueError, match="teacher_logits: expected shape \\(7, 5\\)"):
        loss(student, (labels, student[:, :3]))


def test_names_and_reprs():
    for loss in [SoftmaxCrossEntropy(label_smoothing=0.1), MSELoss(), DistillationLoss(temperature=2.0)]:
        assert loss.name == "loss"
        assert repr(loss).startswith(type(loss).__name__ + "(")
    assert "label_smoothing=0.1" in repr(SoftmaxCrossEntropy(label_smoothing=0.1))
    assert "temperature=2.0" in repr(DistillationLoss(temperature=2.0))
