"""Recurrent cells over a whole sequence, one layer: LSTM and GRU forward and backward through
time, with the course's recurrent regularization (docs/ops.md, "Recurrent cells").

Layout and gate order are torch's (``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih``,
``bias_hh``; LSTM gates i, f, g, o; GRU gates r, z, n), sequences are time-major ``(T, B, I)``.

Dropout (training only, inverted scaling 1/(1-p)), all masks from the Philox stream of
:func:`fusednn.ops.dropout`:

- ``mode="variational"``: one input mask of shape (B, I), stream ``(seed, offset)``, shared by
  every step; one hidden-state mask of shape (B, H), stream ``(seed, offset + 1)``, applied to
  h_{t-1} where it enters the recurrent product (``recurrent_dropout``);
- ``mode="naive"``: a new input mask every step, the (T, B, I) mask of stream ``(seed, offset)``;
  the recurrent connection is never masked (``recurrent_dropout`` must be 0);
- ``weight_drop``: DropConnect on ``weight_hh`` once per forward (AWD-LSTM), the
  :func:`fusednn.ops.drop_connect` mask of stream ``(seed, offset + 2)``.

A call therefore uses the offsets ``offset``, ``offset + 1`` and ``offset + 2``.

The forward returns a ``cache`` (a dict of arrays) with what the backward needs; the backward
returns a dict of gradients keyed by the forward's argument names.
"""

import numpy as np

from fusednn import _checks
from fusednn._backend import array_module, backend_for

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_dropout_masks"]

MODES = ("variational", "naive")


def check_mask_sizes(steps, batch, input_size, hidden_size, dtype):
    """rnn_dropout_masks' sizes (integers >= 0) and dtype (float32 or float64), by the one rule."""
    sizes = []
    for name, value in (("steps", steps), ("batch", batch), ("input_size", input_size),
                        ("hidden_size", hidden_size)):
        v = _checks.integer(name, value, "an integer >= 0")
        if v < 0:
            raise ValueError(f"{name}: expected an integer >= 0, got {v}")
        sizes.append(v)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):  # (a dtype equals None: float64)
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}")
    return (*sizes, dt)


def check_options(dropout, recurrent_dropout, mode, weight_drop, seed, offset, training):
    """The scalar arguments of a forward, checked by the one rule (fusednn._checks)."""
    dropout = _checks.in_unit_interval("dropout", dropout, closed_right=False)
    recurrent_dropout = _checks.in_unit_interval("recurrent_dropout", recurrent_dropout, closed_right=False)
    weight_drop = _checks.in_unit_interval("weight_drop", weight_drop, closed_right=False)
    if not (isinstance(mode, str) and mode in MODES):
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if mode == "naive" and recurrent_dropout > 0:
        raise ValueError(f"recurrent_dropout: naive dropout never masks the recurrent connection (use "
                         f"mode='variational'), got {recurrent_dropout}")
    seed = _checks.integer("seed", seed)
    offset = _checks.integer("offset", offset)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: expected an integer in [0, 2**64), got {seed}")
    if not 0 <= offset <= 2**64 - 3:
        raise ValueError(f"offset: expected an integer in [0, 2**64 - 3] (a call uses offset, offset + 1 and "
                         f"offset + 2), got {offset}")
    training = _checks.flag("training", training)
    return dropout, recurrent_dropout, mode, weight_drop, seed, offset, training


def _x_shape(x):
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(f"x: expected a 3-D array (steps, batch, input_size), got "
                         f"{'shape ' + str(tuple(shape)) if shape is not None else type(x).__qualname__}")
    return tuple(int(s) for s in shape)


def _hidden_size(weight_hh, gates):
    shape = getattr(weight_hh, "shape", None)
    if shape is None or len(shape) != 2 or shape[1] < 1 or shape[0] != gates * shape[1]:
        raise ValueError(f"weight_hh: expected shape ({gates} * hidden_size, hidden_size), got "
                         f"{tuple(shape) if shape is not None else type(weight_hh).__qualname__}")
    return int(shape[1])


