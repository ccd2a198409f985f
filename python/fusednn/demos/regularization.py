"""Regularization sweeps: the L2 weight and the dropout rate, training and validation loss."""

import time

from fusednn.demos import _common

NAME = "regularization"
TITLE = "L2 and dropout sweeps"
CLAIM = ("Regularization trades training fit for generalization: the training loss rises with the L2 weight "
         "(0, 1e-4, 1e-3, 5e-3) and with the dropout rate (0, 0.1, 0.5, 0.9), while the validation loss is best "
         "at a moderate strength.")

L2_WEIGHTS = (0.0, 1e-4, 1e-3, 5e-3)
DROPOUT_RATES = (0.0, 0.1, 0.5, 0.9)
TRAIN_SAMPLES = 300  # a small training set, so that the unregularized network overfits


def _fit(dropout, l2, epochs, x, y, xv, yv):
    from fusednn import nn, optim, regularizers
    loss = nn.losses.SoftmaxCrossEntropy()
    model = nn.MLP([64, 256, 10], dropout=dropout, seed=0)
    history = _common.train(model, loss, optim.Adam(model.parameter_groups(), lr=1e-3), x, y, epochs=epochs,
                            batch_size=32, regularizer=regularizers.L2(l2) if l2 else None)
    train_eval = _common.evaluate(model, loss, x, y)[0]
    val_loss, val_acc = _common.evaluate(model, loss, xv, yv)
    return {"train loss (as trained)": history[-1], "train loss (eval mode)": train_eval, "val loss": val_loss,
            "val accuracy": val_acc}, history


def run(quick=False, out_dir=None, *, dpi=100):
    started = time.perf_counter()
    epochs = 20 if quick else 100
    x, y = _common.digits("train", n=TRAIN_SAMPLES)
    xv, yv = _common.digits("val")
    rows, curves = [], {}
    for l2 in L2_WEIGHTS:
        row, curves[f"L2 {l2:g}"] = _fit(0.0, l2, epochs, x, y, xv, yv)
        rows.append({"sweep": "L2", "strength": l2, **row})
    for p in DROPOUT_RATES:
        row, curves[f"dropout {p:g}"] = _fit(p, 0.0, epochs, x, y, xv, yv)
        rows.append({"sweep": "dropout", "strength": p, **row})
    key = "train loss (as trained)"
    l2_train = [r[key] for r in rows if r["sweep"] == "L2"]
    drop_train = [r[key] for r in rows if r["sweep"] == "dropout"]
    rising = lambda v: all(b > a for a, b in zip(v, v[1:]))  # noqa: E731
    best_l2 = min((r for r in rows if r["sweep"] == "L2"), key=lambda r: r["val loss"])["strength"]
    best_p = min((r for r in rows if r["sweep"] == "dropout"), key=lambda r: r["val loss"])["strength"]
    measured = (f"MLP 64-256-10 trained by Adam (lr 1e-3, batch 32, {epochs} epochs) on {TRAIN_SAMPLES} digits: the "
                f"training loss goes {' < '.join(f'{v:.3g}' for v in l2_train)} over the L2 weights and "
                f"{' < '.join(f'{v:.3g}' for v in drop_train)} over the dropout rates; the lowest validation loss is "
                f"at L2 {best_l2:g} and dropout {best_p:g}")
    columns = ["sweep", "strength", "train loss (as trained)", "train loss (eval mode)", "val loss", "val accuracy"]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured, holds=rising(l2_train) and rising(drop_train),
        check="the training loss (the data loss the optimizer saw in the last epoch) rises strictly along both sweeps")

    def draw(fig):
        axes = fig.subplots(1, 2)
        for ax, sweep in zip(axes, ("L2", "dropout")):
            for i, (label, history) in enumerate((k, v) for k, v in curves.items() if k.startswith(sweep)):
                ax.plot(range(1, len(history) + 1), history, color=f"C{i}", label=label)
                val = next(r["val loss"] for r in rows if r["sweep"] == sweep and f"{r['strength']:g}" in label)
                ax.axhline(val, color=f"C{i}", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel("training loss (dotted: final validation loss)", fontsize=8)
            ax.set_title(f"{sweep} sweep", fontsize=9)
            ax.legend(fontsize=7)
    return _common.finish(result, out_dir, [("regularization.png", (10, 3.8), draw)], dpi, started)
