"""Shared test fixtures and the one table of tolerances.

Elementwise float32 ops are compared with rtol near 1e-5. For reductions (a GEMM is one),
fusednn's error against a wider-precision reference (float64 for float32 inputs, long double
for float64 inputs) must be at most REDUCTION_ERROR_FACTOR times the error of the NumPy
reference run in the inputs' own dtype, so the bound scales with the problem instead of being
a guessed constant.
"""

import zlib

import numpy as np
import pytest

import fusednn

ELEMENTWISE_RTOL = {np.float32: 1e-5, np.float64: 1e-12}
REDUCTION_ERROR_FACTOR = 2.0
# Finite differences in float64 (central, eps 1e-6) agree with an exact gradient to ~1e-8.
GRADCHECK_RTOL = 1e-6
GRADCHECK_ATOL = 1e-7


def seed_of(*key):
    """A seed that is the same in every run (hash() of a str is not)."""
    return zlib.crc32(repr(key).encode())


def wider(*arrays):
    """The arrays in the wider precision the reductions are checked against."""
    widen = {np.dtype(np.float32): np.float64, np.dtype(np.float64): np.longdouble}
    return [None if a is None else a.astype(widen[a.dtype]) for a in arrays]


def assert_reduction_close(actual, ref_same_dtype, ref_wide):
    """actual's error vs the wide-precision result is at most REDUCTION_ERROR_FACTOR times the
    error of the same-dtype NumPy reference (plus a few ulps, for results NumPy gets exact).
    Non-finite entries must match exactly in position and value."""
    eps = np.finfo(actual.dtype).eps
    actual = np.asarray(actual, dtype=np.longdouble)
    ref_same = np.asarray(ref_same_dtype, dtype=np.longdouble)
    ref64 = np.asarray(ref_wide, dtype=np.longdouble)
    assert actual.shape == ref64.shape
    finite = np.isfinite(ref64)
    np.testing.assert_array_equal(actual[~finite], ref64[~finite])
    if not finite.any():
        return
    scale = np.abs(ref64[finite]).max()
    err = np.abs(actual[finite] - ref64[finite]).max()
    ref_err = np.abs(ref_same[finite] - ref64[finite]).max()
    bound = REDUCTION_ERROR_FACTOR * ref_err + 4 * eps * scale
    assert err <= bound, f"max error {err:.3g} > bound {bound:.3g} (NumPy's own error {ref_err:.3g})"


@pytest.fixture
def threads():
    """Set the thread count for one test and restore it afterwards."""
    before = fusednn.get_num_threads()
    yield fusednn.set_num_threads
    fusednn.set_num_threads(before)
