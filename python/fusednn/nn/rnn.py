"""Recurrent layers over :mod:`fusednn.ops.rnn`: :class:`LSTM` and :class:`GRU` (multi-layer,
batch_first, the course's recurrent regularization), :class:`Embedding`, and the adapters that
feed a sequence model's output to a :class:`~fusednn.nn.Linear` head (:class:`LastStep`,
:class:`EveryStep`) or turn flat rows into sequences (:class:`AsSequence`).

Dropout in the recurrent layers (training only, masks from the model's Philox stream
``model.rng``; docs/training.md maps the modes to the course's terms):

- ``dropout_mode="variational"`` (Gal & Ghahramani): each layer draws one mask per sequence for
  its input and one for its hidden state, the same at every step;
- ``dropout_mode="naive"`` (Zaremba et al.): a new mask at every step, on the layers' inputs
  only; the recurrent connection is never dropped (``recurrent_dropout`` must be 0);
- ``weight_drop``: DropConnect on each layer's ``weight_hh``, one mask per forward (AWD-LSTM).

``input_dropout`` drops the first layer's input, ``dropout`` the inputs of the layers above it
(torch's ``dropout``), ``recurrent_dropout`` the hidden state entering the recurrent product.
"""

import math

import numpy as np

from fusednn import _checks, ops
from fusednn._backend import array_module
from fusednn.nn import init as _init
from fusednn.nn.layers import _check_input, _checks_size, _need, _rng
from fusednn.nn.module import Module, _dtype_of

__all__ = ["LSTM", "GRU", "Embedding", "LastStep", "EveryStep", "AsSequence"]

_INITS = ("orthogonal", "torch")
_DROPOUT_MODES = ("variational", "naive", None)