def _masks(dropout_fn, xp, dtype, steps, batch, input_size, hidden_size, p, p_h, mode, seed, offset):
    ones = lambda *shape: xp.ones(shape, dtype)  # noqa: E731
    x_mask = h_mask = None
    if p > 0:
        shape = (batch, input_size) if mode == "variational" else (steps, batch, input_size)
        x_mask = dropout_fn(ones(*shape), p, seed=seed, offset=offset)
    if p_h > 0:
        h_mask = dropout_fn(ones(batch, hidden_size), p_h, seed=seed, offset=offset + 1)
    return x_mask, h_mask


def rnn_dropout_masks(steps, batch, input_size, hidden_size, dtype=np.float32, *, dropout, recurrent_dropout=0.0,
                      mode="variational", seed, offset=0, device="cpu"):
    """The (input mask, hidden-state mask) a training forward uses, each None when its
    probability is 0. Values are 0 or 1/(1-p). Variational: (B, I) and (B, H); naive:
    (T, B, I) and None."""
    from fusednn._backend import device_module
    from fusednn.ops.dropout import dropout as dropout_op
    steps, batch, input_size, hidden_size, dtype = check_mask_sizes(steps, batch, input_size, hidden_size, dtype)
    p, p_h, mode, _, seed, offset, _ = check_options(dropout, recurrent_dropout, mode, 0.0, seed, offset, True)
    return _masks(dropout_op, device_module(device), dtype, steps, batch, input_size, hidden_size, p, p_h,
                  mode, seed, offset)


def prepare(cell, x, h0, c0, weight_ih, weight_hh, options, dropout_fn, drop_connect_fn):
    """The masked input, the initial states, the used weight_hh and the masks (shared by the op
    and its NumPy reference)."""
    p, p_h, mode, p_w, seed, offset, training = options
    gates = 4 if cell == "lstm" else 3
    steps, batch, input_size = _x_shape(x)
    hidden = _hidden_size(weight_hh, gates)
    xp = array_module(x)
    dtype = x.dtype
    if h0 is None:
        h0 = xp.zeros((batch, hidden), dtype)
    if cell == "lstm" and c0 is None:
        c0 = xp.zeros((batch, hidden), dtype)
    x_mask = h_mask = None
    w_hh = weight_hh
    weight_drop = None
    if training:
        x_mask, h_mask = _masks(dropout_fn, xp, dtype, steps, batch, input_size, hidden, p, p_h, mode, seed, offset)
        if p_w > 0:
            weight_drop = (p_w, seed, offset + 2)
            w_hh = drop_connect_fn(weight_hh, p_w, seed=seed, offset=offset + 2)
    x_used = x * x_mask if x_mask is not None else x
    return x_used, h0, c0, w_hh, x_mask, h_mask, weight_drop


def finish_backward(cell, grads, cache, drop_connect_backward_fn):
    """Applies the input mask and the weight-drop mask to the raw gradients."""
    if grads["x"] is not None and cache["x_mask"] is not None:
        grads["x"] = grads["x"] * cache["x_mask"]
    if cache["weight_drop"] is not None:
        p_w, seed, off = cache["weight_drop"]
        grads["weight_hh"] = drop_connect_backward_fn(grads["weight_hh"], p_w, seed=seed, offset=off)
    if cell == "gru":
        grads.pop("c0")
    return grads


