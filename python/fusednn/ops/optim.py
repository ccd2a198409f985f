"""Fused optimizer updates over lists of arrays (a flat parameter buffer is a list of one),
gradient norms and clipping. Exact rules: docs/optim.md. Every update follows torch.optim's
single-tensor order of operations and updates params and states in place.

Scalar arguments are checked here (fusednn._checks); the arrays in the binding, which also
refuses memory overlap across all entries of all lists of a call: an array written in place
(a parameter, a state, an array clipped or scaled) must not share memory with any other array
of the call; arrays that are only read (gradients) may share memory with each other."""

from fusednn import _checks
from fusednn._backend import backend_for


def _backend(**arrays):
    """backend_for, with the lists of arrays these ops take checked entry by entry."""
    return backend_for(**{k: tuple(v) if isinstance(v, list) else v for k, v in arrays.items()})


# The updates with their scalars already checked (positional, in the binding's order): the public
# functions below check and call these; the optimizer classes, which check their hyperparameters
# themselves once per step, call these directly. The arrays are checked in the binding.

def _sgd(params, grads, momentum_buffers, *scalars):
    _backend(params=params, grads=grads, momentum_buffers=momentum_buffers).sgd_step(
        params, grads, momentum_buffers, *scalars)


def _adagrad(params, grads, state_sums, *scalars):
    _backend(params=params, grads=grads, state_sums=state_sums).adagrad_step(params, grads, state_sums, *scalars)


def _rmsprop(params, grads, square_avgs, momentum_buffers, grad_avgs, *scalars):
    _backend(params=params, grads=grads, square_avgs=square_avgs, momentum_buffers=momentum_buffers,
             grad_avgs=grad_avgs).rmsprop_step(params, grads, square_avgs, momentum_buffers, grad_avgs, *scalars)


def _adadelta(params, grads, square_avgs, acc_deltas, *scalars):
    _backend(params=params, grads=grads, square_avgs=square_avgs, acc_deltas=acc_deltas).adadelta_step(
        params, grads, square_avgs, acc_deltas, *scalars)


def _adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *scalars):
    _backend(params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs,
             max_exp_avg_sqs=max_exp_avg_sqs).adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                                                        *scalars)


def _nadam(params, grads, exp_avgs, exp_avg_sqs, *scalars):
    return _backend(params=params, grads=grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs).nadam_step(
        params, grads, exp_avgs, exp_avg_sqs, *scalars)


def _check_disjoint(arrays, name):
    """ValueError unless the arrays (all updated in place, any float dtype, one device) share no
    memory; the binding's check, for the optimizer classes' parameters."""
    if arrays:
        _backend(**{name: list(arrays)}).check_disjoint(list(arrays), name)


def sgd_step(params, grads, momentum_buffers, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
             maximize=False, first_step=False, grad_scale=1.0):
    """SGD with momentum, dampening, Nesterov and coupled weight decay (``torch.optim.SGD``).
    ``first_step=True`` starts the momentum buffers at the gradient, as torch does."""
    lr, momentum = _checks.at_least_zero("lr", lr), _checks.at_least_zero("momentum", momentum)
    dampening = _checks.real("dampening", dampening)
    weight_decay = _checks.at_least_zero("weight_decay", weight_decay)
    nesterov = _checks.nesterov(nesterov, momentum, dampening)
    maximize, first_step = _checks.flag("maximize", maximize), _checks.flag("first_step", first_step)
    grad_scale = _checks.real("grad_scale", grad_scale)
    _sgd(params, grads, momentum_buffers, lr, momentum, dampening, nesterov, weight_decay, maximize, first_step,
         grad_scale)


def adagrad_step(params, grads, state_sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 maximize=False, grad_scale=1.0):
    """Adagrad (``torch.optim.Adagrad``); ``step`` counts updates from 1."""
    step = _checks.step_number("step", step)
    lr, lr_decay = _checks.at_least_zero("lr", lr), _checks.at_least_zero("lr_decay", lr_decay)
    weight_decay, eps = _checks.at_least_zero("weight_decay", weight_decay), _checks.positive("eps", eps)
    maximize, grad_scale = _checks.flag("maximize", maximize), _checks.real("grad_scale", grad_scale)
    _adagrad(params, grads, state_sums, step, lr, lr_decay, weight_decay, eps, maximize, grad_scale)


def rmsprop_step(params, grads, square_avgs, momentum_buffers, grad_avgs, *, lr=1e-2, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, maximize=False, grad_scale=1.0):
    """RMSprop, optionally centered and with momentum (``torch.optim.RMSprop``). Centered, the
    variance estimate ``square_avg - grad_avg**2`` is clamped at 0 before its square root."""
    lr, alpha = _checks.at_least_zero("lr", lr), _checks.in_unit_interval("alpha", alpha)
    eps, weight_decay = _checks.positive("eps", eps), _checks.at_least_zero("weight_decay", weight_decay)
    momentum, centered = _checks.at_least_zero("momentum", momentum), _checks.flag("centered", centered)
    maximize, grad_scale = _checks.flag("maximize", maximize), _checks.real("grad_scale", grad_scale)
    _rmsprop(params, grads, square_avgs, momentum_buffers, grad_avgs, lr, alpha, eps, weight_decay, momentum, centered,
             maximize, grad_scale)


