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
    with pytest.raises(CheckpointError, match="format version 99, but this fusednn reads versions 1, 2"):
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


# ---- every damage is caught (issue 13 item 6)


def _small_checkpoint(path):
    model, opt = _trained("adam", steps=1)
    big = np.arange(64 * 32, dtype=np.float32).reshape(64, 32)  # 8 KiB: numpy reads it in several pieces
    checkpoint.save(path, model, opt, epoch=2, step=7, extra={"best": {"w1": model.params["w1"].copy()},
                                                              "pair": (1.5, "x"), "big": big})
    return checkpoint.load(path)


def _load_is_exact_or_checkpoint_error(path, good):
    try:
        got = checkpoint.load(path)
    except CheckpointError:
        return "error"
    for field in ("model", "optimizer", "rng", "epoch", "step", "schedule_step", "extra"):
        _assert_same(getattr(got, field), getattr(good, field), field)
    return "exact"


def test_bit_flips_anywhere_load_exactly_or_raise(tmp_path):
    good = _small_checkpoint(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    outcomes = {"error": 0, "exact": 0}
    shapes = [j for start in range(len(data)) if data.startswith(b"'shape': (", start)
              for j in range(start + 10, data.index(b")", start))]  # every byte of every array's shape
    assert len(shapes) > 50
    for i in sorted(set(range(0, len(data), max(1, len(data) // 400))) | set(shapes)):
        bad.write_bytes(data[:i] + bytes([data[i] ^ (1 << (i % 8))]) + data[i + 1:])
        outcomes[_load_is_exact_or_checkpoint_error(bad, good)] += 1
    assert outcomes["error"] > 0.5 * sum(outcomes.values())


def test_truncations_anywhere_raise(tmp_path):
    _small_checkpoint(tmp_path / "good.npz")
    data = (tmp_path / "good.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    for n in range(0, len(data), max(1, len(data) // 300)):
        bad.write_bytes(data[:n])
        with pytest.raises(CheckpointError):
            checkpoint.load(bad)


def _npy_member_header_offset(data, member):
    """Where the shape text of a member's .npy header starts in the raw zip bytes."""
    i = data.index(member.encode() + b".npy")
    return data.index(b"'shape': (", i) + len(b"'shape': (")


def test_a_header_shape_flip_is_not_a_truncated_array(tmp_path):
    """(64, 32) read as (24, 32) once loaded 24 rows with no error: numpy stopped reading the
    8 KiB member before its end, where zipfile checks the CRC."""
    model = TinyNet(n_in=32, n_hidden=64)
    checkpoint.save(tmp_path / "c.npz", model)
    data = bytearray((tmp_path / "c.npz").read_bytes())
    i = _npy_member_header_offset(bytes(data), "model/w1")
    assert data[i:i + 6] == b"64, 32"
    data[i] ^= ord("6") ^ ord("2")  # one bit
    (tmp_path / "bad.npz").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="bad.npz"):
        checkpoint.load(tmp_path / "bad.npz")


def _rewrite(tmp_path, src, meta=None, meta_bytes=None, **arrays):
    """A copy of checkpoint src with its meta (a JSON-able value, or its text) and arrays
    replaced; the CRCs are all valid."""
    import json
    with np.load(src) as z:
        members = {k: z[k] for k in z.files}
    if meta is not None:
        meta_bytes = json.dumps(meta)
    if meta_bytes is not None:
        members["meta"] = np.frombuffer(meta_bytes.encode(), np.uint8)
    members.update(arrays)
    out = tmp_path / "edited.npz"
    np.savez(out, **members)
    return out


def _meta_of(path):
    import json
    with np.load(path) as z:
        return json.loads(z["meta"].tobytes().decode())


def test_extra_arrays_must_have_the_recorded_shape(tmp_path):
    path = tmp_path / "c.npz"
    _small_checkpoint(path)
    key = _meta_of(path)["extra"]["best"]["w1"]["__array__"]
    with np.load(path) as z:
        shorter = z[key][:3]
    with pytest.raises(CheckpointError, match=f"{key}.*the metadata records"):
        checkpoint.load(_rewrite(tmp_path, path, **{key: shorter}))


@pytest.mark.parametrize("edit, depth", [("deep nesting", 100_000), ("nesting past the limit", 70)])
def test_deeply_nested_metadata_is_a_checkpoint_error(tmp_path, edit, depth):
    """Once a RecursionError (or silently accepted up to the interpreter's limit)."""
    import json
    path = tmp_path / "c.npz"
    _small_checkpoint(path)
    meta = _meta_of(path)
    meta["extra"]["deep"] = "@"
    text = json.dumps(meta).replace('"@"', "[" * depth + "]" * depth)
    with pytest.raises(CheckpointError, match="edited.npz: damaged checkpoint metadata"):
        checkpoint.load(_rewrite(tmp_path, path, meta=None, meta_bytes=text))


@pytest.mark.parametrize("edit", ["epoch is a string", "negative step", "rng seed a float", "model not a list",
                                  "extra a list", "unknown key", "bad array reference", "tuple of a dict",
                                  "dict pairs not pairs", "unhashable key", "meta not a dict"])
def test_malformed_metadata_is_a_checkpoint_error(tmp_path, edit):
    path = tmp_path / "c.npz"
    _small_checkpoint(path)
    meta = _meta_of(path)
    if edit == "epoch is a string":
        meta["epoch"] = "3"
    elif edit == "negative step":
        meta["step"] = -1
    elif edit == "rng seed a float":
        meta["rng"]["seed"] = 0.5
    elif edit == "model not a list":
        meta["model"] = "w1"
    elif edit == "extra a list":
        meta["extra"] = []
    elif edit == "unknown key":
        meta["surprise"] = 1
    elif edit == "bad array reference":
        meta["extra"]["x"] = {"__array__": 5}
    elif edit == "tuple of a dict":
        meta["extra"]["x"] = {"__tuple__": {"a": 1}}
    elif edit == "dict pairs not pairs":
        meta["extra"]["x"] = {"__dict__": [[1, 2, 3]]}
    elif edit == "unhashable key":
        meta["extra"]["x"] = {"__dict__": [[[1], 2]]}
    elif edit == "meta not a dict":
        meta = [meta]
    with pytest.raises(CheckpointError, match="edited.npz: damaged checkpoint metadata"):
        checkpoint.load(_rewrite(tmp_path, path, meta=meta))


def test_saving_too_deep_a_structure_is_refused(tmp_path):
    model, _ = _trained("sgd", steps=1)
    deep = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        checkpoint.save(tmp_path / "c.npz", model, extra={"deep": deep})
    assert os.listdir(tmp_path) == []


def test_version_1_files_still_load(tmp_path):
    path = tmp_path / "c.npz"
    good = _small_checkpoint(path)
    meta = _meta_of(path)
    del meta["arrays"]
    old = _rewrite(tmp_path, path, meta=meta, format_version=np.array(1, np.int64))
    _assert_same(checkpoint.load(old).extra, good.extra, "extra")


# ---- temporary files and permissions (issue 13 items 15 and 16)


def _dead_pid():
    import subprocess
    import sys
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_temp_files_of_killed_saves_are_cleaned_by_the_next_save(tmp_path):
    import subprocess
    import sys
    model, _ = _trained("sgd", steps=1)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        leftovers = [f".epoch-0003.npz.{dead}.0123abcd.tmp", f".c.npz.{dead}.ffffffff.tmp"]
        kept = [f".epoch-0004.npz.{live.pid}.0123abcd.tmp",  # a save in progress in another process
                "notes.tmp", ".c.npz.abc.tmp", f".c.npz.{dead}.tmp", f"c.npz.{dead}.0123abcd.tmp"]
        for name in leftovers + kept:
            (tmp_path / name).write_bytes(b"x" * 100)
        checkpoint.save(tmp_path / "c.npz", model)
        assert sorted(os.listdir(tmp_path)) == sorted(kept + ["c.npz"])
    finally:
        live.kill()
        live.wait()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=oct)
def test_checkpoints_follow_the_umask(tmp_path, umask):
    model, _ = _trained("sgd", steps=1)
    old = os.umask(umask)
    try:
        checkpoint.save(tmp_path / "c.npz", model)
        (tmp_path / "other.txt").write_text("a run file")
    finally:
        os.umask(old)
    mode = os.stat(tmp_path / "c.npz").st_mode & 0o777
    assert mode == 0o666 & ~umask == os.stat(tmp_path / "other.txt").st_mode & 0o777


def test_a_model_on_the_device_round_trips_exactly(tmp_path, device):
    """state_dict is NumPy on every device, so checkpoints are the same on both."""
    from conftest import to_device, to_numpy
    from fusednn import nn
    from fusednn.nn.losses import SoftmaxCrossEntropy
    model = nn.MLP([4, 8, 3], norm="batch", dropout=0.2, seed=1).to(device)
    opt = optim.Adam(model.parameter_groups(0.01), lr=0.01)
    x, y = blobs(16)
    xd, yd = to_device(device, x, y)
    for _ in range(2):
        _, d = SoftmaxCrossEntropy().value_and_grad(model(xd, training=True), yd)
        model.backward(d)
        opt.step()
    checkpoint.save(tmp_path / "c.npz", model, opt, epoch=1)
    fresh = nn.MLP([4, 8, 3], norm="batch", dropout=0.2, seed=7).to(device)
    fresh_opt = optim.Adam(fresh.parameter_groups(0.01), lr=0.01)
    checkpoint.load(tmp_path / "c.npz", fresh, fresh_opt)
    _assert_same(fresh.state_dict(), model.state_dict(), "model")
    _assert_same(fresh_opt.state_dict(), opt.state_dict(), "optimizer")
    assert to_numpy(fresh(xd, training=True)).tobytes() == to_numpy(model(xd, training=True)).tobytes()
