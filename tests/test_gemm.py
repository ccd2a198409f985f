"""The GEMM kernels behind linear: the switch between them and the AVX-512 kernel's tiling
independence. Their numerics against the reference are in test_linear.py, which runs every
test with each kernel."""

import numpy as np
import pytest

import fusednn
from fusednn import _C, ops

HAS_AVX512_KERNEL = _C._gemm_kernel_available("fusednn-avx512")


@pytest.fixture
def kernel():
    before = _C._gemm_kernel()
    yield _C._set_gemm_kernel
    _C._set_gemm_kernel(before)


def test_the_size_rule_is_the_default():
    assert fusednn.build_info()["gemm_kernel"] == ("auto" if HAS_AVX512_KERNEL else "openblas")
    assert _C._gemm_kernel_available("openblas")
    assert _C._gemm_kernel_available("auto") == HAS_AVX512_KERNEL


@pytest.mark.skipif(not HAS_AVX512_KERNEL, reason="the CPU has no AVX-512F")
def test_auto_picks_by_the_number_of_multiply_adds(kernel):
    kernel("auto")
    assert _C._gemm_kernel_for(128, 512, 784) == "fusednn-avx512"  # the MLP's products
    assert _C._gemm_kernel_for(1024, 1024, 1024) == "fusednn-avx512"  # 2^30
    assert _C._gemm_kernel_for(2048, 1024, 1024) == "openblas"  # 2^31: the rule's bound
    assert _C._gemm_kernel_for(1024, 1024, 4096) == "openblas"  # a large batch's weight gradient
    assert _C._gemm_kernel_for(0, 10, 10) == "none"
    kernel("openblas")
    assert _C._gemm_kernel_for(128, 512, 784) == "openblas"
    kernel("fusednn-avx512")
    assert _C._gemm_kernel_for(4096, 4096, 4096) == "fusednn-avx512"


@pytest.mark.skipif(not HAS_AVX512_KERNEL, reason="the CPU has no AVX-512F")
def test_auto_gives_each_kernels_bits(kernel):
    """Under "auto" a product is computed by exactly the kernel the rule names."""
    rng = np.random.default_rng(1)
    for m, n, k in [(64, 96, 80), (2048, 1024, 1024)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((n, k)).astype(np.float32)
        results = {}
        for name in ("auto", "fusednn-avx512", "openblas"):
            kernel(name)
            results[name] = ops.linear(a, b)
        kernel("auto")
        chosen = _C._gemm_kernel_for(m, n, k)
        np.testing.assert_array_equal(results["auto"], results[chosen])


def test_switch_rejects_unknown_names(kernel):
    with pytest.raises(ValueError, match="kernel: expected 'openblas'"):
        kernel("mkl")


@pytest.mark.skipif(not HAS_AVX512_KERNEL, reason="the CPU has no AVX-512F")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(300, 1100, 45), (29, 64, 7), (150, 20, 70)])
def test_each_element_is_computed_the_same_in_any_tiling(kernel, dtype, shape):
    """The AVX-512 kernel computes every element as one chain of FMAs over k whatever tile,
    work unit or thread computes it, so a row alone, or a few columns alone, give the bits
    they get inside the large product: across the k-blocks of a long k, the narrow-panel
    kernel and the edge tiles."""
    kernel("fusednn-avx512")
    rng = np.random.default_rng(0)
    n, i, o = shape
    x = rng.standard_normal((n, i)).astype(dtype)
    w = rng.standard_normal((o, i)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    y = ops.linear(x, w, b, "relu")
    for r in (0, 13, n - 1):
        np.testing.assert_array_equal(ops.linear(x[r:r + 1], w, b, "relu")[0], y[r])
    np.testing.assert_array_equal(ops.linear(x, w[3:5], b[3:5], "relu"), y[:, 3:5])
    dy = rng.standard_normal((n, o)).astype(dtype)
    dx, dw, _ = ops.linear_backward(dy, x, w)
    np.testing.assert_array_equal(ops.linear_backward(dy[:5], x[:5], w)[0], dx[:5])
    np.testing.assert_array_equal(ops.linear_backward(dy[:, 2:3], x, w[2:3])[1][0], dw[2])