def adadelta_step(params, grads, square_avgs, acc_deltas, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                  maximize=False, grad_scale=1.0):
    """Adadelta (``torch.optim.Adadelta``)."""
    lr, rho = _checks.at_least_zero("lr", lr), _checks.in_unit_interval("rho", rho)
    eps, weight_decay = _checks.positive("eps", eps), _checks.at_least_zero("weight_decay", weight_decay)
    maximize, grad_scale = _checks.flag("maximize", maximize), _checks.real("grad_scale", grad_scale)
    _adadelta(params, grads, square_avgs, acc_deltas, lr, rho, eps, weight_decay, maximize, grad_scale)


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
              eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled_weight_decay=False, maximize=False,
              grad_scale=1.0):
    """Adam, AMSGrad and (``decoupled_weight_decay=True``) AdamW, as ``torch.optim.Adam``."""
    step = _checks.step_number("step", step)
    lr = _checks.at_least_zero("lr", lr)
    beta1 = _checks.in_unit_interval("beta1", beta1, closed_right=False)
    beta2 = _checks.in_unit_interval("beta2", beta2, closed_right=False)
    eps, weight_decay = _checks.positive("eps", eps), _checks.at_least_zero("weight_decay", weight_decay)
    amsgrad = _checks.flag("amsgrad", amsgrad)
    decoupled_weight_decay = _checks.flag("decoupled_weight_decay", decoupled_weight_decay)
    maximize, grad_scale = _checks.flag("maximize", maximize), _checks.real("grad_scale", grad_scale)
    _adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, amsgrad,
          decoupled_weight_decay, maximize, grad_scale)


def nadam_step(params, grads, exp_avgs, exp_avg_sqs, *, step, mu_product, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.0, momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False, grad_scale=1.0):
    """NAdam (``torch.optim.NAdam``). ``mu_product`` is the product of the momentum
    coefficients of the previous steps (1.0 before the first); returns the new product."""
    step = _checks.step_number("step", step)
    lr = _checks.at_least_zero("lr", lr)
    beta1 = _checks.in_unit_interval("beta1", beta1, closed_right=False)
    beta2 = _checks.in_unit_interval("beta2", beta2, closed_right=False)
    eps, weight_decay = _checks.positive("eps", eps), _checks.at_least_zero("weight_decay", weight_decay)
    momentum_decay = _checks.at_least_zero("momentum_decay", momentum_decay)
    mu_product = _checks.real("mu_product", mu_product)
    decoupled_weight_decay = _checks.flag("decoupled_weight_decay", decoupled_weight_decay)
    maximize, grad_scale = _checks.flag("maximize", maximize), _checks.real("grad_scale", grad_scale)
    return _nadam(params, grads, exp_avgs, exp_avg_sqs, step, mu_product, lr, beta1, beta2, eps, weight_decay,
                  momentum_decay, decoupled_weight_decay, maximize, grad_scale)


def grad_norm(grads, norm_type=2.0):
    """The 2- or inf-norm of all gradients together, as a Python float (accumulated in
    float64 over a fixed partition: the same for any thread count)."""
    norm_type = _checks.norm_type(norm_type)
    return _backend(grads=grads).grad_norm(grads, norm_type != 2.0)


def clip_grad_value_(grads, clip_value):
    """Clamps every gradient in place into [-clip_value, clip_value] (a number >= 0, as torch's
    ``clip_grad_value_``), or into [a, b] for a pair ``clip_value=(a, b)`` with a <= b (either
    bound may be infinite). NaN stays NaN."""
    lo, hi = _checks.clip_interval("clip_value", clip_value)
    _backend(grads=grads).clip_grad_value_(grads, lo, hi)


def scale_(arrays, factor):
    """Multiplies every array by ``factor``, in place."""
    factor = _checks.real("factor", factor)
    _backend(arrays=arrays).scale_(arrays, factor)


def add_penalty_grad(params, grads, *, l1=0.0, l2=0.0, mask=None):
    """Adds the elastic-net gradient ``l1 * sign(w) + l2 * w`` to ``grads`` in place, in one pass
    (first the L1 term, then the L2 term), on the entries where ``mask`` is True (all when None),
    and returns the penalty ``sum(l1 * |w| + l2 / 2 * w^2)`` of those entries (a float,
    accumulated in float64 over a fixed partition). ``params`` and ``grads`` have one shape and
    float dtype (typically a model's flat buffers); ``mask`` is a boolean array of that shape."""
    l1, l2 = _checks.at_least_zero("l1", l1), _checks.at_least_zero("l2", l2)
    return _backend(params=params, grads=grads, mask=mask).add_penalty_grad(params, grads, l1, l2, mask)

