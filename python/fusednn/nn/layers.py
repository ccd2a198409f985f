"""Layers with explicit ``forward(x, training)`` / ``backward(dy)`` over the fused ops.

There is no autograd tape: each layer keeps what its backward needs from the last training
forward, and backward returns the input gradient and writes its parameters' gradients (views
into the model's flat gradient buffer) in place.
"""

import math

import numpy as np

from fusednn import _C, _checks, ops
from fusednn._backend import array_module, cuda_module, device_of, is_array
from fusednn.nn import init as _init  # Linear's argument `init` would shadow the module's name
from fusednn.nn.module import Module, _dtype_of

__all__ = ["Linear", "DropConnectLinear", "WeightNormLinear", "ReLU", "Sigmoid", "Tanh", "Abs", "Flatten", "BatchNorm",
           "BatchNorm1d", "BatchNorm2d", "LayerNorm", "LocalResponseNorm", "Dropout", "Sequential", "MLP"]

_WEIGHT_INITS = {
    "he": lambda w, rng: _init.he_normal(w, nonlinearity="relu", rng=rng),
    "he_uniform": lambda w, rng: _init.he_uniform(w, nonlinearity="relu", rng=rng),
    "xavier": lambda w, rng: _init.xavier_uniform(w, rng=rng),
    "xavier_normal": lambda w, rng: _init.xavier_normal(w, rng=rng),
    "xavier_logistic": lambda w, rng: _init.xavier_uniform(w, gain="logistic", rng=rng),
    "lecun": lambda w, rng: _init.lecun_normal(w, rng=rng),
    "lecun_uniform": lambda w, rng: _init.lecun_uniform(w, rng=rng),
    "orthogonal": lambda w, rng: _init.orthogonal(w, rng=rng),
    "torch": lambda w, rng: _init.uniform(w, -1 / math.sqrt(w.shape[1]), 1 / math.sqrt(w.shape[1]), rng=rng),
}


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_input(x, name, features=None, ndim=None, dtype=None, device="cpu"):
    if (type(x) is np.ndarray and device == "cpu" and (ndim is None or x.ndim == ndim)
            and (features is None or (x.ndim >= 2 and x.shape[1] == features)) and (dtype is None or x.dtype == dtype)):
        return  # the common case, checked fast
    if not is_array(x):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(x).__module__}.{type(x).__qualname__}")
    if device_of(x) != device:
        kind = "cupy.ndarray" if device == "cuda" else "numpy.ndarray"
        raise TypeError(f"{name}: expected a {kind} (the layer is on {device!r}), got a {device_of(x)!r} array")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {x.shape}")
    if features is not None and (x.ndim < 2 or x.shape[1] != features):
        raise ValueError(f"{name}: expected shape (N, {features}, ...), got {x.shape}")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype} (the layer's), got {_checks.dtype_str(x.dtype)}; convert "
                        f"with {name}.astype(np.{np.dtype(dtype)})")


def _kernels(layer, dy=None):
    """The compiled module that runs the layer's training kernels, called directly (a layer's
    hot path skips fusednn.ops' dispatch): its input was checked by :func:`_check_input`, and
    its parameters and buffers are on its device. ``dy`` (a backward's gradient, which no one
    checked) must be an array of the layer's device, else None is returned and the layer goes
    through fusednn.ops, whose errors name it."""
    if layer.device == "cpu":
        return _C if dy is None or type(dy) is np.ndarray else None
    return cuda_module() if dy is None or device_of(dy) == "cuda" else None


def _need(cache, layer):
    if cache is None:
        raise RuntimeError(f"{type(layer).__name__}.backward: no training forward to differentiate (call "
                           "forward(x, training=True) first)")
    return cache


