"""The study: a sampler, a scheduler, an executor and a SQLite storage around an objective.

``study.optimize(objective, n_trials)`` runs until the study holds ``n_trials`` trials (a
resumed study runs only the rest) and none is running. Each job (see
:mod:`fusednn.hpo.schedulers`) calls ``objective(config, trial)``; its value is what it returns,
or, when it returns None, its last ``trial.report``. An objective that raises, returns a
non-number or reports or returns a NaN or infinite value fails its trial (status "failed", the
traceback or reason in ``error``) and the study goes on.

Trial statuses: "running" (a job of it runs), "queued" (its job waits to run again after the
driver was killed), "paused" (it stopped at a rung; the scheduler may promote it),
"complete" (it reached the scheduler's ``max_resource``, or ran without a scheduler),
"pruned" (stopped at a lower rung when ``optimize`` ended) and "failed".

Reproducibility: trial ``k``'s seed is ``SeedSequence([seed, k]).generate_state(1)[0]`` and its
sampler draws from ``default_rng([seed, k, 1])``, so a serial study with the same seed proposes
the same configurations, and with a deterministic objective gets the same results, in a run that
was killed and resumed too.
"""

import csv
import math
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from fusednn import _checks
from fusednn.hpo.executors import make_executor
from fusednn.hpo.samplers import GridSearch, Sampler, SearchSpaceExhausted
from fusednn.hpo.schedulers import ASHA, Job, NoScheduler, Scheduler
from fusednn.hpo.storage import Storage

__all__ = ["Study", "TrialRecord", "trial_seed"]

STATUSES = ("queued", "running", "paused", "complete", "pruned", "failed")


