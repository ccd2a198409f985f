"""The rnn family: LSTM and GRU layers over a sequence (fusednn.ops.rnn) against the NumPy loops
(fusednn.reference.rnn), finite-difference gradients through time, the dropout masks'
placement in time, the layer-norm cell against its formula, thread invariance, argument errors,
and weight exchange with torch."""

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, assert_close, seed_of, to_device, to_numpy

import fusednn
from fusednn import ops, reference

GATES = {"lstm": 4, "gru": 3}
GRAD_NAMES = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "ln_weight", "ln_bias")


def make(cell, T, B, I, H, dtype, *, ln=False, bias=True, key=0):
    rng = np.random.default_rng(seed_of(cell, T, B, I, H, str(dtype), ln, bias, key))
    G = GATES[cell]
    a = {
        "x": rng.standard_normal((T, B, I)),
        "h0": rng.standard_normal((B, H)) * 0.5,
        "c0": rng.standard_normal((B, H)) * 0.5 if cell == "lstm" else None,
        "weight_ih": rng.standard_normal((G * H, I)) / np.sqrt(max(I, 1)),
        "weight_hh": rng.standard_normal((G * H, H)) / np.sqrt(H),
        "bias_ih": rng.standard_normal(G * H) * 0.3 if bias else None,
        "bias_hh": rng.standard_normal(G * H) * 0.3 if bias else None,
        "ln_weight": 1 + 0.2 * rng.standard_normal(G * H) if ln else None,
        "ln_bias": 0.2 * rng.standard_normal(G * H) if ln else None,
    }
    grads = {"dy": rng.standard_normal((T, B, H)), "dh_n": rng.standard_normal((B, H)),
             "dc_n": rng.standard_normal((B, H)) if cell == "lstm" else None}
    cast = lambda d: {k: None if v is None else v.astype(dtype) for k, v in d.items()}  # noqa: E731
    return cast(a), cast(grads)


def run(module, cell, a, g, *, input_grad=True, **kw):
    """(outputs dict, gradients dict) of one forward and backward."""
    lnkw = {"ln_weight": a["ln_weight"], "ln_bias": a["ln_bias"]}
    if cell == "lstm":
        y, hn, cn, cache = module.lstm_forward(a["x"], a["h0"], a["c0"], a["weight_ih"], a["weight_hh"], a["bias_ih"],
                                               a["bias_hh"], **lnkw, **kw)
        grads = module.lstm_backward(g["dy"], g["dh_n"], g["dc_n"], cache, input_grad=input_grad)
        return {"y": y, "h_n": hn, "c_n": cn}, grads
    y, hn, cache = module.gru_forward(a["x"], a["h0"], a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"],
                                      **lnkw, **kw)
    grads = module.gru_backward(g["dy"], g["dh_n"], cache, input_grad=input_grad)
    return {"y": y, "h_n": hn}, grads


def on(device, d):
    return {k: to_device(device, v) for k, v in d.items()}


def compare(device, cell, a, g, **kw):
    out, grads = run(ops, cell, on(device, a), on(device, g), **kw)
    ref_out, ref_grads = run(reference, cell, a, g, **kw)
    for k in ref_out:
        assert_close(out[k], ref_out[k], kind="transcendental", err_msg=k)
    assert set(grads) == set(ref_grads)
    for k, v in ref_grads.items():
        if v is None:
            assert grads[k] is None, k
        else:
            assert_close(grads[k], v, kind="transcendental", err_msg=f"d{k}")


DROPOUTS = {
    "none": {},
    "variational": {"dropout": 0.3, "recurrent_dropout": 0.4, "seed": 5, "offset": 11},
    "naive": {"dropout": 0.25, "mode": "naive", "seed": 6},
    "weight_drop": {"weight_drop": 0.5, "seed": 7, "offset": 2},
    "all": {"dropout": 0.2, "recurrent_dropout": 0.2, "weight_drop": 0.3, "seed": 8},
}


