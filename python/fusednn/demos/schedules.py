"""Every learning-rate schedule of :mod:`fusednn.optim.schedules`, plotted over the steps."""

import math
import time

import numpy as np

from fusednn.demos import _common

NAME = "schedules"
TITLE = "Learning-rate schedules"
CLAIM = ("A schedule makes the learning rate a function of the step: the decays (step, multistep, exponential, "
         "natural exponential, inverse time, cosine, linear) lower it over training, warmup raises it from small "
         "values first, cyclic schedules and warm restarts raise it again periodically, and ReduceLROnPlateau "
         "lowers it when the monitored loss stalls.")

STEPS = 200


def _plateau_metric(evaluation):
    """A made-up validation loss, one value per 10 steps: falls, then stalls at 0.3."""
    return max(1.0 / (1.0 + evaluation / 3.0), 0.3)


def _schedules():
    """(factory name, call shown, values over STEPS steps) for every schedule of the module."""
    from fusednn.optim import schedules as S
    calls = [
        ("constant", "constant(0.1)", S.constant(0.1)),
        ("piecewise_constant", "piecewise_constant([60, 120], [0.1, 0.05, 0.01])",
         S.piecewise_constant([60, 120], [0.1, 0.05, 0.01])),
        ("step_decay", "step_decay(0.1, 50, gamma=0.5)", S.step_decay(0.1, 50, 0.5)),
        ("multistep", "multistep(0.1, [80, 150], gamma=0.1)", S.multistep(0.1, [80, 150], 0.1)),
        ("inverse_time", "inverse_time(0.1, 0.05)", S.inverse_time(0.1, 0.05)),
        ("exponential", "exponential(0.1, 0.98)", S.exponential(0.1, 0.98)),
        ("natural_exponential", "natural_exponential(0.1, 0.02)", S.natural_exponential(0.1, 0.02)),
        ("cosine", f"cosine(0.1, T_max={STEPS})", S.cosine(0.1, STEPS)),
        ("linear", f"linear(0.1, 1.0, 0.0, total_iters={STEPS})", S.linear(0.1, 1.0, 0.0, STEPS)),
        ("warmup", f"warmup(cosine(0.1, T_max={STEPS - 20}), steps=20)", S.warmup(S.cosine(0.1, STEPS - 20), 20)),
        ("cyclic", "cyclic(0.01, 0.1, step_size_up=25)", S.cyclic(0.01, 0.1, 25)),
        ("cosine_warm_restarts", "cosine_warm_restarts(0.1, T_0=40, T_mult=2)", S.cosine_warm_restarts(0.1, 40, 2)),
        ("sequential", "sequential([linear(0.1, 0.1, 1.0, 20), exponential(0.1, 0.98)], [20])",
         S.sequential([S.linear(0.1, 0.1, 1.0, 20), S.exponential(0.1, 0.98)], [20])),
    ]
    out = [(name, shown, s.values(STEPS)) for name, shown, s in calls]
    plateau = S.ReduceLROnPlateau(factor=0.5, patience=3, schedule=0.1)
    values = []
    for t in range(STEPS):
        if t and t % 10 == 0:
            plateau.step(_plateau_metric(t // 10))
        values.append(plateau(t))
    out.append(("ReduceLROnPlateau", "ReduceLROnPlateau(factor=0.5, patience=3, schedule=0.1), a loss every 10 steps",
                np.array(values)))
    return out


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn.optim import schedules as S
    started = time.perf_counter()
    made = _schedules()
    marks = (0, 1, 20, 50, 100, STEPS - 1)
    rows = [{"schedule": shown, **{f"lr at {t}": float(v[t]) for t in marks}, "min": float(v.min()),
             "max": float(v.max())} for _, shown, v in made]
    by = {name: v for name, _, v in made}
    missing = [n for n in S.__all__ if n not in by and n not in ("Schedule", "scale_lr")]
    checks = {
        "step decay halves at step 50": math.isclose(by["step_decay"][50], by["step_decay"][49] * 0.5),
        "cosine ends near 0": by["cosine"][-1] < 1e-3 * by["cosine"][0],
        "warmup rises to the cosine's start": by["warmup"][0] < by["warmup"][10] < by["warmup"][20] == 0.1,
        "cyclic peaks at max_lr": math.isclose(by["cyclic"][25], 0.1),
        "plateau reduces": by["ReduceLROnPlateau"][-1] < by["ReduceLROnPlateau"][0],
        "decays are non-increasing": all(np.all(np.diff(by[k]) <= 1e-15) for k in
                                         ("step_decay", "multistep", "exponential", "natural_exponential",
                                          "inverse_time", "cosine", "linear")),
    }
    linear_rule, sqrt_rule = S.scale_lr(0.1, 1024), S.scale_lr(0.1, 1024, rule="sqrt")
    failed = [k for k, ok in checks.items() if not ok]
    measured = (f"{len(made)} schedules over {STEPS} steps (the table's columns are the lr at those steps); "
                f"warmup's lr at step 0 is {by['warmup'][0]:g}; ReduceLROnPlateau halved the lr "
                f"{int(round(math.log2(by['ReduceLROnPlateau'][0] / by['ReduceLROnPlateau'][-1])))} times after the "
                f"made-up loss stalled; scale_lr(0.1, batch_size=1024) (base 256) is {linear_rule:g} by the linear "
                f"rule and {sqrt_rule:g} by the square-root rule"
                + (f"; schedules not shown: {', '.join(missing)}" if missing else ""))
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, ["schedule"] + [f"lr at {t}" for t in marks] + ["min", "max"], rows, measured,
        holds=not failed,
        check="; ".join(checks) + (" (failed: " + ", ".join(failed) + ")" if failed else ": all as documented"))

    def draw(fig):
        axes = fig.subplots(3, 5, sharex=True).ravel()
        for ax, (name, _, v) in zip(axes, made):
            ax.plot(np.arange(STEPS), v)
            ax.set_title(name, fontsize=8)
            ax.tick_params(labelsize=6)
            ax.set_ylim(0, 0.11)
        for ax in axes[len(made):]:
            ax.axis("off")
        for ax in axes[-5:]:
            ax.set_xlabel("step", fontsize=7)
    return _common.finish(result, out_dir, [("schedules.png", (11, 5.5), draw)], dpi, started)
