"""Batch norm and layer norm, training forward + backward: fusednn vs the reference (NumPy's or
CuPy's mean/var, as a user writes it) vs PyTorch on the same device; and local response norm
(forward + backward, against the NumPy reference and torch's)."""

import numpy as np

from harness import Case, streaming_passes

BATCH_SHAPES = [(4096, 1024), (64, 64, 28, 28), ((16384, 4096), "cuda")]
LAYER_SHAPES = [(4096, 1024), ((16384, 4096), "cuda")]
EPS = 1e-5
CACHED_ROWS = 512  # rows of layer norm's compute-floor row: 2 MB per array of 1024 columns, in the L3


def _bn_reference(xp, x, dy, gamma, beta):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    inv_std = 1 / xp.sqrt(x.var(axis=axes, keepdims=True) + EPS)
    xhat = (x - mean) * inv_std
    y = xhat * gamma.reshape(shape) + beta.reshape(shape)
    dbeta, dgamma = dy.sum(axis=axes), (dy * xhat).sum(axis=axes)
    m = x.size // x.shape[1]
    dx = gamma.reshape(shape) * inv_std * (dy - dbeta.reshape(shape) / m - xhat * dgamma.reshape(shape) / m)
    return y, dx, dgamma, dbeta


def _ln_reference(xp, x, dy, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    inv_std = 1 / xp.sqrt(x.var(axis=-1, keepdims=True) + EPS)
    xhat = (x - mean) * inv_std
    y = xhat * gamma + beta
    g = dy * gamma
    dx = inv_std * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    return y, dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def _aligned_like(a):
    """An uninitialized NumPy array of a's shape and dtype starting on a 64-byte boundary."""
    buf = np.empty(a.nbytes + 64, np.uint8)
    start = -buf.ctypes.data % 64
    return buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)


def _inputs(dev, shape, c, seed):
    rng = np.random.default_rng(seed)
    x = dev.array(rng.standard_normal(shape, np.float32) * 2 + 1)
    dy = dev.array(rng.standard_normal(shape, np.float32))
    gamma = dev.array(rng.standard_normal(c).astype(np.float32))
    beta = dev.array(rng.standard_normal(c).astype(np.float32))
    return x, dy, gamma, beta


