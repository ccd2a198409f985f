"""Diagnostics: look inside a model without changing it.

- :func:`activation_statistics`: the mean, standard deviation, fraction of zeros, extremes and a
  histogram of every layer's output, gathered in one forward pass;
- :func:`gradient_norms`: the gradient norm of every layer (or parameter), from one
  forward/backward pass or from the gradients the model holds;
- :func:`landscape_1d` and :func:`landscape_2d`: the loss along a line (a linear interpolation
  to other parameters, or a direction) and on a plane of two filter-normalized random directions
  (:func:`filter_normalized_direction`; Li et al., "Visualizing the Loss Landscape of Neural
  Nets", 2018);
- :func:`mc_dropout_predict`: Monte-Carlo dropout (Gal & Ghahramani, 2016), the mean and
  variance of the outputs over T passes with the dropout layers active.

Every function leaves the model as it found it: parameters, gradients, buffers (batch norm's
running statistics), each layer's mode and saved forward state, and the dropout RNG's seed and
offset are restored when it returns (or raises). The layers run their usual ``forward``; the
statistics are computed in float64 on the host.
"""

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from fusednn import _checks
from fusednn._backend import array_module, host_copy, is_array, to_host

__all__ = ["LayerStatistics", "activation_statistics", "gradient_norms", "filter_normalized_direction",
           "landscape_1d", "landscape_2d", "mc_dropout_predict"]


# ---- argument checks and restoring the model


def _check_model(model):
    from fusednn.nn.module import Module
    if not isinstance(model, Module):
        raise TypeError(f"model: expected a fusednn.nn.Module, got {type(model).__module__}.{type(model).__qualname__}")
    return model


def _check_input(name, x):
    if not is_array(x):
        raise TypeError(f"{name}: expected a numpy.ndarray (or cupy.ndarray), got "
                        f"{type(x).__module__}.{type(x).__qualname__}")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{name}: expected an array of samples along axis 0 (at least one), got shape {x.shape}")
    return x


def _count(name, value, minimum=1):
    v = _checks.integer(name, value, f"an integer >= {minimum}")
    if v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {v}")
    return v


@contextlib.contextmanager
def _preserved(model, params=False, grads=False):
    """Run the body and put the model back as it was: every module's attributes (mode, saved
    forward state, instance-level overrides), the buffers' values, the RNG's seed and offset,
    and with ``params``/``grads`` the parameter and gradient values."""
    model.params  # noqa: B018 (flatten first: the views are what we save and restore)
    modules = [m for _, m in model.named_modules()]
    attributes = [dict(vars(m)) for m in modules]
    buffers = [{n: host_copy(a) for n, a in m.buffers.items()} for m in modules]
    rngs = {id(m._rng): (m._rng, m._rng.seed, m._rng.offset) for m in modules}
    named = model.named_parameters()
    saved_params = [host_copy(p) for _, p in named] if params else None
    saved_grads = [host_copy(g) for _, g in model.named_gradients()] if grads else None
    try:
        yield
    finally:
        for m, attrs, bufs in zip(modules, attributes, buffers):
            vars(m).clear()
            vars(m).update(attrs)
            for n, value in bufs.items():
                m.buffers[n][...] = array_module(m.buffers[n]).asarray(value)
        for rng, seed, offset in rngs.values():
            rng.seed, rng.offset = seed, offset
        if params:
            for (_, p), value in zip(named, saved_params):
                p[...] = array_module(p).asarray(value)
        if grads:
            for (_, g), value in zip(model.named_gradients(), saved_grads):
                g[...] = array_module(g).asarray(value)


def _leaves(model):
    """(name, module) of the modules without children, in registration order; a model that is
    itself a leaf is named by its class."""
    leaves = [(name[:-1], m) for name, m in model.named_modules() if not m.children()]
    return [(name or type(m).__name__, m) for name, m in leaves]


def _default_loss(target):
    from fusednn.nn import losses
    return losses.SoftmaxCrossEntropy() if np.dtype(target.dtype).kind in "iu" else losses.MSELoss()


def _check_loss(loss, target):
    if loss is None:
        return _default_loss(target)
    if not callable(loss) or not hasattr(loss, "value_and_grad"):
        raise TypeError(f"loss: expected a fusednn.nn.losses object (loss(output, target) and value_and_grad), got "
                        f"{type(loss).__module__}.{type(loss).__qualname__}")
    return loss


# ---- activation statistics


