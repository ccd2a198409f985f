"""Convolution and pooling, forward + backward in float32: fusednn vs the NumPy reference
(fusednn.reference.conv: sliding_window_view + tensordot; CuPy runs the same code on the GPU
where it can) vs PyTorch on the same device (oneDNN on the CPU), in one run.

- 3x3 convolutions with padding 1, bias and ReLU: forward, then the backward of all three
  gradients (the first layer, with one input channel, skips dx in every implementation, as a
  first layer does); the "flops" are the GEMMs' 2 N OH OW C_out K per product (forward, dw, dx).
- Pooling of (128, 64, 28, 28), forward + backward: 2x2 max (values and indices) and average,
  and 3x3 at stride 2 with padding 1 (a ResNet stem's), max and average; the bytes are the
  minimal traffic (x read, y and max's int64 indices written; dy and the indices read, dx
  written).
- One CNN training epoch (conv32-bn-relu-pool, conv64-bn-relu-pool, linear 10; AdamW; batch 128)
  on random 1x28x28 samples against the same model in torch. The epoch is cut to EPOCH_SAMPLES
  (3,840 samples = 30 batches, not MNIST's 60,000) so that the family runs in about 90 s on 2
  quiet cores (an MNIST epoch takes 16x as long); the rate
  (samples/s) is what compares.
- After the rows (``report``): each GEMM-bound convolution's floor in this run, its FLOPs at the
  measured SGEMM peak, against which its torch time shows what 1.2x torch would take.
"""

import numpy as np

from harness import Case

# (N, C_in, H=W, C_out) of the 3x3, padding-1 convolutions.
CONVS = [(128, 1, 28, 32), (128, 32, 14, 64), (64, 64, 16, 128)]
POOL = (128, 64, 28, 28)
EPOCH_SAMPLES, QUICK_EPOCH_SAMPLES, BATCH = 3_840, 1_024, 128


def _conv_case(dev, n, c, h, co):
    from fusednn import ops, reference
    torch = dev.torch
    rng = np.random.default_rng(0)
    x = dev.array(rng.standard_normal((n, c, h, h), np.float32))
    w = dev.array((rng.standard_normal((co, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32))
    b = dev.array(rng.standard_normal(co).astype(np.float32) * 0.1)
    dy = dev.array(rng.standard_normal((n, co, h, h), np.float32))
    input_grad = c > 1

    def fusednn_step():
        y = ops.conv2d(x, w, b, padding=1, activation="relu")
        return ops.conv2d_backward(dy, x, w, y, padding=1, activation="relu", input_grad=input_grad)

    def reference_step():  # NumPy only (CuPy has no sliding_window_view)
        y = reference.conv2d(x, w, b, padding=1, activation="relu")
        return reference.conv2d_backward(dy, x, w, y, padding=1, activation="relu", input_grad=input_grad)

    torch_step = None
    if torch is not None:
        F = torch.nn.functional
        xt = dev.tensor(x).requires_grad_(input_grad)
        wt, bt, dyt = dev.tensor(w).requires_grad_(), dev.tensor(b).requires_grad_(), dev.tensor(dy)
        wrt = [t for t in (xt, wt, bt) if t.requires_grad]

        def torch_step():
            return torch.autograd.grad(F.relu(F.conv2d(xt, wt, bt, padding=1)), wrt, dyt)

    macs = n * h * h * co * 9 * c
    return Case("conv", f"conv3x3 fwd+bwd ({n},{c},{h},{h})->{co}", {
        "fusednn": fusednn_step, "numpy": None if dev.cuda else reference_step, "torch": torch_step,
    }, flops=2.0 * macs * (3 if input_grad else 2), repeat=3 if dev.quick else 7, warmup=1)


def _pool_case(dev, kind, kernel, stride, padding):
    """Max ("max": values and int64 indices) or average pooling, forward + backward."""
    from fusednn import ops, reference
    torch = dev.torch
    shape = POOL if not dev.quick else (16,) + POOL[1:]
    x = dev.array(np.random.default_rng(1).standard_normal(shape, np.float32))

    def step(lib):
        if kind == "max":
            y, idx = lib.max_pool2d(x, kernel, stride, padding)
            return lib.max_pool2d_backward(y, idx, x.shape)
        y = lib.avg_pool2d(x, kernel, stride, padding)
        return lib.avg_pool2d_backward(y, x.shape, kernel, stride, padding)

    torch_step = None
    if torch is not None:
        F = torch.nn.functional
        xt = dev.tensor(x).requires_grad_()
        pool = F.max_pool2d if kind == "max" else F.avg_pool2d

        def torch_step():
            y = pool(xt, kernel, stride, padding)
            return torch.autograd.grad(y, xt, y.detach())

    e = int(np.prod(shape))
    oh = (shape[2] + 2 * padding - kernel) // stride + 1
    o = e // (shape[2] * shape[3]) * oh * oh
    out_bytes = 4 + 8 if kind == "max" else 4  # y (and idx) per output
    traffic = 4 * e + out_bytes * o + out_bytes * o + 4 * e  # x; y (idx); dy (idx); dx
    name = f"{kind}pool{kernel}x{kernel}" + (f"/{stride}" if stride != kernel else "") + (f" pad {padding}" if padding else "")
    return Case("conv", f"{name} fwd+bwd {shape}", {
        "fusednn": lambda: step(ops), "numpy": None if dev.cuda else (lambda: step(reference)), "torch": torch_step,
    }, bytes=traffic, repeat=3 if dev.quick else 9)


def _epoch_data(n):
    rng = np.random.default_rng(0)
    x = rng.random((n, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, n)
    order = rng.permutation(n)
    return x, y, [order[i:i + BATCH] for i in range(0, n, BATCH)]


def _epoch_flops(n):
    # Per sample: the first convolution's forward and dw products, the second's forward, dw and
    # dx (the head, batch norm and pooling are not counted).
    conv1, conv2 = 28 * 28 * 32 * 9, 14 * 14 * 64 * 288
    return 2.0 * n * (2 * conv1 + 3 * conv2)


def _fusednn_epoch(dev, x, y, batches):
    from fusednn import nn, ops, optim
    model = nn.CNN((1, 28, 28), channels=(32, 64), classes=10, flat_input=False, seed=0)
    if dev.cuda:
        model.to("cuda")
    opt = optim.AdamW(model.parameter_groups(weight_decay=1e-2), lr=1e-3)
    x, y, batches = dev.array(x), dev.array(y), [dev.array(b) for b in batches]

    def epoch():
        model.train()
        for idx in batches:
            logits = model.forward(x[idx])
            _, dlogits = ops.softmax_cross_entropy_with_grad(logits, y[idx])
            model.backward(dlogits)
            opt.step()
    return epoch


def _torch_epoch(dev, x, y, batches):
    torch = dev.torch
    tn = torch.nn
    torch.manual_seed(0)
    model = tn.Sequential(tn.Conv2d(1, 32, 3, padding=1, bias=False), tn.BatchNorm2d(32), tn.ReLU(), tn.MaxPool2d(2),
                          tn.Conv2d(32, 64, 3, padding=1, bias=False), tn.BatchNorm2d(64), tn.ReLU(), tn.MaxPool2d(2),
                          tn.Flatten(), tn.Linear(64 * 7 * 7, 10))
    model.to(dev.name)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-2}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, fused=True)
    tx, ty = dev.tensor(dev.array(x)), dev.tensor(dev.array(y))
    tbatches = [dev.tensor(dev.array(idx)) for idx in batches]

    def epoch():
        model.train()
        for idx in tbatches:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(tx[idx]), ty[idx]).backward()
            opt.step()
    return epoch


