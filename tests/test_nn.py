"""fusednn.nn: layers against NumPy formulas and the references, gradients by finite
differences (fusednn.gradcheck), the flat parameter layout, modes, state and errors.

Forward passes, training steps, state and input errors run on every device (a model moved to
it, inputs copied to it); the finite-difference gradient checks run the CPU kernels in float64."""

import numpy as np
import pytest

import fusednn
from conftest import HAVE_CUDA, LayerWithForward, assert_close, to_device, to_numpy, wider
from fusednn import nn, optim
from fusednn import reference as ref
from fusednn.gradcheck import gradcheck


def _x(shape, seed=0, dtype=np.float64, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


class _FixedStream(nn.Module):
    """Wraps a layer so that every forward draws the same Philox counters (finite differences
    need the same mask in every evaluation)."""

    def __init__(self, layer):
        super().__init__()
        self.add_module("layer", layer)

    def forward(self, x, training=None):
        self.rng.offset = 0
        return self._children["layer"].forward(x, training)

    def backward(self, dy):
        return self._children["layer"].backward(dy)


def _randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for _, p in layer.named_parameters():
        p[...] = rng.standard_normal(p.shape) * 0.5 + (1.0 if p.ndim == 1 else 0.0)
    return layer


# ---- forward against the formulas


@pytest.mark.parametrize("shape", [(1, 5), (7, 1), (33, 17)])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_linear_forward_matches_reference(device, shape, activation):
    n, fan_in = shape
    layer = nn.Linear(fan_in, 9, activation=activation, rng=0)
    x = _x(shape, dtype=np.float32)
    w, b = (to_numpy(a).copy() for a in (layer.p["weight"], layer.p["bias"]))
    layer.to(device)
    y = layer(to_device(device, x))
    assert_close(y, ref.linear(x, w, b, activation), ref.linear(*wider(x, w, b), activation))


def test_activations_match_formulas(device):
    x = np.array([[-3.0, -0.5, 0.0, 0.5, 3.0, -800.0, 800.0]])
    xd = to_device(device, x)
    np.testing.assert_array_equal(to_numpy(nn.ReLU()(xd)), np.maximum(x, 0))
    assert_close(nn.Sigmoid().to(device)(xd), 0.5 * (1 + np.tanh(x / 2)), kind="transcendental")
    assert_close(nn.Tanh().to(device)(xd), np.tanh(x), kind="transcendental")
    np.testing.assert_array_equal(to_numpy(nn.Abs().to(device)(xd)), np.abs(x))
    assert np.isfinite(to_numpy(nn.Sigmoid().to(device)(xd))).all()


def test_weight_norm_linear_starts_equal_to_its_v(device):
    layer = nn.WeightNormLinear(6, 4, rng=3, dtype=np.float64)
    x = _x((5, 6))
    v, b = layer.p["v"].copy(), layer.p["bias"].copy()
    assert_close(layer.to(device)(to_device(device, x)), x @ v.T + b, kind="transcendental")


def test_batchnorm_uses_batch_statistics_in_training_and_running_in_eval(device):
    bn = nn.BatchNorm1d(3, dtype=np.float64).to(device)
    x = _x((16, 3), scale=3.0) + 2.0
    xd = to_device(device, x)
    y = bn(xd, training=True)
    assert_close(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), kind="transcendental")
    assert_close(bn.buffers["running_mean"], 0.1 * x.mean(0), kind="transcendental")
    assert_close(bn.buffers["running_var"], 0.9 + 0.1 * x.var(0, ddof=1), kind="transcendental")
    y_eval = bn(xd, training=False)
    rm, rv = to_numpy(bn.buffers["running_mean"]), to_numpy(bn.buffers["running_var"])
    assert_close(y_eval, (x - rm) / np.sqrt(rv + 1e-5), kind="transcendental")


def test_batchnorm2d_normalizes_per_channel(device):
    bn = nn.BatchNorm2d(3, dtype=np.float64).to(device)
    x = _x((4, 3, 5, 2))
    y = bn(to_device(device, x), training=True)
    mean, var = x.mean(axis=(0, 2, 3), keepdims=True), x.var(axis=(0, 2, 3), keepdims=True)
    assert_close(y, (x - mean) / np.sqrt(var + 1e-5), kind="transcendental")


