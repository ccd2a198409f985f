"""What PyTorch (and NumPy / scikit-learn) users expect, each against torch's formula written out
here (this file does not need torch), and the course's forms (issue 18's "also fix" items):
fit's dtype and list handling, in-place elementwise ops, byte-order messages, BatchNorm's
cumulative average, p-norm clipping, torch's Linear bias, lecun_uniform, Xavier for logistic
units, clipping to an interval and the weight decay of Module.parameter_groups."""

import math

import numpy as np
import pytest

from conftest import assert_close, to_device, to_numpy
from fusednn import nn, ops, optim, reference, train
from fusednn.nn import init
from fusednn.nn.losses import SoftmaxCrossEntropy


def blobs(n=48, n_in=4, k=3, seed=0):
    centers = np.random.default_rng(12345).normal(0, 4, (k, n_in))
    g = np.random.default_rng(seed)
    y = g.integers(0, k, n)
    return centers[y] + g.normal(0, 1, (n, n_in)), y  # float64, NumPy's default


def _fit(x, y, **kw):
    model = nn.MLP([4, 8, 3], seed=0)
    h = train.fit(model, SoftmaxCrossEntropy(), optim.SGD(model.params, lr=0.1), (x, y), epochs=2, batch_size=16,
                  verbose=0, **kw)
    return model, h


# ---- fit's data


def test_fit_casts_float64_data_to_the_models_dtype():
    x, y = blobs()
    assert x.dtype == np.float64
    m64, h64 = _fit(x, y, val_data=(x, y))
    m32, h32 = _fit(x.astype(np.float32), y, val_data=(x.astype(np.float32), y))
    assert h64.epochs[-1]["loss"] == h32.epochs[-1]["loss"]
    assert np.array_equal(m64.params.data, m32.params.data)
    assert train.evaluate(m64, (x, y)) == train.evaluate(m64, (x.astype(np.float32), y))
    # non-native byte order is cast too
    _, hbe = _fit(x.astype(">f4"), y)
    assert hbe.epochs[-1]["loss"] == h32.epochs[-1]["loss"]


def test_fit_names_a_list_and_says_how_to_convert_it():
    x, y = blobs()
    with pytest.raises(TypeError, match=r"train_data: expected x as a numpy.ndarray, got a list; convert it with "
                                        r"np.asarray\(x, dtype=np.float32\)"):
        _fit(x.tolist(), y)
    with pytest.raises(TypeError, match=r"val_data: expected y as a numpy.ndarray, got a list"):
        _fit(x, y, val_data=(x, y.tolist()))
    with pytest.raises(TypeError, match=r"expected floating-point x, got dtype int64; convert it with "
                                        r"x.astype\(np.float32\)"):
        _fit(np.round(x).astype(np.int64), y)


def test_layer_dtype_messages_say_how_to_convert():
    layer = nn.Linear(4, 3)
    with pytest.raises(TypeError, match=r"x: expected dtype float32 \(the layer's\), got float64; convert with "
                                        r"x.astype\(np.float32\)"):
        layer.forward(np.ones((2, 4)))
    with pytest.raises(TypeError, match=r"got >f4 \(float32 in non-native byte order; convert with "
                                        r"\.astype\(np\.float32\)\)"):
        layer.forward(np.ones((2, 4), ">f4"))


def test_binding_dtype_messages_name_non_native_byte_order():
    big = np.ones(3, ">f4")
    with pytest.raises(TypeError, match=r"x: expected dtype float32 or float64, got >f4 \(float32 in non-native "
                                        r"byte order; convert with \.astype\(np\.float32\)\)"):
        ops.relu(big)
    with pytest.raises(TypeError, match=r"out: expected dtype float64, got >f8 \(float64 in non-native byte order"):
        ops.relu(np.ones(3), out=np.ones(3, ">f8"))
    with pytest.raises(TypeError, match="non-native byte order"):
        reference.clip_grad_value_([np.ones(3, ">f8")], 1.0)


# ---- in-place elementwise ops (torch's relu_, dropout in eval)


def test_relu_in_place(device):
    x0 = np.array([[-2.0, -0.0, 0.5], [np.nan, 3.0, -np.inf]], np.float32)
    x = to_device(device, x0.copy())
    assert ops.relu(x, out=x) is x
    expected = np.where(x0 > 0, x0, 0).astype(np.float32)  # torch.relu_: x = max(x, 0), NaN stays
    expected[1, 0] = np.nan
    assert np.array_equal(to_numpy(x), expected, equal_nan=True)
    big = to_device(device, np.arange(-8.0, 8.0))
    with pytest.raises(ValueError, match="out: must not share memory with x"):
        ops.relu(big[:-1], out=big[1:])  # a partial overlap stays an error
    with pytest.raises(ValueError, match="out: expected a C-contiguous"):
        ops.relu(big[::2], out=big[::2])


@pytest.mark.parametrize("mode, activation", [("inverted", None), ("vanilla", None), ("vanilla", "relu"),
                                              ("inverted", "relu")])
