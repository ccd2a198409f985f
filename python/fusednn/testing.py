"""Central finite differences, for checking a backward against its forward in float64."""

import numpy as np


def numerical_gradient(f, x, eps=1e-6):
    """d f(x) / d x for a scalar function f of the array x, by central differences.

    x is perturbed in place one element at a time and restored afterwards.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        f_plus = f()
        flat[i] = orig - eps
        f_minus = f()
        flat[i] = orig
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad
