"""NumPy reference of :mod:`fusednn.ops.dropout`: dropout, DropConnect and Gaussian noise
driven by the counter-based generator Philox4x32-10 (see docs/ops.md, "Dropout and noise").

The random word of element i (C order) of an array is word ``i % 4`` of the Philox block
for the counter ``(j & 0xffffffff, j >> 32, offset & 0xffffffff, offset >> 32)``,
``j = i // 4``, under the key ``(seed & 0xffffffff, seed >> 32)``.
"""

import math
import numbers

import numpy as np

from fusednn import _checks
from fusednn.reference.linear import check_activation

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
_SHIFT8 = np.uint64(8)
# Philox4x32 round multipliers and Weyl key increments (Salmon et al., SC'11; Random123).
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_TWO_24 = 16777216.0


# ---- argument checks ----

def _show(value):
    if isinstance(value, (numbers.Number, np.number)):
        return str(value)
    return repr(value)


def _check_u64(name, value):
    """An integer in [0, 2**64), as a Python int."""
    msg = f"{name}: expected an integer in [0, 2**64), got {_show(value)}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(msg)
    value = int(value)
    if not 0 <= value < 2**64:
        raise ValueError(msg)
    return value


def _check_p(p):
    """A drop probability in [0, 1), as a Python float."""
    p = _checks.real("p", p, "a drop probability in [0, 1)")
    if not 0.0 <= p < 1.0:  # also refuses NaN
        raise ValueError(f"p: expected a drop probability in [0, 1), got {p}")
    return p


def _check_std(std):
    return _checks.at_least_zero("std", std)


def _check_mode(mode):
    if not (isinstance(mode, str) and mode in ("inverted", "vanilla")):
        raise ValueError(f"mode: expected 'inverted' or 'vanilla', got {mode!r}")
    return mode


def _check_words(name, a, width):
    """a as a uint32 array whose last axis has ``width`` entries."""
    if isinstance(a, np.ndarray):
        if a.dtype != np.uint32:
            if a.dtype.kind not in "ui":
                raise TypeError(f"{name}: expected dtype uint32, got {a.dtype}")
            if a.size and (a.min() < 0 or a.max() > 0xFFFFFFFF):
                raise ValueError(f"{name}: expected values in [0, 2**32)")
            a = a.astype(np.uint32)
    else:
        a = np.asarray(a, dtype=np.uint32)
    if a.ndim == 0 or a.shape[-1] != width:
        raise ValueError(f"{name}: expected shape (..., {width}), got {a.shape}")
    return a


# ---- Philox4x32-10 ----

def _philox_rounds(c0, c1, c2, c3, k0, k1):
    """Ten Philox4x32 rounds on 32-bit values held in uint64 arrays (products fit in 64 bits).
    Returns the four output words as uint64 arrays."""
    for _ in range(10):
        p0 = c0 * _M0
        p1 = c2 * _M1
        c0, c1, c2, c3 = ((p1 >> _SHIFT32) ^ c1 ^ k0,
                          p1 & _MASK32,
                          (p0 >> _SHIFT32) ^ c3 ^ k1,
                          p0 & _MASK32)
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


def philox4x32_10(counters, key):
    """Philox4x32-10 of each 4-word counter under a 2-word key.

    Args:
        counters: uint32 array of shape (..., 4).
        key: uint32 array of shape (2,) or (..., 2), broadcast against the counters.

    Returns:
        uint32 array of shape (..., 4).
    """
    counters = _check_words("counters", counters, 4).astype(np.uint64)
    key = _check_words("key", key, 2).astype(np.uint64)
    shape = np.broadcast_shapes(counters.shape[:-1], key.shape[:-1])
    c = [np.broadcast_to(counters[..., w], shape) for w in range(4)]
    k0, k1 = (np.broadcast_to(key[..., w], shape) for w in range(2))
    out = np.empty(shape + (4,), dtype=np.uint32)
    for w, word in enumerate(_philox_rounds(*c, k0, k1)):
        out[..., w] = word
    return out


def _blocks(nblocks, seed, offset):
    """The (nblocks, 4) uint32 words of blocks 0..nblocks-1 of the stream (seed, offset)."""
    j = np.arange(nblocks, dtype=np.uint64)
    c2 = np.full(nblocks, offset & 0xFFFFFFFF, dtype=np.uint64)
    c3 = np.full(nblocks, offset >> 32, dtype=np.uint64)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    words = _philox_rounds(j & _MASK32, j >> _SHIFT32, c2, c3, k0, k1)
    return np.stack(words, axis=-1).astype(np.uint32)


