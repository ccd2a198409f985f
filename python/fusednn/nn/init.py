"""Weight initializers with PyTorch's fan and gain conventions (``torch.nn.init``).

Each fills a NumPy float array in place and returns it. The random ones take ``rng``: a
``numpy.random.Generator``, an integer seed, or None (a fresh ``default_rng()``). Values are
drawn in float64 and then cast into the array, so a seed gives the same draws whatever the
array's dtype. The array is the first argument and is positional-only (``he_*`` has a
hyperparameter called ``a``, as in torch).

Fans follow torch: a weight of shape (out, in, *receptive) has
``fan_in = in * prod(receptive)`` and ``fan_out = out * prod(receptive)``.
"""

import math
import numbers

import numpy as np

from fusednn import _checks

__all__ = ["fan_in_and_fan_out", "calculate_gain", "zeros", "constant", "normal", "uniform", "xavier_uniform",
           "xavier_normal", "he_uniform", "kaiming_uniform", "he_normal", "kaiming_normal", "lecun_normal",
           "lecun_uniform", "orthogonal"]

_MODES = ("fan_in", "fan_out")
_LINEAR = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
           "sigmoid")


def _check_array(array):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"array: expected a numpy.ndarray, got {type(array).__module__}.{type(array).__qualname__}")
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"array: expected a floating-point array, got {array.dtype}")
    if not array.flags.writeable:
        raise ValueError("array: expected a writable array (it is filled in place)")


def _generator(rng):
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, (numbers.Integral, np.integer)) and not isinstance(rng, (bool, np.bool_))
                       and rng >= 0):
        return np.random.default_rng(rng)
    raise TypeError(f"rng: expected a numpy.random.Generator, an integer seed >= 0 or None, got {rng!r}")


def _fill(array, values):
    array[...] = values  # float64 draws cast into the array's dtype
    return array


def _std(gain, fan):
    # A fan is 0 only for an empty array, where there is nothing to fill.
    return gain / math.sqrt(fan) if fan > 0 else 0.0


def fan_in_and_fan_out(shape):
    """``(fan_in, fan_out)`` of a weight of shape (out, in, *receptive), as in torch."""
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"shape: expected at least 2 dimensions (out, in, *receptive), got {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (torch's table): 1 for linear, convolutions and
    sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + slope^2)) for leaky_relu (``param`` is
    the negative slope, default 0.01) and 3/4 for selu. One name is not torch's: "logistic"
    gives 4, the course's (Glorot & Bengio 2010) Xavier rule for logistic-sigmoid units, 16
    times the variance of gain 1 (torch's "sigmoid" keeps torch's gain 1)."""
    if nonlinearity in _LINEAR:
        return 1.0
    if nonlinearity == "logistic":
        return 4.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else _checks.real("param", param, "a negative slope (a number)")
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    if nonlinearity == "selu":
        return 0.75
    raise ValueError(f"nonlinearity: expected one of {', '.join(_LINEAR)}, tanh, relu, leaky_relu, selu, "
                     f"logistic, got {nonlinearity!r}")


def zeros(array, /):
    _check_array(array)
    return _fill(array, 0.0)


def constant(array, /, value):
    _check_array(array)
    return _fill(array, _checks.real("value", value, "a number"))


def normal(array, /, mean=0.0, std=1.0, rng=None):
    """Samples of N(mean, std^2)."""
    _check_array(array)
    mean = _checks.real("mean", mean, "a number")
    std = _checks.at_least_zero("std", std)
    return _fill(array, _generator(rng).normal(mean, std, array.shape))


def uniform(array, /, low=0.0, high=1.0, rng=None):
    """Samples of U(low, high)."""
    _check_array(array)
    low = _checks.real("low", low, "a number")
    high = _checks.real("high", high, "a number")
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"low, high: expected finite bounds with low <= high, got low={low}, high={high}")
    return _fill(array, _generator(rng).uniform(low, high, array.shape))


def _uniform_with_std(array, std, rng):
    bound = math.sqrt(3.0) * std  # U(-b, b) has std b / sqrt(3)
    return _fill(array, _generator(rng).uniform(-bound, bound, array.shape))


def _normal_with_std(array, std, rng):
    return _fill(array, _generator(rng).normal(0.0, std, array.shape))


def _xavier_std(array, gain):
    _check_array(array)
    fan_in, fan_out = fan_in_and_fan_out(array.shape)
    if isinstance(gain, str):
        names = _LINEAR + ("tanh", "relu", "leaky_relu", "selu", "logistic")
        if gain not in names:
            raise TypeError(f"gain: expected a number or a nonlinearity name ({', '.join(names)}), got {gain!r}")
        gain = calculate_gain(gain)
    return _std(_checks.real("gain", gain, "a number or a nonlinearity name"), (fan_in + fan_out) / 2.0)


def xavier_uniform(array, /, gain=1.0, rng=None):
    """Glorot: U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)). ``gain`` is a number or a
    nonlinearity name for :func:`calculate_gain`: ``gain="logistic"`` is the course's rule for
    logistic units (gain 4), ``"tanh"`` torch's 5/3."""
    return _uniform_with_std(array, _xavier_std(array, gain), rng)


