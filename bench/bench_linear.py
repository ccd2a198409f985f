"""Linear (+bias, +ReLU) forward and backward: fusednn vs the reference (NumPy's / CuPy's
matmul, as a user writes it) vs PyTorch on the same device."""

import numpy as np

from harness import Case

# (N, in, out); the last only on a GPU.
SHAPES = [(128, 784, 256), (4096, 1024, 1024), (32, 512, 512), ((8192, 4096, 4096), "cuda")]


def cases(dev):
    from fusednn import ops
    xp, torch = dev.xp, dev.torch
    out = []
    for n, i, o in dev.sizes(SHAPES):
        rng = np.random.default_rng(0)
        x = dev.array(rng.standard_normal((n, i), np.float32))
        w = dev.array((rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32))
        b = dev.array(rng.standard_normal(o).astype(np.float32))
        dy = dev.array(rng.standard_normal((n, o), np.float32))
        y = ops.linear(x, w, b, "relu")
        flops = 2.0 * n * i * o
        shape = f"{n}x{i}x{o}"

        def ref_fwd(x=x, w=w, b=b):
            return xp.maximum(x @ w.T + b, 0)

        def ref_bwd(dy=dy, x=x, w=w, y=y):
            dz = xp.where(y > 0, dy, 0).astype(dy.dtype, copy=False)
            return dz @ w, dz.T @ x, dz.sum(axis=0)

        torch_fwd = torch_bwd = None
        if torch is not None:
            F = torch.nn.functional
            xt, wt, bt, dyt = (dev.tensor(a) for a in (x, w, b, dy))
            torch_fwd = lambda xt=xt, wt=wt, bt=bt: F.relu(F.linear(xt, wt, bt))  # noqa: E731
            xg, wg, bg = (t.clone().requires_grad_() for t in (xt, wt, bt))
            yg = F.relu(F.linear(xg, wg, bg))
            torch_bwd = lambda yg=yg, xg=xg, wg=wg, bg=bg, dyt=dyt: torch.autograd.grad(  # noqa: E731
                yg, (xg, wg, bg), dyt, retain_graph=True)

        out.append(Case("linear", f"fwd relu {shape}", {
            "fusednn": lambda x=x, w=w, b=b: ops.linear(x, w, b, "relu"), "numpy": ref_fwd, "torch": torch_fwd,
        }, flops=flops))
        out.append(Case("linear", f"bwd relu {shape}", {
            "fusednn": lambda dy=dy, x=x, w=w, y=y: ops.linear_backward(dy, x, w, y, "relu"),
            "numpy": ref_bwd, "torch": torch_bwd,
        }, flops=2 * flops))
    return out
