"""Weight initialization and the activations of a deep network, layer by layer."""

import time

import numpy as np

from fusednn.demos import _common

NAME = "init"
TITLE = "Initialization and activations by depth"
CLAIM = ("In a 10-layer tanh network, weights drawn from N(0, 0.01) make the activations shrink layer after "
         "layer towards 0 (and the gradients with them), while Xavier initialization keeps their spread similar "
         "at every depth; He initialization suits ReLU networks (Xavier halves a ReLU network's variance at each "
         "layer) and saturates tanh units.")

DEPTH = 10
CONFIGS = [("tanh, N(0, 0.01)", "tanh", "normal-0.01"), ("tanh, Xavier", "tanh", "xavier_normal"),
           ("tanh, He", "tanh", "he"), ("ReLU, Xavier", "relu", "xavier_normal"), ("ReLU, He", "relu", "he")]


def network(activation, init, width, seed=0):
    """DEPTH hidden layers of ``width`` units (Linear then the activation; a ReLU is fused into the
    Linear) and a 10-unit output layer."""
    from fusednn import nn
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(DEPTH):
        linear = nn.Linear(width, width, activation="relu" if activation == "relu" else None,
                           init="xavier" if init == "normal-0.01" else init, rng=rng)
        if init == "normal-0.01":
            nn.init.normal(linear.p["weight"], 0.0, 0.01, rng=rng)
        layers.append(linear)
        if activation == "tanh":
            layers.append(nn.Tanh())
    layers.append(nn.Linear(width, 10, rng=rng))
    return nn.Sequential(*layers)


def run(quick=False, out_dir=None, *, dpi=100):
    from fusednn import diagnostics
    started = time.perf_counter()
    width, batch = (128, 256) if quick else (256, 1000)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, width)).astype(np.float32)
    labels = rng.integers(0, 10, batch)
    stats, grads = {}, {}
    for label, activation, init in CONFIGS:
        model = network(activation, init, width)
        kind = "Tanh" if activation == "tanh" else "Linear"
        value_range = (-1.0, 1.0) if activation == "tanh" else (0.0, 3.0)
        layer_stats = [s for s in diagnostics.activation_statistics(model, x, bins=40, range=value_range)
                       if s.layer == kind][:DEPTH]
        stats[label] = layer_stats
        norms = diagnostics.gradient_norms(model, x, labels, by="parameter")
        grads[label] = [norms[f"{i * (2 if activation == 'tanh' else 1)}.weight"] for i in range(DEPTH)]
    rows = []
    for i in range(DEPTH):
        row = {"layer": i + 1}
        for label, _, _ in CONFIGS:
            row[f"std {label}"] = stats[label][i].std
        for label, _, _ in CONFIGS:
            row[f"grad norm {label}"] = grads[label][i]
        rows.append(row)
    small = [s.std for s in stats["tanh, N(0, 0.01)"]]
    xavier = [s.std for s in stats["tanh, Xavier"]]
    relu_x, relu_he = [s.std for s in stats["ReLU, Xavier"]], [s.std for s in stats["ReLU, He"]]
    shrinks = all(b < a for a, b in zip(small, small[1:]))
    measured = (f"{DEPTH} layers of {width} units, {batch} inputs from N(0, 1): the activations' standard deviation "
                f"goes from {small[0]:.2g} (layer 1) to {small[-1]:.2g} (layer {DEPTH}) under N(0, 0.01), from "
                f"{xavier[0]:.2g} to {xavier[-1]:.2g} under Xavier; ReLU with Xavier from {relu_x[0]:.2g} to "
                f"{relu_x[-1]:.2g}, with He from {relu_he[0]:.2g} to {relu_he[-1]:.2g}. The first layer's weight "
                f"gradient norm is {grads['tanh, N(0, 0.01)'][0]:.2g} under N(0, 0.01) and "
                f"{grads['tanh, Xavier'][0]:.2g} under Xavier")
    columns = ["layer"] + [f"std {c[0]}" for c in CONFIGS] + [f"grad norm {c[0]}" for c in CONFIGS]
    result = _common.DemoResult(
        NAME, TITLE, CLAIM, columns, rows, measured,
        holds=shrinks and small[-1] < 1e-3 * small[0] and xavier[-1] > 0.2 * xavier[0] and relu_he[-1] > relu_x[-1],
        check="N(0, 0.01): the std falls at every layer and by over 1000x; Xavier (tanh) keeps over 1/5 of it; "
              "ReLU's last layer is wider under He than under Xavier")

    def draw(fig):
        axes = fig.subplots(1, len(CONFIGS) + 1)
        for ax, (label, _, _) in zip(axes, CONFIGS):
            for i, s in enumerate(stats[label]):
                centers = 0.5 * (s.bin_edges[1:] + s.bin_edges[:-1])
                ax.plot(centers, s.histogram / s.histogram.sum(), color=f"C{i % 10}", lw=1, label=f"layer {i + 1}")
            ax.set_title(label, fontsize=9)
            ax.set_xlabel("activation", fontsize=8)
            ax.tick_params(labelsize=6)
        axes[0].set_ylabel("fraction of units")
        axes[0].legend(fontsize=5)
        ax = axes[-1]
        for label, _, _ in CONFIGS:
            ax.semilogy(range(1, DEPTH + 1), [s.std for s in stats[label]], marker="o", ms=3, label=label)
        ax.set_xlabel("layer", fontsize=8)
        ax.set_title("std of the activations", fontsize=9)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=6)
    return _common.finish(result, out_dir, [("init.png", (15, 3.2), draw)], dpi, started)
