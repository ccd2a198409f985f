"""model.save / fusednn.load / predict / predict_proba (fusednn.serialize): the architecture,
weights, buffers and fitted preprocessing survive a new process, with no pickle."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fusednn
from fusednn import checkpoint, data, nn, optim, serialize
from fusednn.checkpoint import CheckpointError
from fusednn.nn.losses import SoftmaxCrossEntropy


def _blobs(n=64, features=6, classes=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centers = rng.normal(0, 3, (classes, features))
    x = centers[y] + rng.normal(0, 1, (n, features)) * 2.0 + 5.0  # raw: neither centred nor scaled
    return x.astype(dtype), y


def _train_steps(model, x, y, steps=5):
    """A few updates in training mode, so the weights and the batch-norm running statistics
    differ from their initial values."""
    opt = optim.Adam(model.parameter_groups(), lr=0.01)
    loss = SoftmaxCrossEntropy()
    model.train()
    for _ in range(steps):
        _, dout = loss.value_and_grad(model.forward(x), y)
        model.backward(dout)
        opt.step()
    return model


def _models():
    """(name, model, preprocessing, raw x) covering the layer kinds and both dtypes."""
    x32, y = _blobs()
    scaler = data.StandardScaler().fit(x32)
    mlp = _train_steps(nn.MLP([6, 16, 8, 3], norm="batch", dropout=0.2, input_dropout=0.1, seed=3),
                       scaler.transform(x32), y)
    x64 = x32.astype(np.float64)
    minmax = data.MinMaxScaler((-1, 1)).fit(x64)
    seq = nn.Sequential(nn.WeightNormLinear(6, 12, dtype=np.float64), nn.LayerNorm(12, dtype=np.float64), nn.Tanh(),
                        nn.Dropout(0.3, mode="vanilla"), nn.Linear(12, 10, activation="relu", dtype=np.float64),
                        nn.BatchNorm1d(10, momentum=0.2, dtype=np.float64), nn.Sigmoid(),
                        nn.Linear(10, 4, init="torch", dtype=np.float64))
    seq = _train_steps(seq, minmax.transform(x64), y)
    plain = nn.MLP([6, 5, 3], activation="abs", norm="layer", seed=1)  # no preprocessing
    return [("mlp", mlp, scaler, x32), ("sequential", seq, minmax, x64), ("plain", plain, None, x32)]


def test_round_trip_in_a_new_process_is_bitwise(tmp_path):
    """Save here, load and predict in a fresh interpreter: the same state (every parameter and
    buffer), RNG, mode and preprocessing, and bitwise equal predictions."""
    expected = {}
    for name, model, prep, x in _models():
        model.save(tmp_path / f"{name}.npz", preprocessing=prep)
        np.save(tmp_path / f"{name}-x.npy", x)
        expected[name] = (model, model.state_dict(), model.rng.offset, model.predict_proba(
            x if prep is None else prep.transform(x)))
    code = textwrap.dedent(f"""
        import json, sys, numpy as np, fusednn
        d = {str(tmp_path)!r}
        for name in {sorted(expected)!r}:
            model = fusednn.load(f"{{d}}/{{name}}.npz")
            x = np.load(f"{{d}}/{{name}}-x.npy")
            np.save(f"{{d}}/{{name}}-proba.npy", model.predict_proba(x))
            np.save(f"{{d}}/{{name}}-labels.npy", model.predict(x))
            np.savez(f"{{d}}/{{name}}-state.npz", **model.state_dict())
            prep = model.preprocessing
            print(json.dumps([name, repr(model), model.rng.seed, model.rng.offset, model.training,
                              None if prep is None else [type(prep).__name__, repr(prep)]]))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    reports = {r[0]: r[1:] for r in map(json.loads, out.stdout.splitlines())}
    for name, model, prep, x in _models():
        saved_model, state, offset, proba = expected[name]
        text, seed, got_offset, training, got_prep = reports[name]
        assert text == repr(saved_model) and (seed, got_offset, training) == (saved_model.rng.seed, offset, True)
        assert got_prep == (None if prep is None else [type(prep).__name__, repr(prep)])
        got_proba = np.load(tmp_path / f"{name}-proba.npy")
        assert got_proba.dtype == proba.dtype and np.array_equal(got_proba, proba)
        assert np.array_equal(np.load(tmp_path / f"{name}-labels.npy"), np.argmax(proba, axis=1))
        with np.load(tmp_path / f"{name}-state.npz") as z:
            assert sorted(z.files) == sorted(state)
            for k in state:
                assert z[k].dtype == state[k].dtype and np.array_equal(z[k], state[k]), k


