"""fusednn.data: toy and bundled data sets, IDX/MNIST reading, scalers and minibatches."""

import gzip
import struct

import numpy as np
import pytest

from conftest import assert_close
from fusednn import data



def check_dataset(x, y, n, features, classes):
    assert x.dtype == np.float32 and x.shape == (n, features)
    assert y.dtype == np.int64 and y.shape == (n,)
    assert np.isfinite(x).all()
    np.testing.assert_array_equal(np.unique(y), np.arange(classes))


# --- toy data sets ---------------------------------------------------------------------------


def test_xor_exact():
    x, y = data.xor()
    assert x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y, [0, 1, 1, 0])


@pytest.mark.parametrize("n, classes", [(300, 3), (301, 3), (50, 5), (7, 1)])
def test_spirals_shapes_and_class_sizes(n, classes):
    x, y = data.spirals(n=n, classes=classes)
    check_dataset(x, y, n, 2, classes)
    counts = np.bincount(y)
    assert counts.max() - counts.min() <= 1
    assert np.all(np.linalg.norm(x, axis=1) <= 1 + 1e-6)  # noise moves the angle, not the radius


def test_spirals_default_is_cs231n_layout_without_noise():
    x, y = data.spirals(noise=0.0)
    r, t = np.linspace(0, 1, 100), np.linspace(4, 8, 100)  # arm 1
    assert_close(x[y == 1], np.column_stack([r * np.sin(t), r * np.cos(t)]))


