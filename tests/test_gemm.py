"""The GEMM kernels behind linear: the switch between them and the own kernels' tiling
independence. Their numerics against the reference are in test_linear.py, which runs every
test with each kernel."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fusednn
from fusednn import _C, ops

HAS_AVX512_KERNEL = _C._gemm_kernel_available("fusednn-avx512")
HAS_AVX2_KERNEL = _C._gemm_kernel_available("fusednn-avx2")
# fusednn's own kernel on this CPU (at most one of the two runs), or None.
OWN_KERNEL = "fusednn-avx512" if HAS_AVX512_KERNEL else "fusednn-avx2" if HAS_AVX2_KERNEL else None
needs_own_kernel = pytest.mark.skipif(OWN_KERNEL is None, reason="the CPU has neither AVX-512F nor AVX2 with FMA")


@pytest.fixture
def kernel():
    before = _C._gemm_kernel()
    yield _C._set_gemm_kernel
    _C._set_gemm_kernel(before)


def test_the_size_rule_is_the_default():
    assert fusednn.build_info()["gemm_kernel"] == ("auto" if OWN_KERNEL else "openblas")
    assert _C._gemm_kernel_available("openblas")
    assert _C._gemm_kernel_available("auto") == (OWN_KERNEL is not None)
    assert not (HAS_AVX512_KERNEL and HAS_AVX2_KERNEL)  # one own kernel per CPU


@needs_own_kernel
def test_auto_picks_by_the_number_of_multiply_adds(kernel):
    kernel("auto")
    bound = 2**31 if OWN_KERNEL == "fusednn-avx512" else 2**30  # the own kernel's, in multiply-adds
    assert _C._gemm_kernel_for(128, 512, 784) == OWN_KERNEL  # the MLP's products
    assert _C._gemm_kernel_for(1, 1, 1) == OWN_KERNEL
    assert _C._gemm_kernel_for(bound // (512 * 512) - 1, 512, 512) == OWN_KERNEL  # just below
    assert _C._gemm_kernel_for(bound // (512 * 512), 512, 512) == "openblas"  # the bound
    assert _C._gemm_kernel_for(2048, 1024, 1024) == "openblas"  # 2^31
    assert _C._gemm_kernel_for(1024, 1024, 4096) == "openblas"  # a large batch's weight gradient
    assert _C._gemm_kernel_for(0, 10, 10) == "none"
    assert _C._gemm_kernel_for(5, 0, 3) == "none"
    kernel("openblas")
    assert _C._gemm_kernel_for(128, 512, 784) == "openblas"
    kernel(OWN_KERNEL)
    assert _C._gemm_kernel_for(4096, 4096, 4096) == OWN_KERNEL


@needs_own_kernel
def test_auto_gives_each_kernels_bits(kernel):
    """Under "auto" a product is computed by exactly the kernel the rule names."""
    rng = np.random.default_rng(1)
    for m, n, k in [(64, 96, 80), (2048, 1024, 1024)]:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((n, k)).astype(np.float32)
        results = {}
        for name in ("auto", OWN_KERNEL, "openblas"):
            kernel(name)
            results[name] = ops.linear(a, b)
        kernel("auto")
        chosen = _C._gemm_kernel_for(m, n, k)
        np.testing.assert_array_equal(results["auto"], results[chosen])


def test_switch_rejects_unknown_names(kernel):
    with pytest.raises(ValueError, match="kernel: expected 'openblas'"):
        kernel("mkl")


@needs_own_kernel
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(300, 1100, 45), (29, 64, 7), (150, 20, 70), (20, 600, 9)])
def test_each_element_is_computed_the_same_in_any_tiling(kernel, dtype, shape):
    """The own kernels compute every element the same way (per k-block one chain of FMAs, the
    blocks' sums added in order) whatever tile, work unit or thread computes it, so a row
    alone, or a few columns alone, give the bits they get inside the large product: across the
    k-blocks of a long k (at most 512 each), the narrow-panel kernel and the edge tiles."""
    kernel(OWN_KERNEL)
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


def _cpu_has(*features):
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return False
    return all(f in flags for f in features)


@pytest.mark.skipif(not (HAS_AVX512_KERNEL and _cpu_has("avx2", "fma")),
                    reason="needs a CPU that runs the AVX-512 kernel and could run the AVX2 one")
def test_the_avx2_kernel_gives_the_avx512_kernels_bits(kernel, tmp_path):
    """Both own kernels cut k into the same k-blocks and sum each element the same way: the
    AVX2 kernel (in a subprocess with the AVX-512 paths off) must give the AVX-512 kernel's
    bits, with bias and ReLU, over several k-blocks, edge tiles and transposes."""
    kernel("fusednn-avx512")
    rng = np.random.default_rng(5)
    cases = []
    for m, n, k in [(130, 70, 700), (7, 33, 5), (64, 512, 784)]:
        for dtype in (np.float32, np.float64):
            x = rng.standard_normal((m, k)).astype(dtype)
            w = rng.standard_normal((n, k)).astype(dtype)
            b = rng.standard_normal(n).astype(dtype)
            dy = rng.standard_normal((m, n)).astype(dtype)
            cases.append((x, w, b, dy))
    arrays = {f"{name}{i}": v for i, case in enumerate(cases) for name, v in zip("xwbd", case)}
    np.savez(tmp_path / "in.npz", **arrays)
    code = (
        "import numpy as np, sys\n"
        "from fusednn import _C, ops\n"
        "assert _C._gemm_kernel_for(64, 512, 784) == 'fusednn-avx2', _C._gemm_kernel_for(64, 512, 784)\n"
        f"a = np.load(r'{tmp_path / 'in.npz'}')\n"
        "out = {}\n"
        f"for i in range({len(cases)}):\n"
        "    x, w, b, d = (a[f'{c}{i}'] for c in 'xwbd')\n"
        "    out[f'y{i}'] = ops.linear(x, w, b, 'relu')\n"
        "    out[f'dx{i}'], out[f'dw{i}'], _ = ops.linear_backward(d, x, w)\n"
        f"np.savez(r'{tmp_path / 'out.npz'}', **out)\n")
    r = subprocess.run([sys.executable, "-c", code], env={**os.environ, "FUSEDNN_DISABLE_AVX512": "1", "FUSEDNN_DISABLE_AVX2": "0"},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    avx2 = np.load(tmp_path / "out.npz")
    for i, (x, w, b, dy) in enumerate(cases):
        np.testing.assert_array_equal(avx2[f"y{i}"], ops.linear(x, w, b, "relu"))
        dx, dw, _ = ops.linear_backward(dy, x, w)
        np.testing.assert_array_equal(avx2[f"dx{i}"], dx)
        np.testing.assert_array_equal(avx2[f"dw{i}"], dw)
