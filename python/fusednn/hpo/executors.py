"""Executors: where the jobs of a study run. The study's driver keeps the storage (it is the
only writer); an executor only runs ``objective(config, trial)`` and sends back what happened.

* :class:`SerialExecutor`: one job at a time in the driver's process.
* :class:`ProcessExecutor`: ``workers`` local processes (``concurrent.futures`` with the
  ``forkserver`` start method where there is one, else ``spawn``: a worker never inherits
  the driver's threads). Each worker sets ``fusednn.set_num_threads(threads)`` (and its BLAS
  to as many) with ``workers * threads <= cores``. The objective must pickle: a module-level
  function.
* :class:`RayExecutor`: Ray tasks, through ``ray.init()`` (a local Ray) or
  ``ray.init(address=...)`` (``"auto"`` or a cluster's address); each task reserves
  ``cpus_per_trial`` CPUs and runs fusednn with that many threads. Ray is the optional extra
  ``pip install "fusednn[ray]"``. On a cluster, give the study a ``checkpoint_root`` that every
  node sees (a shared file system) when trials resume from checkpoints.
"""

import os
import pickle
import socket
import time
import traceback

from fusednn import _checks
from fusednn.hpo.trial import Trial

__all__ = ["Executor", "SerialExecutor", "ProcessExecutor", "RayExecutor", "make_executor", "available_cores",
           "run_job"]


def available_cores():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _count(name, value, minimum=1):
    v = _checks.integer(name, value, f"an integer >= {minimum}")
    if v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return v


def run_job(objective, spec):
    """Run ``objective(config, trial)`` for one job ``spec`` (number, config, seed, budget,
    checkpoint_dir); what happened as a dict: ``value`` (a float or None), ``reports``,
    ``attrs``, ``error`` (the traceback of an exception, else None), ``started`` (time.time()),
    ``duration`` (seconds) and ``worker`` ("host:pid")."""
    trial = Trial(spec["number"], dict(spec["config"]), spec["seed"], spec["budget"], spec["checkpoint_dir"])
    started, t0 = time.time(), time.perf_counter()
    value, error = None, None
    try:
        value = objective(dict(spec["config"]), trial)
        if value is not None:
            value = _checks.real("the objective's return value", value, "a number or None")
    except Exception:
        error = traceback.format_exc()
    return {"value": value, "reports": list(trial.reports), "attrs": dict(trial.user_attrs), "error": error,
            "started": started, "duration": time.perf_counter() - t0, "worker": f"{socket.gethostname()}:{os.getpid()}"}


def _crashed(error):
    return {"value": None, "reports": [], "attrs": {}, "error": error, "started": time.time(), "duration": 0.0,
            "worker": None}


class Executor:
    """Runs jobs: ``start(objective)``, ``submit(spec) -> handle`` (at most ``capacity`` at
    once), ``wait() -> [(handle, result), ...]`` (at least one finished job; results as
    :func:`run_job` makes them), ``shutdown()``."""

    capacity = 1

    def start(self, objective):
        self.objective = objective

    def submit(self, spec):
        raise NotImplementedError

    def wait(self):
        raise NotImplementedError

    def shutdown(self):
        pass


class SerialExecutor(Executor):
    """Runs each job in the calling process, when :meth:`wait` is called."""

    def __init__(self):
        self._queue = []

    def submit(self, spec):
        handle = object()
        self._queue.append((handle, spec))
        return handle

    def wait(self):
        handle, spec = self._queue.pop(0)
        return [(handle, run_job(self.objective, spec))]

    def shutdown(self):
        self._queue.clear()


def _init_worker(threads):
    import fusednn
    fusednn.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(threads)  # NumPy's BLAS, for the rest of the worker's life


