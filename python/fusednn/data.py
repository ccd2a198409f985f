"""Small data sets, IDX (MNIST) files, feature scalers and minibatch iteration.

Every data set is returned as ``(x, y)``: ``x`` float32 of shape ``(n, features)`` and ``y``
int64 class labels of shape ``(n,)``. Random data sets are reproducible: the same arguments
(``seed`` included) give the same arrays.
"""

import functools
import gzip
import math
import numbers
import struct
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from fusednn import ops
from fusednn._checks import _show, at_least_zero

__all__ = ["xor", "spirals", "moons", "digits", "read_idx", "mnist", "NotFittedError", "MinMaxScaler",
           "StandardScaler", "batches", "num_batches"]


def _integer(name, value, low):
    """value as an int; TypeError unless it is an integer (bool is not), ValueError if < low."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name}: expected an integer >= {low}, got {_show(value)}")
    if value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {_show(value)}")
    return int(value)


def _flag(name, value):
    """value as a bool; TypeError unless it is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {_show(value)}")
    return bool(value)


def _choice(name, value, allowed):
    """value, which must be one of the strings in allowed (ValueError otherwise)."""
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {_show(value)}")
    return value


# ---------------------------------------------------------------------------------------------
# Toy data sets


def xor():
    """The four points of XOR: ``x`` is every point of {0, 1}^2 (float32, shape (4, 2)) in the
    order (0,0), (0,1), (1,0), (1,1), and ``y = x0 xor x1`` = [0, 1, 1, 0] (int64)."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    return x, np.array([0, 1, 1, 0], dtype=np.int64)


def spirals(n=300, classes=3, noise=0.2, seed=0):
    """Interleaved spiral arms, one per class, as in the CS231n notes ("Putting it together").

    ``n`` is the *total* number of points (like ``moons`` and PyTorch-style data sets), shared
    as evenly as possible between the classes (the first ``n % classes`` classes get one more),
    so the defaults give CS231n's 3 arms of 100 points. Arm ``j`` with ``m`` points has radius
    ``r = linspace(0, 1, m)`` and angle ``t = linspace(4j, 4(j+1), m) + noise * N(0, 1)``
    (radians), at ``(r sin t, r cos t)``. Points come grouped by class, class 0 first.

    Returns ``x`` float32 of shape (n, 2) and ``y`` int64 in ``[0, classes)``.
    """
    classes = _integer("classes", classes, 1)
    n = _integer("n", n, classes)
    noise = at_least_zero("noise", noise)
    rng = np.random.default_rng(seed)
    counts = np.full(classes, n // classes)
    counts[:n % classes] += 1
    xs = []
    for j, m in enumerate(counts):
        r = np.linspace(0.0, 1.0, m)
        t = np.linspace(4.0 * j, 4.0 * (j + 1), m) + noise * rng.standard_normal(m)
        xs.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
    return np.concatenate(xs).astype(np.float32), np.repeat(np.arange(classes, dtype=np.int64), counts)


def moons(n=200, noise=0.1, seed=0):
    """Two interleaving half circles, like ``sklearn.datasets.make_moons(shuffle=False)``.

    ``n`` is the total number of points: class 0 (the upper half circle of radius 1 centred
    at the origin) gets ``n // 2`` and class 1 (the lower one, centred at (1, 0.5)) the rest.
    Gaussian noise of standard deviation ``noise`` is added to every coordinate. Points come
    grouped by class, class 0 first.

    Returns ``x`` float32 of shape (n, 2) and ``y`` int64 in {0, 1}.
    """
    n = _integer("n", n, 2)
    noise = at_least_zero("noise", noise)
    rng = np.random.default_rng(seed)
    upper, lower = np.linspace(0.0, np.pi, n // 2), np.linspace(0.0, np.pi, n - n // 2)
    x = np.concatenate([np.column_stack([np.cos(upper), np.sin(upper)]),
                        np.column_stack([1.0 - np.cos(lower), 0.5 - np.sin(lower)])])
    x += noise * rng.standard_normal(x.shape)
    return x.astype(np.float32), np.repeat(np.array([0, 1], dtype=np.int64), [n // 2, n - n // 2])


# ---------------------------------------------------------------------------------------------
# Handwritten digits (bundled) and MNIST (read from the user's files)


@functools.lru_cache(maxsize=None)
def _digits_table():
    """The bundled digits as a read-only int64 array of shape (1797, 65), labels last."""
    with resources.as_file(resources.files("fusednn") / "datasets" / "digits.csv.gz") as path:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    table.flags.writeable = False
    return table


def digits(split="train", seed=0):
    """The 8x8 handwritten digits scikit-learn ships (UCI "Optical Recognition of Handwritten
    Digits", test set; see ``fusednn/datasets/README.md``), bundled with fusednn.

    ``x`` is float32 of shape (n, 64): the 8x8 image row-major, pixel counts 0..16 unscaled.
    ``y`` is int64 in 0..9. ``split="all"`` gives all 1797 samples in file order. Otherwise
    the samples are put in the order ``np.random.default_rng(seed).permutation(1797)`` and
    cut into ``"train"`` (the first 1078, 60%), ``"val"`` (the next 359, 20%) and ``"test"``
    (the last 360), so the three splits of one seed are disjoint and cover every sample.
    The file is parsed once per process; every call returns new arrays.
    """
    split = _choice("split", split, ("train", "val", "test", "all"))
    table = _digits_table()
    if split != "all":
        n = len(table)
        n_train, n_val = n * 3 // 5, n // 5
        start, stop = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}[split]
        table = table[np.random.default_rng(seed).permutation(n)[start:stop]]
    return table[:, :-1].astype(np.float32), table[:, -1].copy()


_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read an IDX file (the format of the MNIST files) into a new native-endian NumPy array.

    The file is 2 zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), a byte ``ndim``, ``ndim`` big-endian uint32 sizes, then the
    big-endian data. gzip-compressed files (``.gz``, recognised by their content) are read too.
    Raises ValueError when the header is not IDX or the data is shorter or longer than the
    header says.
    """
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file: expected magic bytes 00 00 <type> <ndim> with type one of "
                         f"{', '.join(f'{t:02x}' for t in _IDX_DTYPES)}, got {data[:4].hex(' ') or 'an empty file'}")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header: expected {header} bytes for {ndim} dimensions, "
                         f"got {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(data) - header != expected:
        problem = "truncated" if len(data) - header < expected else "trailing bytes in"
        raise ValueError(f"{path}: {problem} IDX file: expected {expected} data bytes for shape {shape} of "
                         f"{dtype.newbyteorder('=')}, got {len(data) - header}")
    return np.frombuffer(data, dtype, math.prod(shape), header).reshape(shape).astype(dtype.newbyteorder("="))


_MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _find_mnist_file(directory, name):
    """The path of ``name`` or ``name.gz`` in directory; FileNotFoundError saying where to get MNIST."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"mnist: neither {name} nor {name}.gz is in {directory}; the four MNIST IDX files "
                            "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                            "t10k-labels-idx1-ubyte.gz) can be downloaded from "
                            "https://ossci-datasets.s3.amazonaws.com/mnist/ (the mirror torchvision uses)")


def mnist(directory, split="train"):
    """MNIST from the standard IDX files in ``directory`` (plain or ``.gz``; see ``read_idx``).

    ``split="train"`` reads ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
    (60000 samples), ``"test"`` the ``t10k-*`` pair (10000 samples). Returns ``x`` float32 of
    shape (n, 784), the 28x28 images row-major scaled to [0, 1] (pixel / 255), and ``y``
    int64. Raises FileNotFoundError naming the missing file, ValueError if the files do not
    hold (n, 28, 28) uint8 images and n uint8 labels.
    """
    split = _choice("split", split, tuple(_MNIST_FILES))
    directory = Path(directory)
    image_path, label_path = (_find_mnist_file(directory, name) for name in _MNIST_FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise ValueError(f"{image_path}: expected uint8 images of shape (n, 28, 28), "
                         f"got {images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(f"{label_path}: expected {len(images)} uint8 labels, "
                         f"got {labels.dtype} of shape {labels.shape}")
    return images.reshape(len(images), 784).astype(np.float32) / np.float32(255), labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Scalers


class NotFittedError(ValueError, AttributeError):
    """A scaler was used before ``fit`` (a ValueError and an AttributeError, as in scikit-learn)."""


def _as_matrix(x):
    """x as a 2-d float32 or float64 array."""
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x: expected a float32 or float64 array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"x: expected a 2-d array of shape (n, features), got shape {x.shape}")
    return x


def _fit_input(x):
    """x as a 2-d float array with at least one row and only finite values."""
    x = _as_matrix(x)
    if len(x) == 0:
        raise ValueError(f"x: expected at least one sample (row) to fit, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x: expected finite values to fit, got NaN or infinity")
    return x


class _Scaler:
    """The scikit-learn style API shared by the scalers; ``fit`` sets ``n_features_in_``."""

    def fit_transform(self, x):
        """``fit(x)`` then ``transform(x)``."""
        return self.fit(x).transform(x)

    def _n_features_out(self):
        """How many features ``transform`` returns (and ``inverse_transform`` takes)."""
        return self.n_features_in_

    def _check(self, x, inverse=False):
        """x as a 2-d float array with as many columns as ``transform`` (or, with ``inverse``,
        ``inverse_transform``) takes; NotFittedError before ``fit``."""
        x = _as_matrix(x)
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(x) first")
        features = self._n_features_out() if inverse else self.n_features_in_
        if x.shape[1] != features:
            raise ValueError(f"x: expected {features} features (columns), got {x.shape[1]}")
        return x


class MinMaxScaler(_Scaler):
    """Scale each feature linearly so that its minimum and maximum over the data given to
    ``fit`` map to ``feature_range[0]`` and ``feature_range[1]``.

    ``transform(x) = (x - data_min_) * scale_ + feature_range[0]`` with
    ``scale_ = (feature_range[1] - feature_range[0]) / data_range_``; a constant feature
    (``data_range_ == 0``) gets ``scale_ = feature_range[1] - feature_range[0]``, so its fitted
    value maps to ``feature_range[0]``. Takes float32 or float64 arrays of shape
    (n, features) and returns arrays of the same dtype. Fitted attributes (float64):
    ``data_min_``, ``data_max_``, ``data_range_``, ``scale_``; and ``n_features_in_``.
    """

    def __init__(self, feature_range=(0, 1)):
        pair = tuple(feature_range) if isinstance(feature_range, (tuple, list)) else ()
        if len(pair) != 2 or not all(isinstance(v, (numbers.Real, np.floating, np.integer))
                                     and not isinstance(v, (bool, np.bool_)) for v in pair):
            raise TypeError(f"feature_range: expected a pair (low, high) of real numbers, got {_show(feature_range)}")
        if not float(pair[0]) < float(pair[1]):
            raise ValueError(f"feature_range: expected low < high, got {_show(feature_range)}")
        self.feature_range = (float(pair[0]), float(pair[1]))

    def fit(self, x):
        """Record each feature's minimum and maximum over the rows of ``x``; returns self."""
        x = _fit_input(x).astype(np.float64)
        low, high = self.feature_range
        self.data_min_, self.data_max_ = x.min(axis=0), x.max(axis=0)
        self.data_range_ = self.data_max_ - self.data_min_
        self.scale_ = (high - low) / np.where(self.data_range_ == 0, 1.0, self.data_range_)
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x):
        """``x`` scaled to ``feature_range`` (values outside the fitted range go outside it)."""
        x = self._check(x)
        dt = x.dtype
        return (x - self.data_min_.astype(dt)) * self.scale_.astype(dt) + dt.type(self.feature_range[0])

    def inverse_transform(self, x):
        """Undo ``transform``: ``(x - feature_range[0]) / scale_ + data_min_``."""
        x = self._check(x, inverse=True)
        dt = x.dtype
        return (x - dt.type(self.feature_range[0])) / self.scale_.astype(dt) + self.data_min_.astype(dt)


