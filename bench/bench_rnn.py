"""Recurrent layers, forward + backward through time (float32, training mode): fusednn's LSTM and
GRU (nn.LSTM / nn.GRU over ops.lstm_* / ops.gru_*) vs the NumPy reference loops (CPU only: the reference is NumPy's) vs PyTorch.

Per cell and shape, three rows:
- "vardrop": variational dropout on (input 0.25, recurrent 0.25: one mask per sequence).
  fusednn and the NumPy reference run it natively; torch has no such option in nn.LSTM/nn.GRU,
  so its column is the per-step loop a user writes (nn.LSTMCell / nn.GRUCell, the masks drawn
  once per sequence and applied at every step);
- "nodrop": no dropout, against torch's fused nn.LSTM / nn.GRU (its fastest path; the NumPy
  reference, seconds per call, runs on the vardrop rows only, to keep the run short);
- "gemms": only the GEMMs fusednn's step runs (one input GEMM per layer, one recurrent GEMM per
  step; backward one per step and three over all steps): the same forward and backward calls
  with gemms_only=True, which run the sequence drivers (ops/rnn.h) with their per-step pointwise
  passes skipped, so the GEMMs are the step's own calls (W_hh packed once per sequence, the
  bias sums, the mask copies and the output allocation included): its % of the SGEMM peak is the
  GEMM share's efficiency. The other rows' rate counts the same GEMM flops, so their % of peak
  is the whole step's.
"""

import numpy as np

from harness import Case

# (steps, batch, input, hidden, layers)
SHAPES = [(35, 64, 256, 512, 2), (100, 32, 64, 256, 1)]
P_DROP = 0.25


def _gemm_flops(T, B, I, H, G, layers):
    total = 0.0
    for k in range(layers):
        n_in = I if k == 0 else H
        total += 3 * 2.0 * T * B * G * H * (n_in + H)  # forward, dx + dW_ih, dh + dW_hh
    return total


def cases(dev):
    from fusednn import nn, reference
    torch = dev.torch
    out = []
    sizes = dev.sizes(SHAPES)
    for kind in ("lstm", "gru"):
        G = 4 if kind == "lstm" else 3
        layer_cls = nn.LSTM if kind == "lstm" else nn.GRU
        for T, B, I, H, L in sizes:
            rng = np.random.default_rng(0)
            x = dev.array(rng.standard_normal((T, B, I), np.float32))
            dy = dev.array(rng.standard_normal((T, B, H), np.float32))
            shape = f"T{T} B{B} I{I} H{H} L{L}"
            flops = _gemm_flops(T, B, I, H, G, L)
            drop = layer_cls(I, H, num_layers=L, input_dropout=P_DROP, dropout=P_DROP, recurrent_dropout=P_DROP,
                             init="torch", rng=0).seed(1).to(dev.name)
            plain = layer_cls(I, H, num_layers=L, init="torch", rng=0).to(dev.name)

            def fused(m=drop, x=x, dy=dy):
                m.forward(x)
                return m.backward(dy)

            def fused_plain(m=plain, x=x, dy=dy):
                m.forward(x)
                return m.backward(dy)

            params = {n: v.get() if dev.cuda else np.array(v) for n, v in plain.named_parameters()}

            def numpy_ref(p=params, x=x, dy=dy, kind=kind, L=L):
                fwd = reference.lstm_forward if kind == "lstm" else reference.gru_forward
                bwd = reference.lstm_backward if kind == "lstm" else reference.gru_backward
                seq, caches = x, []
                for k in range(L):
                    kw = dict(dropout=P_DROP, recurrent_dropout=P_DROP, seed=1, offset=3 * k)
                    args = (seq, None) + ((None,) if kind == "lstm" else ()) + (
                        p[f"weight_ih_l{k}"], p[f"weight_hh_l{k}"], p[f"bias_ih_l{k}"], p[f"bias_hh_l{k}"])
                    res = fwd(*args, **kw)
                    seq, caches = res[0], caches + [res[-1]]
                d = dy
                for k in range(L - 1, -1, -1):
                    grads = bwd(d, None, None, caches[k]) if kind == "lstm" else bwd(d, None, caches[k])
                    d = grads["x"]
                return d

            torch_loop = torch_fused = None
            if torch is not None:
                torch_loop, torch_fused = _torch_impls(torch, dev, kind, params, x, dy, L)

            gemms = _step_gemms(dev, kind, T, B, I, H, G, L)
            out.append(Case("rnn", f"{kind} vardrop fwd+bwd {shape}", {
                "fusednn": fused, "numpy": None if dev.cuda else numpy_ref, "torch": torch_loop}, flops=flops, repeat=2,
                warmup=1, interleave=True))
            out.append(Case("rnn", f"{kind} nodrop fwd+bwd {shape}", {
                "fusednn": fused_plain, "numpy": None, "torch": torch_fused}, flops=flops, repeat=2, warmup=1,
                interleave=True))
            out.append(Case("rnn", f"{kind} gemms only {shape}", {"fusednn": gemms}, flops=flops, repeat=2,
                            warmup=1))
    return out


