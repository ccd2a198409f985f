"""Convolutional layers over :mod:`fusednn.ops.conv`: :class:`Conv2d`, the pooling layers,
spatial dropout (:class:`Dropout2d`), :class:`Reshape` (flat rows -> images) and the :class:`CNN`
builder. Same contract as :mod:`fusednn.nn.layers`: ``forward(x, training)`` keeps what
``backward(dy)`` needs; backward returns dx and writes the parameters' gradients in place."""

import math

import numpy as np

from fusednn import _checks, ops
from fusednn._backend import array_module
from fusednn.nn import init as _init
from fusednn.nn.layers import (_WEIGHT_INITS, BatchNorm2d, Flatten, Linear, Sequential, _check_input, _checks_size,
                               _fused_activation_arg, _mode_arg, _need, _rng)
from fusednn.nn.module import Module, _dtype_of
from fusednn.reference.conv import pair, pool_geometry

__all__ = ["Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "Dropout2d", "Reshape", "CNN"]


def _torch_conv_init(w, rng):
    bound = 1 / math.sqrt(_init.fan_in_and_fan_out(w.shape)[0])
    return _init.uniform(w, -bound, bound, rng=rng)


# Linear's initializers; torch's default bound is 1/sqrt(fan_in) with fan_in = C_in/groups * kH * kW.
_CONV_INITS = {**_WEIGHT_INITS, "torch": _torch_conv_init}


class Conv2d(Module):
    """``y = act(conv2d(x, W) + b)`` on (N, C_in, H, W) input, W of shape (out_channels,
    in_channels / groups, kH, kW) as in ``torch.nn.Conv2d``; ``activation="relu"`` fuses the
    ReLU into the GEMM's epilogue.

    Args:
        kernel_size, stride, padding, dilation: an integer or a pair (H, W).
        groups: in_channels and out_channels are split into this many groups.
        init: as :class:`fusednn.nn.Linear` ("he" default with ReLU, else "xavier"; "he_uniform",
            "xavier_normal", "lecun", "orthogonal", "torch"), with the fans of a convolution
            (fan_in = in_channels / groups * kH * kW).
        bias_init: the bias's constant start value.
        rng: a numpy Generator or a seed for the initialization.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 activation=None, *, init=None, bias_init=0.0, rng=None, dtype=np.float32):
        super().__init__()
        self.in_channels = _checks_size("in_channels", in_channels)
        self.out_channels = _checks_size("out_channels", out_channels)
        self.kernel_size = pair("kernel_size", kernel_size, 1)
        self.stride = pair("stride", stride, 1)
        self.padding = pair("padding", padding, 0)
        self.dilation = pair("dilation", dilation, 1)
        self.groups = _checks_size("groups", groups)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups: expected a divisor of in_channels ({self.in_channels}) and out_channels "
                             f"({self.out_channels}), got {self.groups}")
        self.activation = _fused_activation_arg(activation)
        init = init or ("he" if activation == "relu" else "xavier")
        if init not in _CONV_INITS:
            raise ValueError(f"init: expected one of {sorted(_CONV_INITS)}, got {init!r}")
        dtype = self._dtype = _dtype_of(dtype)
        w = np.empty((self.out_channels, self.in_channels // self.groups, *self.kernel_size), dtype)
        _CONV_INITS[init](w, _rng(rng))
        self.add_parameter("weight", w)
        self.has_bias = bool(bias)
        if self.has_bias:
            self.add_parameter("bias", np.full(self.out_channels, bias_init, dtype))
        self.input_grad = True  # False for a first layer: skips the input gradient
        self._cache = None

    def _geometry(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def output_shape(self, input_shape):
        """(C_out, OH, OW) of an input of shape (C_in, H, W)."""
        _, h, w = input_shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return self.out_channels, (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    def forward(self, x, training=None):
        training = self._mode(training)
        _check_input(x, "x", self.in_channels, ndim=4, dtype=self._dtype, device=self.device)
        y = ops.conv2d(x, self.p["weight"], self.p.get("bias"), activation=self.activation, **self._geometry())
        self._cache = (x, y) if training else None
        return y

    def backward(self, dy):
        x, y = _need(self._cache, self)
        dx, _, _ = ops.conv2d_backward(dy, x, self.p["weight"], y if self.activation else None,
                                       activation=self.activation, bias=self.has_bias, input_grad=self.input_grad,
                                       out=(None, self.g["weight"], self.g["bias"] if self.has_bias else None),
                                       **self._geometry())
        return dx

    def extra_repr(self):
        act = f", activation={self.activation!r}" if self.activation else ""
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.has_bias}{act}")


class _Pool2d(Module):
    """The geometry shared by the pooling layers (stride defaults to the kernel size; floor mode)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool_geometry(kernel_size, stride, padding)
        self._cache = None

    def output_shape(self, input_shape):
        c, h, w = input_shape
        return (c, (h + 2 * self.padding[0] - self.kernel_size[0]) // self.stride[0] + 1,
                (w + 2 * self.padding[1] - self.kernel_size[1]) // self.stride[1] + 1)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """Max pooling, as ``torch.nn.MaxPool2d``; backward routes each gradient to the window's first
    maximum (:func:`fusednn.ops.max_pool2d`)."""

    def forward(self, x, training=None):
        _check_input(x, "x", ndim=4, device=self.device)
        y, idx = ops.max_pool2d(x, self.kernel_size, self.stride, self.padding)
        self._cache = (idx, x.shape) if self._mode(training) else None
        return y

    def backward(self, dy):
        idx, shape = _need(self._cache, self)
        return ops.max_pool2d_backward(dy, idx, shape)


class AvgPool2d(_Pool2d):
    """Average pooling, as ``torch.nn.AvgPool2d`` (``count_include_pad``: the zero padding counts
    in the divisor)."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = _checks.flag("count_include_pad", count_include_pad)

    def forward(self, x, training=None):
        _check_input(x, "x", ndim=4, device=self.device)
        self._cache = x.shape if self._mode(training) else None
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def backward(self, dy):
        return ops.avg_pool2d_backward(dy, _need(self._cache, self), self.kernel_size, self.stride, self.padding,
                                       self.count_include_pad)

    def extra_repr(self):
        return super().extra_repr() + f", count_include_pad={self.count_include_pad}"


class GlobalAvgPool2d(Module):
    """The mean of every channel map: (N, C, H, W) -> (N, C)."""

    def output_shape(self, input_shape):
        return (input_shape[0],)

    def forward(self, x, training=None):
        _check_input(x, "x", ndim=4, device=self.device)
        self._cache = x.shape if self._mode(training) else None
        return ops.global_avg_pool2d(x)

    def backward(self, dy):
        return ops.global_avg_pool2d_backward(dy, _need(getattr(self, "_cache", None), self))


class Dropout2d(Module):
    """Spatial dropout (Tompson et al. 2015), as ``torch.nn.Dropout2d``: each channel map of each
    sample is dropped whole with probability ``p``. The (N, C) keep-mask comes from the model's
    Philox stream (``ops.dropout`` of ones: one counter per map), so it depends only on (seed,
    offset); ``mode`` as in :class:`fusednn.nn.Dropout` ("inverted" scales the kept maps by
    1/(1-p) in training; "vanilla" scales by 1-p at evaluation)."""

    def __init__(self, p=0.5, *, mode="inverted"):
        super().__init__()
        self.p_drop = _checks.in_unit_interval("p", p, closed_right=False)
        self.mode = _mode_arg(mode)
        self._scale = None

    def forward(self, x, training=None):
        _check_input(x, "x", ndim=4, device=self.device)
        xp = array_module(x)
        if not self._mode(training):
            self._scale = None
            return x * x.dtype.type(1 - self.p_drop) if self.mode == "vanilla" else x
        ones = xp.ones(x.shape[:2], x.dtype)
        scale = ops.dropout(ones, self.p_drop, seed=self.rng.seed, offset=self.rng.take(ones.size), mode=self.mode)
        self._scale = scale[:, :, None, None]
        return x * self._scale

    def backward(self, dy):
        if self._scale is None:
            raise RuntimeError("Dropout2d.backward: no training forward to differentiate")
        return dy * self._scale

    def extra_repr(self):
        return f"p={self.p_drop}, mode={self.mode!r}"


class Reshape(Module):
    """(N, ...) -> (N, *shape), e.g. flat image rows (N, C*H*W) -> (N, C, H, W); a view, no copy."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(_checks_size(f"shape[{i}]", s) for i, s in enumerate(shape))

    def output_shape(self, input_shape):
        return self.shape

    def forward(self, x, training=None):
        _check_input(x, "x", device=self.device)
        if x.ndim < 1 or math.prod(x.shape[1:]) != math.prod(self.shape):
            raise ValueError(f"x: expected (N, ...) with {math.prod(self.shape)} values per sample to reshape to "
                             f"(N, {', '.join(map(str, self.shape))}), got shape {x.shape}")
        self._in = x.shape
        return x.reshape((x.shape[0], *self.shape))

    def backward(self, dy):
        return None if dy is None else dy.reshape(self._in)  # None: the layer after skips dx

    def extra_repr(self):
        return f"{self.shape}"


class CNN(Sequential):
    """A convolutional classifier: conv blocks, then a linear head.

    Each block is a ``kernel_size`` convolution with "same" padding, batch norm (``norm="batch"``;
    the convolution then has no bias) with the ReLU fused into it (into the convolution's
    epilogue without norm), spatial dropout when ``spatial_dropout`` > 0, and 2x2 max pooling
    (``pool="max"``, ``"avg"`` or None; skipped once the maps are 1x1). The head is
    ``head="flatten"`` (flatten, dropout ``dropout``, Linear to ``classes``) or ``"global_avg"``
    (global average pooling, dropout, Linear). With ``flat_input=True`` the model takes flat rows
    (N, C*H*W) (what ``fusednn.train`` hands it) and reshapes them to ``input_shape`` first.

    Args:
        input_shape: (C, H, W) of one sample.
        channels: output channels of each block.
        classes: outputs of the head (logits).
        init: passed to every Conv2d and the head (default: "he" before a ReLU, "xavier" for the
            head); ``seed`` seeds the initialization and the dropout stream.
    """

    def __init__(self, input_shape, channels=(32, 64), classes=10, *, kernel_size=3, norm="batch", pool="max",
                 dropout=0.0, spatial_dropout=0.0, head="flatten", flat_input=True, init=None, seed=0,
                 dtype=np.float32):
        if len(tuple(input_shape)) != 3:
            raise ValueError(f"input_shape: expected (C, H, W), got {input_shape!r}")
        shape = tuple(_checks_size(f"input_shape[{i}]", s) for i, s in enumerate(input_shape))
        channels = [_checks_size(f"channels[{i}]", c) for i, c in enumerate(channels)]
        classes = _checks_size("classes", classes)
        if norm not in (None, "batch"):
            raise ValueError(f"norm: expected None or 'batch', got {norm!r}")
        if pool not in (None, "max", "avg"):
            raise ValueError(f"pool: expected None, 'max' or 'avg', got {pool!r}")
        if head not in ("flatten", "global_avg"):
            raise ValueError(f"head: expected 'flatten' or 'global_avg', got {head!r}")
        k = pair("kernel_size", kernel_size, 1)
        rng = np.random.default_rng(seed)
        layers = [Reshape(shape)] if flat_input else []
        for c in channels:
            conv = Conv2d(shape[0], c, k, padding=(k[0] // 2, k[1] // 2), bias=norm is None,
                          activation=None if norm else "relu", init=init or "he", rng=rng, dtype=dtype)
            layers.append(conv)
            shape = conv.output_shape(shape)
            if norm == "batch":
                layers.append(BatchNorm2d(c, activation="relu", dtype=dtype))
            if spatial_dropout:
                layers.append(Dropout2d(spatial_dropout))
            if pool and min(shape[1:]) >= 2:
                layers.append(MaxPool2d(2) if pool == "max" else AvgPool2d(2))
                shape = layers[-1].output_shape(shape)
        layers.append(Flatten() if head == "flatten" else GlobalAvgPool2d())
        features = math.prod(shape) if head == "flatten" else shape[0]
        if dropout:
            from fusednn.nn.layers import Dropout
            layers.append(Dropout(dropout))
        layers.append(Linear(features, classes, init=init or "xavier", rng=rng, dtype=dtype))
        super().__init__(*layers)
        self.sizes = [tuple(input_shape), *channels, classes]  # for summaries, as MLP.sizes
        self.input_gradient(False)
        self.seed(seed)

    def input_gradient(self, enabled=True):
        """Whether backward returns the gradient of the input (off by default: the first
        convolution then skips its input gradient)."""
        first = next((m for m in self.children() if isinstance(m, (Conv2d, Linear))), None)
        if first is not None:
            first.input_grad = bool(enabled)
        return self