def philox_uint32(n, seed, offset):
    """The random words r_0 .. r_{n-1} of elements 0 .. n-1 of the stream (seed, offset)."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n: expected an integer >= 0, got {_show(n)}")
    n = int(n)
    seed = _check_u64("seed", seed)
    offset = _check_u64("offset", offset)
    return _blocks((n + 3) // 4, seed, offset).reshape(-1)[:n]


def _normal(n, seed, offset):
    """n standard normal float64 values by Box-Muller on the stream's words."""
    r = _blocks((n + 3) // 4, seed, offset)
    u1 = ((r[:, 0::2] >> 8).astype(np.float64) + 1.0) / _TWO_24  # words 0, 2: in (0, 1]
    u2 = (r[:, 1::2] >> 8).astype(np.float64) / _TWO_24  # words 1, 3: in [0, 1)
    radius = np.sqrt(-2.0 * np.log(u1))
    theta = 2.0 * np.pi * u2
    z = np.empty(r.shape, dtype=np.float64)
    z[:, 0::2] = radius * np.cos(theta)
    z[:, 1::2] = radius * np.sin(theta)
    return z.reshape(-1)[:n]


# ---- dropout ----

def _shape_tuple(shape):
    if isinstance(shape, numbers.Integral):
        return (int(shape),)
    return tuple(int(s) for s in shape)


def _mask(shape, p, seed, offset):
    shape = _shape_tuple(shape)
    threshold = math.ceil(p * _TWO_24)
    r = _blocks((math.prod(shape) + 3) // 4, seed, offset).reshape(-1)[:math.prod(shape)]
    return ((r >> 8) >= threshold).reshape(shape)


def _result(y, out):
    if out is not None:
        out[...] = y
        return out
    return y


def _masked(x, p, seed, offset, mode, out):
    """x * m * s with the training mask (s = 1/(1-p) for "inverted", 1 for "vanilla")."""
    if p == 0.0:
        return _result(x, out)
    dtype = x.dtype.type
    scale = dtype(1.0 / (1.0 - p)) if mode == "inverted" else dtype(1.0)
    # A multiplication, not a select: a dropped NaN or Inf gives NaN, as in PyTorch.
    multiplier = np.where(_mask(x.shape, p, seed, offset), scale, dtype(0.0))
    return _result(x * multiplier, out)


def dropout_mask(shape, p, *, seed, offset=0):
    """The keep mask (bool) of an array of this shape: element i is kept when
    ``(r_i >> 8) >= ceil(p * 2**24)``."""
    p = _check_p(p)
    seed = _check_u64("seed", seed)
    offset = _check_u64("offset", offset)
    return _mask(shape, p, seed, offset)


def dropout(x, p, *, seed, offset=0, training=True, mode="inverted", activation=None, out=None):
    p, training = _check_p(p), _checks.flag("training", training)
    seed = _check_u64("seed", seed)
    offset = _check_u64("offset", offset)
    mode = _check_mode(mode)
    check_activation(activation)
    if activation == "relu":
        x = np.maximum(x, 0)
    if training:
        return _masked(x, p, seed, offset, mode, out)
    if mode == "inverted":
        return _result(x, out)
    return _result(x * x.dtype.type(1.0 - p), out)


def dropout_backward(dy, p, *, seed, offset=0, mode="inverted", y=None, activation=None, out=None):
    p = _check_p(p)
    seed = _check_u64("seed", seed)
    offset = _check_u64("offset", offset)
    mode = _check_mode(mode)
    check_activation(activation)
    if activation == "relu":
        if y is None:
            raise ValueError("y: the forward output is required when activation is 'relu', got None")
        if y.shape != dy.shape or y.dtype != dy.dtype:
            raise ValueError(f"y: expected a {dy.dtype} array of shape {dy.shape} (as dy), got a {y.dtype} array "
                             f"of shape {y.shape}")
        # y > 0 exactly where the unit was kept and its input positive; a select, as ReLU's
        # backward.
        scale = dy.dtype.type(1.0 / (1.0 - p)) if mode == "inverted" else dy.dtype.type(1.0)
        return _result(np.where(y > 0, dy * scale, dy.dtype.type(0)), out)
    return _masked(dy, p, seed, offset, mode, out)


def drop_connect(w, p, *, seed, offset=0, training=True, mode="inverted", out=None):
    return dropout(w, p, seed=seed, offset=offset, training=training, mode=mode, out=out)


def drop_connect_backward(dw, p, *, seed, offset=0, mode="inverted", out=None):
    return dropout_backward(dw, p, seed=seed, offset=offset, mode=mode, out=out)


# ---- Gaussian noise ----

def gaussian_noise(x, std, *, seed, offset=0, training=True, out=None):
    std, training = _check_std(std), _checks.flag("training", training)
    seed = _check_u64("seed", seed)
    offset = _check_u64("offset", offset)
    if not training:
        return _result(x, out)
    z = _normal(x.size, seed, offset).reshape(x.shape)
    wide = np.result_type(x.dtype, np.float64)
    return _result((x.astype(wide) + std * z).astype(x.dtype), out)