def _torch_impls(torch, dev, kind, params, x, dy, L):
    H = params["weight_hh_l0"].shape[1]
    I = params["weight_ih_l0"].shape[1]
    xt, dyt = dev.tensor(x), dev.tensor(dy)
    T, B = x.shape[0], x.shape[1]
    fused = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(I, H, num_layers=L)
    cells = [(torch.nn.LSTMCell if kind == "lstm" else torch.nn.GRUCell)(I if k == 0 else H, H) for k in range(L)]
    with torch.no_grad():
        for k in range(L):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                value = torch.from_numpy(params[f"{name}_l{k}"])
                getattr(fused, f"{name}_l{k}").copy_(value)
                getattr(cells[k], name).copy_(value)
    if dev.cuda:
        fused.cuda()
        for c in cells:
            c.cuda()
    fused.train()
    xg = xt.clone().requires_grad_()

    def torch_fused():
        y, _ = fused(xg)
        y.backward(dyt)

    keep = 1 - P_DROP

    def torch_loop():
        seq = xg
        for k, cell in enumerate(cells):
            n_in = seq.shape[2]
            # One mask per sequence for the layer's input and one for its hidden state.
            mx = torch.bernoulli(torch.full((B, n_in), keep, device=seq.device)) / keep
            mh = torch.bernoulli(torch.full((B, H), keep, device=seq.device)) / keep
            h = torch.zeros(B, H, device=seq.device)
            c = torch.zeros(B, H, device=seq.device)
            outs = []
            for t in range(T):
                if kind == "lstm":
                    h, c = cell(seq[t] * mx, (h * mh, c))
                else:
                    # GRUCell uses its hidden argument both in the recurrent product and in
                    # h' = (1 - z) n + z h, so the mask cannot enter through it: the cell is
                    # written out with the masked state in the products only.
                    gi = torch.nn.functional.linear(seq[t] * mx, cell.weight_ih, cell.bias_ih)
                    gh = torch.nn.functional.linear(h * mh, cell.weight_hh, cell.bias_hh)
                    r = torch.sigmoid(gi[:, :H] + gh[:, :H])
                    z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
                    n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
                    h = (1 - z) * n + z * h
                outs.append(h)
            seq = torch.stack(outs)
        seq.backward(dyt)

    return torch_loop, torch_fused


def _step_gemms(dev, kind, T, B, I, H, G, L):
    """The GEMMs of fusednn's forward and backward through time: the vardrop rows' op calls (every
    layer, the hidden-state mask on, input gradients) with gemms_only=True. Inputs are random
    (the GEMMs' speed does not depend on the values); the work arrays, whose pre-activation
    gradients no pass writes then, are given."""
    import fusednn
    module = fusednn._C_cuda if dev.cuda else fusednn._C
    xp = dev.xp
    rng = np.random.default_rng(1)
    keep = 1 - P_DROP

    def arr(*shape):
        return xp.asarray(rng.standard_normal(shape, np.float32))

    layers = []
    for k in range(L):
        n_in = I if k == 0 else H
        w = {"x": arr(T, B, n_in), "h0": xp.zeros((B, H), np.float32),
             "c0": xp.zeros((B, H), np.float32) if kind == "lstm" else None,
             "w_ih": arr(G * H, n_in) * 0.05, "w_hh": arr(G * H, H) * 0.05, "b_ih": arr(G * H), "b_hh": arr(G * H),
             "hmask": xp.asarray((rng.random((B, H)) < keep).astype(np.float32) / np.float32(keep)),
             "y": arr(T, B, H), "gates": arr(T, B, G * H), "aux": arr(T, B, H), "dy": arr(T, B, H),
             # rnn.h's rnn_forward_work and rnn_backward_work (no layer norm)
             "work_f": arr(B * G * H + B * H),
             "work_b": arr(T * B * G * H * (2 if kind == "gru" else 1) + T * B * H + 3 * B * H)}
        layers.append(w)

    def run():
        for w in layers:
            module.rnn_forward(kind, w["x"], w["h0"], w["c0"], w["w_ih"], w["w_hh"], w["b_ih"], w["b_hh"], None,
                               None, w["hmask"], work=w["work_f"], gemms_only=True)
        for w in reversed(layers):
            module.rnn_backward(kind, w["dy"], None, None, w["x"], w["h0"], w["c0"], w["w_ih"], w["w_hh"], None,
                                w["hmask"], w["y"], w["gates"], w["aux"], None, None, True, True, True,
                                work=w["work_b"], gemms_only=True)
    return run