class _Recurrent(Module):
    cell = None  # "lstm" or "gru"
    gates = None

    def __init__(self, input_size, hidden_size, num_layers=1, *, bias=True, batch_first=False, dropout=0.0,
                 input_dropout=0.0, recurrent_dropout=0.0, dropout_mode="variational", weight_drop=0.0,
                 layer_norm=False, init="orthogonal", forget_bias=None, rng=None, dtype=np.float32):
        super().__init__()
        self.input_size = _checks_size("input_size", input_size)
        self.hidden_size = _checks_size("hidden_size", hidden_size)
        self.num_layers = _checks_size("num_layers", num_layers)
        self.batch_first = _checks.flag("batch_first", batch_first)
        self.has_bias = _checks.flag("bias", bias)
        self.layer_norm = _checks.flag("layer_norm", layer_norm)
        self.dropout = _checks.in_unit_interval("dropout", dropout, closed_right=False)
        self.input_dropout = _checks.in_unit_interval("input_dropout", input_dropout, closed_right=False)
        self.recurrent_dropout = _checks.in_unit_interval("recurrent_dropout", recurrent_dropout, closed_right=False)
        self.weight_drop = _checks.in_unit_interval("weight_drop", weight_drop, closed_right=False)
        if dropout_mode not in _DROPOUT_MODES:
            raise ValueError(f"dropout_mode: expected one of {_DROPOUT_MODES}, got {dropout_mode!r}")
        if dropout_mode is None and (self.dropout or self.input_dropout or self.recurrent_dropout):
            raise ValueError("dropout_mode: None means no dropout, but a dropout rate > 0 was given")
        if dropout_mode == "naive" and self.recurrent_dropout:
            raise ValueError(f"recurrent_dropout: naive dropout never drops the recurrent connection (use "
                             f"dropout_mode='variational'), got {self.recurrent_dropout}")
        self.dropout_mode = dropout_mode
        if init not in _INITS:
            raise ValueError(f"init: expected one of {_INITS}, got {init!r}")
        self.init = init
        if forget_bias is not None:
            if self.cell != "lstm":
                raise ValueError("forget_bias: only an LSTM has a forget gate")
            forget_bias = _checks.real("forget_bias", forget_bias)
        elif self.cell == "lstm" and init == "orthogonal":
            forget_bias = 1.0
        self.forget_bias = forget_bias
        self.input_grad = True  # False for a first layer: backward skips the input gradient's GEMM, returns None
        dtype = self._dtype = _dtype_of(dtype)
        gen = _rng(rng)
        G, H = self.gates, self.hidden_size
        for k in range(self.num_layers):
            n_in = self.input_size if k == 0 else H
            w_ih = np.empty((G * H, n_in), dtype)
            w_hh = np.empty((G * H, H), dtype)
            b_ih = np.zeros(G * H, dtype)
            b_hh = np.zeros(G * H, dtype)
            if init == "torch":  # torch.nn.LSTM / GRU: every parameter U(-1/sqrt(H), 1/sqrt(H))
                bound = 1 / math.sqrt(H)
                for a in (w_ih, w_hh, b_ih, b_hh):
                    _init.uniform(a, -bound, bound, rng=gen)
            else:  # Keras' defaults: Glorot-uniform inputs, one orthogonal matrix per gate, zero biases
                _init.xavier_uniform(w_ih, rng=gen)
                for g in range(G):
                    _init.orthogonal(w_hh[g * H:(g + 1) * H], rng=gen)
            self.add_parameter(f"weight_ih_l{k}", w_ih)
            self.add_parameter(f"weight_hh_l{k}", w_hh)
            if self.has_bias:
                self.add_parameter(f"bias_ih_l{k}", b_ih)
                self.add_parameter(f"bias_hh_l{k}", b_hh)
            if self.layer_norm:
                self.add_parameter(f"ln_weight_l{k}", np.ones(G * H, dtype))
                self.add_parameter(f"ln_bias_l{k}", np.zeros(G * H, dtype))
            if forget_bias is not None:
                # The forget gate's block (rows H..2H): its bias, or with layer norm the shift after
                # the normalization (a bias before it would be normalized away).
                if self.layer_norm:
                    self.p[f"ln_bias_l{k}"][H:2 * H] = forget_bias
                elif self.has_bias:
                    self.p[f"bias_ih_l{k}"][H:2 * H] = forget_bias
                    self.p[f"bias_hh_l{k}"][H:2 * H] = 0
                else:
                    raise ValueError("forget_bias: the layer has neither biases nor layer norm to hold it")
        self._caches = None

    def _layer_dropout(self, k):
        return self.input_dropout if k == 0 else self.dropout

    def forward(self, x, training=None):
        training = self._mode(training)
        _check_input(x, "x", ndim=3, dtype=self._dtype, device=self.device)
        if x.shape[2] != self.input_size:
            raise ValueError(f"x: expected {self.input_size} features on the last axis, got shape {x.shape}")
        seq = x.transpose(1, 0, 2) if self.batch_first else x
        xp = array_module(x)
        seq = xp.ascontiguousarray(seq)
        caches = []
        for k in range(self.num_layers):
            p = self.p
            kw = {"ln_weight": p.get(f"ln_weight_l{k}"), "ln_bias": p.get(f"ln_bias_l{k}"), "training": training}
            if training:
                kw.update(dropout=self._layer_dropout(k), recurrent_dropout=self.recurrent_dropout,
                          mode=self.dropout_mode or "variational", weight_drop=self.weight_drop,
                          seed=self.rng.seed, offset=self.rng.take(3))
            args = (seq, None) + ((None,) if self.cell == "lstm" else ()) + (
                p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], p.get(f"bias_ih_l{k}"), p.get(f"bias_hh_l{k}"))
            if self.cell == "lstm":
                seq, _, _, cache = ops.lstm_forward(*args, **kw)
            else:
                seq, _, cache = ops.gru_forward(*args, **kw)
            caches.append(cache)
        self._caches = caches if training else None
        return seq.transpose(1, 0, 2) if self.batch_first else seq

    def backward(self, dy):
        caches = _need(self._caches, self)
        xp = array_module(dy)
        d = xp.ascontiguousarray(dy.transpose(1, 0, 2) if self.batch_first else dy)
        for k in range(self.num_layers - 1, -1, -1):
            input_grad = k > 0 or self.input_grad
            if self.cell == "lstm":
                grads = ops.lstm_backward(d, None, None, caches[k], input_grad=input_grad)
            else:
                grads = ops.gru_backward(d, None, caches[k], input_grad=input_grad)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_weight", "ln_bias"):
                if f"{name}_l{k}" in self.g:
                    self.g[f"{name}_l{k}"][...] = grads[name]
            d = grads["x"]
        if d is None:
            return None
        return d.transpose(1, 0, 2) if self.batch_first else d

    def extra_repr(self):
        parts = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            parts.append(f"num_layers={self.num_layers}")
        if self.batch_first:
            parts.append("batch_first=True")
        for name in ("input_dropout", "dropout", "recurrent_dropout", "weight_drop"):
            if getattr(self, name):
                parts.append(f"{name}={getattr(self, name)}")
        if self.dropout or self.input_dropout or self.recurrent_dropout:
            parts.append(f"dropout_mode={self.dropout_mode!r}")
        if self.layer_norm:
            parts.append("layer_norm=True")
        return ", ".join(parts)


class LSTM(_Recurrent):
    """A stack of LSTM layers (torch's gate order i, f, g, o and parameter layout:
    ``weight_ih_l{k}`` (4H, I), ``weight_hh_l{k}`` (4H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}``;
    with ``layer_norm`` also ``ln_weight_l{k}``, ``ln_bias_l{k}``: each gate's pre-activation is
    normalized over its H units).

    ``forward(x)`` takes (T, B, I), or (B, T, I) with ``batch_first``, and returns every step's
    hidden state of the top layer in the same layout; the initial states are zero.

    Initialization: ``init="orthogonal"`` (default) draws ``weight_ih`` Glorot-uniform, each
    gate's (H, H) block of ``weight_hh`` orthogonal, the biases zero and the forget gate's bias
    ``forget_bias`` (default 1.0; in ``ln_bias`` with layer norm); ``init="torch"`` is torch's
    U(-1/sqrt(H), 1/sqrt(H)) for every parameter (``forget_bias``, if given, still applies).
    Dropout arguments: see the module docstring.
    """
    cell, gates = "lstm", 4


