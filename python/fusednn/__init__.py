"""fusednn: fused C++/CUDA kernels for training deep networks from NumPy and CuPy.

The functional ops live in :mod:`fusednn.ops`, each with a plain NumPy twin in
:mod:`fusednn.reference`; optimizers in :mod:`fusednn.optim`; the training library in
:mod:`fusednn.nn`, :mod:`fusednn.train`, :mod:`fusednn.checkpoint` and :mod:`fusednn.data`.
"""

__version__ = "0.1.0"

from fusednn import _C
from fusednn._C import get_num_threads, output_pool_info, set_num_threads, set_output_pool_limit


def build_info() -> dict:
    """How this fusednn was built and what it runs on.

    Keys: ``version``, ``compiler``, ``isa_paths_compiled`` (code paths of our vectorized
    loops), ``isa_path_selected`` (the one this CPU runs), ``avx512_paths`` (whether the
    hand-written AVX-512 kernels run: the CPU has AVX-512F and the environment variable
    ``FUSEDNN_DISABLE_AVX512`` was unset or ``0`` at import), ``avx2_paths`` (whether the
    hand-written AVX2 kernels run instead: not where the AVX-512 ones do, the CPU has AVX2 and
    ``FUSEDNN_DISABLE_AVX2`` was unset or ``0`` at import), ``threads`` (the thread runtime:
    fusednn's own pool), ``blas``, ``blas_core`` (the BLAS kernel set chosen for this CPU), ``gemm_kernel``
    (the GEMMs' kernel choice: ``"auto"`` on CPUs with AVX-512F or AVX2 + FMA, fusednn's own
    kernel below 2^31, respectively 2^30, multiply-adds and OpenBLAS above, else
    ``"openblas"``), ``num_threads``,
    ``cuda`` (whether the CUDA module ``fusednn._C_cuda`` is built and loads) and, when it is,
    ``cuda_build`` (its CUDA runtime and cuBLASLt versions and GPU architectures).
    """
    info = {"version": __version__}
    info.update(_C._build_info())
    info["num_threads"] = get_num_threads()
    try:
        from fusednn import _C_cuda
    except ImportError:
        info["cuda"] = False
    else:
        info["cuda"] = True
        info["cuda_build"] = _C_cuda._build_info()
    return info


from fusednn.gradcheck import gradcheck  # noqa: E402 (NumPy only; also shadows the submodule's name)
from fusednn.params import FlatParameters  # noqa: E402


def load(path):
    """The model that ``model.save(path)`` wrote (architecture, weights, buffers and the fitted
    preprocessing, if any, as ``model.preprocessing``); see :mod:`fusednn.serialize`."""
    from fusednn.serialize import load as _load
    return _load(path)


# The submodules load on first use (PEP 562), so that `import fusednn` (and `import fusednn.ops`)
# does not load the training library; `fusednn.train` etc. work as attributes all the same.
_LAZY = ("ops", "optim", "reference", "nn", "data", "train", "checkpoint", "regularizers", "diagnostics", "serialize",
         "hpo")


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module = importlib.import_module(f"fusednn.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'fusednn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["__version__", "build_info", "get_num_threads", "set_num_threads", "set_output_pool_limit",
           "output_pool_info", "ops", "optim", "reference",
           "FlatParameters", "nn", "data", "train", "checkpoint", "regularizers", "diagnostics", "serialize",
           "hpo", "gradcheck", "load"]