class Linear(Module):
    """``y = act(x @ W.T + b)`` with W of shape (out_features, in_features); ``activation="relu"``
    fuses the ReLU into the GEMM's epilogue.

    Args:
        init: the weight initializer: "he" (default with ReLU: normal, std sqrt(2 / fan_in)),
            "xavier" (default otherwise: uniform), "he_uniform", "xavier_normal",
            "xavier_logistic" (uniform with gain 4, the course's rule for logistic units),
            "lecun" (normal), "lecun_uniform", "orthogonal", or "torch": torch.nn.Linear's
            default, weight and bias both U(-1/sqrt(in), 1/sqrt(in)) (the bias drawn after the
            weight, from the same generator).
        bias_init: the bias's constant start value; None (the default) is 0, or torch's uniform
            draw with ``init="torch"`` (the course suggests 0.01 with ReLU).
        rng: a numpy Generator or a seed for the initialization.
    """

    def __init__(self, in_features, out_features, bias=True, activation=None, *, init=None, bias_init=None,
                 rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = _checks_size("in_features", in_features)
        self.out_features = _checks_size("out_features", out_features)
        if activation not in (None, "relu"):
            raise ValueError(f"activation: expected None or 'relu', got {activation!r}")
        self.activation = activation
        init = init or ("he" if activation == "relu" else "xavier")
        if init not in _WEIGHT_INITS:
            raise ValueError(f"init: expected one of {sorted(_WEIGHT_INITS)}, got {init!r}")
        dtype = self._dtype = _dtype_of(dtype)
        w = np.empty((self.out_features, self.in_features), dtype)
        rng = _rng(rng)
        _WEIGHT_INITS[init](w, rng)
        self.add_parameter("weight", w)
        self.has_bias = bool(bias)
        if self.has_bias:
            b = np.empty(self.out_features, dtype)
            if bias_init is None and init == "torch":
                bound = 1 / math.sqrt(self.in_features)
                _init.uniform(b, -bound, bound, rng=rng)
            else:
                _init.constant(b, 0.0 if bias_init is None else bias_init)
            self.add_parameter("bias", b)
        self.input_grad = True  # False for a first layer: skips one GEMM in backward
        self._cache = None

    def _weight(self, training):
        return self.p["weight"]

    def forward(self, x, training=None):
        training = self._mode(training)
        _check_input(x, "x", self.in_features, ndim=2, dtype=self._dtype, device=self.device)
        w = self._weight(training)
        y = _kernels(self).linear(x, w, self.p.get("bias"), self.activation,
                                  self._buffer("y", (x.shape[0], self.out_features), x.dtype))
        self._cache = (x, w, y) if training else None
        return y

    def _linear_backward(self, dy, dw_out):
        """(dx, dw) of the GEMM with the weight used in forward; the bias gradient goes to its
        place and dw into ``dw_out`` (allocated when None)."""
        x, w, y = _need(self._cache, self)
        dx_out = self._buffer("dx", x.shape, x.dtype) if self.input_grad else None
        out = (dx_out, dw_out, self.g["bias"] if self.has_bias else None)
        y = y if self.activation else None
        kernels = _kernels(self, dy)
        if kernels is None:
            dx, dw, _ = ops.linear_backward(dy, x, w, y, self.activation, bias=self.has_bias,
                                            input_grad=self.input_grad, out=out)
        else:
            dx, dw, _ = kernels.linear_backward(dy, x, w, y, self.activation, self.has_bias, self.input_grad, out)
        return dx, dw

    def backward(self, dy):
        return self._linear_backward(dy, self.g["weight"])[0]

    def extra_repr(self):
        act = f", activation={self.activation!r}" if self.activation else ""
        return f"{self.in_features}, {self.out_features}, bias={self.has_bias}{act}"


def _checks_size(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


class DropConnectLinear(Linear):
    """A :class:`Linear` whose weights are masked in training (DropConnect, Wan et al. 2013):
    each weight is dropped with probability ``p`` from the model's Philox stream; ``mode`` as
    in :class:`Dropout`."""

    def __init__(self, in_features, out_features, p=0.5, bias=True, activation=None, *, mode="inverted", **kw):
        super().__init__(in_features, out_features, bias, activation, **kw)
        self.p_drop = _checks.in_unit_interval("p", p, closed_right=False)
        self.mode = _mode_arg(mode)
        self._offset = None

    def _weight(self, training):
        w = self.p["weight"]
        if not training:
            return ops.drop_connect(w, self.p_drop, seed=0, training=False, mode=self.mode)
        self._offset = self.rng.take(w.size)
        return ops.drop_connect(w, self.p_drop, seed=self.rng.seed, offset=self._offset, mode=self.mode)

    def backward(self, dy):
        dx, dw = self._linear_backward(dy, None)
        ops.drop_connect_backward(dw, self.p_drop, seed=self.rng.seed, offset=self._offset, mode=self.mode,
                                  out=self.g["weight"])
        return dx

    def extra_repr(self):
        return super().extra_repr() + f", p={self.p_drop}, mode={self.mode!r}"


class WeightNormLinear(Linear):
    """A :class:`Linear` whose weight is ``g * v / ||v||`` per output row (Salimans & Kingma
    2016); the parameters are ``v`` (initialized like a Linear weight), ``g`` (initialized to
    the rows' norms, so the starting weight equals v) and ``bias``."""

    def __init__(self, in_features, out_features, bias=True, activation=None, **kw):
        super().__init__(in_features, out_features, bias, activation, **kw)
        v = self.p.pop("weight")
        self.g.pop("weight")
        self.add_parameter("v", v)
        self.add_parameter("g", np.sqrt((v.astype(np.float64) ** 2).sum(axis=1)).astype(v.dtype))

    def _weight(self, training):
        return ops.weight_norm(self.p["v"], self.p["g"])

    def backward(self, dy):
        dx, dw = self._linear_backward(dy, None)
        dv, dg = ops.weight_norm_backward(dw, self.p["v"], self.p["g"])
        self.g["v"][...] = dv
        self.g["g"][...] = dg
        return dx


# ---- activations


class _Elementwise(Module):
    def forward(self, x, training=None):
        _check_input(x, "x", device=self.device)
        y = self._f(x)
        self._cache = (x, y) if self._mode(training) else None
        return y

    def backward(self, dy):
        x, y = _need(getattr(self, "_cache", None), self)
        return self._df(dy, x, y)


class ReLU(Module):
    """max(x, 0); the gradient at 0 is 0, as in PyTorch (``ops.relu``). Where a ReLU follows
    a Linear, a norm or comes before a Dropout, those layers' ``activation="relu"`` fuses it
    into their pass (:class:`MLP` does)."""

    def forward(self, x, training=None):
        _check_input(x, "x", device=self.device)
        y = ops.relu(x, out=self._buffer("y", x.shape, x.dtype))
        self._cache = y if self._mode(training) else None
        return y

    def backward(self, dy):
        y = _need(getattr(self, "_cache", None), self)
        return ops.relu_backward(dy, y, out=self._buffer("dx", y.shape, y.dtype))


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), computed without overflow."""

    def _f(self, x):
        xp = array_module(x)
        e = xp.exp(-xp.abs(x))
        return xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)

    def _df(self, dy, x, y):
        return dy * y * (1 - y)


class Tanh(_Elementwise):
    def _f(self, x):
        return array_module(x).tanh(x)

    def _df(self, dy, x, y):
        return dy * (1 - y * y)


class Abs(_Elementwise):
    """The absolute-value rectifier |x| (Jarrett et al. 2009); gradient sign(x), 0 at 0."""

    def _f(self, x):
        return array_module(x).abs(x)

    def _df(self, dy, x, y):
        return dy * array_module(x).sign(x)


_ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh, "abs": Abs}


def _fused_activation_arg(activation):
    if activation not in (None, "relu"):
        raise ValueError(f"activation: expected None or 'relu' (the activation fused into the layer), got "
                         f"{activation!r}")
    return activation


def _activation_repr(activation):
    return f", activation={activation!r}" if activation else ""


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1 * d2 * ...)."""

    def forward(self, x, training=None):
        _check_input(x, "x", device=self.device)
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._shape)


