"""NumPy reference of :mod:`fusednn.ops.conv`: windows from ``sliding_window_view``, products
from ``tensordot``, gradients scattered back with slices, as a NumPy user would write them."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fusednn import _checks
from fusednn.reference.linear import check_activation, write_outputs


def pair(name, value, minimum):
    """An integer >= minimum or a pair of them, as (along H, along W) (the bindings' rule)."""
    expected = "a positive integer or a pair of them" if minimum == 1 else \
        f"an integer >= {minimum} or a pair of them"
    if isinstance(value, (tuple, list)) and len(value) == 2:
        items = [_checks.integer(name, v, expected) for v in value]
    else:
        items = [_checks.integer(name, value, expected)] * 2
    if any(v < minimum or v > 2 ** 31 for v in items):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return tuple(items)


def _windows(xp, kh, kw, sh, sw, dh=1, dw=1):
    """(N, C, OH, OW, kh, kw) views of the (already padded) input."""
    win = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return win[:, :, ::sh, ::sw, ::dh, ::dw]


def _conv_args(x, w, stride, padding, dilation, groups):
    stride, padding, dilation = pair("stride", stride, 1), pair("padding", padding, 0), pair("dilation", dilation, 1)
    groups = _checks.integer("groups", groups)
    if groups < 1:
        raise ValueError(f"groups: expected an integer >= 1, got {groups}")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"x, w: expected 4-D arrays, got shapes {x.shape} and {w.shape}")
    if (x.shape[1] % groups or w.shape[0] % groups or w.shape[1] * groups != x.shape[1] or min(w.shape) < 1):
        raise ValueError(f"w: expected shape (C_out, C_in / groups, kH, kW) for x of shape {x.shape} and groups = "
                         f"{groups}, got {w.shape}")
    span = [d * (k - 1) + 1 for d, k in zip(dilation, w.shape[2:])]
    if x.shape[2] + 2 * padding[0] < span[0] or x.shape[3] + 2 * padding[1] < span[1]:
        raise ValueError(f"x: the padded input is smaller than the dilated kernel {tuple(span)}; x has shape {x.shape}")
    return stride, padding, dilation, groups


def _conv_output_shape(x, w, stride, padding, dilation):
    return (x.shape[0], w.shape[0]) + tuple((n + 2 * p - d * (k - 1) - 1) // s + 1 for n, k, s, p, d in
                                            zip(x.shape[2:], w.shape[2:], stride, padding, dilation))


def conv2d(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, activation=None, out=None):
    check_activation(activation)
    (sh, sw), (ph, pw), (dh, dw), groups = _conv_args(x, w, stride, padding, dilation, groups)
    cin_g, cout_g = w.shape[1], w.shape[0] // groups
    win = _windows(np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))), w.shape[2], w.shape[3], sh, sw, dh, dw)
    y = np.concatenate([np.tensordot(win[:, g * cin_g:(g + 1) * cin_g], w[g * cout_g:(g + 1) * cout_g],
                                     axes=([1, 4, 5], [1, 2, 3])) for g in range(groups)], axis=3)
    y = y.transpose(0, 3, 1, 2)  # (N, OH, OW, C_out) -> NCHW
    if b is not None:
        y = y + b[:, None, None]
    if activation == "relu":
        y = np.maximum(y, 0)
    y = np.ascontiguousarray(y, dtype=x.dtype)
    if out is not None:
        out[...] = y
        return out
    return y


