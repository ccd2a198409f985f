"""Samplers: where to try next. ``sampler.suggest(history, pending=(), rng=None) -> config``.

``history`` is a sequence of ``(config, value)`` pairs of finished trials, ``value`` the
objective to **minimize** (a :class:`~fusednn.hpo.Study` with ``direction="maximize"`` hands
over the negated values; NaN or None marks a failed trial); ``pending`` the configurations
still being evaluated. ``rng`` is a ``numpy.random.Generator`` (a study derives one from its
seed and the trial number, so a serial study is reproducible); without it the sampler uses its
own, seeded by its ``seed``. ``suggest_batch(n, ...)`` proposes ``n`` configurations at once
for parallel workers.
"""

import itertools
import math
import warnings

import numpy as np

from fusednn import _checks
from fusednn.hpo.space import SearchSpace, _grid_points

__all__ = ["Sampler", "GridSearch", "RandomSearch", "GaussianProcessSearch", "SearchSpaceExhausted", "log_h",
           "log_expected_improvement"]


class SearchSpaceExhausted(Exception):
    """The sampler has no configuration left to propose (a grid whose every point was tried)."""


def _count(name, value, minimum):
    v = _checks.integer(name, value, f"an integer >= {minimum}")
    if v < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return v


class Sampler:
    """Base class: a search space and a seed; subclasses implement :meth:`suggest`."""

    def __init__(self, space, seed=None):
        self.space = SearchSpace(space)
        if seed is not None:
            seed = _count("seed", seed, 0)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _generator(self, rng):
        if rng is None:
            return self._rng
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng: expected a numpy.random.Generator or None, got {type(rng).__name__}")
        return rng

    def _history(self, history):
        """history as (config, float value) pairs; failed trials (NaN, None) keep NaN."""
        if isinstance(history, dict) or not hasattr(history, "__iter__"):
            raise TypeError(f"history: expected a sequence of (config, value) pairs, got {type(history).__name__}")
        out = []
        for i, item in enumerate(history):
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise TypeError(f"history[{i}]: expected a (config, value) pair, got {item!r}")
            config, value = item
            self.space.check(config)
            out.append((config, math.nan if value is None else _checks.real(f"history[{i}] value", value)))
        return out

    def _pending(self, pending):
        if isinstance(pending, dict) or not hasattr(pending, "__iter__"):
            raise TypeError(f"pending: expected a sequence of configs, got {type(pending).__name__}")
        pending = list(pending)
        for config in pending:
            self.space.check(config)
        return pending

    def suggest(self, history=(), pending=(), *, rng=None):
        """The next configuration to evaluate (a dict ``name -> value``)."""
        raise NotImplementedError

    def suggest_batch(self, n, history=(), pending=(), *, rng=None):
        """``n`` configurations to evaluate at once: each one is suggested with the ones before
        it counted as pending (so a GP treats them by its ``batch`` rule)."""
        n = _count("n", n, 1)
        pending = self._pending(pending)
        out = []
        for _ in range(n):
            out.append(self.suggest(history, pending + out, rng=rng))
        return out

    def __repr__(self):
        return f"{type(self).__name__}({self.space.names})"


class GridSearch(Sampler):
    """Every combination of a grid, in order (the first hyperparameter varies slowest).

    ``resolution``: the number of evenly spaced values of each continuous dimension (on the
    log axis for log-uniform ones), an int for all or a dict ``name -> int`` (the others get
    5); an integer dimension takes all its values when there are no more than that, a
    :class:`Choice` all its options. A configuration already in ``history`` or ``pending`` is
    skipped; when none is left, :class:`SearchSpaceExhausted`.
    """

    def __init__(self, space, resolution=5):
        super().__init__(space)
        if isinstance(resolution, dict):
            unknown = sorted(set(resolution) - set(self.space.names))
            if unknown:
                raise ValueError(f"resolution: names {unknown} are not in the space {self.space.names}")
            per = {n: resolution.get(n, 5) for n in self.space.names}
        else:
            per = {n: resolution for n in self.space.names}
        for name, r in per.items():
            _grid_points(r)  # checks it
        self.resolution = per
        self.values = [self.space.dimensions[n].grid(per[n]) for n in self.space.names]

    @property
    def size(self):
        """The number of grid points."""
        return math.prod(len(v) for v in self.values)

    def suggest(self, history=(), pending=(), *, rng=None):
        seen = {self.space.key(c) for c, _ in self._history(history)}
        seen.update(self.space.key(c) for c in self._pending(pending))
        for values in itertools.product(*self.values):
            config = dict(zip(self.space.names, values))
            if self.space.key(config) not in seen:
                return config
        raise SearchSpaceExhausted(f"GridSearch: all {self.size} grid points were tried")


