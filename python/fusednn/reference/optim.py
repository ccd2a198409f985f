"""NumPy reference of :mod:`fusednn.ops.optim`: one update of every array given, in place,
written straight from the rules in ``docs/optim.md``.

Each rule is a loop over the list of parameters that updates each parameter and its states
with NumPy operations in the arrays' dtype (every hyperparameter is cast to that dtype, as the
kernels do), in the order of operations of ``torch.optim``'s single-tensor implementations
(``foreach=False``), so that float32 results agree with PyTorch to a few ulps per step:

- ``a.add(b, alpha=c)`` is ``a + c * b``; ``a.addcmul(b, c, value=v)`` is ``a + v * b * c``
  and ``a.addcdiv(b, c, value=v)`` is ``a + v * b / c``, evaluated left to right;
- ``a.lerp(b, w)`` is ``a + w * (b - a)`` when ``|w| < 0.5``, else ``b - (b - a) * (1 - w)``;
- scalars derived from hyperparameters (``1 - beta``, bias corrections, Adagrad's decayed
  rate, NAdam's coefficients) are computed in Python floats (double) and then cast.

Every argument is checked before anything is written, with the messages of the compiled ops:
scalars by the helpers of ``fusednn._checks`` (the one rule), arrays here.
"""

import math

import numpy as np

from fusednn import _checks
from fusednn._checks import at_least_zero as _at_least_zero
from fusednn._checks import flag as _flag
from fusednn._checks import positive as _positive
from fusednn._checks import real as _real

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _unit(name, value, closed_right=True):
    return _checks.in_unit_interval(name, value, closed_right)


def _step(value):
    return _checks.step_number("step", value)


# ---- array checks ----

def _type_name(obj):
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _as_list(obj, name):
    """An array or a list/tuple of arrays, as a list."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if not isinstance(obj, (list, tuple)):
        raise TypeError(f"{name}: expected an array or a list of arrays, got {_type_name(obj)}")
    return list(obj)


def _ndarray(a, name):
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {_type_name(a)}")


def _float_array(a, name):
    """An array read as it is (any strides): float32 or float64."""
    _ndarray(a, name)
    if a.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: expected dtype float32 or float64, got {_checks.dtype_str(a.dtype)}")


def _in_place(a, name, dtype, shape):
    """An array written in place: exactly this dtype and shape, writable, C-contiguous and
    aligned (never copied)."""
    _ndarray(a, name)
    if a.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {_checks.dtype_str(a.dtype)}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    if not a.flags.writeable:
        raise ValueError(f"{name}: expected a writable array, got a read-only one")
    if not (a.flags.c_contiguous and a.flags.aligned):
        raise ValueError(f"{name}: expected a C-contiguous, aligned array (it is written in place, so it cannot be "
                         f"copied), got strides {a.strides}")


def _byte_range(a):
    """The bytes [lo, hi) the array spans."""
    lo = hi = a.__array_interface__["data"][0]
    for n, st in zip(a.shape, a.strides):
        if st < 0:
            lo += (n - 1) * st
        else:
            hi += (n - 1) * st
    return lo, hi + a.itemsize


def _check_disjoint(lists):
    """ValueError unless no array written in place shares memory with another array of the call.

    lists: (name, arrays, written) in argument order. Arrays only read may overlap each other; a
    read array that is not C-contiguous and aligned is read through a copy, as the kernels do.
    Sorted by start and swept once (O(n log n)), as the binding does."""
    regions = []
    for k, (name, arrays, written) in enumerate(lists):
        for i, a in enumerate(arrays or []):
            if a.size and (written or (a.flags.c_contiguous and a.flags.aligned)):
                regions.append((*_byte_range(a), written, k, i, name))
    regions.sort(key=lambda r: (r[0], r[3], r[4]))
    reach = reach_written = None
    for r in regions:
        if r[2] and reach is not None and reach[1] > r[0]:
            _overlap_error(reach, r)
        if not r[2] and reach_written is not None and reach_written[1] > r[0]:
            _overlap_error(reach_written, r)
        if reach is None or r[1] > reach[1]:
            reach = r
        if r[2] and (reach_written is None or r[1] > reach_written[1]):
            reach_written = r


def _overlap_error(a, b):
    # The written one first; of two written ones, the later argument.
    first, second = (a, b) if (a[2] != b[2] and a[2]) or (a[2] == b[2] and (a[3], a[4]) > (b[3], b[4])) else (b, a)
    n1, n2 = f"{first[5]}[{first[4]}]", f"{second[5]}[{second[4]}]"
    why = "both are written in place" if second[2] else f"the kernel reads {n2} while it writes {n1}"
    raise ValueError(f"{n1}: must not share memory with {n2} ({why})")


def _collect(params, grads, **states):
    """The checked lists: params, grads and one list per state (None where not given)."""
    ps, gs = _as_list(params, "params"), _as_list(grads, "grads")
    if len(gs) != len(ps):
        raise ValueError(f"grads: expected {len(ps)} arrays (one per parameter), got {len(gs)}")
    dtype = None
    for i, (p, g) in enumerate(zip(ps, gs)):
        if i == 0:
            _float_array(p, "params[0]")
            dtype = p.dtype
        _in_place(p, f"params[{i}]", dtype, getattr(p, "shape", ()))
        _float_array(g, f"grads[{i}]")
        if g.dtype != dtype:
            raise TypeError(f"grads[{i}]: expected dtype {dtype} (the dtype of params[{i}]), got {g.dtype}")
        if g.shape != p.shape:
            raise ValueError(f"grads[{i}]: expected shape {p.shape} (the shape of params[{i}]), got {g.shape}")
    out = []
    for name, obj in states.items():
        if obj is None:
            out.append(None)
            continue
        items = _as_list(obj, name)
        if len(items) != len(ps):
            raise ValueError(f"{name}: expected {len(ps)} arrays (one per parameter), got {len(items)}")
        for i, s in enumerate(items):
            _in_place(s, f"{name}[{i}]", dtype, ps[i].shape)
        out.append(items)
    _check_disjoint([("params", ps, True), ("grads", gs, False)] +
                    [(name, items, True) for name, items in zip(states, out)])
    return ps, gs, out


def _required(ps, states, names, why=None):
    """ValueError when a state the rule needs is None (nothing to update when params is empty)."""
    if not ps:
        return
    for name, s in zip(names, states):
        if s is None:
            raise ValueError(f"{name}: {why}, got None" if why else f"{name}: expected arrays, got None")


# ---- the arithmetic shared by the rules ----

def _prepared_grad(g, dt, grad_scale, maximize):
    """The gradient times grad_scale, negated when maximizing (a new array)."""
    g = g * dt(grad_scale)
    return -g if maximize else g


def _lerp(a, b, w, dt):
    """torch.lerp(a, b, w) for a Python float w, in the arrays' dtype."""
    w = dt(w)
    if abs(w) < 0.5:
        return a + w * (b - a)
    return b - (b - a) * (dt(1) - w)


