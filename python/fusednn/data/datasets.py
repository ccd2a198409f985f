"""Small data sets and IDX (MNIST) files.

Every data set is returned as ``(x, y)``: ``x`` float32 of shape ``(n, features)`` and ``y``
int64 class labels of shape ``(n,)``. Random data sets are reproducible: the same arguments
(``seed`` included) give the same arrays.
"""

import functools
import gzip
import math
import struct
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from fusednn._checks import at_least_zero
from fusednn.data._args import _choice, _integer

__all__ = ["xor", "spirals", "moons", "digits", "read_idx", "mnist"]

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
