"""fusednn.nn's convolutional layers (Conv2d, pooling, Dropout2d, Reshape) and the CNN builder:
gradients against finite differences, initializers, spatial dropout's masks, devices, and a
tiny training run on the bundled digits."""

import math

import numpy as np
import pytest
from conftest import assert_close, to_device, to_numpy

import fusednn
from fusednn import data, nn, optim, reference, train
from fusednn.gradcheck import gradcheck
from fusednn.nn.losses import SoftmaxCrossEntropy


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for _, p in layer.named_parameters():
        p[...] = rng.standard_normal(p.shape) * 0.5
    return layer


@pytest.mark.parametrize("kw", [dict(), dict(activation="relu", stride=2, padding=1),
                                dict(groups=2, dilation=(2, 1), padding=(2, 0), bias=False)])
def test_conv2d_layer_gradcheck(kw):
    layer = _randomize(nn.Conv2d(4, 6, 3, dtype=np.float64, **kw))
    assert gradcheck(layer, [_x((2, 4, 7, 6))])


@pytest.mark.parametrize("layer", [lambda: nn.MaxPool2d(2), lambda: nn.MaxPool2d(3, 2, 1),
                                   lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False), lambda: nn.AvgPool2d(2),
                                   lambda: nn.GlobalAvgPool2d(), lambda: nn.Reshape((3, 2, 14))])
def test_pool_layers_gradcheck(layer):
    assert gradcheck(layer(), [_x((2, 3, 7, 4))])


def test_cnn_gradcheck_of_every_parameter():
    """A small CNN with bias-free convolutions, batch norm, spatial dropout, both pools and both
    heads, in training mode: every parameter's gradient and the input's against finite
    differences (a fixed dropout stream: the model is reseeded before every forward)."""
    for head, pool in (("flatten", "max"), ("global_avg", "avg")):
        model = nn.CNN((2, 6, 5), channels=(3, 4), classes=3, head=head, pool=pool, spatial_dropout=0.3, dropout=0.2,
                       dtype=np.float64, seed=3)
        model.input_gradient(True)
        _randomize(model)

        class Reseeded(nn.Module):
            def __init__(self):
                super().__init__()
                self.add_module("m", model)

            def forward(self, x, training=None):
                model.seed(5)
                return model.forward(x, True)

            def backward(self, dy):
                return model.backward(dy)

        assert gradcheck(Reseeded(), [_x((3, 60), seed=4)])


