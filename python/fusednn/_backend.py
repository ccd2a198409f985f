"""Pick the compiled module for a call's arrays: NumPy arrays go to ``fusednn._C``, CuPy
arrays to ``fusednn._C_cuda`` (the same functions over CUDA kernels, on CuPy's current
stream). Anything else, or a mix, is a TypeError that names the argument."""

import numpy as np

from fusednn import _C


def _is_cupy(a) -> bool:
    return type(a).__module__.startswith("cupy") and hasattr(a, "__cuda_array_interface__")


_NUMPY_OR_NONE = {np.ndarray, type(None)}


def _all_numpy(value) -> bool:
    """True for None, a NumPy array, or a list/tuple of them (a fast check, no names)."""
    if value is None or type(value) is np.ndarray:
        return True
    return type(value) in (tuple, list) and set(map(type, value)) <= _NUMPY_OR_NONE


def backend_for(**arrays):
    """The module that runs an op on these arrays (None values are ignored; a tuple, such as
    ``out=(dx, dw, db)``, is checked entry by entry as ``out[0]``, ``out[1]``, ...)."""
    for a in arrays.values():  # the common case, all NumPy, without building names
        if a is not None and type(a) is not np.ndarray and not _all_numpy(a):
            break
    else:
        return _C
    kinds = {}
    pending = list(arrays.items())
    while pending:
        name, a = pending.pop(0)
        if a is None:
            continue
        if isinstance(a, tuple):
            pending[:0] = [(f"{name}[{i}]", v) for i, v in enumerate(a)]
        elif isinstance(a, np.ndarray):
            kinds[name] = "numpy"
        elif _is_cupy(a):
            kinds[name] = "cupy"
        else:
            raise TypeError(f"{name}: expected a numpy.ndarray or cupy.ndarray, got {type(a).__module__}."
                            f"{type(a).__qualname__}")
    if len(set(kinds.values())) > 1:
        listing = ", ".join(f"{n} is {k}" for n, k in kinds.items())
        raise TypeError(f"arrays must all be NumPy or all be CuPy, got a mix: {listing}")
    if "cupy" in kinds.values():
        return cuda_module()
    return _C


def cuda_module():
    """``fusednn._C_cuda``, or a TypeError saying how to build it."""
    try:
        from fusednn import _C_cuda
    except ImportError as e:
        raise TypeError("CuPy arrays need fusednn's CUDA module, which this build does not have "
                        f"({e}); build it with: pip install nvidia-cublas && pip install --no-build-isolation . "
                        "-C cmake.define.FUSEDNN_CUDA=ON (see the README)") from None
    return _C_cuda


def array_module(a):
    """numpy, or cupy for a CuPy array (for code that works on either)."""
    if _is_cupy(a):
        import cupy
        return cupy
    return np


def device_module(device):
    """The array module of a device name: "cpu" -> numpy, "cuda" -> cupy."""
    if device == "cpu":
        return np
    if device != "cuda":
        raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
    try:
        import cupy
    except ImportError:
        raise ValueError("device: 'cuda' needs CuPy (pip install cupy-cuda13x) and fusednn's CUDA module "
                         "(FUSEDNN_CUDA=ON pip install '.[cuda]')") from None
    cuda_module()  # a clear error if fusednn was built without CUDA
    return cupy


def device_of(a):
    return "cuda" if _is_cupy(a) else "cpu"


def address_of(a):
    """The address of an array's first element (NumPy or CuPy)."""
    return a.data.ptr if _is_cupy(a) else a.__array_interface__["data"][0]


def is_array(a):
    """A NumPy or CuPy array."""
    return isinstance(a, np.ndarray) or _is_cupy(a)


def to_host(a):
    """A NumPy array with a's values (a itself when it is one)."""
    return a.get() if _is_cupy(a) else a


def host_copy(a):
    """A new NumPy array with a's values (one copy, from either device)."""
    return a.get() if _is_cupy(a) else np.array(a)
