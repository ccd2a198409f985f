"""A training step allocates no array memory after the first steps (issue 19): layers, losses
and optimizers write into arrays they keep (fusednn.nn.buffers), reused only when nothing else
holds them.

The count: every allocation NumPy makes for array data goes through its data-memory handler
(NumPy >= 1.22), which is also what reports to tracemalloc's NumPy domain. A counting handler
(malloc/calloc/realloc/free of the C library, each counted) is installed for the measured steps
through NumPy's C API (PyDataMem_SetHandler) from ctypes."""

import contextlib
import ctypes

import numpy as np
import pytest

from fusednn import data, nn, ops, optim
from fusednn.nn.losses import SoftmaxCrossEntropy

_libc = ctypes.CDLL(None)
_libc.malloc.restype = _libc.calloc.restype = _libc.realloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
_libc.realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]

_MALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_CALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
_REALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _Allocator(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", _MALLOC), ("calloc", _CALLOC), ("realloc", _REALLOC),
                ("free", _FREE)]


class _Handler(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8), ("allocator", _Allocator)]


def _numpy_c_api(index):
    api = np._core._multiarray_umath._ARRAY_API if hasattr(np, "_core") else np.core._multiarray_umath._ARRAY_API
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    table = ctypes.cast(get_pointer(api, None), ctypes.POINTER(ctypes.c_void_p))
    return table[index]


# Every handler installed stays alive for the life of the process: an array made under a handler
# is freed through it, whenever that is.
_HANDLERS = []


@contextlib.contextmanager
def counted_numpy_allocations():
    """Counts NumPy's array-data allocations (malloc, calloc, realloc) in the block: yields a dict
    whose "allocations" (a count) and "sizes" (a list of byte counts) grow as they happen."""
    counts = {"allocations": 0, "sizes": []}

    def count(size):
        counts["allocations"] += 1
        counts["sizes"].append(size)

    def malloc(ctx, size):
        count(size)
        return _libc.malloc(size)

    def calloc(ctx, n, size):
        count(n * size)
        return _libc.calloc(n, size)

    def realloc(ctx, ptr, size):
        count(size)
        return _libc.realloc(ptr, size)

    def free(ctx, ptr, size):
        _libc.free(ptr)

    callbacks = (_MALLOC(malloc), _CALLOC(calloc), _REALLOC(realloc), _FREE(free))
    handler = _Handler(b"fusednn_test_counting", 1, _Allocator(None, *callbacks))
    new_capsule = ctypes.pythonapi.PyCapsule_New
    new_capsule.restype, new_capsule.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    capsule = new_capsule(ctypes.addressof(handler), b"mem_handler", None)
    _HANDLERS.append((counts, callbacks, handler, capsule))
    set_handler = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(_numpy_c_api(304))
    previous = set_handler(capsule)
    try:
        yield counts
    finally:
        set_handler(previous)


def test_the_counting_handler_counts():
    with counted_numpy_allocations() as counts:
        a = np.empty(1000, np.float32)
        b = a + 1
        ops.relu(b, out=a)  # in place: no allocation
    # a and b (NumPy's ufunc machinery may add a few bytes for the scalar 1)
    assert sorted(size for size in counts["sizes"] if size >= 1000) == [4000, 4000], counts
    np.testing.assert_array_equal(a, np.maximum(b, 0))


def _mlp_step_setup(norm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 64)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    model = nn.MLP([64, 96, 48, 10], norm=norm, dropout=0.3, seed=0)
    opt = optim.AdamW(model.parameter_groups(weight_decay=1e-2), lr=1e-3, max_grad_norm=5.0)
    loss = SoftmaxCrossEntropy(label_smoothing=0.1)
    batches = [(ops.gather_rows(x, idx), y[idx]) for idx in np.array_split(np.arange(512), 4)]

    def step(k):
        xb, yb = batches[k % len(batches)]
        logits = model.forward(xb, training=True)
        value, d_logits = loss.value_and_grad(logits, yb)
        model.backward(d_logits)
        opt.step()
        return logits, value
    return model, step


@pytest.mark.parametrize("norm", ["batch", "layer", None])
def test_a_training_step_allocates_no_arrays_after_the_first(norm):
    model, step = _mlp_step_setup(norm)
    for k in range(2):
        kept = step(k)  # the loop's variable holds the last step's outputs, as a user's does
    with counted_numpy_allocations() as counts:
        for k in range(2, 10):
            kept = step(k)
    assert counts["allocations"] == 0, counts
    assert np.isfinite(kept[1])


def test_an_output_the_caller_holds_is_never_overwritten():
    model, step = _mlp_step_setup("batch")
    held = [step(k)[0] for k in range(6)]  # every step's logits kept: each needs its own array
    copies = [h.copy() for h in held]
    for k in range(6, 9):
        step(k)
    assert len({id(h) for h in held}) == len({h.ctypes.data for h in held}) == 6
    for h, c in zip(held, copies):
        np.testing.assert_array_equal(h, c)
    view = model.forward(np.ones((128, 64), np.float32), training=True)[:, :3]
    before = view.copy()
    model.forward(np.zeros((128, 64), np.float32), training=True)
    np.testing.assert_array_equal(view, before)  # a view keeps its array out of reuse


def test_reused_buffers_give_the_same_training_as_fresh_arrays(monkeypatch):
    """The same steps with buffer reuse and with none: in the second model's steps every buffer
    a layer, the loss or the optimizer asks for is a new array (ReusableBuffers.get replaced), so
    a reused array overwritten while still in use would change only the first model's numbers."""
    from fusednn.nn.buffers import ReusableBuffers
    _, step_reused = _mlp_step_setup("batch")
    _, step_fresh = _mlp_step_setup("batch")
    reuse = ReusableBuffers.get
    fresh_calls = []

    def fresh(self, slot, shape, dtype, xp=np):
        fresh_calls.append(slot)
        return xp.empty(shape, dtype)
    for k in range(8):
        logits_a, loss_a = step_reused(k)
        monkeypatch.setattr(ReusableBuffers, "get", fresh)
        try:
            logits_b, loss_b = step_fresh(k)
        finally:
            monkeypatch.setattr(ReusableBuffers, "get", reuse)
        assert loss_a == loss_b
        np.testing.assert_array_equal(logits_a, logits_b)
    # Every layer's output and input gradient and the loss's gradient came from the replacement.
    assert {"y", "dx", "grad"} <= set(fresh_calls) and len(fresh_calls) >= 8 * 10, sorted(set(fresh_calls))


def test_fit_epochs_allocate_only_per_batch_data_and_metrics():
    """fit's own per-step arrays (the minibatch copy, the accuracy metric) are outside the
    layers; the layers, the loss and the optimizer add none: the count per step stays that."""
    from fusednn import train
    x, y = data.digits("train")
    model = nn.MLP([64, 32, 10], norm="batch", dropout=0.2, seed=0)
    opt = optim.Adam(model.parameter_groups(), lr=1e-3)
    loss = SoftmaxCrossEntropy()
    train.fit(model, loss, opt, (x, y), epochs=1, batch_size=100, verbose=0)
    steps = data.num_batches(len(x), 100)
    with counted_numpy_allocations() as counts:
        train.fit(model, loss, opt, (x, y), epochs=1, batch_size=100, verbose=0, metrics=())
    # per step: the shuffled order's slice, the batch's rows and labels, the labels' copy to the
    # model's device (none on the CPU) -- but nothing per layer (the MLP has 5 layers, each with
    # 2-5 arrays per step).
    assert counts["allocations"] <= 4 * steps + 20, (counts, steps)
