"""fusednn.hpo executors and crash safety: the process executor (workers x threads <= cores,
worker crashes), the Ray executor on a local ray.init(num_cpus=2), and a study resumed after
its driver was killed with SIGKILL."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from fusednn import hpo
from fusednn.hpo import functions as F
from fusednn.hpo.executors import available_cores


def worker_objective(config, trial):
    """Records how many fusednn threads it ran with. Each trial leaves a marker file, then waits
    until two trials have started (at most 30 s: then it records that it ran alone): the first
    trial goes on only once another one runs beside it, which a serial executor never allows."""
    import fusednn
    trial.user_attrs["threads"] = fusednn.get_num_threads()
    markers = os.environ["FUSEDNN_TEST_MARKERS"]
    open(os.path.join(markers, str(trial.number)), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(markers)) < 2:
        if time.monotonic() > deadline:
            trial.user_attrs["alone"] = True
            break
        time.sleep(0.002)
    return F.branin(config)


def dying_objective(config, trial):
    if trial.number == 1:
        os._exit(3)  # the worker process dies without a word
    return F.branin(config)


def test_the_process_executor_runs_trials_in_parallel_workers(tmp_path, monkeypatch):
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("FUSEDNN_TEST_MARKERS", str(markers))  # the workers inherit it
    serial = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name="s", seed=5)
    serial.optimize(F.branin, n_trials=6)
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=str(tmp_path / "p.db"), name="p", seed=5)
    study.optimize(worker_objective, n_trials=6, executor="process", workers=2)
    trials = study.trials
    assert all(t.status == "complete" for t in trials)
    assert [(t.config, t.value) for t in trials] == [(t.config, t.value) for t in serial.trials]
    workers = {t.worker for t in trials}
    assert len(workers) == 2 and str(os.getpid()) not in {w.split(":")[1] for w in workers}
    assert {t.attrs["threads"] for t in trials} == {max(1, available_cores() // 2)}
    assert not any(t.attrs.get("alone") for t in trials)  # two trials ran at once
    assert sorted(os.listdir(markers)) == sorted(str(t.number) for t in trials)


def test_a_dead_worker_fails_its_trial_and_the_study_goes_on():
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name="d")
    study.optimize(dying_objective, n_trials=4, executor=hpo.ProcessExecutor(1))
    statuses = [t.status for t in study.trials]
    assert statuses == ["complete", "failed", "complete", "complete"]
    assert "worker process died" in study.trials[1].error


def test_process_executor_bad_arguments():
    with pytest.raises(ValueError, match="workers"):
        hpo.ProcessExecutor(0)
    with pytest.raises(ValueError, match="exceed"):
        hpo.ProcessExecutor(2, threads=available_cores())
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:")
    with pytest.raises(TypeError, match="pickles"):
        study.optimize(lambda c, t: 0.0, n_trials=2, executor="process", workers=1)


def test_the_ray_executor_on_a_local_ray():
    ray = pytest.importorskip("ray")
    import fusednn

    def objective(config, trial):  # a closure: Ray ships it by value
        trial.user_attrs["threads"] = fusednn.get_num_threads()
        trial.user_attrs["pid"] = os.getpid()
        return F.branin(config)

    serial = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name="s", seed=2)
    serial.optimize(F.branin, n_trials=4)
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name="r", seed=2)
    executor = hpo.RayExecutor(workers=2, init_kwargs={"num_cpus": 2, "include_dashboard": False,
                                                       "log_to_driver": False})
    study.optimize(objective, n_trials=4, executor=executor)
    assert not ray.is_initialized()  # it started Ray, so it shut it down
    trials = study.trials
    assert [(t.status, t.config, t.value) for t in trials] == [("complete", t.config, t.value) for t in serial.trials]
    assert all(t.attrs["threads"] == 1 and t.attrs["pid"] != os.getpid() for t in trials)


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r'pip install "fusednn\[ray\]"'):
        hpo.RayExecutor()
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:")
    with pytest.raises(ImportError, match=r"fusednn\[ray\]"):
        study.optimize(F.branin, n_trials=1, executor="ray")


def test_ray_executor_bad_address():
    pytest.importorskip("ray")
    with pytest.raises(TypeError, match="address"):
        hpo.RayExecutor(address=5)


_DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    from fusednn import hpo
    from fusednn.hpo import functions as F

    KILL = sys.argv[2:] == ["kill"]

    def objective(config, trial):
        # like hpo.fit_trial: state and history in the checkpoint; the whole history is reported
        path = os.path.join(trial.checkpoint_dir, "state.json")
        history = json.load(open(path)) if os.path.exists(path) else []
        for epoch in range(len(history) + 1, trial.budget + 1):
            history.append(F.branin(config) + 10.0 / epoch)
            with open(path + ".tmp", "w") as f:
                json.dump(history, f)
            os.replace(path + ".tmp", path)
            if KILL and trial.budget == 3 and epoch == 2:
                # the first promoted job, between its checkpointed epochs: the driver dies here
                os.kill(os.getpid(), signal.SIGKILL)
        for epoch, value in enumerate(history, 1):
            trial.report(epoch, value)

    if __name__ == "__main__":
        study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), scheduler=hpo.Hyperband(9, 3),
                          storage=sys.argv[1], name="killed", seed=11)
        study.optimize(objective)
        print("done", len(study.trials))
""")


def test_a_study_resumes_after_sigkill_of_its_driver(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    db = str(tmp_path / "study.db")
    # The first run kills itself (SIGKILL, no cleanup) in the first promoted job of Hyperband's
    # first bracket, after that job's second epoch is checkpointed: always at the same point.
    killed = subprocess.run([sys.executable, str(script), db, "kill"], capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    snapshot = con.execute("SELECT number, status, value, config, finished FROM trials").fetchall()
    con.close()
    assert sum(r[1] == "paused" for r in snapshot) >= 8 and sum(r[1] == "running" for r in snapshot) == 1, snapshot
    result = subprocess.run([sys.executable, str(script), db], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "done 17" in result.stdout  # Hyperband(9, 3): brackets of 9, 5 and 3 configurations

    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), scheduler=hpo.Hyperband(9, 3), storage=db,
                      name="killed", seed=11)
    trials = {t.number: t for t in study.trials}
    assert {t.status for t in trials.values()} == {"complete", "pruned"}
    for number, status, value, config, finished in snapshot:
        if status == "complete":  # nothing that finished is lost or redone
            assert trials[number].value == value and trials[number].finished == finished
        assert trials[number].config == json.loads(config)
    # the scheduler's state was replayed: exactly the paper's schedule, each job once
    counts = {}
    for job in study._jobs.values():
        counts[(job["bracket"], job["budget"])] = counts.get((job["bracket"], job["budget"]), 0) + 1
    assert counts == {(0, 1): 9, (0, 3): 3, (0, 9): 1, (1, 3): 5, (1, 9): 1, (2, 9): 3}
    # every epoch reported, in order (the interrupted trial continued from its checkpoint)
    for t in trials.values():
        assert [e for e, _ in t.reports] == list(range(1, t.budget + 1))
    # and the configurations are those of a study that was never killed
    whole = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), scheduler=hpo.Hyperband(9, 3), storage=":memory:",
                      name="whole", seed=11)
    whole.optimize(_objective_in_process, n_trials=None)
    assert [t.config for t in whole.trials] == [trials[k].config for k in sorted(trials)]
    assert [t.value for t in whole.trials] == [trials[k].value for k in sorted(trials)]


def _objective_in_process(config, trial):
    for epoch in range(1, trial.budget + 1):
        trial.report(epoch, F.branin(config) + 10.0 / epoch)