class ProcessExecutor(Executor):
    """``workers`` local worker processes (default: one per core), each running fusednn with
    ``threads`` threads (default ``max(1, cores // workers)``; ``workers * threads`` may not
    exceed the cores)."""

    def __init__(self, workers=None, threads=None):
        cores = available_cores()
        self.workers = cores if workers is None else _count("workers", workers)
        self.threads = max(1, cores // self.workers) if threads is None else _count("threads", threads)
        if threads is not None and self.workers * self.threads > max(cores, self.workers):
            raise ValueError(f"threads: {self.workers} workers x {self.threads} threads exceed the {cores} cores; "
                             f"expected threads <= {max(1, cores // self.workers)}")
        self.capacity = self.workers
        self._pool = None
        self._futures = {}

    def start(self, objective):
        try:
            pickle.dumps(objective)
        except Exception as err:
            raise TypeError(f"executor='process' needs an objective that pickles (a function defined at the top "
                            f"level of an importable module), got {objective!r}: {err}") from None
        super().start(objective)

    def _ensure_pool(self):
        if self._pool is None:
            import concurrent.futures
            import multiprocessing
            method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context(method), initializer=_init_worker,
                initargs=(self.threads,))
        return self._pool

    def submit(self, spec):
        future = self._ensure_pool().submit(run_job, self.objective, spec)
        self._futures[future] = spec
        return future

    def wait(self):
        import concurrent.futures
        from concurrent.futures.process import BrokenProcessPool
        done, _ = concurrent.futures.wait(list(self._futures), return_when=concurrent.futures.FIRST_COMPLETED)
        out = []
        for future in done:
            del self._futures[future]
            try:
                out.append((future, future.result()))
            except BrokenProcessPool as err:  # a worker died (killed, crashed): its jobs fail, a new pool starts
                out.append((future, _crashed(f"the worker process died: {err}")))
                self._pool = None
            except Exception:
                out.append((future, _crashed(traceback.format_exc())))
        return out

    def shutdown(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()


_RAY_MISSING = ('executor="ray" needs Ray, the optional extra: pip install "fusednn[ray]" (or pip install ".[ray]" '
                'in a checkout)')


def _ray_job(objective, spec, threads):
    import fusednn
    fusednn.set_num_threads(threads)
    return run_job(objective, spec)


class RayExecutor(Executor):
    """Ray tasks: ``address`` None starts (or joins the already initialized) local Ray;
    ``"auto"`` or ``"ray://host:port"`` etc. joins a cluster. ``workers``: jobs at once
    (default: the cluster's CPUs // ``cpus_per_trial``). ``init_kwargs`` go to ``ray.init``
    (e.g. ``{"num_cpus": 2}``). A Ray this executor started is shut down at the end."""

    def __init__(self, address=None, workers=None, cpus_per_trial=1, init_kwargs=None):
        try:
            import ray  # noqa: F401
        except ImportError as err:
            raise ImportError(_RAY_MISSING) from err
        if address is not None and not isinstance(address, str):
            raise TypeError(f"address: expected None, 'auto' or a Ray address string, got {address!r}")
        if init_kwargs is not None and not isinstance(init_kwargs, dict):
            raise TypeError(f"init_kwargs: expected a dict of ray.init arguments, got {type(init_kwargs).__name__}")
        self.address, self.init_kwargs = address, dict(init_kwargs or {})
        self.workers = None if workers is None else _count("workers", workers)
        self.cpus_per_trial = _count("cpus_per_trial", cpus_per_trial)
        self._owns = False
        self._refs = {}

    def start(self, objective):
        import ray
        super().start(objective)
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init_kwargs)
            self._owns = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = self.workers or max(1, cpus // self.cpus_per_trial)
        self._task = ray.remote(num_cpus=self.cpus_per_trial, max_retries=0)(_ray_job)
        self._objective_ref = ray.put(objective)

    def submit(self, spec):
        ref = self._task.remote(self._objective_ref, spec, self.cpus_per_trial)
        self._refs[ref] = spec
        return ref

    def wait(self):
        import ray
        ready, _ = ray.wait(list(self._refs), num_returns=1)
        out = []
        for ref in ready:
            del self._refs[ref]
            try:
                out.append((ref, ray.get(ref)))
            except Exception:  # the task's worker died, or Ray failed it
                out.append((ref, _crashed(traceback.format_exc())))
        return out

    def shutdown(self):
        import ray
        for ref in self._refs:
            ray.cancel(ref, force=True)
        self._refs.clear()
        if self._owns:
            ray.shutdown()
            self._owns = False


def make_executor(executor, workers=None):
    """An :class:`Executor` from ``"serial"``, ``"process"`` or ``"ray"`` (with ``workers``),
    or the given Executor itself."""
    if isinstance(executor, Executor):
        if workers is not None:
            raise ValueError("workers: give it to the Executor object, not with one")
        return executor
    if executor == "serial":
        if workers not in (None, 1):
            raise ValueError(f"workers: the serial executor runs 1 job at a time, got workers={workers!r}")
        return SerialExecutor()
    if executor == "process":
        return ProcessExecutor(workers)
    if executor == "ray":
        return RayExecutor(workers=workers)
    raise ValueError(f"executor: expected 'serial', 'process', 'ray' or an Executor, got {executor!r}")