# ---- normalization


class BatchNorm(Module):
    """Batch normalization over (N, C) or (N, C, H, W) inputs, as ``torch.nn.BatchNorm1d/2d``:
    training normalizes with the batch statistics and updates the running ones (``momentum``
    weights the new batch; the course's rho is 1 - momentum); evaluation uses the running
    statistics. ``momentum=None`` keeps the cumulative moving average instead, as torch: the
    buffer ``num_batches_tracked`` (int64) counts the training batches and batch n is weighted
    by 1/n, so the running statistics are the plain means of all batches' statistics (the
    variance's unbiased). ``activation="relu"`` applies a ReLU to the output in the same pass."""

    ndim = None

    def __init__(self, num_features, *, momentum=0.1, eps=1e-5, affine=True, activation=None, dtype=np.float32):
        super().__init__()
        self.activation = _fused_activation_arg(activation)
        self.num_features = _checks_size("num_features", num_features)
        self.momentum = None if momentum is None else _checks.in_unit_interval("momentum", momentum)
        self.eps = _checks.positive("eps", eps)
        dtype = _dtype_of(dtype)
        self._dtype = dtype
        self.affine = bool(affine)
        if self.affine:
            self.add_parameter("weight", np.ones(self.num_features, dtype))
            self.add_parameter("bias", np.zeros(self.num_features, dtype))
        self.add_buffer("running_mean", np.zeros(self.num_features, dtype))
        self.add_buffer("running_var", np.ones(self.num_features, dtype))
        if self.momentum is None:
            self.add_buffer("num_batches_tracked", np.zeros((), np.int64))
        self._cache = None

    def forward(self, x, training=None):
        training = self._mode(training)
        _check_input(x, "x", self.num_features, ndim=self.ndim, dtype=self._dtype, device=self.device)
        momentum = self.momentum
        if momentum is None:  # the cumulative average: batch n weighs 1/n
            tracked = self.buffers["num_batches_tracked"]
            if training:
                tracked += 1
            momentum = 1.0 / max(int(tracked), 1)
        c = self.num_features
        out = (self._buffer("y", x.shape, x.dtype), self._buffer("mean", (c,), x.dtype),
               self._buffer("inv_std", (c,), x.dtype))
        y, mean, inv_std = _kernels(self).batch_norm(x, self.p.get("weight"), self.p.get("bias"),
                                                     self.buffers["running_mean"], self.buffers["running_var"],
                                                     training, momentum, self.eps, self.activation, out)
        self._cache = (x, mean, inv_std, training, y if self.activation else None)
        return y

    def backward(self, dy):
        x, mean, inv_std, training, y = _need(self._cache, self)
        c = self.num_features
        params = ((self.g["weight"], self.g["bias"]) if self.affine
                  else (self._buffer("dgamma", (c,), x.dtype), self._buffer("dbeta", (c,), x.dtype)))
        out = (self._buffer("dx", x.shape, x.dtype), *params)
        kernels = _kernels(self, dy)
        if kernels is None:
            return ops.batch_norm_backward(dy, x, self.p.get("weight"), mean, inv_std, training=training, y=y,
                                           activation=self.activation, out=out)[0]
        return kernels.batch_norm_backward(dy, x, self.p.get("weight"), mean, inv_std, training, y, self.activation,
                                           out)[0]

    def extra_repr(self):
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}{_activation_repr(self.activation)}"


