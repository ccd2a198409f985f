"""Recurrent layers (fusednn.nn.LSTM / GRU, Embedding, LastStep, EveryStep, AsSequence), the
sequence data sets, and training them through fit (clipping by norm) and the CLI."""

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, LayerWithForward, assert_close, to_device, to_numpy

import fusednn
from fusednn import data, nn, reference
from fusednn.nn.losses import MSELoss, SoftmaxCrossEntropy
from fusednn.optim import Adam


def _layer(kind, *args, **kw):
    return (nn.LSTM if kind == "lstm" else nn.GRU)(*args, **kw)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("batch_first", [True, False])
def test_stack_matches_reference_layers(device, kind, batch_first):
    # Two layers with every kind of dropout: the layer chains the reference ops with the same
    # (seed, offset) per layer as the model's RNG hands out.
    m = _layer(kind, 3, 5, num_layers=2, batch_first=batch_first, input_dropout=0.2, dropout=0.3,
               recurrent_dropout=0.25, weight_drop=0.2, layer_norm=True, rng=1, dtype=np.float64).seed(7, 100)
    m.to(device)
    x = np.random.default_rng(2).standard_normal((4, 6, 3))  # (B, T, I) or (T, B, I)
    dy = np.random.default_rng(3).standard_normal((4, 6, 5))
    y = m.forward(to_device(device, x))
    dx = m.backward(to_device(device, dy))
    seq = x.transpose(1, 0, 2) if batch_first else x
    d = dy.transpose(1, 0, 2) if batch_first else dy
    p = {k: to_numpy(v) for k, v in m.p.items()}
    fwd = reference.lstm_forward if kind == "lstm" else reference.gru_forward
    caches = []
    for k in range(2):
        args = (seq, None) + ((None,) if kind == "lstm" else ()) + (
            p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], p[f"bias_ih_l{k}"], p[f"bias_hh_l{k}"])
        out = fwd(*args, ln_weight=p[f"ln_weight_l{k}"], ln_bias=p[f"ln_bias_l{k}"], dropout=0.2 if k == 0 else 0.3,
                  recurrent_dropout=0.25, weight_drop=0.2, seed=7, offset=100 + 3 * k)
        seq, caches = out[0], caches + [out[-1]]
    assert_close(y, seq.transpose(1, 0, 2) if batch_first else seq, kind="transcendental")
    for k in (1, 0):
        grads = (reference.lstm_backward(d, None, None, caches[k]) if kind == "lstm"
                 else reference.gru_backward(d, None, caches[k]))
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_weight", "ln_bias"):
            assert_close(m.g[f"{name}_l{k}"], grads[name], kind="transcendental", err_msg=f"{name}_l{k}")
        d = grads["x"]
    assert_close(dx, d.transpose(1, 0, 2) if batch_first else d, kind="transcendental")


