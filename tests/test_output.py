"""What training prints and draws: fit's verbosity levels (snapshots of the non-terminal
output), the progress bar on a terminal, early stopping's summary, History.plot, and the train
command's --help, --verbose and default learning rates."""

import contextlib
import io
import math
import re
import sys

import numpy as np
import pytest

import fusednn.cli.train  # noqa: F401 (cli.train: the train subcommand's module)
from fusednn import cli, nn, optim, train
from fusednn.cli import train as cli_train
from fusednn.nn.losses import SoftmaxCrossEntropy


def blobs(n=64, n_in=4, k=3, seed=0):
    centers = np.random.default_rng(12345).normal(0, 4, (k, n_in))
    g = np.random.default_rng(seed)
    y = g.integers(0, k, n)
    return (centers[y] + g.normal(0, 1, (n, n_in))).astype(np.float32), y


def _fit(epochs=3, val=False, **kw):
    model = nn.MLP([4, 8, 3], seed=0)
    h = train.fit(model, SoftmaxCrossEntropy(), optim.SGD(model.params, lr=0.1), blobs(),
                  blobs(32, seed=1) if val else None, epochs=epochs, batch_size=16, **kw)
    return model, h


def _masked(text):
    """The output with every number replaced by '#': the format, whatever the machine's timings."""
    return re.sub(r"-?\d+(\.\d+)?(e[+-]\d+)?", "#", text)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


class FakeTqdm:
    """Records the bars fit draws; each event is also noted in `log` (shared with the stream's
    writes) so that tests see the order of bars and lines."""

    log = []

    def __init__(self, total, desc, unit, file, leave, dynamic_ncols):
        self.total, self.desc, self.leave, self.n, self.postfix = total, desc, leave, 0, None
        self.file = file
        self.log.append(("open", desc))

    def set_postfix(self, values, refresh=True):
        self.postfix = values

    def update(self):
        self.n += 1

    def close(self):
        self.log.append(("close", self.desc, self.n, self.file.getvalue().count("\n")))


# ---- verbosity


SNAPSHOT_2 = """\
epoch #/#: loss # - accuracy # - lr # - # s - # samples/s
epoch #/#: loss # - accuracy # - lr # - # s - # samples/s
epoch #/#: loss # - accuracy # - lr # - # s - # samples/s
"""


def test_verbose_2_prints_one_plain_line_per_epoch(capsys):
    _, h = _fit(verbose=2)
    out = capsys.readouterr().out
    assert "\r" not in out and "\x1b" not in out
    assert _masked(out) == SNAPSHOT_2
    lines = out.splitlines()
    for i, line in enumerate(lines):
        assert line.startswith(f"epoch {i + 1}/3: loss {h['loss'][i]:.4g} - accuracy {h['accuracy'][i]:.4g} - lr 0.1 - ")


def test_verbose_1_off_a_terminal_prints_the_lines_of_verbose_2_once(capsys):
    """stdout not a terminal (pytest's capture is not one): no bar, each epoch's line once (the
    \\r-joined partial bars and the last bar printed twice are gone)."""
    _fit(verbose=1)
    out = capsys.readouterr().out
    assert _masked(out) == SNAPSHOT_2
    assert "\r" not in out


def test_verbose_1_with_validation_and_early_stopping_snapshot(capsys):
    stop = train.EarlyStopping(patience=0, min_delta=10.0)  # nothing improves by 10: stops after epoch 2
    _, h = _fit(epochs=5, val=True, verbose=1, callbacks=[stop])
    out = capsys.readouterr().out
    assert _masked(out) == (
        "epoch #/#: loss # - accuracy # - lr # - val_loss # - val_accuracy # - # s - # samples/s\n"
        "epoch #/#: loss # - accuracy # - lr # - val_loss # - val_accuracy # - # s - # samples/s\n"
        "early stopping: stopped at epoch # (no val_loss improvement for # epochs); restored epoch # (val_loss #)\n")
    assert out.splitlines()[-1] == (f"early stopping: stopped at epoch 2 (no val_loss improvement for 0 epochs); "
                                    f"restored epoch 1 (val_loss {h['val_loss'][0]:.4g})")


