"""Functional ops on NumPy arrays (CuPy once the CUDA module lands): each has a NumPy twin
of the same name in :mod:`fusednn.reference`."""

from fusednn.ops.linear import linear, linear_backward

__all__ = ["linear", "linear_backward"]
