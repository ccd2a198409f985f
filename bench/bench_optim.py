"""One optimizer step over 10M float32 parameters: fusednn (one fused pass) vs the NumPy
reference vs PyTorch's fastest CPU variant (fused=True where torch has a fused CPU kernel,
else foreach=True), for (a) one flat buffer and (b) the same parameters as 200 arrays."""

import numpy as np

from harness import Case

N = 10_000_000
ARRAYS = 200

# name: (fusednn class, kwargs, reference function name, bytes per parameter, torch class, torch fused?)
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


def _numpy_step(name, kw):
    """A step with the NumPy reference functions (state allocated as torch would)."""
    from fusednn import reference as ref
    p = np.random.default_rng(0).standard_normal(N, np.float32)
    g = np.random.default_rng(1).standard_normal(N, np.float32) * 1e-3
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


def cases(torch=None):
    from fusednn import optim
    from fusednn.params import FlatParameters
    out = []
    for name, (cls, kw, bytes_per, tcls, fused) in RULES.items():
        for layout in ("flat", f"{ARRAYS} arrays"):
            rng = np.random.default_rng(0)
            if layout == "flat":
                fp = FlatParameters({"p": (N,)})
                fp.data[...] = rng.standard_normal(N, np.float32)
                fp.grad[...] = rng.standard_normal(N, np.float32) * 1e-3
                opt = getattr(optim, cls)(fp, **kw)
                fused_step = opt.step
            else:
                params = [a.copy() for a in _split(rng.standard_normal(N, np.float32), ARRAYS)]
                grads = [a.copy() for a in _split(rng.standard_normal(N, np.float32) * 1e-3, ARRAYS)]
                opt = getattr(optim, cls)(params, **kw)
                fused_step = lambda opt=opt, grads=grads: opt.step(grads)  # noqa: E731
            fused_step()  # allocate the state

            torch_fn = None
            if torch is not None:
                flat = torch.from_numpy(np.random.default_rng(0).standard_normal(N, np.float32))
                tparams = [flat.clone().requires_grad_()] if layout == "flat" else [
                    t.clone().requires_grad_() for t in flat.split([a.size for a in _split(np.empty(N), ARRAYS)])]
                for t in tparams:
                    t.grad = torch.randn_like(t) * 1e-3
                tkw = {k: v for k, v in kw.items() if k != "max_grad_norm"}
                variant = {"fused": True} if fused else {"foreach": True}
                topt = getattr(torch.optim, tcls)(tparams, **tkw, **variant)
                if "max_grad_norm" in kw:
                    def torch_fn(topt=topt, tparams=tparams):
                        torch.nn.utils.clip_grad_norm_(tparams, kw["max_grad_norm"], foreach=True)
                        topt.step()
                else:
                    torch_fn = topt.step
                torch_fn()

            out.append(Case("optim", f"{name} 10M {layout}", {
                "fusednn": fused_step,
                "numpy": _numpy_step(name, kw) if layout == "flat" else None,
                "torch": torch_fn,
            }, bytes=float(bytes_per) * N))
    return out
