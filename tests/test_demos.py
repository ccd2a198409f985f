"""fusednn.demos and `python -m fusednn demo`: every demo runs in quick mode, writes its files, and
shows its claim's direction (never exact numbers); without matplotlib the tables still print."""

import csv
import os
import sys

import pytest

from fusednn import cli, demos

_RESULTS = {}
# One worker runs all of this file's tests, so that each demo runs once (pytest-xdist).
pytestmark = pytest.mark.xdist_group("demos")


@pytest.fixture(scope="module")
def out_root(tmp_path_factory):
    return tmp_path_factory.mktemp("demos")


def _result(name, out_root):
    """Each demo runs once per test session (quick), into out_root/NAME."""
    if name not in _RESULTS:
        _RESULTS[name] = demos.run(name, quick=True, out_dir=str(out_root / name), dpi=40)
    return _RESULTS[name]


@pytest.mark.parametrize("name", demos.names())
def test_every_demo_runs_quickly_and_writes_its_table_and_figures(name, out_root):
    pytest.importorskip("matplotlib")
    result = _result(name, out_root)
    module = demos.get(name)
    assert result.name == module.NAME == name and result.claim == module.CLAIM
    assert result.rows and result.measured and result.check and isinstance(result.holds, bool)
    assert result.seconds < 30  # "a few seconds" each, with room for a busy machine
    folder = out_root / name
    assert sorted(os.listdir(folder)) == sorted(os.path.basename(f) for f in result.files)
    assert any(f.endswith(".png") for f in result.files)
    with open(folder / f"{name}.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == result.columns and len(table) == len(result.rows)
    markdown = (folder / f"{name}.md").read_text()
    assert result.claim in markdown and result.markdown_table() in markdown
    text = result.text()
    assert result.claim in text and "Measured:" in text and all(c in text for c in result.columns)


def test_regularization_training_loss_rises_with_l2_and_with_dropout(out_root):
    result = _result("regularization", out_root)
    for sweep, strengths in (("L2", (0.0, 1e-4, 1e-3, 5e-3)), ("dropout", (0.0, 0.1, 0.5, 0.9))):
        assert result.column("strength", sweep=sweep) == list(strengths)
        losses = result.column("train loss (as trained)", sweep=sweep)
        assert all(b > a for a, b in zip(losses, losses[1:])), (sweep, losses)


def test_learning_rate_adam_ends_below_sgd_at_0_01(out_root):
    result = _result("learning-rate", out_root)
    final = {r["run"]: r["final train loss"] for r in result.rows}
    assert final["Adam lr 0.03"] < final["SGD lr 0.01"]
    long_run = next(k for k in final if k.startswith("SGD lr 0.01,"))
    assert final[long_run] < final["SGD lr 0.01"]  # more epochs help the small learning rate


def test_init_small_normal_activations_shrink_with_depth_and_xavier_keeps_them(out_root):
    result = _result("init", out_root)
    small = result.column("std tanh, N(0, 0.01)")
    xavier = result.column("std tanh, Xavier")
    assert len(small) == 10 and all(b < a for a, b in zip(small, small[1:]))
    assert small[-1] < 1e-3 * small[0] and xavier[-1] > 0.1 * xavier[0]
    grads = result.column("grad norm tanh, N(0, 0.01)")
    assert max(grads) < 1e-3 * min(result.column("grad norm tanh, Xavier"))


def test_normalization_whitened_contours_are_roundest(out_root):
    result = _result("normalization", out_root)
    cond = {r["setting"]: r["condition number"] for r in result.rows if r["experiment"] == "linear regression"}
    assert cond["whitened inputs"] < cond["standardized inputs"] < cond["raw inputs"]
    assert cond["whitened inputs"] == pytest.approx(1.0, abs=1e-6)


def test_optimizers_momentum_beats_sgd_on_the_2d_functions(out_root):
    result = _result("optimizers", out_root)
    by = {r["optimizer"]: r for r in result.rows}
    assert list(by) == ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "AdaDelta", "Adam", "AdamW", "NAdam"]
    for column in (c for c in result.columns if " f after " in c):
        assert by["Momentum"][column] < by["SGD"][column], column


def test_augmentation_makes_the_network_robust_to_shifts(out_root):
    result = _result("augmentation", out_root)
    plain, augmented = result.rows[0], result.rows[1]
    assert plain["augmentation"] == "none" and augmented["augmentation"] != "none"
    assert augmented["shifted test accuracy"] > plain["shifted test accuracy"]
    assert augmented["final train loss"] > plain["final train loss"]


def test_hpo_random_search_beats_the_grid_when_one_hyperparameter_matters(out_root):
    result = _result("hpo", out_root)
    grid, random = result.rows[0], result.rows[1]
    assert grid["distinct lr values tried"] == 3 and random["distinct lr values tried"] == 9
    assert random["mean best value"] < grid["mean best value"]


def test_rnn_state_beats_a_memoryless_network(out_root):
    result = _result("rnn", out_root)
    acc = {r["model"].split(" ")[0] + (" last" if "last row" in r["model"] else ""): r["test accuracy"]
           for r in result.rows}
    assert min(acc["LSTM"], acc["GRU"]) > acc["MLP last"]


def test_without_matplotlib_the_table_prints_and_the_message_says_how(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib...` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert cli.main(["demo", "schedules", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "constant(0.1)" in out and "lr at 199" in out and "Claim:" in out
    assert 'pip install "fusednn[plot]"' in out and "matplotlib is not installed" in out
    assert sorted(os.listdir(tmp_path / "schedules")) == ["schedules.csv", "schedules.md"]


def test_demo_list_names_every_demo_and_a_bad_name_is_a_usage_error(capsys):
    assert cli.main(["demo", "list"]) == 0
    out = capsys.readouterr().out
    for name in demos.names():
        assert f"{name}: " in out and demos.get(name).CLAIM[:40] in " ".join(out.split())
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "nope"])
    assert exc.value.code == 2 and "expected list, all or one of xor" in capsys.readouterr().err
    with pytest.raises(ValueError, match="name: expected one of"):
        demos.get("nope")


def test_a_demo_without_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = demos.run("xor", quick=True)
    assert result.files == [] and os.listdir(tmp_path) == [] and result.holds
