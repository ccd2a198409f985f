"""fusednn.train: fit, evaluate, History, callbacks, and exact resume after SIGKILL.

TinyNet and CrossEntropy are minimal stand-ins with the fusednn.nn model and loss interface
(test_checkpoint.py imports them too)."""

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import fusednn
from conftest import assert_close, requires_cuda, seed_of
from fusednn import checkpoint, ops, optim, train
from fusednn.nn.losses import SoftmaxCrossEntropy
from fusednn.optim import schedules


class _Rng:
    def __init__(self, seed):
        self.seed, self.offset = seed, 0


class TinyNet:
    """linear -> relu -> dropout(p) -> linear on one FlatParameters, plus a buffer ("seen",
    the number of training samples), with the fusednn.nn model interface."""

    def __init__(self, n_in=4, n_hidden=16, n_out=3, p=0.0, seed=0):
        self.params = fusednn.FlatParameters({"w1": (n_hidden, n_in), "b1": n_hidden, "w2": (n_out, n_hidden),
                                              "b2": n_out})
        g = np.random.default_rng(seed)
        self.params["w1"][...] = g.normal(0, math.sqrt(2 / n_in), (n_hidden, n_in))
        self.params["w2"][...] = g.normal(0, math.sqrt(1 / n_hidden), (n_out, n_hidden))
        self.p, self.rng, self.training, self.seen = p, _Rng(seed), True, np.zeros((), np.int64)

    def forward(self, x, training=None):
        training = self.training if training is None else training
        p = self.params
        h = ops.linear(x, p["w1"], p["b1"], "relu")
        hd, offset = h, None
        if training:
            self.seen += len(x)
            if self.p:
                offset = self.rng.offset
                hd = ops.dropout(h, self.p, seed=self.rng.seed, offset=offset)
                self.rng.offset += h.size
        self._cache = (x, h, hd, offset)
        return ops.linear(hd, p["w2"], p["b2"])

    def backward(self, dy):
        x, h, hd, offset = self._cache
        p = self.params
        dhd, p.grad_of("w2")[...], p.grad_of("b2")[...] = ops.linear_backward(dy, hd, p["w2"])
        dh = dhd if offset is None else ops.dropout_backward(dhd, self.p, seed=self.rng.seed, offset=offset)
        dx, p.grad_of("w1")[...], p.grad_of("b1")[...] = ops.linear_backward(dh, x, p["w1"], y=h, activation="relu")
        return dx

    def zero_grad(self):
        self.params.grad.fill(0)

    def train(self):
        self.training = True

    def eval(self):
        self.training = False

    def state_dict(self):
        return {**{n: self.params[n].copy() for n in self.params}, "seen": self.seen.copy()}

    def load_state_dict(self, d):
        for n in self.params:
            self.params[n][...] = d[n]
        self.seen[...] = d["seen"]


class CrossEntropy:
    def __call__(self, out, y):
        return float(ops.softmax_cross_entropy(out, y))

    def value_and_grad(self, out, y):
        loss, d = ops.softmax_cross_entropy_with_grad(out, y)
        return float(loss), d


class MSE:
    def __call__(self, out, y):
        return float(np.mean((out - y) ** 2))

    def value_and_grad(self, out, y):
        return self(out, y), (2 * (out - y) / out.size).astype(out.dtype)


def blobs(n=96, n_in=4, k=3, seed=0):
    """Samples of k well separated Gaussian blobs (the same blobs for every seed)."""
    centers = np.random.default_rng(12345).normal(0, 4, (k, n_in))
    g = np.random.default_rng(seed)
    y = g.integers(0, k, n)
    return (centers[y] + g.normal(0, 1, (n, n_in))).astype(np.float32), y


class Recorder(train.Callback):
    """Records batches (epoch, batch, logs) and the parameters after each epoch."""

    def on_train_begin(self, trainer):
        self.batches, self.params = [], {}

    def on_batch_end(self, trainer, batch, logs):
        self.batches.append((trainer.epoch, batch, dict(logs)))

    def on_epoch_end(self, trainer, epoch, logs):
        self.params[epoch] = trainer.model.params.data.copy()


