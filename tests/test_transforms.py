"""fusednn.data.transforms: each transform is the op with its spec, Compose fuses into one
ops.augment call (with flips folded exactly in front of affine maps), calls are seeded and
thread-independent, and bad settings are clear errors."""

import numpy as np
import pytest
from conftest import assert_close, seed_of, to_device, to_numpy

import fusednn
from fusednn import ops
from fusednn.data import transforms as T


def batch(shape, dtype=np.float32, key=()):
    return np.random.default_rng(seed_of("transforms", shape, *key)).random(shape).astype(dtype)


SINGLES = [
    (T.RandomAffine(20, translate=(0.1, 0.2), scale=(0.9, 1.1), shear=5, interpolation="bilinear"),
     {"degrees": 20, "translate": (0.1, 0.2), "scale": (0.9, 1.1), "shear": 5}, "bilinear"),
    (T.RandomRotation((-10, 30)), {"degrees": (-10, 30)}, "nearest"),
    (T.RandomZoom(0.2), {"scale": (0.8, 1.2)}, "bilinear"),
    (T.RandomShift(0.1), {"translate": 0.1}, "bilinear"),
    (T.RandomHorizontalFlip(0.4), {"hflip": 0.4}, "bilinear"),
    (T.RandomVerticalFlip(), {"vflip": 0.5}, "bilinear"),
    (T.ColorJitter(brightness=0.3, contrast=(0.5, 1.5)), {"brightness": 0.3, "contrast": (0.5, 1.5)}, "bilinear"),
    (T.GaussianNoise(0.1, 0.2, clip=False), {"noise": 0.2, "noise_mean": 0.1}, "bilinear"),
    (T.RandomErasing(0.7, value="random"), {"erase": 0.7, "erase_value": "random"}, "bilinear"),
]


@pytest.mark.parametrize("t, spec, interpolation", SINGLES, ids=[type(s[0]).__name__ for s in SINGLES])
def test_each_transform_is_the_op_with_its_spec(device, t, spec, interpolation):
    x = batch((6, 3, 9, 11))
    got = t(to_device(device, x), seed=4, offset=17)
    p = ops.augment_params(6, spec, seed=4, offset=17, image_shape=(3, 9, 11))
    want = ops.augment(to_device(device, x), p, interpolation=interpolation)
    np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
    assert repr(t).startswith(type(t).__name__ + "(")


def test_compose_is_one_fused_call(monkeypatch):
    calls = []
    real = ops.augment
    kernel = fusednn._C.augment

    def counting(*args, **kwargs):
        calls.append(1)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(fusednn._C, "augment", counting)  # the compiled pass itself
    pipeline = T.Compose([T.RandomHorizontalFlip(), T.RandomAffine(15, translate=(0.1, 0.1), scale=(0.9, 1.1)),
                          T.ColorJitter(brightness=0.2), T.GaussianNoise(sigma=0.05), T.RandomErasing(0.25)])
    x = batch((8, 1, 28, 28))
    y = pipeline(x, seed=1, offset=2)
    assert len(calls) == 1
    spec = {"hflip": 0.5, "degrees": 15, "translate": (0.1, 0.1), "scale": (0.9, 1.1), "brightness": 0.2,
            "noise": 0.05, "noise_mean": 0.0, "erase": 0.25, "erase_scale": (0.02, 0.33), "erase_ratio": (0.3, 3.3),
            "erase_value": 0}
    p = ops.augment_params(8, spec, seed=1, offset=2, image_shape=(1, 28, 28))
    np.testing.assert_array_equal(y, real(x, p, interpolation="nearest", clip=(0.0, 1.0)))
    assert y.min() >= 0 and y.max() <= 1  # GaussianNoise(clip=True)


def test_seeded_calls_are_pure_and_thread_independent(device, threads):
    pipeline = T.Compose([T.RandomRotation(10, interpolation="bilinear"), T.RandomShift(0.1), T.RandomZoom(0.1),
                          T.GaussianNoise(sigma=0.05, clip=False), T.RandomErasing(0.5, value="random")],
                         image_shape=(1, 16, 16))
    x = to_device(device, batch((300, 256)))
    threads(1)
    a = to_numpy(pipeline(x, seed=9, offset=5))
    threads(2)
    b = to_numpy(pipeline(x, seed=9, offset=5))
    c = to_numpy(pipeline(x, seed=9, offset=6))
    np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32))
    assert not np.array_equal(a, c)
    assert a.shape == x.shape


def test_flip_after_affine_is_folded_exactly(device):
    x = batch((16, 2, 10, 13), np.float64)
    affine = T.RandomAffine((5, 35), translate=(0.2, 0.1), shear=(0, 10, -5, 5), interpolation="bilinear", fill=0.5)
    for flip, axis in ((T.RandomHorizontalFlip(1.0), -1), (T.RandomVerticalFlip(1.0), -2)):
        fused = to_numpy(T.Compose([affine, flip])(to_device(device, x), seed=3, offset=8))
        # The affine map's draws sit in fixed slots: the same (seed, offset) gives the same angles.
        sequential = np.flip(to_numpy(affine(to_device(device, x), seed=3, offset=8)), axis=axis)
        assert_close(fused, sequential)


def test_same_on_batch_gives_every_image_the_same_transform():
    x = np.repeat(batch((1, 3, 8, 8)), 5, axis=0)
    pipeline = T.Compose([T.RandomAffine(30, interpolation="bilinear"), T.ColorJitter(0.3, 0.3),
                          T.RandomErasing(1.0, value="random")])
    y = pipeline(x, seed=2, same_on_batch=True)
    assert all(np.array_equal(y[0], y[i]) for i in range(5))
    y = pipeline(x, seed=2)
    assert not np.array_equal(y[0], y[1])


