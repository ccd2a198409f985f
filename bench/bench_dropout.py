"""Dropout forward + backward on 16M float32: fusednn (Philox, mask regenerated in the
backward) vs NumPy (rng.random(x.shape) >= p, mask kept) vs PyTorch F.dropout + backward; and
dropout(relu(x)) as one op (fusednn: one pass forward, the mask read off the output in the
backward) vs the same composition in NumPy and PyTorch."""

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

    def fused_relu():
        ops.dropout(x, P, seed=1, offset=7, activation="relu", out=y)
        ops.dropout_backward(dy, P, seed=1, offset=7, y=y, activation="relu", out=dx)

    def numpy_relu_dropout():
        scale = np.float32(1 / (1 - P))
        mask = gen.random(x.shape) >= P
        out = np.maximum(x, 0) * mask * scale
        return out, np.where(out > 0, dy * scale, np.float32(0))

    torch_relu = None
    if torch is not None:
        def torch_relu():
            out = F.dropout(F.relu(xt), P, training=True)
            return torch.autograd.grad(out, xt, dyt)

    # x and dy read once, y and dx written once (the backward with relu also reads y).
    return [Case("dropout", "fwd+bwd 16M p=0.5", {"fusednn": fused, "numpy": numpy_dropout, "torch": torch_fn},
                 bytes=4.0 * x.nbytes),
            Case("dropout", "relu+dropout fwd+bwd 16M p=0.5",
                 {"fusednn": fused_relu, "numpy": numpy_relu_dropout, "torch": torch_relu}, bytes=5.0 * x.nbytes)]
