"""Early stopping: the validation curve, the epoch training stopped and the epoch restored."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "early-stopping"
TITLE = "Early stopping"
CLAIM = ("The validation loss falls, reaches a minimum and rises again as the network starts fitting the "
         "training set's noise; early stopping ends training once it has not improved for `patience` epochs and "
         "restores the parameters of the epoch with the lowest validation loss, which generalize better than the "
         "parameters at the end of a long run.")

TRAIN_SAMPLES, LABEL_NOISE = 400, 0.3


def _data():
    """400 training digits with 30% of the labels replaced by random ones (so that the network
    has noise to memorize), and the clean validation and test splits."""
    x, y = _common.digits("train", n=TRAIN_SAMPLES)
    rng = np.random.default_rng(0)
    noisy = rng.random(len(y)) < LABEL_NOISE
    y[noisy] = rng.integers(0, 10, int(noisy.sum()))
    return (x, y), _common.digits("val"), _common.digits("test")


def _fit(epochs, callbacks, train_data, val_data):
    from fusednn import nn, optim, train
    model = nn.MLP([64, 256, 256, 10], seed=0)
    loss = nn.losses.SoftmaxCrossEntropy()
    history = train.fit(model, loss, optim.Adam(model.parameter_groups(), lr=1e-3), train_data, val_data,
                        epochs=epochs, batch_size=32, callbacks=callbacks, progress=False)
    return model, loss, history


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import train
    started = time.perf_counter()
    epochs, patience = (30, 5) if quick else (100, 10)
    train_data, val_data, (xt, yt) = _data()
    full, loss, full_history = _fit(epochs, [], train_data, val_data)
    stopper = train.EarlyStopping(monitor="val_loss", patience=patience, restore_best=True)
    stopped, _, history = _fit(epochs, [stopper], train_data, val_data)
    val_full = [r["val_loss"] for r in full_history.epochs]
    minimum = int(np.argmin(val_full)) + 1
    rows = []
    for label, model, hist, restored in (("no early stopping", full, full_history, len(full_history.epochs)),
                                         (f"early stopping, patience {patience}", stopped, history,
                                          stopper.best_epoch)):
        test_loss, test_acc = _common.evaluate(model, loss, xt, yt)
        val_loss, _ = _common.evaluate(model, loss, *val_data)
        rows.append({"run": label, "epochs run": len(hist.epochs), "parameters of epoch": restored,
                     "val loss": val_loss, "test loss": test_loss, "test accuracy": test_acc,
                     "train loss": hist.epochs[restored - 1]["loss"]})
    measured = (f"MLP 64-256-256-10, Adam lr 1e-3, on {TRAIN_SAMPLES} digits with {LABEL_NOISE:.0%} random labels: "
                f"the validation loss is lowest at epoch {minimum} ({min(val_full):.3g}) and {val_full[-1]:.3g} at "
                f"epoch {epochs}; early stopping ran {len(history.epochs)} epochs and restored epoch "
                f"{stopper.best_epoch}, test loss {rows[1]['test loss']:.3g} against {rows[0]['test loss']:.3g} "
                f"for the full run")
    columns = ["run", "epochs run", "parameters of epoch", "train loss", "val loss", "test loss", "test accuracy"]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured,
        holds=(stopper.best_epoch == minimum and len(history.epochs) < epochs
               and rows[1]["test loss"] < rows[0]["test loss"]),
        check="the restored epoch is the validation minimum, training stopped before the last epoch, and the "
              "restored model's test loss is below the full run's")

    def draw(fig):
        ax = fig.subplots()
        e = np.arange(1, epochs + 1)
        ax.plot(e, [r["loss"] for r in full_history.epochs], color="C0", label="training loss (noisy labels)")
        ax.plot(e, val_full, color="C1", label="validation loss")
        ax.axvline(len(history.epochs), color="C3", ls="--", label=f"stopped (epoch {len(history.epochs)})")
        ax.axvline(stopper.best_epoch, color="C2", ls=":", label=f"restored (epoch {stopper.best_epoch})")
        ax.plot(stopper.best_epoch, val_full[stopper.best_epoch - 1], "o", color="C2")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_ylim(0, max(val_full[1:]) * 1.5)
        ax.legend(fontsize=8)
        ax.set_title(f"early stopping, patience {patience}", fontsize=9)
    return _common.finish(result, out_dir, [("early-stopping.png", (6, 4), draw)], dpi, started)
