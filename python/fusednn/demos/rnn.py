"""Recurrent networks read a digit one row at a time: LSTM and GRU against memoryless baselines."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "rnn"
TITLE = "Recurrent networks carry a state"
CLAIM = ("A recurrent network carries a hidden state from step to step: reading a digit one 8-pixel row at a time, "
         "an LSTM or a GRU classifies it nearly as well as an MLP that sees the whole image at once, while a "
         "network that sees one row without memory (the last row) cannot.")


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import data, nn, optim
    started = time.perf_counter()
    epochs = 4 if quick else 20
    x, y = data.sequential_digits("train")
    xt, yt = data.sequential_digits("test")
    loss = nn.losses.SoftmaxCrossEntropy()
    models = {
        "LSTM 8-64, last step -> 10": (lambda: nn.Sequential(nn.LSTM(8, 64, batch_first=True, rng=0), nn.LastStep(),
                                                              nn.Linear(64, 10, rng=1)), lambda s: s),
        "GRU 8-64, last step -> 10": (lambda: nn.Sequential(nn.GRU(8, 64, batch_first=True, rng=0), nn.LastStep(),
                                                             nn.Linear(64, 10, rng=1)), lambda s: s),
        "MLP 8-64-10 on the last row only": (lambda: nn.MLP([8, 64, 10], seed=0),
                                             lambda s: np.ascontiguousarray(s[:, -1])),
        "MLP 64-64-10 on the whole image": (lambda: nn.MLP([64, 64, 10], seed=0), lambda s: s.reshape(len(s), -1)),
    }
    rows, curves = [], {}
    for label, (make, view) in models.items():
        model = make()
        history = _common.train(model, loss, optim.Adam(model.parameter_groups(), lr=3e-3), view(x), y,
                                epochs=epochs, batch_size=32)
        test_loss, test_acc = _common.evaluate(model, loss, view(xt), yt)
        curves[label] = history
        rows.append({"model": label, "sees": "8 rows in turn" if "last step" in label else
                     ("row 8" if "last row" in label else "all 64 pixels"), "parameters": model.num_parameters(),
                     "final train loss": history[-1], "test loss": test_loss, "test accuracy": test_acc})
    acc = {r["model"].split()[0] + (" last" if "last row" in r["model"] else ""): r["test accuracy"] for r in rows}
    measured = (f"after {epochs} epochs of Adam on the digits read as 8 steps of 8 pixels: LSTM {acc['LSTM']:.3f}, "
                f"GRU {acc['GRU']:.3f}, an MLP on the whole image {acc['MLP']:.3f} and an MLP on the last row alone "
                f"{acc['MLP last']:.3f} test accuracy")
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, ["model", "sees", "parameters", "final train loss", "test loss", "test accuracy"], rows,
        measured, holds=min(acc["LSTM"], acc["GRU"]) > acc["MLP last"] + 0.2,
        check="both recurrent networks beat the last-row MLP by over 20 points of accuracy")

    def draw(fig):
        ax = fig.subplots()
        for label, history in curves.items():
            ax.plot(range(1, len(history) + 1), history, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=7)
        ax.set_title("digits read one row per step", fontsize=9)
    return _common.finish(result, out_dir, [("rnn.png", (6, 3.8), draw)], dpi, started)
