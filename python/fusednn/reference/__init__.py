"""Plain NumPy implementations of every op in :mod:`fusednn.ops`, with the same names and
signatures: the specification the kernels are tested against."""

from fusednn.reference.linear import linear, linear_backward

__all__ = ["linear", "linear_backward"]
