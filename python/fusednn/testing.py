"""Central finite differences, for checking a backward against its forward in float64."""

import numpy as np

__all__ = ["numerical_gradient"]


def numerical_gradient(f, x, eps=1e-6):
    """d f(x) / d x for a scalar function f of the array x, by central differences.

    x (NumPy or CuPy) is perturbed in place one element at a time and restored afterwards.
    """
    grad = np.empty(x.shape)
    for idx in np.ndindex(x.shape):  # any strides: the perturbation reaches the caller's array
        orig = x[idx].copy()  # CuPy's x[idx] is a 0-d view, which the perturbation would change
        x[idx] = orig + eps
        f_plus = f()
        x[idx] = orig - eps
        f_minus = f()
        x[idx] = orig
        grad[idx] = (f_plus - f_minus) / (2.0 * eps)
    return grad