def test_bad_settings():
    with pytest.raises(ValueError, match="degrees"):
        T.RandomRotation(-5)
    with pytest.raises(ValueError, match="p:"):
        T.RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="scale"):
        T.RandomAffine(0, scale=(1.1, 0.9))
    with pytest.raises(ValueError, match="erase"):
        T.RandomErasing(p=-0.1)
    with pytest.raises(ValueError, match="erase_scale"):
        T.RandomErasing(scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="saturation"):
        T.ColorJitter(saturation=0.2)
    with pytest.raises(ValueError, match="interpolation"):
        T.RandomRotation(5, interpolation="bicubic")
    with pytest.raises(ValueError, match="zoom"):
        T.RandomZoom(1.5)
    with pytest.raises(ValueError, match="cannot follow"):
        T.Compose([T.RandomErasing(), T.RandomAffine(10)])
    with pytest.raises(ValueError, match="cannot follow"):
        T.Compose([T.GaussianNoise(), T.ColorJitter(0.1)])
    with pytest.raises(ValueError, match="both set 'scale'"):
        T.Compose([T.RandomAffine(10, scale=(0.9, 1.1)), T.RandomZoom(0.1)])
    with pytest.raises(ValueError, match="interpolation"):
        T.Compose([T.RandomRotation(10), T.RandomZoom(0.1)])  # nearest and bilinear
    with pytest.raises(TypeError, match="transforms"):
        T.Compose([lambda x: x])
    with pytest.raises(ValueError, match="image_shape"):
        T.RandomZoom(0.1)(batch((2, 64)), seed=0)
    with pytest.raises(TypeError, match="x"):
        T.RandomZoom(0.1)([[1.0]], seed=0)


# ---- training integration ----

def _digits_run(tmp_path, epochs, transform, resume=None):
    from fusednn import data, nn, optim, train
    x, y = data.digits("train")
    x, y = (x[:200] / 16).astype(np.float32), y[:200]
    model = nn.MLP([64, 32, 10], dropout=0.1, seed=3)
    opt = optim.Adam(model.parameter_groups(), lr=3e-3)
    history = train.fit(model, nn.losses.SoftmaxCrossEntropy(), opt, (x, y), (x[:50], y[:50]), epochs=epochs,
                        batch_size=32, seed=5, progress=False, checkpoint=tmp_path, resume=resume, transform=transform)
    return model, history


def test_fit_transforms_training_batches_only_with_the_global_step_as_offset(tmp_path):
    pipeline = T.Compose([T.RandomAffine(10, translate=(0.1, 0.1), interpolation="bilinear"),
                          T.RandomErasing(0.5)], image_shape=(1, 8, 8))
    calls = []

    def recording(xb, *, seed, offset):
        calls.append((len(xb), seed, offset))
        return pipeline(xb, seed=seed, offset=offset)

    model, _ = _digits_run(tmp_path / "a", 2, recording)
    steps = 2 * 7  # 200 samples in batches of 32
    assert [c[2] for c in calls] == list(range(steps))  # never called on the 50 validation rows
    assert [c[0] for c in calls] == [32] * 6 + [8] + [32] * 6 + [8]
    assert {c[1] for c in calls} == {5 ^ 0x9E3779B97F4A7C15}
    plain, _ = _digits_run(tmp_path / "b", 2, None)
    assert not np.array_equal(model.params.data, plain.params.data)
    with pytest.raises(TypeError, match="transform"):
        _digits_run(tmp_path / "c", 1, "rotate=10")


def test_fit_with_transform_resumes_bit_for_bit(tmp_path):
    pipeline = T.from_string("rotate=10,shift=0.1,zoom=0.1,noise=0.05,erase=0.25", image_shape=(8, 8))
    full, h_full = _digits_run(tmp_path / "full", 4, pipeline)
    _digits_run(tmp_path / "part", 2, pipeline)
    again, h_again = _digits_run(tmp_path / "part", 4, pipeline, resume=tmp_path / "part")
    np.testing.assert_array_equal(again.params.data, full.params.data)
    assert h_again["loss"] == h_full["loss"]


def test_from_string_and_standardized():
    t = T.from_string("rotate=10, shift=0.1,zoom=0.1,noise=0.05,erase=0.25,hflip=0.5,brightness=0.2")
    kinds = [type(p).__name__ for p in t.transforms]
    assert kinds == ["RandomHorizontalFlip", "RandomAffine", "ColorJitter", "GaussianNoise", "RandomErasing"]
    spec = t.spec()
    assert spec["degrees"] == 10 and spec["translate"] == (0.1, 0.1) and spec["scale"] == (0.9, 1.1)
    assert spec["noise"] == 0.05 and spec["erase"] == 0.25 and spec["hflip"] == 0.5
    for bad, match in [("rotate=10,spin=3", "spin"), ("rotate=ten", "rotate"), ("rotate=-1", "rotate"),
                       ("hflip=2", "hflip"), ("zoom=1", "zoom"), ("rotate=1,rotate=2", "twice"), ("", "expected")]:
        with pytest.raises(ValueError, match=match):
            T.from_string(bad)
    x = batch((4, 64))
    mean, scale = np.linspace(0, 1, 64), np.linspace(1, 2, 64)
    z = ((x - mean) / scale).astype(np.float32)
    got = T.Standardized(T.RandomZoom(0.2), mean, scale)(z, seed=1, image_shape=(8, 8))
    raw = T.RandomZoom(0.2)((z * scale.astype(np.float32) + mean.astype(np.float32)), seed=1, image_shape=(8, 8))
    assert_close(got, (raw - mean.astype(np.float32)) / scale.astype(np.float32))