class StandardScaler(_Scaler):
    """Standardize each feature: ``(x - mean_) / scale_``, ``scale_`` being the population
    standard deviation (ddof=0, as in scikit-learn) over the data given to ``fit``.

    A feature is *zero-variance* when all its fitted values are equal or its standard deviation
    is at most ``eps`` (default 0: only exact constants). Such a feature is centred but not
    scaled (``scale_`` is 1), unless ``drop_zero_variance=True``: then ``transform`` leaves it
    out and ``inverse_transform`` restores it at its mean. ``kept_features_`` is the boolean
    mask of the features ``transform`` returns (all True without ``drop_zero_variance``).
    Takes float32 or float64 arrays of shape (n, features) and returns arrays of the same
    dtype. Other fitted attributes (float64): ``mean_``, ``var_``, ``scale_``; and
    ``n_features_in_``.
    """

    def __init__(self, drop_zero_variance=False, eps=0.0):
        self.drop_zero_variance = _flag("drop_zero_variance", drop_zero_variance)
        self.eps = at_least_zero("eps", eps)

    def fit(self, x):
        """Record each feature's mean and standard deviation over the rows of ``x``; returns self."""
        x = _fit_input(x)
        constant = (x == x[0]).all(axis=0)  # exact, where a computed variance may be a rounding error
        x = x.astype(np.float64)
        self.mean_ = np.where(constant, x[0], x.mean(axis=0))
        self.var_ = np.where(constant, 0.0, x.var(axis=0))
        zero = np.sqrt(self.var_) <= self.eps
        self.scale_ = np.where(zero, 1.0, np.sqrt(self.var_))
        self.kept_features_ = ~zero if self.drop_zero_variance else np.ones(x.shape[1], dtype=bool)
        self.n_features_in_ = x.shape[1]
        return self

    def _n_features_out(self):
        """How many features ``transform`` returns: those in ``kept_features_``."""
        return int(self.kept_features_.sum())

    def transform(self, x):
        """``(x - mean_) / scale_`` for the features in ``kept_features_``."""
        x = self._check(x)
        dt, kept = x.dtype, self.kept_features_
        return (x[:, kept] - self.mean_[kept].astype(dt)) / self.scale_[kept].astype(dt)

    def inverse_transform(self, x):
        """Undo ``transform``: ``x * scale_ + mean_``, with dropped features set to their mean."""
        x = self._check(x, inverse=True)
        dt, kept = x.dtype, self.kept_features_
        out = np.tile(self.mean_.astype(dt), (len(x), 1))
        out[:, kept] = x * self.scale_[kept].astype(dt) + self.mean_[kept].astype(dt)
        return out