def _reseeded(layer, x):
    """The layer's training forward with the same dropout masks every time (gradcheck perturbs
    and reruns)."""
    layer.seed(3)
    return layer.forward(x, True)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_layer_gradcheck(kind):
    m = _layer(kind, 2, 3, num_layers=2, batch_first=True, dropout=0.3, recurrent_dropout=0.3, weight_drop=0.3,
               layer_norm=True, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 2))
    fusednn.gradcheck(LayerWithForward(m, _reseeded), x, rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


def test_naive_mode_layer_and_eval():
    m = nn.LSTM(3, 4, dropout_mode="naive", input_dropout=0.5, rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    y_train = m.forward(x)
    y_eval = m.eval().forward(x)
    assert not np.allclose(y_train, y_eval)
    plain = nn.LSTM(3, 4, rng=0, dtype=np.float64)
    assert np.array_equal(y_eval, plain.eval().forward(x))


# ---- initialization ----

def test_default_init_orthogonal_and_forget_bias():
    m = nn.LSTM(5, 6, num_layers=2, rng=0)
    H = 6
    for k in range(2):
        w = m.p[f"weight_hh_l{k}"]
        for g in range(4):
            block = w[g * H:(g + 1) * H]
            assert_close(block @ block.T, np.eye(H, dtype=np.float32), kind="transcendental")
        b = m.p[f"bias_ih_l{k}"]
        assert np.all(b[H:2 * H] == 1.0) and np.all(b[:H] == 0) and np.all(b[2 * H:] == 0)
        assert np.all(m.p[f"bias_hh_l{k}"] == 0)
    ln = nn.LSTM(5, 6, layer_norm=True, forget_bias=2.0, rng=0)
    assert np.all(ln.p["ln_bias_l0"][H:2 * H] == 2.0) and np.all(ln.p["bias_ih_l0"] == 0)
    assert np.all(ln.p["ln_weight_l0"] == 1)
    assert np.all(nn.LSTM(5, 6, forget_bias=0.0, rng=0).p["bias_ih_l0"] == 0)


def test_torch_init_by_name():
    m = nn.GRU(5, 16, init="torch", rng=0)
    bound = 1 / 4
    for name, p in m.named_parameters():
        assert np.abs(p).max() <= bound and np.abs(p).max() > 0.8 * bound, name
    t = nn.LSTM(5, 16, init="torch", rng=0)
    assert not np.all(t.p["bias_ih_l0"][16:32] == 1.0)  # torch's init has no forget bias unless asked


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_torch_multilayer_batch_first(kind):
    torch = pytest.importorskip("torch")
    m = _layer(kind, 3, 4, num_layers=2, batch_first=True, rng=0, dtype=np.float64)
    t = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(3, 4, num_layers=2, batch_first=True).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            getattr(t, name).copy_(torch.from_numpy(p))
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    y_t, _ = t(torch.from_numpy(x))
    assert_close(m.forward(x), y_t.detach().numpy(), kind="transcendental")


# ---- Embedding, LastStep, EveryStep, AsSequence ----

def test_embedding():
    e = nn.Embedding(5, 3, rng=0, dtype=np.float64)
    idx = np.array([[0, 4, 4], [2, 0, 1]])
    y = e.forward(idx)
    assert y.shape == (2, 3, 3)
    assert np.array_equal(y[0, 1], e.p["weight"][4])
    dy = np.random.default_rng(0).standard_normal((2, 3, 3))
    assert e.backward(dy) is None
    expected = np.zeros((5, 3))
    for (i, j), row in np.ndenumerate(idx):
        expected[row] += dy[i, j]
    assert_close(e.g["weight"], expected)
    with pytest.raises(ValueError, match=r"idx: expected indices in \[0, 5\)"):
        e.forward(np.array([5]))
    with pytest.raises(TypeError, match="idx: expected an integer array"):
        e.forward(np.array([0.0]))


def test_last_step_every_step_as_sequence():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    last = nn.LastStep()
    assert np.array_equal(last.forward(x), x[:, -1])
    dx = last.backward(np.ones((2, 4), np.float32))
    assert dx.shape == x.shape and dx[:, -1].sum() == 8 and dx[:, :-1].sum() == 0
    tm = nn.LastStep(batch_first=False)
    assert np.array_equal(tm.forward(x), x[-1])
    every = nn.EveryStep()
    rows = every.forward(x)
    assert rows.shape == (6, 4) and np.array_equal(rows[4], x[1, 1])
    assert every.backward(rows).shape == x.shape
    seq = nn.AsSequence(3, 4)
    assert np.array_equal(seq.forward(x.reshape(2, 12)), x)
    assert seq.backward(x).shape == (2, 12)
    with pytest.raises(ValueError, match="steps \\* features = 12"):
        seq.forward(np.zeros((2, 10), np.float32))


def test_sequence_model_with_embedding_and_every_step_head():
    model = nn.Sequential(nn.Embedding(7, 4, rng=0), nn.GRU(4, 5, batch_first=True, rng=1), nn.EveryStep(),
                          nn.Linear(5, 7, rng=2))
    idx = np.random.default_rng(0).integers(0, 7, (3, 6))
    logits = model.forward(idx)
    assert logits.shape == (18, 7)
    loss = SoftmaxCrossEntropy()
    _, dlogits = loss.value_and_grad(logits, idx.reshape(-1))
    model.backward(dlogits)
    assert np.abs(model.params.grad).max() > 0


# ---- arguments ----

def test_bad_layer_arguments():
    with pytest.raises(ValueError, match="dropout_mode"):
        nn.LSTM(2, 3, dropout_mode="gal")
    with pytest.raises(ValueError, match="naive dropout never drops"):
        nn.LSTM(2, 3, dropout_mode="naive", recurrent_dropout=0.1)
    with pytest.raises(ValueError, match="dropout_mode: None means no dropout"):
        nn.GRU(2, 3, dropout_mode=None, dropout=0.1)
    with pytest.raises(ValueError, match="forget_bias: only an LSTM"):
        nn.GRU(2, 3, forget_bias=1.0)
    with pytest.raises(ValueError, match="init"):
        nn.LSTM(2, 3, init="xavier")
    with pytest.raises(ValueError, match="hidden_size"):
        nn.LSTM(2, 0)
    with pytest.raises(ValueError, match="recurrent_dropout"):
        nn.LSTM(2, 3, recurrent_dropout=1.0)
    with pytest.raises(TypeError, match="batch_first"):
        nn.LSTM(2, 3, batch_first=1)
    m = nn.LSTM(2, 3)
    with pytest.raises(ValueError, match="x: expected 2 features"):
        m.forward(np.zeros((4, 1, 5), np.float32))
    with pytest.raises(ValueError, match="3-D"):
        m.forward(np.zeros((4, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        m.forward(np.zeros((4, 1, 2), np.float64))
    with pytest.raises(RuntimeError, match="no training forward"):
        nn.GRU(2, 3).backward(np.zeros((1, 1, 3), np.float32))


# ---- data ----

def test_sequence_data():
    x, y = data.sequential_digits("train")
    x_flat, y_flat = data.digits("train")
    assert x.shape == (len(x_flat), 8, 8) and x.dtype == np.float32 and np.array_equal(y, y_flat)
    assert np.array_equal(x[5, 3], x_flat[5, 24:32] / 16)
    x, y = data.adding_problem(50, 9, seed=1)
    assert x.shape == (50, 9, 2) and y.shape == (50, 1)
    marks = x[:, :, 1]
    assert np.all(marks.sum(axis=1) == 2)
    assert np.all(marks[:, :4].sum(axis=1) == 1) and np.all(marks[:, 4:].sum(axis=1) == 1)
    assert_close(y[:, 0], (x[:, :, 0] * marks).sum(axis=1))
    assert np.array_equal(data.adding_problem(50, 9, seed=1)[0], x)
    with pytest.raises(ValueError, match="steps: expected an integer >= 2"):
        data.adding_problem(5, 1)
    with pytest.raises(TypeError, match="n"):
        data.adding_problem(5.0, 4)


# ---- training ----

def test_fit_with_clipping_learns_adding_problem_short():
    from fusednn.train import Callback, fit
    x, y = data.adding_problem(512, 10, seed=0)
    model = nn.Sequential(nn.LSTM(2, 16, batch_first=True, rng=0), nn.LastStep(), nn.Linear(16, 1, rng=1))
    opt = Adam(model.parameter_groups(), lr=0.01, max_grad_norm=0.5)
    norms = []

    class RecordNorms(Callback):  # the gradient norm of every step, before clipping
        def on_batch_end(self, trainer, batch, logs):
            norms.append(opt.last_grad_norm)
    history = fit(model, MSELoss(), opt, (x, y), epochs=12, batch_size=32, verbose=0, metrics=(),
                  callbacks=[RecordNorms()])
    losses = history.history["loss"] if hasattr(history, "history") else history["loss"]
    assert losses[-1] < 0.5 * losses[0]
    assert len(norms) == 12 * 16 and np.all(np.isfinite(norms))
    assert max(norms) > 0.5  # the clipping bound was reached: some steps were scaled down


def test_cli_models_build_recurrent_nets():
    from argparse import Namespace

    from fusednn.cli import models
    args = Namespace(model="gru", hidden=[16], dropout=0.1, input_dropout=0.0, seed=0, dataset="digits")
    model = models.build(args, 64, 10, (1, 8, 8))
    x = data.digits("train")[0][:5]
    out = model.forward(x)
    assert out.shape == (5, 10)
    assert model.backward(np.ones_like(out)) is None  # the first layer skips its input gradient
    assert np.abs(model.params.grad).max() > 0
    from fusednn.cli._args import UsageError
    with pytest.raises(UsageError, match="--model lstm"):
        models.build(Namespace(**{**vars(args), "model": "lstm", "dataset": "moons"}), 2, 2, None)
