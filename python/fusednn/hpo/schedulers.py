"""Schedulers: how many epochs each configuration gets. The resource is epochs.

A scheduler hands the study *jobs*: "train a new configuration up to epoch ``budget``" or
"continue trial ``k`` up to epoch ``budget``" (a promotion: the objective resumes from the
trial's checkpoint, :class:`fusednn.hpo.Trial`'s ``checkpoint_dir`` with ``fit(resume=)``, and is
not retrained from scratch). The study reports each job's value back (the value to minimize,
``inf`` for a failed trial, which is never promoted).

* :class:`SuccessiveHalving` ``(min_resource r, max_resource R, eta)``: the rungs are the
  budgets ``R eta^-s, ..., R eta^-1, R`` with ``s = floor(log_eta(R / r))`` (rounded to whole
  epochs; ``r, r eta, ..., R`` when R / r is a power of eta); ``n`` configurations run to
  the first, the best ``floor(n / eta)`` of them continue to the next, and so on
  (synchronous: a rung is decided when all its jobs are back).
* :class:`Hyperband` ``(max_resource R, eta, min_resource=1)``: Li et al. (2018), Algorithm 1.
  With ``s_max = floor(log_eta(R / min_resource))`` and ``B = (s_max + 1) R``, bracket
  ``s = s_max, ..., 0`` runs successive halving from ``n = ceil(B / R * eta^s / (s + 1))``
  configurations at ``r = R eta^-s`` epochs; rung ``i`` keeps ``floor(n_i / eta)`` of the
  ``n_i`` before it at ``r eta^i`` epochs (rounded to whole epochs). For R = 81, eta = 3:
  brackets of 81, 34, 15, 8 and 5 configurations starting at 1, 3, 9, 27 and 81 epochs
  (:meth:`Hyperband.brackets`).
  Brackets run one after the other, but a bracket waiting for its rung to finish lets the next
  one start, so parallel workers stay busy.
* :class:`ASHA` ``(min_resource, max_resource, eta)``: asynchronous successive halving (Li et
  al. 2020): whenever a worker is free, promote the best configuration of the highest rung
  that is in the top ``1/eta`` of the results in its rung so far and not yet promoted; if there is
  none, start a new configuration at the bottom rung.

When the study may create no more trials (its ``n_trials`` reached), a bracket whose bottom
rung is not full is closed with the configurations it has (each rung keeping
``max(1, floor(n_i / eta))``).
"""

import math

from fusednn import _checks

__all__ = ["Scheduler", "SuccessiveHalving", "Hyperband", "ASHA", "Job", "rung_budgets"]


class Job:
    """One unit of work: run trial ``trial`` (None: a new trial) up to epoch ``budget`` (None:
    as the objective likes, without a scheduler); ``bracket`` and ``rung`` say where it
    belongs in the scheduler."""

    __slots__ = ("trial", "budget", "bracket", "rung")

    def __init__(self, trial, budget, bracket=0, rung=0):
        self.trial, self.budget, self.bracket, self.rung = trial, budget, bracket, rung

    def __eq__(self, other):
        return isinstance(other, Job) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return f"Job(trial={self.trial}, budget={self.budget}, bracket={self.bracket}, rung={self.rung})"


def _count(name, value, minimum):
    v = _checks.integer(name, value, f"an integer >= {minimum}")
    if v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return v


def _rungs(min_resource, max_resource, eta):
    """floor(log_eta(max / min)), exactly (integers)."""
    s = 0
    while min_resource * eta ** (s + 1) <= max_resource:
        s += 1
    return s


def rung_budgets(min_resource, max_resource, eta):
    """The rung budgets ``max_resource * eta^-(s - k)`` for ``k = 0 .. s``, ``s =
    floor(log_eta(max_resource / min_resource))``, rounded to whole epochs (at least 1)."""
    s = _rungs(min_resource, max_resource, eta)
    return [max(1, round(max_resource / eta ** (s - k))) for k in range(s + 1)]


class Scheduler:
    """The interface the study drives: :meth:`next_job` (pure: which job now, None for none
    now), :meth:`issued` (the job was started; for a new trial ``job.trial`` holds its number
    by now), :meth:`on_result` and :meth:`finished`. ``max_resource`` is the budget of a
    completed trial. The study replays ``issued``/``on_result`` from its storage in the
    original order to resume, so they must be deterministic."""

    max_resource = None

    def next_job(self, can_create):
        raise NotImplementedError

    def issued(self, job):
        raise NotImplementedError

    def on_result(self, job, value):
        raise NotImplementedError

    def finished(self, can_create):
        """True when no job will ever come again (nothing running counts as nothing to wait for)."""
        raise NotImplementedError

    def describe(self):
        raise NotImplementedError