class BatchNorm1d(BatchNorm):
    """:class:`BatchNorm` of (N, C) input."""

    ndim = 2


class BatchNorm2d(BatchNorm):
    """:class:`BatchNorm` of (N, C, H, W) input."""

    ndim = 4


class LayerNorm(Module):
    """Layer normalization over the last axis (size ``normalized_shape``), with a learned scale
    and shift, as ``torch.nn.LayerNorm(normalized_shape)``; ``activation="relu"`` applies a
    ReLU to the output in the same pass."""

    def __init__(self, normalized_shape, *, eps=1e-5, activation=None, dtype=np.float32):
        super().__init__()
        self.activation = _fused_activation_arg(activation)
        self.normalized_shape = _checks_size("normalized_shape", normalized_shape)
        self.eps = _checks.positive("eps", eps)
        dtype = _dtype_of(dtype)
        self.add_parameter("weight", np.ones(self.normalized_shape, dtype))
        self.add_parameter("bias", np.zeros(self.normalized_shape, dtype))
        self._cache = None

    def forward(self, x, training=None):
        _check_input(x, "x", dtype=self.p["weight"].dtype, device=self.device)
        if x.shape[-1] != self.normalized_shape:
            raise ValueError(f"x: expected a last axis of {self.normalized_shape}, got shape {x.shape}")
        out = (self._buffer("y", x.shape, x.dtype), self._buffer("mean", x.shape[:-1], x.dtype),
               self._buffer("inv_std", x.shape[:-1], x.dtype))
        y, mean, inv_std = ops.layer_norm(x, self.p["weight"], self.p["bias"], eps=self.eps,
                                          activation=self.activation, out=out)
        self._cache = (x, mean, inv_std, y if self.activation else None) if self._mode(training) else None
        return y

    def backward(self, dy):
        x, mean, inv_std, y = _need(self._cache, self)
        dx, _, _ = ops.layer_norm_backward(dy, x, self.p["weight"], mean, inv_std, y=y, activation=self.activation,
                                           out=(self._buffer("dx", x.shape, x.dtype), self.g["weight"],
                                                self.g["bias"]))
        return dx

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}{_activation_repr(self.activation)}"


