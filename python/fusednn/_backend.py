"""Pick the compiled module for a call's arrays: NumPy arrays go to ``fusednn._C``; CuPy
arrays will go to ``fusednn._C_cuda`` (not built yet). Anything else, or a mix, is a
TypeError that names the argument."""

import numpy as np

from fusednn import _C


def _is_cupy(a) -> bool:
    return type(a).__module__.startswith("cupy") and hasattr(a, "__cuda_array_interface__")


def backend_for(**arrays):
    """The module that runs an op on these arrays (None values are ignored)."""
    kinds = {}
    for name, a in arrays.items():
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            kinds[name] = "numpy"
        elif _is_cupy(a):
            kinds[name] = "cupy"
        elif isinstance(a, (tuple, list)) and name == "out":
            continue  # a tuple of output arrays; the kernel checks each one
        else:
            raise TypeError(f"{name}: expected a numpy.ndarray or cupy.ndarray, got {type(a).__module__}."
                            f"{type(a).__qualname__}")
    if len(set(kinds.values())) > 1:
        listing = ", ".join(f"{n} is {k}" for n, k in kinds.items())
        raise TypeError(f"arrays must all be NumPy or all be CuPy, got a mix: {listing}")
    if "cupy" in kinds.values():
        raise TypeError("CuPy arrays need fusednn's CUDA module, which this build does not have")
    return _C
