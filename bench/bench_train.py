"""One training epoch of a 784-512-256-10 MLP (batch norm, ReLU, dropout 0.5, AdamW, softmax
cross-entropy) on 60,000 random MNIST-shaped samples (6,000 with --quick) at batch 128, with the
same batch order in every implementation: fusednn.nn + fusednn.optim in a hand-written loop
(minibatches copied by ops.gather_rows, as fusednn.data.batches does), the same model written
with the NumPy references (CPU, --quick only: a full-size epoch of it takes about 10x
fusednn's, six times over, which alone is more than the family's 90 s; dropout masks from
NumPy's generator, as a NumPy user would; minibatches by x[idx]), and PyTorch on the same
device with ``AdamW(fused=True)`` (minibatches by tx[idx]). The row ``[train.fit]`` times the same epoch through
``fusednn.train.fit``, the path users run (its own shuffled batches, the loss and accuracy
logged), against the same references. A second row times the hand loop against the same model
under ``torch.compile`` (not in a quick run). Both cases also print ``[best of n]`` rows, each
implementation's fastest epoch of the same interleaved rounds: on the 2-vCPU VM of 2026-12-07
the ratio of the medians swung from 2.17x to 2.44x between runs of the same code, with the
VM's phases.

The GEMMs of an epoch: forward x@W.T for 3 layers, backward dW for 3 and dX for the upper 2
(no layer needs the input's gradient), counted as the "flops" of the case.

After the rows, ``report`` prints the hand loop's per-step budget (CPU only), measured in the same
run at the run's thread count: each part's wall time inside the step (the compiled kernels'
calls timed one by one during an epoch: GEMMs (``linear``, ``linear_backward`` with the last
layer's bias reduction), optimizer, batch norms, dropouts, minibatch gather and loss, and the
rest, Python; per-step means over the epoch), the calls of the epoch's last full step (128 rows)
replayed back to back (the step without its Python: the kernels' effects on each other's caches
remain), each part's calls replayed alone in a hot loop (for Python: an epoch whose kernels are
stubs that return the recorded step's outputs, the interpreter's work alone), and each part's
floor: the GEMMs' flops at the SGEMM peak, the memory-bound parts' minimal traffic at the run's
header memory bandwidth (a DRAM roof: the optimizer's 8.6 MB of state and the activations stay
in the 32 MB L3, so a cache-resident pass can beat it), Python none. Last, the one-thread
process CPU time per step of the hand loop and of train.fit (their own work, which other
processes hardly change)."""

import numpy as np

from harness import Case

N, BATCH, SIZES, P_DROP = 60_000, 128, (784, 512, 256, 10), 0.5


QUICK_N = 6_000


def _data(n):
    rng = np.random.default_rng(0)
    x = rng.random((n, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], n)
    order = rng.permutation(n)
    return x, y, [order[i:i + BATCH] for i in range(0, n, BATCH)]


def _gemm_flops(n):
    macs = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
    dx_macs = sum(a * b for a, b in zip(SIZES[1:-1], SIZES[2:]))
    return 2.0 * n * (2 * macs + dx_macs)


def _fusednn_model(dev):
    from fusednn import nn, optim
    model = nn.MLP(list(SIZES), norm="batch", dropout=P_DROP, seed=0)
    if dev.cuda:
        model.to("cuda")
    return model, optim.AdamW(model.parameter_groups(weight_decay=1e-2), lr=1e-3)


def _fusednn_epoch(dev, x, y, batches):
    from fusednn import ops
    from fusednn.nn.losses import SoftmaxCrossEntropy
    model, opt = _fusednn_model(dev)
    loss = SoftmaxCrossEntropy()
    x, y, batches = dev.array(x), dev.array(y), [dev.array(b) for b in batches]

    def epoch():
        model.train()
        for idx in batches:
            logits = model.forward(ops.gather_rows(x, idx))  # x[idx], copied in parallel
            _, dlogits = loss.value_and_grad(logits, y[idx])
            model.backward(dlogits)
            opt.step()
    return epoch