class RandomSearch(Sampler):
    """Independent uniform draws on the unit cube, mapped into the space."""

    def suggest(self, history=(), pending=(), *, rng=None):
        self._history(history)
        self._pending(pending)
        return self.space.sample(self._generator(rng))


# ---- log expected improvement

_C1 = 0.5 * math.log(2 * math.pi)
_C2 = 0.5 * math.log(math.pi / 2)
_ASYMPTOTIC = -1.0 / math.sqrt(np.finfo(float).eps)


def _log1mexp(x):
    """log(1 - exp(x)) for x < 0, accurate on both sides of -log 2."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(x > -math.log(2), np.log(-np.expm1(np.minimum(x, -1e-300))), np.log1p(-np.exp(x)))


def log_h(z):
    """``log(phi(z) + z Phi(z))`` for an array z, the log of expected improvement per unit of
    standard deviation, without underflow: directly for z > -1; as
    ``-z^2/2 - log(2 pi)/2 + log1mexp(log(erfcx(-z/sqrt 2) |z|) + log(pi/2)/2)`` below
    (Ament et al. 2023, "Unexpected improvements to expected improvement"); and by its
    asymptote ``-z^2/2 - log(2 pi)/2 - 2 log|z|`` beyond ``-1/sqrt(eps)``."""
    from scipy.special import erfcx, ndtr

    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    upper = z > -1
    zu = z[upper]
    out[upper] = np.log(np.exp(-0.5 * zu * zu) / math.sqrt(2 * math.pi) + zu * ndtr(zu))
    mid = ~upper & (z > _ASYMPTOTIC)
    zm = z[mid]
    out[mid] = -0.5 * zm * zm - _C1 + _log1mexp(np.log(erfcx(-zm / math.sqrt(2)) * np.abs(zm)) + _C2)
    low = ~upper & ~mid
    zl = z[low]
    out[low] = -0.5 * zl * zl - _C1 - 2 * np.log(np.abs(zl))
    return out


def log_expected_improvement(mean, std, best):
    """log EI of a minimization at points with posterior ``mean`` and ``std`` (arrays) over the
    incumbent ``best``: ``log(std) + log_h((best - mean) / std)``."""
    std = np.maximum(np.asarray(std, dtype=float), 1e-12)
    return np.log(std) + log_h((best - np.asarray(mean, dtype=float)) / std)


class GaussianProcessSearch(Sampler):
    """Bayesian optimization with a Gaussian-process surrogate and log expected improvement.

    The first ``n_initial`` trials are random (the initial design). Then each suggestion fits
    scikit-learn's ``GaussianProcessRegressor`` to the unit-cube points and values of the
    finished trials (failed ones are left out): kernel ``C * Matern(nu=2.5)`` with one length
    scale per dimension (ARD) plus a ``WhiteKernel``, ``normalize_y=True``, the kernel's
    hyperparameters fitted by maximizing the log marginal likelihood (L-BFGS-B from the
    current values and ``gp_restarts`` random starts). The acquisition, log EI (see
    :func:`log_expected_improvement`, the incumbent the smallest observed value), is evaluated
    on ``n_candidates`` random points of the unit cube plus as many Gaussian perturbations
    (std 0.05) of the best observed points; the ``n_restarts`` best of them start L-BFGS-B
    (scipy, central-difference gradients), and the best point found is suggested. A suggestion
    equal to a tried or pending configuration (possible with integers and choices) is
    replaced by the best candidate that is new.

    Pending configurations (``pending``, and the earlier ones of :meth:`suggest_batch`) are
    fantasized: ``batch="constant_liar"`` gives them the smallest observed value (CL-min),
    ``"kriging_believer"`` the GP's posterior mean; the GP is refitted with the fantasies
    (kernel hyperparameters kept) before maximizing EI.

    A suggestion runs NumPy's BLAS on one thread (threadpoolctl): the matrices are small, and
    BLAS threads on shared cores made it about ten times slower.
    """

    def __init__(self, space, n_initial=10, *, n_candidates=1000, n_restarts=5, gp_restarts=1,
                 batch="constant_liar", seed=None):
        super().__init__(space, seed)
        self.n_initial = _count("n_initial", n_initial, 1)
        self.n_candidates = _count("n_candidates", n_candidates, 1)
        self.n_restarts = _count("n_restarts", n_restarts, 0)
        self.gp_restarts = _count("gp_restarts", gp_restarts, 0)
        if batch not in ("constant_liar", "kriging_believer"):
            raise ValueError(f"batch: expected 'constant_liar' or 'kriging_believer', got {batch!r}")
        self.batch = batch
        try:
            import scipy.optimize  # noqa: F401
            import sklearn.gaussian_process  # noqa: F401
        except ImportError as err:
            raise ImportError("GaussianProcessSearch needs scikit-learn and scipy: pip install \"fusednn[hpo]\"") \
                from err

    def _kernel(self, d):
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
        return (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=np.full(d, 0.3), length_scale_bounds=(1e-2, 1e2),
                                                          nu=2.5)
                + WhiteKernel(1e-4, (1e-9, 1e-1)))

    def fit(self, X, y, rng):
        """The GaussianProcessRegressor fitted (marginal likelihood) to unit-cube points X and values y."""
        from sklearn.gaussian_process import GaussianProcessRegressor
        gp = GaussianProcessRegressor(self._kernel(X.shape[1]), normalize_y=True, n_restarts_optimizer=self.gp_restarts,
                                      random_state=int(rng.integers(2 ** 31)))
        with warnings.catch_warnings():  # hyperparameters at their bounds: fine here
            warnings.simplefilter("ignore")
            gp.fit(X, y)
        return gp

    def suggest(self, history=(), pending=(), *, rng=None):
        rng = self._generator(rng)
        history, pending = self._history(history), self._pending(pending)
        from threadpoolctl import threadpool_limits
        with threadpool_limits(1, user_api="blas"):  # BLAS threads only slow matrices this small down
            return self._suggest(history, pending, rng)

    def _suggest(self, history, pending, rng):
        done = [(c, v) for c, v in history if math.isfinite(v)]
        if len(history) + len(pending) < self.n_initial or len(done) < 2:
            return self.space.sample(rng)
        X = np.array([self.space.to_unit(c) for c, _ in done])
        y = np.array([v for _, v in done])
        gp = self.fit(X, y, rng)
        best = float(y.min())
        if pending:
            from sklearn.gaussian_process import GaussianProcessRegressor
            Xp = np.array([self.space.to_unit(c) for c in pending])
            lies = np.full(len(Xp), best) if self.batch == "constant_liar" else gp.predict(Xp)
            gp = GaussianProcessRegressor(gp.kernel_, normalize_y=True, optimizer=None)
            gp.fit(np.vstack([X, Xp]), np.concatenate([y, lies]))
        x = self._maximize(gp, best, X[np.argsort(y)[:5]], rng)
        taken = {self.space.key(c) for c, _ in history} | {self.space.key(c) for c in pending}
        for point in x:
            config = self.space.from_unit(point)
            if self.space.key(config) not in taken:
                return config
        return self.space.sample(rng)

    def _acquisition(self, gp, best, X):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mean, std = gp.predict(X, return_std=True)
        return log_expected_improvement(mean, std, best)

    def _maximize(self, gp, best, incumbents, rng):
        """Unit-cube points ordered from the best acquisition value found down: the L-BFGS-B
        results, then the candidates."""
        from scipy.optimize import minimize

        d = incumbents.shape[1]
        local = incumbents[rng.integers(len(incumbents), size=self.n_candidates)]
        local = np.clip(local + 0.05 * rng.standard_normal(local.shape), 0.0, 1.0)
        cand = np.vstack([rng.random((self.n_candidates, d)), local])
        acq = self._acquisition(gp, best, cand)
        order = np.argsort(-acq)
        cand, acq = cand[order], acq[order]
        k = min(self.n_restarts, len(cand))
        if k == 0:
            return cand
        h = 1e-6
        steps = np.concatenate([np.zeros((1, d)), h * np.eye(d), -h * np.eye(d)])

        def negative(flat):  # the sum of -logEI of the k points and its gradient (central differences)
            pts = flat.reshape(k, d)
            values = self._acquisition(gp, best, (pts[:, None, :] + steps[None]).reshape(-1, d)).reshape(k, 2 * d + 1)
            grad = (values[:, 1:d + 1] - values[:, d + 1:]) / (2 * h)
            return -values[:, 0].sum(), -grad.ravel()

        res = minimize(negative, cand[:k].ravel(), jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * (k * d),
                       options={"maxiter": 100})
        found = np.clip(res.x.reshape(k, d), 0.0, 1.0)
        found_acq = self._acquisition(gp, best, found)
        points = np.vstack([found, cand])
        values = np.concatenate([found_acq, acq])
        return points[np.argsort(-values, kind="stable")]
