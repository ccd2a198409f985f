"""fusednn.nn.losses on every device: values against NumPy formulas (and the cross-entropy
reference), gradients by central finite differences in float64, dtypes and bad arguments."""

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, assert_close, seed_of, to_device, to_numpy, wider

from fusednn import reference
from fusednn.nn.losses import DistillationLoss, MSELoss, SoftmaxCrossEntropy, soft_targets
from fusednn.testing import numerical_gradient


def data(*key, n=7, k=5, dtype=np.float64):
    rng = np.random.default_rng(seed_of(*key))
    return (2 * rng.standard_normal((n, k))).astype(dtype), rng.integers(0, k, n)


def on_device(device, target):
    """A target (an array, or a tuple of arrays) on the device."""
    if isinstance(target, tuple):
        return tuple(to_device(device, t) for t in target)
    return to_device(device, target)


def assert_grad_matches_finite_differences(device, loss, output, target):
    """value_and_grad's gradient on the device is the derivative of loss(output, target), taken by
    central differences in float64 (on the host)."""
    analytic = to_numpy(loss.value_and_grad(to_device(device, output), on_device(device, target))[1])
    z = output.copy()
    numeric = numerical_gradient(lambda: loss(z, target), z)
    np.testing.assert_allclose(analytic, numeric, rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


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
def test_xent_matches_reference(device, options, dtype):
    logits, labels = data("xent", dtype=dtype)
    loss = SoftmaxCrossEntropy(**options)
    weight = options.get("weight")
    ref_options = dict(options, weight=None if weight is None else weight.astype(dtype))
    ref_value, ref_grad = reference.softmax_cross_entropy_with_grad(logits, labels, **ref_options)
    wide_value, wide_grad = reference.softmax_cross_entropy_with_grad(
        *wider(logits), labels, **dict(options, weight=None if weight is None else wider(weight.astype(dtype))[0]))
    logits_d, labels_d = to_device(device, logits, labels)
    value = loss(logits_d, labels_d)
    assert type(value) is float
    assert_close(np.array(value, dtype), ref_value, wide_value)
    value2, grad = loss.value_and_grad(logits_d, labels_d)
    assert value2 == value
    assert grad.dtype == dtype and grad.shape == logits.shape
    assert_close(grad, ref_grad, wide_grad)


@pytest.mark.parametrize("options", XENT_OPTIONS)
def test_xent_gradient_by_finite_differences(device, options):
    logits, labels = data("xent-fd")
    assert_grad_matches_finite_differences(device, SoftmaxCrossEntropy(**options), logits, labels)


def test_xent_smoothing_conventions_differ_as_documented(device):
    logits, labels = data("xent-smoothing", k=4)
    eps, k = 0.3, 4
    logp = np.log(np_softmax(logits))
    rows = np.arange(len(labels))
    others = np.full_like(logits, eps / (k - 1))
    others[rows, labels] = 1 - eps
    torch_style = np.full_like(logits, eps / k)
    torch_style[rows, labels] += 1 - eps
    for smoothing, q in [("others", others), ("all", torch_style)]:
        value = SoftmaxCrossEntropy(label_smoothing=eps, smoothing=smoothing)(*to_device(device, logits, labels))
        assert_close(np.float64(value), -(q * logp).sum(axis=1).mean())


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing: expected a value in \\[0, 1\\], got 1.5"),
    ({"smoothing": "some"}, ValueError, "smoothing: expected 'others' or 'all', got 'some'"),
    ({"reduction": "none"}, ValueError, "reduction: expected 'mean' or 'sum', got 'none'"),
])
def test_xent_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SoftmaxCrossEntropy(**kwargs)


def test_xent_bad_labels_are_reported_by_the_op(device):
    logits, labels = data("xent-bad")
    with pytest.raises(ValueError, match="labels"):
        SoftmaxCrossEntropy()(*to_device(device, logits, labels + 10))


# ---- MSELoss ----

@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_value_and_gradient(device, reduction, dtype):
    rng = np.random.default_rng(seed_of("mse", reduction))
    y, t = rng.standard_normal((2, 6, 3))
    y = y.astype(dtype)
    loss = MSELoss(reduction)
    sq = (y.astype(np.float64) - t) ** 2
    expected = sq.mean() if reduction == "mean" else sq.sum()
    y_d, t_d = to_device(device, y, t)
    value, grad = loss.value_and_grad(y_d, t_d)
    assert type(value) is float and type(loss(y_d, t_d)) is float
    assert_close(np.array([value, loss(y_d, t_d)], dtype), np.array([expected, expected], dtype))
    assert grad.dtype == dtype and grad.shape == y.shape
    scale = 1.0 / y.size if reduction == "mean" else 1.0
    assert_close(grad, (2 * scale * (y.astype(np.float64) - t)).astype(dtype))
    if dtype == np.float64:
        assert_grad_matches_finite_differences(device, loss, y, t)


def test_mse_bad_arguments(device):
    with pytest.raises(ValueError, match="reduction"):
        MSELoss("none")
    with pytest.raises(ValueError, match=r"target: expected shape \(4, 2\)"):
        MSELoss()(*to_device(device, np.zeros((4, 2)), np.zeros((4, 1))))
    with pytest.raises(TypeError, match="output: expected a floating-point numpy.ndarray"):
        MSELoss()(*to_device(device, np.zeros((4, 2), np.int64), np.zeros((4, 2))))


