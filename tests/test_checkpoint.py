"""fusednn.checkpoint: exact round trips, atomic writes, clear errors for damaged files."""

import math
import os

import numpy as np
import pytest

from fusednn import checkpoint, optim
from fusednn.checkpoint import CheckpointError
from test_train import CrossEntropy, TinyNet, blobs

OPTIMIZERS = {
    "sgd": lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam": lambda p: optim.Adam(p, lr=0.01, amsgrad=True),
    "nadam": lambda p: optim.NAdam(p, lr=0.01),
    "rmsprop": lambda p: optim.RMSprop(p, lr=0.01, momentum=0.5, centered=True),
    "adagrad": lambda p: optim.Adagrad(p, lr=0.1),
}


def _step(model, opt, batch):
    x, y = batch
    model.zero_grad()
    _, d = CrossEntropy().value_and_grad(model.forward(x, training=True), y)
    model.backward(d)
    opt.step()


def _trained(name, steps=3, seed=0):
    model = TinyNet(p=0.3, seed=seed)
    opt = OPTIMIZERS[name](model.params)
    for _ in range(steps):
        _step(model, opt, blobs(16))
    return model, opt


def _assert_same(a, b, where="state"):
    """Equal structure and types, arrays bitwise equal (NaN equals NaN)."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert a.tobytes() == b.tobytes(), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


EXTRA = {"history": [{"epoch": 1, "loss": 0.1 + 0.2, "val_loss": float("nan")}], "best": float("inf"),
         "weights": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "pair": (1, "a"), "by_int": {3: [None, True]},
         "__odd": 1}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_round_trip_is_exact(tmp_path, name):
    model, opt = _trained(name)
    path = checkpoint.save(tmp_path / "c.npz", model, opt, epoch=2, step=3, schedule_step=5, extra=EXTRA)
    assert path == str(tmp_path / "c.npz") and os.listdir(tmp_path) == ["c.npz"]
    with np.load(path, allow_pickle=False) as z:
        assert {"format_version", "meta", "model/w1", "model/seen"} <= set(z.files)

    fresh, fresh_opt = _trained(name, steps=1, seed=9)
    ck = checkpoint.load(path, fresh, fresh_opt)
    assert (ck.epoch, ck.step, ck.schedule_step, ck.rng) == (2, 3, 5, {"seed": 0, "offset": model.rng.offset})
    _assert_same(ck.extra, EXTRA, "extra")
    assert fresh.params.data.tobytes() == model.params.data.tobytes() and fresh.seen == model.seen == 48
    assert (fresh.rng.seed, fresh.rng.offset) == (model.rng.seed, model.rng.offset) != (0, 0)
    _assert_same(fresh_opt.state_dict(), opt.state_dict(), "optimizer")
    for m, o in ((model, opt), (fresh, fresh_opt)):  # both continue identically, dropout included
        _step(m, o, blobs(16, seed=5))
    assert fresh.params.data.tobytes() == model.params.data.tobytes()


def test_load_without_restoring_and_without_optimizer(tmp_path):
    model, _ = _trained("adam")
    checkpoint.save(tmp_path / "c.npz", model)
    ck = checkpoint.load(tmp_path / "c.npz")
    assert ck.optimizer is None and ck.extra == {} and (ck.epoch, ck.step) == (0, 0)
    _assert_same(ck.model, model.state_dict(), "model")
    with pytest.raises(CheckpointError, match="no optimizer state"):
        checkpoint.restore(ck, model, optim.Adam(model.params))


def test_overwrite_is_atomic_and_leaves_no_temp_files(tmp_path):
    model, opt = _trained("sgd")
    path = tmp_path / "c.npz"
    checkpoint.save(path, model, opt, epoch=1)
    checkpoint.save(path, model, opt, epoch=2)
    assert os.listdir(tmp_path) == ["c.npz"] and checkpoint.load(path).epoch == 2


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model, opt = _trained("adam")
    path = tmp_path / "c.npz"
    checkpoint.save(path, model, opt, epoch=1)
    before = model.params.data.copy()

    def crash(f, **arrays):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    model.params.data += 1
    monkeypatch.setattr(checkpoint.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, model, opt, epoch=2)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["c.npz"]
    ck = checkpoint.load(path, model)
    assert ck.epoch == 1 and model.params.data.tobytes() == before.tobytes()


def _damage(data, how, w1):
    if how == "truncated":
        return data[:len(data) // 2]
    if how == "tail cut":
        return data[:-10]
    if how == "garbage":
        return bytes(range(256)) * 8
    if how == "empty":
        return b""
    i = data.find(w1.tobytes()) + 7  # a flipped bit inside w1's values: the zip CRC catches it
    assert i > 7
    return data[:i] + bytes([data[i] ^ 0x10]) + data[i + 1:]


@pytest.mark.parametrize("how", ["truncated", "tail cut", "garbage", "empty", "bit flip"])
def test_damaged_file_raises_checkpoint_error(tmp_path, how):
    model, opt = _trained("adam")
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    checkpoint.save(good, model, opt, epoch=4)
    bad.write_bytes(_damage(good.read_bytes(), how, model.params["w1"]))
    with pytest.raises(CheckpointError, match="bad.npz") as err:
        checkpoint.load(bad, model, opt)
    assert isinstance(err.value, ValueError)
    assert checkpoint.load(good).epoch == 4


def test_foreign_files_and_versions(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.savez(tmp_path / "b.npz", x=np.zeros(3))
    for name in ("a.npy", "b.npz"):
        with pytest.raises(CheckpointError, match=f"{name}: not a fusednn checkpoint"):
            checkpoint.load(tmp_path / name)
    model, _ = _trained("sgd")
    checkpoint.save(tmp_path / "c.npz", model)
    with np.load(tmp_path / "c.npz") as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "v99.npz", **{**arrays, "format_version": np.array(99)})
    with pytest.raises(CheckpointError, match="format version 99, but this fusednn reads version 1"):
        checkpoint.load(tmp_path / "v99.npz")
    np.savez(tmp_path / "meta.npz", **{**arrays, "meta": np.frombuffer(b"{not json", np.uint8)})
    with pytest.raises(CheckpointError, match="meta.npz: damaged checkpoint metadata"):
        checkpoint.load(tmp_path / "meta.npz")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.npz")


def test_unsavable_values_are_rejected_before_writing(tmp_path):
    model, _ = _trained("sgd")
    for extra in ({"x": object()}, {"x": np.array([None])}):
        with pytest.raises(TypeError, match="extra"):
            checkpoint.save(tmp_path / "c.npz", model, extra=extra)
    assert os.listdir(tmp_path) == []


def test_epoch_files_and_latest(tmp_path):
    assert checkpoint.latest(tmp_path) is None
    for name in ("epoch-0010.npz", "epoch-0002.npz", "epoch-0009.npz", "other.npz", ".epoch-0011.npz.x.tmp"):
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in checkpoint.epoch_files(tmp_path)] == ["epoch-0002.npz", "epoch-0009.npz",
                                                                                 "epoch-0010.npz"]
    assert checkpoint.latest(tmp_path) == checkpoint.epoch_path(tmp_path, 10) == str(tmp_path / "epoch-0010.npz")
