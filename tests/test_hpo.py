"""fusednn.hpo: search spaces, samplers, schedulers, the study (storage, failures, resume in
process, reproducibility, results), the CLI. The executors and the resume after SIGKILL are in
test_hpo_executors.py."""

import csv
import json
import math
import os

import numpy as np
import pytest
from conftest import assert_close

from fusednn import hpo
from fusednn.hpo import functions as F
from fusednn.hpo.samplers import log_expected_improvement, log_h
from fusednn.hpo.schedulers import Job, rung_budgets

# ---- spaces


def _dims():
    return {"u": hpo.Uniform(-2.0, 3.0), "lu": hpo.LogUniform(1e-4, 1e-1), "i": hpo.IntUniform(2, 9),
            "li": hpo.IntUniform(1, 1000, log=True), "c": hpo.Choice(["a", 3, 2.5, None, True])}


@pytest.mark.parametrize("name", ["u", "lu", "i", "li", "c"])
def test_every_dimension_maps_to_the_unit_interval_and_back(name):
    dim = _dims()[name]
    rng = np.random.default_rng(0)
    values = [dim.sample(rng) for _ in range(200)] + dim.grid(7)
    for v in values:
        u = dim.to_unit(v)
        assert 0.0 <= u <= 1.0
        back = dim.from_unit(u)
        if name in ("u", "lu"):
            assert_close(np.float64(back), np.float64(v), kind="python-float")
        else:
            assert back == v and type(back) is type(v)
    assert dim.from_unit(-0.5) == dim.from_unit(0.0) and dim.from_unit(1.5) == dim.from_unit(1.0)


def test_the_ends_and_the_middle_of_each_map():
    d = _dims()
    assert d["u"].from_unit(0.0) == -2.0 and d["u"].from_unit(1.0) == 3.0 and d["u"].from_unit(0.5) == 0.5
    assert_close(np.float64(d["lu"].from_unit(0.5)), np.float64(math.sqrt(1e-4 * 1e-1)), kind="python-float")
    assert d["lu"].from_unit(0.0) == 1e-4 and d["lu"].from_unit(1.0) == 1e-1
    assert d["i"].from_unit(0.0) == 2 and d["i"].from_unit(1.0) == 9
    assert d["c"].from_unit(0.0) == "a" and d["c"].from_unit(1.0) is True


def test_integers_and_choices_own_equal_cells_of_the_unit_interval():
    u = (np.arange(8000) + 0.5) / 8000
    counts = np.unique([hpo.IntUniform(2, 9).from_unit(x) for x in u], return_counts=True)
    assert counts[0].tolist() == list(range(2, 10)) and set(counts[1].tolist()) == {1000}
    picks = [hpo.Choice(["x", "y", "z", "w"]).from_unit(x) for x in u]
    assert [picks.count(o) for o in "xyzw"] == [2000] * 4
    # log integers: cells of equal width on the log axis, so small values are more likely
    logs = [hpo.IntUniform(1, 100, log=True).from_unit(x) for x in u]
    assert logs.count(1) > logs.count(50) > 0


def test_grids_of_the_dimensions():
    d = _dims()
    assert d["u"].grid(3) == [-2.0, 0.5, 3.0]
    assert d["u"].grid(1) == [0.5]
    lu = d["lu"].grid(4)
    assert_close(np.array(lu), np.array([1e-4, 1e-3, 1e-2, 1e-1]), kind="python-float")
    assert d["i"].grid(10) == list(range(2, 10))  # all 8 integers fit
    assert d["i"].grid(3) == [2, 6, 9]  # 5.5 rounds to 6
    assert d["li"].grid(4) == [1, 10, 100, 1000]
    assert d["c"].grid(2) == ["a", 3, 2.5, None, True]