def report(dev, peaks):
    """The floor of each GEMM-bound convolution (C_in > 1) in this run: its FLOPs (forward, dw
    and dx products) at the SGEMM peak the harness measured, as a row of its own. Against the
    case's torch time above it, it bounds any GEMM-based design: 1.2x torch needs the fraction
    of the peak that the floor row's time over torch's / 1.2 gives."""
    from harness import format_row
    if dev.cuda:
        return []
    rows = []
    for n, c, h, co in (CONVS[:1] if dev.quick else CONVS):
        if c == 1:  # memory-bound first layer: no GEMM floor
            continue
        flops = 2.0 * n * h * h * co * 9 * c * 3
        seconds = flops / (peaks["sgemm_gflops"] * 1e9)
        row = {"family": "conv", "case": f"floor ({n},{c},{h},{h})->{co}: FLOPs at peak",
               "seconds": {"fusednn": seconds, "numpy": None, "torch": None},
               "speedup_vs_numpy": None, "speedup_vs_torch": None, "gflops": flops / seconds / 1e9,
               "fraction_of_peak": 1.0, "roof": "SGEMM peak"}
        print(format_row(row), flush=True)
        rows.append(row)
    return rows


def cases(dev):
    out = [_conv_case(dev, *shape) for shape in (CONVS[:1] if dev.quick else CONVS)]
    out.append(_pool_case(dev, "max", 2, 2, 0))
    if not dev.quick:
        out.append(_pool_case(dev, "avg", 2, 2, 0))
        out.append(_pool_case(dev, "max", 3, 2, 1))  # a ResNet stem's pooling
        out.append(_pool_case(dev, "avg", 3, 2, 1))
    n = QUICK_EPOCH_SAMPLES if dev.quick else EPOCH_SAMPLES
    x, y, batches = _epoch_data(n)
    out.append(Case("conv", f"CNN epoch {n} samples b{BATCH} AdamW", {
        "fusednn": _fusednn_epoch(dev, x, y, batches), "numpy": None,
        "torch": _torch_epoch(dev, x, y, batches) if dev.torch is not None else None,
    }, flops=_epoch_flops(n), repeat=1 if dev.quick else 2, warmup=1, interleave=True))
    return out
