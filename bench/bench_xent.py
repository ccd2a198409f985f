"""Softmax cross-entropy forward + backward: fusednn's one pass vs NumPy vs PyTorch
(F.cross_entropy + backward)."""

import numpy as np

from harness import Case

SHAPES = [(4096, 1000), (256, 10)]


def cases(torch=None):
    from fusednn import ops, reference
    out = []
    for n, k in SHAPES:
        rng = np.random.default_rng(0)
        logits = rng.standard_normal((n, k), np.float32) * 3
        labels = rng.integers(0, k, n)
        dlogits = np.empty_like(logits)
        torch_fn = None
        if torch is not None:
            F = torch.nn.functional
            zt = torch.from_numpy(logits).requires_grad_()
            lt = torch.from_numpy(labels)

            def torch_fn(zt=zt, lt=lt):
                loss = F.cross_entropy(zt, lt)
                return loss.item(), torch.autograd.grad(loss, zt)

        for smoothing in (0.0, 0.1):
            out.append(Case("xent", f"fwd+bwd {n}x{k} eps={smoothing}", {
                "fusednn": lambda z=logits, l=labels, d=dlogits, e=smoothing: ops.softmax_cross_entropy_with_grad(
                    z, l, label_smoothing=e, smoothing="all", out=d),
                "numpy": lambda z=logits, l=labels, e=smoothing: reference.softmax_cross_entropy_with_grad(
                    z, l, label_smoothing=e, smoothing="all"),
                "torch": None if torch is None else (
                    torch_fn if smoothing == 0 else
                    lambda zt=zt, lt=lt, e=smoothing: torch.autograd.grad(
                        torch.nn.functional.cross_entropy(zt, lt, label_smoothing=e), zt)),
            }, bytes=2.0 * logits.nbytes + labels.nbytes))  # logits read once, dlogits written once
    return out
