"""Dropout forward + backward: fusednn (Philox, mask regenerated in the backward) vs the
reference (a generator's uniform numbers >= p, mask kept; NumPy or CuPy) vs PyTorch F.dropout +
backward; and dropout(relu(x)) as one op (fusednn: one pass forward, the mask read off the
output in the backward) vs the same composition in the reference and PyTorch. Two floors, measured
in the same run: the same bytes moved by plain streaming kernels, and the random-number work
alone (one pass's Philox words and masks, on an array that stays in the cache)."""

import numpy as np

from harness import Case, streaming_passes

SIZES = [16 * 2**20, (64 * 2**20, "cuda")]
P = 0.5
CACHED = 2**20  # elements of the in-cache array of the Philox floor (4 MiB, x and y in L3)


def cases(dev):
    from fusednn import ops
    xp, torch = dev.xp, dev.torch
    out = []
    for n in dev.sizes(SIZES):
        n = dev.dram_shape(n, arrays=4)  # x, dy, y, dx
        rng = np.random.default_rng(0)
        x = dev.array(rng.standard_normal(n, np.float32))
        dy = dev.array(rng.standard_normal(n, np.float32))
        y, dx = xp.empty_like(x), xp.empty_like(x)
        gen = xp.random.default_rng(1)
        scale = np.float32(1 / (1 - P))

        def fused(x=x, dy=dy):
            return ops.dropout(x, P, seed=1, offset=7), ops.dropout_backward(dy, P, seed=1, offset=7)

        def fused_out(x=x, dy=dy, y=y, dx=dx):
            ops.dropout(x, P, seed=1, offset=7, out=y)
            ops.dropout_backward(dy, P, seed=1, offset=7, out=dx)

        def reference(x=x, dy=dy, gen=gen):
            mask = gen.random(x.shape, dtype=np.float32) >= P
            return x * mask * scale, dy * mask * scale

        def fused_relu(x=x, dy=dy):
            y = ops.dropout(x, P, seed=1, offset=7, activation="relu")
            return y, ops.dropout_backward(dy, P, seed=1, offset=7, y=y, activation="relu")

        def fused_relu_out(x=x, dy=dy, y=y, dx=dx):
            ops.dropout(x, P, seed=1, offset=7, activation="relu", out=y)
            ops.dropout_backward(dy, P, seed=1, offset=7, y=y, activation="relu", out=dx)

        def reference_relu(x=x, dy=dy, gen=gen):
            mask = gen.random(x.shape, dtype=np.float32) >= P
            out = xp.maximum(x, 0) * mask * scale
            return out, xp.where(out > 0, dy * scale, np.float32(0))

        torch_fn = torch_relu = None
        if torch is not None:
            F = torch.nn.functional
            xt = dev.tensor(x).clone().requires_grad_()
            dyt = dev.tensor(dy)
            torch_fn = lambda xt=xt, dyt=dyt: torch.autograd.grad(F.dropout(xt, P, training=True), xt, dyt)  # noqa
            torch_relu = lambda xt=xt, dyt=dyt: torch.autograd.grad(  # noqa: E731
                F.dropout(F.relu(xt), P, training=True), xt, dyt)

        size = f"{n // 2**20}M"
        # x and dy read once, y and dx written once (the backward with relu also reads y).
        out.append(Case("dropout", f"fwd+bwd {size} p={P}",
                        {"fusednn": fused, "out=": fused_out, "numpy": reference, "torch": torch_fn},
                        bytes=4.0 * x.nbytes))
        out.append(Case("dropout", f"relu+dropout fwd+bwd {size} p={P}",
                        {"fusednn": fused_relu, "out=": fused_relu_out, "numpy": reference_relu, "torch": torch_relu},
                        bytes=5.0 * x.nbytes))
        # The bytes of the first case by plain streaming kernels (no random numbers): its floor.
        out.append(Case("dropout", f"fwd+bwd floor {size}",
                        {"fusednn": streaming_passes(copies=[(x, y), (dy, dx)])}, bytes=4.0 * x.nbytes))

        # The compute floor: the n Philox words (and masks) of one pass, generated and applied to
        # an array in the cache (dropout with out= on its first CACHED elements, n / CACHED calls):
        # fwd+bwd regenerates them, so it needs this twice, spread over the cores.
        def philox_words(xc=x[:CACHED], yc=y[:CACHED], calls=max(1, n // CACHED)):
            for k in range(calls):
                ops.dropout(xc, P, seed=1, offset=7 + k, out=yc)

        out.append(Case("dropout", f"Philox+mask floor {size} words (in cache)", {"fusednn": philox_words}))
    return out