def cases(dev):
    from fusednn import ops
    xp, torch = dev.xp, dev.torch
    F = torch.nn.functional if torch is not None else None
    out = []
    for shape in dev.sizes(BATCH_SHAPES):
        shape = dev.dram_shape(shape, arrays=4)  # x, dy, y, dx
        c = shape[1]
        x, dy, gamma, beta = _inputs(dev, shape, c, 0)
        rm, rv = xp.zeros(c, np.float32), xp.ones(c, np.float32)
        y_buf, dx_buf = xp.empty_like(x), xp.empty_like(x)
        stats = (xp.empty(c, np.float32), xp.empty(c, np.float32))
        grads = (dx_buf, xp.empty(c, np.float32), xp.empty(c, np.float32))

        def bn_fwd(x=x, gamma=gamma, beta=beta, rm=rm, rv=rv):
            return ops.batch_norm(x, gamma, beta, rm, rv, training=True)

        def bn_fwd_out(x=x, gamma=gamma, beta=beta, rm=rm, rv=rv, y=y_buf, stats=stats):
            return ops.batch_norm(x, gamma, beta, rm, rv, training=True, out=(y, *stats))

        def bn(x=x, dy=dy, gamma=gamma, beta=beta, rm=rm, rv=rv):
            y, mean, inv_std = ops.batch_norm(x, gamma, beta, rm, rv, training=True)
            return y, ops.batch_norm_backward(dy, x, gamma, mean, inv_std)

        def bn_out(x=x, dy=dy, gamma=gamma, beta=beta, rm=rm, rv=rv, y=y_buf, stats=stats, grads=grads):
            y, mean, inv_std = ops.batch_norm(x, gamma, beta, rm, rv, training=True, out=(y, *stats))
            return y, ops.batch_norm_backward(dy, x, gamma, mean, inv_std, out=grads)

        torch_fwd = torch_fn = None
        if torch is not None:
            xt, gt, bt = (dev.tensor(a).clone().requires_grad_() for a in (x, gamma, beta))
            rmt, rvt, dyt = dev.tensor(rm.copy()), dev.tensor(rv.copy()), dev.tensor(dy)
            xt0, gt0, bt0 = dev.tensor(x), dev.tensor(gamma), dev.tensor(beta)

            def torch_fwd(xt=xt0, gt=gt0, bt=bt0, rmt=rmt, rvt=rvt):
                with torch.no_grad():
                    return F.batch_norm(xt, rmt, rvt, gt, bt, training=True)

            def torch_fn(xt=xt, gt=gt, bt=bt, rmt=rmt, rvt=rvt, dyt=dyt):
                y = F.batch_norm(xt, rmt, rvt, gt, bt, training=True)
                return torch.autograd.grad(y, (xt, gt, bt), dyt)

        def bn_reference_fwd(x=x, g=gamma, b=beta):
            axes, bshape = (0,) + tuple(range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
            mean = x.mean(axis=axes, keepdims=True)
            return (x - mean) / xp.sqrt(x.var(axis=axes, keepdims=True) + EPS) * g.reshape(bshape) + b.reshape(bshape)

        name = "x".join(map(str, shape))
        # The forward reads x and writes y (2 passes over x's size at the least).
        out.append(Case("norm", f"batch_norm fwd {name}", {
            "fusednn": bn_fwd, "out=": bn_fwd_out, "numpy": bn_reference_fwd, "torch": torch_fwd,
        }, bytes=2.0 * x.nbytes))
        out.append(Case("norm", f"batch_norm fwd+bwd {name}", {
            "fusednn": bn, "out=": bn_out, "numpy": lambda x=x, dy=dy, g=gamma, b=beta: _bn_reference(xp, x, dy, g, b),
            "torch": torch_fn,
        }, bytes=4.0 * x.nbytes))  # x and dy read once, y and dx written once
        # Training needs more passes than those bytes: the statistics before the normalizing pass
        # (x read twice in the forward) and the sums of dy and dy * xhat before dx (dy and x read
        # twice in the backward). The same passes by plain streaming kernels, on the same bytes:
        # the floor of batch norm in training.
        out.append(Case("norm", f"batch_norm fwd floor {name}", {
            "fusednn": streaming_passes(reads=[x], copies=[(x, y_buf)])}, bytes=2.0 * x.nbytes))
        out.append(Case("norm", f"batch_norm fwd+bwd floor {name}", {
            "fusednn": streaming_passes(reads=[x, x, dy], copies=[(x, y_buf)], pairs=[(dy, x, dx_buf)]),
        }, bytes=4.0 * x.nbytes))

    for shape in dev.sizes(LAYER_SHAPES):
        shape = dev.dram_shape(shape, arrays=4)
        d = shape[-1]
        x, dy, gamma, beta = _inputs(dev, shape, d, 1)
        y_buf = xp.empty_like(x)
        stats = (xp.empty(shape[:-1], np.float32), xp.empty(shape[:-1], np.float32))
        grads = (xp.empty_like(x), xp.empty(d, np.float32), xp.empty(d, np.float32))

        def ln(x=x, dy=dy, gamma=gamma, beta=beta):
            y, mean, inv_std = ops.layer_norm(x, gamma, beta)
            return y, ops.layer_norm_backward(dy, x, gamma, mean, inv_std)

        def ln_out(x=x, dy=dy, gamma=gamma, beta=beta, y=y_buf, stats=stats, grads=grads):
            y, mean, inv_std = ops.layer_norm(x, gamma, beta, out=(y, *stats))
            return y, ops.layer_norm_backward(dy, x, gamma, mean, inv_std, out=grads)

        impls = {"fusednn": ln, "out=": ln_out}
        if xp is np:
            # out= buffers on a 64-byte boundary (NumPy's own large arrays, x and dy here, start 16
            # bytes past one): the outputs at another offset modulo 4096 than the inputs (the
            # kernels choose their store direction by it: csrc/ops/norm_cpu.cpp, store_backward)
            def ln_out_aligned(x=x, dy=dy, gamma=gamma, beta=beta, y=_aligned_like(x), stats=stats,
                               grads=(_aligned_like(x), *grads[1:])):
                y, mean, inv_std = ops.layer_norm(x, gamma, beta, out=(y, *stats))
                return y, ops.layer_norm_backward(dy, x, gamma, mean, inv_std, out=grads)

            impls["out= (64-byte aligned)"] = ln_out_aligned

        torch_fn = None
        if torch is not None:
            xt, gt, bt = (dev.tensor(a).clone().requires_grad_() for a in (x, gamma, beta))
            dyt = dev.tensor(dy)

            def torch_fn(xt=xt, gt=gt, bt=bt, dyt=dyt, d=d):
                y = F.layer_norm(xt, (d,), gt, bt)
                return torch.autograd.grad(y, (xt, gt, bt), dyt)

        out.append(Case("norm", f"layer_norm fwd+bwd {'x'.join(map(str, shape))}", {
            **impls, "numpy": lambda x=x, dy=dy, g=gamma, b=beta: _ln_reference(xp, x, dy, g, b), "torch": torch_fn,
        }, bytes=4.0 * x.nbytes))
        # Rows are independent: one read of x (and dy) and one write of y (and dx) suffice, the
        # passes of two plain streaming kernels.
        out.append(Case("norm", f"layer_norm fwd+bwd floor {'x'.join(map(str, shape))}", {
            "fusednn": streaming_passes(copies=[(x, y_buf)], pairs=[(dy, x, grads[0])])}, bytes=4.0 * x.nbytes))
        # The arithmetic floor: the same rows' work with the arrays in cache (the kernels with out=
        # on the first CACHED_ROWS rows, rows / CACHED_ROWS calls): the kernels' own compute bound.
        rows = x.size // d
        xc, dyc = x.reshape(rows, d)[:CACHED_ROWS], dy.reshape(rows, d)[:CACHED_ROWS]
        fwd_c = (xp.empty_like(xc), xp.empty(len(xc), np.float32), xp.empty(len(xc), np.float32))
        bwd_c = (xp.empty_like(xc), xp.empty(d, np.float32), xp.empty(d, np.float32))

        def ln_in_cache(x=xc, dy=dyc, gamma=gamma, beta=beta, fwd=fwd_c, bwd=bwd_c, calls=max(1, rows // CACHED_ROWS)):
            for _ in range(calls):
                ops.layer_norm(x, gamma, beta, out=fwd)
                ops.layer_norm_backward(dy, x, gamma, fwd[1], fwd[2], out=bwd)

        out.append(Case("norm", f"layer_norm fwd+bwd compute floor {'x'.join(map(str, shape))} (rows in cache)",
                        {"fusednn": ln_in_cache}))
    if not dev.quick:
        out.append(_lrn_case(dev))
    return out


def _lrn_case(dev):
    """Local response norm forward + backward (size 5, torch's alpha, beta 0.75 and k) of
    (16, 64, 28, 28) float32: bound by the powers d^-beta, not by memory."""
    from fusednn import ops, reference
    torch = dev.torch
    rng = np.random.default_rng(5)
    x = dev.array(rng.standard_normal((16, 64, 28, 28), np.float32))
    dy = dev.array(rng.standard_normal((16, 64, 28, 28), np.float32))

    def step(lib):
        lib.local_response_norm(x, 5)
        return lib.local_response_norm_backward(dy, x, 5)

    torch_step = None
    if torch is not None:
        xt = dev.tensor(x).requires_grad_()
        dyt = dev.tensor(dy)

        def torch_step():
            return torch.autograd.grad(torch.nn.functional.local_response_norm(xt, 5), xt, dyt)
    return Case("norm", "local_response_norm fwd+bwd 16x64x28x28 size 5", {
        "fusednn": lambda: step(ops), "numpy": None if dev.cuda else (lambda: step(reference)), "torch": torch_step})