class LocalResponseNorm(Module):
    """Local response normalization across channels, as ``torch.nn.LocalResponseNorm``."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size = _checks_size("size", size)
        self.alpha, self.beta, self.k = float(alpha), float(beta), float(k)
        self._cache = None

    def forward(self, x, training=None):
        _check_input(x, "x", device=self.device)
        y = ops.local_response_norm(x, self.size, self.alpha, self.beta, self.k)
        self._cache = x if self._mode(training) else None
        return y

    def backward(self, dy):
        x = _need(self._cache, self)
        return ops.local_response_norm_backward(dy, x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


# ---- dropout


def _mode_arg(mode):
    if mode not in ("inverted", "vanilla"):
        raise ValueError(f"mode: expected 'inverted' or 'vanilla', got {mode!r}")
    return mode


class Dropout(Module):
    """Drops each unit with probability ``p`` in training, from the model's Philox stream
    (``model.rng``). ``mode="inverted"`` scales the kept units by 1/(1-p) in training and is
    the identity at evaluation; ``"vanilla"`` keeps them as they are and scales by (1-p) at
    evaluation (the original paper's form). ``activation="relu"`` drops ``relu(x)``, in the same
    pass; its backward then reads the mask off the output instead of regenerating it."""

    _activation_attrs = ("_offset", "_y")

    def __init__(self, p=0.5, *, mode="inverted", activation=None):
        super().__init__()
        self.p_drop = _checks.in_unit_interval("p", p, closed_right=False)
        self.mode = _mode_arg(mode)
        self.activation = _fused_activation_arg(activation)
        self._offset = None
        self._y = None
        self._like = None  # the shape and dtype of the last training forward's x

    def forward(self, x, training=None):
        _check_input(x, "x", device=self.device)
        if not self._mode(training):
            self._offset = self._y = None
            return ops.dropout(x, self.p_drop, seed=0, training=False, mode=self.mode, activation=self.activation)
        rng = self.rng
        self._like = (x.shape, x.dtype)
        self._offset = rng.take(x.size)
        y = _kernels(self).dropout(x, self.p_drop, rng.seed, self._offset, True, self.mode, self.activation,
                                   self._buffer("y", x.shape, x.dtype))
        self._y = y if self.activation else None
        return y

    def backward(self, dy):
        if self._offset is None:
            raise RuntimeError("Dropout.backward: no training forward to differentiate")
        shape, dtype = self._like
        if not (is_array(dy) and dy.shape == shape and dy.dtype == dtype):
            # The mask is regenerated from the element indices: dy must be shaped as the input was.
            if not is_array(dy):
                raise TypeError(f"dy: expected a numpy.ndarray or cupy.ndarray, got {type(dy).__module__}."
                                f"{type(dy).__qualname__}")
            if dy.shape != shape:
                raise ValueError(f"dy: expected shape {shape} (the shape of the forward's x), got {dy.shape}")
            raise TypeError(f"dy: expected dtype {dtype} (the dtype of the forward's x), got "
                            f"{_checks.dtype_str(dy.dtype)}")
        out = self._buffer("dx", shape, dtype)
        kernels = _kernels(self, dy)
        if kernels is None:
            return ops.dropout_backward(dy, self.p_drop, seed=self.rng.seed, offset=self._offset, mode=self.mode,
                                        y=self._y, activation=self.activation, out=out)
        return kernels.dropout_backward(dy, self.p_drop, self.rng.seed, self._offset, self.mode, self._y,
                                        self.activation, out)

    def extra_repr(self):
        return f"p={self.p_drop}, mode={self.mode!r}{_activation_repr(self.activation)}"


# ---- containers


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse. Children are named "0", "1", ..."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            self.add_module(str(i), layer)
        first = next((m for m in self.children() if isinstance(m, Linear)), None)
        if first is not None and first is self.children()[0]:
            first.input_grad = False  # nothing below the first layer needs dx

    def __getitem__(self, i):
        return self.children()[i]

    def __len__(self):
        return len(self._children)

    def forward(self, x, training=None):
        training = self._mode(training)
        if training and self._parent is None:
            self.release_activations()  # the last step's, so that their arrays can be reused
        for layer in self._children.values():
            x = layer.forward(x, training)
        return x

    def backward(self, dy):
        for layer in reversed(self._children.values()):
            dy = layer.backward(dy)
        return dy

    def input_gradient(self, enabled=True):
        """Whether backward returns the gradient of the input (off by default for a model that
        starts with a Linear layer, which saves one GEMM)."""
        first = self.children()[0] if self._children else None
        if isinstance(first, Linear):
            first.input_grad = bool(enabled)
        return self


class MLP(Sequential):
    """A multilayer perceptron: ``sizes = [in, hidden..., out]``.

    Each hidden layer is Linear, then the normalization (``norm="batch"`` or ``"layer"``; the
    Linear has no bias before batch norm, which would cancel it), then the activation, then
    dropout; the last layer is a plain Linear (logits). A ReLU is fused into the layer it
    follows or precedes (``activation="relu"`` of the Dropout when there is dropout, else of the
    norm, else of the Linear), so it costs no pass of its own. ``input_dropout`` drops input
    features.
    ``init`` and ``bias_init`` are passed to every Linear; ``seed`` seeds the initialization
    and the dropout stream.
    """

    def __init__(self, sizes, activation="relu", norm=None, dropout=0.0, input_dropout=0.0, *,
                 dropout_mode="inverted", init=None, bias_init=None, seed=0, dtype=np.float32):
        sizes = [_checks_size(f"sizes[{i}]", s) for i, s in enumerate(sizes)]
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least [in, out], got {sizes}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation: expected one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if norm not in (None, "batch", "layer"):
            raise ValueError(f"norm: expected None, 'batch' or 'layer', got {norm!r}")
        rng = np.random.default_rng(seed)
        layers = []
        if input_dropout:
            layers.append(Dropout(input_dropout, mode=dropout_mode))
        # Where the ReLU is fused: into the Dropout after it, else the norm before it, else the
        # Linear.
        relu = activation == "relu"
        fuse_into = None if not relu else "dropout" if dropout else "norm" if norm else "linear"
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            layers.append(Linear(fan_in, fan_out, bias=last or norm != "batch",
                                 activation="relu" if fuse_into == "linear" and not last else None,
                                 init=init or ("he" if relu and not last else "xavier"),
                                 bias_init=bias_init, rng=rng, dtype=dtype))
            if last:
                break
            norm_activation = "relu" if fuse_into == "norm" else None
            if norm == "batch":
                layers.append(BatchNorm1d(fan_out, activation=norm_activation, dtype=dtype))
            elif norm == "layer":
                layers.append(LayerNorm(fan_out, activation=norm_activation, dtype=dtype))
            if not relu:
                layers.append(_ACTIVATIONS[activation]())
            if dropout:
                layers.append(Dropout(dropout, mode=dropout_mode, activation="relu" if relu else None))
        super().__init__(*layers)
        self.sizes, self.activation, self.norm = sizes, activation, norm
        self.seed(seed)
