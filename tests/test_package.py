"""The package surface: version, threads, build information, loading without environment."""

import os
import subprocess
import sys

import importlib

import numpy as np
import pytest

import fusednn
from conftest import requires_cuda


def test_version_matches_metadata():
    from importlib.metadata import version
    assert fusednn.__version__ == version("fusednn")


def test_build_info_reports_the_build():
    info = fusednn.build_info()
    for key in ("version", "compiler", "isa_paths_compiled", "isa_path_selected", "threads", "blas", "blas_core",
                "num_threads", "cuda"):
        assert key in info, key
    assert info["isa_path_selected"] in info["isa_paths_compiled"]
    assert "OpenBLAS" in info["blas"]
    try:  # True exactly where the CUDA module imports (False on this CPU-only build)
        importlib.import_module("fusednn._C_cuda")
        has_cuda_module = True
    except ImportError:
        has_cuda_module = False
    assert info["cuda"] is has_cuda_module and ("cuda_build" in info) is has_cuda_module


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
    # 3: not the default anywhere it matters (the CPUs the process may run on)
    env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "3"}
    code = "import fusednn; print(fusednn.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"


def test_cupy_arrays_without_cuda_module_get_a_clear_error():
    class FakeCupyArray:  # what fusednn sees of a CuPy array: its module and the CUDA interface
        __module__ = "cupy._core.core"
        __cuda_array_interface__ = {}

    with pytest.raises(TypeError, match="CuPy arrays need fusednn's CUDA module.*FUSEDNN_CUDA=ON"):
        fusednn.ops.linear(FakeCupyArray(), FakeCupyArray())
    with pytest.raises(TypeError, match=r"arrays must all be NumPy or all be CuPy, got a mix: x is numpy, w is cupy"):
        fusednn.ops.linear(np.ones((2, 2), np.float32), FakeCupyArray())
    a = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match=r"got a mix: dy is numpy, x is numpy, w is numpy, out\[1\] is cupy"):
        fusednn.ops.linear_backward(a, a, a, out=(None, FakeCupyArray(), None))


@requires_cuda
def test_mixing_numpy_and_cupy_is_a_type_error():
    import cupy as cp
    with pytest.raises(TypeError, match="got a mix"):
        fusednn.ops.linear(cp.ones((2, 2), cp.float32), np.ones((2, 2), np.float32))


# ---- the CUDA module's GPU-only contract: the current device and CuPy's current stream

@requires_cuda
def test_arrays_on_another_device_are_refused():
    import cupy as cp
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs (an array on a device other than the current one)")
    with cp.cuda.Device(1):
        x = cp.ones((4, 4), cp.float32)
    with cp.cuda.Device(0):
        with pytest.raises(ValueError, match=r"x: expected an array on the current device 0, got one on device 1"):
            fusednn.ops.relu(x)


@requires_cuda
def test_kernels_launch_on_cupys_current_stream():
    """Captured into a CUDA graph on a non-blocking stream: a kernel that launched anywhere else
    would either fail the capture (work on the legacy stream during a capture is an error) or
    run at once; captured, the outputs stay untouched until the graph is launched."""
    import cupy as cp
    x = cp.asarray(np.linspace(-2, 2, 4096, dtype=np.float32))
    y = cp.full_like(x, 7.0)
    z = cp.full_like(x, 7.0)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        fusednn.ops.relu(x, out=y)
        fusednn.ops.dropout(x, 0.5, seed=3, out=z)
        graph = stream.end_capture()
    stream.synchronize()
    assert bool((y == 7.0).all()) and bool((z == 7.0).all())  # nothing ran outside the capture
    graph.launch(stream)
    stream.synchronize()
    np.testing.assert_array_equal(y.get(), fusednn.reference.relu(x.get()))
    np.testing.assert_array_equal(z.get(), fusednn.reference.dropout(x.get(), 0.5, seed=3))


@requires_cuda
def test_results_follow_work_queued_before_them_on_the_stream():
    """An op on a non-blocking stream sees the result of a long GEMM queued before it on that
    stream (on any other stream it would race with the GEMM)."""
    import cupy as cp
    rng = np.random.default_rng(0)
    a = cp.asarray(rng.standard_normal((2048, 2048), np.float32))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        product = a @ a
        y = fusednn.ops.relu(product)
    stream.synchronize()
    np.testing.assert_array_equal(y.get(), np.maximum(product.get(), 0))


# ---- layout: what an import loads, what is reachable, __all__ (issue 12 item 7)

TRAINING_LIBRARY = ("fusednn.train", "fusednn.data", "fusednn.checkpoint", "fusednn.nn", "fusednn.optim",
                    "fusednn.regularizers")


def _loaded_after(code):
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\n"
                          "print(' '.join(m for m in sys.modules if m.startswith('fusednn')))"],
                         capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("code", ["import fusednn.ops", "import fusednn", "import fusednn.reference",
                                  "from fusednn import ops, set_num_threads, FlatParameters"])
def test_importing_the_ops_does_not_load_the_training_library(code):
    loaded = _loaded_after(code)
    assert not loaded & set(TRAINING_LIBRARY), sorted(loaded)


def test_the_submodules_are_attributes_after_import_fusednn():
    loaded = _loaded_after("import fusednn\nassert fusednn.nn.losses.SoftmaxCrossEntropy\nassert fusednn.train.fit\n"
                           "assert fusednn.checkpoint.load and fusednn.data.batches and fusednn.optim.Adam\n"
                           "assert fusednn.regularizers.L2 and fusednn.reference.linear\n"
                           "assert callable(fusednn.gradcheck)")
    assert set(TRAINING_LIBRARY) <= loaded
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fusednn.nope  # noqa: B018


PUBLIC_MODULES = ["fusednn", "fusednn.ops", "fusednn.reference", "fusednn.nn", "fusednn.nn.layers", "fusednn.nn.init",
                  "fusednn.nn.losses", "fusednn.nn.module", "fusednn.optim", "fusednn.optim.schedules",
                  "fusednn.train", "fusednn.data", "fusednn.checkpoint", "fusednn.regularizers", "fusednn.params",
                  "fusednn.gradcheck", "fusednn.testing"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_modules_declare_all(name):
    module = importlib.import_module(name)
    assert isinstance(module.__all__, list) and len(set(module.__all__)) == len(module.__all__)
    for attr in module.__all__:
        assert getattr(module, attr) is not None, attr
    namespace = {}
    exec(f"from {name} import *", namespace)
    assert set(module.__all__) <= set(namespace)
    public = {k for k, v in vars(module).items() if not k.startswith("_") and getattr(v, "__module__", None) == name
              and callable(v)}
    assert public <= set(module.__all__), f"{name}: public but not in __all__: {sorted(public - set(module.__all__))}"


def test_fusednn_gradcheck_stays_the_function():
    import fusednn.gradcheck  # noqa: F401 (the submodule of the same name)
    assert callable(fusednn.gradcheck) and fusednn.gradcheck.__name__ == "gradcheck"
