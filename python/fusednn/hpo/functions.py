"""Standard test functions of global optimization, with their search spaces, for testing and
benchmarking samplers (and as objectives that pickle, for the process and Ray executors)."""

import math

import numpy as np

from fusednn.hpo.space import Uniform

__all__ = ["branin", "BRANIN_SPACE", "BRANIN_MINIMUM", "hartmann6", "HARTMANN6_SPACE", "HARTMANN6_MINIMUM"]

BRANIN_SPACE = {"x1": Uniform(-5.0, 10.0), "x2": Uniform(0.0, 15.0)}
BRANIN_MINIMUM = 0.397887357729739


def branin(config, trial=None):
    """The Branin-Hoo function on [-5, 10] x [0, 15]; its minimum 0.397887 is at
    (-pi, 12.275), (pi, 2.275) and (9.42478, 2.475)."""
    x1, x2 = config["x1"], config["x2"]
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


HARTMANN6_SPACE = {f"x{i}": Uniform(0.0, 1.0) for i in range(1, 7)}
HARTMANN6_MINIMUM = -3.322368011391339

_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
               [17, 8, 0.05, 10, 0.1, 14]])
_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                      [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def hartmann6(config, trial=None):
    """The 6-dimensional Hartmann function on [0, 1]^6; its minimum is -3.32237."""
    x = np.array([config[f"x{i}"] for i in range(1, 7)])
    return float(-(_ALPHA * np.exp(-(_A * (x - _P) ** 2).sum(axis=1))).sum())