def test_file_is_read_without_pickle(tmp_path):
    x, _ = _blobs()
    model = nn.MLP([6, 8, 3], norm="batch")
    path = model.save(tmp_path / "m.npz", preprocessing=data.StandardScaler().fit(x))
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}  # every member parses without pickle
    assert all(a.dtype != object for a in arrays.values())
    meta = json.loads(arrays["meta"].tobytes().decode())
    assert meta["architecture"]["class"] == "MLP" and meta["architecture"]["config"]["sizes"] == [6, 8, 3]
    assert meta["architecture"]["config"]["dtype"] == {"$dtype": "float32"}
    assert meta["preprocessing"]["class"] == "StandardScaler"
    assert {"model/1.running_mean", "model/1.running_var"} <= set(arrays)


def test_loaded_preprocessing_is_the_fitted_transformer(tmp_path):
    x, _ = _blobs(dtype=np.float64)
    scaler = data.StandardScaler(drop_zero_variance=True).fit(np.column_stack([x, np.ones(len(x))]))
    model = nn.MLP([6, 4, 2])
    model.save(tmp_path / "m.npz", preprocessing=scaler)
    got = fusednn.load(tmp_path / "m.npz").preprocessing
    assert type(got) is data.StandardScaler and got.get_params() == scaler.get_params()
    for attr in ("mean_", "var_", "scale_", "kept_features_"):
        assert np.array_equal(getattr(got, attr), getattr(scaler, attr)) and getattr(got, attr).dtype == \
            getattr(scaler, attr).dtype
    assert got.n_features_in_ == 7
    mm = data.MinMaxScaler([2, 3]).fit(x)
    model.preprocessing = mm  # the attribute is what save writes by default, and what predict applies
    model.save(tmp_path / "m2.npz")
    loaded = fusednn.load(tmp_path / "m2.npz")
    assert loaded.preprocessing.feature_range == [2, 3] and loaded.preprocessing.feature_range_ == (2.0, 3.0)
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))


def _transformers():
    """Every fitted-transformer class of fusednn.data."""
    from fusednn.data import whitening
    return [data.StandardScaler(eps=1e-3), data.MinMaxScaler((-2, 2)), whitening.PCAWhitening(),
            whitening.ZCAWhitening(), whitening.PerSampleMeanSubtraction()]


@pytest.mark.parametrize("transformer", _transformers(), ids=lambda t: type(t).__name__)
def test_every_transformer_round_trips(tmp_path, transformer):
    x, _ = _blobs(n=40, dtype=np.float64)
    transformer.fit(x)
    z = transformer.transform(x)
    model = nn.MLP([z.shape[1], 3], dtype=np.float64)
    model.save(tmp_path / "m.npz", preprocessing=transformer)
    loaded = fusednn.load(tmp_path / "m.npz")
    assert type(loaded.preprocessing) is type(transformer) and repr(loaded.preprocessing) == repr(transformer)
    assert np.array_equal(loaded.preprocessing.transform(x), z)
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(z))


def test_column_names_of_the_preprocessing_round_trip(tmp_path):
    class Frame:  # a data frame's named columns (pandas is not a test dependency)
        columns = ["f0", "f1", "f2", "f3", "f4", "f5"]

        def __init__(self, values):
            self.values = values

        def __array__(self, dtype=None, copy=None):
            return self.values

    x, _ = _blobs()
    scaler = data.StandardScaler().fit(Frame(x))
    nn.MLP([6, 3]).save(tmp_path / "m.npz", preprocessing=scaler)
    names = fusednn.load(tmp_path / "m.npz").preprocessing.feature_names_in_
    assert names.dtype == object and list(names) == Frame.columns
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


