"""Softmax cross-entropy forward + backward: fusednn's one pass vs the reference (NumPy's or
CuPy's max/exp/log, as a user writes it) vs PyTorch (F.cross_entropy + backward)."""

import os
import threading

import numpy as np

from harness import Case, streaming_passes

SHAPES = [(256, 10), (4096, 1000), ((16384, 4096), "cuda")]
# softmax / log_softmax alone: 10 classes (the CPU's across-rows path: forward under 24 float32 columns)
# and 100 and 1000 (the per-row paths), 262144 elements each.
SOFTMAX_SHAPES = [(26214, 10), (2621, 100), (262, 1000)]


def _reference(xp, z, labels, eps):
    """Loss and dlogits of the mean smoothed cross-entropy (PyTorch's "all" smoothing)."""
    n, k = z.shape
    m = z.max(axis=1, keepdims=True)
    e = xp.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    logp = z - m - xp.log(s)
    rows = xp.arange(n)
    loss = -((1 - eps) * logp[rows, labels] + eps / k * logp.sum(axis=1)).mean()
    d = e / s
    d -= eps / k
    d[rows, labels] -= 1 - eps
    return loss, d / n


def _softmax_reference(xp, z, log):
    """softmax / log_softmax over the last axis as a user writes it in NumPy or CuPy."""
    shifted = z - z.max(axis=-1, keepdims=True)
    if log:
        return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))
    e = xp.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _ordinary_store_copy(x, y):
    """y = x * 1 by NumPy on one thread per core: x read, y written with ordinary stores, which
    read each line of y from memory before writing it (three bytes moved per two counted)."""
    threads = os.cpu_count() or 1
    parts = list(zip(np.array_split(x, threads), np.array_split(y, threads)))
    one = np.float32(1)

    def run():
        workers = [threading.Thread(target=np.multiply, args=(a, one), kwargs={"out": b}) for a, b in parts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    return run


CACHED_ROWS = 512  # rows of the compute-floor row: 2 MB of logits and 2 MB of dlogits, in the L3


def cases(dev):
    from fusednn import ops
    xp, torch = dev.xp, dev.torch
    out = []
    for n, k in dev.sizes(SHAPES):
        if k >= 1000:  # the memory-bound case: logits and dlogits beyond the L3
            n, k = dev.dram_shape((n, k), arrays=2)
        rng = np.random.default_rng(0)
        logits = dev.array(rng.standard_normal((n, k), np.float32) * 3)
        labels = dev.array(rng.integers(0, k, n))
        dlogits = xp.empty_like(logits)
        zt = lt = None
        if torch is not None:
            zt, lt = dev.tensor(logits).clone().requires_grad_(), dev.tensor(labels)
        for smoothing in (0.0, 0.1):
            torch_fn = None
            if torch is not None:
                torch_fn = lambda zt=zt, lt=lt, e=smoothing: torch.autograd.grad(  # noqa: E731
                    torch.nn.functional.cross_entropy(zt, lt, label_smoothing=e), zt)
            out.append(Case("xent", f"fwd+bwd {n}x{k} eps={smoothing}", {
                "fusednn": lambda z=logits, l=labels, e=smoothing: ops.softmax_cross_entropy_with_grad(
                    z, l, label_smoothing=e, smoothing="all"),
                "out=": lambda z=logits, l=labels, d=dlogits, e=smoothing: ops.softmax_cross_entropy_with_grad(
                    z, l, label_smoothing=e, smoothing="all", out=d),
                "numpy": lambda z=logits, l=labels, e=smoothing: _reference(xp, z, l, e),
                "torch": torch_fn,
            }, bytes=2.0 * logits.nbytes + labels.nbytes))  # logits read once, dlogits written once
            if dev.quick:
                break
        if k >= 1000:  # the same bytes by a plain streaming kernel: the floor of one fused pass
            out.append(Case("xent", f"fwd+bwd floor {n}x{k}", {
                "fusednn": streaming_passes(copies=[(logits, dlogits)])}, bytes=2.0 * logits.nbytes + labels.nbytes))
            # The floor of a kernel that writes dlogits with ordinary stores, as this one does
            # (streaming stores measured slower in it: docs/design.md).
            if not dev.cuda:
                out.append(Case("xent", f"fwd+bwd floor, ordinary stores {n}x{k}", {
                    "fusednn": _ordinary_store_copy(logits, dlogits)}, bytes=2.0 * logits.nbytes + labels.nbytes))
            # The arithmetic floor: the same rows' work with the arrays in cache (the kernel on
            # its first CACHED_ROWS rows, n / CACHED_ROWS calls): the kernel's own compute bound.
            def in_cache(z=logits[:CACHED_ROWS], l=labels[:CACHED_ROWS], d=dlogits[:CACHED_ROWS],
                         calls=max(1, n // CACHED_ROWS)):
                for _ in range(calls):
                    ops.softmax_cross_entropy_with_grad(z, l, smoothing="all", out=d)

            out.append(Case("xent", f"fwd+bwd compute floor {n}x{k} (rows in cache)", {"fusednn": in_cache}))
    for n, k in dev.sizes(SOFTMAX_SHAPES):
        x = dev.array(np.random.default_rng(1).standard_normal((n, k), np.float32) * 3)
        xt = dev.tensor(x) if torch is not None else None
        for name, log in (("softmax", False), ("log_softmax", True)):
            torch_fn = None
            if torch is not None:
                tf = torch.log_softmax if log else torch.softmax
                torch_fn = lambda xt=xt, tf=tf: tf(xt, dim=-1)  # noqa: E731
            out.append(Case("xent", f"{name} {n}x{k}", {
                "fusednn": lambda x=x, f=getattr(ops, name): f(x),
                "numpy": lambda x=x, log=log: _softmax_reference(xp, x, log),
                "torch": torch_fn,
            }, bytes=2.0 * x.nbytes))  # x read once, the output written once
    return out
