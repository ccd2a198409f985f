"""Loss objects: ``loss(output, target)`` is the value (a float) and
``loss.value_and_grad(output, target)`` returns ``(value, d_output)``, the gradient of that
value with respect to ``output`` (same shape and dtype as ``output``)."""

import numpy as np

from fusednn import _C, _checks, ops
from fusednn._backend import array_module, is_array
from fusednn.nn.buffers import ReusableBuffers

__all__ = ["SoftmaxCrossEntropy", "MSELoss", "DistillationLoss", "soft_targets"]

_REDUCTIONS = ("mean", "sum")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
    return reduction


def _check_float_array(name, a):
    if not is_array(a) or not np.issubdtype(a.dtype, np.floating):
        got = a.dtype if is_array(a) else f"{type(a).__module__}.{type(a).__qualname__}"
        raise TypeError(f"{name}: expected a floating-point numpy.ndarray (or cupy.ndarray), got {got}")


class SoftmaxCrossEntropy:
    """Cross-entropy of softmax(logits) against integer labels, by the fused op
    :func:`fusednn.ops.softmax_cross_entropy_with_grad`. ``smoothing="others"`` gives the true
    class 1 - eps and every other class eps / (K - 1) (the course's convention); ``"all"`` is
    torch's (1 - eps) one-hot + eps / K. ``weight`` (K class weights, cast to the logits' dtype),
    ``ignore_index`` and ``reduction`` (``"mean"`` over the counted rows' weight, or ``"sum"``)
    are those of ``torch.nn.functional.cross_entropy``."""

    name = "loss"

    def __init__(self, label_smoothing=0.0, smoothing="others", weight=None, ignore_index=-100, reduction="mean"):
        self.label_smoothing = _checks.in_unit_interval("label_smoothing", label_smoothing)
        if smoothing not in ("others", "all"):
            raise ValueError(f"smoothing: expected 'others' or 'all', got {smoothing!r}")
        self.smoothing = smoothing
        self.weight = None if weight is None else np.asarray(weight)
        self.ignore_index = ignore_index
        self.reduction = _check_reduction(reduction)
        self._buffers = ReusableBuffers()

    def _options(self, logits):
        weight = None if self.weight is None else array_module(logits).asarray(self.weight, logits.dtype)
        return dict(label_smoothing=self.label_smoothing, smoothing=self.smoothing, weight=weight,
                    ignore_index=self.ignore_index, reduction=self.reduction)

    def __call__(self, output, target):
        return float(ops.softmax_cross_entropy(output, target, **self._options(output)))

    def value_and_grad(self, output, target):
        """The loss (a float) and its gradient with respect to ``output``, in an array this loss
        reuses from step to step once nothing else holds it (:mod:`fusednn.nn.buffers`)."""
        if type(output) is np.ndarray and type(target) is np.ndarray and self.weight is None:
            # The common case: the compiled op directly (its binding checks the arrays).
            out = self._buffers.get("grad", output.shape, output.dtype)
            loss, grad = _C.softmax_cross_entropy(output, target, self.label_smoothing, self.smoothing, None,
                                                  self.ignore_index, self.reduction, True, out)
            return float(loss), grad
        out = self._buffers.get("grad", output.shape, output.dtype, array_module(output))
        loss, grad = ops.softmax_cross_entropy_with_grad(output, target, **self._options(output), out=out)
        return float(loss), grad

    def __repr__(self):
        weight = "None" if self.weight is None else f"<{self.weight.shape[0]} class weights>"
        return (f"SoftmaxCrossEntropy(label_smoothing={self.label_smoothing}, smoothing={self.smoothing!r}, "
                f"weight={weight}, ignore_index={self.ignore_index}, reduction={self.reduction!r})")


