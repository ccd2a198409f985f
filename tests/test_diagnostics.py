"""fusednn.diagnostics: activation statistics, gradient norms, loss landscapes, MC dropout, and that
none of them changes the model."""

import numpy as np
import pytest

from conftest import assert_close
from fusednn import diagnostics, nn
from fusednn.nn.layers import Dropout, Linear, ReLU, Sequential, Tanh


def _data(n=32, features=5, classes=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, features)).astype(dtype), rng.integers(0, classes, n)


def _two_layer(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(Linear(5, 7, rng=rng, dtype=dtype), ReLU(), Linear(7, 3, rng=rng, dtype=dtype), Tanh())


def _snapshot(model):
    """Everything diagnostics promise to leave alone, as plain copies."""
    model.params  # noqa: B018
    return {"state": {k: v.copy() for k, v in model.state_dict().items()},
            "grads": {k: np.array(g) for k, g in model.named_gradients()},
            "rng": (model.rng.seed, model.rng.offset),
            "modes": [m.training for _, m in model.named_modules()],
            "attrs": [sorted(vars(m)) for _, m in model.named_modules()]}


def _assert_unchanged(model, before):
    after = _snapshot(model)
    assert after["state"].keys() == before["state"].keys()
    for k in before["state"]:
        assert np.array_equal(after["state"][k], before["state"][k]), k
    for k in before["grads"]:
        assert np.array_equal(after["grads"][k], before["grads"][k]), k
    assert after["rng"] == before["rng"]
    assert after["modes"] == before["modes"]
    assert after["attrs"] == before["attrs"]  # no instance-level forward left behind


# ---- activation statistics


def test_activation_statistics_match_a_manual_forward():
    x, _ = _data()
    model = _two_layer()
    w1, b1 = model[0].p["weight"], model[0].p["bias"]
    w2, b2 = model[2].p["weight"], model[2].p["bias"]
    a1 = x @ w1.T + b1  # the layers' outputs computed with NumPy
    h = np.maximum(a1, 0)
    a2 = h @ w2.T + b2
    expected = [("0", "Linear", a1), ("1", "ReLU", h), ("2", "Linear", a2), ("3", "Tanh", np.tanh(a2))]
    stats = diagnostics.activation_statistics(model, x, bins=8, range=(-3.0, 3.0))
    assert [(s.name, s.layer) for s in stats] == [(n, k) for n, k, _ in expected]
    for s, (_, _, a) in zip(stats, expected):
        assert s.shape == a.shape
        assert_close(np.array([s.mean, s.std, s.min, s.max]), np.array([a.mean(), a.std(), a.min(), a.max()]),
                     kind="trajectory", err_msg=s.name)
        assert s.zero_fraction == np.mean(a == 0)
        counts, edges = np.histogram(a, bins=8, range=(-3.0, 3.0))
        assert np.array_equal(s.histogram, counts) and np.array_equal(s.bin_edges, edges)
    assert 0.2 < stats[1].zero_fraction < 0.8  # the ReLU's zeros are counted


def test_activation_statistics_default_bins_are_each_layers_range():
    x, _ = _data()
    s = diagnostics.activation_statistics(_two_layer(), x)[0]
    assert s.histogram.sum() == s.shape[0] * s.shape[1] and len(s.bin_edges) == 51
    assert s.bin_edges[0] == s.min and s.bin_edges[-1] == s.max


def test_activation_statistics_in_training_mode_leave_running_statistics_and_rng_alone():
    x, _ = _data(dtype=np.float32)
    model = nn.MLP([5, 8, 3], norm="batch", dropout=0.5, seed=1)
    before = _snapshot(model)
    stats = diagnostics.activation_statistics(model, x, training=True)
    by_layer = {s.layer: s for s in stats}
    assert abs(by_layer["BatchNorm1d"].mean) < 1e-5 and by_layer["BatchNorm1d"].std == pytest.approx(1, rel=1e-3)
    assert by_layer["Dropout"].zero_fraction > 0.5  # relu then p = 0.5 of the rest
    _assert_unchanged(model, before)


def test_activation_statistics_reject_bad_arguments():
    x, _ = _data()
    model = _two_layer()
    with pytest.raises(TypeError, match="model"):
        diagnostics.activation_statistics("model", x)
    with pytest.raises(TypeError, match="x"):
        diagnostics.activation_statistics(model, [[1.0] * 5])
    with pytest.raises(ValueError, match="bins"):
        diagnostics.activation_statistics(model, x, bins=0)
    with pytest.raises(ValueError, match="range"):
        diagnostics.activation_statistics(model, x, range=(1.0, 1.0))


# ---- gradient norms


def test_gradient_norms_match_the_models_gradients():
    x, y = _data()
    model = nn.MLP([5, 6, 3], dtype=np.float64, seed=3)
    by_param = diagnostics.gradient_norms(model, x, y, by="parameter")
    by_layer = diagnostics.gradient_norms(model, x, y)
    loss = nn.losses.SoftmaxCrossEntropy()
    _, d_out = loss.value_and_grad(model.forward(x, training=True), y)
    model.backward(d_out)
    grads = dict(model.named_gradients())
    assert list(by_param) == list(grads)
    for name, g in grads.items():
        assert_close(np.array(by_param[name]), np.array(np.linalg.norm(g)), kind="trajectory", err_msg=name)
    assert list(by_layer) == ["0", "1"]  # the ReLU is fused into layer 0
    for layer in by_layer:
        expected = np.sqrt(sum(np.sum(g ** 2) for n, g in grads.items() if n.startswith(layer + ".")))
        assert_close(np.array(by_layer[layer]), np.array(expected), kind="trajectory", err_msg=layer)
    now = diagnostics.gradient_norms(model, by="parameter")  # without data: the gradients held now
    assert all(now[n] == np.linalg.norm(g) for n, g in grads.items())


def test_gradient_norms_restore_the_gradients_and_reject_half_a_batch():
    x, y = _data()
    model = nn.MLP([5, 6, 3], dtype=np.float64)
    model.params.grad[...] = 7.0
    before = _snapshot(model)
    diagnostics.gradient_norms(model, x, y)
    _assert_unchanged(model, before)
    with pytest.raises(TypeError, match="x, target"):
        diagnostics.gradient_norms(model, x)
    with pytest.raises(ValueError, match="by"):
        diagnostics.gradient_norms(model, by="module")


# ---- loss landscapes


def test_landscape_at_zero_is_the_loss_and_at_one_the_end_models():
    x, y = _data(dtype=np.float32)
    model, other = nn.MLP([5, 6, 3], seed=0), nn.MLP([5, 6, 3], seed=1)
    loss = nn.losses.SoftmaxCrossEntropy()
    here, there = loss(model.forward(x, training=False), y), loss(other.forward(x, training=False), y)
    alphas, values = diagnostics.landscape_1d(model, x, y, alphas=[0.0, 0.5])
    assert values[0] == here and values[1] != here
    _, values = diagnostics.landscape_1d(model, x, y, end=other, alphas=[0.0, 1.0])
    assert values[0] == here
    assert_close(np.array(values[1]), np.array(there), kind="transcendental")
    a, b, plane = diagnostics.landscape_2d(model, x, y, alphas=[-0.5, 0.0, 0.5], betas=[0.0, 1.0])
    assert plane.shape == (2, 3) and plane[0, 1] == here


def test_filter_normalized_direction_has_the_filters_norms_and_no_bias_part():
    model = nn.MLP([5, 6, 3], seed=0)
    direction = diagnostics.filter_normalized_direction(model, seed=4)
    assert len(direction) == len(list(model.named_parameters()))
    for (name, p), d in zip(model.named_parameters(), direction):
        assert d.shape == p.shape
        if p.ndim == 1:
            assert not d.any(), name
        else:
            assert_close(np.linalg.norm(d, axis=1), np.linalg.norm(p.astype(np.float64), axis=1),
                         kind="transcendental", err_msg=name)
    names = [n for n, _ in model.named_parameters()]
    bias = dict(model.named_parameters())["0.bias"]
    bias[...] = np.arange(6)
    with_biases = diagnostics.filter_normalized_direction(model, seed=4, ignore_biases=False)
    assert_close(np.array(np.linalg.norm(with_biases[names.index("0.bias")])), np.array(np.linalg.norm(np.arange(6.0))),
                 kind="transcendental")


def test_landscapes_restore_the_parameters_and_the_batch_norm_statistics():
    x, y = _data(dtype=np.float32)
    model = nn.MLP([5, 6, 3], norm="batch", seed=0)
    before = _snapshot(model)
    diagnostics.landscape_1d(model, x, y, alphas=[-1.0, 1.0], training=True)
    diagnostics.landscape_2d(model, x, y, alphas=[-1.0, 1.0], training=True)
    _assert_unchanged(model, before)
    with pytest.raises(TypeError, match="direction"):
        diagnostics.landscape_1d(model, x, y, direction=[np.zeros(3)])
    with pytest.raises(ValueError, match="alphas"):
        diagnostics.landscape_1d(model, x, y, alphas=[])


# ---- MC dropout


def test_mc_dropout_with_p_zero_has_zero_variance_and_the_eval_output():
    x, _ = _data(dtype=np.float32)
    model = Sequential(Linear(5, 8, activation="relu", rng=0), Dropout(0.0), Linear(8, 2, rng=1))
    mean, variance = diagnostics.mc_dropout_predict(model, x, samples=5)
    assert np.array_equal(variance, np.zeros_like(variance))
    assert np.array_equal(mean, model.forward(x, training=False).astype(np.float64))


def test_mc_dropout_varies_is_a_function_of_the_seed_and_restores_the_model():
    x, _ = _data(dtype=np.float32)
    model = nn.MLP([5, 16, 3], dropout=0.5, seed=0)
    before = _snapshot(model)
    mean, variance, samples = diagnostics.mc_dropout_predict(model, x, samples=20, seed=3, return_samples=True)
    assert samples.shape == (20, 32, 3) and np.all(variance >= 0) and variance.max() > 0
    assert np.array_equal(mean, samples.mean(axis=0))
    again, _ = diagnostics.mc_dropout_predict(model, x, samples=20, seed=3)
    assert np.array_equal(mean, again)
    other, _ = diagnostics.mc_dropout_predict(model, x, samples=20, seed=4)
    assert not np.array_equal(mean, other)
    probs, _ = diagnostics.mc_dropout_predict(model, x, samples=4, probabilities=True)
    # the passes' softmax is float32
    assert_close(probs.sum(axis=1).astype(np.float32), np.ones(32, np.float32), kind="transcendental")
    _assert_unchanged(model, before)
    with pytest.raises(ValueError, match="no Dropout"):
        diagnostics.mc_dropout_predict(_two_layer(), x.astype(np.float64))
    with pytest.raises(ValueError, match="samples"):
        diagnostics.mc_dropout_predict(model, x, samples=0)


# ---- the model is unchanged: a pending backward still gives the same gradients


def test_a_backward_pending_before_the_diagnostics_gives_the_same_gradients():
    x, y = _data(dtype=np.float32)
    loss = nn.losses.SoftmaxCrossEntropy()

    def gradients(with_diagnostics):
        model = nn.MLP([5, 8, 3], norm="batch", dropout=0.3, seed=2)
        _, d_out = loss.value_and_grad(model.forward(x, training=True), y)
        if with_diagnostics:
            before = _snapshot(model)
            diagnostics.activation_statistics(model, x)
            diagnostics.activation_statistics(model, x, training=True)
            diagnostics.gradient_norms(model, x, y)
            diagnostics.landscape_1d(model, x, y, alphas=[0.5], training=True)
            diagnostics.mc_dropout_predict(model, x, samples=3)
            _assert_unchanged(model, before)
        model.backward(d_out)
        return model.params.grad.copy(), model.state_dict()

    (plain, plain_state), (probed, probed_state) = gradients(False), gradients(True)
    assert np.array_equal(plain, probed)
    assert all(np.array_equal(plain_state[k], probed_state[k]) for k in plain_state)