def test_verbose_0_and_progress_false_print_nothing(capsys):
    _fit(verbose=0, callbacks=[train.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)])
    _fit(progress=False)
    assert capsys.readouterr().out == ""


def test_progress_is_the_older_spelling_of_verbose(capsys):
    _fit(progress=True)
    assert _masked(capsys.readouterr().out) == SNAPSHOT_2
    with pytest.raises(TypeError, match="give verbose only"):
        _fit(verbose=2, progress=True)
    for bad in (3, -1, True, "2", 1.5):
        with pytest.raises(ValueError, match=r"verbose: expected 0 \(silent\), 1 \(a progress bar\) or 2"):
            _fit(verbose=bad)


def test_verbose_1_on_a_terminal_draws_a_bar_that_the_epoch_line_replaces(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", type(sys)("tqdm"))
    sys.modules["tqdm"].tqdm = FakeTqdm
    FakeTqdm.log = []
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    _fit(epochs=2, verbose=1)
    lines = terminal.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    # one transient bar per epoch (4 batches), closed before its epoch's line is printed
    assert FakeTqdm.log == [("open", "epoch 1/2"), ("close", "epoch 1/2", 4, 0),
                            ("open", "epoch 2/2"), ("close", "epoch 2/2", 4, 1)]
    # verbose=2 on a terminal: no bar
    FakeTqdm.log = []
    _fit(epochs=1, verbose=2)
    assert FakeTqdm.log == []


def test_the_bar_is_closed_when_training_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", type(sys)("tqdm"))
    sys.modules["tqdm"].tqdm = FakeTqdm
    FakeTqdm.log = []
    monkeypatch.setattr(sys, "stdout", FakeTerminal())
    model = nn.MLP([4, 8, 3], seed=0)
    with pytest.raises(train.NonFiniteLossError):
        train.fit(model, SoftmaxCrossEntropy(), optim.SGD(model.params, lr=1e30), blobs(), epochs=3, verbose=1)
    assert FakeTqdm.log[-1][0] == "close"


# ---- early stopping's summary


def test_early_stopping_records_and_says_what_it_did(capsys):
    stop = train.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)
    model, h = _fit(epochs=6, verbose=2, callbacks=[stop])
    assert len(h) == 2 and h.stopped_epoch == 2 and h.restored_epoch == 1
    assert stop.summary == (f"early stopping: stopped at epoch 2 (no loss improvement for 1 epoch); restored epoch 1 "
                            f"(loss {h['loss'][0]:.4g})")
    assert capsys.readouterr().out.splitlines()[-1] == stop.summary
    # ran to the end: says so; without restore_best: names the best epoch, not restored
    stop = train.EarlyStopping(monitor="loss", patience=10, restore_best=False)
    _, h = _fit(epochs=3, verbose=0, callbacks=[stop])
    best = int(np.argmin(h["loss"])) + 1
    assert stop.summary == (f"early stopping: ran to epoch 3 without stopping; best epoch {best} "
                            f"(loss {min(h['loss']):.4g}), not restored")
    assert h.stopped_epoch is None and h.restored_epoch is None


# ---- History.plot


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts] + [fig._suptitle.get_text() if fig._suptitle else ""]


def _legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_history_plot_title_restored_marker_lr_panel_and_log_scale(tmp_path):
    pytest.importorskip("matplotlib")
    stop = train.EarlyStopping(patience=0, min_delta=10.0)
    _, h = _fit(epochs=5, val=True, verbose=0, callbacks=[stop])
    h.name = "digits-adamw-run"
    fig = h.plot(tmp_path / "h.png", log_scale=True)
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig._suptitle.get_text() == "digits-adamw-run"
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "learning rate"]
    loss_ax, acc_ax, lr_ax = fig.axes
    assert "restored epoch 1" in _legend_labels(loss_ax) and "restored epoch 1" in _legend_labels(acc_ax)
    assert loss_ax.get_yscale() == "log" and lr_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
    assert _legend_labels(lr_ax)[0] == "learning rate"
    other = h.plot(title="other")
    assert other._suptitle.get_text() == "other" and other.axes[0].get_yscale() == "linear"