def test_layer_norm_and_lrn_match_references(device):
    ln = _randomize(nn.LayerNorm(7, dtype=np.float64))
    x = _x((5, 7))
    expect, _, _ = ref.layer_norm(x, ln.p["weight"], ln.p["bias"])
    assert_close(ln.to(device)(to_device(device, x)), expect, kind="transcendental")
    lrn = nn.LocalResponseNorm(3, alpha=0.1).to(device)
    x4 = _x((2, 6, 3, 3))
    assert_close(lrn(to_device(device, x4)), ref.local_response_norm(x4, 3, 0.1, 0.75, 1.0), kind="transcendental")


@pytest.mark.parametrize("mode", ["inverted", "vanilla"])
def test_dropout_modes(device, xp, mode):
    layer = nn.Dropout(0.25, mode=mode).to(device)
    x = xp.ones((64, 64))
    y = to_numpy(layer(x, training=True))
    kept = y != 0
    assert 0.65 < kept.mean() < 0.85
    np.testing.assert_array_equal(y[kept], 1 / 0.75 if mode == "inverted" else 1.0)
    np.testing.assert_array_equal(to_numpy(layer(x, training=False)), 1.0 if mode == "inverted" else 0.75)


def test_dropout_masks_follow_the_model_stream(device):
    a, b = (nn.MLP([8, 16, 4], dropout=0.5, seed=5).to(device) for _ in range(2))
    x = to_device(device, _x((10, 8), dtype=np.float32))
    first = to_numpy(a(x, training=True)).copy()
    np.testing.assert_array_equal(first, to_numpy(b(x, training=True)))
    assert a.rng.offset == 10 * 16
    second = to_numpy(a(x, training=True))  # the next 160 counters: another mask
    assert not np.array_equal(second, first)
    a.rng.offset = b.rng.offset = 0
    np.testing.assert_array_equal(to_numpy(a(x, training=True)), to_numpy(b(x, training=True)))


# ---- gradients by finite differences


@pytest.mark.parametrize("make", [
    lambda: nn.Linear(5, 4, rng=0, dtype=np.float64),
    lambda: nn.Linear(5, 4, activation="relu", rng=0, bias_init=0.1, dtype=np.float64),
    lambda: nn.Linear(5, 4, bias=False, rng=0, dtype=np.float64),
    lambda: nn.WeightNormLinear(5, 4, rng=0, dtype=np.float64),
    lambda: nn.WeightNormLinear(5, 4, activation="relu", rng=0, dtype=np.float64),
    lambda: _FixedStream(nn.DropConnectLinear(5, 4, p=0.3, rng=0, dtype=np.float64)),
    lambda: _FixedStream(nn.DropConnectLinear(5, 4, p=0.3, mode="vanilla", rng=0, dtype=np.float64)),
    lambda: _randomize(nn.BatchNorm1d(5, dtype=np.float64)),
    lambda: _randomize(nn.LayerNorm(5, dtype=np.float64)),
    lambda: nn.ReLU(), lambda: nn.Sigmoid(), lambda: nn.Tanh(), lambda: nn.Abs(),
    lambda: _FixedStream(nn.Dropout(0.4)),
    lambda: _FixedStream(nn.Dropout(0.4, mode="vanilla")),
    lambda: _randomize(nn.BatchNorm1d(5, activation="relu", dtype=np.float64)),
    lambda: _randomize(nn.LayerNorm(5, activation="relu", dtype=np.float64)),
    lambda: _FixedStream(nn.Dropout(0.4, activation="relu")),
    lambda: _FixedStream(nn.Dropout(0.4, mode="vanilla", activation="relu")),
], ids=["linear", "linear-relu", "linear-nobias", "weightnorm", "weightnorm-relu", "dropconnect",
        "dropconnect-vanilla", "batchnorm", "layernorm", "relu", "sigmoid", "tanh", "abs", "dropout",
        "dropout-vanilla", "batchnorm-relu", "layernorm-relu", "dropout-relu", "dropout-vanilla-relu"])
