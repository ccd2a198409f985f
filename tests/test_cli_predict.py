"""python -m fusednn predict / evaluate on what train wrote, --version, and the refusal of a
resume with another optimizer or architecture."""

import re

import numpy as np
import pytest

import fusednn
from fusednn import cli, data

# One worker runs all of this file's tests, so that the module's training run happens once (pytest-xdist).
pytestmark = pytest.mark.xdist_group("cli_predict")

TRAIN = ["train", "--no-progress", "--epochs", "3", "--hidden", "16", "--patience", "3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One short digits run: (run directory, train's stdout)."""
    runs = tmp_path_factory.mktemp("runs")
    import contextlib
    import io
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(TRAIN + ["--runs-dir", str(runs), "--name", "r"]) == 0
    return runs / "r", out.getvalue()


def _error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_train_saves_the_model_with_its_scaler(run):
    model = fusednn.load(run[0] / "final.npz")
    x_train, _ = data.digits("train", seed=0)
    scaler = data.StandardScaler().fit(x_train)
    assert type(model.preprocessing) is data.StandardScaler
    assert np.array_equal(model.preprocessing.mean_, scaler.mean_)
    assert np.array_equal(model.preprocessing.scale_, scaler.scale_)
    assert model.sizes == [64, 16, 10]


def test_predict_writes_labels_and_probabilities(run, tmp_path, capsys):
    x, _ = data.digits("test", seed=0)
    np.save(tmp_path / "x.npy", x[:25])
    assert cli.main(["predict", "--run", str(run[0]), "--input", str(tmp_path / "x.npy"), "--output",
                     str(tmp_path / "y.npy")]) == 0
    assert capsys.readouterr().out == f"25 labels of {run[0] / 'final.npz'} -> {tmp_path / 'y.npy'}\n"
    labels = np.load(tmp_path / "y.npy", allow_pickle=False)
    model = fusednn.load(run[0] / "final.npz")
    assert labels.dtype == np.int64 and np.array_equal(labels, model.predict(x[:25]))
    assert cli.main(["predict", "--run", str(run[0] / "final.npz"), "--input", str(tmp_path / "x.npy"), "--output",
                     str(tmp_path / "p.npy"), "--proba", "--batch-size", "4"]) == 0
    proba = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert proba.shape == (25, 10) and np.array_equal(proba, model.predict_proba(x[:25], batch_size=4))


def test_evaluate_reproduces_train_s_test_result(run, capsys):
    assert cli.main(["evaluate", "--run", str(run[0])]) == 0
    out = capsys.readouterr().out
    trained = re.search(r"test accuracy [\d.]+%, test loss [\d.]+", run[1]).group(0)
    assert out.startswith(trained + " | 360 samples of the test split of digits | ")


def test_evaluate_other_split_and_own_rows(run, tmp_path, capsys):
    assert cli.main(["evaluate", "--run", str(run[0]), "--split", "val"]) == 0
    assert "samples of the val split of digits" in capsys.readouterr().out
    x, y = data.digits("test", seed=0)
    np.save(tmp_path / "x.npy", x[:40])
    np.save(tmp_path / "y.npy", y[:40])
    assert cli.main(["evaluate", "--run", str(run[0]), "--input", str(tmp_path / "x.npy"), "--labels",
                     str(tmp_path / "y.npy")]) == 0
    accuracy = float(capsys.readouterr().out.split("accuracy ")[1].split("%")[0]) / 100
    expected = np.mean(fusednn.load(run[0] / "final.npz").predict(x[:40]) == y[:40])
    assert accuracy == pytest.approx(expected, abs=5e-5)


@pytest.mark.parametrize("case, message", [
    ("missing run", "--run .*nope: no such run directory or model file"),
    ("unfinished run", "--run .*empty: holds no final.npz"),
    ("not a model", "--run .*x.npy: .*a single .npy array"),
    ("missing input", "--input .*missing.npy: no such file"),
    ("npz input", "--input .*z.npz: expected an .npy file of one array, got an .npz archive"),
    ("integer input", "--input .*i.npy: x: expected a float32 or float64 array, got dtype int64"),
    ("wrong features", "--input .*x5.npy: x: expected 64 features \\(columns\\), got 5"),
])
def test_predict_errors_are_one_line(run, tmp_path, capsys, case, message):
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    np.save(tmp_path / "x5.npy", np.zeros((2, 5), np.float32))
    np.save(tmp_path / "i.npy", np.zeros((2, 64), np.int64))
    np.savez(tmp_path / "z.npz", a=np.zeros((2, 64), np.float32))
    (tmp_path / "empty").mkdir()
    target, source = str(run[0]), str(tmp_path / "x.npy")
    if case in ("missing run", "unfinished run", "not a model"):
        target = str(tmp_path / {"missing run": "nope", "unfinished run": "empty", "not a model": "x.npy"}[case])
    else:
        source = str(tmp_path / {"missing input": "missing.npy", "npz input": "z.npz", "integer input": "i.npy",
                                 "wrong features": "x5.npy"}[case])
    assert cli.main(["predict", "--run", target, "--input", source, "--output", str(tmp_path / "o.npy")]) == 2
    assert re.search(f"python -m fusednn predict: error: {message}", _error_line(capsys))
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize("extra, message", [
    (["--input", "X"], "--input and --labels go together"),
    (["--input", "X", "--labels", "L"], "--labels .*l.npy: expected 2 integer labels \\(shape \\(2,\\)\\), got dtype "
                                        "float32 and shape \\(2, 64\\)"),
    (["--input", "X", "--labels", "B"], "labels: expected classes 0..9 \\(the model's\\), got 0..12"),
])
def test_evaluate_errors_are_one_line(run, tmp_path, capsys, extra, message):
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    np.save(tmp_path / "b.npy", np.array([0, 12]))
    paths = {"X": str(tmp_path / "x.npy"), "L": str(tmp_path / "x.npy").replace("x.npy", "l.npy"),
             "B": str(tmp_path / "b.npy")}
    np.save(tmp_path / "l.npy", np.zeros((2, 64), np.float32))
    assert cli.main(["evaluate", "--run", str(run[0])] + [paths.get(a, a) for a in extra]) == 2
    assert re.search(f"python -m fusednn evaluate: error: {message}", _error_line(capsys))


def test_evaluate_of_a_saved_model_without_a_data_set_needs_input(tmp_path, capsys):
    fusednn.nn.MLP([64, 10]).save(tmp_path / "m.npz")
    assert cli.main(["evaluate", "--run", str(tmp_path / "m.npz")]) == 2
    assert "does not record the data set it was trained on (a file from model.save); give --input and --labels" in \
        _error_line(capsys)


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"fusednn {fusednn.__version__}\n"


@pytest.mark.parametrize("flags, message", [
    (["--optimizer", "sgd"], "the checkpoint was trained with --optimizer adamw, not sgd; resume with --optimizer "
                             "adamw, or start a new run"),
    (["--dropout", "0.5"], "the checkpoint's model differs from the one these flags build \\(checkpoint vs flags: "
                           "layer 2: Dropout\\(p=0.2, .*\\) vs Dropout\\(p=0.5, .*\\)\\); give the --model"),
])
def test_resume_with_another_optimizer_or_architecture_is_refused(run, tmp_path, capsys, flags, message):
    args = TRAIN + ["--runs-dir", str(tmp_path), "--name", "again", "--resume", str(run[0])]
    assert cli.main(args + flags) == 2
    assert re.search(f"python -m fusednn train: error: --resume .*epoch-0003.npz: {message}", _error_line(capsys))
    assert not (tmp_path / "again").exists() or not any((tmp_path / "again").iterdir())
