"""NumPy reference of :mod:`fusednn.ops.rnn`: LSTM and GRU layers as plain loops over time,
forward and backward through time, with the same masks (from :mod:`fusednn.reference.dropout`),
the same cache keys and the same signatures."""

import numpy as np

from fusednn import _checks
from fusednn.ops.rnn import check_mask_sizes, check_options
from fusednn.reference.dropout import drop_connect, drop_connect_backward, dropout

__all__ = ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward", "rnn_dropout_masks"]

LN_EPS = 1e-5


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _layer_norm(a, w, b):
    """a (B, H) normalized per row: (out, xhat, rstd (B,))."""
    mean = a.mean(axis=1, keepdims=True)
    var = ((a - mean) ** 2).mean(axis=1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + LN_EPS)
    xhat = (a - mean) * rstd
    return xhat * w + b, xhat, rstd[:, 0]


def _layer_norm_backward(d, xhat, rstd, w):
    """Gradient of the input from d (gradient of the output)."""
    dxh = d * w
    return rstd[:, None] * (dxh - dxh.mean(axis=1, keepdims=True) - xhat * (dxh * xhat).mean(axis=1, keepdims=True))


def rnn_dropout_masks(steps, batch, input_size, hidden_size, dtype=np.float32, *, dropout, recurrent_dropout=0.0,
                      mode="variational", seed, offset=0, device="cpu"):
    if device != "cpu":
        raise ValueError(f"device: the NumPy reference runs on 'cpu', got {device!r}")
    steps, batch, input_size, hidden_size, dtype = check_mask_sizes(steps, batch, input_size, hidden_size, dtype)
    p, p_h, mode, _, seed, offset, _ = check_options(dropout, recurrent_dropout, mode, 0.0, seed, offset, True)
    return _masks(dtype, steps, batch, input_size, hidden_size, p, p_h, mode, seed, offset)


def _masks(dtype, steps, batch, input_size, hidden_size, p, p_h, mode, seed, offset):
    x_mask = h_mask = None
    if p > 0:
        shape = (batch, input_size) if mode == "variational" else (steps, batch, input_size)
        x_mask = dropout(np.ones(shape, dtype), p, seed=seed, offset=offset)
    if p_h > 0:
        h_mask = dropout(np.ones((batch, hidden_size), dtype), p_h, seed=seed, offset=offset + 1)
    return x_mask, h_mask


def _forward(cell, x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_weight, ln_bias, options):
    p, p_h, mode, p_w, seed, offset, training = options
    x = np.asarray(x)
    G = 4 if cell == "lstm" else 3
    T, B, _ = x.shape
    H = weight_hh.shape[1]
    dt = x.dtype
    h0 = np.zeros((B, H), dt) if h0 is None else h0
    if cell == "lstm" and c0 is None:
        c0 = np.zeros((B, H), dt)
    x_mask = h_mask = weight_drop = None
    w_hh = weight_hh
    if training:
        x_mask, h_mask = _masks(dt, T, B, x.shape[2], H, p, p_h, mode, seed, offset)
        if p_w > 0:
            weight_drop = (p_w, seed, offset + 2)
            w_hh = drop_connect(weight_hh, p_w, seed=seed, offset=offset + 2)
    xu = x * x_mask if x_mask is not None else x
    b_ih = bias_ih if bias_ih is not None else np.zeros(G * H, dt)
    b_hh = bias_hh if bias_hh is not None else np.zeros(G * H, dt)
    ln = ln_weight is not None
    y = np.empty((T, B, H), dt)
    gates = np.empty((T, B, G * H), dt)
    aux = np.empty((T, B, H), dt)
    xhat = np.empty((T, B, G * H), dt) if ln else None
    rstd = np.empty((T, B, G), dt) if ln else None
    h, c = h0, c0
    for t in range(T):
        hm = h * h_mask if h_mask is not None else h
        q = xu[t] @ weight_ih.T + b_ih
        rec = hm @ w_hh.T + b_hh

        def norm(a, g):
            if not ln:
                return a
            s = slice(g * H, (g + 1) * H)
            out, xhat[t][:, s], rstd[t][:, g] = _layer_norm(a, ln_weight[s], ln_bias[s])
            return out

        if cell == "lstm":
            a = q + rec
            i = _sigmoid(norm(a[:, :H], 0))
            f = _sigmoid(norm(a[:, H:2 * H], 1))
            g = np.tanh(norm(a[:, 2 * H:3 * H], 2))
            o = _sigmoid(norm(a[:, 3 * H:], 3))
            c = f * c + i * g
            h = o * np.tanh(c)
            gates[t] = np.concatenate([i, f, g, o], axis=1)
            aux[t] = c
        else:
            r = _sigmoid(norm(q[:, :H] + rec[:, :H], 0))
            z = _sigmoid(norm(q[:, H:2 * H] + rec[:, H:2 * H], 1))
            pn = rec[:, 2 * H:]
            n = np.tanh(norm(q[:, 2 * H:] + r * pn, 2))
            h = (1 - z) * n + z * h
            gates[t] = np.concatenate([r, z, n], axis=1)
            aux[t] = pn
        y[t] = h
    cache = {"cell": cell, "x": xu, "x_mask": x_mask, "h0": h0, "c0": c0, "weight_ih": weight_ih, "weight_hh": w_hh,
             "weight_drop": weight_drop, "bias_ih": bias_ih is not None, "bias_hh": bias_hh is not None,
             "ln_weight": ln_weight, "hmask": h_mask, "y": y, "gates": gates, "aux": aux, "xhat": xhat, "rstd": rstd}
    return y, cache


