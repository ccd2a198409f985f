"""python -m fusednn train: the main job, its outputs and its argument errors."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import requires_cuda
import fusednn.cli.train  # noqa: F401 (cli.train: the train subcommand's module)
from fusednn import checkpoint, cli


def test_default_training_reaches_97_percent_on_digits(tmp_path, capsys):
    assert cli.main(["train", "--no-progress", "--name", "run", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy ")[1].split("%")[0]) / 100
    assert accuracy >= 0.97, out
    run = tmp_path / "run"
    assert (run / "final.npz").exists() and (run / "history.json").exists() and (run / "history.png").exists()
    assert "samples/s" in out


def test_resume_from_a_run_directory(tmp_path, capsys):
    args = ["train", "--no-progress", "--runs-dir", str(tmp_path), "--epochs", "3", "--hidden", "16"]
    assert cli.main(args + ["--name", "a"]) == 0
    assert cli.main(args + ["--name", "b", "--epochs", "5", "--resume", str(tmp_path / "a")]) == 0
    assert "5 epochs" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("flags", [["--optimizer", "sgd", "--schedule", "step"],
                                   ["--optimizer", "nesterov", "--schedule", "cyclic", "--norm", "layer"],
                                   ["--optimizer", "rmsprop", "--schedule", "sgdr", "--l1", "1e-5", "--l2", "1e-4"],
                                   ["--optimizer", "nadam", "--clip-norm", "1", "--label-smoothing", "0.1",
                                    "--dataset", "spirals", "--activation", "tanh", "--norm", "none"]])
def test_other_flags_run(tmp_path, flags, capsys):
    assert cli.main(["train", "--no-progress", "--runs-dir", str(tmp_path), "--epochs", "2", "--name", "x"] + flags) == 0
    saved = checkpoint.load(str(tmp_path / "x" / "final.npz"))
    assert saved is not None


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-1"], "--lr"),
    (["--hidden", "256,x"], "--hidden"),
    (["--optimizer", "lbfgs"], "--optimizer"),
    (["--dropout", "1.5"], "--dropout"),
    (["--batch-size", "0"], "--batch-size"),
    (["--dataset", "cifar"], "--dataset"),
])
def test_bad_flags_are_argparse_errors(flags, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train"] + flags)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    r = subprocess.run([sys.executable, "-m", "fusednn", "train", "--epochs", "2", "--no-progress", "--runs-dir",
                        str(tmp_path), "--name", "m"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    r = subprocess.run([sys.executable, "-m", "fusednn", "train", "--epochs", "zero"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--epochs" in r.stderr
    assert np.load(tmp_path / "m" / "final.npz", allow_pickle=False) is not None


def test_device_cuda_without_cupy_or_cuda_module_is_a_clear_exit(tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed: test_main_job_on_the_gpu covers --device cuda")
    except ImportError:
        pass
    with pytest.raises(SystemExit, match="--device cuda: .*CuPy"):
        cli.main(["train", "--device", "cuda", "--epochs", "1", "--runs-dir", str(tmp_path), "--no-progress"])


# ---- one-line errors, run directories (issue 13 items 12, 13, 14, 17)

QUICK = ["train", "--no-progress", "--epochs", "2", "--hidden", "16"]


def _error_line(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("flags, message", [
    (["--clip-norm", "0"], "--clip-norm: .*> 0"),
    (["--seed", "-1"], "--seed: .*>= 0"),
    (["--resume", "nothere.npz"], "--resume: no such checkpoint file or run directory: 'nothere.npz'"),
    (["--dataset", "mnist:/no/such/dir"], "--dataset: no such directory: '/no/such/dir'"),
])
def test_more_bad_flags_are_argparse_errors(tmp_path, flags, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(QUICK + ["--runs-dir", str(tmp_path)] + flags)
    assert e.value.code == 2
    assert re.search(message, _error_line(capsys))
    assert os.listdir(tmp_path) == []


def test_mnist_directory_without_the_files_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "mnist").mkdir()
    assert cli.main(QUICK + ["--runs-dir", str(tmp_path / "runs"), "--dataset", f"mnist:{tmp_path / 'mnist'}"]) == 2
    assert re.search(r"error: --dataset mnist:.*train-images-idx3-ubyte", _error_line(capsys))


def test_resume_errors_are_one_line(tmp_path, capsys):
    runs = ["--runs-dir", str(tmp_path)]
    assert cli.main(QUICK + runs + ["--name", "a"]) == 0
    capsys.readouterr()
    assert cli.main(QUICK + runs + ["--hidden", "32", "--resume", str(tmp_path / "a")]) == 2
    assert re.search(r"error: --resume .*epoch-0002.npz: the checkpoint does not fit this model.*--hidden.*"
                     r"0.weight.*expected shape \(32, 64\), got \(16, 64\)", _error_line(capsys))
    # final.npz holds the restored best weights, step 0: resuming from it restarted the warmup
    assert cli.main(QUICK + runs + ["--resume", str(tmp_path / "a" / "final.npz")]) == 2
    assert re.search(r"error: --resume: .*final.npz: not a training checkpoint.*resume from .*a.epoch-0002.npz",
                     _error_line(capsys))
    (tmp_path / "empty").mkdir()
    assert cli.main(QUICK + runs + ["--resume", str(tmp_path / "empty")]) == 2
    assert "--resume: no checkpoint (epoch-NNNN.npz) in" in _error_line(capsys)
    assert sorted(os.listdir(tmp_path)) == ["a", "empty"]  # no run directory was made for the failed runs


def test_a_second_run_of_the_same_name_is_refused_unless_overwrite_or_resume(tmp_path, capsys):
    """Its files once mixed with the first run's (old epoch-0005 survived a 2-epoch rerun)."""
    runs = ["--runs-dir", str(tmp_path), "--name", "x"]
    assert cli.main(QUICK + runs + ["--epochs", "4"]) == 0
    first = sorted(os.listdir(tmp_path / "x"))
    assert "epoch-0004.npz" in first
    assert cli.main(QUICK + runs) == 2
    assert re.search(r"error: --name x: .*x already holds a run .*--overwrite", _error_line(capsys))
    assert sorted(os.listdir(tmp_path / "x")) == first
    assert cli.main(QUICK + runs + ["--resume", str(tmp_path / "x" / "epoch-0003.npz")]) == 2
    assert "holds later checkpoints (epoch-0004.npz)" in _error_line(capsys)
    assert cli.main(QUICK + runs + ["--epochs", "5", "--resume", str(tmp_path / "x")]) == 0  # goes on
    assert checkpoint.load(checkpoint.latest(tmp_path / "x")).epoch == 5
    (tmp_path / "x" / "notes.txt").write_text("mine")
    assert cli.main(QUICK + runs + ["--overwrite"]) == 0
    assert sorted(os.listdir(tmp_path / "x")) == ["epoch-0001.npz", "epoch-0002.npz", "final.npz", "history.json",
                                                  "history.png", "notes.txt"]


