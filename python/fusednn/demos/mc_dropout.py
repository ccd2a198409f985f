"""Monte-Carlo dropout on a 1-D regression: the predictive mean and its uncertainty."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "mc-dropout"
TITLE = "MC dropout: predictive uncertainty"
CLAIM = ("Keeping dropout on at prediction time and averaging T stochastic passes (Gal & Ghahramani 2016) gives a "
         "predictive mean and a variance; the uncertainty is small where there is training data and grows in the "
         "gaps between the data and away from it.")

P_DROP, PASSES = 0.1, 100
REGIONS = {"training data": ((-3.0, -0.5), (1.5, 3.0)), "gap in the data": ((-0.5, 1.5),),
           "outside the data": ((-6.0, -3.5), (3.5, 6.0))}


def _data(seed=0):
    """80 noisy samples of sin(x) on [-3, -0.5] and [1.5, 3]."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-3.0, -0.5, 50), rng.uniform(1.5, 3.0, 30)]).astype(np.float32)[:, None]
    return x, (np.sin(x) + 0.1 * rng.standard_normal(x.shape)).astype(np.float32)


def _in(grid, intervals):
    return np.any([(grid >= a) & (grid <= b) for a, b in intervals], axis=0)


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import diagnostics, nn, optim
    started = time.perf_counter()
    steps, passes = (2000, 30) if quick else (2000, PASSES)  # fewer steps would not fit the data yet
    x, y = _data()
    model = nn.MLP([1, 128, 128, 1], dropout=P_DROP, seed=0)
    _common.train(model, nn.losses.MSELoss(), optim.Adam(model.parameter_groups(), lr=3e-3), x, y, epochs=steps)
    grid = np.linspace(-6.0, 6.0, 241, dtype=np.float32)[:, None]
    mean, variance = diagnostics.mc_dropout_predict(model, grid, passes, seed=0)
    mean, std, g = mean[:, 0], np.sqrt(variance[:, 0]), grid[:, 0]
    deterministic = model.forward(grid, training=False)[:, 0]
    rows = []
    for region, intervals in REGIONS.items():
        where = _in(g, intervals)
        rows.append({"region": region, "x": " and ".join(f"[{a:g}, {b:g}]" for a, b in intervals),
                     "mean predictive std": float(std[where].mean()),
                     "mean |MC mean - sin x|": float(np.abs(mean[where] - np.sin(g[where])).mean()),
                     "mean |MC mean - dropout-off output|": float(np.abs(mean[where] - deterministic[where]).mean())})
    sd = {r["region"]: r["mean predictive std"] for r in rows}
    measured = (f"MLP 1-128-128-1 with dropout {P_DROP} after {steps} full-batch Adam steps, {passes} passes: the "
                f"predictive standard deviation averages {sd['training data']:.3g} over the training data, "
                f"{sd['gap in the data']:.3g} in the gap and {sd['outside the data']:.3g} outside the data")
    columns = ["region", "x", "mean predictive std", "mean |MC mean - sin x|", "mean |MC mean - dropout-off output|"]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured,
        holds=sd["training data"] < sd["gap in the data"] and sd["training data"] < sd["outside the data"],
        check="the predictive std is larger in the gap and outside the data than over the training data")

    def draw(fig):
        ax = fig.subplots()
        ax.fill_between(g, mean - 2 * std, mean + 2 * std, color="C0", alpha=0.25, label="MC mean ± 2 std")
        ax.plot(g, mean, color="C0", label=f"MC mean ({passes} passes)")
        ax.plot(g, np.sin(g), "k--", lw=1, label="sin x")
        ax.plot(x[:, 0], y[:, 0], "k.", ms=4, label="training data")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_ylim(-3, 3)
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title(f"MC dropout (p = {P_DROP})", fontsize=9)
    return _common.finish(result, out_dir, [("mc-dropout.png", (7, 3.8), draw)], dpi, started)