def _backward(cell, dy, dh_n, dc_n, cache, input_grad):
    if not isinstance(cache, dict) or cache.get("cell") != cell:
        raise TypeError(f"cache: expected the cache dict of {cell}_forward, got {type(cache).__qualname__}")
    input_grad = _checks.flag("input_grad", input_grad)
    c = cache
    x, y, gates, aux = c["x"], c["y"], c["gates"], c["aux"]
    T, B, _ = x.shape
    H = y.shape[2]
    G = 4 if cell == "lstm" else 3
    dt = x.dtype
    w_ih, w_hh, lw, mask = c["weight_ih"], c["weight_hh"], c["ln_weight"], c["hmask"]
    ln = lw is not None
    dg_ih = np.zeros((T, B, G * H), dt)
    dg_hh = np.zeros((T, B, G * H), dt)
    dpost_all = np.zeros((T, B, G * H), dt) if ln else None
    dh = np.zeros((B, H), dt) if dh_n is None else dh_n.astype(dt, copy=True)
    dc = np.zeros((B, H), dt) if (cell == "gru" or dc_n is None) else dc_n.astype(dt, copy=True)

    def lnb(d, t, g):
        if not ln:
            return d
        s = slice(g * H, (g + 1) * H)
        dpost_all[t][:, s] = d
        return _layer_norm_backward(d, c["xhat"][t][:, s], c["rstd"][t][:, g], lw[s])

    for t in range(T - 1, -1, -1):
        if dy is not None:
            dh = dh + dy[t]
        h_prev = c["h0"] if t == 0 else y[t - 1]
        gt = gates[t]
        if cell == "lstm":
            i, f, g, o = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:3 * H], gt[:, 3 * H:]
            c_prev = c["c0"] if t == 0 else aux[t - 1]
            tc = np.tanh(aux[t])
            dct = dc + dh * o * (1 - tc * tc)
            da = [lnb(dct * g * i * (1 - i), t, 0), lnb(dct * c_prev * f * (1 - f), t, 1),
                  lnb(dct * i * (1 - g * g), t, 2), lnb(dh * tc * o * (1 - o), t, 3)]
            dg_ih[t] = np.concatenate(da, axis=1)
            dg_hh[t] = dg_ih[t]
            dc = dct * f
            direct = 0
        else:
            r, z, n = gt[:, :H], gt[:, H:2 * H], gt[:, 2 * H:]
            pn = aux[t]
            dn = dh * (1 - z)
            dz = dh * (h_prev - n)
            direct = dh * z
            sn = lnb(dn * (1 - n * n), t, 2)
            sr = lnb(sn * pn * r * (1 - r), t, 0)
            sz = lnb(dz * z * (1 - z), t, 1)
            dg_ih[t] = np.concatenate([sr, sz, sn], axis=1)
            dg_hh[t] = np.concatenate([sr, sz, sn * r], axis=1)
        drec = dg_hh[t] @ w_hh
        dh = direct + (drec * mask if mask is not None else drec)
    hm_prev = np.concatenate([c["h0"][None], y[:-1]], axis=0)
    if mask is not None:
        hm_prev = hm_prev * mask
    gi = dg_ih.reshape(T * B, G * H)
    gh = dg_hh.reshape(T * B, G * H)
    grads = {
        "x": (gi @ w_ih).reshape(T, B, -1) if input_grad else None,
        "h0": dh,
        "c0": dc if cell == "lstm" else None,
        "weight_ih": gi.T @ x.reshape(T * B, -1),
        "weight_hh": gh.T @ hm_prev.reshape(T * B, H),
        "bias_ih": gi.sum(axis=0) if c["bias_ih"] else None,
        "bias_hh": gh.sum(axis=0) if c["bias_hh"] else None,
        "ln_weight": (dpost_all * c["xhat"]).reshape(T * B, -1).sum(axis=0) if ln else None,
        "ln_bias": dpost_all.reshape(T * B, -1).sum(axis=0) if ln else None,
    }
    if grads["x"] is not None and c["x_mask"] is not None:
        grads["x"] = grads["x"] * c["x_mask"]
    if c["weight_drop"] is not None:
        p_w, seed, off = c["weight_drop"]
        grads["weight_hh"] = drop_connect_backward(grads["weight_hh"], p_w, seed=seed, offset=off)
    if cell == "gru":
        grads.pop("c0")
    return grads


def lstm_forward(x, h0, c0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, ln_weight=None, ln_bias=None,
                 dropout=0.0, recurrent_dropout=0.0, mode="variational", weight_drop=0.0, seed=0, offset=0,
                 training=True):
    options = check_options(dropout, recurrent_dropout, mode, weight_drop, seed, offset, training)
    y, cache = _forward("lstm", x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, ln_weight, ln_bias, options)
    return y, y[-1].copy(), cache["aux"][-1].copy(), cache


def lstm_backward(dy, dh_n, dc_n, cache, *, input_grad=True):
    return _backward("lstm", dy, dh_n, dc_n, cache, input_grad)


def gru_forward(x, h0, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, ln_weight=None, ln_bias=None,
                dropout=0.0, recurrent_dropout=0.0, mode="variational", weight_drop=0.0, seed=0, offset=0,
                training=True):
    options = check_options(dropout, recurrent_dropout, mode, weight_drop, seed, offset, training)
    y, cache = _forward("gru", x, h0, None, weight_ih, weight_hh, bias_ih, bias_hh, ln_weight, ln_bias, options)
    return y, y[-1].copy(), cache


def gru_backward(dy, dh_n, cache, *, input_grad=True):
    return _backward("gru", dy, dh_n, None, cache, input_grad)