@pytest.mark.parametrize("n", [200, 201, 2])
def test_moons_shapes_and_class_sizes(n):
    x, y = data.moons(n=n)
    check_dataset(x, y, n, 2, 2)
    np.testing.assert_array_equal(np.bincount(y), [n // 2, n - n // 2])


def test_moons_without_noise_lie_on_the_half_circles():
    x, y = data.moons(n=100, noise=0.0)
    assert_close(np.linalg.norm(x[y == 0], axis=1), np.ones(50, np.float32))
    assert_close(np.linalg.norm(x[y == 1] - np.float32([1, 0.5]), axis=1), np.ones(50, np.float32))
    assert (x[y == 0, 1] >= -1e-7).all() and (x[y == 1, 1] <= 0.5 + 1e-7).all()


@pytest.mark.parametrize("make", [data.spirals, data.moons])
def test_toy_sets_reproducible_per_seed(make):
    a, b, c = make(seed=3), make(seed=3), make(seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("call, error, match", [
    (lambda: data.spirals(n=2, classes=3), ValueError, "n: expected an integer >= 3, got 2"),
    (lambda: data.spirals(classes=0), ValueError, "classes: expected an integer >= 1"),
    (lambda: data.spirals(n=10.0), TypeError, "n: expected an integer"),
    (lambda: data.spirals(noise=-0.1), ValueError, "noise: expected a value >= 0"),
    (lambda: data.moons(n=1), ValueError, "n: expected an integer >= 2, got 1"),
    (lambda: data.moons(noise="big"), TypeError, "noise"),
])
def test_toy_sets_argument_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- digits ----------------------------------------------------------------------------------


def test_digits_all():
    x, y = data.digits("all")
    check_dataset(x, y, 1797, 64, 10)
    assert x.min() == 0 and x.max() == 16
    np.testing.assert_array_equal(x, np.round(x))


@pytest.mark.parametrize("seed", [0, 1])
def test_digits_splits_partition_the_data(seed):
    x_all, y_all = data.digits("all")
    sizes = {"train": 1078, "val": 359, "test": 360}
    seen = []
    for split, size in sizes.items():
        x, y = data.digits(split, seed=seed)
        check_dataset(x, y, size, 64, 10)
        assert 0 <= x.min() and x.max() <= 16
        seen += [tuple(r) + (label,) for r, label in zip(x.tolist(), y.tolist())]
    # The splits together are the whole file, each row once (compared as multisets, since
    # the file may repeat a row); with the sizes summing to 1797 this rules out any overlap.
    all_rows = sorted(tuple(r) + (label,) for r, label in zip(x_all.tolist(), y_all.tolist()))
    assert sorted(seen) == all_rows


def test_digits_split_depends_on_seed_only():
    a, b, c = data.digits("val", seed=5), data.digits("val", seed=5), data.digits("val", seed=6)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_digits_returns_new_arrays():
    x, y = data.digits("all")
    x[:] = -1
    y[:] = -1
    x2, y2 = data.digits("all")
    assert x2.min() == 0 and y2.min() == 0
    assert data.datasets._digits_table() is data.datasets._digits_table()  # parsed once, then cached


def test_digits_bad_split():
    with pytest.raises(ValueError, match="split: expected one of 'train', 'val', 'test', 'all', got 'validation'"):
        data.digits("validation")


# --- IDX and MNIST ---------------------------------------------------------------------------

IDX_TYPE = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(a):
    a = np.asarray(a)
    header = bytes([0, 0, IDX_TYPE[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write(path, payload, compress=False):
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", list(IDX_TYPE))
def test_read_idx_round_trip(tmp_path, dtype, compress):
    a = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 100).astype(dtype)
    got = data.read_idx(write(tmp_path / ("a.idx.gz" if compress else "a.idx"), idx_bytes(a), compress))
    assert got.dtype == dtype and got.dtype.isnative and got.flags.writeable
    np.testing.assert_array_equal(got, a)


def test_read_idx_one_dimension(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    np.testing.assert_array_equal(data.read_idx(write(tmp_path / "labels", idx_bytes(a))), a)


@pytest.mark.parametrize("payload, match", [
    (b"", "not an IDX file: .* got an empty file"),
    (b"\x00\x01\x08\x01" + bytes(8), "not an IDX file: .* got 00 01 08 01"),
    (b"\x00\x00\x07\x01" + bytes(8), "not an IDX file: .* got 00 00 07 01"),
    (b"\x00\x00\x08\x03" + bytes(6), "truncated IDX header: expected 16 bytes for 3 dimensions, got 10"),
    (idx_bytes(np.zeros((2, 3), np.float32))[:-1], "truncated IDX file: expected 24 data bytes .* got 23"),
    (idx_bytes(np.zeros(4, np.uint8)) + b"\x00", "trailing bytes in IDX file: expected 4 data bytes"),
])
def test_read_idx_errors(tmp_path, payload, match):
    with pytest.raises(ValueError, match=match):
        data.read_idx(write(tmp_path / "bad", payload))


def test_read_idx_truncated_gzip(tmp_path):
    with pytest.raises(ValueError, match="corrupt or truncated gzip data"):
        data.read_idx(write(tmp_path / "bad.gz", gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-10]))


def write_mnist(directory, prefix, n, compress, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write(directory / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), compress)
    write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), compress)
    return images, labels


@pytest.mark.parametrize("split, prefix, compress", [("train", "train", True), ("test", "t10k", False)])
def test_mnist_reads_standard_files(tmp_path, split, prefix, compress):
    images, labels = write_mnist(tmp_path, prefix, 6, compress)
    x, y = data.mnist(tmp_path, split)
    assert x.dtype == np.float32 and x.shape == (6, 784) and y.dtype == np.int64
    np.testing.assert_array_equal(x, images.reshape(6, -1).astype(np.float32) / np.float32(255))
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_array_equal(y, labels)


def test_mnist_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte nor t10k-images-idx3-ubyte.gz .*https://"):
        data.mnist(tmp_path, "test")
    write_mnist(tmp_path, "train", 2, False)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="neither train-labels-idx1-ubyte nor"):
        data.mnist(str(tmp_path))


def test_mnist_wrong_contents(tmp_path):
    write_mnist(tmp_path, "train", 3, False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match="expected 3 uint8 labels, got uint8 of shape \\(4,\\)"):
        data.mnist(tmp_path)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(np.zeros((3, 8, 8), np.uint8)))
    with pytest.raises(ValueError, match="expected uint8 images of shape \\(n, 28, 28\\)"):
        data.mnist(tmp_path)
    with pytest.raises(ValueError, match="split: expected one of 'train', 'test'"):
        data.mnist(tmp_path, "val")


# --- scalers ---------------------------------------------------------------------------------


def sample(dtype, n=50, features=5, seed=0):
    rng = np.random.default_rng(seed)
    scale, shift = rng.uniform(0.1, 10, features), rng.uniform(-5, 5, features)
    return (rng.standard_normal((n, features)) * scale + shift).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_min_max_scaler_matches_formula(dtype):
    x = sample(dtype)
    got = data.MinMaxScaler().fit_transform(x)
    assert got.dtype == dtype
    assert_close(got, (x - x.min(0)) / (x.max(0) - x.min(0)))
    low, high = -2.0, 3.0
    got = data.MinMaxScaler((low, high)).fit(x).transform(x[:7])
    expected = low + (high - low) * (x[:7] - x.min(0)) / (x.max(0) - x.min(0))
    assert_close(got, expected.astype(dtype), kind="transcendental")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_standard_scaler_matches_formula(dtype):
    x = sample(dtype)
    scaler = data.StandardScaler().fit(x)
    got = scaler.transform(x)
    assert got.dtype == dtype
    x64 = x.astype(np.float64)
    assert_close(got, ((x64 - x64.mean(0)) / x64.std(0)).astype(dtype), kind="transcendental")
    assert_close(scaler.var_, x64.var(0))
    assert_close(got.mean(0), np.zeros(x.shape[1], dtype), kind="transcendental")
    assert_close(got.std(0), np.ones(x.shape[1], dtype), kind="transcendental")


@pytest.mark.parametrize("make", [lambda: data.MinMaxScaler((-1, 1)), data.StandardScaler,
                                  lambda: data.StandardScaler(drop_zero_variance=True)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inverse_transform_round_trip(make, dtype):
    x = sample(dtype)
    x[:, 2] = 1.5  # a constant feature
    scaler = make().fit(x)
    back = scaler.inverse_transform(scaler.transform(x))
    assert back.dtype == dtype and back.shape == x.shape
    assert_close(back, x, kind="transcendental")


def test_constant_features():
    x = sample(np.float64)
    x[:, 1] = 0.1  # its computed variance would be a rounding error away from 0
    x[:, 3] = -7.0
    mm = data.MinMaxScaler((2, 5)).fit(x)
    np.testing.assert_array_equal(mm.transform(x)[:, [1, 3]], 2.0)
    assert np.isfinite(mm.transform(x)).all()
    st = data.StandardScaler().fit(x)
    np.testing.assert_array_equal(st.var_[[1, 3]], 0.0)
    np.testing.assert_array_equal(st.scale_[[1, 3]], 1.0)
    np.testing.assert_array_equal(st.transform(x)[:, [1, 3]], 0.0)
    np.testing.assert_array_equal(st.transform(x[:2] + 1)[:, [1, 3]], 1.0)  # centred, not scaled
    assert st.kept_features_.all()


def test_standard_scaler_drop_zero_variance():
    x = sample(np.float32)
    x[:, 0] = 4.0
    x[:, 3] = 0.0
    scaler = data.StandardScaler(drop_zero_variance=True).fit(x)
    np.testing.assert_array_equal(scaler.kept_features_, [False, True, True, False, True])
    z = scaler.transform(x)
    assert z.shape == (50, 3) and z.dtype == np.float32
    np.testing.assert_array_equal(z, data.StandardScaler().fit_transform(x)[:, [1, 2, 4]])  # the same arithmetic
    back = scaler.inverse_transform(np.zeros((2, 3), np.float32))
    assert_close(back, np.tile(x.astype(np.float64).mean(0), (2, 1)))
    np.testing.assert_array_equal(back[:, [0, 3]], [[4.0, 0.0], [4.0, 0.0]])


def test_standard_scaler_eps_treats_small_std_as_zero_variance():
    x = sample(np.float64)
    x[:, 4] = 1.0 + 1e-6 * np.arange(50)  # std ~ 1.4e-5
    scaler = data.StandardScaler(eps=1e-4, drop_zero_variance=True).fit(x)
    np.testing.assert_array_equal(scaler.kept_features_, [True, True, True, True, False])
    scaler = data.StandardScaler(eps=1e-4).fit(x)
    assert scaler.scale_[4] == 1.0 and scaler.kept_features_.all()


@pytest.mark.parametrize("make", [data.MinMaxScaler, data.StandardScaler])
def test_scaler_errors(make):
    scaler = make()
    x = sample(np.float32)
    for method in (scaler.transform, scaler.inverse_transform):
        with pytest.raises(data.NotFittedError, match=f"this {make.__name__} is not fitted yet"):
            method(x)
    scaler.fit(x)
    with pytest.raises(ValueError, match="x: expected 5 features \\(columns\\), got 4"):
        scaler.transform(x[:, :4])
    with pytest.raises(ValueError, match="x: expected 5 features \\(columns\\), got 6"):
        scaler.inverse_transform(np.zeros((2, 6), np.float32))
    with pytest.raises(TypeError, match="x: expected a float32 or float64 array, got dtype int64"):
        scaler.fit(np.zeros((3, 2), np.int64))
    with pytest.raises(ValueError, match="x: expected a 2-d array of shape \\(n, features\\), got shape \\(3,\\)"):
        scaler.transform(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="at least one sample"):
        scaler.fit(np.zeros((0, 5)))
    with pytest.raises(ValueError, match="expected finite values"):
        scaler.fit(np.array([[1.0, np.nan]]))


def test_standard_scaler_drop_errors_count_kept_features():
    x = sample(np.float64)
    x[:, 0] = 1.0
    scaler = data.StandardScaler(drop_zero_variance=True).fit(x)
    with pytest.raises(ValueError, match="x: expected 4 features \\(columns\\), got 5"):
        scaler.inverse_transform(x)


@pytest.mark.parametrize("call, error, match", [
    (lambda: data.MinMaxScaler((1, 1)), ValueError, "feature_range: expected low < high, got \\(1, 1\\)"),
    (lambda: data.MinMaxScaler((0, 1, 2)), TypeError, "feature_range: expected a pair"),
    (lambda: data.MinMaxScaler(1), TypeError, "feature_range: expected a pair"),
    (lambda: data.StandardScaler(drop_zero_variance=1), TypeError, "drop_zero_variance: expected True or False"),
    (lambda: data.StandardScaler(eps=-1.0), ValueError, "eps: expected a value >= 0"),
])
def test_scaler_argument_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --- batches ---------------------------------------------------------------------------------


def collect(n=23, batch_size=5, **kwargs):
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n, dtype=np.int64)
    out = list(data.batches(x, y, batch_size, **kwargs))
    for xb, yb in out:
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # rows stay paired with their labels
    return [yb for _, yb in out]


@pytest.mark.parametrize("n, batch_size", [(23, 5), (20, 5), (23, 1), (23, 23), (23, 100), (0, 4)])
def test_batches_cover_every_index_once(n, batch_size):
    ys = collect(n, batch_size)
    assert len(ys) == data.num_batches(n, batch_size, drop_last=False)
    assert all(len(b) == batch_size for b in ys[:-1])
    np.testing.assert_array_equal(np.sort(np.concatenate(ys)) if ys else [], np.arange(n))


def test_batches_order_is_a_function_of_seed_and_epoch():
    first = np.concatenate(collect(seed=7, epoch=3))
    np.testing.assert_array_equal(first, np.concatenate(collect(seed=7, epoch=3)))
    np.testing.assert_array_equal(first, np.random.default_rng([7, 3]).permutation(23))
    assert not np.array_equal(first, np.concatenate(collect(seed=7, epoch=4)))
    assert not np.array_equal(first, np.concatenate(collect(seed=8, epoch=3)))


def test_batches_without_shuffle_keep_order():
    np.testing.assert_array_equal(np.concatenate(collect(shuffle=False)), np.arange(23))


def test_batches_drop_last():
    ys = collect(23, 5, drop_last=True)
    assert len(ys) == data.num_batches(23, 5, drop_last=True) == 4
    assert all(len(b) == 5 for b in ys)
    assert len(np.unique(np.concatenate(ys))) == 20
    assert collect(4, 5, drop_last=True) == []


def test_num_batches():
    assert [data.num_batches(n, 4) for n in (0, 1, 4, 5, 8, 9)] == [0, 1, 1, 2, 2, 3]
    assert [data.num_batches(n, 4, drop_last=True) for n in (0, 1, 4, 5, 8, 9)] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(batch_size=0), ValueError, "batch_size: expected an integer >= 1, got 0"),
    (dict(batch_size=2.0), TypeError, "batch_size: expected an integer >= 1, got 2.0"),
    (dict(batch_size=True), TypeError, "batch_size: expected an integer"),
    (dict(batch_size=2, seed=-1), ValueError, "seed: expected an integer >= 0, got -1"),
    (dict(batch_size=2, epoch=1.5), TypeError, "epoch: expected an integer >= 0"),
    (dict(batch_size=2, drop_last=None), TypeError, "drop_last: expected True or False, got None"),
    (dict(batch_size=2, shuffle="yes"), TypeError, "shuffle: expected True or False"),
])
def test_batches_argument_errors(kwargs, error, match):
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.int64)
    with pytest.raises(error, match=match):
        data.batches(x, y, **kwargs)  # checked at the call, before iterating


def test_batches_length_mismatch():
    with pytest.raises(ValueError, match="y: expected 4 labels, one per row of x, got 3"):
        data.batches(np.zeros((4, 2)), np.zeros(3), 2)
