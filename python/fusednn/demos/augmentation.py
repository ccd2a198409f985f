"""Data augmentation: random affine maps of the training images, and what they buy on shifted
test images."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "augmentation"
TITLE = "Data augmentation"
CLAIM = ("Augmentation trains on randomly transformed copies of the images (here rotations up to 15 degrees and "
         "shifts up to 15% of the size): the training task gets harder (a higher training loss), and the network "
         "becomes robust to those transformations, so it keeps its accuracy on shifted test images where a network "
         "trained without augmentation fails.")

TRAIN_SAMPLES, SHAPE = 300, (1, 8, 8)


def _augmentation():
    from fusednn.data import transforms
    return transforms.RandomAffine(degrees=15, translate=(0.15, 0.15), interpolation="bilinear")


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import data, nn, optim
    from fusednn.data import transforms
    started = time.perf_counter()
    epochs = 15 if quick else 60
    x, y = data.digits("train")
    x, y = x[:TRAIN_SAMPLES] / np.float32(16), y[:TRAIN_SAMPLES]  # pixels in [0, 1]: augment, then train
    xt, yt = data.digits("test")
    xt = xt / np.float32(16)
    shifted = transforms.RandomShift(0.15)(xt, seed=123, image_shape=SHAPE)  # one fixed random shift per image
    augment = _augmentation()
    models = {"MLP 64-256-10": lambda: nn.MLP([64, 256, 10], seed=0)}
    if not quick:
        models["CNN 16-32"] = lambda: nn.CNN(SHAPE, (16, 32), 10, seed=0)
    loss = nn.losses.SoftmaxCrossEntropy()
    rows = []
    for label, make in models.items():
        for augmented in (False, True):
            model = make()
            transform = (lambda xb, step: augment(xb, seed=7, offset=step, image_shape=SHAPE)) if augmented else None
            history = _common.train(model, loss, optim.Adam(model.parameter_groups(), lr=2e-3), x, y, epochs=epochs,
                                    batch_size=32, transform=transform)
            rows.append({"model": label, "augmentation": "rotate <= 15 deg, shift <= 15%" if augmented else "none",
                         "final train loss": history[-1],
                         "test accuracy": _common.evaluate(model, loss, xt, yt)[1],
                         "shifted test accuracy": _common.evaluate(model, loss, shifted, yt)[1]})
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    measured = (f"trained on {TRAIN_SAMPLES} digits for {epochs} epochs: " + "; ".join(
        f"{plain['model']}: the shifted-test accuracy goes from {plain['shifted test accuracy']:.3f} to "
        f"{aug['shifted test accuracy']:.3f} with augmentation (clean test {plain['test accuracy']:.3f} -> "
        f"{aug['test accuracy']:.3f}, training loss {plain['final train loss']:.3g} -> {aug['final train loss']:.3g})"
        for plain, aug in pairs))
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, ["model", "augmentation", "final train loss", "test accuracy", "shifted test accuracy"],
        rows, measured,
        holds=all(aug["shifted test accuracy"] > plain["shifted test accuracy"] and
                  aug["final train loss"] > plain["final train loss"] for plain, aug in pairs),
        check="for every model, augmentation raises the training loss and the accuracy on the shifted test images")

    def draw(fig):
        grid = fig.subplots(3, 7)
        samples = x[[int(np.flatnonzero(y == c)[0]) for c in range(7)]]  # digits 0 to 6
        views = [samples, augment(samples, seed=1, image_shape=SHAPE), augment(samples, seed=2, image_shape=SHAPE)]
        for r, (batch, title) in enumerate(zip(views, ("training images", "augmented (seed 1)",
                                                        "augmented (seed 2)"))):
            for c in range(7):
                ax = grid[r, c]
                ax.imshow(batch[c].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            grid[r, 0].set_ylabel(title, fontsize=7)
    return _common.finish(result, out_dir, [("augmentation.png", (7, 3.4), draw)], dpi, started)