@dataclass
class LayerStatistics:
    """Statistics of one layer's output over a forward pass: ``name`` (the dotted module name,
    e.g. ``"3"`` in a Sequential), ``layer`` (its class name), ``shape``, ``mean``, ``std``
    (population standard deviation), ``zero_fraction`` (the fraction of exact zeros),
    ``min``, ``max``, and ``histogram`` / ``bin_edges`` as :func:`numpy.histogram` gives them."""

    name: str
    layer: str
    shape: tuple
    mean: float
    std: float
    zero_fraction: float
    min: float
    max: float
    histogram: np.ndarray
    bin_edges: np.ndarray


def _statistics(name, module, y, bins, value_range):
    a = np.asarray(to_host(y), dtype=np.float64).ravel()
    finite = a[np.isfinite(a)]
    counts, edges = np.histogram(finite, bins=bins, range=value_range)
    return LayerStatistics(name=name, layer=type(module).__name__, shape=tuple(y.shape), mean=float(a.mean()),
                           std=float(a.std()), zero_fraction=float(np.mean(a == 0.0)), min=float(a.min()),
                           max=float(a.max()), histogram=counts, bin_edges=edges)


def activation_statistics(model, x, *, training=False, bins=50, range=None):  # noqa: A002 (numpy's name)
    """Statistics of every layer's output for the input batch ``x``, from one forward pass.

    Every module without children (Linear, ReLU, BatchNorm, Dropout, ...) is recorded each time
    it runs, in the order it runs; a Linear with a fused ReLU records its activated output.
    ``training`` is the mode of the pass (False: evaluation, batch norm with its running
    statistics and no dropout; True: batch statistics and dropout; the running statistics and
    the dropout stream are put back afterwards). ``bins`` and ``range`` are those of
    :func:`numpy.histogram` (None: each layer's own [min, max]; a pair gives every layer the
    same bins, for comparing layers). Returns a list of :class:`LayerStatistics`.
    """
    _check_model(model)
    _check_input("x", x)
    training = _checks.flag("training", training)
    bins = _count("bins", bins)
    if range is not None:
        if not isinstance(range, (tuple, list)) or len(range) != 2:
            raise TypeError(f"range: expected None or a pair (low, high), got {range!r}")
        low, high = _checks.real("range[0]", range[0]), _checks.real("range[1]", range[1])
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"range: expected finite low < high, got {range!r}")
        range = (low, high)
    out = []
    with _preserved(model):
        for name, module in _leaves(model):
            forward = module.forward

            def recording(inp, mode=None, _forward=forward, _name=name, _module=module):
                y = _forward(inp, mode)
                out.append(_statistics(_name, _module, y, bins, range))
                return y
            module.forward = recording  # an instance attribute: the restore removes it
        model.forward(x, training)
    return out


# ---- gradient norms


def gradient_norms(model, x=None, target=None, loss=None, *, by="layer", training=True):
    """The L2 norm of the gradient of every layer (``by="layer"``: all the parameters of one
    module together, keyed by the module's dotted name) or parameter (``by="parameter"``: keyed
    ``"0.weight"``, ``"0.bias"``, ...), as a dict in registration order.

    With ``x`` and ``target``: the gradients of ``loss(model(x), target)`` from one forward and
    backward pass in ``training`` mode (``loss`` a :mod:`fusednn.nn.losses` object; None:
    softmax cross-entropy for integer targets, squared error otherwise); the model's own
    gradients, buffers and dropout stream are restored afterwards. Without them: the norms of the
    gradients the model holds now (after your own backward pass).
    """
    _check_model(model)
    if by not in ("layer", "parameter"):
        raise ValueError(f"by: expected 'layer' or 'parameter', got {by!r}")
    if (x is None) != (target is None):
        raise TypeError("x, target: give both (the gradients of one batch) or neither (the model's gradients now)")
    if x is None:
        return _norms(model.named_gradients(), by)
    _check_input("x", x)
    loss = _check_loss(loss, target)
    training = _checks.flag("training", training)
    with _preserved(model, grads=True):
        model.zero_grad()
        out = model.forward(x, training)
        _, d_out = loss.value_and_grad(out, target)
        model.backward(d_out)
        return _norms(model.named_gradients(), by)


def _norms(named, by):
    squares = {}
    for name, g in named:
        key = name.rsplit(".", 1)[0] if by == "layer" and "." in name else name
        g = np.asarray(to_host(g), dtype=np.float64)
        squares[key] = squares.get(key, 0.0) + float(np.vdot(g, g))
    return {k: math.sqrt(v) for k, v in squares.items()}