# ---- knowledge distillation ----

def kd_formula(student, teacher, labels, t, alpha, label_smoothing=0.0):
    p_t = np_softmax(teacher / t)
    log_ps = np.log(np_softmax(student / t))
    kl = (p_t * (np.log(p_t) - log_ps)).sum(axis=1).mean()
    ce = reference.softmax_cross_entropy(student, labels, label_smoothing=label_smoothing)
    return alpha * t * t * kl + (1 - alpha) * ce


@pytest.mark.parametrize("t, alpha, label_smoothing", [(4.0, 0.9, 0.0), (1.0, 0.5, 0.1), (2.5, 1.0, 0.0)])
def test_distillation_value_and_gradient(device, t, alpha, label_smoothing):
    student, labels = data("kd-student")
    teacher, _ = data("kd-teacher")
    loss = DistillationLoss(temperature=t, alpha=alpha, label_smoothing=label_smoothing)
    expected = kd_formula(student, teacher, labels, t, alpha, label_smoothing)
    student_d, labels_d, teacher_d = to_device(device, student, labels, teacher)
    assert_close(np.float64(loss(student_d, (labels_d, teacher_d))), expected)
    value, grad = loss.value_and_grad(student_d, (labels_d, teacher_d))
    assert_close(np.float64(value), expected)
    assert grad.shape == student.shape
    assert_grad_matches_finite_differences(device, loss, student, (labels, teacher))


@pytest.mark.parametrize("offset", [0.0, 1e3, 1e4, 1e5])
def test_distillation_keeps_float32_precision_for_large_logits(device, offset):
    """Issue 12: DistillationLoss takes ops.log_softmax of the student, which lost float32
    precision as the logits grew (3.8e-4 at an offset of 1e4), and so did its KL term. Against the
    formula in float32 and in float64: the error no longer grows with the offset."""
    rng = np.random.default_rng(seed_of("kd-offset", offset))
    teacher = (np.float32(offset) + 3 * rng.standard_normal((16, 10))).astype(np.float32)
    student = (teacher + rng.standard_normal(teacher.shape)).astype(np.float32)
    labels = rng.integers(0, 10, 16)
    loss = DistillationLoss(temperature=2.0, alpha=1.0)
    value = loss(to_device(device, student), (to_device(device, labels), to_device(device, teacher)))
    student64, teacher64 = student.astype(np.float64), teacher.astype(np.float64)
    assert_close(np.float32(value), np.float32(kd_formula(student, teacher, labels, 2.0, 1.0)),
                 kd_formula(student64, teacher64, labels, 2.0, 1.0))


def test_distillation_with_alpha_0_is_cross_entropy(device):
    student, labels = data("kd-ce")
    teacher, _ = data("kd-ce-teacher")
    value, grad = DistillationLoss(alpha=0.0, label_smoothing=0.1).value_and_grad(
        to_device(device, student), (to_device(device, labels), to_device(device, teacher)))
    ref_value, ref_grad = reference.softmax_cross_entropy_with_grad(student, labels, label_smoothing=0.1)
    assert_close(np.float64(value), ref_value)
    assert_close(grad, ref_grad)


def test_distillation_of_the_teacher_itself_has_no_soft_term(device):
    logits, labels = data("kd-same")
    logits_d, labels_d = to_device(device, logits, labels)
    value, grad = DistillationLoss(alpha=1.0).value_and_grad(logits_d, (labels_d, logits_d))
    assert_close(np.float64(value), np.float64(0.0))
    assert_close(grad, np.zeros_like(logits))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distillation_dtypes(device, dtype):
    student, labels = data("kd-dtype", dtype=dtype)
    teacher, _ = data("kd-dtype-teacher")  # float64 teacher for any student
    value, grad = DistillationLoss().value_and_grad(to_device(device, student),
                                                    (to_device(device, labels), to_device(device, teacher)))
    assert type(value) is float and grad.dtype == dtype
    # Against the formula in float64 (the float32 student's values taken as exact).
    assert_close(dtype(value), dtype(kd_formula(student.astype(np.float64), teacher, labels, 4.0, 0.9)),
                 kind="transcendental")


def test_soft_targets(device):
    teacher, _ = data("soft")
    teacher_d = to_device(device, teacher)
    for t in [1.0, 3.0]:
        assert_close(soft_targets(teacher_d, t), np_softmax(teacher / t))
    # A higher temperature gives a flatter distribution.
    assert (to_numpy(soft_targets(teacher_d, 5.0)).max(axis=1) < to_numpy(soft_targets(teacher_d, 1.0)).max(axis=1)).all()
    with pytest.raises(ValueError, match="temperature: expected a value > 0, got 0"):
        soft_targets(teacher_d, 0)


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"temperature": 0.0}, ValueError, "temperature: expected a value > 0"),
    ({"alpha": 1.5}, ValueError, "alpha: expected a value in \\[0, 1\\]"),
    ({"label_smoothing": -0.1}, ValueError, "label_smoothing"),
])
def test_distillation_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        DistillationLoss(**kwargs)


def test_distillation_bad_targets(device):
    student, labels = to_device(device, *data("kd-bad"))
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
