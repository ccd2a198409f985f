"""Linear (+bias, +ReLU) forward and backward: fusednn vs NumPy vs PyTorch CPU."""

import numpy as np

from fusednn import ops, reference
from harness import Case

SHAPES = [(128, 784, 256), (4096, 1024, 1024), (32, 512, 512)]  # (N, in, out)


def cases(torch=None):
    out = []
    for n, i, o in SHAPES:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, i), np.float32)
        w = (rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)
        b = rng.standard_normal(o).astype(np.float32)
        dy = rng.standard_normal((n, o), np.float32)
        y = ops.linear(x, w, b, "relu")
        flops = 2.0 * n * i * o
        shape = f"{n}x{i}x{o}"

        torch_fwd = torch_bwd = None
        if torch is not None:
            F = torch.nn.functional
            xt, wt, bt, dyt = (torch.from_numpy(a) for a in (x, w, b, dy))
            torch_fwd = lambda xt=xt, wt=wt, bt=bt: F.relu(F.linear(xt, wt, bt))  # noqa: E731
            xg, wg, bg = (t.clone().requires_grad_() for t in (xt, wt, bt))
            yg = F.relu(F.linear(xg, wg, bg))
            torch_bwd = lambda yg=yg, xg=xg, wg=wg, bg=bg, dyt=dyt: torch.autograd.grad(  # noqa: E731
                yg, (xg, wg, bg), dyt, retain_graph=True)

        out.append(Case("linear", f"fwd relu {shape}", {
            "fusednn": lambda x=x, w=w, b=b: ops.linear(x, w, b, "relu"),
            "numpy": lambda x=x, w=w, b=b: reference.linear(x, w, b, "relu"),
            "torch": torch_fwd,
        }, flops=flops))
        out.append(Case("linear", f"bwd relu {shape}", {
            "fusednn": lambda dy=dy, x=x, w=w, y=y: ops.linear_backward(dy, x, w, y, "relu"),
            "numpy": lambda dy=dy, x=x, w=w, y=y: reference.linear_backward(dy, x, w, y, "relu"),
            "torch": torch_bwd,
        }, flops=2 * flops))
    return out