# ---- loss landscapes


def _loss_value(model, x, target, loss, training):
    return float(loss(model.forward(x, training), target))


def filter_normalized_direction(model, seed=0, *, ignore_biases=True):
    """A random direction in parameter space, normalized filter by filter (Li et al. 2018): one
    array per parameter (in ``named_parameters()`` order), drawn from N(0, 1) and, for every
    filter (the slice ``[i]`` along the first axis of a weight: one output unit's weights),
    scaled to the norm of that filter of the model's parameters. With ``ignore_biases`` (their
    code's default, ``--xignore biasbn``) the direction is zero on 1-D parameters (biases and
    normalization scales and shifts); otherwise each 1-D parameter is normalized as one filter.
    ``seed``: an int or a numpy Generator."""
    _check_model(model)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(_checks.integer("seed", seed))
    ignore_biases = _checks.flag("ignore_biases", ignore_biases)
    directions = []
    for _, p in model.named_parameters():
        theta = np.asarray(to_host(p), dtype=np.float64)
        d = rng.standard_normal(theta.shape)
        if theta.ndim < 2:
            if ignore_biases:
                d[...] = 0.0
            else:
                d *= np.linalg.norm(theta) / max(np.linalg.norm(d), 1e-300)
        else:
            rows_d = d.reshape(d.shape[0], -1)
            rows_t = theta.reshape(theta.shape[0], -1)
            rows_d *= (np.linalg.norm(rows_t, axis=1) / np.maximum(np.linalg.norm(rows_d, axis=1), 1e-300))[:, None]
        directions.append(d.astype(theta.dtype if theta.dtype == np.float64 else np.float32))
    return directions


def _check_direction(name, direction, named):
    if not isinstance(direction, (list, tuple)) or len(direction) != len(named):
        raise TypeError(f"{name}: expected a list of {len(named)} arrays, one per parameter (as "
                        f"filter_normalized_direction returns), got {type(direction).__qualname__}"
                        + (f" of length {len(direction)}" if isinstance(direction, (list, tuple)) else ""))
    out = []
    for (pname, p), d in zip(named, direction):
        d = np.asarray(to_host(d), dtype=np.float64)
        if d.shape != p.shape:
            raise ValueError(f"{name}: the array for {pname!r} has shape {d.shape}, expected {p.shape}")
        out.append(d)
    return out


def _grid(name, values):
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name}: expected a non-empty 1-D sequence of finite numbers, got {values!r}")
    return a


def _set_params(named, theta, directions, coefficients):
    for i, (_, p) in enumerate(named):
        value = theta[i] + sum(c * d[i] for c, d in zip(coefficients, directions))
        p[...] = array_module(p).asarray(value.astype(p.dtype))


def landscape_1d(model, x, target, loss=None, *, end=None, direction=None, alphas=None, seed=0, training=False):
    """The loss along a line through the model's parameters θ: ``loss(θ + α d)`` for each α.

    ``end`` (another model of the same architecture, or a list of arrays in
    ``named_parameters()`` order) makes it the linear interpolation d = θ_end - θ (α = 0 is this
    model, α = 1 the other; Goodfellow et al. 2015); else ``direction`` (a list of arrays), else a
    :func:`filter_normalized_direction` drawn from ``seed``. ``alphas`` defaults to 21 points in
    [-1, 1]. The loss is ``loss(model.forward(x, training), target)`` (``loss`` None: softmax
    cross-entropy for integer targets, squared error otherwise); ``training=True`` makes batch
    norm use the batch's statistics (Li et al. evaluate so), and its running statistics are put
    back. Returns ``(alphas, losses)``, float64 arrays; the model's parameters are restored."""
    _check_model(model)
    _check_input("x", x)
    loss = _check_loss(loss, target)
    training = _checks.flag("training", training)
    alphas = _grid("alphas", np.linspace(-1.0, 1.0, 21) if alphas is None else alphas)
    named = model.named_parameters()
    theta = [np.asarray(to_host(p), dtype=np.float64) for _, p in named]
    if end is not None and direction is not None:
        raise TypeError("end, direction: give one of them (or neither, for a random filter-normalized direction)")
    if end is not None:
        from fusednn.nn.module import Module
        ends = [p for _, p in end.named_parameters()] if isinstance(end, Module) else end
        d = [e - t for e, t in zip(_check_direction("end", ends, named), theta)]
    elif direction is not None:
        d = _check_direction("direction", direction, named)
    else:
        d = _check_direction("direction", filter_normalized_direction(model, seed), named)
    losses = np.empty(alphas.size)
    with _preserved(model, params=True):
        for i, a in enumerate(alphas):
            _set_params(named, theta, [d], [a])
            losses[i] = _loss_value(model, x, target, loss, training)
    return alphas, losses


