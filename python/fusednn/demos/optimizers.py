"""Optimizers side by side: loss curves on digits, trajectories on 2-D test functions."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "optimizers"
TITLE = "Optimizers"
CLAIM = ("Plain SGD is slow along the flat directions of an ill-conditioned problem (and zig-zags across the "
         "steep ones); momentum and Nesterov accelerate along the valley, and the adaptive methods (AdaGrad, "
         "RMSProp, AdaDelta, Adam, AdamW, NAdam) scale each coordinate's step, so they make faster progress than "
         "SGD at a comparable step size.")

# (label, optimizer class, keyword arguments, learning rate per problem): near the largest rate that
# works well for each (SGD's on the quadratic is just below its stability limit 2 / KAPPA); AdaDelta
# keeps torch's lr 1.0 everywhere.
OPTIMIZERS = [
    ("SGD", "SGD", {}, {"digits": 0.05, "quadratic": 0.019, "rosenbrock": 1e-3}),
    ("Momentum", "SGD", {"momentum": 0.9}, {"digits": 0.05, "quadratic": 0.01, "rosenbrock": 5e-4}),
    ("Nesterov", "SGD", {"momentum": 0.9, "nesterov": True}, {"digits": 0.05, "quadratic": 0.01,
                                                                "rosenbrock": 5e-4}),
    ("AdaGrad", "Adagrad", {}, {"digits": 0.05, "quadratic": 1.0, "rosenbrock": 1.0}),
    ("RMSProp", "RMSprop", {}, {"digits": 1e-3, "quadratic": 0.1, "rosenbrock": 3e-3}),
    ("AdaDelta", "Adadelta", {}, {"digits": 1.0, "quadratic": 1.0, "rosenbrock": 1.0}),
    ("Adam", "Adam", {}, {"digits": 2e-3, "quadratic": 0.1, "rosenbrock": 0.03}),
    ("AdamW", "AdamW", {}, {"digits": 2e-3, "quadratic": 0.1, "rosenbrock": 0.03}),
    ("NAdam", "NAdam", {}, {"digits": 2e-3, "quadratic": 0.1, "rosenbrock": 0.03}),
]

KAPPA = 100.0  # the quadratic's condition number


def quadratic(p):
    """f = (x^2 + KAPPA y^2) / 2 and its gradient."""
    return 0.5 * (p[0] ** 2 + KAPPA * p[1] ** 2), np.array([p[0], KAPPA * p[1]])


def rosenbrock(p):
    """f = (1 - x)^2 + 100 (y - x^2)^2 and its gradient (minimum 0 at (1, 1))."""
    x, y = p
    return ((1 - x) ** 2 + 100 * (y - x * x) ** 2,
            np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)]))


PROBLEMS = {"quadratic": (quadratic, (-4.5, 1.2), 100), "rosenbrock": (rosenbrock, (-1.5, 1.8), 2000)}


def _make(cls_name, kwargs, params, lr):
    from fusednn import optim
    return getattr(optim, cls_name)(params, lr=lr, **kwargs)


def trajectory(fn, start, steps, cls_name, kwargs, lr):
    """The points visited (steps + 1, 2) and the final value of fn."""
    p = np.array(start, dtype=np.float64)
    opt = _make(cls_name, kwargs, [p], lr)
    path = [p.copy()]
    for _ in range(steps):
        _, g = fn(p)
        opt.step([g])
        path.append(p.copy())
    return np.array(path), float(fn(p)[0])


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import nn
    started = time.perf_counter()
    epochs = 3 if quick else 20
    x, y = _common.digits("train")
    xv, yv = _common.digits("val")
    loss = nn.losses.SoftmaxCrossEntropy()
    rows, curves, paths = [], {}, {k: {} for k in PROBLEMS}
    for label, cls_name, kwargs, lrs in OPTIMIZERS:
        model = nn.MLP([64, 64, 10], seed=0)
        opt = _make(cls_name, kwargs, model.parameter_groups(), lrs["digits"])
        curves[label] = _common.train(model, loss, opt, x, y, epochs=epochs, batch_size=64, seed=0)
        _, val_acc = _common.evaluate(model, loss, xv, yv)
        row = {"optimizer": label, "digits lr": lrs["digits"], "digits final train loss": curves[label][-1],
               "digits val accuracy": val_acc}
        for problem, (fn, start, steps) in PROBLEMS.items():
            path, final = trajectory(fn, start, steps, cls_name, kwargs, lrs[problem])
            paths[problem][label] = path
            row[f"{problem} lr"] = lrs[problem]
            row[f"{problem} f after {steps} steps"] = final
        rows.append(row)
    by = {r["optimizer"]: r for r in rows}
    q = f"quadratic f after {PROBLEMS['quadratic'][2]} steps"
    rb = f"rosenbrock f after {PROBLEMS['rosenbrock'][2]} steps"
    faster_quad = [k for k in by if k != "SGD" and by[k][q] < by["SGD"][q]]
    faster_rosen = [k for k in by if k != "SGD" and by[k][rb] < by["SGD"][rb]]
    adam_vs_sgd = by["Adam"]["digits final train loss"] < by["SGD"]["digits final train loss"]
    measured = (f"digits (MLP 64-64-10, batch 64, {epochs} epochs): final training loss SGD "
                f"{by['SGD']['digits final train loss']:.3g}, "
                f"Momentum {by['Momentum']['digits final train loss']:.3g}, "
                f"Adam {by['Adam']['digits final train loss']:.3g}. On the quadratic (condition number {KAPPA:g}) "
                f"{len(faster_quad)} of 8 others end below SGD ({', '.join(faster_quad)}); on Rosenbrock "
                f"{len(faster_rosen)} of 8 ({', '.join(faster_rosen)})")
    columns = ["optimizer", "digits lr", "digits final train loss", "digits val accuracy", "quadratic lr", q,
               "rosenbrock lr", rb]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured,
        holds=adam_vs_sgd and by["Momentum"][q] < by["SGD"][q] and by["Momentum"][rb] < by["SGD"][rb],
        check="on digits Adam's final training loss is below SGD's; momentum ends below SGD on both 2-D functions")

    def draw(fig):
        axes = fig.subplots(1, 3)
        for label, history in curves.items():
            axes[0].plot(np.arange(1, len(history) + 1), history, label=label)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("training loss")
        axes[0].set_title("digits, MLP 64-64-10", fontsize=9)
        axes[0].legend(fontsize=6)
        for ax, problem, box in ((axes[1], "quadratic", (-5, 5, -1.6, 1.6)),
                                 (axes[2], "rosenbrock", (-2, 2, -1, 3))):
            fn = PROBLEMS[problem][0]
            gx, gy = np.meshgrid(np.linspace(box[0], box[1], 200), np.linspace(box[2], box[3], 200))
            z = fn(np.array([gx, gy]))[0]
            levels = np.geomspace(max(z.min(), 1e-3), z.max(), 20)
            ax.contour(gx, gy, z, levels=levels, colors="0.7", linewidths=0.5)
            for label, path in paths[problem].items():
                ax.plot(path[:, 0], path[:, 1], lw=1, label=label)
            ax.plot(*(np.array([0, 0]) if problem == "quadratic" else np.array([1, 1])), "k*", ms=8)
            ax.set_xlim(box[0], box[1])
            ax.set_ylim(box[2], box[3])
            ax.set_title(f"{problem}, {PROBLEMS[problem][2]} steps", fontsize=9)
    return _common.finish(result, out_dir, [("optimizers.png", (12, 3.8), draw)], dpi, started)