def test_layer_gradients(make):
    x = _x((6, 5), seed=2)
    x[np.abs(x) < 1e-3] = 0.5  # keep finite differences away from the kinks of relu/abs
    assert gradcheck(make(), [x])


def test_batchnorm_eval_and_2d_gradients():
    bn = _randomize(nn.BatchNorm1d(4, dtype=np.float64))
    bn.buffers["running_mean"][...] = [0.3, -0.2, 0.1, 0.0]
    bn.buffers["running_var"][...] = [0.5, 1.0, 2.0, 3.0]
    before = [b.copy() for b in (bn.buffers["running_mean"], bn.buffers["running_var"])]
    x = _x((5, 4))
    # (gradcheck runs a layer's forward in training mode)
    assert gradcheck(LayerWithForward(bn, lambda layer, x: layer.forward(x, training=False)), [x])
    # The running statistics were used and left alone: y = (x - mean) / sqrt(var + eps) gamma + beta.
    for b, kept in zip((bn.buffers["running_mean"], bn.buffers["running_var"]), before):
        np.testing.assert_array_equal(b, kept)
    want = (x - before[0]) / np.sqrt(before[1] + bn.eps) * bn.p["weight"] + bn.p["bias"]
    assert_close(bn.forward(x, training=False), want)
    assert gradcheck(_randomize(nn.BatchNorm2d(3, dtype=np.float64)), [_x((3, 3, 2, 2))])


def test_lrn_and_flatten_gradients():
    assert gradcheck(nn.LocalResponseNorm(3, alpha=0.5), [_x((2, 5, 2, 2))])
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3, rng=0, dtype=np.float64)).input_gradient()
    assert gradcheck(model, [_x((2, 3, 2, 2))])


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_mlp_gradients(norm, activation):
    model = _FixedStream(nn.MLP([4, 6, 5, 3], activation=activation, norm=norm, dropout=0.2, seed=1,
                                bias_init=0.05, dtype=np.float64).input_gradient())
    assert gradcheck(model, [_x((7, 4), seed=3)])


def test_gradcheck_catches_a_wrong_layer_gradient():
    layer = nn.Linear(3, 2, rng=0, dtype=np.float64)
    original = layer.backward
    layer.backward = lambda dy: original(dy) * 1.01
    with pytest.raises(AssertionError):
        gradcheck(layer, [_x((4, 3))])


# ---- structure, flat layout, state


def _layout(model):
    return [type(m).__name__ + (f"({m.activation})" if getattr(m, "activation", None) else "") for m in model]


def test_mlp_layout_norm_before_activation_dropout_after_not_after_last():
    model = nn.MLP([4, 8, 8, 2], norm="batch", dropout=0.5, input_dropout=0.1, activation="tanh")
    assert _layout(model) == ["Dropout", "Linear", "BatchNorm1d", "Tanh", "Dropout", "Linear", "BatchNorm1d", "Tanh",
                              "Dropout", "Linear"]


def test_mlp_fuses_relu_into_the_dropout_else_the_norm_else_the_linear():
    """relu then dropout is dropout(relu(.)); norm then relu is the norm's fused ReLU; without
    either the Linear's epilogue applies it."""
    assert _layout(nn.MLP([4, 8, 8, 2], norm="batch", dropout=0.5, input_dropout=0.1)) == [
        "Dropout", "Linear", "BatchNorm1d", "Dropout(relu)", "Linear", "BatchNorm1d", "Dropout(relu)", "Linear"]
    assert _layout(nn.MLP([4, 8, 2], norm="layer")) == ["Linear", "LayerNorm(relu)", "Linear"]
    assert _layout(nn.MLP([4, 8, 2], dropout=0.2)) == ["Linear", "Dropout(relu)", "Linear"]
    assert _layout(nn.MLP([4, 8, 2])) == ["Linear(relu)", "Linear"]


