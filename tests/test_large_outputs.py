"""Large outputs (several MB, more than the caches hold) with an odd row length, so rows start
unaligned: the kernels against the references on every device (reductions against a wide
reference, by conftest's rule), and 1 vs 2 threads on the CPU. The float32 outputs are above
the size from which the CPU writes them with streaming stores (kStreamMinBytes, 16 MiB, in
csrc/cpu/stream_store.h: layer norm, batch norm and dropout; float64 outputs and
cross-entropy's are never streamed)."""

import numpy as np
import pytest
from conftest import assert_close, seed_of, to_device, to_numpy, wider

from fusednn import ops, reference

STREAM_MIN_BYTES = 16 << 20
STREAMED_SHAPE = (4200, 1025)  # 17.2 MB in float32
SHAPE = (1100, 1001)  # 4.4 MB in float32, 8.8 MB in float64
OPS = ["xent", "layer_norm", "batch_norm", "dropout"]
STREAMED_OPS = ("layer_norm", "batch_norm", "dropout")


def _inputs(op, dtype):
    """The op's inputs: of STREAMED_SHAPE where the CPU streams its float32 outputs."""
    shape = STREAMED_SHAPE if op in STREAMED_OPS and np.dtype(dtype) == np.float32 else SHAPE
    assert shape is SHAPE or shape[0] * shape[1] * 4 >= STREAM_MIN_BYTES
    rng = np.random.default_rng(seed_of("large", np.dtype(dtype).name))
    labels = rng.integers(0, shape[1], shape[0])
    labels[::7] = -100
    return {"x": (rng.standard_normal(shape) * 3 + 1).astype(dtype), "dy": rng.standard_normal(shape).astype(dtype),
            "labels": labels, "gamma": rng.standard_normal(shape[1]).astype(dtype),
            "beta": rng.standard_normal(shape[1]).astype(dtype)}


def _call(op, impl, a):
    """The op's forward and backward outputs for the inputs a (a dict of arrays)."""
    x, dy, gamma, beta = a["x"], a["dy"], a["gamma"], a["beta"]
    if op == "xent":
        return impl.softmax_cross_entropy_with_grad(x, a["labels"], label_smoothing=0.1)
    if op == "layer_norm":
        y, mean, inv_std = impl.layer_norm(x, gamma, beta)
        return (y, *impl.layer_norm_backward(dy, x, gamma, mean, inv_std))
    if op == "batch_norm":
        y, mean, inv_std = impl.batch_norm(x, gamma, beta, training=True)
        return (y, *impl.batch_norm_backward(dy, x, gamma, mean, inv_std))
    return (impl.dropout(x, 0.3, seed=5, offset=2), impl.dropout_backward(dy, 0.3, seed=5, offset=2))


# Under conftest's rule this test found the CPU's float64 mean cross-entropy 7 ulps off (a double
# sum of the row losses), over twice NumPy's pairwise error; the rows are now added in long double.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op", OPS)
def test_streamed_outputs_match_reference(device, op, dtype):
    a = _inputs(op, dtype)
    got = _call(op, ops, {k: to_device(device, v) for k, v in a.items()})
    same = _call(op, reference, a)
    if op == "dropout":  # a mask and a scale: exact
        for g, r in zip(got, same):
            assert g.dtype == dtype
            np.testing.assert_array_equal(to_numpy(g), r)
        return
    wide_inputs = {k: (v if k == "labels" else wider(v)[0]) for k, v in a.items()}
    for g, r, w in zip(got, same, _call(op, reference, wide_inputs)):
        assert g.dtype == dtype
        assert_close(g, r, w)


@pytest.mark.parametrize("op", OPS)
def test_streamed_outputs_identical_for_one_and_two_threads(op, threads):
    a = _inputs(op, np.float32)
    results = []
    for n in (1, 2):
        threads(n)
        results.append(_call(op, ops, a))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


# ---- the output pool (csrc/cpu/output_pool.h): large outputs reuse freed blocks, never live ones

POOLED = 2**21  # float32 elements: 8 MiB, above the pool's 4 MiB threshold


@pytest.fixture
def pool_limit():
    """Restores the pool's limit after a test that changes it."""
    import fusednn
    before = fusednn.output_pool_info()["limit_bytes"]
    yield fusednn.set_output_pool_limit
    fusednn.set_output_pool_limit(before)


def test_large_outputs_reuse_freed_blocks_only():
    import fusednn
    x = np.random.default_rng(0).standard_normal(POOLED).astype(np.float32)
    assert x.nbytes >= fusednn.output_pool_info()["min_pooled_bytes"]
    kept = ops.relu(x)
    view = ops.relu(-x)[::2]  # the view alone keeps its array's block alive
    expected_kept, expected_view = np.maximum(x, 0), np.maximum(-x, 0)[::2]
    before = fusednn.output_pool_info()
    fresh = [ops.relu(x * k) for k in (2, 3)]
    for y in fresh:
        assert not np.shares_memory(y, kept) and not np.shares_memory(y, view)
    np.testing.assert_array_equal(kept, expected_kept)
    np.testing.assert_array_equal(view, expected_view)
    del fresh
    after_free = fusednn.output_pool_info()
    assert after_free["idle_blocks"] >= 2
    again = ops.relu(x)  # a block freed above, with its pages already faulted in
    assert fusednn.output_pool_info()["hits"] == after_free["hits"] + 1 > before["hits"]
    np.testing.assert_array_equal(again, expected_kept)
    assert again.flags.c_contiguous and again.flags.writeable and again.flags.aligned
    offset = fusednn.output_pool_info()["data_offset"]
    assert offset == 16 and again.ctypes.data % 4096 == offset


def test_pooled_outputs_behave_as_numpy_arrays():
    x = np.linspace(-1, 1, POOLED, dtype=np.float64).reshape(1024, -1)
    y = ops.relu(x)
    assert y.dtype == np.float64 and y.shape == x.shape
    y += 1  # writable in place
    np.testing.assert_array_equal(y, np.maximum(x, 0) + 1)
    import pickle
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(y)), y)


def test_output_pool_limit(pool_limit):
    import fusednn
    x = np.ones(POOLED, np.float32)
    pool_limit(0)
    assert fusednn.output_pool_info()["idle_bytes"] == 0
    y = ops.relu(x)
    del y
    assert fusednn.output_pool_info()["idle_bytes"] == 0  # limit 0: freed blocks are unmapped
    pool_limit(64 * 2**20)
    y = ops.relu(x)
    del y
    # one block: the 8 MiB of data rounded up to 2 MiB, and the page that the data offset reaches
    assert fusednn.output_pool_info()["idle_bytes"] == 8 * 2**20 + 4096
    with pytest.raises(ValueError, match="nbytes: expected a byte count >= 0, got -1"):
        fusednn.set_output_pool_limit(-1)
