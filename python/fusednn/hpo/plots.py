"""Plots of a study (matplotlib, optional): each function returns a matplotlib Figure (no pyplot
state involved) and saves it to ``path`` when given (format from the extension)."""

import math

__all__ = ["plot_optimization", "plot_parameters", "plot_rungs"]


def _figure(size):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("fusednn.hpo plots need matplotlib: pip install matplotlib") from err
    return Figure(figsize=size, layout="constrained")


def _scored(study):
    """(record, value) of the trials with a value, by number."""
    return [(r, r.value) for r in study.trials if r.value is not None and math.isfinite(r.value)]


def _save(fig, path):
    if path is not None:
        fig.savefig(path)
    return fig


def plot_optimization(study, path=None):
    """Best-so-far value against the trial number and against wall time since the first
    trial was created (complete trials; every trial's value as dots)."""
    scored = _scored(study)
    if not scored:
        raise ValueError(f"study {study.name!r}: no trial has a value to plot")
    better = min if study.direction == "minimize" else max
    fig = _figure((10, 4))
    ax_n, ax_t = fig.subplots(1, 2)
    t0 = min(r.created for r in study.trials)
    done = sorted((r for r, _ in scored if r.status == "complete"), key=lambda r: r.finished)
    for ax, xs, label in ((ax_n, [r.number for r in done], "trial number"),
                          (ax_t, [r.finished - t0 for r in done], "wall time (s)")):
        best, running = [], None
        for r in done:
            running = r.value if running is None else better(running, r.value)
            best.append(running)
        ax.scatter([r.number if ax is ax_n else r.finished - t0 for r, _ in scored], [v for _, v in scored],
                   s=10, alpha=0.4, label="trials")
        if done:
            ax.step(xs, best, where="post", color="C1", label="best so far (complete)")
        ax.set_xlabel(label)
        ax.set_ylabel("objective")
        ax.legend()
    return _save(fig, path)


def plot_parameters(study, path=None):
    """Each hyperparameter against the objective (one panel each; log axes for log ranges)."""
    from fusednn.hpo.space import Choice, IntUniform, LogUniform
    scored = _scored(study)
    if not scored:
        raise ValueError(f"study {study.name!r}: no trial has a value to plot")
    dims = study.sampler.space.dimensions
    fig = _figure((4 * len(dims), 3.5))
    for ax, (name, dim) in zip(fig.subplots(1, len(dims), squeeze=False)[0], dims.items()):
        if isinstance(dim, Choice):
            xs = [dim.options.index(r.config[name]) for r, _ in scored]
            ax.set_xticks(range(len(dim.options)), [str(o) for o in dim.options])
        else:
            xs = [r.config[name] for r, _ in scored]
            if isinstance(dim, LogUniform) or (isinstance(dim, IntUniform) and dim.log):
                ax.set_xscale("log")
        ax.scatter(xs, [v for _, v in scored], s=12, c=[r.number for r, _ in scored], cmap="viridis")
        ax.set_xlabel(name)
        ax.set_ylabel("objective")
    return _save(fig, path)


def plot_rungs(study, path=None):
    """Every trial's reports against epochs (log axis), the rung budgets as vertical lines:
    Hyperband's and ASHA's brackets at a glance. Complete trials in color, the others grey."""
    fig = _figure((7, 4.5))
    ax = fig.subplots()
    drawn = False
    for r in study.trials:
        if not r.reports:
            continue
        epochs, values = zip(*r.reports)
        style = {"color": "C0", "alpha": 0.9} if r.status == "complete" else {"color": "0.6", "alpha": 0.5}
        ax.plot(epochs, values, marker=".", lw=1, **style)
        drawn = True
    if not drawn:
        raise ValueError(f"study {study.name!r}: no trial reported anything")
    for budget in sorted({r.budget for r in study.trials if r.budget is not None}):
        ax.axvline(budget, color="k", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("reported value")
    return _save(fig, path)