@pytest.mark.parametrize("make, error, match", [
    (lambda: hpo.Uniform(1.0, 1.0), ValueError, "lo < hi"),
    (lambda: hpo.Uniform(2.0, 1.0), ValueError, "lo < hi"),
    (lambda: hpo.Uniform(0.0, math.inf), ValueError, "finite"),
    (lambda: hpo.Uniform(math.nan, 1.0), ValueError, "finite"),
    (lambda: hpo.Uniform("0", 1.0), TypeError, "lo"),
    (lambda: hpo.Uniform(True, 2.0), TypeError, "lo"),
    (lambda: hpo.LogUniform(0.0, 1.0), ValueError, "lo > 0"),
    (lambda: hpo.LogUniform(-1.0, 1.0), ValueError, "lo > 0"),
    (lambda: hpo.LogUniform(1.0, 0.5), ValueError, "lo < hi"),
    (lambda: hpo.IntUniform(3, 3), ValueError, "lo < hi"),
    (lambda: hpo.IntUniform(0, 10, log=True), ValueError, "lo >= 1"),
    (lambda: hpo.IntUniform(1.0, 10), TypeError, "lo"),
    (lambda: hpo.IntUniform(1, 10, log=1), TypeError, "log"),
    (lambda: hpo.Choice([]), ValueError, "at least one"),
    (lambda: hpo.Choice("abc"), TypeError, "options"),
    (lambda: hpo.Choice(5), TypeError, "options"),
    (lambda: hpo.Choice([1, 1]), ValueError, "distinct"),
    (lambda: hpo.Choice([[1, 2]]), TypeError, r"options\[0\]"),
    (lambda: hpo.Choice([math.nan]), ValueError, "finite"),
    (lambda: hpo.SearchSpace({}), ValueError, "at least one"),
    (lambda: hpo.SearchSpace([("a", hpo.Uniform(0, 1))]), TypeError, "dict"),
    (lambda: hpo.SearchSpace({"a": (0, 1)}), TypeError, "space"),
    (lambda: hpo.SearchSpace({1: hpo.Uniform(0, 1)}), TypeError, "names"),
    (lambda: hpo.Uniform(0, 1).to_unit(2.0), ValueError, "value"),
    (lambda: hpo.IntUniform(0, 5).to_unit(2.5), TypeError, "value"),
    (lambda: hpo.Choice(["a"]).to_unit("b"), ValueError, "one of"),
    (lambda: hpo.Choice([1]).to_unit(True), ValueError, "one of"),  # True == 1 but is not the option 1
    (lambda: hpo.Uniform(0, 1).from_unit(math.nan), ValueError, "finite"),
    (lambda: hpo.Uniform(0, 1).grid(0), ValueError, "resolution"),
    (lambda: hpo.SearchSpace({"a": hpo.Uniform(0, 1)}).to_unit({"b": 0.5}), ValueError, "keys"),
    (lambda: hpo.SearchSpace({"a": hpo.Uniform(0, 1)}).from_unit([0.5, 0.5]), ValueError, "shape"),
])
def test_bad_spaces_are_clear_errors(make, error, match):
    with pytest.raises(error, match=match):
        make()


# ---- samplers


def test_grid_search_tries_every_point_once_in_order_then_is_exhausted():
    space = {"a": hpo.Uniform(0.0, 1.0), "b": hpo.Choice(["x", "y"]), "c": hpo.IntUniform(1, 3)}
    grid = hpo.GridSearch(space, resolution={"a": 3})
    assert grid.size == 3 * 2 * 3
    history = []
    for _ in range(grid.size):
        history.append((grid.suggest(history), 0.0))
    configs = [c for c, _ in history]
    assert configs[0] == {"a": 0.0, "b": "x", "c": 1} and configs[1] == {"a": 0.0, "b": "x", "c": 2}
    assert configs[-1] == {"a": 1.0, "b": "y", "c": 3}
    assert len({tuple(c.values()) for c in configs}) == grid.size
    with pytest.raises(hpo.SearchSpaceExhausted):
        grid.suggest(history)
    # pending points are skipped too
    assert grid.suggest([], pending=[configs[0]]) == configs[1]


def test_grid_search_bad_arguments():
    with pytest.raises(ValueError, match="not in the space"):
        hpo.GridSearch({"a": hpo.Uniform(0, 1)}, resolution={"z": 3})
    with pytest.raises(ValueError, match="resolution"):
        hpo.GridSearch({"a": hpo.Uniform(0, 1)}, resolution=0)
    with pytest.raises(TypeError, match="resolution"):
        hpo.GridSearch({"a": hpo.Uniform(0, 1)}, resolution=2.5)