class Scaled(nn.Module):
    """A user's own layer: it joins save/load by its constructor arguments alone."""

    def __init__(self, features, factor=2.0, *, dtype=np.float32):
        super().__init__()
        self.factor = factor
        self.add_parameter("offset", np.arange(features, dtype=dtype))

    def forward(self, x, training=None):
        return (x + self.p["offset"]) * self.factor


def test_a_user_layer_round_trips_by_its_constructor_arguments(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), Scaled(4, factor=0.5))
    model.p  # noqa: B018
    model.save(tmp_path / "m.npz")
    meta = checkpoint.load(tmp_path / "m.npz").architecture
    assert meta["config"]["layers"][1]["$module"]["class"] == f"{__name__}:Scaled"
    loaded = fusednn.load(tmp_path / "m.npz")
    assert type(loaded[1]) is Scaled and loaded[1].factor == 0.5
    x = np.ones((2, 3), np.float32)
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))


def test_training_checkpoints_load_too(tmp_path):
    """The trainer's epoch-NNNN.npz files record the architecture as well."""
    x, y = _blobs()
    model = nn.MLP([6, 8, 3], norm="batch", dropout=0.1)
    opt = optim.SGD(model.parameter_groups(), lr=0.1)
    fusednn.train.fit(model, SoftmaxCrossEntropy(), opt, (x, y), epochs=2, batch_size=16, checkpoint=tmp_path,
                      progress=False)
    loaded = fusednn.load(checkpoint.latest(tmp_path))
    assert loaded.preprocessing is None
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert checkpoint.load(checkpoint.latest(tmp_path)).optimizer_class == "SGD"


def test_predict_and_predict_proba():
    x, y = _blobs(n=50)
    model = nn.MLP([6, 8, 3], norm="batch", dropout=0.5, seed=2)
    model.train()
    logits = model.forward(x, training=False)
    proba = model.predict_proba(x)
    assert proba.shape == (50, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.array_equal(np.argmax(proba, 1), np.argmax(logits, 1))
    labels = model.predict(x, batch_size=7)  # in chunks of 7 rows
    assert labels.dtype == np.int64 and np.array_equal(labels, np.argmax(logits, 1))
    assert model.training  # predict runs in evaluation mode without changing the model's mode
    assert np.array_equal(model.predict(x.astype(np.float64)), labels)  # cast to the model's dtype
    assert np.array_equal(model.predict(x.tolist()), labels)


@pytest.mark.parametrize("x, error, match", [
    (np.zeros(6, np.float32), ValueError, "expected an array of shape \\(n, features...\\) with n >= 1"),
    (np.zeros((0, 6), np.float32), ValueError, "n >= 1"),
    (np.array([["a"] * 6]), TypeError, "expected an array of real numbers, got dtype <U1"),
    ("rows", TypeError, "x: expected an array, got builtins.str"),
    (np.zeros((2, 5), np.float32), ValueError, "x: expected shape \\(N, 6, ...\\), got \\(2, 5\\)"),
])
def test_predict_input_errors(x, error, match):
    with pytest.raises(error, match=match):
        nn.MLP([6, 3]).predict(x)


def test_predict_batch_size_errors():
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        nn.MLP([6, 3]).predict(np.zeros((2, 6), np.float32), batch_size=0)


def test_predict_applies_the_preprocessing_and_checks_its_input():
    x, _ = _blobs()
    model = nn.MLP([6, 3])
    model.preprocessing = data.StandardScaler().fit(x)
    logits = model.forward(model.preprocessing.transform(x), training=False)
    assert np.array_equal(model.predict_proba(x), _softmax(logits))
    with pytest.raises(ValueError, match="x: expected 6 features \\(columns\\), got 5"):
        model.predict(x[:, :5])


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


# ---- errors


class Opaque(nn.Module):
    def __init__(self, handler):
        super().__init__()
        self.handler = handler


def test_a_model_that_cannot_describe_itself_is_refused_when_saving(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2), Opaque(object()))
    with pytest.raises(serialize.NotDescribableError, match="argument 'handler': a constructor argument of type "
                                                            "builtins.object cannot be saved"):
        model.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []
    checkpoint.save(tmp_path / "c.npz", model)  # a plain checkpoint still works: no architecture
    assert checkpoint.load(tmp_path / "c.npz").architecture is None
    with pytest.raises(CheckpointError, match="c.npz: holds weights but no model architecture"):
        fusednn.load(tmp_path / "c.npz")