class KillAt(train.Callback):
    def __init__(self, epoch, batch):
        self.at = (epoch, batch)

    def on_batch_end(self, trainer, batch, logs):
        if (trainer.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


SCHEDULE = schedules.warmup(schedules.cosine(0.02, T_max=40), steps=5)


def resumable_run(ckdir, epochs=6, kill_at=None, model="tiny"):
    """A run with dropout, Adam, a per-iteration schedule, ReduceLROnPlateau (reducing after
    epochs 2, 4 and 6) and EarlyStopping (best epoch: the first with val_accuracy 1), both of
    whose states matter after epoch 3, checkpointing every epoch into ``ckdir`` and resuming
    from it; SIGKILLs itself at ``kill_at = (epoch, batch)``. ``model="mlp"`` trains a
    fusednn.nn.MLP with batch norm and dropout instead of TinyNet."""
    from fusednn import nn
    model = TinyNet(p=0.2, seed=1) if model == "tiny" else nn.MLP([4, 16, 3], norm="batch", dropout=0.2, seed=1)
    opt = optim.Adam(model.params, lr=0.02)
    callbacks = [train.ReduceLROnPlateau("loss", 0.5, patience=0, threshold=10.0, threshold_mode="abs", cooldown=1),
                 train.EarlyStopping("val_accuracy", patience=50)]
    if kill_at is not None:
        callbacks.append(KillAt(*kill_at))
    history = train.fit(model, CrossEntropy(), opt, blobs(), blobs(48, seed=1), epochs=epochs, batch_size=16,
                        schedule=SCHEDULE, callbacks=callbacks,
                        seed=3, progress=False, checkpoint=ckdir, resume=ckdir)
    return model, history


def _quick_fit(model=None, epochs=3, **kw):
    model = model or TinyNet()
    kw.setdefault("progress", False)
    opt = kw.pop("opt", None) or optim.SGD(model.params, lr=0.1)
    return model, train.fit(model, CrossEntropy(), opt, kw.pop("data", None) or blobs(), epochs=epochs, **kw)


def test_loss_decreases_and_accuracy_on_separable_data():
    model = TinyNet()
    h = train.fit(model, CrossEntropy(), optim.Adam(model.params, lr=0.05), blobs(), blobs(48, seed=1), epochs=12,
                  batch_size=16, progress=False)
    assert len(h) == 12 and h.epochs[0]["epoch"] == 1
    assert set(h.epochs[0]) == {"epoch", "loss", "accuracy", "lr", "val_loss", "val_accuracy", "time",
                                "samples_per_s"}
    assert h["loss"][-1] < 0.3 * h["loss"][0]
    assert h["accuracy"][-1] >= 0.95 and h["val_accuracy"][-1] >= 0.9
    assert h.best("val_loss")["val_loss"] == min(h["val_loss"])
    assert h.best("val_accuracy")["val_accuracy"] == max(h["val_accuracy"])
    assert all(t > 0 for t in h["time"]) and all(s > 0 for s in h["samples_per_s"])
    assert train.evaluate(model, blobs(48, seed=1), CrossEntropy(), batch_size=10) == pytest.approx(
        {"loss": h["val_loss"][-1], "accuracy": h["val_accuracy"][-1]})


@pytest.mark.parametrize("batch_size", [30, 1, 7, 100])
def test_batch_counts(batch_size):
    rec = Recorder()
    _quick_fit(epochs=2, data=blobs(30), batch_size=batch_size, callbacks=[rec])
    per_epoch = math.ceil(30 / min(batch_size, 30))
    assert [(e, b) for e, b, _ in rec.batches] == [(e, b) for e in (1, 2) for b in range(per_epoch)]
    sizes = [logs["batch_size"] for e, _, logs in rec.batches if e == 1]
    assert sum(sizes) == 30 and max(sizes) == min(batch_size, 30)


class SpyNet(TinyNet):
    def forward(self, x, training=None):
        if training:
            self.order.extend(x[:, 0].astype(int))
        return super().forward(x, training)


@pytest.mark.parametrize("shuffle", [True, False])
def test_epoch_order(shuffle):
    x, y = blobs(20)
    x[:, 0] = np.arange(20)
    model = SpyNet()
    model.order = []
    _quick_fit(model, epochs=2, data=(x, y), batch_size=6, seed=7, shuffle=shuffle, opt=optim.SGD(model.params, lr=0))
    expected = [np.random.default_rng([7, e]).permutation(20) if shuffle else np.arange(20) for e in (1, 2)]
    np.testing.assert_array_equal(model.order, np.concatenate(expected))


def test_schedule_per_iteration_sets_every_group():
    model, rec = TinyNet(), Recorder()
    p = model.params
    opt = optim.SGD([{"params": p.group(["w1", "w2"])}, {"params": p.group(["b1", "b2"]), "lr": 5.0}], lr=1.0)
    sched = schedules.exponential(0.1, 0.9)
    _, h = _quick_fit(model, epochs=3, batch_size=40, schedule=sched, callbacks=[rec], opt=opt)
    steps = 3 * math.ceil(96 / 40)
    assert [logs["lr"] for _, _, logs in rec.batches] == [sched(t) for t in range(steps)]
    assert [g["lr"] for g in opt.param_groups] == [sched(steps - 1)] * 2
    assert h["lr"] == [sched(t) for t in (2, 5, 8)]


def test_schedule_per_epoch():
    rec = Recorder()
    sched = schedules.step_decay(0.1, step_size=1, gamma=0.5)
    _, h = _quick_fit(epochs=3, batch_size=40, schedule=sched, schedule_unit="epoch", callbacks=[rec])
    assert [logs["lr"] for _, _, logs in rec.batches] == [sched(e) for e in range(3) for _ in range(3)]
    assert h["lr"] == [0.1, 0.05, 0.025]


@pytest.mark.parametrize("patience", [2, 100])
def test_early_stopping_restores_best_weights(patience):
    """A small lr for 3 epochs, then one so large that the validation loss gets worse (two
    validation labels are wrong, so the overconfident model pays for them)."""
    model, rec = TinyNet(), Recorder()
    x, y = blobs(48, seed=1)
    y[:2] = (y[:2] + 1) % 3
    stop = train.EarlyStopping("val_loss", patience=patience)
    h = train.fit(model, CrossEntropy(), optim.SGD(model.params, lr=0.1), blobs(), (x, y), epochs=8, batch_size=16,
                  schedule=schedules.piecewise_constant([3], [0.02, 5.0]), schedule_unit="epoch",
                  callbacks=[rec, stop], progress=False)
    best = h.best("val_loss")["epoch"]
    assert best == 3 == stop.best_epoch
    assert len(h) == (best + patience if patience == 2 else 8)
    np.testing.assert_array_equal(model.params.data, rec.params[best])
    assert not np.array_equal(rec.params[len(h)], rec.params[best])


class Score(train.Callback):
    """Puts a constant "score" into the epoch logs (a metric that never improves)."""

    def on_epoch_end(self, trainer, epoch, logs):
        logs["score"] = 1.0


def test_reduce_lr_on_plateau_without_schedule():
    _, h = _quick_fit(epochs=9, batch_size=96, callbacks=[Score(), train.ReduceLROnPlateau("score", 0.5, patience=2)])
    assert h["lr"] == [0.1] * 4 + [0.05] * 3 + [0.025] * 2


def test_reduce_lr_on_plateau_multiplies_schedule_and_respects_min_lr():
    sched = schedules.exponential(0.1, 0.9)
    plateau = train.ReduceLROnPlateau("score", 0.1, patience=1, min_lr=0.005)
    _, h = _quick_fit(epochs=6, batch_size=96, schedule=sched, schedule_unit="epoch", callbacks=[Score(), plateau])
    expected = [sched(0), sched(1), sched(2), sched(3) * 0.1, sched(4) * 0.1, 0.005]
    assert h["lr"] == pytest.approx(expected, rel=1e-15)


def test_early_stopping_and_plateau_need_the_monitored_key():
    with pytest.raises(KeyError, match="val_loss"):
        _quick_fit(epochs=1, callbacks=[train.EarlyStopping()])


def test_checkpoint_callback_keeps_newest(tmp_path):
    _quick_fit(epochs=6, batch_size=48, callbacks=[train.Checkpoint(tmp_path / "a", keep=3)])
    assert sorted(os.listdir(tmp_path / "a")) == ["epoch-0004.npz", "epoch-0005.npz", "epoch-0006.npz"]
    _quick_fit(epochs=5, batch_size=48, callbacks=[train.Checkpoint(tmp_path / "b", every=2, keep=None)])
    assert sorted(os.listdir(tmp_path / "b")) == ["epoch-0002.npz", "epoch-0004.npz", "epoch-0005.npz"]
    model, _ = _quick_fit(epochs=2, batch_size=48, checkpoint=tmp_path / "c.npz")
    ck = checkpoint.load(tmp_path / "c.npz")
    assert (ck.epoch, ck.step) == (2, 4) and not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
    np.testing.assert_array_equal(ck.model["w1"], model.params["w1"])


def _final_checkpoint_arrays(ckdir):
    z = np.load(checkpoint.latest(ckdir), allow_pickle=False)
    return {k: z[k] for k in z.files if k != "meta"}


def test_resume_in_process_is_exact(tmp_path):
    full, h_full = resumable_run(tmp_path / "full")
    part, h_part = resumable_run(tmp_path / "part", epochs=3)
    assert len(h_part) == 3
    again, h_again = resumable_run(tmp_path / "part")
    np.testing.assert_array_equal(again.params.data, full.params.data)
    assert again.rng.offset == full.rng.offset > 0
    assert h_again["loss"] == h_full["loss"] and h_again["lr"] == h_full["lr"]
    scales = [1, 1, .5, .5, .25, .25]
    assert h_full["lr"] == pytest.approx([SCHEDULE(6 * e - 1) * f for e, f in zip(range(1, 7), scales)], rel=1e-15)
    stop = checkpoint.load(checkpoint.latest(tmp_path / "full")).extra["trainer"]["callbacks"][1][1]
    assert stop["best_epoch"] <= 3
    np.testing.assert_array_equal(full.params["w1"], stop["best_state"]["w1"])
    a, b = _final_checkpoint_arrays(tmp_path / "full"), _final_checkpoint_arrays(tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_train import resumable_run
model, history = resumable_run(sys.argv[1], kill_at=json.loads(sys.argv[2]), model=sys.argv[4])
np.save(sys.argv[3], model.params.data)
"""


@pytest.mark.parametrize("model", ["tiny", "mlp"])
def test_sigkill_and_resume_matches_uninterrupted_run(tmp_path, model):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__))))

    def run(ckdir, kill_at, out):
        return subprocess.run([sys.executable, str(script), str(tmp_path / ckdir), json.dumps(kill_at),
                               str(tmp_path / out), model], capture_output=True, text=True, timeout=60)

    done = run("full", None, "full.npy")
    assert done.returncode == 0, done.stderr
    killed = run("killed", [4, 2], "never.npy")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sorted(os.listdir(tmp_path / "killed")) == ["epoch-0001.npz", "epoch-0002.npz", "epoch-0003.npz"]
    resumed = run("killed", None, "resumed.npy")
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "never.npy").exists()
    np.testing.assert_array_equal(np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "full.npy"))
    a, b = _final_checkpoint_arrays(tmp_path / "full"), _final_checkpoint_arrays(tmp_path / "killed")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_evaluate_restores_mode_and_skips_accuracy_for_regression():
    model = TinyNet(n_out=1, p=0.5)
    x, _ = blobs(20)
    y = x[:, :1] * 2
    for training in (True, False):
        model.training = training
        result = train.evaluate(model, (x, y), MSE())
        assert model.training is training and set(result) == {"loss"} and model.rng.offset == 0
    assert train.evaluate(model, (x, y)) == {}
    h = train.fit(model, MSE(), optim.SGD(model.params, lr=0.01), (x, y), epochs=1, progress=False)
    assert "accuracy" not in h.epochs[0] and model.rng.offset > 0


class L2:
    def __init__(self, lam):
        self.lam = lam

    def add_grad(self, params, grads, mask=None):
        w = params if mask is None else params * mask
        grads += self.lam * w
        return 0.5 * self.lam * float(np.dot(w, w))


def test_regularizer_adds_gradient_and_logs_penalty():
    plain, _ = _quick_fit(epochs=3)
    model = TinyNet()
    mask = np.zeros_like(model.params.data)
    mask[:model.params["w1"].size] = 1  # only w1
    reg, h = _quick_fit(model, epochs=3, regularizer=L2(1.0), regularizer_mask=mask)
    assert all(p > 0 for p in h["penalty"])
    assert np.linalg.norm(reg.params["w1"]) < 0.8 * np.linalg.norm(plain.params["w1"])
    assert np.linalg.norm(reg.params["w2"]) > 0.8 * np.linalg.norm(plain.params["w2"])


def test_progress_falls_back_to_a_line_per_epoch(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
    _quick_fit(epochs=2, progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert "loss" in lines[0] and "accuracy" in lines[0] and "lr 0.1" in lines[0]


class FakeTqdm:
    bars = []

    def __init__(self, total, desc, unit, **kw):
        self.desc, self.n, self.postfix = desc, 0, None
        self.bars.append(self)

    def set_postfix(self, values, refresh=True):
        self.postfix = values

    def update(self):
        self.n += 1

    def set_postfix_str(self, text):
        self.postfix = text

    def close(self):
        self.closed = True


def test_progress_bar_with_tqdm(monkeypatch, capsys):
    # The bar needs a terminal; the epoch's summary is its own line, not the bar's postfix (which
    # an 80-column terminal cut). More in test_output.py.
    monkeypatch.setitem(sys.modules, "tqdm", type(sys)("tqdm"))
    sys.modules["tqdm"].tqdm = FakeTqdm
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _quick_fit(epochs=2, batch_size=40, progress=True)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    assert [(b.desc, b.n, b.closed) for b in FakeTqdm.bars] == [("epoch 1/2", 3, True), ("epoch 2/2", 3, True)]
    assert set(FakeTqdm.bars[-1].postfix) == {"loss", "accuracy", "lr"}


def test_history_plot_and_lookup(tmp_path):
    model = TinyNet()
    h = train.fit(model, CrossEntropy(), optim.SGD(model.params, lr=0.1), blobs(), blobs(48, seed=1), epochs=3,
                  progress=False)
    h.plot(tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(h["val_loss"]) == 3
    with pytest.raises(KeyError, match="nope"):
        h["nope"]


def test_argument_checks():
    x, y = blobs(10)
    with pytest.raises(ValueError, match="schedule_unit"):
        _quick_fit(schedule_unit="batch")
    with pytest.raises(ValueError, match="samples"):
        _quick_fit(data=(x, y[:5]))
    with pytest.raises(ValueError, match="batch_size"):
        _quick_fit(batch_size=0)
    with pytest.raises(ValueError, match="metrics"):
        _quick_fit(metrics=["f1"])


# ---- with the real layers (fusednn.nn)


def test_xor_is_solved_by_two_relu_hidden_units():
    from fusednn import data, nn
    from fusednn.nn.losses import SoftmaxCrossEntropy
    x, y = data.xor()
    # Two ReLU units can represent XOR, but from about half the starts one of them dies and
    # the loss stalls at ln 2 / 2 or ln 2; seed 0 is a start that trains.
    model = nn.MLP([2, 2, 2], seed=0, bias_init=0.01)
    opt = optim.Adam(model.params, lr=0.05)
    history = train.fit(model, SoftmaxCrossEntropy(), opt, (x, y), epochs=300, batch_size=4, progress=False)
    np.testing.assert_array_equal(model(x, training=False).argmax(1), y)
    assert history["loss"][-1] < 0.05 < history["loss"][0]


def test_mlp_with_batch_norm_and_dropout_learns_spirals(device):
    from fusednn import data, nn
    from fusednn.nn.losses import SoftmaxCrossEntropy
    x, y = data.spirals(300, 3, seed=0)
    model = nn.MLP([2, 64, 64, 3], norm="batch", dropout=0.1, seed=0).to(device)
    opt = optim.AdamW(model.parameter_groups(1e-4), lr=1e-2)
    history = train.fit(model, SoftmaxCrossEntropy(), opt, (x, y), (x, y), epochs=60, batch_size=32, progress=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["val_accuracy"][-1] > 0.9


# ---- resume paths, run directories, non-finite losses (issue 13 items 12, 13, 14, 17)


def test_resume_from_a_file_of_any_name(tmp_path):
    """fit(resume="x.ckpt") once started from scratch because the name did not end in .npz."""
    model, _ = _quick_fit(epochs=2, checkpoint=tmp_path / "a.npz")
    os.rename(tmp_path / "a.npz", tmp_path / "x.ckpt")
    resumed, h = _quick_fit(TinyNet(seed=5), epochs=3, resume=tmp_path / "x.ckpt")
    assert [row["epoch"] for row in h.epochs] == [1, 2, 3]  # epochs 1-2 from the checkpoint's history
    full, h_full = _quick_fit(epochs=3)
    np.testing.assert_array_equal(resumed.params.data, full.params.data)


def test_resume_from_a_missing_path_is_an_error_unless_it_is_the_runs_own(tmp_path):
    for missing in ("nothere.npz", "nothere.ckpt", "nothere"):
        with pytest.raises(FileNotFoundError, match=f"resume: there is no checkpoint .*{missing}"):
            _quick_fit(epochs=1, resume=tmp_path / missing)
    _, h = _quick_fit(epochs=2, checkpoint=tmp_path / "run", resume=tmp_path / "run")  # the first start
    assert len(h) == 2 and os.listdir(tmp_path / "run")
    _, h = _quick_fit(epochs=1, callbacks=[train.Checkpoint(tmp_path / "c.npz")], resume=tmp_path / "c.npz")
    assert len(h) == 1


def test_resume_from_a_checkpoint_without_trainer_state_names_the_right_file(tmp_path):
    """Resuming from the CLI's final.npz restarted the warmup (step 0) and miscounted epochs."""
    model, _ = _quick_fit(epochs=2, checkpoint=tmp_path)
    checkpoint.save(tmp_path / "final.npz", model, optim.SGD(model.params, lr=0.1), epoch=2)
    with pytest.raises(checkpoint.CheckpointError,
                       match=r"final.npz: not a training checkpoint.*resume from .*epoch-0002.npz"):
        _quick_fit(TinyNet(), epochs=3, resume=tmp_path / "final.npz")
    other = tmp_path / "other"
    other.mkdir()
    checkpoint.save(other / "final.npz", model)
    with pytest.raises(checkpoint.CheckpointError, match="written by fit's Checkpoint callback"):
        _quick_fit(TinyNet(), epochs=3, resume=other / "final.npz")


def test_damaged_trainer_state_is_a_checkpoint_error(tmp_path):
    model, _ = _quick_fit(epochs=1)
    checkpoint.save(tmp_path / "c.npz", model, optim.SGD(model.params, lr=0.1), extra={"trainer": {"history": 3}})
    with pytest.raises(checkpoint.CheckpointError, match="c.npz: damaged trainer state"):
        _quick_fit(TinyNet(), epochs=2, resume=tmp_path / "c.npz")


def test_a_second_run_into_the_same_directory_is_refused(tmp_path):
    """Its files once mixed with the first run's: keep=2 deleted the new run's own checkpoints."""
    _quick_fit(epochs=4, checkpoint=tmp_path / "run")
    before = sorted(os.listdir(tmp_path / "run"))
    with pytest.raises(ValueError, match=r"already holds epoch-0002.npz, epoch-0003.npz, epoch-0004.npz.*fresh run"):
        _quick_fit(epochs=2, checkpoint=tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run")) == before
    with pytest.raises(ValueError, match=r"already holds epoch-0003.npz, epoch-0004.npz.*resumed at epoch 2"):
        _quick_fit(epochs=6, checkpoint=tmp_path / "run", resume=tmp_path / "run" / "epoch-0002.npz")
    _, h = _quick_fit(epochs=6, checkpoint=tmp_path / "run", resume=tmp_path / "run")  # continuing is fine
    assert len(h) == 6


def test_a_non_finite_loss_stops_training(tmp_path):
    """--lr 1e9 once trained 15 epochs of NaN and exited 0."""
    model, rec = TinyNet(), Recorder()
    with pytest.raises(train.NonFiniteLossError, match=r"loss is (nan|inf) at epoch 1, batch \d+") as err:
        _quick_fit(model, epochs=5, batch_size=8, callbacks=[rec], opt=optim.SGD(model.params, lr=1e9))
    e = err.value
    assert isinstance(e, FloatingPointError) and e.epoch == 1 and not math.isfinite(e.loss)
    assert e.step == e.batch == len(rec.batches) and all(math.isfinite(logs["loss"]) for _, _, logs in rec.batches)
    with pytest.raises(ValueError, match="on_nonfinite"):
        _quick_fit(epochs=1, on_nonfinite="ignore")


def test_a_non_finite_loss_with_continue_trains_every_epoch():
    model = TinyNet()
    _, h = _quick_fit(model, epochs=3, batch_size=8, on_nonfinite="continue", opt=optim.SGD(model.params, lr=1e9))
    assert len(h) == 3 and not all(math.isfinite(v) for v in h["loss"])


@requires_cuda
def test_a_model_moved_to_the_gpu_trains_like_on_the_cpu():
    import cupy as cp
    from fusednn import data, nn
    from fusednn.nn.losses import SoftmaxCrossEntropy
    x, y = data.digits("train")
    x = data.StandardScaler().fit_transform(x).astype(np.float32)
    models = [nn.MLP([64, 32, 10], norm="batch", dropout=0.1, seed=0) for _ in range(2)]
    models[1].to("cuda")
    assert isinstance(models[1].params.data, cp.ndarray)
    for model in models:
        opt = optim.AdamW(model.parameter_groups(1e-4), lr=3e-3)
        train.fit(model, SoftmaxCrossEntropy(), opt, (x, y), epochs=2, batch_size=64, progress=False)
    cpu, gpu = models[0].state_dict(), models[1].state_dict()
    for name in cpu:
        assert_close(gpu[name], cpu[name], kind="trajectory", err_msg=name)
    assert train.evaluate(models[1], (x, y))["accuracy"] > 0.9
    models[1].to("cpu")
    np.testing.assert_array_equal(models[1].state_dict()["0.weight"], gpu["0.weight"])


# ---- the step's own costs (issue 19): zero_grad only where needed, accuracy without a copy ----


def test_accuracy_is_the_fraction_of_rows_whose_first_maximum_is_the_label():
    g = np.random.default_rng(seed_of("accuracy"))
    out = g.integers(0, 3, (50, 4)).astype(np.float32)  # small integers: many tied maxima
    y = g.integers(0, 4, 50)
    first_max = np.array([list(row).index(row.max()) for row in out])
    assert train.accuracy(out, y) == np.sum(first_max == y) / 50
    assert train.accuracy(out, y.astype(np.uint8)) == train.accuracy(out, y)
    assert math.isnan(train.accuracy(np.zeros((0, 4), np.float32), np.zeros(0, np.int64)))
    assert train.accuracy(out, y.astype(np.float32)) is None  # regression targets: skipped
    assert train.accuracy(out[:, 0], y) is None


class _CountingMLP(fusednn.nn.MLP):
    def zero_grad(self):
        self.zero_grads = getattr(self, "zero_grads", 0) + 1
        super().zero_grad()


def _blobs_fit(model, **kw):
    x, y = blobs(64, n_in=8, k=4)
    train.fit(model, SoftmaxCrossEntropy(), optim.AdamW(model.parameter_groups(), lr=1e-2), (x, y),
              epochs=2, batch_size=16, verbose=0, **kw)
    return model


def test_fit_leaves_zero_grad_out_for_modules_whose_backward_overwrites_the_gradients():
    """A fusednn Module's backward overwrites every gradient, so fit does not zero them first:
    gradients full of garbage before training change nothing. Other models, and any model
    trained with a regularizer (which adds to the gradients), are zeroed before every step."""
    clean = _blobs_fit(_CountingMLP([8, 16, 16, 4], norm="batch", dropout=0.2, seed=0))
    dirty = _CountingMLP([8, 16, 16, 4], norm="batch", dropout=0.2, seed=0)
    dirty.params.grad[...] = np.nan
    _blobs_fit(dirty)
    assert getattr(clean, "zero_grads", 0) == getattr(dirty, "zero_grads", 0) == 0
    assert np.array_equal(clean.params.data, dirty.params.data)
    regularized = _blobs_fit(_CountingMLP([8, 16, 4], seed=0), regularizer=fusednn.regularizers.L2(1e-3))
    assert regularized.zero_grads == 2 * 4  # every step of 2 epochs of 4 batches

    class CountingTinyNet(TinyNet):
        zero_grads = 0

        def zero_grad(self):
            self.zero_grads += 1
            super().zero_grad()
    tiny, _ = _quick_fit(CountingTinyNet(), epochs=1, batch_size=32)
    assert tiny.zero_grads == 3  # 96 samples in batches of 32