def test_dropout_in_eval_in_place(device, mode, activation):
    x0 = np.array([-1.5, 0.0, 2.0, 4.0])
    expected = ops.dropout(to_device(device, x0), 0.25, seed=0, training=False, mode=mode, activation=activation)
    expected = to_numpy(expected).copy()
    scale = 0.75 if mode == "vanilla" else 1.0  # torch: eval dropout is the identity (inverted)
    assert np.array_equal(expected, (np.maximum(x0, 0) if activation else x0) * scale)
    x = to_device(device, x0.copy())
    assert ops.dropout(x, 0.25, seed=0, training=False, mode=mode, activation=activation, out=x) is x
    assert np.array_equal(to_numpy(x), expected)
    with pytest.raises(ValueError, match="must not share memory"):
        ops.dropout(x, 0.25, seed=0, training=True, out=x)  # training: the mask kernel reads x while it writes
    with pytest.raises(ValueError, match="must not share memory"):
        ops.dropout(x[:-1], 0.25, seed=0, training=False, mode="vanilla", out=x[1:])


# ---- BatchNorm(momentum=None): torch's cumulative moving average


def test_batch_norm_cumulative_moving_average():
    g = np.random.default_rng(0)
    bn = nn.BatchNorm1d(3, momentum=None, dtype=np.float64)
    mean, var = np.zeros(3), np.ones(3)
    for n in range(1, 5):
        x = g.normal(n, 1 + n, (8, 3))
        bn.forward(x, training=True)
        # torch: num_batches_tracked += 1; factor = 1 / num_batches_tracked;
        # running = (1 - factor) * running + factor * batch (the variance unbiased)
        f = 1.0 / n
        mean = (1 - f) * mean + f * x.mean(0)
        var = (1 - f) * var + f * x.var(0, ddof=1)
        assert_close(bn.buffers["running_mean"], mean)
        assert_close(bn.buffers["running_var"], var)
        assert int(bn.buffers["num_batches_tracked"]) == n
    bn.forward(x, training=False)  # evaluation does not count
    assert int(bn.buffers["num_batches_tracked"]) == 4
    assert "num_batches_tracked" in bn.state_dict()
    assert "num_batches_tracked" not in nn.BatchNorm1d(3).state_dict()  # momentum given: torch's EMA, unchanged
    with pytest.raises(TypeError, match="momentum"):
        nn.BatchNorm1d(3, momentum="none")


# ---- clip_grad_norm with any p


def _torch_clip_grad_norm(grads, max_norm, p):
    """torch.nn.utils.clip_grad_norm_ written out: the norm of the per-tensor norms."""
    def vector_norm(v, p):
        v = np.abs(np.asarray(v, np.float64).ravel())
        if p == math.inf:
            return v.max()
        if p == -math.inf:
            return v.min()
        return (v ** p).sum() ** (1 / p)
    total = vector_norm([vector_norm(g, p) for g in grads], p)
    coef = min(max_norm / (total + 1e-6), 1.0)
    return total, [g * coef for g in grads]


@pytest.mark.parametrize("p", [1.0, 3, 0.5, 2.0, math.inf, -math.inf])
def test_clip_grad_norm_any_p(p):
    g = np.random.default_rng(1)
    grads = [g.normal(0, 1, (3, 4)), g.normal(0, 1, 5)]
    total, expected = _torch_clip_grad_norm(grads, 0.5, p)
    norm = optim.clip_grad_norm(grads, 0.5, norm_type=p)
    assert_close(np.float64(norm), np.float64(total))
    for got, want in zip(grads, expected):
        assert_close(got, want)
    assert_close(np.float64(optim.grad_norm(grads, p)), np.float64(_torch_clip_grad_norm(expected, math.inf, p)[0]))
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="norm_type: expected a norm order p > 0, inf or -inf"):
            optim.clip_grad_norm(grads, 1.0, norm_type=bad)


def test_optimizer_max_grad_norm_with_a_p_norm():
    g = np.random.default_rng(2)
    p0, grad = g.normal(0, 1, 6), g.normal(0, 3, 6)
    p = p0.copy()
    opt = optim.SGD([p], lr=0.1, max_grad_norm=1.0, grad_norm_type=1)
    opt.step([grad])
    total, (clipped,) = _torch_clip_grad_norm([grad], 1.0, 1)
    assert_close(np.float64(opt.last_grad_norm), np.float64(total))
    assert_close(p, p0 - 0.1 * clipped)


# ---- initializers


def test_linear_torch_init_draws_the_bias_as_torch():
    layer = nn.Linear(5, 3, init="torch", rng=7, dtype=np.float64)
    # torch.nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) is U(-1/sqrt(in), 1/sqrt(in)),
    # and the bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn after the weight
    rng, bound = np.random.default_rng(7), 1 / math.sqrt(5)
    assert np.array_equal(layer.p["weight"], rng.uniform(-bound, bound, (3, 5)))
    assert np.array_equal(layer.p["bias"], rng.uniform(-bound, bound, 3))
    assert np.array_equal(nn.Linear(5, 3, init="torch", bias_init=0.5).p["bias"], [0.5] * 3)
    assert np.array_equal(nn.Linear(5, 3).p["bias"], [0.0] * 3)  # other inits: 0, as before