# ---------------------------------------------------------------------------------------------
# Minibatches


def num_batches(n, batch_size, drop_last=False):
    """How many batches ``batches`` yields for ``n`` samples: ``ceil(n / batch_size)``, or
    ``n // batch_size`` with ``drop_last``."""
    n = _integer("n", n, 0)
    batch_size = _integer("batch_size", batch_size, 1)
    return n // batch_size if _flag("drop_last", drop_last) else -(-n // batch_size)


def batches(x, y, batch_size, *, shuffle=True, seed=0, epoch=0, drop_last=False):
    """Iterate over ``(x[idx], y[idx])`` minibatches of ``batch_size`` rows.

    With ``shuffle`` the sample order of an epoch is ``np.random.default_rng([seed, epoch])
    .permutation(len(x))``, a function of ``(seed, epoch)`` alone, so a run resumed at epoch
    ``e`` sees the same batches as one that never stopped; without it the order is
    ``0..n-1``. Each epoch visits every sample once; the last batch is smaller when
    ``batch_size`` does not divide ``len(x)``, unless ``drop_last`` leaves it out.
    ``batch_size=len(x)`` gives full-batch gradient descent, 1 plain SGD. The arguments are
    checked when ``batches`` is called; the batches are copied lazily (float arrays by
    :func:`fusednn.ops.gather_rows`, in parallel; others by fancy indexing). ``num_batches``
    says how many there are.
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"y: expected {n} labels, one per row of x, got {len(y)}")
    count = num_batches(n, batch_size, drop_last)
    seed, epoch = _integer("seed", seed, 0), _integer("epoch", epoch, 0)
    order = np.random.default_rng([seed, epoch]).permutation(n) if _flag("shuffle", shuffle) else np.arange(n)
    return ((_rows(x, order[i:i + batch_size]), y[order[i:i + batch_size]])
            for i in range(0, count * batch_size, batch_size))


def _rows(x, index):
    """x[index], by the parallel gather for float NumPy arrays."""
    if type(x) is np.ndarray and x.dtype in (np.float32, np.float64) and x.ndim >= 1:
        return ops.gather_rows(x, index)
    return x[index]