# Sizes (T, B, I, H): a single step, a single sequence, a single unit, odd sizes, a wider layer.
@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size, ln, drop", [
    ((1, 1, 1, 1), False, "none"),
    ((1, 3, 5, 7), True, "variational"),
    ((4, 1, 3, 1), False, "naive"),
    ((6, 5, 3, 9), True, "all"),
    ((5, 4, 7, 5), False, "weight_drop"),
    ((3, 9, 33, 17), True, "none"),
])
def test_matches_reference(device, cell, dtype, size, ln, drop):
    a, g = make(cell, *size, dtype, ln=ln)
    compare(device, cell, a, g, **DROPOUTS[drop])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_no_bias_no_input_grad_no_upstream(device, cell):
    a, g = make(cell, 3, 2, 4, 5, np.float64, bias=False)
    compare(device, cell, a, g, input_grad=False)
    out, grads = run(ops, cell, on(device, a), on(device, g), input_grad=False)
    assert grads["x"] is None and grads["bias_ih"] is None and grads["ln_weight"] is None
    # Only dh_n: dy and dc_n None.
    g2 = {"dy": None, "dh_n": g["dh_n"], "dc_n": None}
    compare(device, cell, a, g2)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_eval_mode_ignores_dropout(device, cell):
    a, g = make(cell, 3, 2, 4, 5, np.float64)
    out, _ = run(ops, cell, on(device, a), on(device, g), dropout=0.5, recurrent_dropout=0.5, weight_drop=0.5,
                 seed=1, training=False)
    plain, _ = run(ops, cell, on(device, a), on(device, g))
    assert np.array_equal(to_numpy(out["y"]), to_numpy(plain["y"]))


def test_large_case_float32(device):
    a, g = make("lstm", 8, 64, 40, 96, np.float32, ln=True)
    compare(device, "lstm", a, g, dropout=0.1, recurrent_dropout=0.1, seed=3)


# ---- finite differences through time (float64, the fast path) ----

