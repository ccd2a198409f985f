"""The package surface: version, threads, build information, loading without environment."""

import os
import subprocess
import sys

import pytest

import fusednn


def test_version_matches_metadata():
    from importlib.metadata import version
    assert fusednn.__version__ == version("fusednn")


def test_build_info_reports_the_build():
    info = fusednn.build_info()
    for key in ("version", "compiler", "isa_paths_compiled", "isa_path_selected", "openmp", "blas", "blas_core",
                "num_threads", "cuda"):
        assert key in info, key
    assert info["isa_path_selected"] in info["isa_paths_compiled"]
    assert "OpenBLAS" in info["blas"]
    assert info["cuda"] is False


def test_set_and_get_num_threads(threads):
    threads(1)
    assert fusednn.get_num_threads() == 1
    threads(3)
    assert fusednn.get_num_threads() == 3
    assert fusednn.build_info()["num_threads"] == 3


@pytest.mark.parametrize("bad", [0, -2])
def test_set_num_threads_rejects_non_positive(bad):
    with pytest.raises(ValueError, match=r"n: expected a thread count >= 1"):
        fusednn.set_num_threads(bad)


def test_imports_with_no_library_path_and_honours_omp_num_threads():
    env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}
    code = "import fusednn; print(fusednn.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_cupy_arrays_without_cuda_module_get_a_clear_error():
    class FakeCupyArray:  # what fusednn sees of a CuPy array: its module and the CUDA interface
        __module__ = "cupy._core.core"
        __cuda_array_interface__ = {}

    import numpy as np
    with pytest.raises(TypeError, match="CuPy arrays need fusednn's CUDA module.*FUSEDNN_CUDA=ON"):
        fusednn.ops.linear(FakeCupyArray(), FakeCupyArray())
    with pytest.raises(TypeError, match=r"arrays must all be NumPy or all be CuPy, got a mix: x is numpy, w is cupy"):
        fusednn.ops.linear(np.ones((2, 2), np.float32), FakeCupyArray())
    a = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match=r"got a mix: dy is numpy, x is numpy, w is numpy, out\[1\] is cupy"):
        fusednn.ops.linear_backward(a, a, a, out=(None, FakeCupyArray(), None))
