"""Dropout forward + backward on 16M float32: fusednn (Philox, mask regenerated in the
backward) vs NumPy (rng.random(x.shape) >= p, mask kept) vs PyTorch F.dropout + backward."""

import numpy as np

from harness import Case

N = 16 * 2**20
P = 0.5


def cases(torch=None):
    from fusednn import ops
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N, np.float32)
    dy = rng.standard_normal(N, np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)

    def fused():
        ops.dropout(x, P, seed=1, offset=7, out=y)
        ops.dropout_backward(dy, P, seed=1, offset=7, out=dx)

    gen = np.random.default_rng(1)

    def numpy_dropout():
        scale = np.float32(1 / (1 - P))
        mask = gen.random(x.shape) >= P
        return x * mask * scale, dy * mask * scale

    torch_fn = None
    if torch is not None:
        F = torch.nn.functional
        xt = torch.from_numpy(x).requires_grad_()
        dyt = torch.from_numpy(dy)

        def torch_fn():
            out = F.dropout(xt, P, training=True)
            return torch.autograd.grad(out, xt, dyt)

    # x and dy read once, y and dx written once.
    return [Case("dropout", "fwd+bwd 16M p=0.5", {"fusednn": fused, "numpy": numpy_dropout, "torch": torch_fn},
                 bytes=4.0 * x.nbytes)]
