"""python -m fusednn train: the main job, its outputs and its argument errors."""

import os
import subprocess
import sys

import numpy as np
import pytest

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
        pytest.skip("CuPy is installed: tests/test_cuda.py covers --device cuda")
    except ImportError:
        pass
    with pytest.raises(SystemExit, match="--device cuda: .*CuPy"):
        cli.main(["train", "--device", "cuda", "--epochs", "1", "--runs-dir", str(tmp_path), "--no-progress"])