def test_random_search_is_reproducible_from_its_generator_and_stays_in_the_space():
    s = hpo.RandomSearch(_dims())
    a = [s.suggest(rng=np.random.default_rng([7, k])) for k in range(20)]
    b = [s.suggest(rng=np.random.default_rng([7, k])) for k in range(20)]
    assert a == b
    for c in a:
        s.space.check(c)
        assert -2.0 <= c["u"] <= 3.0 and 2 <= c["i"] <= 9
    seeded = [hpo.RandomSearch(_dims(), seed=3).suggest() for _ in range(2)]
    assert seeded[0] == seeded[1]
    assert len(s.suggest_batch(5)) == 5


@pytest.mark.parametrize("call, error, match", [
    (lambda s: s.suggest(history=[({"x1": 0.0}, 1.0)]), ValueError, "keys"),
    (lambda s: s.suggest(history=[({"x1": 0.0, "x2": 1.0},)]), TypeError, r"history\[0\]"),
    (lambda s: s.suggest(history=[({"x1": 0.0, "x2": 1.0}, "bad")]), TypeError, "value"),
    (lambda s: s.suggest(history={"x1": 1}), TypeError, "history"),
    (lambda s: s.suggest(pending=[{"x1": 0.0}]), ValueError, "keys"),
    (lambda s: s.suggest(rng=np.random.RandomState(0)), TypeError, "rng"),
    (lambda s: s.suggest_batch(0), ValueError, "n"),
])
def test_bad_sampler_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call(hpo.RandomSearch(F.BRANIN_SPACE))


@pytest.mark.parametrize("make, error, match", [
    (lambda: hpo.GaussianProcessSearch(F.BRANIN_SPACE, n_initial=0), ValueError, "n_initial"),
    (lambda: hpo.GaussianProcessSearch(F.BRANIN_SPACE, batch="mean"), ValueError, "batch"),
    (lambda: hpo.GaussianProcessSearch(F.BRANIN_SPACE, n_candidates=0), ValueError, "n_candidates"),
    (lambda: hpo.GaussianProcessSearch(F.BRANIN_SPACE, seed=-1), ValueError, "seed"),
    (lambda: hpo.RandomSearch({"a": 1}), TypeError, "space"),
])
def test_bad_gp_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_log_h_against_its_direct_form_and_its_asymptotic_series():
    from scipy.special import ndtr
    z = np.linspace(-5.0, 8.0, 131)
    direct = np.log(np.exp(-z * z / 2) / math.sqrt(2 * math.pi) + z * ndtr(z))
    assert_close(log_h(z), direct, kind="transcendental")
    # far below, h(z) = phi(z) (1/x^2 - 3/x^4 + 15/x^6 - 105/x^8 + ...) with x = -z
    x = np.array([100.0, 1e3, 1e5, 1e9, 1e30])
    series = (-x * x / 2 - 0.5 * math.log(2 * math.pi)
              + np.log(1 / x ** 2 - 3 / x ** 4 + 15 / x ** 6 - 105 / x ** 8))
    assert_close(log_h(-x), series, kind="transcendental")
    assert np.all(np.isfinite(log_h(np.array([-1e150, -40.0, -1.0, 0.0, 40.0]))))
    # continuous where the branches meet
    for z0 in (-1.0, -1 / math.sqrt(np.finfo(float).eps)):
        lo, hi = log_h(np.array([np.nextafter(z0, -np.inf)])), log_h(np.array([np.nextafter(z0, np.inf)]))
        assert abs(lo[0] - hi[0]) <= 1e-9 * abs(lo[0])
    # log EI is increasing in the improvement and in the std when the mean is worse
    assert np.all(np.diff(log_expected_improvement(np.linspace(5, 0, 20), 1.0, 0.0)) > 0)
    assert np.all(np.diff(log_expected_improvement(3.0, np.linspace(0.1, 2, 20), 0.0)) > 0)


def _run_sampler(sampler, fn, n, seed, stop_below=None):
    history = []
    for k in range(n):
        config = sampler.suggest(history, rng=np.random.default_rng([seed, k, 1]))
        history.append((config, fn(config)))
        if stop_below is not None and history[-1][1] < stop_below:
            break
    return history


def test_gp_search_finds_the_branin_minimum_within_40_evaluations_and_beats_random():
    # Two seeds here (time); bench/bench_hpo.py reports the fraction over 10 seeds.
    target = F.BRANIN_MINIMUM + 1e-2
    gp_best = []
    for seed in (0, 1):
        history = _run_sampler(hpo.GaussianProcessSearch(F.BRANIN_SPACE), F.branin, 40, seed, stop_below=target)
        best = min(v for _, v in history)
        assert best < target, f"seed {seed}: best {best} after {len(history)} evaluations"
        gp_best.append(best)
    random_best = [min(v for _, v in _run_sampler(hpo.RandomSearch(F.BRANIN_SPACE), F.branin, 40, seed))
                   for seed in range(10)]
    assert max(gp_best) < np.median(random_best)


