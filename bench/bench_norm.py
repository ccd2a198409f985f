"""Batch norm and layer norm, training forward + backward: fusednn vs NumPy vs PyTorch."""

import numpy as np

from harness import Case


def cases(torch=None):
    from fusednn import ops, reference
    out = []
    for shape in [(4096, 1024), (64, 64, 28, 28)]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(shape, np.float32) * 2 + 1
        dy = rng.standard_normal(shape, np.float32)
        c = shape[1]
        gamma = rng.standard_normal(c).astype(np.float32)
        beta = rng.standard_normal(c).astype(np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)

        def bn(impl, x=x, dy=dy, gamma=gamma, beta=beta, rm=rm, rv=rv):
            y, mean, inv_std = impl.batch_norm(x, gamma, beta, rm, rv, training=True)
            return y, impl.batch_norm_backward(dy, x, gamma, mean, inv_std)

        torch_fn = None
        if torch is not None:
            F = torch.nn.functional
            xt, gt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, gamma, beta))
            rmt, rvt, dyt = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy()), torch.from_numpy(dy)

            def torch_fn(xt=xt, gt=gt, bt=bt, rmt=rmt, rvt=rvt, dyt=dyt):
                y = F.batch_norm(xt, rmt, rvt, gt, bt, training=True)
                return torch.autograd.grad(y, (xt, gt, bt), dyt)

        label = "x".join(map(str, shape))
        out.append(Case("norm", f"batch_norm fwd+bwd {label}", {
            "fusednn": lambda: bn(ops), "numpy": lambda: bn(reference), "torch": torch_fn,
        }, bytes=4.0 * x.nbytes))  # x and dy read once, y and dx written once

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4096, 1024), np.float32)
    dy = rng.standard_normal(x.shape, np.float32)
    gamma = rng.standard_normal(1024).astype(np.float32)
    beta = rng.standard_normal(1024).astype(np.float32)

    def ln(impl):
        y, mean, inv_std = impl.layer_norm(x, gamma, beta)
        return y, impl.layer_norm_backward(dy, x, gamma, mean, inv_std)

    torch_fn = None
    if torch is not None:
        F = torch.nn.functional
        xt, gt, bt = (torch.from_numpy(a).requires_grad_() for a in (x, gamma, beta))
        dyt = torch.from_numpy(dy)

        def torch_fn():
            y = F.layer_norm(xt, (1024,), gt, bt)
            return torch.autograd.grad(y, (xt, gt, bt), dyt)

    out.append(Case("norm", "layer_norm fwd+bwd 4096x1024", {
        "fusednn": lambda: ln(ops), "numpy": lambda: ln(reference), "torch": torch_fn,
    }, bytes=4.0 * x.nbytes))
    return out
