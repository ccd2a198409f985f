"""One optimizer step over 10M float32 parameters (64M on a GPU): fusednn (one fused pass) vs
the reference (fusednn.reference's NumPy rules on the CPU; on the GPU, Adam written with CuPy)
vs PyTorch's fastest variant on the device (fused=True where torch has a fused kernel, else
foreach=True), for (a) one flat buffer and (b) the same parameters as 200 arrays."""

import numpy as np

from harness import Case

SIZES = [10_000_000, (64 * 2**20, "cuda")]
ARRAYS = 200
QUICK_RULES = ("sgd momentum", "adam")

# name: (fusednn class, kwargs, bytes per parameter, torch class, torch fused? (else foreach))
RULES = {
    "sgd momentum": ("SGD", dict(lr=0.01, momentum=0.9), 20, "SGD", True),
    "adagrad": ("Adagrad", dict(lr=0.01), 20, "Adagrad", True),
    "rmsprop": ("RMSprop", dict(lr=0.01), 20, "RMSprop", False),
    "adadelta": ("Adadelta", dict(), 28, "Adadelta", False),
    "adam": ("Adam", dict(lr=1e-3), 28, "Adam", True),
    "nadam": ("NAdam", dict(), 28, "NAdam", False),
    "adamw clip": ("AdamW", dict(lr=1e-3, max_grad_norm=1.0), 32, "AdamW", True),  # + one read of g for the norm
}


def _split(x, parts):
    bounds = np.linspace(0, x.size, parts + 1).astype(int)
    return [x[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _numpy_step(name, kw, n):
    """A step with the NumPy reference functions (state allocated as torch would)."""
    from fusednn import reference as ref
    p = np.random.default_rng(0).standard_normal(n, np.float32)
    g = np.random.default_rng(1).standard_normal(n, np.float32) * 1e-3
    z = lambda: np.zeros_like(p)  # noqa: E731
    if name == "sgd momentum":
        b = z()
        return lambda: ref.sgd_step(p, g, b, lr=kw["lr"], momentum=kw["momentum"])
    if name == "adagrad":
        s = z()
        return lambda: ref.adagrad_step(p, g, s, step=1, lr=kw["lr"])
    if name == "rmsprop":
        s = z()
        return lambda: ref.rmsprop_step(p, g, s, None, None, lr=kw["lr"])
    if name == "adadelta":
        s, a = z(), z()
        return lambda: ref.adadelta_step(p, g, s, a)
    if name == "adam":
        m, v = z(), z()
        return lambda: ref.adam_step(p, g, m, v, None, step=1, lr=kw["lr"])
    if name == "nadam":
        m, v = z(), z()
        return lambda: ref.nadam_step(p, g, m, v, step=1, mu_product=1.0)
    m, v = z(), z()

    def adamw_clip():
        norm = ref.grad_norm(g)
        scale = min(1.0, 1.0 / (norm + 1e-6))
        ref.adam_step(p, g, m, v, None, step=1, lr=kw["lr"], weight_decay=1e-2, decoupled_weight_decay=True,
                      grad_scale=scale)
    return adamw_clip


def _cupy_adam(dev, n, lr):
    """Adam's first step written with CuPy (the GPU reference; the other rules have none)."""
    cp = dev.xp
    p = cp.random.standard_normal(n, cp.float32)
    g = cp.random.standard_normal(n, cp.float32) * 1e-3
    m, v = cp.zeros_like(p), cp.zeros_like(p)

    def step():
        m[...] = 0.9 * m + 0.1 * g
        v[...] = 0.999 * v + 0.001 * g * g
        p[...] -= lr * (m / 0.1) / (cp.sqrt(v / 0.001) + 1e-8)
    return step


def _reference(dev, name, kw, n):
    if not dev.cuda:
        return _numpy_step(name, kw, n)
    return _cupy_adam(dev, n, kw["lr"]) if name == "adam" else None


def cases(dev):
    from fusednn import optim
    from fusednn.params import FlatParameters
    torch = dev.torch
    out = []
    for n in dev.sizes(SIZES):
        n = dev.dram_shape(n, arrays=4)  # parameters, gradients and (at least) two state arrays
        for name, (cls, kw, bytes_per, tcls, fused) in RULES.items():
            if dev.quick and name not in QUICK_RULES:
                continue
            for layout in ("flat",) if dev.quick else ("flat", f"{ARRAYS} arrays"):
                rng = np.random.default_rng(0)
                if layout == "flat":
                    fp = FlatParameters({"p": (n,)}, device=dev.name)
                    fp.data[...] = dev.array(rng.standard_normal(n, np.float32))
                    fp.grad[...] = dev.array(rng.standard_normal(n, np.float32) * 1e-3)
                    opt = getattr(optim, cls)(fp, **kw)
                    fused_step = opt.step
                else:
                    params = [dev.array(a.copy()) for a in _split(rng.standard_normal(n, np.float32), ARRAYS)]
                    grads = [dev.array(a.copy()) for a in _split(rng.standard_normal(n, np.float32) * 1e-3, ARRAYS)]
                    opt = getattr(optim, cls)(params, **kw)
                    fused_step = lambda opt=opt, grads=grads: opt.step(grads)  # noqa: E731
                fused_step()  # allocate the state

                torch_fn = None
                if torch is not None:
                    flat = dev.tensor(dev.array(np.random.default_rng(0).standard_normal(n, np.float32)))
                    tparams = [flat.clone().requires_grad_()] if layout == "flat" else [
                        t.clone().requires_grad_() for t in flat.split([a.size for a in _split(np.empty(n), ARRAYS)])]
                    for t in tparams:
                        t.grad = torch.randn_like(t) * 1e-3
                    tkw = {k: v for k, v in kw.items() if k != "max_grad_norm"}
                    try:  # torch's fused kernels exist for some rules on some devices only
                        topt = getattr(torch.optim, tcls)(tparams, **tkw, **({"fused": True} if fused else {}),
                                                          **({} if fused else {"foreach": True}))
                    except (RuntimeError, ValueError):
                        topt = getattr(torch.optim, tcls)(tparams, **tkw, foreach=True)
                    if "max_grad_norm" in kw:
                        def torch_fn(topt=topt, tparams=tparams):
                            torch.nn.utils.clip_grad_norm_(tparams, kw["max_grad_norm"], foreach=True)
                            topt.step()
                    else:
                        torch_fn = topt.step
                    torch_fn()

                out.append(Case("optim", f"{name} {n / 1e6:.0f}M {layout}", {
                    "fusednn": fused_step,
                    "numpy": _reference(dev, name, kw, n) if layout == "flat" else None,
                    "torch": torch_fn,
                }, bytes=float(bytes_per) * n))
    return out