@pytest.mark.parametrize("batch", ["constant_liar", "kriging_believer"])
def test_gp_batches_are_distinct_and_respect_pending_points(batch):
    space = {"x": hpo.Uniform(0, 1), "n": hpo.IntUniform(1, 4), "c": hpo.Choice(["a", "b"])}
    fn = lambda c: (c["x"] - 0.3) ** 2 + 0.1 * c["n"] + (c["c"] == "b")  # noqa: E731
    gp = hpo.GaussianProcessSearch(space, n_initial=5, n_candidates=200, batch=batch)
    history = _run_sampler(gp, fn, 5, seed=3)
    pending = [{"x": 0.3, "n": 1, "c": "a"}]
    batch_configs = gp.suggest_batch(3, history, pending, rng=np.random.default_rng(0))
    keys = {gp.space.key(c) for c in batch_configs}
    assert len(keys) == 3
    assert not keys & {gp.space.key(c) for c, _ in history} and gp.space.key(pending[0]) not in keys
    for c in batch_configs:
        gp.space.check(c)
        assert 0 <= c["x"] <= 1 and c["n"] in range(1, 5) and c["c"] in ("a", "b")


def test_gp_initial_design_is_random_and_failed_trials_are_left_out():
    gp = hpo.GaussianProcessSearch(F.BRANIN_SPACE, n_initial=3)
    rs = hpo.RandomSearch(F.BRANIN_SPACE)
    for k in range(3):
        assert gp.suggest([], [None] * 0, rng=np.random.default_rng(k)) == rs.suggest(rng=np.random.default_rng(k))
    history = [({"x1": 0.0, "x2": 1.0}, math.nan), ({"x1": 1.0, "x2": 2.0}, None), ({"x1": 2.0, "x2": 3.0}, 5.0)]
    # fewer than 2 finite values: still random
    assert gp.suggest(history, rng=np.random.default_rng(9)) == rs.suggest(rng=np.random.default_rng(9))
    history += [({"x1": 3.0, "x2": 4.0}, 7.0), ({"x1": -3.0, "x2": 9.0}, 2.0)]
    config = gp.suggest(history, rng=np.random.default_rng(9))
    assert -5 <= config["x1"] <= 10 and 0 <= config["x2"] <= 15


# ---- schedulers