def test_history_plot_of_a_nan_run_says_what_happened():
    pytest.importorskip("matplotlib")
    model = nn.MLP([4, 8, 3], seed=0)
    h = train.fit(model, SoftmaxCrossEntropy(), optim.SGD(model.params, lr=1e30), blobs(), epochs=3, verbose=0,
                  on_nonfinite="continue")
    assert all(math.isnan(v) for v in h["loss"])
    fig = h.plot()
    assert "loss NaN from epoch 1" in _texts(fig)
    assert "loss NaN from epoch 1" in _legend_labels(fig.axes[0])


def test_plot_needs_matplotlib_and_names_the_plot_extra(monkeypatch):
    _, h = _fit(epochs=1, verbose=0)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=re.escape('pip install "fusednn[plot]"')):
        h.plot()


# ---- the train command


def _run(args, monkeypatch=None):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(args) == 0
    return out.getvalue()


def test_help_shows_every_default():
    """Every option of every subcommand shows its default (argparse's defaults formatter only
    adds "(default: ...)" to options that have a help text)."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    for name, subparser in sub.choices.items():
        text = " ".join(subparser.format_help().split())
        for action in subparser._actions:
            if not action.option_strings or action.help == "==SUPPRESS==" or action.nargs == 0:
                continue  # positionals, --help and flags (store_true: no value to default)
            flag = action.option_strings[-1]
            # (the formatter appends the default even to an empty help, which --help then omits)
            assert (action.help or "").strip(), f"{name} {flag}: no help text, so --help shows no default"
            helptext = subparser._get_formatter()._expand_help(action)
            assert "(default:" in helptext, f"{name} {flag}: no default in --help: {helptext!r}"
        assert text.count("(default:") >= sum(1 for a in subparser._actions if a.option_strings and a.nargs != 0
                                              and a.help != "==SUPPRESS==")


def test_train_help_names_each_optimizers_default_lr():
    text = " ".join(cli.build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    for name, lr in cli_train.DEFAULT_LR.items():
        assert f"{name} {lr:g}" in text


@pytest.fixture
def no_plot(monkeypatch):
    """CLI runs without drawing history.png (matplotlib "missing"): faster."""
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)


@pytest.mark.parametrize("optimizer", cli_train.OPTIMIZERS)
def test_each_optimizer_default_lr_reaches_95_percent_on_digits(tmp_path, optimizer, no_plot):
    """Without --lr each optimizer takes its own default (one lr of 0.003 for all gave Adadelta
    26.7% and SGD 87.5%): in a fast configuration (20 epochs of a 64-unit MLP) each reaches 95%."""
    out = _run(["train", "--verbose", "0", "--optimizer", optimizer, "--epochs", "20", "--hidden", "64",
                "--runs-dir", str(tmp_path)])
    assert f"lr {cli_train.DEFAULT_LR[optimizer]}," in out.splitlines()[0]
    accuracy = float(out.split("test accuracy ")[1].split("%")[0])
    assert accuracy >= 95.0, out


def test_cli_verbose_levels_and_the_not_drawn_message(tmp_path, no_plot):
    base = ["train", "--epochs", "2", "--hidden", "8", "--runs-dir", str(tmp_path)]
    quiet = _run(base + ["--verbose", "0"]).splitlines()
    assert len(quiet) == 2 and quiet[0].startswith("fusednn ") and quiet[1].startswith("test accuracy")
    assert 'history.png not drawn: matplotlib is not installed; pip install "fusednn[plot]"' in quiet[1]
    lines = _run(base + ["--verbose", "2"]).splitlines()
    assert [line.split(":")[0] for line in lines[1:3]] == ["epoch 1/2", "epoch 2/2"]
    assert lines[3].startswith("early stopping: ran to epoch 2 without stopping; restored epoch")
    parser = cli.build_parser()
    assert parser.parse_args(base).verbose == 1
    assert parser.parse_args(base + ["--no-progress"]).verbose == 2  # the old flag: no bar, lines
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--verbose", "3"])