def xavier_normal(array, /, gain=1.0, rng=None):
    """Glorot: N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out)); ``gain`` as in
    :func:`xavier_uniform`."""
    return _normal_with_std(array, _xavier_std(array, gain), rng)


def _he_std(array, a, mode, nonlinearity):
    _check_array(array)
    if mode not in _MODES:
        raise ValueError(f"mode: expected 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(array.shape)
    return _std(calculate_gain(nonlinearity, a), fan_in if mode == "fan_in" else fan_out)


def he_uniform(array, /, a=0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """He / Kaiming (torch's ``kaiming_uniform_``): U(-b, b) with b = gain * sqrt(3 / fan), gain =
    ``calculate_gain(nonlinearity, a)`` and fan the fan_in or fan_out chosen by ``mode``."""
    return _uniform_with_std(array, _he_std(array, a, mode, nonlinearity), rng)


def he_normal(array, /, a=0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """He / Kaiming (torch's ``kaiming_normal_``): N(0, std^2) with std = gain / sqrt(fan)."""
    return _normal_with_std(array, _he_std(array, a, mode, nonlinearity), rng)


kaiming_uniform = he_uniform
kaiming_normal = he_normal


def lecun_normal(array, /, rng=None):
    """LeCun: N(0, std^2) with std = 1 / sqrt(fan_in) (not truncated)."""
    _check_array(array)
    return _normal_with_std(array, _std(1.0, fan_in_and_fan_out(array.shape)[0]), rng)


def lecun_uniform(array, /, rng=None):
    """LeCun: U(-b, b) with b = sqrt(3 / fan_in) (std 1 / sqrt(fan_in); Keras' ``lecun_uniform``)."""
    _check_array(array)
    return _uniform_with_std(array, _std(1.0, fan_in_and_fan_out(array.shape)[0]), rng)


def orthogonal(array, /, gain=1.0, rng=None):
    """A (semi-)orthogonal matrix times ``gain``, as torch's ``orthogonal_``: the array is viewed
    as (shape[0], prod(shape[1:])); with rows <= cols the rows are orthonormal (W W^T = gain^2 I),
    otherwise the columns are. Q of the QR decomposition of a Gaussian matrix, with its columns'
    signs fixed by diag(R) so that Q is uniformly (Haar) distributed."""
    _check_array(array)
    gain = _checks.real("gain", gain, "a number")
    if array.ndim < 2:
        raise ValueError(f"array: expected at least 2 dimensions, got shape {array.shape}")
    if array.size == 0:
        return array
    rows, cols = array.shape[0], array.size // array.shape[0]
    g = _generator(rng).standard_normal((rows, cols))
    if rows < cols:
        g = g.T
    q, r = np.linalg.qr(g)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    if rows < cols:
        q = q.T
    return _fill(array, gain * q.reshape(array.shape))