class _Bracket:
    """Synchronous successive halving of up to ``n`` configurations over ``budgets``."""

    def __init__(self, index, n, budgets, eta):
        self.index, self.n, self.budgets, self.eta = index, n, budgets, eta
        self.rungs = [dict() for _ in budgets]  # trial -> value (None while running)
        self.closed = False  # no more configurations join rung 0

    def _decided(self, i, can_create):
        """Whether rung i is final: all its jobs are back and nothing more can join it."""
        rung = self.rungs[i]
        if not rung or any(v is None for v in rung.values()):
            return False
        if i == 0:
            return self.closed or not can_create
        return self._decided(i - 1, can_create) and all(t in rung for t in self._promotions(i - 1))

    def _promotions(self, i):
        """The trials of a decided rung i that go on to rung i + 1: the best max(1, floor(n_i / eta))
        (ties by trial number; failed ones never)."""
        rung = self.rungs[i]
        ranked = sorted(rung, key=lambda t: (rung[t], t))[:max(1, len(rung) // self.eta)]
        return [t for t in ranked if math.isfinite(rung[t])]

    def _open(self, can_create):
        return not self.closed and can_create and len(self.rungs[0]) < self.n

    def next_job(self, can_create):
        if self._open(can_create):
            return Job(None, self.budgets[0], self.index, 0)
        for i in range(len(self.budgets) - 1):
            if self._decided(i, can_create):
                for t in self._promotions(i):
                    if t not in self.rungs[i + 1]:
                        return Job(t, self.budgets[i + 1], self.index, i + 1)
        return None

    def issued(self, job):
        self.rungs[job.rung][job.trial] = None
        if job.rung > 0 or len(self.rungs[0]) >= self.n:
            self.closed = True  # full, or a promotion out of rung 0 decided it

    def on_result(self, job, value):
        self.rungs[job.rung][job.trial] = value

    def finished(self, can_create):
        if any(v is None for r in self.rungs for v in r.values()) or self._open(can_create):
            return False
        return self.next_job(can_create) is None


class _Brackets(Scheduler):
    """Brackets run in order; one that waits lets the next start (shared by SH and Hyperband)."""

    def __init__(self, eta, max_resource, iterations):
        self.eta, self.max_resource, self.iterations = eta, max_resource, iterations
        self._brackets = []

    def _spec(self, index):
        """(n, budgets) of bracket ``index``, or None past the last one."""
        raise NotImplementedError

    def _bracket(self, index):
        while len(self._brackets) <= index:
            spec = self._spec(len(self._brackets))
            if spec is None:
                return None
            self._brackets.append(_Bracket(len(self._brackets), spec[0], spec[1], self.eta))
        return self._brackets[index]

    def next_job(self, can_create):
        index = 0
        while can_create or index < len(self._brackets):
            b = self._bracket(index)
            if b is None:
                return None
            job = b.next_job(can_create)
            if job is not None:
                return job
            index += 1  # b waits for its running jobs (or is done): the next bracket may start
        return None

    def issued(self, job):
        b = self._bracket(job.bracket)
        if b is None:
            raise ValueError(f"{job!r}: no such bracket in {self.describe()}")
        b.issued(job)

    def on_result(self, job, value):
        self._brackets[job.bracket].on_result(job, value)

    def finished(self, can_create):
        if not all(b.finished(can_create) for b in self._brackets):
            return False
        return not can_create or self._spec(len(self._brackets)) is None


class SuccessiveHalving(_Brackets):
    """Successive halving: brackets of ``n_configs`` configurations (default ``eta^s``, so that one
    reaches ``max_resource``) over the rungs of :func:`rung_budgets`; ``iterations`` brackets
    (None: as many as the study's ``n_trials`` allows)."""

    def __init__(self, min_resource=1, max_resource=27, eta=3, n_configs=None, iterations=None):
        min_resource = _count("min_resource", min_resource, 1)
        max_resource = _count("max_resource", max_resource, 1)
        eta = _count("eta", eta, 2)
        if min_resource > max_resource:
            raise ValueError(f"SuccessiveHalving: expected min_resource <= max_resource, got {min_resource} and "
                             f"{max_resource}")
        super().__init__(eta, max_resource, None if iterations is None else _count("iterations", iterations, 1))
        self.min_resource = min_resource
        self.budgets = rung_budgets(min_resource, max_resource, eta)
        self.n_configs = eta ** (len(self.budgets) - 1) if n_configs is None else _count("n_configs", n_configs, 1)

    def _spec(self, index):
        if self.iterations is not None and index >= self.iterations:
            return None
        return self.n_configs, self.budgets

    def describe(self):
        return {"type": "SuccessiveHalving", "min_resource": self.min_resource, "max_resource": self.max_resource,
                "eta": self.eta, "n_configs": self.n_configs, "iterations": self.iterations}


class Hyperband(_Brackets):
    """Hyperband (Li et al. 2018) over epochs ``min_resource .. max_resource``; ``iterations``
    full rounds of its ``s_max + 1`` brackets (None: as many as the study's ``n_trials`` allows)."""

    def __init__(self, max_resource=81, eta=3, min_resource=1, iterations=1):
        max_resource = _count("max_resource", max_resource, 1)
        min_resource = _count("min_resource", min_resource, 1)
        eta = _count("eta", eta, 2)
        if min_resource > max_resource:
            raise ValueError(f"Hyperband: expected min_resource <= max_resource, got {min_resource} and "
                             f"{max_resource}")
        super().__init__(eta, max_resource, None if iterations is None else _count("iterations", iterations, 1))
        self.min_resource = min_resource
        self.s_max = _rungs(min_resource, max_resource, eta)

    def brackets(self):
        """Li et al.'s table: for s = s_max .. 0, the list of (n_i, r_i) of its rungs."""
        table = []
        R, eta, s_max = self.max_resource, self.eta, self.s_max
        for s in range(s_max, -1, -1):
            n = -(-(s_max + 1) * eta ** s // (s + 1))  # ceil(B / R * eta^s / (s + 1)), B = (s_max + 1) R
            table.append([(n // eta ** i, max(1, round(R / eta ** (s - i)))) for i in range(s + 1)])
        return table

    def _spec(self, index):
        per = self.s_max + 1
        if self.iterations is not None and index >= self.iterations * per:
            return None
        rungs = self.brackets()[index % per]
        return rungs[0][0], [r for _, r in rungs]

    def describe(self):
        return {"type": "Hyperband", "min_resource": self.min_resource, "max_resource": self.max_resource,
                "eta": self.eta, "iterations": self.iterations}


class ASHA(Scheduler):
    """Asynchronous successive halving over the rungs of :func:`rung_budgets`. A
    configuration at rung ``k`` is promotable when it ranks in the top ``floor(m / eta)`` of
    the ``m`` results that rung ``k`` holds so far and has not been promoted yet; the next job
    promotes the best promotable configuration of the highest such rung, else starts a new
    configuration (Li et al. 2020, Algorithm 2). Never waits for a rung to fill, so every
    worker is always busy; needs the study's ``n_trials`` to end."""

    def __init__(self, min_resource=1, max_resource=27, eta=3):
        min_resource = _count("min_resource", min_resource, 1)
        max_resource = _count("max_resource", max_resource, 1)
        self.eta = _count("eta", eta, 2)
        if min_resource > max_resource:
            raise ValueError(f"ASHA: expected min_resource <= max_resource, got {min_resource} and {max_resource}")
        self.min_resource, self.max_resource = min_resource, max_resource
        self.budgets = rung_budgets(min_resource, max_resource, self.eta)
        self.rungs = [dict() for _ in self.budgets]  # trial -> value (None while running)

    def promotable(self, k):
        """The trials of rung k that may be promoted now, best first."""
        done = {t: v for t, v in self.rungs[k].items() if v is not None}
        ranked = sorted(done, key=lambda t: (done[t], t))[:len(done) // self.eta]
        return [t for t in ranked if math.isfinite(done[t]) and t not in self.rungs[k + 1]]

    def next_job(self, can_create):
        for k in range(len(self.budgets) - 2, -1, -1):
            candidates = self.promotable(k)
            if candidates:
                return Job(candidates[0], self.budgets[k + 1], 0, k + 1)
        return Job(None, self.budgets[0], 0, 0) if can_create else None

    def issued(self, job):
        self.rungs[job.rung][job.trial] = None

    def on_result(self, job, value):
        self.rungs[job.rung][job.trial] = value

    def finished(self, can_create):
        if any(v is None for r in self.rungs for v in r.values()):
            return False
        return self.next_job(can_create) is None

    def describe(self):
        return {"type": "ASHA", "min_resource": self.min_resource, "max_resource": self.max_resource,
                "eta": self.eta}


class NoScheduler(Scheduler):
    """Each trial runs once, to the end the objective chooses (budget None)."""

    max_resource = None

    def next_job(self, can_create):
        return Job(None, None) if can_create else None

    def issued(self, job):
        pass

    def on_result(self, job, value):
        pass

    def finished(self, can_create):
        return not can_create

    def describe(self):
        return {"type": "none"}
