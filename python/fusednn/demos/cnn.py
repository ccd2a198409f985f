"""A convolutional network against an MLP on digits, with the pixels in place and shuffled."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "cnn"
TITLE = "Convolutional networks use the images' structure"
CLAIM = ("A convolutional network shares small local filters across the image, so with fewer parameters it "
         "classifies images at least as well as a fully connected network; its advantage comes from the spatial "
         "structure: with the pixels shuffled by one fixed permutation the MLP learns just as well (it has no "
         "notion of position) while the CNN loses accuracy.")


def _models():
    from fusednn import nn
    return {"MLP 64-128-10": lambda: nn.MLP([64, 128, 10], seed=0),
            "CNN 16-32 (3x3, batch norm, max pool)": lambda: nn.CNN((1, 8, 8), (16, 32), 10, seed=0)}


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import nn, optim
    started = time.perf_counter()
    epochs = 3 if quick else 20
    x, y = _common.digits("train")
    xt, yt = _common.digits("test")
    permutation = np.random.default_rng(0).permutation(64)
    loss = nn.losses.SoftmaxCrossEntropy()
    rows, curves = [], {}
    for pixels, order in (("in place", np.arange(64)), ("shuffled", permutation)):
        for label, make in _models().items():
            model = make()
            history = _common.train(model, loss, optim.Adam(model.parameter_groups(), lr=2e-3), x[:, order], y,
                                    epochs=epochs, batch_size=32)
            test_loss, test_acc = _common.evaluate(model, loss, xt[:, order], yt)
            curves[f"{label}, pixels {pixels}"] = history
            rows.append({"model": label, "pixels": pixels, "parameters": model.num_parameters(),
                         "final train loss": history[-1], "test loss": test_loss, "test accuracy": test_acc})
    acc = {(r["model"].split()[0], r["pixels"]): r["test accuracy"] for r in rows}
    params = {r["model"].split()[0]: r["parameters"] for r in rows}
    cnn_drop = acc["CNN", "in place"] - acc["CNN", "shuffled"]
    mlp_drop = acc["MLP", "in place"] - acc["MLP", "shuffled"]
    measured = (f"after {epochs} epochs of Adam on the 8x8 digits, the CNN ({params['CNN']} parameters) reaches a test "
                f"accuracy of {acc['CNN', 'in place']:.3f} and the MLP ({params['MLP']}) {acc['MLP', 'in place']:.3f}; "
                f"with the pixels shuffled the CNN drops by {cnn_drop:.3f} and the MLP by {mlp_drop:.3f}")
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, ["model", "pixels", "parameters", "final train loss", "test loss", "test accuracy"],
        rows, measured,
        holds=(params["CNN"] < params["MLP"] and acc["CNN", "in place"] >= acc["MLP", "in place"]
               and cnn_drop > mlp_drop + 0.01),
        check="the CNN has fewer parameters and at least the MLP's accuracy, and shuffling the pixels costs the "
              "CNN over 1 point more accuracy than the MLP")

    def draw(fig):
        axes = fig.subplots(1, 2)
        for i, (label, history) in enumerate(curves.items()):
            axes[0].plot(range(1, len(history) + 1), history, color=f"C{i % 2}", ls="-" if i < 2 else "--",
                         label=label)
        axes[0].set_yscale("log")
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("training loss")
        axes[0].legend(fontsize=6)
        axes[0].set_title("training", fontsize=9)
        names = [f"{r['model'].split()[0]}\n{r['pixels']}" for r in rows]
        axes[1].bar(names, [r["test accuracy"] for r in rows], color=["C0", "C1", "C0", "C1"],
                    hatch=[None, None, "//", "//"])
        low = min(r["test accuracy"] for r in rows)
        axes[1].set_ylim(max(0.0, low - 0.05), 1.0)
        axes[1].set_ylabel("test accuracy")
        axes[1].set_title("pixels in place vs shuffled", fontsize=9)
    return _common.finish(result, out_dir, [("cnn.png", (10, 3.6), draw)], dpi, started)