# Li et al. (2018), Table 1 (R = 81, eta = 3) and the same rule for R = 27: per bracket s = s_max..0,
# the (n_i, r_i) of its rungs.
PAPER_81 = [[(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
            [(34, 3), (11, 9), (3, 27), (1, 81)],
            [(15, 9), (5, 27), (1, 81)],
            [(8, 27), (2, 81)],
            [(5, 81)]]
PAPER_27 = [[(27, 1), (9, 3), (3, 9), (1, 27)],
            [(12, 3), (4, 9), (1, 27)],
            [(6, 9), (2, 27)],
            [(4, 27)]]


def test_hyperband_brackets_are_the_papers():
    assert hpo.Hyperband(81, 3).brackets() == PAPER_81
    assert hpo.Hyperband(27, 3).brackets() == PAPER_27
    assert [b[0][0] for b in hpo.Hyperband(81, 3).brackets()] == [81, 34, 15, 8, 5]
    assert [b[0][1] for b in hpo.Hyperband(81, 3).brackets()] == [1, 3, 9, 27, 81]
    assert rung_budgets(1, 27, 3) == [1, 3, 9, 27] and rung_budgets(2, 20, 2) == [2, 5, 10, 20]


def epoch_objective(config, trial):
    """A toy 'training': value branin + 10 / epoch; the last epoch trained is kept in the
    checkpoint directory, so a promoted trial continues from there."""
    path = os.path.join(trial.checkpoint_dir, "state.json")
    start = json.load(open(path))["epoch"] if os.path.exists(path) else 0
    trial.user_attrs[f"start@{trial.budget}"] = start
    base = F.branin(config)
    for epoch in range(start + 1, trial.budget + 1):
        trial.report(epoch, base + 10.0 / epoch)
        if trial.should_stop():
            break
    with open(path, "w") as f:
        json.dump({"epoch": trial.budget}, f)


def _jobs_per_rung(study):
    counts = {}
    for job in study._jobs.values():
        counts[(job["bracket"], job["budget"])] = counts.get((job["bracket"], job["budget"]), 0) + 1
    return counts


@pytest.mark.parametrize("executor", ["serial"])
def test_a_hyperband_study_runs_the_papers_schedule_and_promoted_trials_resume(tmp_path, executor):
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), scheduler=hpo.Hyperband(27, 3),
                      storage=str(tmp_path / "s.db"), name="hb")
    study.optimize(epoch_objective, executor=executor)
    expected = {(b, r): n for b, bracket in enumerate(PAPER_27) for n, r in bracket}
    assert _jobs_per_rung(study) == expected
    trials = study.trials
    assert len(trials) == 27 + 12 + 6 + 4
    assert sum(t.status == "complete" for t in trials) == 1 + 1 + 2 + 4
    assert {t.status for t in trials} == {"complete", "pruned"}
    for t in trials:
        epochs = [e for e, _ in t.reports]
        assert epochs == list(range(1, t.budget + 1))  # every epoch once: continued, not retrained
        budgets = sorted(int(k.split("@")[1]) for k in t.attrs)
        assert [t.attrs[f"start@{b}"] for b in budgets] == [0] + budgets[:-1]
    # each promotion took the best of its rung
    for b, bracket in enumerate(PAPER_27):
        for (n, r), (n_next, r_next) in zip(bracket, bracket[1:]):
            at_r = [t for t in trials if _bracket_of(study, t.number) == b and t.budget >= r]
            ranked = sorted(at_r, key=lambda t: (dict(t.reports)[r], t.number))
            promoted = {t.number for t in at_r if t.budget >= r_next}
            assert promoted == {t.number for t in ranked[:n_next]}
    assert study.best.status == "complete"
    assert study.best.value == min(t.value for t in trials if t.status == "complete")


def _bracket_of(study, number):
    return next(j["bracket"] for j in study._jobs.values() if j["trial"] == number)


def test_successive_halving_keeps_the_best_third_per_rung(tmp_path):
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), scheduler=hpo.SuccessiveHalving(1, 9, 3),
                      storage=":memory:", name="sh")
    study.optimize(epoch_objective, n_trials=9)
    assert _jobs_per_rung(study) == {(0, 1): 9, (0, 3): 3, (0, 9): 1}
    trials = study.trials
    first = sorted(trials, key=lambda t: (t.reports[0][1], t.number))
    assert {t.number for t in trials if t.budget >= 3} == {t.number for t in first[:3]}
    # a bracket cut short by n_trials keeps max(1, n // eta) per rung
    short = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), scheduler=hpo.SuccessiveHalving(1, 9, 3),
                      storage=":memory:", name="short")
    short.optimize(epoch_objective, n_trials=5)
    assert _jobs_per_rung(short) == {(0, 1): 5, (0, 3): 1, (0, 9): 1}


