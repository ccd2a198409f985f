"""The CUDA module on CuPy arrays: every op against its CPU twin (itself checked against the
NumPy references in the other test files), dropout masks bit for bit, optimizers step for step.
Skipped, with the reason, unless CuPy, a GPU and fusednn._C_cuda are all present."""

import numpy as np
import pytest

import fusednn
from fusednn import ops

cp = pytest.importorskip("cupy", reason="CuPy is not installed (the CUDA tests need CuPy and a GPU)")
try:
    if cp.cuda.runtime.getDeviceCount() < 1:
        pytest.skip("no CUDA GPU is visible", allow_module_level=True)
except cp.cuda.runtime.CUDARuntimeError as e:
    pytest.skip(f"no usable CUDA GPU ({e})", allow_module_level=True)
if not fusednn.build_info()["cuda"]:
    pytest.skip("fusednn was built without its CUDA module (FUSEDNN_CUDA=ON)", allow_module_level=True)

SHAPES = [(1, 5), (7, 1), (33, 17), (256, 1000)]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def _x(shape, seed=0, dtype=np.float32, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


def _close(gpu, cpu, dtype=np.float32, rtol=None, atol=None):
    rtol = RTOL[np.dtype(dtype).type] * 10 if rtol is None else rtol
    atol = rtol if atol is None else atol
    np.testing.assert_allclose(cp.asnumpy(gpu), cpu, rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_linear(shape, activation):
    n, k = shape
    x, w, b = _x(shape), _x((9, k), 1), _x(9, 2)
    y = ops.linear(x, w, b, activation)
    gy = ops.linear(cp.asarray(x), cp.asarray(w), cp.asarray(b), activation)
    assert isinstance(gy, cp.ndarray)
    _close(gy, y, rtol=1e-4, atol=1e-4)
    dy = _x(y.shape, 3)
    for g, c in zip(ops.linear_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(w), gy, activation),
                    ops.linear_backward(dy, x, w, y, activation)):
        _close(g, c, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("smoothing", ["others", "all"])
def test_cross_entropy(shape, smoothing):
    n, k = shape
    z = _x(shape, scale=30.0)
    labels = np.random.default_rng(1).integers(0, k, n)
    kw = dict(label_smoothing=0.1 if k > 1 else 0.0, smoothing=smoothing)
    loss, dz = ops.softmax_cross_entropy_with_grad(z, labels, **kw)
    gloss, gdz = ops.softmax_cross_entropy_with_grad(cp.asarray(z), cp.asarray(labels), **kw)
    np.testing.assert_allclose(float(gloss), float(loss), rtol=1e-5)
    _close(gdz, dz, atol=1e-6)
    _close(ops.softmax(cp.asarray(z)), ops.softmax(z), atol=1e-7)
    _close(ops.log_softmax(cp.asarray(z)), ops.log_softmax(z), rtol=1e-5, atol=1e-4)


def test_linear_keeps_nan_through_relu_and_takes_unaligned_biases():
    x, w = _x((4, 6)), _x((5, 6), 1)
    x[1, 2] = np.nan
    flat = _x(5 + 1, 2)
    b = flat[1:]  # a view at a 4-byte offset, as biases inside a flat parameter buffer are
    y = ops.linear(x, w, b, "relu")
    gflat = cp.asarray(flat)
    gy = ops.linear(cp.asarray(x), cp.asarray(w), gflat[1:], "relu")
    np.testing.assert_array_equal(np.isnan(cp.asnumpy(gy)), np.isnan(y))
    _close(cp.nan_to_num(gy), np.nan_to_num(y), rtol=1e-4, atol=1e-4)
    dy = _x(y.shape, 3)
    db = cp.zeros(6, cp.float32)[1:]
    ops.linear_backward(cp.asarray(dy), cp.asarray(_x((4, 6))), cp.asarray(w), cp.abs(gy), "relu",
                        out=(None, None, db))
    assert bool(cp.isfinite(db).all())


def test_cross_entropy_nan_and_ignore_index():
    z = _x((4, 6))
    z[1, 2] = np.nan
    labels = np.array([0, 1, -100, 5])
    for reduction in ("none", "sum", "mean"):
        c = ops.softmax_cross_entropy(z, labels, reduction=reduction)
        g = ops.softmax_cross_entropy(cp.asarray(z), cp.asarray(labels), reduction=reduction)
        np.testing.assert_array_equal(np.isnan(cp.asnumpy(g)), np.isnan(c))


@pytest.mark.parametrize("shape", [(2, 3), (64, 7), (8, 4, 5, 3)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(shape, training):
    x = _x(shape, scale=3.0)
    c = shape[1]
    gamma, beta = _x(c, 1), _x(c, 2)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    grm, grv = cp.asarray(rm), cp.asarray(rv)
    y, mean, inv_std = ops.batch_norm(x, gamma, beta, rm, rv, training=training)
    gy, gmean, ginv = ops.batch_norm(cp.asarray(x), cp.asarray(gamma), cp.asarray(beta), grm, grv, training=training)
    _close(gy, y, rtol=1e-4, atol=1e-5)
    _close(grm, rm)
    _close(grv, rv)
    dy = _x(shape, 3)
    for g, cc in zip(ops.batch_norm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(gamma), gmean, ginv,
                                             training=training),
                     ops.batch_norm_backward(dy, x, gamma, mean, inv_std, training=training)):
        _close(g, cc, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm_and_weight_norm(shape):
    x = _x(shape)
    d = shape[-1]
    gamma, beta = _x(d, 1), _x(d, 2)
    y, mean, inv_std = ops.layer_norm(x, gamma, beta)
    gy, gmean, ginv = ops.layer_norm(cp.asarray(x), cp.asarray(gamma), cp.asarray(beta))
    _close(gy, y, rtol=1e-4, atol=1e-5)
    dy = _x(shape, 3)
    for g, c in zip(ops.layer_norm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(gamma), gmean, ginv),
                    ops.layer_norm_backward(dy, x, gamma, mean, inv_std)):
        _close(g, c, rtol=1e-4, atol=1e-4)
    g_row = np.abs(_x(shape[0], 4)) + 0.5
    _close(ops.weight_norm(cp.asarray(x), cp.asarray(g_row)), ops.weight_norm(x, g_row), rtol=1e-5, atol=1e-6)
    for g, c in zip(ops.weight_norm_backward(cp.asarray(dy), cp.asarray(x), cp.asarray(g_row)),
                    ops.weight_norm_backward(dy, x, g_row)):
        _close(g, c, rtol=1e-4, atol=1e-5)


def test_local_response_norm():
    x = _x((2, 7, 3, 3))
    _close(ops.local_response_norm(cp.asarray(x), 3, 0.1), ops.local_response_norm(x, 3, 0.1), atol=1e-6)
    dy = _x(x.shape, 1)
    _close(ops.local_response_norm_backward(cp.asarray(dy), cp.asarray(x), 3, 0.1),
           ops.local_response_norm_backward(dy, x, 3, 0.1), atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 4, 1001, 1 << 20])
@pytest.mark.parametrize("offset", [0, 5, (1 << 40) + 3])
def test_dropout_masks_equal_the_cpu_ones_bit_for_bit(n, offset):
    x = np.ones(n, np.float32)
    cpu = ops.dropout(x, 0.3, seed=1234, offset=offset)
    gpu = ops.dropout(cp.asarray(x), 0.3, seed=1234, offset=offset)
    np.testing.assert_array_equal(cp.asnumpy(gpu), cpu)
    dy = _x(n, 2)
    np.testing.assert_array_equal(cp.asnumpy(ops.dropout_backward(cp.asarray(dy), 0.3, seed=1234, offset=offset)),
                                  ops.dropout_backward(dy, 0.3, seed=1234, offset=offset))
    np.testing.assert_array_equal(cp.asnumpy(ops.drop_connect(cp.asarray(x), 0.3, seed=9, mode="vanilla")),
                                  ops.drop_connect(x, 0.3, seed=9, mode="vanilla"))


def test_gaussian_noise_matches_the_cpu():
    x = np.zeros(1001)
    _close(ops.gaussian_noise(cp.asarray(x), 0.5, seed=3), ops.gaussian_noise(x, 0.5, seed=3), np.float64)


@pytest.mark.parametrize("rule, kw", [
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("adagrad", dict(lr=0.1)),
    ("rmsprop", dict(lr=0.01, momentum=0.5, centered=True)),
    ("adadelta", dict()),
    ("adam", dict(lr=0.01, amsgrad=True)),
    ("adamw", dict(lr=0.01, max_grad_norm=0.5)),
    ("nadam", dict(lr=0.01)),
])
def test_optimizers_follow_the_cpu_step_for_step(rule, kw):
    from fusednn import optim
    cls = {"sgd": optim.SGD, "adagrad": optim.Adagrad, "rmsprop": optim.RMSprop, "adadelta": optim.Adadelta,
           "adam": optim.Adam, "adamw": optim.AdamW, "nadam": optim.NAdam}[rule]
    shapes = [(3, 5), (1,), (70000,)]
    cpu = [_x(s, i) for i, s in enumerate(shapes)]
    gpu = [cp.asarray(p) for p in cpu]
    o_cpu, o_gpu = cls(cpu, **kw), cls(gpu, **kw)
    for step in range(20):
        grads = [_x(s, 100 + step * 10 + i) for i, s in enumerate(shapes)]
        o_cpu.step(grads)
        o_gpu.step([cp.asarray(g) for g in grads])
    for g, c in zip(gpu, cpu):
        _close(g, c, rtol=1e-5, atol=1e-6)


def test_clipping_on_the_gpu():
    from fusednn import optim
    grads = [_x((5, 5), 1, scale=10.0), _x(7, 2)]
    ggrads = [cp.asarray(g) for g in grads]
    np.testing.assert_allclose(optim.clip_grad_norm(ggrads, 1.0), optim.clip_grad_norm(grads, 1.0), rtol=1e-6)
    for g, c in zip(ggrads, grads):
        _close(g, c)
    optim.clip_grad_value(ggrads, 0.01)
    optim.clip_grad_value(grads, 0.01)
    for g, c in zip(ggrads, grads):
        _close(g, c)


@pytest.mark.parametrize("shape", SHAPES)
def test_relu_and_fused_activations(shape):
    x, dy = _x(shape), _x(shape, 1)
    x.reshape(-1)[0] = np.nan
    y = ops.relu(x)
    gy = ops.relu(cp.asarray(x))
    np.testing.assert_array_equal(cp.asnumpy(gy), y)
    np.testing.assert_array_equal(cp.asnumpy(ops.relu_backward(cp.asarray(dy), gy)), ops.relu_backward(dy, y))
    kw = dict(seed=5, offset=2**33 + 1)
    y = ops.dropout(x, 0.4, activation="relu", **kw)
    gy = ops.dropout(cp.asarray(x), 0.4, activation="relu", **kw)
    np.testing.assert_array_equal(cp.asnumpy(gy), y)  # the same mask and scale, bit for bit
    np.testing.assert_array_equal(cp.asnumpy(ops.dropout_backward(cp.asarray(dy), 0.4, y=gy, activation="relu", **kw)),
                                  ops.dropout_backward(dy, 0.4, y=y, activation="relu", **kw))
    if shape[0] > 1:
        g, b = _x(shape[1], 2), _x(shape[1], 3)
        for name in ("batch_norm", "layer_norm"):
            bn = name == "batch_norm"
            extra = dict(training=True) if bn else {}
            y, mean, inv_std = getattr(ops, name)(x, g, b, activation="relu", **extra)
            gy, gmean, ginv = getattr(ops, name)(cp.asarray(x), cp.asarray(g), cp.asarray(b), activation="relu",
                                                 **extra)
            _close(cp.nan_to_num(gy), np.nan_to_num(y), rtol=1e-4, atol=1e-5)
            back = getattr(ops, name + "_backward")
            for gg, c in zip(back(cp.asarray(dy), cp.asarray(x), cp.asarray(g), gmean, ginv, y=gy, activation="relu",
                                  **extra),
                             back(dy, x, g, mean, inv_std, y=y, activation="relu", **extra)):
                _close(cp.nan_to_num(gg), np.nan_to_num(c), rtol=1e-4, atol=1e-4)


def test_gather_rows():
    x = _x((50, 7, 3))
    index = np.array([3, -1, 0, 49, 3])
    got = ops.gather_rows(cp.asarray(x), cp.asarray(index))
    assert isinstance(got, cp.ndarray)
    np.testing.assert_array_equal(cp.asnumpy(got), x[index])
    with pytest.raises(ValueError, match="index: expected row indices"):
        ops.gather_rows(cp.asarray(x), cp.asarray(np.array([50])))


def test_mixing_numpy_and_cupy_is_a_type_error():
    with pytest.raises(TypeError, match="got a mix"):
        ops.linear(cp.ones((2, 2), cp.float32), np.ones((2, 2), np.float32))


def test_a_model_moved_to_the_gpu_trains_like_on_the_cpu():
    from fusednn import data, nn, train
    from fusednn.nn.losses import SoftmaxCrossEntropy
    x, y = data.digits("train")
    x = data.StandardScaler().fit_transform(x).astype(np.float32)
    models = [nn.MLP([64, 32, 10], norm="batch", dropout=0.1, seed=0) for _ in range(2)]
    models[1].to("cuda")
    assert isinstance(models[1].params.data, cp.ndarray)
    for model in models:
        opt = fusednn.optim.AdamW(model.parameter_groups(1e-4), lr=3e-3)
        train.fit(model, SoftmaxCrossEntropy(), opt, (x, y), epochs=2, batch_size=64, progress=False)
    cpu, gpu = models[0].state_dict(), models[1].state_dict()
    for name in cpu:
        np.testing.assert_allclose(gpu[name], cpu[name], rtol=1e-3, atol=1e-4, err_msg=name)
    assert train.evaluate(models[1], (x, y))["accuracy"] > 0.9
    models[1].to("cpu")
    np.testing.assert_array_equal(models[1].state_dict()["0.weight"], gpu["0.weight"])


def test_main_job_on_the_gpu(tmp_path, capsys):
    from fusednn import cli
    assert cli.main(["train", "--device", "cuda", "--no-progress", "--runs-dir", str(tmp_path), "--name", "g"]) == 0
    out = capsys.readouterr().out
    assert float(out.split("test accuracy ")[1].split("%")[0]) >= 97.0, out


def test_penalty_gradient_on_the_gpu():
    w, g = _x(100_001, 1), _x(100_001, 2)
    mask = np.random.default_rng(3).random(w.size) < 0.5
    gw, gg = cp.asarray(w), cp.asarray(g)
    value = ops.add_penalty_grad(w, g, l1=0.01, l2=0.1, mask=mask)
    gvalue = ops.add_penalty_grad(gw, gg, l1=0.01, l2=0.1, mask=cp.asarray(mask))
    np.testing.assert_allclose(gvalue, value, rtol=1e-10)
    _close(gg, g)