# ---- the rules ----

def sgd_step(params, grads, momentum_buffers, *, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
             maximize=False, first_step=False, grad_scale=1.0):
    lr, momentum = _at_least_zero("lr", lr), _at_least_zero("momentum", momentum)
    dampening = _real("dampening", dampening)
    weight_decay = _at_least_zero("weight_decay", weight_decay)
    nesterov = _checks.nesterov(nesterov, momentum, dampening)
    maximize, first_step = _flag("maximize", maximize), _flag("first_step", first_step)
    grad_scale = _real("grad_scale", grad_scale)
    ps, gs, (bufs,) = _collect(params, grads, momentum_buffers=momentum_buffers)
    if momentum != 0:
        _required(ps, [bufs], ["momentum_buffers"], "required when momentum > 0")
    with np.errstate(all="ignore"):
        for i, (p, g) in enumerate(zip(ps, gs)):
            dt = p.dtype.type
            g = _prepared_grad(g, dt, grad_scale, maximize)
            if weight_decay != 0:
                g = g + dt(weight_decay) * p
            if momentum != 0:
                b = bufs[i]
                if first_step:
                    b[...] = g
                else:
                    b[...] = b * dt(momentum) + dt(1 - dampening) * g
                g = g + dt(momentum) * b if nesterov else b
            p[...] = p + dt(-lr) * g


def adagrad_step(params, grads, state_sums, *, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                 maximize=False, grad_scale=1.0):
    step = _step(step)
    lr, lr_decay = _at_least_zero("lr", lr), _at_least_zero("lr_decay", lr_decay)
    weight_decay, eps = _at_least_zero("weight_decay", weight_decay), _positive("eps", eps)
    maximize, grad_scale = _flag("maximize", maximize), _real("grad_scale", grad_scale)
    ps, gs, (sums,) = _collect(params, grads, state_sums=state_sums)
    _required(ps, [sums], ["state_sums"])
    clr = lr / (1 + (step - 1) * lr_decay)
    with np.errstate(all="ignore"):
        for p, g, s in zip(ps, gs, sums or []):
            dt = p.dtype.type
            g = _prepared_grad(g, dt, grad_scale, maximize)
            if weight_decay != 0:
                g = g + dt(weight_decay) * p
            s[...] = s + dt(1) * g * g
            std = np.sqrt(s) + dt(eps)
            p[...] = p + dt(-clr) * g / std


