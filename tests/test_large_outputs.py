"""Large outputs (several MB, more than the caches hold) with an odd row length, so rows start
unaligned: the kernels against the references, and 1 vs 2 threads."""

import numpy as np
import pytest
from conftest import seed_of

from fusednn import ops, reference

SHAPE = (1100, 1001)  # 4.4 MB in float32, 8.8 MB in float64


def _close(actual, expected, dtype):
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale * 1e-2)


def _calls(dtype):
    rng = np.random.default_rng(seed_of("large", np.dtype(dtype).name))
    x = (rng.standard_normal(SHAPE) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(SHAPE).astype(dtype)
    labels = rng.integers(0, SHAPE[1], SHAPE[0])
    labels[::7] = -100
    gamma = rng.standard_normal(SHAPE[1]).astype(dtype)
    beta = rng.standard_normal(SHAPE[1]).astype(dtype)

    def xent(impl):
        return impl.softmax_cross_entropy_with_grad(x, labels, label_smoothing=0.1)

    def layer_norm(impl):
        y, mean, inv_std = impl.layer_norm(x, gamma, beta)
        return (y, *impl.layer_norm_backward(dy, x, gamma, mean, inv_std))

    def batch_norm(impl):
        y, mean, inv_std = impl.batch_norm(x, gamma, beta, training=True)
        return (y, *impl.batch_norm_backward(dy, x, gamma, mean, inv_std))

    def dropout(impl):
        return (impl.dropout(x, 0.3, seed=5, offset=2), impl.dropout_backward(dy, 0.3, seed=5, offset=2))

    return {"xent": xent, "layer_norm": layer_norm, "batch_norm": batch_norm, "dropout": dropout}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", ["xent", "layer_norm", "batch_norm", "dropout"])
def test_streamed_outputs_match_reference(op, dtype):
    call = _calls(dtype)[op]
    wide = {np.float32: np.float64, np.float64: np.longdouble}[dtype]
    for got, ref in zip(call(ops), call(reference)):
        assert got.dtype == dtype
        if op == "dropout":
            np.testing.assert_array_equal(got, ref)
        else:
            _close(got, np.asarray(ref, dtype=wide), dtype)


@pytest.mark.parametrize("op", ["xent", "layer_norm", "batch_norm", "dropout"])
def test_streamed_outputs_identical_for_one_and_two_threads(op, threads):
    call = _calls(np.float32)[op]
    results = []
    for n in (1, 2):
        threads(n)
        results.append(call(ops))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)
