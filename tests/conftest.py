"""Shared test fixtures: the devices, the one table of tolerances and the one assert_close.

Devices. Every family test file runs each case through the ``device`` fixture (or ``xp``, its
array module): on ``"cpu"`` always and on ``"cuda"`` when CuPy, a GPU and fusednn's CUDA module
are all present, so the GPU runs the same bodies against the same NumPy references. Cases that
only make sense on a GPU (alignment of device pointers, the current device, the stream) carry
``@requires_cuda`` and skip, with the reason, elsewhere.

Tolerances (the one table, ``TOLERANCES``). ``assert_close`` has one rule with two sources of
the bound:
- given a wide-precision reference (float64 for float32 inputs, long double for float64 inputs:
  see ``wider``), fusednn's error against it must be at most ``REDUCTION_ERROR_FACTOR`` (2) times
  the error of the NumPy reference run in the inputs' own dtype (over the entries where that
  reference is finite: where it overflowed, its error bounds nothing), plus a few ulps of the
  largest value; the bound scales with the problem instead of being a guessed constant
  (reductions, a GEMM among them);
- otherwise the reference is taken as exact to the dtype and the error must be within the
  table's relative tolerance of each value, with the same tolerance as absolute floor
  (elementwise ops: float32 near 1e-5) unless the row names its own (the Python-float row).
Either way, NaN and +-Inf must appear in the same places with the same values.

Hypothesis (fuzz tests): the ``ci`` profile (fixed seed, bounded examples) is the default;
``--fuzz-long`` switches to the ``long`` profile with many more examples.
"""

import zlib

import numpy as np
import pytest

import fusednn

# ----------------------------------------------------------------------------------------------
# The one table of tolerances.
# ----------------------------------------------------------------------------------------------
TOLERANCES = {
    # Elementwise ops and anything compared with a reference that is exact to the dtype:
    # relative tolerance, also used as the absolute floor for values near 0.
    "elementwise": {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12},
    # Transcendental chains (exp/log/tanh in a row, Box-Muller noise, two implementations of exp
    # on two devices) where a few more ulps are expected.
    "transcendental": {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10},
    # Training runs compared end to end (several epochs of float32 updates on two devices or two
    # code paths): differences grow with the number of steps.
    "trajectory": {np.dtype(np.float32): 1e-3, np.dtype(np.float64): 1e-9},
    # Scalars computed in Python floats (learning-rate schedules) against their closed forms: a
    # few ulps apart, relative only (the absolute floor is the smallest normal, not the rtol, so
    # small values such as gamma**30 keep the relative bound).
    "python-float": {np.dtype(np.float64): (1e-12, np.finfo(np.float64).tiny)},
}
REDUCTION_ERROR_FACTOR = 2.0
# Finite differences in float64 (central, eps 1e-6) agree with an exact gradient to ~1e-8.
GRADCHECK_RTOL = 1e-6
GRADCHECK_ATOL = 1e-7


def tolerance(dtype, kind="elementwise"):
    """The table's (rtol, atol) for this dtype and kind of computation: a row's single number is
    both the relative tolerance and the absolute floor."""
    entry = TOLERANCES[kind][np.dtype(dtype)]
    return entry if isinstance(entry, tuple) else (entry, entry)


# ----------------------------------------------------------------------------------------------
# Devices.
# ----------------------------------------------------------------------------------------------
def _cuda_unavailable_reason():
    """None when the CUDA tests can run, else why not."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (the CUDA tests need CuPy and a GPU)"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA GPU is visible"
    except Exception as e:  # cupy raises CUDARuntimeError without a driver
        return f"no usable CUDA GPU ({e})"
    if not fusednn.build_info()["cuda"]:
        return "fusednn was built without its CUDA module (FUSEDNN_CUDA=ON)"
    return None


CUDA_UNAVAILABLE = _cuda_unavailable_reason()
HAVE_CUDA = CUDA_UNAVAILABLE is None
DEVICES = ["cpu", "cuda"] if HAVE_CUDA else ["cpu"]
requires_cuda = pytest.mark.skipif(not HAVE_CUDA, reason=CUDA_UNAVAILABLE or "")


@pytest.fixture(params=DEVICES)
def device(request):
    """"cpu", and "cuda" where a GPU and fusednn's CUDA module are present."""
    return request.param


def array_module(device):
    if device == "cpu":
        return np
    import cupy
    return cupy


@pytest.fixture
def xp(device):
    """The array module of the device: numpy or cupy."""
    return array_module(device)