def conv2d_backward(dy, x, w, y=None, *, stride=1, padding=0, dilation=1, groups=1, activation=None, bias=True,
                    input_grad=True, out=None):
    check_activation(activation)
    bias = _checks.flag("bias", bias)
    input_grad = _checks.flag("input_grad", input_grad)
    (sh, sw), (ph, pw), (dh, dw), groups = _conv_args(x, w, stride, padding, dilation, groups)
    cin_g, cout_g, kh, kw = w.shape[1], w.shape[0] // groups, w.shape[2], w.shape[3]
    expected = _conv_output_shape(x, w, (sh, sw), (ph, pw), (dh, dw))
    _check_dy(dy, expected)
    if activation is not None and y is None:
        raise ValueError(f"y: the forward output is required when activation is {activation!r}, got None")
    if y is not None and tuple(y.shape) != expected:
        raise ValueError(f"y: expected shape {expected}, got {y.shape}")
    # A select, as torch.relu's backward: an infinite dy where y <= 0 gives 0.
    dz = np.where(y > 0, dy, 0).astype(dy.dtype, copy=False) if activation == "relu" else dy
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = _windows(xp, kh, kw, sh, sw, dh, dw)
    oh, ow = win.shape[2], win.shape[3]
    dw_ = np.concatenate([np.tensordot(dz[:, g * cout_g:(g + 1) * cout_g], win[:, g * cin_g:(g + 1) * cin_g],
                                       axes=([0, 2, 3], [0, 2, 3])) for g in range(groups)], axis=0)
    db = dz.sum(axis=(0, 2, 3)) if bias else None
    dx = None
    if input_grad:
        dxp = np.zeros_like(xp)
        for g in range(groups):
            # (N, OH, OW, C_in/groups, kh, kw): the gradient of every window entry.
            dwin = np.tensordot(dz[:, g * cout_g:(g + 1) * cout_g], w[g * cout_g:(g + 1) * cout_g], axes=([1], [0]))
            dwin = dwin.transpose(0, 3, 1, 2, 4, 5)
            for i in range(kh):
                for j in range(kw):
                    dxp[:, g * cin_g:(g + 1) * cin_g, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                        j * dw:j * dw + sw * (ow - 1) + 1:sw] += dwin[..., i, j]
        dx = np.ascontiguousarray(dxp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]])
    return write_outputs(out, (dx, dw_.astype(x.dtype, copy=False), db))


def pool_geometry(kernel_size, stride, padding):
    """(kernel, stride, padding) pairs of a pooling call, checked (padding at most half the
    kernel, torch's rule); shared with the pooling layers of fusednn.nn."""
    k = pair("kernel_size", kernel_size, 1)
    s = k if stride is None else pair("stride", stride, 1)
    p = pair("padding", padding, 0)
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError(f"padding: expected at most half the kernel size {(k[0] // 2, k[1] // 2)} "
                         f"(kernel_size // 2), got {p}")
    return k, s, p