def _forward(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_weight, ln_bias, options):
    from fusednn.ops.dropout import drop_connect, dropout
    module = backend_for(x=x, h0=h0, c0=c0, weight_ih=weight_ih, weight_hh=weight_hh, bias_ih=bias_ih,
                         bias_hh=bias_hh, ln_weight=ln_weight, ln_bias=ln_bias)
    x_used, h0, c0, w_hh, x_mask, h_mask, weight_drop = prepare(cell, x, h0, c0, weight_ih, weight_hh, options,
                                                                dropout, drop_connect)
    y, gates, aux, xhat, rstd = module.rnn_forward(cell, x_used, h0, c0, weight_ih, w_hh, bias_ih, bias_hh,
                                                   ln_weight, ln_bias, h_mask)
    cache = {"cell": cell, "x": x_used, "x_mask": x_mask, "h0": h0, "c0": c0, "weight_ih": weight_ih,
             "weight_hh": w_hh, "weight_drop": weight_drop, "bias_ih": bias_ih is not None,
             "bias_hh": bias_hh is not None, "ln_weight": ln_weight, "hmask": h_mask, "y": y, "gates": gates,
             "aux": aux, "xhat": xhat, "rstd": rstd}
    return y, cache


def _backward(cell, dy, dh_n, dc_n, cache, input_grad):
    from fusednn.ops.dropout import drop_connect_backward
    if not isinstance(cache, dict) or cache.get("cell") != cell:
        raise TypeError(f"cache: expected the cache dict of {cell}_forward, got "
                        f"{type(cache).__qualname__}" + (f" of {cache.get('cell')}_forward" if isinstance(cache, dict)
                                                         else ""))
    input_grad = _checks.flag("input_grad", input_grad)
    c = cache
    module = backend_for(dy=dy, dh_n=dh_n, dc_n=dc_n, x=c["x"])
    out = module.rnn_backward(cell, dy, dh_n, dc_n, c["x"], c["h0"], c["c0"], c["weight_ih"], c["weight_hh"],
                              c["ln_weight"], c["hmask"], c["y"], c["gates"], c["aux"], c["xhat"], c["rstd"],
                              c["bias_ih"], c["bias_hh"], input_grad)
    names = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_weight", "ln_bias")
    return finish_backward(cell, dict(zip(names, out)), cache, drop_connect_backward)


def lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, ln_weight=None, ln_bias=None,
                 dropout=0.0, recurrent_dropout=0.0, mode="variational", weight_drop=0.0, seed=0, offset=0,
                 training=True):
    """One LSTM layer over the time-major sequence ``x`` (T, B, I): ``(y, h_n, c_n, cache)`` with
    ``y`` (T, B, H) the hidden states. ``h0``/``c0`` (B, H) may be None (zeros). With
    ``ln_weight``/``ln_bias`` (4H) each gate's pre-activation is layer-normalized over its H
    units. Dropout: see the module docstring."""
    options = check_options(dropout, recurrent_dropout, mode, weight_drop, seed, offset, training)
    y, cache = _forward("lstm", x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_weight, ln_bias, options)
    return y, y[-1].copy(), cache["aux"][-1].copy(), cache


def lstm_backward(dy, dh_n, dc_n, cache, *, input_grad=True):
    """Backward through time of :func:`lstm_forward`. ``dy`` (T, B, H), ``dh_n`` and ``dc_n`` (B, H)
    may each be None (no gradient from there). Returns a dict with ``x`` (None when
    ``input_grad=False``), ``h0``, ``c0``, ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``
    (None without that bias), ``ln_weight``, ``ln_bias`` (None without layer norm)."""
    return _backward("lstm", dy, dh_n, dc_n, cache, input_grad)


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, ln_weight=None, ln_bias=None,
                dropout=0.0, recurrent_dropout=0.0, mode="variational", weight_drop=0.0, seed=0, offset=0,
                training=True):
    """One GRU layer over ``x`` (T, B, I): ``(y, h_n, cache)``; as :func:`lstm_forward` with 3H
    gates (r, z, n) and ``n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))`` (torch's)."""
    options = check_options(dropout, recurrent_dropout, mode, weight_drop, seed, offset, training)
    y, cache = _forward("gru", x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, ln_weight, ln_bias, options)
    return y, y[-1].copy(), cache


def gru_backward(dy, dh_n, cache, *, input_grad=True):
    """Backward through time of :func:`gru_forward`: the dict of :func:`lstm_backward` without
    ``c0``."""
    return _backward("gru", dy, dh_n, None, cache, input_grad)