def to_device(device, *arrays):
    """The arrays on the device (NumPy arrays unchanged on "cpu"; None stays None). One array in,
    one array out; several in, a tuple out."""
    moved = tuple(a if a is None or device == "cpu" else array_module(device).asarray(a) for a in arrays)
    return moved[0] if len(moved) == 1 else moved


def to_numpy(a):
    """A NumPy array (or scalar) with a's values, from either device."""
    if hasattr(a, "__cuda_array_interface__"):
        return a.get()
    return a


def seed_of(*key):
    """A seed that is the same in every run (hash() of a str is not)."""
    return zlib.crc32(repr(key).encode())


def wider(*arrays):
    """The arrays in the wider precision the reductions are checked against."""
    widen = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.longdouble}
    return [None if a is None else to_numpy(a).astype(widen[to_numpy(a).dtype]) for a in arrays]


# ----------------------------------------------------------------------------------------------
# The one assert_close.
# ----------------------------------------------------------------------------------------------
def assert_close(actual, expected, expected_wide=None, *, kind="elementwise", err_msg=""):
    """actual (NumPy or CuPy) against the reference, by the one rule described at the top.

    expected: the NumPy reference computed in the inputs' own dtype.
    expected_wide: the same reference computed in wider precision (``wider``), for reductions;
        then the bound is REDUCTION_ERROR_FACTOR times ``expected``'s own error.
    kind: the row of TOLERANCES used when no wide reference is given.
    """
    actual = to_numpy(actual)
    expected = to_numpy(expected)
    dtype = np.result_type(actual)
    if dtype.kind != "f":
        dtype = np.result_type(expected)
    eps = np.finfo(dtype).eps if dtype.kind == "f" else 0.0
    a = np.asarray(actual, dtype=np.longdouble)
    e = np.asarray(expected, dtype=np.longdouble)
    w = e if expected_wide is None else np.asarray(to_numpy(expected_wide), dtype=np.longdouble)
    prefix = f"{err_msg}: " if err_msg else ""
    assert a.shape == w.shape, f"{prefix}shape {a.shape} != reference shape {w.shape}"
    finite = np.isfinite(w)
    np.testing.assert_array_equal(a[~finite], w[~finite], err_msg=f"{prefix}non-finite entries differ")
    if not finite.any():
        return
    err = np.abs(a[finite] - w[finite])
    if expected_wide is None:
        rtol, atol = tolerance(dtype, kind)
        bound = rtol * np.abs(w[finite]) + atol
        bad = ~(err <= bound)
        if bad.any():
            i = np.flatnonzero(bad)[0]
            raise AssertionError(f"{prefix}{bad.sum()} of {bad.size} values differ beyond rtol={rtol:g}, atol={atol:g}; "
                                 f"first: got {a[finite][i]!r}, expected {w[finite][i]!r}")
        return
    scale = np.abs(w[finite]).max()
    max_err = err.max()
    # NumPy's own error where its same-dtype result is finite: where it overflowed (inf where the
    # wide reference is finite) that error is infinite and would bound nothing.
    own = np.isfinite(e[finite])
    ref_err = np.abs(e[finite][own] - w[finite][own]).max() if own.any() else 0.0
    bound = REDUCTION_ERROR_FACTOR * ref_err + 4 * eps * scale
    assert max_err <= bound, (f"{prefix}max error {float(max_err):.3g} > bound {float(bound):.3g} "
                              f"(NumPy's own error {float(ref_err):.3g})")


class LayerWithForward:
    """``layer`` for fusednn.gradcheck with another forward, ``forward(layer, x)`` (e.g. in
    evaluation mode, or reseeding its dropout first): the layer's backward, parameters and
    gradients otherwise."""

    def __init__(self, layer, forward):
        self.layer, self._forward = layer, forward

    def forward(self, x):
        return self._forward(self.layer, x)

    def backward(self, dy):
        return self.layer.backward(dy)

    def named_parameters(self):
        return self.layer.named_parameters()

    def named_gradients(self):
        return self.layer.named_gradients()

    def zero_grad(self):
        self.layer.zero_grad()


# ----------------------------------------------------------------------------------------------
# Fixtures and options.
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def threads():
    """Set the thread count for one test and restore it afterwards."""
    before = fusednn.get_num_threads()
    yield fusednn.set_num_threads
    fusednn.set_num_threads(before)


def pytest_addoption(parser):
    parser.addoption("--fuzz-long", action="store_true", default=False,
                     help="run the hypothesis fuzz tests with many more examples (the 'long' profile)")


def pytest_configure(config):
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return
    common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("ci", max_examples=60, derandomize=True, print_blob=True, **common)
    settings.register_profile("long", max_examples=5000, derandomize=False, print_blob=True, **common)
    settings.load_profile("long" if config.getoption("--fuzz-long") else "ci")