@pytest.mark.parametrize("norm", [None, "batch", "layer"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_mlp_with_fused_relu_equals_the_unfused_layers(device, norm, dropout):
    """The fused MLP computes what Linear, norm, ReLU and Dropout layers in sequence compute."""
    fused = nn.MLP([6, 9, 7, 3], norm=norm, dropout=dropout, seed=4, dtype=np.float64)
    layers = []
    for m in fused:
        if isinstance(m, nn.Linear) and m.activation:
            layers += [nn.Linear(m.in_features, m.out_features, dtype=np.float64), nn.ReLU()]
        elif isinstance(m, nn.BatchNorm1d):
            layers += [nn.BatchNorm1d(m.num_features, dtype=np.float64)] + ([nn.ReLU()] if m.activation else [])
        elif isinstance(m, nn.LayerNorm):
            layers += [nn.LayerNorm(m.normalized_shape, dtype=np.float64)] + ([nn.ReLU()] if m.activation else [])
        elif isinstance(m, nn.Dropout):
            layers += ([nn.ReLU()] if m.activation else []) + [nn.Dropout(m.p_drop)]
        else:
            layers.append(nn.Linear(m.in_features, m.out_features, bias=m.has_bias, dtype=np.float64))
    plain = nn.Sequential(*layers).seed(4)
    with_state = [[m for m in model if m.p or m.buffers] for model in (fused, plain)]
    for src, dst in zip(*with_state):
        dst.load_state_dict(src.state_dict())
    fused.to(device)
    plain.to(device)
    x = to_device(device, _x((11, 6), seed=5))
    assert_close(fused(x, training=True), to_numpy(plain(x, training=True)), kind="transcendental")
    dy = to_device(device, _x((11, 3), seed=6))
    plain.backward(dy)
    fused.backward(dy)
    for (name, g1), (_, g2) in zip(fused.named_gradients(), plain.named_gradients()):
        assert_close(g1, to_numpy(g2), kind="transcendental", err_msg=name)


def test_parameters_are_views_of_one_flat_buffer_and_groups_are_single_spans():
    model = nn.MLP([5, 7, 6, 3], norm="layer")
    flat = model.params
    assert flat.data.size == sum(p.size for p in model.parameters())
    for (_, p), (_, g) in zip(model.named_parameters(), model.named_gradients()):
        assert p.base is flat.data and g.base is flat.grad
    groups = model.parameter_groups(weight_decay=0.1)
    assert [p.ndim for p in groups[0]["params"].params] == [2, 2, 2]
    assert all(p.ndim == 1 for p in groups[1]["params"].params)
    assert [len(g["params"].spans) for g in groups] == [1, 1]  # each group: one span of each flat buffer
    (data, grad, first, stop), = groups[0]["params"].spans
    assert (data.base is flat.data and grad.base is flat.grad and (first, stop) == (0, 3)
            and data.size == sum(p.size for p in groups[0]["params"].params))
    opt = optim.AdamW(groups)
    assert [len(st["spans"]) for st in opt._groups_state] == [1, 1]
    span = opt._groups_state[0]["spans"][0]
    assert span.param is data and span.grad is grad  # handed over, not rediscovered


def test_initial_values_survive_flattening():
    layer = nn.Linear(4, 3, rng=7, bias_init=0.01)
    before = layer.p["weight"].copy()
    model = nn.Sequential(layer)
    model.params  # noqa: B018
    np.testing.assert_array_equal(layer.p["weight"], before)
    np.testing.assert_array_equal(layer.p["bias"], np.float32(0.01))
    assert np.shares_memory(layer.p["weight"], model.params.data)


def test_training_step_updates_the_layers_through_the_flat_buffer(device):
    model = nn.MLP([3, 4, 2], seed=0).to(device)
    opt = optim.SGD(model.params, lr=0.1)
    x, y = to_device(device, _x((8, 3), dtype=np.float32), np.arange(8) % 2)
    from fusednn import ops
    before = model.state_dict()
    logits = model(x, training=True)
    _, dlogits = ops.softmax_cross_entropy_with_grad(logits, y)
    model.backward(dlogits)
    opt.step()
    after = model.state_dict()
    for name in before:
        expected = before[name] - np.float32(0.1) * to_numpy(model.params.grad_of(name))
        assert_close(after[name], expected, err_msg=name)


def test_state_dict_round_trip_and_errors(device):
    a = nn.MLP([4, 5, 3], norm="batch", seed=1).to(device)
    a(to_device(device, _x((6, 4), dtype=np.float32)), training=True)  # moves the running statistics
    b = nn.MLP([4, 5, 3], norm="batch", seed=2).to(device)
    b.load_state_dict(a.state_dict())
    x = to_device(device, _x((3, 4), dtype=np.float32))
    np.testing.assert_array_equal(to_numpy(a(x, training=False)), to_numpy(b(x, training=False)))
    assert "1.running_mean" in a.state_dict()
    bad = a.state_dict()
    bad["0.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="0.weight"):
        b.load_state_dict(bad)
    del bad["0.weight"]
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict(bad)


def test_modes_propagate():
    model = nn.MLP([2, 3, 2], dropout=0.5)
    model.eval()
    assert all(not m.training for _, m in model.named_modules())
    model.train()
    assert all(m.training for _, m in model.named_modules())


def test_same_seed_same_model_different_seed_different(device):
    x = to_device(device, _x((4, 6), dtype=np.float32))

    def out(seed):
        return to_numpy(nn.MLP([6, 5, 2], seed=seed).to(device)(x))

    np.testing.assert_array_equal(out(3), out(3))
    assert not np.array_equal(out(3), out(4))


# ---- errors


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)
    with pytest.raises(ValueError, match="activation"):
        nn.Linear(2, 3, activation="gelu")
    with pytest.raises(ValueError, match="init"):
        nn.Linear(2, 3, init="zeros?")
    with pytest.raises(ValueError, match="norm"):
        nn.MLP([2, 3], norm="group")
    with pytest.raises(ValueError, match="sizes"):
        nn.MLP([2])
    with pytest.raises(ValueError, match="p"):
        nn.Dropout(1.0)
    with pytest.raises(ValueError, match="mode"):
        nn.Dropout(0.5, mode="alpha")
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 3, dtype=np.int32)


@pytest.mark.skipif(HAVE_CUDA, reason="CuPy and the CUDA module are present here")
def test_moving_to_cuda_without_cupy_is_a_clear_error():
    with pytest.raises(ValueError, match="device"):
        nn.MLP([2, 3]).to("cuda")


def test_bad_inputs_raise_clear_errors(device, xp):
    layer = nn.Linear(4, 3).to(device)
    with pytest.raises(ValueError, match=r"x: expected shape \(N, 4"):
        layer(xp.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        layer(xp.zeros((2, 4), np.float64))
    with pytest.raises(TypeError, match="numpy"):
        layer([[1.0, 2.0, 3.0, 4.0]])
    with pytest.raises(RuntimeError, match="training forward"):
        nn.Linear(4, 3).to(device).backward(xp.zeros((2, 3), np.float32))
    with pytest.raises(RuntimeError, match="training forward"):
        nn.Dropout(0.5).to(device).backward(xp.zeros(3))
    if device == "cuda":
        with pytest.raises(TypeError, match=r"x: expected a cupy.ndarray \(the layer is on 'cuda'\)"):
            layer(np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("layer", ["linear", "linear_relu", "batch_norm", "batch_norm_relu", "dropout",
                                   "dropout_relu"])
def test_a_bad_gradient_in_backward_is_a_clear_error(device, xp, layer):
    """The layers' training path calls the compiled kernels directly: a gradient that is not an
    array of the layer's device, or of another shape or dtype than the forward's output, still
    raises an error naming dy (Dropout's regenerates its mask by element index, so a dy of
    another shape would silently get other masks)."""
    make = {"linear": lambda: nn.Linear(3, 3), "linear_relu": lambda: nn.Linear(3, 3, activation="relu"),
            "batch_norm": lambda: nn.BatchNorm1d(3), "batch_norm_relu": lambda: nn.BatchNorm1d(3, activation="relu"),
            "dropout": lambda: nn.Dropout(0.5), "dropout_relu": lambda: nn.Dropout(0.5, activation="relu")}
    module = make[layer]().to(device)
    module.forward(to_device(device, np.ones((4, 3), np.float32)), True)
    with pytest.raises(TypeError, match=r"^dy: expected a numpy.ndarray or cupy.ndarray, got builtins.list"):
        module.backward([[0.0] * 3] * 4)
    with pytest.raises(ValueError, match=r"^dy: expected shape"):
        module.backward(xp.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match=r"^dy: expected dtype float32"):
        module.backward(xp.zeros((4, 3), np.float64))
    assert module.backward(xp.ones((4, 3), np.float32)).shape == (4, 3)


def test_moving_to_the_cpu_is_a_no_op_and_state_is_numpy():
    model = nn.MLP([3, 4, 2], norm="batch")
    flat = model.params
    assert model.to("cpu") is model and model.params is flat
    assert all(type(v) is np.ndarray for v in model.state_dict().values())
    with pytest.raises(ValueError, match="device"):
        model.to("tpu")


@pytest.mark.parametrize("bad", ["shape", "dtype"])
def test_a_state_that_does_not_fit_leaves_the_model_unchanged(device, bad):
    """Once the parameters before the mismatched one were overwritten (issue 13 item 7)."""
    model = nn.MLP([4, 5, 3], norm="batch", seed=1).to(device)
    before = model.state_dict()
    state = nn.MLP([4, 5, 3], norm="batch", seed=2).state_dict()
    last = list(state)[-1]
    state[last] = np.zeros((7,), np.float32) if bad == "shape" else np.array(["x"] * state[last].size).reshape(
        state[last].shape)
    with pytest.raises(ValueError if bad == "shape" else TypeError, match=last):
        model.load_state_dict(state)
    after = model.state_dict()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)


def test_flat_groups_hand_over_spans_and_check_their_names():
    fp = fusednn.FlatParameters({"a": (2, 3), "b": 4, "c": (1, 5)})
    g = fp.group(["b", "c", "a"])
    assert g.names == ["b", "c", "a"] and [p.shape for p in g.params] == [(4,), (1, 5), (2, 3)]
    assert [(d.size, first, stop) for d, _, first, stop in g.spans] == [(9, 0, 2), (6, 2, 3)]
    fp.data[...] = np.arange(15)
    np.testing.assert_array_equal(g.spans[0][0], np.arange(6, 15))
    g.spans[1][1][...] = 7  # the gradient span of "a" is fp.grad_of("a")
    np.testing.assert_array_equal(fp.grad_of("a"), 7)
    assert fp.group().names == ["a", "b", "c"] and len(fp.group().spans) == 1
    assert fp.slice_of("b") == slice(6, 10)
    with pytest.raises(KeyError, match="no parameter 'd'"):
        fp.group(["a", "d"])
    with pytest.raises(ValueError, match="more than once"):
        fp.group(["a", "a"])


def test_a_training_forward_releases_the_activations_of_modules_added_later():
    """release_activations walks a plan of the tree made once; adding a module anywhere in the
    tree makes it anew, so the new module's kept arrays are dropped too."""
    rng = np.random.default_rng(3)
    inner = nn.Sequential(nn.ReLU(), nn.Linear(5, 4, rng=rng))
    model = nn.Sequential(nn.Linear(6, 5, rng=rng), inner)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    model.forward(x, training=True)
    model.backward(np.ones((3, 4), np.float32))
    late = inner.add_module("2", nn.Dropout(0.5))
    model.forward(x, training=True)
    assert late._offset is not None
    model.release_activations()
    assert late._offset is None and inner[0]._cache is None and inner[1]._cache is None and model[0]._cache is None
    with pytest.raises(RuntimeError, match="no training forward"):
        model.backward(np.ones((3, 4), np.float32))


@pytest.mark.parametrize("shape", [(2, 3), [2, 3], np.array([2, 3]), (np.int64(2), 3)],
                         ids=["tuple", "list", "ndarray", "numpy int"])
def test_reusable_buffers_take_any_sequence_as_the_shape(shape):
    """ReusableBuffers.get normalizes a shape that is not a tuple before comparing it with the
    kept arrays' (a NumPy array as the shape once raised on the second call): the free array is
    handed back again."""
    from fusednn.nn.buffers import ReusableBuffers
    b = ReusableBuffers()
    first = b.get("y", shape, np.float32)
    address = first.ctypes.data
    assert first.shape == (2, 3) and first.dtype == np.float32
    del first
    again = b.get("y", shape, np.float32)
    assert again.shape == (2, 3) and again.ctypes.data == address