def landscape_2d(model, x, target, loss=None, *, alphas=None, betas=None, directions=None, seed=0, training=False):
    """The loss on the plane ``θ + α d1 + β d2`` through the model's parameters θ.

    ``directions``: a pair of direction lists (as :func:`filter_normalized_direction` gives);
    None draws two filter-normalized directions from ``seed`` (Li et al. 2018). ``alphas`` and
    ``betas`` default to 21 points in [-1, 1] (betas: the alphas). ``loss`` and ``training`` as
    in :func:`landscape_1d`. Returns ``(alphas, betas, losses)`` with ``losses[j, i]`` the loss
    at ``(alphas[i], betas[j])`` (the layout ``matplotlib.contour(alphas, betas, losses)``
    takes); the model's parameters are restored."""
    _check_model(model)
    _check_input("x", x)
    loss = _check_loss(loss, target)
    training = _checks.flag("training", training)
    alphas = _grid("alphas", np.linspace(-1.0, 1.0, 21) if alphas is None else alphas)
    betas = alphas if betas is None else _grid("betas", betas)
    named = model.named_parameters()
    theta = [np.asarray(to_host(p), dtype=np.float64) for _, p in named]
    if directions is None:
        rng = np.random.default_rng(_checks.integer("seed", seed))
        directions = (filter_normalized_direction(model, rng), filter_normalized_direction(model, rng))
    elif not isinstance(directions, (list, tuple)) or len(directions) != 2:
        raise TypeError("directions: expected a pair of direction lists (d1, d2)")
    d1, d2 = (_check_direction(f"directions[{k}]", directions[k], named) for k in (0, 1))
    losses = np.empty((betas.size, alphas.size))
    with _preserved(model, params=True):
        for j, b in enumerate(betas):
            for i, a in enumerate(alphas):
                _set_params(named, theta, [d1, d2], [a, b])
                losses[j, i] = _loss_value(model, x, target, loss, training)
    return alphas, betas, losses


# ---- Monte-Carlo dropout


def mc_dropout_predict(model, x, samples=50, *, seed=0, probabilities=False, return_samples=False):
    """Monte-Carlo dropout: ``samples`` forward passes of ``x`` with the model's dropout layers
    (Dropout and DropConnectLinear) drawing masks as in training and every other layer in
    evaluation mode (batch norm uses its running statistics). The masks come from a dropout
    stream started at ``seed`` (the model's own stream is restored afterwards), so the result is
    a function of ``seed``. With ``probabilities`` each pass's output goes through a softmax
    (classification). Returns ``(mean, variance)`` over the passes (float64 host arrays of the
    output's shape; the population variance), and the ``(samples, ...)`` stack of outputs too
    with ``return_samples``. A model without dropout layers is refused (ValueError)."""
    from fusednn import ops
    from fusednn.nn.layers import DropConnectLinear, Dropout
    from fusednn.nn.module import RNG
    _check_model(model)
    _check_input("x", x)
    samples = _count("samples", samples)
    seed = _checks.integer("seed", seed)
    probabilities = _checks.flag("probabilities", probabilities)
    stochastic = [m for _, m in model.named_modules() if isinstance(m, (Dropout, DropConnectLinear))]
    if not stochastic:
        raise ValueError("model: has no Dropout or DropConnectLinear layer, so every pass gives the same output "
                         "(MC dropout needs dropout layers)")
    outputs = []
    with _preserved(model):
        model.rng = RNG(seed)
        for module in stochastic:
            forward = module.forward
            module.forward = lambda inp, mode=None, _forward=forward: _forward(inp, True)
        for _ in range(samples):
            y = model.forward(x, False)
            if probabilities:
                y = ops.softmax(y)
            outputs.append(np.asarray(to_host(y), dtype=np.float64))
    stack = np.stack(outputs)
    mean, variance = stack.mean(axis=0), stack.var(axis=0)
    return (mean, variance, stack) if return_samples else (mean, variance)

