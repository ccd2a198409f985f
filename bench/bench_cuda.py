"""GPU benchmarks (``python bench/run.py --device cuda``): fusednn on CuPy arrays vs the same op
written with CuPy (the reference a CuPy user would write) vs PyTorch CUDA, timed with CUDA
events, with the device's measured copy bandwidth and SGEMM rate as ceilings.

Targets (issue 6): the memory-bound kernels (cross-entropy, norms, dropout, optimizers) at
>= 80% of the copy bandwidth; linear within 5% of a plain cuBLASLt GEMM (the SGEMM column).
"""

import json

import fusednn
from fusednn import ops, optim
from harness import Case, cuda_median_seconds, run_cases


def _ceilings(cp):
    x = cp.empty(256 * 2**20, cp.float32)  # 1 GiB
    y = cp.empty_like(x)
    copy = cuda_median_seconds(lambda: cp.copyto(y, x), 10)
    n = 8192
    a, b = cp.random.standard_normal((n, n), cp.float32), cp.random.standard_normal((n, n), cp.float32)
    gemm = cuda_median_seconds(lambda: cp.matmul(a, b), 5)
    return {"bandwidth_gbytes": 2 * x.nbytes / copy / 1e9, "sgemm_gflops": 2 * n**3 / gemm / 1e9}


def _linear(cp, torch):
    n, k, m = 8192, 4096, 4096
    x, w, b = (cp.random.standard_normal(s, cp.float32) for s in ((n, k), (m, k), (m,)))
    y = ops.linear(x, w, b, "relu")
    dy = cp.random.standard_normal(y.shape, cp.float32)
    impls = {"fusednn": lambda: ops.linear(x, w, b, "relu"), "numpy": lambda: cp.maximum(x @ w.T + b, 0)}
    back = {"fusednn": lambda: ops.linear_backward(dy, x, w, y, "relu"),
            "numpy": lambda: (lambda dz: (dz @ w, dz.T @ x, dz.sum(0)))(dy * (y > 0))}
    if torch is not None:
        tx, tw, tb, tdy = (torch.as_tensor(a, device="cuda") for a in (x, w, b, dy))
        impls["torch"] = lambda: torch.relu(torch.nn.functional.linear(tx, tw, tb))
        ty = impls["torch"]()
        back["torch"] = lambda: (lambda dz: (dz @ tw, dz.T @ tx, dz.sum(0)))(tdy * (ty > 0))
    return [Case("linear", "fwd relu 8192x4096x4096", impls, flops=2.0 * n * k * m),
            Case("linear", "bwd relu 8192x4096x4096", back, flops=4.0 * n * k * m)]


def _xent(cp, torch):
    n, k = 16384, 4096
    z = cp.random.standard_normal((n, k), cp.float32) * 4
    labels = cp.random.randint(0, k, n)

    def reference():
        m = z.max(1, keepdims=True)
        e = cp.exp(z - m)
        s = e.sum(1, keepdims=True)
        loss = (cp.log(s[:, 0]) + m[:, 0] - z[cp.arange(n), labels]).mean()
        p = e / s
        p[cp.arange(n), labels] -= 1
        return loss, p / n

    impls = {"fusednn": lambda: ops.softmax_cross_entropy_with_grad(z, labels), "numpy": reference}
    if torch is not None:
        tz, tl = torch.as_tensor(z, device="cuda").requires_grad_(), torch.as_tensor(labels, device="cuda")

        def torch_fn():
            tz.grad = None
            torch.nn.functional.cross_entropy(tz, tl).backward()
        impls["torch"] = torch_fn
    return [Case("xent", "fwd+bwd 16384x4096", impls, bytes=2.0 * z.nbytes)]