def _numpy_epoch(x, y, batches):
    from fusednn import reference as ref
    rng = np.random.default_rng(0)
    ws = [(rng.standard_normal((o, i)) * np.sqrt(2 / i)).astype(np.float32) for i, o in zip(SIZES[:-1], SIZES[1:])]
    params = ws + [np.zeros(SIZES[-1], np.float32)]
    gammas = [np.ones(s, np.float32) for s in SIZES[1:-1]]
    betas = [np.zeros(s, np.float32) for s in SIZES[1:-1]]
    running = [(np.zeros(s, np.float32), np.ones(s, np.float32)) for s in SIZES[1:-1]]
    params += gammas + betas
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    state = {"step": 0}

    def epoch():
        for idx in batches:
            h, cache = x[idx], []
            for k in range(2):
                z = h @ ws[k].T
                zn, mean, inv_std = ref.batch_norm(z, gammas[k], betas[k], *running[k], training=True)
                a = np.maximum(zn, 0)
                keep = rng.random(a.shape) >= P_DROP
                cache.append((h, z, mean, inv_std, zn, keep))
                h = a * keep / (1 - P_DROP)
            logits = h @ ws[2].T + params[3]
            _, dz = ref.softmax_cross_entropy_with_grad(logits, y[idx])
            dz = dz.astype(np.float32)
            grads = [None] * 3 + [dz.sum(0)] + [None] * 4
            grads[2] = dz.T @ h
            dh = dz @ ws[2]
            for k in (1, 0):
                hin, z, mean, inv_std, zn, keep = cache[k]
                da = dh * keep / (1 - P_DROP) * (zn > 0)
                dzk, grads[4 + k], grads[6 + k] = ref.batch_norm_backward(da, z, gammas[k], mean, inv_std)
                grads[k] = dzk.T @ hin
                if k:
                    dh = dzk @ ws[k]
            grads = [g.astype(np.float32, copy=False) for g in grads]
            state["step"] += 1
            ref.adam_step(params[:3], grads[:3], m[:3], v[:3], None, step=state["step"], lr=1e-3, weight_decay=1e-2,
                          decoupled_weight_decay=True)
            ref.adam_step(params[3:], grads[3:], m[3:], v[3:], None, step=state["step"], lr=1e-3)
    return epoch


def _fusednn_fit_epoch(dev, x, y):
    """One epoch through train.fit, as users train: NumPy data, batches moved to the model's
    device by fit."""
    from fusednn import train
    from fusednn.nn.losses import SoftmaxCrossEntropy
    model, opt = _fusednn_model(dev)
    return lambda: train.fit(model, SoftmaxCrossEntropy(), opt, (x, y), epochs=1, batch_size=BATCH, progress=False)


def _torch_epoch(dev, x, y, batches, compile=False):
    """The epoch in PyTorch eager, or (compile=True) with the model and loss under
    torch.compile (its first call compiles: the case's warm-up)."""
    torch = dev.torch
    tn = torch.nn
    torch.manual_seed(0)
    model = tn.Sequential(tn.Linear(784, 512, bias=False), tn.BatchNorm1d(512), tn.ReLU(), tn.Dropout(P_DROP),
                          tn.Linear(512, 256, bias=False), tn.BatchNorm1d(256), tn.ReLU(), tn.Dropout(P_DROP),
                          tn.Linear(256, 10))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    other = [p for p in model.parameters() if p.ndim < 2]
    model.to(dev.name)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 1e-2}, {"params": other, "weight_decay": 0.0}],
                            lr=1e-3, fused=True)
    tx, ty = dev.tensor(dev.array(x)), dev.tensor(dev.array(y))
    tbatches = [dev.tensor(dev.array(idx)) for idx in batches]

    def forward_loss(xb, yb):
        return torch.nn.functional.cross_entropy(model(xb), yb)
    if compile:
        forward_loss = torch.compile(forward_loss)

    def epoch():
        model.train()
        for idx in tbatches:
            opt.zero_grad(set_to_none=True)
            loss = forward_loss(tx[idx], ty[idx])
            loss.backward()
            opt.step()
    return epoch