def test_asha_promotion_rule():
    asha = hpo.ASHA(1, 9, 3)
    assert asha.budgets == [1, 3, 9]

    def add(trial, rung, value):  # a job issued and its result back
        job = Job(trial, asha.budgets[rung], 0, rung)
        asha.issued(job)
        asha.on_result(job, value)

    add(0, 0, 5.0)
    add(1, 0, 3.0)
    # 2 results at rung 0: floor(2 / 3) = 0 may be promoted, so a new configuration starts
    assert asha.next_job(True) == Job(None, 1, 0, 0)
    assert asha.next_job(False) is None
    add(2, 0, 4.0)
    # 3 results: the best (trial 1) is the top third and goes on at once, without waiting for a full rung
    assert asha.next_job(True) == Job(1, 3, 0, 1)
    asha.issued(Job(1, 3, 0, 1))
    assert asha.next_job(True) == Job(None, 1, 0, 0)  # nothing else is in a top third
    asha.on_result(Job(1, 3, 0, 1), 2.0)
    add(3, 0, 6.0)
    add(4, 0, 7.0)
    assert asha.next_job(True) == Job(None, 1, 0, 0)  # 5 results: top 1 is trial 1, promoted already
    add(5, 0, 1.0)
    assert asha.next_job(True) == Job(5, 3, 0, 1)  # 6 results: top 2 are trials 5 and 1
    add(5, 1, 0.5)
    add(6, 0, 8.0)
    add(7, 0, 9.0)
    add(8, 0, 0.1)
    # rung 1 holds 2 results (none promotable); rung 0's top 3 of 9 are trials 8, 5, 1
    assert asha.next_job(True) == Job(8, 3, 0, 1)
    add(8, 1, 1.5)
    add(9, 0, 0.05)
    # both rung 1 (top 1 of 3: trial 5) and rung 0 (top 3 of 10: trial 9) have a candidate: the higher rung first
    assert asha.next_job(True) == Job(5, 9, 0, 2)
    asha.issued(Job(5, 9, 0, 2))
    assert asha.next_job(False) == Job(9, 3, 0, 1)
    asha.issued(Job(9, 3, 0, 1))
    assert asha.next_job(False) is None and not asha.finished(False)
    asha.on_result(Job(5, 9, 0, 2), 0.01)
    asha.on_result(Job(9, 3, 0, 1), 3.0)
    assert asha.finished(False) and not asha.finished(True)
    # a failed result (inf) is never promoted
    failed = hpo.ASHA(1, 3, 3)
    for t in range(3):
        failed.issued(Job(t, 1, 0, 0))
        failed.on_result(Job(t, 1, 0, 0), math.inf)
    assert failed.next_job(False) is None and failed.finished(False)


def test_an_asha_study_with_a_budget_of_trials(tmp_path):
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), scheduler=hpo.ASHA(1, 9, 3), storage=":memory:",
                      name="asha")
    study.optimize(epoch_objective, n_trials=12)
    counts = _jobs_per_rung(study)
    assert counts[(0, 1)] == 12 and counts[(0, 3)] >= 3 and counts[(0, 9)] >= 1
    assert study.best.budget == 9


@pytest.mark.parametrize("make, error, match", [
    (lambda: hpo.Hyperband(81, 1), ValueError, "eta"),
    (lambda: hpo.Hyperband(0, 3), ValueError, "max_resource"),
    (lambda: hpo.Hyperband(9, 3, min_resource=10), ValueError, "min_resource <= max_resource"),
    (lambda: hpo.Hyperband(81.0, 3), TypeError, "max_resource"),
    (lambda: hpo.Hyperband(81, 3, iterations=0), ValueError, "iterations"),
    (lambda: hpo.SuccessiveHalving(3, 2, 3), ValueError, "min_resource <= max_resource"),
    (lambda: hpo.SuccessiveHalving(1, 9, 3, n_configs=0), ValueError, "n_configs"),
    (lambda: hpo.ASHA(1, 9, 1), ValueError, "eta"),
    (lambda: hpo.ASHA(0, 9, 3), ValueError, "min_resource"),
])
def test_bad_scheduler_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


# ---- the study


def test_a_serial_study_is_reproducible_from_its_seed():
    def run(seed):
        s = hpo.Study(sampler=hpo.GaussianProcessSearch(F.BRANIN_SPACE, n_initial=3, n_candidates=100),
                      storage=":memory:", name="r", seed=seed)
        s.optimize(F.branin, n_trials=5)
        return [(t.config, t.value, t.seed) for t in s.trials]

    a, b = run(1), run(1)
    assert a == b
    assert run(2) != a
    assert len({seed for _, _, seed in a}) == 5
    assert [seed for _, _, seed in a] == [hpo.trial_seed(1, k) for k in range(5)]


def flaky_objective(config, trial):
    """Fails in every way the study must survive, by trial number."""
    k = trial.number
    if k == 1:
        raise ZeroDivisionError("boom")
    if k == 2:
        trial.report(1, 1.0)
        trial.report(2, math.nan)
        assert trial.should_stop()
        return None
    if k == 3:
        return math.nan
    if k == 4:
        return "not a number"
    if k == 5:
        return None
    if k == 6:
        trial.report(1, 4.5)
        return None  # the last report is the value
    return F.branin(config)