class MSELoss:
    """Squared error ``sum((output - target)^2)``, divided by the number of elements for
    ``reduction="mean"`` (as ``torch.nn.MSELoss``). ``target`` must have ``output``'s shape."""

    name = "loss"

    def __init__(self, reduction="mean"):
        self.reduction = _check_reduction(reduction)

    def _diff_and_scale(self, output, target):
        _check_float_array("output", output)
        target = array_module(output).asarray(target)
        if target.shape != output.shape:
            raise ValueError(f"target: expected shape {output.shape} (the shape of output), got {target.shape}")
        return output - target, 1.0 / output.size if self.reduction == "mean" else 1.0

    def __call__(self, output, target):
        diff, scale = self._diff_and_scale(output, target)
        return scale * float(array_module(diff).vdot(diff, diff))

    def value_and_grad(self, output, target):
        diff, scale = self._diff_and_scale(output, target)
        value = scale * float(array_module(diff).vdot(diff, diff))
        return value, (2.0 * scale * diff).astype(output.dtype, copy=False)

    def __repr__(self):
        return f"MSELoss(reduction={self.reduction!r})"


def soft_targets(teacher_logits, temperature):
    """The teacher's softened distribution ``softmax(teacher_logits / temperature)`` (last axis)."""
    _check_float_array("teacher_logits", teacher_logits)
    return ops.softmax(teacher_logits / _checks.positive("temperature", temperature))


class DistillationLoss:
    """Knowledge distillation (Hinton et al., 2015). ``target`` is the pair
    ``(labels, teacher_logits)``; with T the temperature, p_t = softmax(teacher / T) and
    p_s = softmax(student / T)::

        loss = alpha * T^2 * mean_rows KL(p_t || p_s) + (1 - alpha) * CE(student, labels)

    The T^2 keeps the soft term's gradient, ``alpha * T * (p_s - p_t) / N``, on the scale of the
    hard one as T changes. CE is :class:`SoftmaxCrossEntropy` with ``label_smoothing`` (the
    course's ``"others"`` convention) and a mean over the rows; the KL mean is over all N rows.
    """

    name = "loss"

    def __init__(self, temperature=4.0, alpha=0.9, label_smoothing=0.0):
        self.temperature = _checks.positive("temperature", temperature)
        self.alpha = _checks.in_unit_interval("alpha", alpha)
        self.cross_entropy = SoftmaxCrossEntropy(label_smoothing=label_smoothing)

    def _parts(self, student_logits, target):
        """(mean KL(p_t || p_s) over the rows, log p_s, p_t, labels)."""
        _check_float_array("student_logits", student_logits)
        if not isinstance(target, tuple) or len(target) != 2:
            raise TypeError(f"target: expected a pair (labels, teacher_logits), got {type(target).__qualname__}")
        labels, teacher_logits = target
        _check_float_array("teacher_logits", teacher_logits)
        if teacher_logits.shape != student_logits.shape:
            raise ValueError(f"teacher_logits: expected shape {student_logits.shape} (the shape of student_logits), "
                             f"got {teacher_logits.shape}")
        t = self.temperature
        log_ps = ops.log_softmax(student_logits / t)
        log_pt = ops.log_softmax(teacher_logits.astype(student_logits.dtype, copy=False) / t)
        p_t = np.exp(log_pt)
        kl = float(np.vdot(p_t, log_pt - log_ps)) / student_logits.shape[0]
        return kl, log_ps, p_t, labels

    def __call__(self, output, target):
        kl, _, _, labels = self._parts(output, target)
        return self.alpha * self.temperature ** 2 * kl + (1.0 - self.alpha) * self.cross_entropy(output, labels)

    def value_and_grad(self, output, target):
        kl, log_ps, p_t, labels = self._parts(output, target)
        ce, d_ce = self.cross_entropy.value_and_grad(output, labels)
        a, t = self.alpha, self.temperature
        grad = (a * t / output.shape[0]) * (np.exp(log_ps) - p_t) + (1.0 - a) * d_ce
        return a * t ** 2 * kl + (1.0 - a) * ce, grad.astype(output.dtype, copy=False)

    def __repr__(self):
        return (f"DistillationLoss(temperature={self.temperature}, alpha={self.alpha}, "
                f"label_smoothing={self.cross_entropy.label_smoothing})")