@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("ln, drop", [(False, "none"), (True, "all"), (False, "naive")])
def test_gradcheck(cell, ln, drop):
    a, _ = make(cell, 3, 2, 3, 4, np.float64, ln=ln)
    names = [k for k in GRAD_NAMES if a[k] is not None]
    kw = DROPOUTS[drop]
    T, B, H = 3, 2, 4

    def split(out):  # the checked output: y, then h_n (and c_n): every path into backward
        y = out[:T * B * H].reshape(T, B, H)
        rest = out[T * B * H:].reshape(-1, B, H)
        return y, rest[0], (rest[1] if cell == "lstm" else None)

    def fn(*inputs):
        args = dict(a, **dict(zip(names, inputs)))
        out, _ = run(ops, cell, args, {"dy": None, "dh_n": None, "dc_n": None}, **kw)
        parts = [out["y"].ravel(), out["h_n"].ravel()] + ([out["c_n"].ravel()] if cell == "lstm" else [])
        return np.concatenate(parts)

    def backward(dout, *inputs):
        args = dict(a, **dict(zip(names, inputs)))
        dy, dh_n, dc_n = split(dout)
        _, grads = run(ops, cell, args, {"dy": dy, "dh_n": dh_n, "dc_n": dc_n}, **kw)
        return tuple(grads[k] for k in names)

    fusednn.gradcheck(fn, [a[k] for k in names], backward=backward, rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


# ---- the masks in time ----

def test_variational_masks_are_constant_in_time_naive_masks_are_not(device):
    a, g = make("lstm", 4, 3, 16, 5, np.float64)
    zero_patterns = {}
    for mode in ("variational", "naive"):
        _, grads = run(ops, "lstm", on(device, a), on(device, g), dropout=0.5, mode=mode, seed=4)
        dx = to_numpy(grads["x"])
        zero_patterns[mode] = dx == 0
        masks = ops.rnn_dropout_masks(4, 3, 16, 5, np.float64, dropout=0.5, mode=mode, seed=4)
        expected = np.broadcast_to(masks[0] == 0, dx.shape)
        assert np.array_equal(dx == 0, expected), mode  # dx is zero exactly where the input was dropped
        assert 0 < expected.mean() < 1
    v, n = zero_patterns["variational"], zero_patterns["naive"]
    assert all(np.array_equal(v[0], v[t]) for t in range(4))  # one mask per sequence
    assert not all(np.array_equal(n[0], n[t]) for t in range(4))  # a new mask per step


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_mask_is_one_per_sequence(device, cell):
    # Batch 1: a hidden unit dropped from the recurrent product contributes nothing to dweight_hh
    # at any step (its column is exactly 0), and nothing else is.
    a, g = make(cell, 5, 1, 3, 8, np.float64)
    _, grads = run(ops, cell, on(device, a), on(device, g), recurrent_dropout=0.5, seed=9)
    _, h_mask = ops.rnn_dropout_masks(5, 1, 3, 8, np.float64, dropout=0.0, recurrent_dropout=0.5, seed=9)
    dropped = h_mask[0] == 0
    assert 0 < dropped.sum() < 8
    dw_hh = to_numpy(grads["weight_hh"])
    assert np.array_equal(np.all(dw_hh == 0, axis=0), dropped)


def test_masks_match_dropout_stream():
    m, hm = ops.rnn_dropout_masks(3, 2, 4, 5, np.float32, dropout=0.5, recurrent_dropout=0.25, seed=1, offset=10)
    assert np.array_equal(m, ops.dropout(np.ones((2, 4), np.float32), 0.5, seed=1, offset=10))
    assert np.array_equal(hm, ops.dropout(np.ones((2, 5), np.float32), 0.25, seed=1, offset=11))
    m, hm = ops.rnn_dropout_masks(3, 2, 4, 5, np.float32, dropout=0.5, mode="naive", seed=1, offset=10)
    assert m.shape == (3, 2, 4) and hm is None
    ref = reference.rnn_dropout_masks(3, 2, 4, 5, np.float32, dropout=0.5, mode="naive", seed=1, offset=10)
    assert np.array_equal(m, ref[0])


# ---- the layer-norm cell against its formula (one step, written out here) ----

def _ln(v, w, b):
    mu = v.mean(axis=1, keepdims=True)
    return (v - mu) / np.sqrt(v.var(axis=1, keepdims=True) + 1e-5) * w + b


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_layer_norm_cell_formula(device, cell):
    a, g = make(cell, 1, 3, 4, 6, np.float64, ln=True)
    out, _ = run(ops, cell, on(device, a), on(device, g))
    H = 6
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    lw, lb = a["ln_weight"], a["ln_bias"]
    q = a["x"][0] @ a["weight_ih"].T + a["bias_ih"]
    p = a["h0"] @ a["weight_hh"].T + a["bias_hh"]
    s = lambda k: slice(k * H, (k + 1) * H)  # noqa: E731
    if cell == "lstm":
        pre = q + p
        i, f, gg, o = (act(_ln(pre[:, s(k)], lw[s(k)], lb[s(k)]))
                       for k, act in enumerate((sig, sig, np.tanh, sig)))
        c = f * a["c0"] + i * gg
        h = o * np.tanh(c)
        assert_close(out["c_n"], c, kind="transcendental")
    else:
        r = sig(_ln(q[:, s(0)] + p[:, s(0)], lw[s(0)], lb[s(0)]))
        z = sig(_ln(q[:, s(1)] + p[:, s(1)], lw[s(1)], lb[s(1)]))
        n = np.tanh(_ln(q[:, s(2)] + r * p[:, s(2)], lw[s(2)], lb[s(2)]))
        h = (1 - z) * n + z * a["h0"]
    assert_close(out["y"][0], h, kind="transcendental")


# ---- determinism ----

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_thread_invariance(threads, cell):
    a, g = make(cell, 3, 64, 24, 64, np.float32, ln=True)
    results = []
    for n in (1, 2):
        threads(n)
        out, grads = run(ops, cell, a, g, dropout=0.2, recurrent_dropout=0.2, seed=3)
        results.append({**out, **{"d" + k: v for k, v in grads.items() if v is not None}})
    for k in results[0]:
        assert np.array_equal(results[0][k], results[1][k]), k


@pytest.fixture
def gemm_kernel():
    from fusednn import _C
    before = _C._gemm_kernel()
    yield _C._set_gemm_kernel
    _C._set_gemm_kernel(before)


@pytest.mark.parametrize("kernel", ["auto", "openblas"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell, B, H", [("lstm", 32, 201), ("gru", 13, 37), ("lstm", 1, 1)])
def test_recurrent_products_have_the_gemms_bits(threads, gemm_kernel, kernel, cell, B, H, dtype):
    """The steps' recurrent products read W_hh packed once per sequence (cpu/gemm.h's
    gemm_pack_b) where an own kernel (AVX-512 or AVX2) runs them: they must give the plain GEMM's bits
    (ops.linear; linear_backward's dx) under each kernel setting, at 1 and 2 threads, over partial
    panels and several k-blocks. gemms_only runs the drivers without the pointwise passes, so the
    last product stays in the caller's work array (forward: its first B x G*H values) and the
    backward's last one, dg_hh(0) W_hh, becomes dh0."""
    from fusednn import _C
    if not _C._gemm_kernel_available(kernel):
        pytest.skip(f"the CPU cannot run the {kernel} GEMM kernel")
    gemm_kernel(kernel)
    G, T, I = GATES[cell], 3, 5
    rng = np.random.default_rng(seed_of("packed", cell, B, H, str(dtype)))
    x = rng.standard_normal((T, B, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    c0 = rng.standard_normal((B, H)).astype(dtype) if cell == "lstm" else None
    w_ih = rng.standard_normal((G * H, I)).astype(dtype)
    w_hh = rng.standard_normal((G * H, H)).astype(dtype)
    b_ih, b_hh = rng.standard_normal(G * H).astype(dtype), rng.standard_normal(G * H).astype(dtype)
    hmask = (rng.random((B, H)) < 0.7).astype(dtype) / dtype(0.7)
    dg0 = rng.standard_normal((B, G * H)).astype(dtype)
    y, gates, aux = (np.zeros(shape, dtype) for shape in [(T, B, H), (T, B, G * H), (T, B, H)])
    expected_fwd = ops.linear(h0 * hmask, w_hh, b_hh)
    expected_bwd = ops.linear_backward(dg0, h0, w_hh)[0]
    for n in (1, 2):
        threads(n)
        work = np.zeros(B * G * H + B * H, dtype)
        _C.rnn_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, None, None, hmask, work=work, gemms_only=True)
        assert np.array_equal(work[:B * G * H].reshape(B, G * H), expected_fwd)
        tb = T * B
        work = np.zeros(tb * G * H * (2 if cell == "gru" else 1) + tb * H + 3 * B * H, dtype)
        dg_hh = tb * G * H if cell == "gru" else 0  # where rnn_backward keeps dg_hh in work
        work[dg_hh:dg_hh + B * G * H] = dg0.ravel()
        dh0 = _C.rnn_backward(cell, None, None, None, x, h0, c0, w_ih, w_hh, None, None, y, gates, aux, None, None,
                              True, True, True, work=work, gemms_only=True)[1]
        assert np.array_equal(dh0, expected_bwd)
    with pytest.raises(ValueError, match="work: gemms_only=True"):
        _C.rnn_backward(cell, None, None, None, x, h0, c0, w_ih, w_hh, None, None, y, gates, aux, None, None,
                        True, True, True, gemms_only=True)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_work_array_must_not_overlap_the_inputs(cell):
    """A work array that shares memory with something the kernel reads (here weight_hh or y) is a
    ValueError naming both, and the input is left as it was."""
    from fusednn import _C
    G, T, B, I, H = GATES[cell], 3, 2, 4, 5
    rng = np.random.default_rng(seed_of("work-alias", cell))
    x, h0 = rng.standard_normal((T, B, I)), rng.standard_normal((B, H))
    c0 = rng.standard_normal((B, H)) if cell == "lstm" else None
    w_ih = rng.standard_normal((G * H, I))
    n_fwd = B * G * H + B * H
    buf = np.zeros(max(n_fwd, G * H * H))
    w_hh = buf[:G * H * H].reshape(G * H, H)
    w_hh[...] = rng.standard_normal((G * H, H))
    kept = w_hh.copy()
    with pytest.raises(ValueError, match="work: must not share memory with weight_hh"):
        _C.rnn_forward(cell, x, h0, c0, w_ih, w_hh, None, None, None, None, None, work=buf[:n_fwd])
    assert np.array_equal(w_hh, kept)
    y, gates, aux = _C.rnn_forward(cell, x, h0, c0, w_ih, kept, None, None, None, None, None)[:3]
    n_bwd = T * B * G * H * (2 if cell == "gru" else 1) + T * B * H + 3 * B * H
    big = np.zeros(max(n_bwd, y.size))
    y_view = big[:y.size].reshape(y.shape)
    y_view[...] = y
    with pytest.raises(ValueError, match="work: must not share memory with y"):
        _C.rnn_backward(cell, np.ones_like(y), None, None, x, h0, c0, w_ih, kept, None, None, y_view, gates, aux,
                        None, None, False, False, True, work=big[:n_bwd])
    assert np.array_equal(y_view, y)


# ---- arguments ----

def test_bad_arguments():
    a, g = make("lstm", 2, 3, 4, 5, np.float32)
    x, h0, c0, wi, wh = a["x"], a["h0"], a["c0"], a["weight_ih"], a["weight_hh"]
    with pytest.raises(ValueError, match="x: expected a 3-D"):
        ops.lstm_forward(x[0], h0, c0, wi, wh)
    with pytest.raises(ValueError, match="weight_hh: expected shape"):
        ops.lstm_forward(x, h0, c0, wi, wh[:, :4])
    with pytest.raises(ValueError, match="weight_ih"):
        ops.lstm_forward(x, h0, c0, wi[:, :3], wh)
    with pytest.raises(ValueError, match="weight_hh"):
        ops.gru_forward(x, h0, wi, wh)  # 4H rows are not a GRU's 3H
    with pytest.raises(TypeError, match="weight_ih: expected dtype float32"):
        ops.lstm_forward(x, h0, c0, wi.astype(np.float64), wh)
    with pytest.raises(ValueError, match="h0"):
        ops.lstm_forward(x, h0[:2], c0, wi, wh)
    with pytest.raises(ValueError, match="c0"):
        ops.lstm_forward(x, h0, c0[:, :2], wi, wh)
    with pytest.raises(ValueError, match="bias_hh"):
        ops.lstm_forward(x, h0, c0, wi, wh, a["bias_ih"], np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="steps >= 1"):
        ops.lstm_forward(x[:0], h0, c0, wi, wh)
    with pytest.raises(ValueError, match="ln_weight, ln_bias: expected both"):
        ops.lstm_forward(x, h0, c0, wi, wh, ln_weight=np.ones(20, np.float32))
    with pytest.raises(ValueError, match="ln_bias"):
        ops.lstm_forward(x, h0, c0, wi, wh, ln_weight=np.ones(20, np.float32), ln_bias=np.ones(5, np.float32))
    with pytest.raises(ValueError, match="dropout: expected a value in"):
        ops.lstm_forward(x, h0, c0, wi, wh, dropout=1.0)
    with pytest.raises(TypeError, match="recurrent_dropout"):
        ops.lstm_forward(x, h0, c0, wi, wh, recurrent_dropout="0.1")
    with pytest.raises(ValueError, match="mode: expected one of"):
        ops.lstm_forward(x, h0, c0, wi, wh, mode="gal")
    with pytest.raises(ValueError, match="naive dropout never masks"):
        ops.lstm_forward(x, h0, c0, wi, wh, mode="naive", recurrent_dropout=0.1)
    with pytest.raises(ValueError, match="weight_drop"):
        ops.lstm_forward(x, h0, c0, wi, wh, weight_drop=-0.1)
    with pytest.raises(TypeError, match="seed"):
        ops.lstm_forward(x, h0, c0, wi, wh, seed=1.5)
    with pytest.raises(ValueError, match="offset"):
        ops.lstm_forward(x, h0, c0, wi, wh, offset=2**64 - 2)
    with pytest.raises(TypeError, match="training"):
        ops.lstm_forward(x, h0, c0, wi, wh, training=1)
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        ops.lstm_forward(x.tolist(), h0, c0, wi, wh)
    _, _, _, cache = ops.lstm_forward(x, h0, c0, wi, wh)
    with pytest.raises(TypeError, match="cache: expected the cache dict of gru_forward"):
        ops.gru_backward(g["dy"], None, cache)
    with pytest.raises(ValueError, match="dy"):
        ops.lstm_backward(g["dy"][:1], None, None, cache)
    with pytest.raises(TypeError, match="dh_n: expected dtype float32"):
        ops.lstm_backward(None, g["dh_n"].astype(np.float64), None, cache)
    with pytest.raises(TypeError, match="input_grad"):
        ops.lstm_backward(None, None, None, cache, input_grad=None)
    # The reference refuses the same way.
    with pytest.raises(ValueError, match="naive dropout never masks"):
        reference.lstm_forward(x, h0, c0, wi, wh, mode="naive", recurrent_dropout=0.1)


# ---- torch's layout: weights exchanged with torch.nn.LSTM / GRU give torch's results ----

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_torch_weight_exchange(cell):
    torch = pytest.importorskip("torch")
    T, B, I, H = 4, 3, 5, 6
    a, g = make(cell, T, B, I, H, np.float64)
    mod = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(I, H).double()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(mod, name + "_l0").copy_(torch.from_numpy(a[name]))
    x = torch.from_numpy(a["x"]).requires_grad_()
    h0 = torch.from_numpy(a["h0"])[None].requires_grad_()
    if cell == "lstm":
        c0 = torch.from_numpy(a["c0"])[None].requires_grad_()
        y, (hn, cn) = mod(x, (h0, c0))
        loss = (y * torch.from_numpy(g["dy"])).sum() + (hn[0] * torch.from_numpy(g["dh_n"])).sum() + \
            (cn[0] * torch.from_numpy(g["dc_n"])).sum()
    else:
        y, hn = mod(x, h0)
        loss = (y * torch.from_numpy(g["dy"])).sum() + (hn[0] * torch.from_numpy(g["dh_n"])).sum()
    loss.backward()
    out, grads = run(ops, cell, a, g)
    assert_close(out["y"], y.detach().numpy(), kind="transcendental")
    assert_close(grads["x"], x.grad.numpy(), kind="transcendental")
    assert_close(grads["h0"], h0.grad.numpy()[0], kind="transcendental")
    assert_close(out["h_n"], hn.detach().numpy()[0], kind="transcendental")
    if cell == "lstm":
        assert_close(out["c_n"], cn.detach().numpy()[0], kind="transcendental")
        assert_close(grads["c0"], c0.grad.numpy()[0], kind="transcendental")
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert_close(grads[name], getattr(mod, name + "_l0").grad.numpy(), kind="transcendental", err_msg=name)