def cases(dev):
    n = QUICK_N if dev.quick else N
    x, y, batches = _data(n)
    epoch = Case("train", f"MLP epoch {n // 1000}k b{BATCH} bn+drop AdamW", {
        "fusednn": _fusednn_epoch(dev, x, y, batches),
        "numpy": _numpy_epoch(x, y, batches) if dev.quick and not dev.cuda else None,
        "torch": _torch_epoch(dev, x, y, batches) if dev.torch is not None else None,
        "train.fit": _fusednn_fit_epoch(dev, x, y),
    }, flops=_gemm_flops(n), repeat=2 if dev.quick else 5, warmup=1, interleave=True, best_of=True)
    return [epoch] + _compiled_cases(dev, n, x, y, batches)


def _compiled_cases(dev, n, x, y, batches):
    """The same epoch against torch.compile (its own row: "torch" is the compiled model there).
    Not in a quick run (compiling takes a minute on 2 cores); 3 timed rounds after the warm-up."""
    if dev.quick or dev.torch is None or dev.cuda:
        return []
    return [Case("train", f"MLP epoch {n // 1000}k b{BATCH} bn+drop AdamW vs torch.compile", {
        "fusednn": _fusednn_epoch(dev, x, y, batches), "numpy": None,
        "torch": _torch_epoch(dev, x, y, batches, compile=True),
    }, flops=_gemm_flops(n), repeat=3, warmup=1, interleave=True, best_of=True)]


# ---- train_contention (issue 13 item 4): the same epoch alone and next to a busy process -------
# Kept apart from cases() above: run.py runs it as its own family (--ops train_contention).


class _BusyProcess:
    """One `while True: pass` process, started on first use and kept stopped (SIGSTOP) except
    while a timed call runs (SIGCONT), so it loads the cores during that call only; killed at
    exit."""

    def __init__(self):
        self._proc = None

    def _start(self):
        import atexit
        import signal
        import subprocess
        import sys
        self._proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self._proc.send_signal(signal.SIGSTOP)
        atexit.register(self._proc.kill)

    def around(self, fn):
        """fn, run while the busy process runs."""
        import signal

        def call():
            if self._proc is None:
                self._start()
            self._proc.send_signal(signal.SIGCONT)
            try:
                return fn()
            finally:
                self._proc.send_signal(signal.SIGSTOP)
        return call


def contention_cases(dev):
    """One training epoch alone, then the same next to one busy process (`while True: pass`)
    that shares the cores: fusednn's thread pool stops spinning after 50 us, so it should slow
    down by about the share of the cores it loses, not collapse (with OpenMP's spinning
    workers an epoch took 10x longer and more). CPU only."""
    if dev.cuda:
        return []
    n = QUICK_N if dev.quick else N
    x, y, batches = _data(n)
    busy = _BusyProcess()
    repeat = 2 if dev.quick else 3

    def impls(wrap):
        return {"fusednn": wrap(_fusednn_epoch(dev, x, y, batches)),
                "torch": wrap(_torch_epoch(dev, x, y, batches)) if dev.torch is not None else None}

    name = f"MLP epoch {n // 1000}k b{BATCH}"
    return [Case("train", f"{name} alone", impls(lambda fn: fn), flops=_gemm_flops(n), repeat=repeat, warmup=1,
                 interleave=True),
            Case("train", f"{name} + 1 busy process", impls(busy.around), flops=_gemm_flops(n), repeat=repeat,
                 warmup=1, interleave=True)]


# ---- report: the step's budget against each part's floor (issue 19) ---------------------------

_PARTS = {"linear": "GEMMs", "linear_backward": "GEMMs", "adam_step": "optimizer", "batch_norm": "norms",
          "batch_norm_backward": "norms", "dropout": "dropout", "dropout_backward": "dropout",
          "gather_rows": "gather + loss", "softmax_cross_entropy": "gather + loss"}
_ORDER = ("GEMMs", "optimizer", "norms", "dropout", "gather + loss", "Python (the rest)")


def _timed_kernels(totals, calls):
    """Wrap fusednn._C's step kernels so that each call's wall time is added to totals[part];
    with a dict ``calls``, calls["step"] holds the calls (part, function, args) of the latest
    step (from its minibatch's gather on) and calls["full"] those of the latest step of a full
    batch (BATCH rows: an epoch's last batch may be smaller). Returns an undo."""
    import time
    from fusednn import _C
    saved = {}
    gather = _C.gather_rows
    for name, part in _PARTS.items():
        fn = saved[name] = getattr(_C, name)

        def timed(*args, _fn=fn, _part=part):
            t0 = time.perf_counter()
            out = _fn(*args)
            totals[_part] += time.perf_counter() - t0
            if calls is not None:  # only the current step's arrays are held, so buffer reuse goes on
                if _fn is gather:  # a step starts with its minibatch
                    if len(args[1]) == BATCH:
                        calls["full"] = calls["step"] = []
                    else:
                        calls["step"] = []
                calls["step"].append((_part, _fn, args))
            return out
        setattr(_C, name, timed)

    def undo():
        for name, fn in saved.items():
            setattr(_C, name, fn)
    return undo


