"""Learning-rate schedules: values from the formulas, composition, ReduceLROnPlateau, argument
checks. (Agreement with torch.optim.lr_scheduler is checked outside the test suite, which does
not depend on torch.)"""

import math
import sys

import numpy as np
import pytest
from conftest import assert_close

from fusednn.optim import schedules as S

KIND = "python-float"  # schedules compute in Python floats: conftest's row for them


# ----------------------------------------------------------------------------------------------
# values from the formulas


def test_constant():
    sched = S.constant(0.1)
    assert [sched(t) for t in (0, 1, 1000)] == [0.1, 0.1, 0.1]
    assert type(sched(3)) is float


def test_piecewise_constant_switches_at_each_boundary():
    sched = S.piecewise_constant([10, 20], [1.0, 0.5, 0.1])
    assert [sched(t) for t in (0, 9, 10, 19, 20, 10**6)] == [1.0, 1.0, 0.5, 0.5, 0.1, 0.1]


def test_step_decay():
    sched = S.step_decay(0.1, step_size=30, gamma=0.5)
    for t in (0, 29, 30, 59, 60, 95):
        assert_close(sched(t), 0.1 * 0.5 ** (t // 30), kind=KIND)
    assert sched(29) == 0.1
    assert_close(sched(30), 0.05, kind=KIND)
    assert_close(sched(60), 0.025, kind=KIND)


def test_multistep_matches_piecewise_constant():
    sched = S.multistep(0.2, milestones=[5, 12], gamma=0.1)
    same = S.piecewise_constant([5, 12], [0.2, 0.2 * 0.1, 0.2 * 0.1 ** 2])
    for t in (0, 4, 5, 11, 12, 40):
        assert_close(sched(t), same(t), kind=KIND)
    assert sched(4) == 0.2
    assert_close(sched(5), 0.02, kind=KIND)
    assert_close(sched(12), 0.002, kind=KIND)


def test_multistep_repeated_milestone_decays_twice():
    sched = S.multistep(1.0, milestones=[3, 3], gamma=0.5)
    assert sched(2) == 1.0 and sched(3) == 0.25


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time(staircase):
    sched = S.inverse_time(0.1, decay_rate=0.5, decay_steps=10, staircase=staircase)
    for t in (0, 5, 10, 15, 37):
        p = t // 10 if staircase else t / 10
        assert_close(sched(t), 0.1 / (1 + 0.5 * p), kind=KIND)
    assert_close(sched(10), 0.1 / 1.5, kind=KIND)
    assert_close(S.inverse_time(1.0, decay_rate=1.0)(3), 0.25, kind=KIND)


@pytest.mark.parametrize("staircase", [False, True])
def test_exponential(staircase):
    sched = S.exponential(0.1, gamma=0.9, decay_steps=4, staircase=staircase)
    for t in (0, 2, 4, 7, 100):
        p = t // 4 if staircase else t / 4
        assert_close(sched(t), 0.1 * 0.9 ** p, kind=KIND)
    assert_close(S.exponential(2.0, gamma=0.5)(3), 0.25, kind=KIND)


@pytest.mark.parametrize("staircase", [False, True])
def test_natural_exponential(staircase):
    sched = S.natural_exponential(0.1, decay_rate=0.3, decay_steps=5, staircase=staircase)
    for t in (0, 3, 5, 12, 50):
        p = t // 5 if staircase else t / 5
        assert_close(sched(t), 0.1 * math.exp(-0.3 * p), kind=KIND)
    assert_close(S.natural_exponential(1.0, decay_rate=math.log(2))(3), 0.125, kind=KIND)


def test_cosine_key_points():
    lr, eta_min, T = 0.1, 0.01, 100
    sched = S.cosine(lr, T, eta_min)
    assert sched(0) == lr
    assert_close(sched(T // 2), (lr + eta_min) / 2, kind=KIND)
    assert_close(sched(T // 4), eta_min + (lr - eta_min) * (1 + math.sqrt(0.5)) / 2, kind=KIND)
    assert_close(sched(T), eta_min, kind=KIND)
    # torch's closed form goes on past T_max: back up to lr at 2 T_max
    assert_close(sched(3 * T // 2), (lr + eta_min) / 2, kind=KIND)
    assert_close(sched(2 * T), lr, kind=KIND)


def test_cosine_hold_eta_min_stays_at_eta_min():
    sched = S.cosine(0.1, 10, 0.001, hold_eta_min=True)
    plain = S.cosine(0.1, 10, 0.001)
    assert [sched(t) for t in range(10)] == [plain(t) for t in range(10)]
    assert sched(10) == sched(15) == sched(1000) == 0.001
    assert "hold_eta_min=True" in repr(sched)


def test_linear():
    sched = S.linear(0.3, start_factor=0.1, end_factor=0.9, total_iters=4)
    for t in range(8):
        assert_close(sched(t), 0.3 * (0.1 + 0.8 * min(t, 4) / 4), kind=KIND)
    defaults = S.linear(1.0)  # torch LinearLR defaults: 1/3 -> 1 over 5 steps
    assert_close(defaults(0), 1 / 3, kind=KIND)
    assert_close(defaults(5), 1.0, kind=KIND)
    assert_close(defaults(50), 1.0, kind=KIND)


def test_linear_allows_start_factor_zero():
    sched = S.linear(0.5, start_factor=0.0, total_iters=10)
    assert sched(0) == 0.0
    assert_close(sched(5), 0.25, kind=KIND)
    assert_close(sched(10), 0.5, kind=KIND)


def test_cyclic_triangular():
    base, top = 0.01, 0.1
    sched = S.cyclic(base, top, step_size_up=10)
    assert_close(sched(0), base, kind=KIND)
    assert_close(sched(5), (base + top) / 2, kind=KIND)
    assert_close(sched(10), top, kind=KIND)
    assert_close(sched(15), (base + top) / 2, kind=KIND)
    assert_close(sched(20), base, kind=KIND)
    assert_close(sched(30), top, kind=KIND)


def test_cyclic_asymmetric_and_sawtooth():
    sched = S.cyclic(0.0, 1.0, step_size_up=4, step_size_down=2)
    assert [round(sched(t), 12) for t in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 0.5, 0.0]
    saw = S.cyclic(0.0, 1.0, step_size_up=4, step_size_down=0)
    assert [round(saw(t), 12) for t in range(9)] == [0.0, 0.25, 0.5, 0.75, 0.0, 0.25, 0.5, 0.75, 0.0]


def test_cyclic_triangular2_halves_the_amplitude_every_cycle():
    base, top, up = 0.1, 0.9, 5
    sched = S.cyclic(base, top, step_size_up=up, mode="triangular2")
    peaks = [sched(up + k * 2 * up) for k in range(5)]
    for k, peak in enumerate(peaks):
        assert_close(peak - base, (top - base) / 2 ** k, kind=KIND)
    for k in range(5):  # every cycle starts from base_lr
        assert_close(sched(2 * up * k), base, kind=KIND)


def test_cyclic_exp_range_scales_by_gamma_per_step():
    base, top, gamma = 0.0, 1.0, 0.99
    sched = S.cyclic(base, top, step_size_up=10, mode="exp_range", gamma=gamma)
    assert_close(sched(10), gamma ** 10, kind=KIND)
    assert_close(sched(30), gamma ** 30, kind=KIND)
    assert_close(sched(5), 0.5 * gamma ** 5, kind=KIND)


def test_cosine_warm_restarts_restart_points():
    lr, T_0, T_mult, eta_min = 0.1, 5, 2, 0.001
    sched = S.cosine_warm_restarts(lr, T_0, T_mult, eta_min)
    restarts = [0, T_0, T_0 * (1 + T_mult), T_0 * (1 + T_mult + T_mult ** 2)]
    lengths = [T_0, T_0 * T_mult, T_0 * T_mult ** 2, T_0 * T_mult ** 3]
    for start, T_i in zip(restarts, lengths):
        assert sched(start) == lr
        assert sched.cycle(start) == (0, T_i)
        assert_close(sched(start + T_i // 2),
                     eta_min + (lr - eta_min) * (1 + math.cos(math.pi * (T_i // 2) / T_i)) / 2, kind=KIND)
        last = sched(start + T_i - 1)  # just before the next restart: near eta_min
        assert_close(last, eta_min + (lr - eta_min) * (1 + math.cos(math.pi * (T_i - 1) / T_i)) / 2, kind=KIND)
        assert last < sched(start + T_i)


def test_cosine_warm_restarts_T_mult_1_is_periodic():
    sched = S.cosine_warm_restarts(1.0, T_0=4)
    assert [sched(t) for t in range(4)] == [sched(t) for t in range(4, 8)] == [sched(t) for t in range(40, 44)]
    assert_close(sched(2), 0.5, kind=KIND)


def test_scale_lr():
    assert_close(S.scale_lr(0.1, 1024), 0.4, kind=KIND)
    assert_close(S.scale_lr(0.1, 64, base_batch_size=256), 0.025, kind=KIND)
    assert_close(S.scale_lr(0.1, 1024, rule="sqrt"), 0.2, kind=KIND)
    assert S.scale_lr(0.1, 256) == 0.1


# ----------------------------------------------------------------------------------------------
# composition


def test_warmup_ramps_linearly_into_the_schedule():
    # the course's warmup: lr0 * t / T' for the updates t = 1..T'; step (updates done) = t - 1
    decay = S.cosine(0.1, 100, 0.001)
    sched = S.warmup(decay, steps=10)
    for t in range(1, 11):
        assert_close(sched(t - 1), 0.1 * t / 10, kind=KIND)
    for t in (10, 11, 60, 110):
        assert sched(t) == decay(t - 10)
    s = S.warmup(decay, steps=4, start_factor=0.2)
    assert_close(s(0), 0.1 * (0.2 + 0.8 * 1 / 4), kind=KIND)
    assert_close(s(2), 0.1 * (0.2 + 0.8 * 3 / 4), kind=KIND)


def test_warmup_first_update_is_not_wasted():
    """The first update had lr 0 (the ramp started at t/T' with t = 0): a wasted step."""
    sched = S.warmup(S.constant(0.3), steps=3)
    assert_close(sched(0), 0.1, kind=KIND)
    assert sched(0) > 0
    assert_close(sched.values(5), [0.1, 0.2, 0.3, 0.3, 0.3], kind=KIND)


def test_warmup_then_cosine_is_continuous_at_the_join():
    steps, lr = 50, 0.1
    sched = S.warmup(S.cosine(lr, 500), steps)
    values = sched.values(steps + 2)
    assert_close(values[steps - 1], lr, kind=KIND)  # the ramp's last update reaches lr0
    assert values[steps] == lr  # the cosine's clock starts at 0
    # the ramp's increments are lr/steps; the cosine's first is tiny
    assert_close(values[steps - 1] - values[steps - 2], lr / steps, kind=KIND)
    assert abs(values[steps + 1] - values[steps]) < lr / steps
    assert np.all(np.diff(values[:steps]) > 0)


def test_warmup_of_zero_steps_is_the_schedule_and_a_number_is_a_constant():
    decay = S.exponential(0.1, 0.9)
    assert S.warmup(decay, 0).values(20).tolist() == decay.values(20).tolist()
    assert_close(S.warmup(0.5, 5)(1), 0.2, kind=KIND)
    assert S.warmup(0.5, 5)(7) == 0.5


def test_sequential_hands_over_at_milestones():
    a, b, c = S.constant(0.01), S.exponential(0.1, 0.5), S.cosine(0.2, 10)
    sched = S.sequential([a, b, c], milestones=[3, 8])
    assert [sched(t) for t in range(3)] == [0.01] * 3
    assert [sched(t) for t in range(3, 8)] == [b(t) for t in range(5)]
    assert sched(3) == 0.1
    assert_close(sched(4), 0.05, kind=KIND)
    assert [sched(t) for t in range(8, 30)] == [c(t) for t in range(22)]
    assert sched(8) == 0.2


def test_sequential_of_one_schedule_and_of_callables():
    assert S.sequential([S.constant(0.3)], []).values(5).tolist() == [0.3] * 5
    sched = S.sequential([lambda t: 0.1 * (t + 1), 0.5], [2])
    assert [sched(t) for t in range(4)] == [0.1, 0.2, 0.5, 0.5]


def test_sequential_warmup_equals_warmup():
    lr, steps, sf = 0.1, 20, 0.1
    a = S.sequential([S.linear(lr, sf + (1 - sf) / steps, 1.0, steps - 1), S.cosine(lr, 100)], [steps])
    b = S.warmup(S.cosine(lr, 100), steps, start_factor=sf)
    assert_close(a.values(150), b.values(150), kind=KIND)


# ----------------------------------------------------------------------------------------------
# ReduceLROnPlateau


def feed(sched, metrics):
    out = []
    for m in metrics:
        sched.step(m)
        out.append(sched(0))
    return out


def test_plateau_waits_patience_evaluations():
    sched = S.ReduceLROnPlateau(factor=0.5, patience=2, schedule=1.0)
    assert sched(0) == 1.0
    # 1.0 sets the best; three evaluations without improvement exceed patience 2
    assert feed(sched, [1.0, 1.0, 1.0]) == [1.0, 1.0, 1.0]
    assert feed(sched, [1.0]) == [0.5]
    assert feed(sched, [1.0, 1.0]) == [0.5, 0.5]
    assert feed(sched, [1.0]) == [0.25]
    assert sched.scale == 0.25


def test_plateau_improvement_resets_the_count():
    sched = S.ReduceLROnPlateau(factor=0.1, patience=1, schedule=1.0)
    assert feed(sched, [5.0, 5.0, 4.0, 4.0, 3.0]) == [1.0] * 5
    assert sched.best == 3.0
    assert feed(sched, [3.0, 3.0]) == [1.0, 0.1]


def test_plateau_cooldown_ignores_evaluations():
    sched = S.ReduceLROnPlateau(factor=0.5, patience=0, cooldown=2, schedule=1.0)
    lrs = feed(sched, [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    # reduce at the 2nd; cooldown 2 skips the 3rd and 4th; the 5th reduces; 6th and 7th cool down
    assert lrs == [1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]
    assert sched.in_cooldown is False


def test_plateau_threshold_rel_and_abs():
    rel = S.ReduceLROnPlateau(factor=0.5, patience=0, threshold=0.1, threshold_mode="rel", schedule=1.0)
    # improving by less than 10 % of the best is not an improvement
    assert feed(rel, [10.0, 9.5]) == [1.0, 0.5]
    assert feed(rel, [8.9]) == [0.5] and rel.best == 8.9
    ab = S.ReduceLROnPlateau(factor=0.5, patience=0, threshold=1.0, threshold_mode="abs", schedule=1.0)
    assert feed(ab, [10.0, 9.5]) == [1.0, 0.5]
    assert feed(ab, [8.9]) == [0.5] and ab.best == 8.9


def test_plateau_mode_max():
    sched = S.ReduceLROnPlateau(mode="max", factor=0.5, patience=0, schedule=1.0)
    assert feed(sched, [0.5, 0.6, 0.7]) == [1.0, 1.0, 1.0]
    assert feed(sched, [0.65]) == [0.5]
    ab = S.ReduceLROnPlateau(mode="max", factor=0.5, patience=0, threshold=0.1, threshold_mode="abs", schedule=1.0)
    assert feed(ab, [0.5, 0.55, 0.7]) == [1.0, 0.5, 0.5]


def test_plateau_min_lr_floor_and_eps():
    sched = S.ReduceLROnPlateau(factor=0.1, patience=0, min_lr=0.003, schedule=1.0)
    assert_close(np.array(feed(sched, [1.0, 1.0, 1.0, 1.0, 1.0])), np.array([1.0, 0.1, 0.01, 0.003, 0.003]), kind=KIND)
    assert_close(sched.scale, 1e-3, kind=KIND)  # reductions at the floor are skipped
    eps = S.ReduceLROnPlateau(factor=0.5, patience=0, eps=0.2, schedule=1.0)
    assert feed(eps, [1.0, 1.0, 1.0, 1.0]) == [1.0, 0.5, 0.25, 0.25]  # 0.25 -> 0.125 is less than eps


def test_plateau_scales_a_schedule():
    inner = S.cosine(0.1, 100)
    sched = S.ReduceLROnPlateau(factor=0.5, patience=0, schedule=inner)
    assert sched(10) == inner(10)
    sched.step(1.0)
    sched.step(1.0)
    for t in (10, 20, 50):
        assert_close(sched(t), 0.5 * inner(t), kind=KIND)
    floored = S.ReduceLROnPlateau(min_lr=0.05, schedule=inner)
    assert floored(99) == 0.05 and floored(0) == 0.1
    assert S.ReduceLROnPlateau()(7) == 1.0  # no schedule: the multiplier itself


def test_plateau_state_dict_round_trip():
    metrics = [3.0, 2.0, 2.5, 2.5, 2.5, 2.4, 2.6, 2.7, 1.0, 1.5]
    a = S.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1, schedule=0.1)
    feed(a, metrics[:6])
    state = a.state_dict()
    assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in state.values())
    b = S.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1, schedule=0.1)
    b.load_state_dict(state)
    assert b.state_dict() == state
    assert feed(a, metrics[6:]) == feed(b, metrics[6:])
    fresh = S.ReduceLROnPlateau().state_dict()
    assert fresh["best"] == math.inf and fresh["scale"] == 1.0 and fresh["last_epoch"] == 0
    with pytest.raises(KeyError, match="missing keys"):
        b.load_state_dict({"best": 1.0})


def test_plateau_values_do_not_move_the_last_step():
    sched = S.ReduceLROnPlateau(schedule=S.cosine(0.1, 10))
    sched(3)
    sched.values(10)
    assert sched.last_step == 3


# ----------------------------------------------------------------------------------------------
# values(), repr, plot


ALL = [
    S.constant(0.1), S.piecewise_constant([3], [0.1, 0.01]), S.step_decay(0.1, 3), S.multistep(0.1, [2, 5]),
    S.inverse_time(0.1, 0.5), S.exponential(0.1, 0.9), S.natural_exponential(0.1, 0.1), S.cosine(0.1, 10),
    S.linear(0.1), S.warmup(S.cosine(0.1, 10), 3), S.cyclic(0.01, 0.1, 4), S.cosine_warm_restarts(0.1, 4, 2),
    S.sequential([S.constant(0.1), S.cosine(0.1, 5)], [3]), S.ReduceLROnPlateau(schedule=0.1),
]


@pytest.mark.parametrize("sched", ALL, ids=lambda s: type(s).__name__)
def test_values_shape_and_agreement_with_call(sched):
    v = sched.values(17)
    assert isinstance(v, np.ndarray) and v.shape == (17,) and v.dtype == np.float64
    assert v.tolist() == [sched(t) for t in range(17)]
    assert sched.values(0).shape == (0,)
    assert isinstance(sched, S.Schedule)


def test_repr_shows_the_call():
    assert repr(S.cosine(0.1, 100, 0.001)) == "cosine(lr=0.1, T_max=100, eta_min=0.001)"
    assert repr(S.step_decay(0.1, 30)) == "step_decay(lr=0.1, step_size=30, gamma=0.1)"
    assert repr(S.warmup(S.constant(0.1), 5)) == "warmup(constant(lr=0.1), steps=5, start_factor=0.0)"
    assert repr(S.sequential([S.constant(0.1), S.constant(0.2)], [3])).startswith("sequential([constant(lr=0.1), ")
    assert repr(S.ReduceLROnPlateau(schedule=0.1)).startswith("ReduceLROnPlateau(mode='min', factor=0.1")


def test_plot_returns_an_axes():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    ax = S.warmup(S.cosine(0.1, 50), 10).plot()
    assert isinstance(ax, Axes)
    assert len(ax.lines) == 1 and len(ax.lines[0].get_xdata()) == 61
    fig, ax2 = plt.subplots()
    assert S.cosine(0.1, 50).plot(steps=20, ax=ax2) is ax2
    plt.close("all")


def test_plot_draws_on_a_given_axes():
    class Recorder:  # what plot() uses of an Axes
        def plot(self, x, y, label=None):
            self.x, self.y, self.label = list(x), list(y), label

        def set_xlabel(self, s):
            self.xlabel = s

        def set_ylabel(self, s):
            self.ylabel = s

    sched = S.step_decay(1.0, 2, 0.5)
    ax = Recorder()
    assert sched.plot(steps=5, ax=ax) is ax
    assert ax.x == [0, 1, 2, 3, 4] and ax.y == [1.0, 1.0, 0.5, 0.5, 0.25] and ax.label == repr(sched)
    sched.plot(steps=[0, 4], ax=ax)
    assert ax.y == [1.0, 0.25]
    sched.plot(ax=ax)
    assert len(ax.x) == 8  # four step sizes by default


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        S.cosine(0.1, 10).plot()


# ----------------------------------------------------------------------------------------------
# bad arguments


@pytest.mark.parametrize("step, error", [(-1, ValueError), (1.0, TypeError), (2.5, TypeError), ("3", TypeError),
                                         (True, TypeError), (None, TypeError)])
def test_bad_step_raises(step, error):
    for sched in (S.cosine(0.1, 10), S.ReduceLROnPlateau(), S.warmup(S.constant(0.1), 3)):
        with pytest.raises(error, match=r"step: expected an integer >= 0"):
            sched(step)


def test_numpy_integer_steps_are_accepted():
    assert S.cosine(0.1, 10)(np.int64(5)) == S.cosine(0.1, 10)(5)


@pytest.mark.parametrize("make, error, message", [
    (lambda: S.step_decay(0.1, 0), ValueError, r"step_size: expected an integer >= 1, got 0"),
    (lambda: S.step_decay(0.1, 2.5), TypeError, r"step_size: expected an integer >= 1, got 2.5"),
    (lambda: S.constant(-0.1), ValueError, r"lr: expected a finite number >= 0, got -0.1"),
    (lambda: S.constant(float("nan")), ValueError, r"lr: expected a finite number >= 0"),
    (lambda: S.constant("0.1"), TypeError, r"lr: expected a finite number >= 0"),
    (lambda: S.piecewise_constant([5, 3], [1, 2, 3]), ValueError, r"boundaries: expected an increasing sequence"),
    (lambda: S.piecewise_constant([5], [1.0]), ValueError, r"values: expected len\(boundaries\) \+ 1 = 2 values"),
    (lambda: S.multistep(0.1, [5, 2]), ValueError, r"milestones: expected a non-decreasing sequence"),
    (lambda: S.multistep(0.1, 5), TypeError, r"milestones: expected"),
    (lambda: S.inverse_time(0.1, -1.0), ValueError, r"decay_rate: expected a finite number >= 0"),
    (lambda: S.exponential(0.1, 0.0), ValueError, r"gamma: expected a finite number > 0"),
    (lambda: S.exponential(0.1, 0.9, decay_steps=0), ValueError, r"decay_steps: expected an integer >= 1"),
    (lambda: S.exponential(0.1, 0.9, staircase=1), TypeError, r"staircase: expected a bool"),
    (lambda: S.cosine(0.1, 0), ValueError, r"T_max: expected an integer >= 1, got 0"),
    (lambda: S.cosine(0.1, 10, eta_min=-1), ValueError, r"eta_min: expected a finite number >= 0"),
    (lambda: S.linear(0.1, total_iters=0), ValueError, r"total_iters: expected an integer >= 1"),
    (lambda: S.linear(0.1, start_factor=-0.5), ValueError, r"start_factor: expected a finite number >= 0"),
    (lambda: S.warmup(S.constant(0.1), -1), ValueError, r"steps: expected an integer >= 0"),
    (lambda: S.warmup(S.constant(0.1), 5, start_factor=1.5), ValueError,
     r"start_factor: expected a finite number in \[0, 1\]"),
    (lambda: S.warmup("cosine", 5), TypeError, r"schedule: expected a Schedule"),
    (lambda: S.cyclic(0.1, 1.0, step_size_up=0), ValueError, r"step_size_up: expected an integer >= 1"),
    (lambda: S.cyclic(0.1, 1.0, step_size_down=-1), ValueError, r"step_size_down: expected None or an integer >= 0"),
    (lambda: S.cyclic(0.1, 1.0, mode="cosine"), ValueError, r"mode: expected one of 'triangular'"),
    (lambda: S.cyclic(0.1, 1.0, gamma=0.0), ValueError, r"gamma: expected a finite number > 0"),
    (lambda: S.cosine_warm_restarts(0.1, 0), ValueError, r"T_0: expected an integer >= 1"),
    (lambda: S.cosine_warm_restarts(0.1, 10, T_mult=1.5), TypeError, r"T_mult: expected an integer >= 1"),
    (lambda: S.sequential([], []), ValueError, r"schedules: expected at least one schedule"),
    (lambda: S.sequential([S.constant(0.1), S.constant(0.2)], []), ValueError,
     r"milestones: expected len\(schedules\) - 1 = 1 milestones, got 0"),
    (lambda: S.sequential([S.constant(0.1), S.constant(0.2)], [0]), ValueError, r"milestones: expected an increasing"),
    (lambda: S.ReduceLROnPlateau(mode="up"), ValueError, r"mode: expected 'min' or 'max'"),
    (lambda: S.ReduceLROnPlateau(factor=1.0), ValueError, r"factor: expected a finite number in \[0, 1\)"),
    (lambda: S.ReduceLROnPlateau(patience=-1), ValueError, r"patience: expected an integer >= 0"),
    (lambda: S.ReduceLROnPlateau(threshold_mode="pct"), ValueError, r"threshold_mode: expected 'rel' or 'abs'"),
    (lambda: S.ReduceLROnPlateau(min_lr=-1e-3), ValueError, r"min_lr: expected a finite number >= 0"),
    (lambda: S.ReduceLROnPlateau().step("low"), TypeError, r"metric: expected a number"),
    (lambda: S.scale_lr(0.1, 0), ValueError, r"batch_size: expected an integer >= 1, got 0"),
    (lambda: S.scale_lr(0.1, 512, rule="log"), ValueError, r"rule: expected 'linear' or 'sqrt'"),
    (lambda: S.cosine(0.1, 10).values(-1), ValueError, r"n: expected an integer >= 0"),
])
def test_bad_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()
