"""Normalization: batch norm in a deep network, and standardized or whitened inputs of a linear
regression (loss contours and gradient-descent paths)."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "normalization"
TITLE = "Input normalization and batch norm"
CLAIM = ("Normalizing the inputs makes the loss contours of a linear model rounder: standardizing removes the "
         "offsets and scales, whitening also removes the correlation (circular contours), so gradient descent "
         "heads straight for the minimum and needs fewer steps. Batch norm does the same for the inputs of every "
         "layer and lets a deep network train faster at the same learning rate.")

NETWORKS = [("sigmoid", 0.1), ("tanh", 0.01), ("relu", 0.1)]  # (activation, SGD learning rate)


def regression_data(n=200, seed=0):
    """Two correlated features with offsets and different scales, and y = 1.5 x1 - 2 x2 + noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    x = np.column_stack([4.0 + 1.0 * z[:, 0], 2.0 + 0.3 * (0.8 * z[:, 0] + 0.6 * z[:, 1])])
    y = 1.5 * x[:, 0] - 2.0 * x[:, 1] + 0.1 * rng.standard_normal(n)
    return x, y


def whiten(x):
    """ZCA whitening, Σ^{-1/2} (x - mean), by :class:`fusednn.data.ZCAWhitening` (eps 0: exact)."""
    from fusednn import data
    return data.ZCAWhitening(eps=0.0).fit_transform(x)


def _gd(x, y, w0, steps):
    """Gradient descent on mean((x w - y)^2) with lr = 1 / largest Hessian eigenvalue; the path,
    the Hessian and the minimizer."""
    hessian = 2.0 * x.T @ x / len(x)
    w_star = np.linalg.solve(x.T @ x, x.T @ y)
    lr = 1.0 / np.linalg.eigvalsh(hessian).max()
    w, path = np.array(w0, dtype=np.float64), [np.array(w0, dtype=np.float64)]
    for _ in range(steps):
        w = w - lr * (2.0 * x.T @ (x @ w - y) / len(x))
        path.append(w.copy())
    return np.array(path), hessian, w_star, lr


def _loss(x, y, w):
    return float(np.mean((x @ w - y) ** 2))


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import nn, optim
    started = time.perf_counter()
    rows = []
    # 1. linear regression on raw, standardized and whitened inputs
    x, y = regression_data()
    standardized = (x - x.mean(axis=0)) / x.std(axis=0)
    whitened = whiten(x)
    inputs = [("raw", x, y), ("standardized", standardized, y - y.mean()), ("whitened", whitened, y - y.mean())]
    steps, regression = 200, {}
    for label, xi, yi in inputs:
        path, hessian, w_star, lr = _gd(xi, yi, np.zeros(2), steps)
        best, start = _loss(xi, yi, w_star), _loss(xi, yi, path[0])
        excess = np.array([_loss(xi, yi, w) - best for w in path])
        reached = np.flatnonzero(excess <= 1e-6 * (start - best))
        eig = np.linalg.eigvalsh(hessian)
        regression[label] = (xi, yi, path, w_star)
        rows.append({"experiment": "linear regression", "setting": f"{label} inputs",
                     "condition number": float(eig.max() / eig.min()),
                     "contour axis ratio": float(np.sqrt(eig.max() / eig.min())), "lr": float(lr),
                     "GD steps to 1e-6": int(reached[0]) if reached.size else f"> {steps}",
                     "relative excess loss after 10 steps": float(excess[10] / (start - best))})
    # 2. deep networks with and without batch norm
    epochs = 3 if quick else 20
    xd, yd = _common.digits("train")
    xv, yv = _common.digits("val")
    loss = nn.losses.SoftmaxCrossEntropy()
    curves = {}
    for activation, lr in NETWORKS:
        for norm in (None, "batch"):
            model = nn.MLP([64, 100, 100, 100, 100, 10], activation=activation, norm=norm, seed=0)
            history = _common.train(model, loss, optim.SGD(model.parameter_groups(), lr=lr), xd, yd, epochs=epochs,
                                    batch_size=64)
            label = f"{activation}, {'batch norm' if norm else 'no norm'}"
            curves[label] = history
            rows.append({"experiment": "MLP 64-100x4-10 on digits", "setting": f"{label}, SGD lr {lr}",
                         "final train loss": history[-1], "val accuracy": _common.evaluate(model, loss, xv, yv)[1]})
    cond = {r["setting"].split()[0]: r["condition number"] for r in rows if r["experiment"] == "linear regression"}
    bn_wins = {a: curves[f"{a}, batch norm"][-1] < curves[f"{a}, no norm"][-1] for a, _ in NETWORKS}
    measured = (f"the loss contours' condition number is {cond['raw']:.3g} for the raw inputs, "
                f"{cond['standardized']:.3g} standardized and {cond['whitened']:.3g} whitened (by "
                f"fusednn.data.ZCAWhitening); "
                f"gradient descent at lr 1/λmax needs the steps in the table. Batch norm lowers the final training "
                f"loss after {epochs} epochs for " + ", ".join(a for a, win in bn_wins.items() if win)
                + ("" if all(bn_wins.values()) else "; not for " + ", ".join(a for a, win in bn_wins.items()
                                                                             if not win)))
    columns = ["experiment", "setting", "condition number", "contour axis ratio", "lr", "GD steps to 1e-6",
               "relative excess loss after 10 steps", "final train loss", "val accuracy"]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured,
        holds=cond["whitened"] < cond["standardized"] < cond["raw"] and bn_wins["sigmoid"] and bn_wins["tanh"],
        check="condition number: whitened < standardized < raw; batch norm ends with a lower training loss for "
              "the sigmoid and tanh networks")

    def draw(fig):
        axes = fig.subplots(1, 4)
        for ax, (label, (xi, yi, path, w_star)) in zip(axes, regression.items()):
            span = np.abs(np.vstack([path, w_star[None]]) - w_star).max() * 1.3 + 1e-9
            g1, g2 = np.meshgrid(np.linspace(w_star[0] - span, w_star[0] + span, 120),
                                 np.linspace(w_star[1] - span, w_star[1] + span, 120))
            w = np.stack([g1.ravel(), g2.ravel()])
            z = np.mean((xi @ w - yi[:, None]) ** 2, axis=0).reshape(g1.shape)
            ax.contour(g1, g2, z, levels=np.geomspace(z.min() + 1e-3, z.max(), 15), colors="0.6", linewidths=0.6)
            ax.plot(path[:, 0], path[:, 1], "o-", color="C3", ms=2, lw=1)
            ax.plot(*w_star, "k*", ms=8)
            ax.set_aspect("equal")
            ax.set_title(f"{label} inputs: GD path", fontsize=9)
            ax.set_xlabel("w1", fontsize=8)
            ax.set_ylabel("w2", fontsize=8)
            ax.tick_params(labelsize=6)
        ax = axes[3]
        for i, (label, history) in enumerate(curves.items()):
            ax.plot(np.arange(1, len(history) + 1), history, color=f"C{i // 2}", ls="-" if "batch" in label else "--",
                    label=label)
        ax.set_yscale("log")
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_title("digits: with and without batch norm", fontsize=9)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=6)
    return _common.finish(result, out_dir, [("normalization.png", (15, 3.8), draw)], dpi, started)