def rmsprop_step(params, grads, square_avgs, momentum_buffers, grad_avgs, *, lr=1e-2, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, maximize=False, grad_scale=1.0):
    lr, alpha = _at_least_zero("lr", lr), _unit("alpha", alpha)
    eps, weight_decay = _positive("eps", eps), _at_least_zero("weight_decay", weight_decay)
    momentum, centered = _at_least_zero("momentum", momentum), _flag("centered", centered)
    maximize, grad_scale = _flag("maximize", maximize), _real("grad_scale", grad_scale)
    ps, gs, (sqs, avgs, bufs) = _collect(params, grads, square_avgs=square_avgs, grad_avgs=grad_avgs,
                                         momentum_buffers=momentum_buffers)
    _required(ps, [sqs], ["square_avgs"])
    if centered:
        _required(ps, [avgs], ["grad_avgs"], "required when centered=True")
    if momentum > 0:
        _required(ps, [bufs], ["momentum_buffers"], "required when momentum > 0")
    with np.errstate(all="ignore"):
        for i, (p, g) in enumerate(zip(ps, gs)):
            dt = p.dtype.type
            g = _prepared_grad(g, dt, grad_scale, maximize)
            if weight_decay != 0:
                g = g + dt(weight_decay) * p
            v = sqs[i]
            v[...] = v * dt(alpha) + dt(1 - alpha) * g * g
            if centered:
                a = avgs[i]
                a[...] = _lerp(a, g, 1 - alpha, dt)
                # 0 where negative or within the rounding error of v (docs/optim.md); NaN stays NaN
                var = v + dt(-1) * a * a
                d = np.sqrt(np.where(var < dt(4 * np.finfo(dt).eps) * v, dt(0), var))
            else:
                d = np.sqrt(v)
            d = d + dt(eps)
            if momentum > 0:
                b = bufs[i]
                b[...] = b * dt(momentum) + dt(1) * g / d
                p[...] = p + dt(-lr) * b
            else:
                p[...] = p + dt(-lr) * g / d


def adadelta_step(params, grads, square_avgs, acc_deltas, *, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                  maximize=False, grad_scale=1.0):
    lr, rho = _at_least_zero("lr", lr), _unit("rho", rho)
    eps, weight_decay = _positive("eps", eps), _at_least_zero("weight_decay", weight_decay)
    maximize, grad_scale = _flag("maximize", maximize), _real("grad_scale", grad_scale)
    ps, gs, (sqs, accs) = _collect(params, grads, square_avgs=square_avgs, acc_deltas=acc_deltas)
    _required(ps, [sqs, accs], ["square_avgs", "acc_deltas"])
    with np.errstate(all="ignore"):
        for p, g, v, u in zip(ps, gs, sqs or [], accs or []):
            dt = p.dtype.type
            g = _prepared_grad(g, dt, grad_scale, maximize)
            if weight_decay != 0:
                g = g + dt(weight_decay) * p
            v[...] = v * dt(rho) + dt(1 - rho) * g * g
            std = np.sqrt(v + dt(eps))
            delta = np.sqrt(u + dt(eps)) / std * g
            u[...] = u * dt(rho) + dt(1 - rho) * delta * delta
            p[...] = p + dt(-lr) * delta


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
              eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled_weight_decay=False, maximize=False,
              grad_scale=1.0):
    step = _step(step)
    lr = _at_least_zero("lr", lr)
    beta1, beta2 = _unit("beta1", beta1, closed_right=False), _unit("beta2", beta2, closed_right=False)
    eps, weight_decay = _positive("eps", eps), _at_least_zero("weight_decay", weight_decay)
    amsgrad = _flag("amsgrad", amsgrad)
    decoupled_weight_decay = _flag("decoupled_weight_decay", decoupled_weight_decay)
    maximize, grad_scale = _flag("maximize", maximize), _real("grad_scale", grad_scale)
    ps, gs, (ms, vs, vmaxs) = _collect(params, grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs,
                                       max_exp_avg_sqs=max_exp_avg_sqs)
    _required(ps, [ms, vs], ["exp_avgs", "exp_avg_sqs"])
    if amsgrad:
        _required(ps, [vmaxs], ["max_exp_avg_sqs"], "required when amsgrad=True")
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    with np.errstate(all="ignore"):
        for i, (p, g) in enumerate(zip(ps, gs)):
            dt = p.dtype.type
            g = _prepared_grad(g, dt, grad_scale, maximize)
            if weight_decay != 0:
                if decoupled_weight_decay:
                    p[...] = p * dt(1 - lr * weight_decay)
                else:
                    g = g + dt(weight_decay) * p
            m, v = ms[i], vs[i]
            m[...] = _lerp(m, g, 1 - beta1, dt)
            v[...] = v * dt(beta2) + dt(1 - beta2) * g * g
            if amsgrad:
                vmax = vmaxs[i]
                vmax[...] = np.maximum(vmax, v)
                v = vmax
            denom = np.sqrt(v) / dt(bias_correction2_sqrt) + dt(eps)
            p[...] = p + dt(-step_size) * m / denom