def _part_floors(peaks, steps):
    """Each part's floor per step in seconds: GEMM flops at the SGEMM peak; the memory-bound
    parts' minimal traffic (float32, each array read or written once) at the memory bandwidth."""
    words = 4 / (peaks["bandwidth_gbytes"] * 1e9)
    params = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:])) + SIZES[-1] + 2 * sum(SIZES[1:-1])
    hidden = BATCH * sum(SIZES[1:-1])
    return {"GEMMs": _gemm_flops(BATCH * steps) / steps / (peaks["sgemm_gflops"] * 1e9),
            "optimizer": 7 * params * words,  # AdamW reads p, g, m, v and writes p, m, v
            "norms": 5 * hidden * words,  # forward x -> y, backward dy, x -> dx
            "dropout": 5 * hidden * words,  # forward x -> y, backward dy, y -> dx
            "gather + loss": (2 * BATCH * SIZES[0] + 2 * BATCH * SIZES[-1]) * words,
            "Python (the rest)": 0.0}


def report(dev, peaks):
    """Print the hand loop's per-step budget (see the module docstring); returns its rows for
    the JSON output. CPU only (on a GPU the kernels' calls return before they finish)."""
    import collections
    import time
    if dev.cuda:
        return []
    n = QUICK_N if dev.quick else N
    x, y, batches = _data(n)
    steps = len(batches)
    epoch = _fusednn_epoch(dev, x, y, batches)
    calls = {}
    undo = _timed_kernels(collections.defaultdict(float), calls)
    try:
        epoch()  # warm-up (buffers, optimizer state), recording the kernel calls of its last full step
    finally:
        undo()
    runs = []
    for _ in range(3):
        parts = collections.defaultdict(float)
        undo = _timed_kernels(parts, None)
        try:
            t0 = time.perf_counter()
            epoch()
            runs.append((time.perf_counter() - t0, parts))
        finally:
            undo()
    total, in_step = sorted(runs, key=lambda run: run[0])[1]  # the median epoch of 3, with its parts
    in_step["Python (the rest)"] = total - sum(in_step.values())
    # The last full step's kernel calls replayed back to back in their order, 100 times (the step
    # without its Python: what remains is the kernels' effect on each other's caches), then
    # part by part (each part alone, hot from the one before); the best of 2 rounds, per step.
    # A full step: the epoch's last batch has 60,000 % 128 = 96 rows, and a replay of it took
    # about 96/128 of a step's GEMM time, which read as GEMMs slowed down inside the step.
    step_calls = calls["full"]
    replays = min(steps, 100)
    replayed = {}
    for _ in range(2):
        parts = collections.defaultdict(float)
        for _ in range(replays):
            for part, fn, args in step_calls:
                t0 = time.perf_counter()
                fn(*args)
                parts[part] += time.perf_counter() - t0
        if not replayed or sum(parts.values()) < sum(replayed.values()):
            replayed = {k: v / replays for k, v in parts.items()}
    alone = {}
    for part in _ORDER[:-1]:
        mine = [(fn, args) for p, fn, args in step_calls if p == part]
        for _ in range(2):
            t0 = time.perf_counter()
            for _ in range(replays):
                for fn, args in mine:
                    fn(*args)
            alone[part] = min(alone.get(part, float("inf")), (time.perf_counter() - t0) / replays)
    alone["Python (the rest)"] = _python_alone(epoch, step_calls, steps)
    floors = _part_floors(peaks, steps)
    print(f"\nper-step budget of the hand loop ({steps} steps of batch {BATCH}, {total / steps * 1e3:.3f} ms per "
          f"step; GEMM floor {floors['GEMMs'] * 1e3:.3f} ms, so {total / steps / floors['GEMMs']:.2f}x it):")
    print(f"  {'part':20} {'in the step':>12} {'share':>6} {'step replay':>12} {'alone, hot':>11} {'floor':>10} "
          f"{'step/floor':>10}")
    rows = []
    for part in _ORDER:
        t, floor = in_step[part] / steps, floors[part]
        a, r = alone.get(part), replayed.get(part)
        ratio = f"{t / floor:.2f}x" if floor else "-"
        print(f"  {part:20} {t * 1e3:8.3f} ms {t * steps / total:6.0%} {_ms(r):>12} {_ms(a):>11} {floor * 1e3:7.3f} ms "
              f"{ratio:>10}")
        rows.append({"family": "train", "case": f"step budget: {part}", "seconds_per_step": t,
                     "replayed_seconds_per_step": r, "alone_seconds_per_step": a, "floor_seconds_per_step": floor})
    hand, fit = _one_thread_cpu(dev)
    print(f"  one thread, process CPU time per step ({QUICK_N} samples, medians of 5 interleaved epochs, which other "
          f"processes hardly change): hand loop {hand * 1e3:.3f} ms, train.fit {fit * 1e3:.3f} ms ({fit / hand:.3f}x)")
    rows.append({"family": "train", "case": "one-thread CPU time per step", "hand_loop_seconds": hand,
                 "train_fit_seconds": fit})
    gemm = in_step["GEMMs"] / steps
    rate = lambda t: floors["GEMMs"] / t * peaks["sgemm_gflops"]  # noqa: E731
    print(f"  GEMMs in the step: {rate(gemm):.0f} GFLOP/s, in the replayed step {rate(replayed['GEMMs']):.0f}, "
          f"alone {rate(alone['GEMMs']):.0f}; SGEMM peak {peaks['sgemm_gflops']:.0f} GFLOP/s\n")
    return rows