def _norm(cp, torch):
    n, c = 16384, 4096
    x = cp.random.standard_normal((n, c), cp.float32)
    g, b = cp.ones(c, cp.float32), cp.zeros(c, cp.float32)
    rm, rv = cp.zeros(c, cp.float32), cp.ones(c, cp.float32)

    def bn_reference():
        mean, var = x.mean(0), x.var(0)
        return (x - mean) / cp.sqrt(var + 1e-5) * g + b

    def ln_reference():
        mean, var = x.mean(1, keepdims=True), x.var(1, keepdims=True)
        return (x - mean) / cp.sqrt(var + 1e-5) * g + b

    bn = {"fusednn": lambda: ops.batch_norm(x, g, b, rm, rv, training=True), "numpy": bn_reference}
    ln = {"fusednn": lambda: ops.layer_norm(x, g, b), "numpy": ln_reference}
    if torch is not None:
        tx, tg, tb, trm, trv = (torch.as_tensor(a, device="cuda") for a in (x, g, b, rm.copy(), rv.copy()))
        bn["torch"] = lambda: torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=True)
        ln["torch"] = lambda: torch.nn.functional.layer_norm(tx, (c,), tg, tb)
    return [Case("norm", "batch_norm fwd 16384x4096", bn, bytes=2.0 * x.nbytes),
            Case("norm", "layer_norm fwd 16384x4096", ln, bytes=2.0 * x.nbytes)]


def _dropout(cp, torch):
    x = cp.random.standard_normal(64 * 2**20, cp.float32)
    impls = {"fusednn": lambda: ops.dropout(x, 0.5, seed=1),
             "numpy": lambda: x * (cp.random.random_sample(x.shape, cp.float32) >= 0.5) * 2}
    if torch is not None:
        tx = torch.as_tensor(x, device="cuda")
        impls["torch"] = lambda: torch.nn.functional.dropout(tx, 0.5, training=True)
    return [Case("dropout", "p=0.5 64M", impls, bytes=2.0 * x.nbytes)]


def _optim(cp, torch):
    n = 64 * 2**20
    p = cp.random.standard_normal(n, cp.float32)
    g = cp.random.standard_normal(n, cp.float32) * 1e-3
    opt = optim.Adam([p], lr=1e-3)
    m, v = cp.zeros_like(p), cp.zeros_like(p)

    def reference():
        m[...] = 0.9 * m + 0.1 * g
        v[...] = 0.999 * v + 0.001 * g * g
        p[...] -= 1e-3 * (m / 0.1) / (cp.sqrt(v / 0.001) + 1e-8)

    impls = {"fusednn": lambda: opt.step([g]), "numpy": reference}
    if torch is not None:
        tp = torch.as_tensor(p.copy(), device="cuda").requires_grad_()
        tp.grad = torch.as_tensor(g, device="cuda")
        impls["torch"] = torch.optim.Adam([tp], lr=1e-3, fused=True).step
    return [Case("optim", "adam 64M flat", impls, bytes=28.0 * n)]


CASES = {"linear": _linear, "xent": _xent, "norm": _norm, "dropout": _dropout, "optim": _optim}


def main(families, args, torch):
    try:
        import cupy as cp
    except ImportError:
        raise SystemExit("--device cuda needs CuPy (pip install cupy-cuda13x) and a GPU") from None
    if not fusednn.build_info()["cuda"]:
        raise SystemExit("--device cuda needs fusednn's CUDA module: FUSEDNN_CUDA=ON pip install '.[cuda]'")
    peaks = _ceilings(cp)
    print(f"fusednn {fusednn.__version__} | {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()} | "
          f"torch {torch.__version__ if torch is not None else 'not installed'}")
    print(f"ceilings: copy bandwidth {peaks['bandwidth_gbytes']:.0f} GB/s, SGEMM {peaks['sgemm_gflops']:.0f} "
          "GFLOP/s (CuPy matmul 8192^3); the 'numpy' column is the CuPy reference\n")
    results = []
    for family in families:
        if family in CASES:
            results += run_cases(CASES[family](cp, torch), args.repeat, peaks, timer=cuda_median_seconds)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": "cuda", "ceilings": peaks, "results": results}, f, indent=2)
    return 0

