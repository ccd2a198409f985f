"""Minibatch copies: 128 shuffled rows of a 60,000 x 784 float32 array (MNIST-shaped), as one
training step of bench_train.py takes them: fusednn.ops.gather_rows vs NumPy's x[idx] vs
torch's x[idx] (index_select)."""

import numpy as np

from harness import Case

N, D, BATCH = 60_000, 784, 128


def cases(torch=None):
    from fusednn import ops
    rng = np.random.default_rng(0)
    x = rng.random((N, D), dtype=np.float32)
    order = rng.permutation(N)
    batches = [order[i:i + BATCH] for i in range(0, N - BATCH, BATCH)]
    state = {"i": 0}

    def next_index():  # a different batch each call, so the rows come from memory as in training
        state["i"] = (state["i"] + 1) % len(batches)
        return batches[state["i"]]

    torch_fn = None
    if torch is not None:
        xt = torch.from_numpy(x)
        tbatches = [torch.from_numpy(b) for b in batches]

        def torch_fn():
            state["i"] = (state["i"] + 1) % len(tbatches)
            return xt[tbatches[state["i"]]]

    return [Case("gather", f"rows {BATCH} of {N}x{D}", {
        "fusednn": lambda: ops.gather_rows(x, next_index()),
        "numpy": lambda: x[next_index()],
        "torch": torch_fn,
    }, bytes=2.0 * BATCH * D * 4, repeat=200)]
