"""Minibatch copies: 128 shuffled rows of a 60,000 x 784 float32 array (MNIST-shaped), as one
training step of bench_train.py takes them: fusednn.ops.gather_rows vs x[idx] (NumPy or CuPy)
vs torch's x[idx] (index_select)."""

import numpy as np

from harness import Case

N, D = 60_000, 784
BATCHES = [128, (1024, "cuda")]


def cases(dev):
    from fusednn import ops
    torch = dev.torch
    out = []
    for batch in dev.sizes(BATCHES):
        rng = np.random.default_rng(0)
        x = dev.array(rng.random((N, D), dtype=np.float32))
        order = rng.permutation(N)
        batches = [dev.array(order[i:i + batch]) for i in range(0, N - batch, batch)]
        state = {"i": 0}

        def next_index(batches=batches, state=state):  # a different batch each call, as in training
            state["i"] = (state["i"] + 1) % len(batches)
            return batches[state["i"]]

        torch_fn = None
        if torch is not None:
            xt = dev.tensor(x)
            tbatches = [dev.tensor(b) for b in batches]

            def torch_fn(xt=xt, tbatches=tbatches, state=state):
                state["i"] = (state["i"] + 1) % len(tbatches)
                return xt[tbatches[state["i"]]]

        out.append(Case("gather", f"rows {batch} of {N}x{D}", {
            "fusednn": lambda x=x, next_index=next_index: ops.gather_rows(x, next_index()),
            "numpy": lambda x=x, next_index=next_index: x[next_index()],
            "torch": torch_fn,
        }, bytes=2.0 * batch * D * 4, repeat=0 if dev.quick else 200))
    return out