def _pool_output(input_shape, k, s, p, name):
    """(OH, OW); ValueError unless the input is (N, C, H, W) and the kernel fits its padded size."""
    if len(input_shape) != 4:
        raise ValueError(f"{name}: expected a 4-D array (N, C, H, W), got shape {tuple(input_shape)}")
    h, w = input_shape[2] + 2 * p[0], input_shape[3] + 2 * p[1]
    if h < k[0] or w < k[1]:
        raise ValueError(f"{name}: the padded input {(h, w)} is smaller than the kernel {k}")
    return (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1


def _check_dy(dy, expected):
    if tuple(dy.shape) != tuple(expected):
        raise ValueError(f"dy: expected shape {tuple(expected)}, got {dy.shape}")


def _input_shape(value):
    if not isinstance(value, (tuple, list)) or len(value) != 4:
        raise TypeError(f"input_shape: expected the forward input's shape (N, C, H, W), a tuple of 4 integers, "
                        f"got {value!r}")
    shape = tuple(_checks.integer("input_shape", v, "a tuple of 4 integers") for v in value)
    if min(shape) < 0:
        raise ValueError(f"input_shape: expected sizes >= 0, got {value!r}")
    return shape


def _padded_windows(x, k, s, p, fill):
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
    inside = np.pad(np.ones(x.shape[2:], bool), ((p[0], p[0]), (p[1], p[1])))
    return _windows(xp, k[0], k[1], s[0], s[1]), _windows(inside[None, None], k[0], k[1], s[0], s[1])


def max_pool2d(x, kernel_size, stride=None, padding=0):
    k, s, p = pool_geometry(kernel_size, stride, padding)
    _pool_output(x.shape, k, s, p, "x")
    win, inside = _padded_windows(x, k, s, p, -np.inf)
    n, c, oh, ow = win.shape[:4]
    flat = win.reshape(n, c, oh, ow, k[0] * k[1])
    inside = np.broadcast_to(inside.reshape(1, 1, oh, ow, k[0] * k[1]), flat.shape)
    # The first maximum over the input positions (the padding never wins), unless the window
    # holds a NaN: then the last NaN.
    best = np.where(inside, flat, -np.inf).max(axis=-1, keepdims=True)
    first_max = np.argmax(inside & (flat == best), axis=-1)
    nan = np.isnan(flat)
    last_nan = k[0] * k[1] - 1 - np.argmax(nan[..., ::-1], axis=-1)
    choice = np.where(nan.any(axis=-1), last_nan, first_max)
    y = np.take_along_axis(flat, choice[..., None], axis=-1)[..., 0]
    ih = np.arange(oh)[:, None] * s[0] - p[0] + choice // k[1]
    iw = np.arange(ow)[None, :] * s[1] - p[1] + choice % k[1]
    return np.ascontiguousarray(y, dtype=x.dtype), (ih * x.shape[3] + iw).astype(np.int64)


def max_pool2d_backward(dy, indices, input_shape):
    n, c, h, w = _input_shape(input_shape)
    if dy.ndim != 4 or dy.shape[:2] != (n, c):
        raise ValueError(f"dy: expected shape (N, C, OH, OW) with (N, C) = {(n, c)} of input_shape, got {dy.shape}")
    if indices.dtype != np.int64:
        raise TypeError(f"indices: expected dtype int64 (max_pool2d's indices), got {indices.dtype}")
    if indices.shape != dy.shape:
        raise ValueError(f"indices: expected the shape of dy {dy.shape}, got {indices.shape}")
    if indices.size and (indices.min() < 0 or indices.max() >= h * w):
        raise ValueError(f"indices: indices outside [0, H * W) = [0, {h * w}) of input_shape {input_shape!r}")
    dx = np.zeros((n * c, h * w), dy.dtype)
    planes = np.repeat(np.arange(n * c), dy.shape[2] * dy.shape[3])
    np.add.at(dx, (planes, indices.reshape(-1)), dy.reshape(-1))
    return dx.reshape(input_shape)


def _avg_divisor(x_shape, k, s, p, count_include_pad):
    if count_include_pad:
        return k[0] * k[1]
    _, inside = _padded_windows(np.zeros((1, 1) + tuple(x_shape[2:])), k, s, p, 0)
    return inside.sum(axis=(4, 5))[0, 0]


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    count_include_pad = _checks.flag("count_include_pad", count_include_pad)
    k, s, p = pool_geometry(kernel_size, stride, padding)
    _pool_output(x.shape, k, s, p, "x")
    win, _ = _padded_windows(x, k, s, p, 0)
    y = win.sum(axis=(4, 5)) / _avg_divisor(x.shape, k, s, p, count_include_pad)
    return np.ascontiguousarray(y, dtype=x.dtype)


def avg_pool2d_backward(dy, input_shape, kernel_size, stride=None, padding=0, count_include_pad=True):
    count_include_pad = _checks.flag("count_include_pad", count_include_pad)
    k, s, p = pool_geometry(kernel_size, stride, padding)
    n, c, h, w = input_shape = _input_shape(input_shape)
    oh, ow = _pool_output(input_shape, k, s, p, "input_shape")
    _check_dy(dy, (n, c, oh, ow))
    g = dy / _avg_divisor(input_shape, k, s, p, count_include_pad)
    dxp = np.zeros((n, c, h + 2 * p[0], w + 2 * p[1]), dy.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            dxp[:, :, i:i + s[0] * (oh - 1) + 1:s[0], j:j + s[1] * (ow - 1) + 1:s[1]] += g
    return np.ascontiguousarray(dxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w])


def global_avg_pool2d(x):
    if x.ndim != 4 or x.shape[2] * x.shape[3] == 0:
        raise ValueError(f"x: expected a 4-D array (N, C, H, W) with H, W >= 1, got shape {x.shape}")
    return x.mean(axis=(2, 3))


def global_avg_pool2d_backward(dy, input_shape):
    n, c, h, w = input_shape = _input_shape(input_shape)
    if h * w == 0:
        raise ValueError(f"input_shape: expected H, W >= 1, got {input_shape!r}")
    _check_dy(dy, (n, c))
    return np.ascontiguousarray(np.broadcast_to((dy / (h * w))[:, :, None, None], input_shape), dtype=dy.dtype)
