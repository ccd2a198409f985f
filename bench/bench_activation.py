"""ReLU forward + backward: fusednn.ops.relu / relu_backward vs the reference (maximum and
where, NumPy or CuPy) vs PyTorch (relu and its autograd backward)."""

import numpy as np

from harness import Case

SIZES = [16 * 2**20, (256 * 2**20, "cuda")]


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

        def fused(x=x, dy=dy):
            y = ops.relu(x)
            return y, ops.relu_backward(dy, y)

        def fused_out(x=x, dy=dy, y=y, dx=dx):
            ops.relu(x, out=y)
            ops.relu_backward(dy, y, out=dx)

        def reference(x=x, dy=dy):
            out = xp.maximum(x, np.float32(0))
            return out, xp.where(out > 0, dy, np.float32(0))

        torch_fn = None
        if torch is not None:
            xt = dev.tensor(x).clone().requires_grad_()
            dyt = dev.tensor(dy)
            torch_fn = lambda xt=xt, dyt=dyt: torch.autograd.grad(torch.relu(xt), xt, dyt)  # noqa: E731

        # forward: x read, y written; backward: dy and y read, dx written.
        out.append(Case("activation", f"relu fwd+bwd {n // 2**20}M", {
            "fusednn": fused, "out=": fused_out, "numpy": reference, "torch": torch_fn}, bytes=5.0 * x.nbytes))
    return out