def test_bad_preprocessing_is_refused_when_saving(tmp_path):
    model = nn.MLP([2, 2])
    with pytest.raises(data.NotFittedError, match="this MinMaxScaler is not fitted yet"):
        model.save(tmp_path / "m.npz", preprocessing=data.MinMaxScaler())
    with pytest.raises(TypeError, match="preprocessing: expected a fitted fusednn.data transformer .*got "
                                        "builtins.dict"):
        model.save(tmp_path / "m.npz", preprocessing={"mean": 0})
    assert os.listdir(tmp_path) == []


def _rewrite_meta(src, dst, edit):
    with np.load(src) as z:
        members = {k: z[k] for k in z.files}
    meta = json.loads(members["meta"].tobytes().decode())
    edit(meta)
    members["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(dst, **members)
    return dst


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["architecture"].update({"class": "NoSuchLayer"}), "no Module class named 'NoSuchLayer' is loaded"),
    (lambda m: m["architecture"].update({"class": "somewhere.else:Layer"}),
     "import the module 'somewhere.else' that defines it"),
    (lambda m: m["architecture"]["config"].update({"sizes": [6, 9, 3]}), "state_dict\\[.*expected shape"),
    (lambda m: m["architecture"]["config"].update({"surprise": 1}), "MLP has no parameters \\['surprise'\\]"),
    (lambda m: m["architecture"]["config"].update({"dtype": {"$dtype": "object"}}), "unexpected dtype 'object'"),
    (lambda m: m["architecture"].update({"training": "yes"}), "training must be True or False"),
    (lambda m: m["preprocessing"]["state"].update({"__class__": 1}), "is not the name of a fitted attribute"),
    (lambda m: m["preprocessing"].update({"class": "MLP"}), "no _Scaler class named 'MLP'"),
])
def test_a_damaged_architecture_is_a_checkpoint_error(tmp_path, edit, match):
    x, _ = _blobs()
    path = nn.MLP([6, 8, 3]).save(tmp_path / "m.npz", preprocessing=data.StandardScaler().fit(x))
    bad = _rewrite_meta(path, tmp_path / "bad.npz", edit)
    with pytest.raises(CheckpointError, match=f"bad.npz: the saved model cannot be rebuilt: .*{match}"):
        fusednn.load(bad)


def test_corrupt_files_are_checkpoint_errors(tmp_path):
    path = nn.MLP([6, 8, 3]).save(tmp_path / "m.npz")
    raw = open(path, "rb").read()
    (tmp_path / "short.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="short.npz: not a readable checkpoint"):
        fusednn.load(tmp_path / "short.npz")
    flipped = bytearray(raw)
    flipped[len(raw) // 3] ^= 0xFF
    (tmp_path / "flipped.npz").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="flipped.npz"):
        fusednn.load(tmp_path / "flipped.npz")
    (tmp_path / "text.npz").write_text("not a model")
    with pytest.raises(CheckpointError, match="text.npz: not a readable checkpoint"):
        fusednn.load(tmp_path / "text.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="a single .npy array"):
        fusednn.load(tmp_path / "array.npy")
    with pytest.raises(FileNotFoundError):
        fusednn.load(tmp_path / "missing.npz")


def test_state_of_a_model_on_any_device_saves_as_numpy(tmp_path, device):
    model = nn.MLP([6, 8, 3], norm="batch").to(device)
    state = model.state_dict()
    model.save(tmp_path / "m.npz")
    loaded = fusednn.load(tmp_path / "m.npz")
    assert loaded.device == "cpu"
    for k, v in loaded.state_dict().items():
        assert np.array_equal(v, state[k]), k