def test_failed_trials_keep_their_traceback_and_the_study_goes_on():
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name="f")
    study.optimize(flaky_objective, n_trials=9)
    t = study.trials
    assert [x.status for x in t] == ["complete"] + ["failed"] * 4 + ["failed", "complete", "complete", "complete"]
    assert "ZeroDivisionError: boom" in t[1].error and "Traceback" in t[1].error
    assert "non-finite value: nan at epoch 2" in t[2].error
    assert t[2].reports[0] == (1, 1.0) and t[2].reports[1][0] == 2 and math.isnan(t[2].reports[1][1])
    assert "non-finite" in t[3].error
    assert "TypeError" in t[4].error and "a number or None" in t[4].error
    assert "returned None and reported no value" in t[5].error
    assert t[6].value == 4.5 and t[6].error is None
    assert all(x.value is None for x in t[1:6])
    assert study.best.value == min(x.value for x in t if x.status == "complete")


def test_maximize_and_best():
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name="m", direction="maximize")
    with pytest.raises(ValueError, match="no trial is complete"):
        study.best
    study.optimize(F.branin, n_trials=6)
    assert study.best.value == max(t.value for t in study.trials)


def test_storage_resume_in_process_and_mismatches(tmp_path):
    db = str(tmp_path / "sub" / "study.db")

    def make(**kw):
        args = dict(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=db, name="s", seed=3)
        args.update(kw)
        return hpo.Study(**args)

    first = make().optimize(F.branin, n_trials=4)
    before = first.trials
    again = make()
    assert again.trials == before  # read back as stored
    again.optimize(F.branin, n_trials=6)
    assert again.trials[:4] == before and len(again.trials) == 6
    uninterrupted = make(storage=":memory:").optimize(F.branin, n_trials=6)
    assert [t.config for t in again.trials] == [t.config for t in uninterrupted.trials]
    import sqlite3
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError, match="seed"):
        make(seed=4)
    with pytest.raises(ValueError, match="direction"):
        make(direction="maximize")
    with pytest.raises(ValueError, match="space"):
        make(sampler=hpo.RandomSearch(F.HARTMANN6_SPACE))
    with pytest.raises(ValueError, match="scheduler"):
        make(scheduler=hpo.ASHA())
    make(name="other")  # another study in the same file is fine


def test_csv_export_and_plots(tmp_path):
    study = hpo.Study(sampler=hpo.RandomSearch({**F.BRANIN_SPACE, "c": hpo.Choice(["a", "b"])}),
                      scheduler=hpo.Hyperband(9, 3), storage=":memory:", name="p")
    study.optimize(lambda c, t: epoch_objective(c, t), n_trials=10)
    path = study.to_csv(str(tmp_path / "trials.csv"))
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10 and [int(r["number"]) for r in rows] == list(range(10))
    assert {"param_x1", "param_x2", "param_c", "status", "value", "budget", "seed"} <= set(rows[0])
    assert rows[3]["param_c"] == study.trials[3].config["c"]
    pytest.importorskip("matplotlib")
    for plot, panels in ((hpo.plot_optimization, 2), (hpo.plot_parameters, 3), (hpo.plot_rungs, 1)):
        assert len(plot(study).axes) == panels
    out = tmp_path / "rungs.png"  # saving (one is enough: it is matplotlib's savefig)
    hpo.plot_rungs(study, str(out))
    assert out.stat().st_size > 1000


@pytest.mark.parametrize("make, error, match", [
    (lambda: hpo.Study(sampler=None, storage=":memory:"), TypeError, "sampler"),
    (lambda: hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), scheduler="hyperband", storage=":memory:"),
     TypeError, "scheduler"),
    (lambda: hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name=""), TypeError, "name"),
    (lambda: hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", seed=-1), ValueError, "seed"),
    (lambda: hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", seed=1.5), TypeError, "seed"),
    (lambda: hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", direction="up"), ValueError,
     "direction"),
    (lambda: hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=3), TypeError, "storage"),
])
def test_bad_study_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_trials": 0}, ValueError, "n_trials"),
    ({"n_trials": 2.0}, TypeError, "n_trials"),
    ({"n_trials": None}, ValueError, "never ends"),
    ({"n_trials": 2, "timeout": -1}, ValueError, "timeout"),
    ({"n_trials": 2, "executor": "gpu"}, ValueError, "executor"),
    ({"n_trials": 2, "workers": 0}, ValueError, "workers"),
    ({"n_trials": 2, "workers": 2}, ValueError, "serial"),
    ({"n_trials": 2, "executor": hpo.SerialExecutor(), "workers": 2}, ValueError, "workers"),
])
def test_bad_optimize_arguments(kwargs, error, match):
    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:")
    with pytest.raises(error, match=match):
        study.optimize(F.branin, **kwargs)
    with pytest.raises(TypeError, match="objective"):
        study.optimize("branin", n_trials=2)