def test_conv2d_layer_matches_reference_and_inits():
    x = _x((2, 3, 6, 6)).astype(np.float32)
    layer = nn.Conv2d(3, 8, (3, 2), stride=(1, 2), padding=1, activation="relu", rng=0)
    assert layer.p["weight"].shape == (8, 3, 3, 2)
    y = layer.forward(x)
    assert y.shape == (2, 8) + layer.output_shape((3, 6, 6))[1:]
    assert_close(y, reference.conv2d(x, layer.p["weight"], layer.p["bias"], stride=(1, 2), padding=1,
                                     activation="relu"),
                 reference.conv2d(x.astype(np.float64), layer.p["weight"].astype(np.float64),
                                  layer.p["bias"].astype(np.float64), stride=(1, 2), padding=1, activation="relu"))
    fan_in = 3 * 3 * 2
    # Uniform inits: within the bound, and spread over it (a uniform's std is bound / sqrt(3)).
    uniform = lambda w, bound: np.abs(w).max() <= bound and abs(w.std() * math.sqrt(3) / bound - 1) < 0.1  # noqa: E731
    for init, check in [("torch", lambda w: uniform(w, 1 / math.sqrt(fan_in))),
                        ("he", lambda w: abs(w.std() / math.sqrt(2 / fan_in) - 1) < 0.1),
                        ("lecun", lambda w: abs(w.std() / math.sqrt(1 / fan_in) - 1) < 0.1),
                        ("xavier", lambda w: uniform(w, math.sqrt(6 / (fan_in + 64 * 6)))),
                        ("orthogonal", lambda w: np.allclose(w.reshape(64, -1).T @ w.reshape(64, -1), np.eye(18),
                                                             atol=1e-5))]:
        w = nn.Conv2d(3, 64, (3, 2), init=init, rng=1).p["weight"]
        assert check(w), init
    with pytest.raises(ValueError, match="init"):
        nn.Conv2d(3, 4, 3, init="nope")
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(3, 4, 3, stride=0)
    with pytest.raises(ValueError, match="x: expected shape"):
        layer.forward(_x((2, 4, 6, 6)).astype(np.float32))
    with pytest.raises(ValueError, match="padding: expected at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(RuntimeError, match="no training forward"):
        nn.Conv2d(3, 4, 3).backward(np.zeros((1, 4, 4, 4), np.float32))


def test_dropout2d_drops_whole_channel_maps(device):
    x = to_device(device, np.ones((64, 32, 3, 3), np.float32))
    layer = nn.Dropout2d(0.25).to(device)
    layer.seed(7)
    y = to_numpy(layer.forward(x, training=True))
    per_map = y.reshape(64 * 32, 9)
    assert np.all((per_map == 0).all(axis=1) | (per_map == np.float32(1 / 0.75)).all(axis=1))
    dropped = (per_map == 0).all(axis=1).mean()
    assert 0.2 < dropped < 0.3
    dx = to_numpy(layer.backward(to_device(device, np.full((64, 32, 3, 3), 2.0, np.float32))))
    assert np.array_equal(dx, 2 * y)
    # The same (seed, offset): the same maps; eval: the identity (inverted) or 1 - p (vanilla).
    layer.seed(7)
    assert np.array_equal(to_numpy(layer.forward(x, training=True)), y)
    assert np.array_equal(to_numpy(layer.forward(x, training=False)), to_numpy(x))
    vanilla = nn.Dropout2d(0.25, mode="vanilla").to(device)
    assert np.allclose(to_numpy(vanilla.forward(x, training=False)), 0.75)
    with pytest.raises(ValueError, match="p: expected"):
        nn.Dropout2d(1.0)


def test_cnn_shapes_devices_and_first_layer():
    model = nn.CNN((1, 8, 8), channels=(4, 6), classes=10)
    names = [type(m).__name__ for m in model.children()]
    assert names == ["Reshape", "Conv2d", "BatchNorm2d", "MaxPool2d", "Conv2d", "BatchNorm2d", "MaxPool2d", "Flatten",
                     "Linear"]
    assert not model[1].has_bias and model[1].input_grad is False
    x = _x((5, 64)).astype(np.float32)
    out = model.forward(x, training=True)
    assert out.shape == (5, 10)
    assert model.backward(np.ones((5, 10), np.float32)) is None  # the first convolution skips dx
    model.input_gradient(True)
    assert model.backward(np.ones((5, 10), np.float32)).shape == (5, 64)
    # Without norm the ReLU is the convolution's epilogue; pooling stops at 1x1 maps.
    small = nn.CNN((2, 2, 2), channels=(3, 3), norm=None, classes=2)
    assert [type(m).__name__ for m in small.children()] == ["Reshape", "Conv2d", "MaxPool2d", "Conv2d", "Flatten",
                                                           "Linear"]
    assert small[1].activation == "relu" and small[1].has_bias
    with pytest.raises(ValueError, match="input_shape"):
        nn.CNN((8, 8))
    with pytest.raises(ValueError, match="norm"):
        nn.CNN((1, 8, 8), norm="layer")


def test_cnn_trains_on_digits():
    """A tiny training run: a small CNN reaches > 92% on the digits' validation split in 10 epochs."""
    (xt, yt), (xv, yv) = data.digits("train"), data.digits("val")
    scaler = data.StandardScaler().fit(xt)
    xt, xv = scaler.transform(xt).astype(np.float32), scaler.transform(xv).astype(np.float32)
    model = nn.CNN((1, 8, 8), channels=(8, 16), classes=10, seed=0)
    opt = optim.AdamW(model.parameter_groups(weight_decay=1e-4), lr=3e-3)
    history = train.fit(model, SoftmaxCrossEntropy(), opt, (xt, yt), (xv, yv), epochs=10, batch_size=32, verbose=0)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert train.evaluate(model, (xv, yv))["accuracy"] > 0.92


def test_cnn_threads_bitwise(threads):
    # 256 images: the first convolution's 64 tasks and the norms reach the work from which the
    # pool runs (kMinParallelWork, csrc/common/parallel.h); 16 images ran serially either way
    x = _x((256, 64), seed=2).astype(np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        model = nn.CNN((1, 8, 8), channels=(8, 16), classes=10, spatial_dropout=0.1, seed=0)
        model.input_gradient(True)
        out = model.forward(x, training=True)
        dx = model.backward(out)
        results.append((out, dx, np.array(model.params.grad)))
        assert fusednn.get_num_threads() == n
    for one, two in zip(*results):
        assert np.array_equal(one, two)


def _write_idx(path, array):
    path.write_bytes(bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
                     + array.astype(np.uint8).tobytes())


def test_cli_trains_the_cnn_on_digits_and_mnist_files(tmp_path, capsys):
    """``train --model cnn`` on the digits and on MNIST IDX files (a small synthetic set: a bright
    square whose corner is the class); data sets of plain features are a usage error."""
    from fusednn import cli
    runs = ["--runs-dir", str(tmp_path / "runs"), "--no-progress", "--model", "cnn"]
    assert cli.main(["train", "--epochs", "1", *runs, "--name", "digits"]) == 0
    assert "test accuracy" in capsys.readouterr().out
    rng = np.random.default_rng(0)
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    for prefix, n in (("train", 240), ("t10k", 40)):
        labels = rng.integers(0, 4, n)
        images = rng.integers(0, 40, (n, 28, 28))
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 2)
            images[i, 4 + 14 * r:10 + 14 * r, 4 + 14 * col:10 + 14 * col] = 255
        _write_idx(mnist / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(mnist / f"{prefix}-labels-idx1-ubyte", labels)
    assert cli.main(["train", "--epochs", "3", "--batch-size", "32", *runs, "--name", "mnist", "--dataset",
                     f"mnist:{mnist}"]) == 0
    out = capsys.readouterr().out
    assert "(1, 28, 28)" in out and float(out.split("test accuracy ")[1].split("%")[0]) > 80
    assert cli.main(["train", "--epochs", "1", *runs, "--name", "moons", "--dataset", "moons"]) == 2
    assert "--model cnn: needs an image data set" in capsys.readouterr().err