def _one_thread_cpu(dev):
    """Process CPU time per step of the hand loop and of train.fit at one thread (the medians of
    5 rounds that run both, in alternating order, after a warm-up), on QUICK_N samples. The
    epoch rows are wall times of 2 threads, which other processes on a shared machine change by
    tens of percent from one epoch to the next; one thread's CPU time compares the two loops'
    own work."""
    import statistics
    import time
    import fusednn
    x, y, batches = _data(QUICK_N)
    loops = {"hand": _fusednn_epoch(dev, x, y, batches), "fit": _fusednn_fit_epoch(dev, x, y)}
    times = {name: [] for name in loops}
    threads = fusednn.get_num_threads()
    fusednn.set_num_threads(1)
    try:
        for fn in loops.values():
            fn()
        for r in range(5):
            for name in (list(loops) if r % 2 == 0 else list(loops)[::-1]):
                t0 = time.process_time()
                loops[name]()
                times[name].append((time.process_time() - t0) / len(batches))
    finally:
        fusednn.set_num_threads(threads)
    return statistics.median(times["hand"]), statistics.median(times["fit"])


def _python_alone(epoch, step_calls, steps):
    """Seconds per step of the epoch's Python alone: an epoch whose compiled kernels are replaced
    by stubs returning what the recorded step's calls return (in call order, per kernel), so
    only the interpreter's work remains (layers, loss, optimizer, the loop). The Python row's
    "in the step" time is the rest of the epoch's time, which also holds what the kernels' calls
    cost around their timed part and their effect on each other's caches; this column is its
    floor. The best of 2 epochs."""
    import time
    from fusednn import _C
    outputs = {}
    for _, fn, args in step_calls:
        outputs.setdefault(fn.__name__, []).append(fn(*args))
    saved = {}
    for name in _PARTS:
        saved[name] = getattr(_C, name)
        results, at = outputs.get(name, [None]), [0]

        def stub(*args, _results=results, _at=at):
            out = _results[_at[0] % len(_results)]
            _at[0] += 1
            return out
        setattr(_C, name, stub)
    best = float("inf")
    try:
        for _ in range(2):
            t0 = time.perf_counter()
            epoch()
            best = min(best, time.perf_counter() - t0)
    finally:
        for name, fn in saved.items():
            setattr(_C, name, fn)
    return best / steps


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.3f} ms"