def trial_seed(seed, number):
    """The seed of trial ``number`` of a study seeded ``seed`` (a 32-bit integer)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


@dataclass(frozen=True)
class TrialRecord:
    """A trial as stored: ``number``, ``config``, ``seed``, ``status``, ``value`` (the objective's
    last value, None when failed or unfinished), ``reports`` (``(epoch, value)`` pairs),
    ``budget`` (the epochs of its last job; None without a scheduler), ``error`` (traceback
    or reason of a failure), ``attrs`` (the objective's ``trial.user_attrs``), ``worker``
    ("host:pid" of its last job), ``created``, ``started``, ``finished`` (``time.time()``
    stamps) and ``duration`` (seconds its jobs ran)."""

    number: int
    config: dict
    seed: int
    status: str
    value: float = None
    reports: list = field(default_factory=list)
    budget: int = None
    error: str = None
    attrs: dict = field(default_factory=dict)
    worker: str = None
    created: float = None
    started: float = None
    finished: float = None
    duration: float = 0.0

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Study:
    """A hyperparameter search stored under ``name`` in the SQLite file ``storage``.

    Args:
        sampler: a :class:`~fusednn.hpo.samplers.Sampler` (it holds the search space).
        scheduler: None (every trial runs once) or a SuccessiveHalving, Hyperband or ASHA.
        storage: the SQLite file (created with its directory), or ":memory:".
        name: the study's name in the file; reopening a name resumes that study (with the
            same direction, seed, space and scheduler, else ValueError).
        seed: the study seed (trial seeds and sampler draws derive from it).
        direction: "minimize" or "maximize" the objective.
        checkpoint_root: where the trials' checkpoint directories go (``<root>/trial-00007``);
            default ``<storage directory>/<name>-checkpoints`` (for ":memory:", a temporary
            directory deleted with the Study object).
    """

    def __init__(self, *, sampler, scheduler=None, storage="runs/hpo/study.db", name="study", seed=0,
                 direction="minimize", checkpoint_root=None):
        if not isinstance(sampler, Sampler):
            raise TypeError(f"sampler: expected a GridSearch, RandomSearch or GaussianProcessSearch, got {sampler!r}")
        if scheduler is None:
            scheduler = NoScheduler()
        if not isinstance(scheduler, Scheduler):
            raise TypeError(f"scheduler: expected None, SuccessiveHalving, Hyperband or ASHA, got {scheduler!r}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"name: expected a non-empty string, got {name!r}")
        seed = _checks.integer("seed", seed, "an integer >= 0")
        if seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed}")
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction: expected 'minimize' or 'maximize', got {direction!r}")
        self.sampler, self.scheduler, self.name, self.seed, self.direction = sampler, scheduler, name, seed, direction
        self.storage = Storage(storage)
        self.storage.study(name, direction, seed, sampler.space.describe(), scheduler.describe())
        if checkpoint_root is None:
            if self.storage.path == ":memory:":  # deleted with the study (or at exit)
                self._tmp = tempfile.TemporaryDirectory(prefix=f"fusednn-hpo-{name}-")
                checkpoint_root = self._tmp.name
            else:
                checkpoint_root = os.path.join(os.path.dirname(os.path.abspath(self.storage.path)),
                                               f"{name}-checkpoints")
        self.checkpoint_root = os.fspath(checkpoint_root)
        self._rows = {t["number"]: t for t in self.storage.trials(name)}
        self._jobs = {j["id"]: j for j in self.storage.jobs(name)}
        self._replayed = False

    # ---- results

    @property
    def trials(self):
        """Every trial as a :class:`TrialRecord`, by number."""
        return [TrialRecord(**row) for _, row in sorted(self._rows.items())]

    @property
    def best(self):
        """The complete trial with the best value (ValueError when no trial is complete)."""
        done = [r for r in self.trials if r.status == "complete" and r.value is not None]
        if not done:
            raise ValueError(f"study {self.name!r}: no trial is complete yet")
        sign = 1.0 if self.direction == "minimize" else -1.0
        return min(done, key=lambda r: (sign * r.value, r.number))

    def to_csv(self, path):
        """Write the trials to a CSV file: number, status, value, budget, seed, one ``param_<name>``
        column per hyperparameter, duration, created, started, finished, worker, error."""
        names = self.sampler.space.names
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["number", "status", "value", "budget", "seed", *(f"param_{n}" for n in names), "duration",
                        "created", "started", "finished", "worker", "error"])
            for r in self.trials:
                w.writerow([r.number, r.status, r.value, r.budget, r.seed, *(r.config[n] for n in names), r.duration,
                            r.created, r.started, r.finished, r.worker, r.error])
        return path

    def _loss(self, value):
        return value if self.direction == "minimize" else -value

    # ---- the driver

    def _replay(self):
        """Rebuild the scheduler's state from the stored jobs (issue and finish events in their
        order); the jobs that were running when the driver stopped go back in the queue."""
        events = []
        for j in self._jobs.values():
            job = Job(j["trial"], j["budget"], j["bracket"], j["rung"])
            events.append((j["issued"], 0, job, None))
            if j["done"] is not None:
                value = j["value"]
                events.append((j["done"], 1, job, math.inf if j["status"] == "failed" or value is None
                               else self._loss(value)))
        for _, kind, job, value in sorted(events, key=lambda e: e[0]):
            if kind == 0:
                self.scheduler.issued(job)
            else:
                self.scheduler.on_result(job, value)
        self._seq = max([0] + [e[0] for e in events])
        queue = []
        with self.storage.transaction():
            for j in sorted(self._jobs.values(), key=lambda j: j["issued"]):
                if j["status"] in ("running", "queued"):
                    j["status"] = "queued"
                    self.storage.update_job(self.name, j["id"], status="queued")
                    self._set_trial(j["trial"], status="queued")
                    queue.append(j["id"])
        self._replayed = True
        return queue

    def _set_trial(self, number, **fields):
        self._rows[number].update(fields)
        self.storage.update_trial(self.name, number, **fields)

    def _history(self):
        history, pending = [], []
        for row in self._rows.values():
            if row["status"] in ("running", "queued"):
                pending.append(row["config"])
            elif row["status"] == "failed" or row["value"] is None:
                history.append((row["config"], math.nan))
            else:
                history.append((row["config"], self._loss(row["value"])))
        return history, pending

    def _spec(self, job):
        row = self._rows[job["trial"]]
        return {"number": row["number"], "config": row["config"], "seed": row["seed"], "budget": job["budget"],
                "checkpoint_dir": self.checkpoint_dir(row["number"])}

    def checkpoint_dir(self, number):
        """Trial ``number``'s checkpoint directory (``<checkpoint_root>/trial-00007``)."""
        return os.path.join(self.checkpoint_root, f"trial-{number:05d}")

    def _issue(self, job, config=None):
        """Store a job, and first its trial when ``config`` is given (a new trial), in one
        transaction; tell the scheduler; the job's id."""
        with self.storage.transaction():
            if config is not None:
                job.trial = self._new_trial(config)
            self._seq += 1
            j = {"id": len(self._jobs), "trial": job.trial, "budget": job.budget, "bracket": job.bracket,
                 "rung": job.rung, "status": "running", "value": None, "issued": self._seq, "done": None}
            self.storage.insert_job(self.name, j)
            self._set_trial(job.trial, status="running", budget=job.budget)
            if self._rows[job.trial]["started"] is None:
                self._set_trial(job.trial, started=time.time())
        self._jobs[j["id"]] = j
        self.scheduler.issued(job)
        return j["id"]

    def _new_trial(self, config):
        number = len(self._rows)
        row = {"number": number, "config": config, "seed": trial_seed(self.seed, number), "status": "running",
               "value": None, "reports": [], "budget": None, "error": None, "attrs": {}, "worker": None,
               "created": time.time(), "started": None, "finished": None, "duration": 0.0}
        self._rows[number] = row
        self.storage.insert_trial(self.name, row)
        return number

    def _record(self, job_id, result):
        """A finished job: the trial's reports, value or failure, status; the scheduler learns it."""
        j = self._jobs[job_id]
        row = self._rows[j["trial"]]
        reports = dict(row["reports"])
        reports.update({int(e): float(v) for e, v in result["reports"]})
        value, error = result["value"], result["error"]
        if error is None:
            bad = [(e, v) for e, v in result["reports"] if not math.isfinite(v)]
            if bad:
                error = f"the objective reported a non-finite value: {bad[0][1]} at epoch {bad[0][0]}"
            elif value is None:
                if result["reports"]:
                    value = float(result["reports"][-1][1])
                else:
                    error = "the objective returned None and reported no value"
            elif not math.isfinite(value):
                error = f"the objective returned a non-finite value: {value}"
        job = Job(j["trial"], j["budget"], j["bracket"], j["rung"])
        max_resource = self.scheduler.max_resource
        if error is not None:
            status, value, loss = "failed", None, math.inf
        else:
            loss = self._loss(value)
            status = "complete" if j["budget"] is None or j["budget"] >= max_resource else "paused"
        self._seq += 1
        j.update(status="failed" if error else "done", value=value, done=self._seq)
        with self.storage.transaction():
            self.storage.update_job(self.name, job_id, status=j["status"], value=value, done=self._seq)
            self._set_trial(j["trial"], status=status, value=value, error=error,
                            reports=sorted(reports.items()), attrs={**row["attrs"], **result["attrs"]},
                            worker=result["worker"] or row["worker"], finished=time.time(),
                            duration=row["duration"] + result["duration"])
        self.scheduler.on_result(job, loss)

    def optimize(self, objective, n_trials=None, *, executor="serial", workers=None, timeout=None):
        """Run the study until it holds ``n_trials`` trials and none is running (None: until the
        scheduler's schedule or the grid is done), or until ``timeout`` seconds have passed
        (no job starts after that; running ones finish).

        ``executor``: "serial", "process" (``workers`` local processes), "ray" (``workers`` Ray
        tasks at once; default all the CPUs Ray has), or an Executor object. A KeyboardInterrupt
        (or the driver's death) leaves the running trials to be queued again by the next
        ``optimize``. Returns ``self``."""
        if not callable(objective):
            raise TypeError(f"objective: expected a callable objective(config, trial), got {objective!r}")
        if n_trials is not None:
            n_trials = _checks.integer("n_trials", n_trials, "an integer >= 1 or None")
            if n_trials < 1:
                raise ValueError(f"n_trials: expected an integer >= 1 or None, got {n_trials}")
        if timeout is not None:
            timeout = _checks.positive("timeout", timeout)
        if workers is not None:
            workers = _checks.integer("workers", workers, "an integer >= 1")
            if workers < 1:
                raise ValueError(f"workers: expected an integer >= 1, got {workers}")
        bounded = (isinstance(self.sampler, GridSearch)
                   or (not isinstance(self.scheduler, (NoScheduler, ASHA))
                       and getattr(self.scheduler, "iterations", None) is not None))
        if n_trials is None and timeout is None and not bounded:
            raise ValueError(f"n_trials: this study ({type(self.sampler).__name__}, {type(self.scheduler).__name__}) "
                             "never ends by itself; give n_trials or a timeout")
        ex = make_executor(executor, workers)
        queue = self._replay() if not self._replayed else [j["id"] for j in self._jobs.values()
                                                            if j["status"] == "queued"]
        deadline = None if timeout is None else time.monotonic() + timeout
        exhausted = False
        running = {}

        def can_create():
            return (not exhausted and (n_trials is None or len(self._rows) < n_trials)
                    and (deadline is None or time.monotonic() < deadline))

        ex.start(objective)
        finished_normally = False
        try:
            while True:
                while len(running) < ex.capacity and (deadline is None or time.monotonic() < deadline):
                    if queue:
                        job_id = queue.pop(0)
                        with self.storage.transaction():
                            self._jobs[job_id]["status"] = "running"
                            self.storage.update_job(self.name, job_id, status="running")
                            self._set_trial(self._jobs[job_id]["trial"], status="running")
                    else:
                        job = self.scheduler.next_job(can_create())
                        if job is None:
                            break
                        if job.trial is None:
                            history, pending = self._history()
                            number = len(self._rows)
                            try:
                                config = self.sampler.suggest(history, pending,
                                                              rng=np.random.default_rng([self.seed, number, 1]))
                            except SearchSpaceExhausted:
                                exhausted = True
                                continue
                            job_id = self._issue(job, config)
                        else:
                            job_id = self._issue(job)
                    running[ex.submit(self._spec(self._jobs[job_id]))] = job_id
                if not running:
                    break
                for handle, result in ex.wait():
                    self._record(running.pop(handle), result)
            finished_normally = True
        finally:
            ex.shutdown()
            with self.storage.transaction():
                if finished_normally:
                    for number, row in self._rows.items():
                        if row["status"] == "paused":
                            self._set_trial(number, status="pruned")
                else:  # interrupted (KeyboardInterrupt, an error): the next optimize runs these jobs again
                    for j in self._jobs.values():
                        if j["status"] in ("running", "queued"):
                            j["status"] = "queued"
                            self.storage.update_job(self.name, j["id"], status="queued")
                            self._set_trial(j["trial"], status="queued")
        return self
