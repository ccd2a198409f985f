"""Loss landscapes of a trained MLP with and without batch norm: the 1-D interpolation from the
initialization and the 2-D plane of filter-normalized random directions (Li et al. 2018)."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "landscape"
TITLE = "Loss landscapes"
CLAIM = ("Along the line from the initial to the trained parameters the loss falls smoothly, without barriers "
         "(Goodfellow et al. 2015); in filter-normalized random directions (Li et al. 2018), which make networks "
         "comparable, the minimum of the network with batch norm is wider and flatter than that of the same "
         "network without it.")


def _models(norm, epochs, x, y):
    """(the initialization, the trained model) of an MLP 64-64-64-10."""
    from fusednn import nn, optim
    init = nn.MLP([64, 64, 64, 10], norm=norm, seed=0)
    model = nn.MLP([64, 64, 64, 10], norm=norm, seed=0)
    _common.train(model, nn.losses.SoftmaxCrossEntropy(), optim.Adam(model.parameter_groups(), lr=1e-3), x, y,
                  epochs=epochs, batch_size=32)
    return init, model


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import diagnostics
    started = time.perf_counter()
    epochs, points_1d, points_2d = (5, 13, 9) if quick else (20, 31, 31)
    x, y = _common.digits("train")
    xe, ye = x[:500], y[:500]  # the loss is evaluated on these (as one batch: batch norm uses its statistics)
    alphas_1d = np.linspace(-0.25, 1.25, points_1d)
    grid = np.linspace(-1.0, 1.0, points_2d)
    rows, lines, planes = [], {}, {}
    for label, norm in (("no batch norm", None), ("batch norm", "batch")):
        init, model = _models(norm, epochs, x, y)
        _, line = diagnostics.landscape_1d(init, xe, ye, end=model, alphas=alphas_1d, training=True)
        _, _, plane = diagnostics.landscape_2d(model, xe, ye, alphas=grid, seed=0, training=True)
        lines[label], planes[label] = line, plane
        a, b = np.meshgrid(grid, grid)
        radius = np.hypot(a, b)
        center = plane[points_2d // 2, points_2d // 2]
        rows.append({"model": f"MLP 64-64-64-10, {label}", "loss at the minimum": center,
                     "loss at the initialization": float(np.interp(0.0, alphas_1d, line)),
                     "1-D: rises between init and minimum": bool(np.any(np.diff(line[(alphas_1d >= 0) &
                                                                                     (alphas_1d <= 1)]) > 0)),
                     "2-D: mean loss increase, radius <= 0.5": float(np.mean(plane[radius <= 0.5] - center)),
                     "2-D: mean loss increase, radius <= 1": float(np.mean(plane[radius <= 1.0] - center))})
    key = "2-D: mean loss increase, radius <= 1"
    flat, sharp = rows[1][key], rows[0][key]
    measured = (f"after {epochs} epochs of Adam on digits, the loss (on 500 training samples, batch statistics) rises "
                f"on average by {sharp:.3g} within radius 1 of the minimum without batch norm and by {flat:.3g} with "
                f"it; the interpolation from the initialization falls "
                + ("monotonically for both" if not any(r["1-D: rises between init and minimum"] for r in rows)
                   else "with a bump for " + ", ".join(r["model"] for r in rows
                                                        if r["1-D: rises between init and minimum"])))
    columns = ["model", "loss at the initialization", "loss at the minimum", "1-D: rises between init and minimum",
               "2-D: mean loss increase, radius <= 0.5", key]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured,
        holds=flat < sharp and not any(r["1-D: rises between init and minimum"] for r in rows),
        check="the interpolation never rises between the initialization and the minimum, and the mean loss "
              "increase within radius 1 of the minimum is smaller with batch norm")

    def draw(fig):
        axes = fig.subplots(1, 3)
        for label, line in lines.items():
            axes[0].plot(alphas_1d, line, marker=".", label=label)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("α (0: initialization, 1: trained)")
        axes[0].set_ylabel("training loss")
        axes[0].set_title("1-D interpolation", fontsize=9)
        axes[0].legend(fontsize=8)
        levels = np.geomspace(min(p.min() for p in planes.values()), max(p.max() for p in planes.values()), 25)
        for ax, (label, plane) in zip(axes[1:], planes.items()):
            cs = ax.contour(grid, grid, plane, levels=levels, cmap="viridis", linewidths=0.8)
            ax.clabel(cs, cs.levels[::4], fontsize=6, fmt="%.2g")
            ax.plot(0, 0, "r*", ms=8)
            ax.set_aspect("equal")
            ax.set_title(f"2-D, filter-normalized: {label}", fontsize=9)
            ax.set_xlabel("δ")
            ax.set_ylabel("η")
    return _common.finish(result, out_dir, [("landscape.png", (12, 3.8), draw)], dpi, started)
