"""ReLU forward + backward on 16M float32: fusednn.ops.relu / relu_backward vs NumPy
(np.maximum, np.where) vs PyTorch (relu and its autograd backward)."""

import numpy as np

from harness import Case

N = 16 * 2**20


def cases(torch=None):
    from fusednn import ops
    rng = np.random.default_rng(0)
    x = rng.standard_normal(N, np.float32)
    dy = rng.standard_normal(N, np.float32)
    y, dx = np.empty_like(x), np.empty_like(x)

    def fused():
        ops.relu(x, out=y)
        ops.relu_backward(dy, y, out=dx)

    def numpy_relu():
        out = np.maximum(x, np.float32(0))
        return out, np.where(out > 0, dy, np.float32(0))

    torch_fn = None
    if torch is not None:
        xt = torch.from_numpy(x).requires_grad_()
        dyt = torch.from_numpy(dy)

        def torch_fn():
            return torch.autograd.grad(torch.relu(xt), xt, dyt)

    # forward: x read, y written; backward: dy and y read, dx written.
    return [Case("activation", "relu fwd+bwd 16M", {"fusednn": fused, "numpy": numpy_relu, "torch": torch_fn},
                 bytes=5.0 * x.nbytes)]