def test_grid_study_ends_with_its_grid_and_timeout_ends_a_study(monkeypatch):
    study = hpo.Study(sampler=hpo.GridSearch(F.BRANIN_SPACE, resolution=2), storage=":memory:", name="g")
    study.optimize(F.branin)
    assert len(study.trials) == 4
    # The deadline on a clock that each trial moves 1 s on: trials start at 0, 1, 2 and 3 s, and
    # none at 4 s, past the 3.5 s timeout (no wall-clock time involved).
    import types
    from fusednn.hpo import study as study_module
    clock = [100.0]
    monkeypatch.setattr(study_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0], time=lambda: clock[0]))

    def one_second_objective(config, trial):
        clock[0] += 1.0
        return F.branin(config)
    timed = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name="t")
    timed.optimize(one_second_objective, timeout=3.5)
    assert len(timed.trials) == 4 and all(t.status == "complete" for t in timed.trials)


def test_trial_bad_reports():
    t = hpo.Trial(0, {}, 0, budget=3)
    with pytest.raises(ValueError, match="epoch"):
        t.report(-1, 1.0)
    with pytest.raises(TypeError, match="epoch"):
        t.report(1.5, 1.0)
    with pytest.raises(TypeError, match="value"):
        t.report(1, "x")
    t.report(2, 1.0)
    assert not t.should_stop()
    t.report(3, 0.5)
    assert t.should_stop()
    with pytest.raises(RuntimeError, match="checkpoint"):
        t.checkpoint_dir


# ---- the CLI


def test_cli_hpo_tunes_the_digits_mlp(tmp_path, capsys):
    from fusednn.cli import main
    db = str(tmp_path / "study.db")
    assert main(["hpo", "--sampler", "gp", "--scheduler", "hyperband", "--trials", "5", "--epochs", "3",
                 "--storage", db]) == 0
    out = capsys.readouterr().out
    assert "best: trial" in out and "test accuracy" in out
    acc = float(out.split("test accuracy ")[1].split("%")[0])
    assert acc > 80.0
    # the same name resumes; another scheduler under that name is a usage error
    assert main(["hpo", "--sampler", "gp", "--scheduler", "asha", "--trials", "3", "--storage", db,
                 "--name", "digits-gp-hyperband"]) == 2
    assert "created with scheduler" in capsys.readouterr().err


def test_cli_hpo_bad_arguments(tmp_path, capsys):
    from fusednn.cli import main
    db = str(tmp_path / "s.db")
    assert main(["hpo", "--eta", "1", "--scheduler", "sh", "--storage", db]) == 2
    assert "--eta" in capsys.readouterr().err
    assert main(["hpo", "--workers", "2", "--storage", db]) == 2
    assert main(["hpo", "--ray-address", "auto", "--storage", db]) == 2
    with pytest.raises(SystemExit):
        main(["hpo", "--sampler", "tpe"])
    with pytest.raises(SystemExit):
        main(["hpo", "--trials", "0"])


def test_an_interrupted_optimize_queues_its_running_trial_again():
    calls = []

    def objective(config, trial):
        calls.append(trial.number)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return F.branin(config)

    study = hpo.Study(sampler=hpo.RandomSearch(F.BRANIN_SPACE), storage=":memory:", name="i")
    with pytest.raises(KeyboardInterrupt):
        study.optimize(objective, n_trials=4)
    assert [t.status for t in study.trials] == ["complete", "complete", "queued"]
    study.optimize(objective, n_trials=4)
    assert calls == [0, 1, 2, 2, 3] and all(t.status == "complete" for t in study.trials)


def test_a_grid_feeds_successive_halving_until_it_is_exhausted():
    study = hpo.Study(sampler=hpo.GridSearch(F.BRANIN_SPACE, resolution=2), scheduler=hpo.SuccessiveHalving(1, 9, 3),
                      storage=":memory:", name="gs")
    study.optimize(epoch_objective)  # a 4-point grid: the bracket of 9 closes with 4
    assert _jobs_per_rung(study) == {(0, 1): 4, (0, 3): 1, (0, 9): 1}
    assert len(study.trials) == 4 and study.best.budget == 9