def nadam_step(params, grads, exp_avgs, exp_avg_sqs, *, step, mu_product, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
               weight_decay=0.0, momentum_decay=4e-3, decoupled_weight_decay=False, maximize=False, grad_scale=1.0):
    step = _step(step)
    lr = _at_least_zero("lr", lr)
    beta1, beta2 = _unit("beta1", beta1, closed_right=False), _unit("beta2", beta2, closed_right=False)
    eps, weight_decay = _positive("eps", eps), _at_least_zero("weight_decay", weight_decay)
    momentum_decay = _at_least_zero("momentum_decay", momentum_decay)
    mu_product = _real("mu_product", mu_product)
    decoupled_weight_decay = _flag("decoupled_weight_decay", decoupled_weight_decay)
    maximize, grad_scale = _flag("maximize", maximize), _real("grad_scale", grad_scale)
    ps, gs, (ms, vs) = _collect(params, grads, exp_avgs=exp_avgs, exp_avg_sqs=exp_avg_sqs)
    _required(ps, [ms, vs], ["exp_avgs", "exp_avg_sqs"])
    bias_correction2 = 1 - beta2 ** step
    mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))
    mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * momentum_decay)))
    mu_product = mu_product * mu
    mu_product_next = mu_product * mu_next
    grad_coef = -lr * (1.0 - mu) / (1.0 - mu_product)
    avg_coef = (-lr * mu_next) / (1.0 - mu_product_next)
    with np.errstate(all="ignore"):
        for p, g, m, v in zip(ps, gs, ms or [], vs or []):
            dt = p.dtype.type
            g = _prepared_grad(g, dt, grad_scale, maximize)
            if weight_decay != 0:
                if decoupled_weight_decay:
                    p[...] = p * dt(1 - lr * weight_decay)
                else:
                    g = g + dt(weight_decay) * p
            m[...] = _lerp(m, g, 1 - beta1, dt)
            v[...] = v * dt(beta2) + dt(1 - beta2) * g * g
            denom = np.sqrt(v / dt(bias_correction2)) + dt(eps)
            p[...] = p + dt(grad_coef) * g / denom
            p[...] = p + dt(avg_coef) * m / denom
    return mu_product


# ---- norms, clipping, scaling ----

def _flat_list(obj, name, in_place):
    items = _as_list(obj, name)
    for i, a in enumerate(items):
        _float_array(a, f"{name}[{i}]")
        if a.dtype != items[0].dtype:
            raise TypeError(f"{name}[{i}]: expected dtype {items[0].dtype} (the dtype of {name}[0]), got {a.dtype}")
        if in_place:
            _in_place(a, f"{name}[{i}]", a.dtype, a.shape)
    if in_place:
        _check_disjoint([(name, items, True)])
    return items


def grad_norm(grads, norm_type=2.0):
    v = _checks.norm_type(norm_type)
    items = _flat_list(grads, "grads", in_place=False)
    if v == 2.0:
        total = sum(float(np.sum(np.square(g.astype(np.float64)))) for g in items)
        return math.sqrt(total)
    maxima = [float(np.max(np.abs(g))) for g in items if g.size]
    if any(math.isnan(m) for m in maxima):
        return math.nan
    return max(maxima, default=0.0)


def clip_grad_value_(grads, clip_value):
    lo, hi = _checks.clip_interval("clip_value", clip_value)
    for g in _flat_list(grads, "grads", in_place=True):
        np.clip(g, g.dtype.type(lo), g.dtype.type(hi), out=g)


def scale_(arrays, factor):
    factor = _real("factor", factor)
    with np.errstate(all="ignore"):  # inf * 0 is NaN, as in the kernel
        for a in _flat_list(arrays, "arrays", in_place=True):
            a *= a.dtype.type(factor)


def add_penalty_grad(params, grads, *, l1=0.0, l2=0.0, mask=None):
    """grads += l1 * sign(w), then grads += l2 * w, where mask; returns sum(l1 |w| + l2/2 w^2)."""
    l1, l2 = _at_least_zero("l1", l1), _at_least_zero("l2", l2)
    where = np.ones(params.shape, bool) if mask is None else np.asarray(mask, bool)
    w = params.astype(np.float64)[where]
    grads[where] = (grads[where] + params.dtype.type(l1) * np.sign(params[where])) + params.dtype.type(l2) * params[where]
    return float(l1 * np.abs(w).sum() + 0.5 * l2 * (w * w).sum())