class GRU(_Recurrent):
    """A stack of GRU layers (torch's gates r, z, n and layout, ``n = tanh(W_in x + b_in + r *
    (W_hn h + b_hn))``); otherwise as :class:`LSTM` (without ``forget_bias``)."""
    cell, gates = "gru", 3


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table looked up by integer indices of any shape:
    ``forward(idx)`` has shape ``idx.shape + (embedding_dim,)``. Initialized N(0, 1) as torch's.
    Backward accumulates the gradient rows of repeated indices (NumPy's ``add.at``: in index
    order, deterministic; on the GPU ``cupyx.scatter_add``, atomic adds in no fixed order) and
    returns None (indices have no gradient)."""

    def __init__(self, num_embeddings, embedding_dim, *, rng=None, dtype=np.float32):
        super().__init__()
        self.num_embeddings = _checks_size("num_embeddings", num_embeddings)
        self.embedding_dim = _checks_size("embedding_dim", embedding_dim)
        dtype = self._dtype = _dtype_of(dtype)
        w = np.empty((self.num_embeddings, self.embedding_dim), dtype)
        _init.normal(w, 0.0, 1.0, rng=_rng(rng))
        self.add_parameter("weight", w)
        self._idx = None

    def forward(self, idx, training=None):
        training = self._mode(training)
        xp = array_module(idx)
        if not hasattr(idx, "dtype") or idx.dtype.kind not in "iu":
            raise TypeError(f"idx: expected an integer array, got "
                            f"{getattr(idx, 'dtype', type(idx).__qualname__)}")
        flat = idx.reshape(-1)
        if flat.size and (int(flat.min()) < 0 or int(flat.max()) >= self.num_embeddings):
            raise ValueError(f"idx: expected indices in [0, {self.num_embeddings}), got values in "
                             f"[{int(flat.min())}, {int(flat.max())}]")
        y = ops.gather_rows(self.p["weight"], flat.astype(xp.int64)) if flat.size else \
            xp.zeros((0, self.embedding_dim), self._dtype)
        self._idx = flat if training else None
        return y.reshape(tuple(idx.shape) + (self.embedding_dim,))

    def backward(self, dy):
        idx = _need(self._idx, self)
        g = self.g["weight"]
        g[...] = 0
        rows = dy.reshape(-1, self.embedding_dim)
        if array_module(dy) is np:
            np.add.at(g, idx, rows)
        else:
            import cupyx
            cupyx.scatter_add(g, idx, rows)
        return None

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LastStep(Module):
    """The last time step of a sequence: (B, T, H) -> (B, H) with ``batch_first`` (default),
    (T, B, H) -> (B, H) without. Backward puts the gradient at that step and zeros elsewhere."""

    def __init__(self, batch_first=True):
        super().__init__()
        self.batch_first = _checks.flag("batch_first", batch_first)
        self._shape = None

    def forward(self, x, training=None):
        training = self._mode(training)
        _check_input(x, "x", ndim=3, device=self.device)
        self._shape = x.shape if training else None
        return x[:, -1] if self.batch_first else x[-1]

    def backward(self, dy):
        shape = _need(self._shape, self)
        dx = array_module(dy).zeros(shape, dy.dtype)
        if self.batch_first:
            dx[:, -1] = dy
        else:
            dx[-1] = dy
        return dx

    def extra_repr(self):
        return "" if self.batch_first else "batch_first=False"


class EveryStep(Module):
    """Every time step as a row: (B, T, H) -> (B*T, H) (a reshape), so that a Linear head
    predicts at every step; its targets are then the (B*T,) rows in the same order."""

    def __init__(self):
        super().__init__()
        self._shape = None

    def forward(self, x, training=None):
        _check_input(x, "x", ndim=3, device=self.device)
        self._shape = x.shape
        return array_module(x).ascontiguousarray(x).reshape(-1, x.shape[2])

    def backward(self, dy):
        return dy.reshape(_need(self._shape, self))


class AsSequence(Module):
    """Flat rows as sequences: (N, steps * features) -> (N, steps, features), batch first (a
    row-major image of ``steps`` rows read one row per step)."""

    def __init__(self, steps, features):
        super().__init__()
        self.steps = _checks_size("steps", steps)
        self.features = _checks_size("features", features)

    def forward(self, x, training=None):
        _check_input(x, "x", ndim=2, device=self.device)
        if x.shape[1] != self.steps * self.features:
            raise ValueError(f"x: expected rows of steps * features = {self.steps * self.features} values, got "
                             f"shape {x.shape}")
        return x.reshape(x.shape[0], self.steps, self.features)

    def backward(self, dy):
        # None from a first recurrent layer that skips its input gradient (input_grad = False).
        return None if dy is None else dy.reshape(dy.shape[0], -1)

    def extra_repr(self):
        return f"steps={self.steps}, features={self.features}"
