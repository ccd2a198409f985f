"""Learning-rate sweep: SGD at 0.3, 0.05 and 0.01, a piecewise-constant schedule, Adam at 0.03."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "learning-rate"
TITLE = "The learning rate"
CLAIM = ("The learning rate sets how fast gradient descent goes: at 0.01 SGD needs several times the epochs that "
         "0.05 or 0.3 needs (5000 instead of 1000 for a comparable loss); a piecewise-constant schedule takes "
         "large steps first and small ones later; Adam at 0.03 reaches a lower training loss than SGD at 0.01.")


def _runs(epochs):
    """(label, optimizer name, lr or schedule, epochs) of each run."""
    from fusednn.optim import schedules
    third = epochs // 3
    return [("SGD lr 0.3", "sgd", 0.3, epochs), ("SGD lr 0.05", "sgd", 0.05, epochs),
            ("SGD lr 0.01", "sgd", 0.01, epochs), (f"SGD lr 0.01, {5 * epochs} epochs", "sgd", 0.01, 5 * epochs),
            ("SGD piecewise 0.3/0.05/0.01", "sgd",
             schedules.piecewise_constant([third, 2 * third], [0.3, 0.05, 0.01]), epochs),
            ("Adam lr 0.03", "adam", 0.03, epochs)]


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import data, nn, optim
    started = time.perf_counter()
    epochs = 200 if quick else 1000
    x, y = data.moons(200, noise=0.2, seed=0)
    loss = nn.losses.SoftmaxCrossEntropy()
    rows, curves = [], {}
    for label, kind, lr, n_epochs in _runs(epochs):
        model = nn.MLP([2, 32, 2], seed=0)  # the same start for every run
        schedule = lr if callable(lr) else None
        first_lr = lr(0) if callable(lr) else lr
        opt = (optim.Adam if kind == "adam" else optim.SGD)(model.parameter_groups(), lr=first_lr)
        history = _common.train(model, loss, opt, x, y, epochs=n_epochs, schedule=schedule)
        final, acc = _common.evaluate(model, loss, x, y)
        curves[label] = history
        rows.append({"run": label, "epochs": n_epochs, "final train loss": final, "train accuracy": acc,
                     "loss at epoch %d" % (epochs // 10): history[epochs // 10 - 1]})
    by = {r["run"]: r["final train loss"] for r in rows}
    sgd01, adam = by["SGD lr 0.01"], by["Adam lr 0.03"]
    long01 = by[f"SGD lr 0.01, {5 * epochs} epochs"]
    measured = (f"full-batch training of a 2-32-2 ReLU network on 200 two-moons points (one start for all): after "
                f"{epochs} epochs SGD reaches {by['SGD lr 0.3']:.3g} at lr 0.3, {by['SGD lr 0.05']:.3g} at 0.05 "
                f"and {sgd01:.3g} at 0.01 ({long01:.3g} after {5 * epochs} epochs); the piecewise schedule "
                f"{by['SGD piecewise 0.3/0.05/0.01']:.3g}; Adam at 0.03 {adam:.3g}")
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, ["run", "epochs", f"loss at epoch {epochs // 10}", "final train loss", "train accuracy"],
        rows, measured, holds=adam < sgd01 and long01 < sgd01 and by["SGD lr 0.05"] < sgd01,
        check="Adam 0.03 < SGD 0.01 and SGD 0.05 < SGD 0.01 at the same epochs, and SGD 0.01 improves with 5x epochs")

    def draw(fig):
        ax = fig.subplots()
        for label, history in curves.items():
            ax.plot(np.arange(1, len(history) + 1), history, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("epoch (full batch)")
        ax.set_ylabel("training loss")
        ax.set_title("two moons, 2-32-2 ReLU network")
        ax.legend(fontsize=8)
    return _common.finish(result, out_dir, [("learning-rate.png", (6, 4), draw)], dpi, started)