def test_default_run_names_are_unique_even_in_the_same_microsecond(tmp_path, monkeypatch):
    class Frozen(cli.train.datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 1, 2, 3, 4, 5, 678901)

    monkeypatch.setattr(cli.train.datetime, "datetime", Frozen)
    args = cli.build_parser().parse_args(["train", "--runs-dir", str(tmp_path)])
    dirs = [cli.train._run_dir(args, None) for _ in range(3)]
    assert [os.path.basename(d) for d in dirs] == ["digits-adamw-20260102-030405-678901",
                                                   "digits-adamw-20260102-030405-678901-1",
                                                   "digits-adamw-20260102-030405-678901-2"]


def test_two_runs_started_at_once_get_their_own_directories(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    cmd = [sys.executable, "-m", "fusednn", "train", "--epochs", "1", "--hidden", "8", "--no-progress", "--runs-dir",
           str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    assert len(os.listdir(tmp_path)) == 2
    for run in os.listdir(tmp_path):
        assert sorted(os.listdir(tmp_path / run))[0] == "epoch-0001.npz"


def test_a_diverging_run_stops_with_an_error(tmp_path, capsys):
    """--lr 1e9 once ran every epoch on NaN and exited 0."""
    assert cli.main(QUICK + ["--runs-dir", str(tmp_path), "--lr", "1e9", "--epochs", "5"]) == 1
    assert re.search(r"error: the training loss is (nan|inf) at epoch 1, batch \d+ .*--on-nonfinite continue",
                     _error_line(capsys))
    assert os.listdir(tmp_path) == []
    assert cli.main(QUICK + ["--runs-dir", str(tmp_path), "--lr", "1e9", "--on-nonfinite", "continue",
                             "--patience", "100"]) == 0
    assert "2 epochs" in capsys.readouterr().out


@requires_cuda
def test_main_job_on_the_gpu(tmp_path, capsys):
    assert cli.main(["train", "--device", "cuda", "--no-progress", "--runs-dir", str(tmp_path), "--name", "g"]) == 0
    out = capsys.readouterr().out
    assert float(out.split("test accuracy ")[1].split("%")[0]) >= 97.0, out