def test_lecun_uniform():
    w = init.lecun_uniform(np.empty((4, 6, 3)), rng=3)
    bound = math.sqrt(3 / (6 * 3))  # Keras: limit = sqrt(3 / fan_in)
    assert np.array_equal(w, np.random.default_rng(3).uniform(-bound, bound, (4, 6, 3)))
    layer = nn.Linear(6, 4, init="lecun_uniform", rng=3, dtype=np.float64)
    assert np.array_equal(layer.p["weight"], np.random.default_rng(3).uniform(-math.sqrt(3 / 6), math.sqrt(3 / 6),
                                                                              (4, 6)))


def test_xavier_for_logistic_units_by_name():
    fan_in, fan_out = 30, 20
    bound = 4 * math.sqrt(6 / (fan_in + fan_out))  # the course: 4 x the Xavier bound, 16 x the variance
    layer = nn.Linear(fan_in, fan_out, init="xavier_logistic", rng=1, dtype=np.float64)
    assert np.array_equal(layer.p["weight"], np.random.default_rng(1).uniform(-bound, bound, (fan_out, fan_in)))
    assert init.calculate_gain("logistic") == 4.0
    assert init.calculate_gain("sigmoid") == 1.0  # torch's table, unchanged
    a = init.xavier_normal(np.empty((fan_out, fan_in)), gain="logistic", rng=2)
    b = init.xavier_normal(np.empty((fan_out, fan_in)), gain=4.0, rng=2)
    assert np.array_equal(a, b)
    assert np.array_equal(init.xavier_uniform(np.empty((3, 3)), gain="tanh", rng=0),
                          init.xavier_uniform(np.empty((3, 3)), gain=5 / 3, rng=0))
    with pytest.raises(TypeError, match="gain: expected a number or a nonlinearity name"):
        init.xavier_uniform(np.empty((3, 3)), gain="softplus")


# ---- clipping by value to an interval [a, b]


@pytest.mark.parametrize("impl", [ops, reference])
def test_clip_grad_value_to_an_interval(impl, device):
    if impl is reference and device != "cpu":
        pytest.skip("the NumPy reference runs on the host")
    g0 = [np.array([-3.0, -0.5, 0.2, 1.0, 5.0, np.nan]), np.array([[2.5, -2.5]], np.float64)]
    grads = [to_device(device, a.copy()) for a in g0]
    impl.clip_grad_value_(grads, (-1.0, 2.0))
    for got, a in zip(grads, g0):
        assert np.array_equal(to_numpy(got), np.clip(a, -1.0, 2.0), equal_nan=True)
    sym = [to_device(device, a.copy()) for a in g0]
    impl.clip_grad_value_(sym, 0.75)  # the symmetric form, as torch's clip_grad_value_
    for got, a in zip(sym, g0):
        assert np.array_equal(to_numpy(got), np.clip(a, -0.75, 0.75), equal_nan=True)
    one = [to_device(device, np.array([-5.0, 5.0]))]
    impl.clip_grad_value_(one, (0.5, math.inf))
    assert np.array_equal(to_numpy(one[0]), [0.5, 5.0])
    for bad, err, msg in [((2.0, 1.0), ValueError, r"with a <= b, got \(2.0, 1.0\)"),
                          ((0.0, float("nan")), ValueError, r"with a <= b"),
                          ((1.0,), ValueError, r"a number >= 0 or a pair"),
                          (("a", 1.0), TypeError, r"clip_value\[0\]: expected a real number")]:
        with pytest.raises(err, match=msg):
            impl.clip_grad_value_(grads, bad)


def test_optim_clip_grad_value_interval():
    g = np.array([-3.0, 0.5, 3.0])
    optim.clip_grad_value(g, (-2.0, 0.25))
    assert np.array_equal(g, [-2.0, 0.25, 0.25])


# ---- parameter_groups' weight decay inherits the optimizer's


def test_parameter_groups_inherit_the_optimizers_weight_decay():
    model = nn.MLP([3, 4, 2], seed=0)
    opt = optim.Adam(model.parameter_groups(), lr=0.1, weight_decay=0.5)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.5, 0.0]  # the weights', the biases'
    w = model.named_parameters()[0][1]
    w0, grad = w.copy(), np.full_like(w, 0.25)
    model.params.grad.fill(0)
    model.params.grad_of("0.weight")[...] = grad
    opt.step()
    # torch.optim.Adam's first step with (coupled) weight decay: g' = g + wd * p;
    # m = (1 - b1) g', v = (1 - b2) g'^2, bias-corrected m / sqrt(v) = g' / |g'|
    gd = grad.astype(np.float64) + 0.5 * w0
    assert_close(w, (w0 - 0.1 * gd / (np.abs(gd) + 1e-8)).astype(np.float32))
    # an explicit value still sets the group's own
    assert [g["weight_decay"] for g in optim.Adam(model.parameter_groups(0.01), weight_decay=0.5).param_groups] == \
        [0.01, 0.0]
    assert [g["weight_decay"] for g in optim.AdamW(model.parameter_groups()).param_groups] == [1e-2, 0.0]
