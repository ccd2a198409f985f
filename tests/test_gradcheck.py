"""fusednn.gradcheck: passes correct gradients (fusednn.ops.linear, a hand-written layer) and
catches wrong ones, naming the input or parameter."""

import re

import numpy as np
import pytest

from fusednn import ops
from fusednn.gradcheck import GradcheckError, gradcheck


def linear_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)


def relu_linear(x, w, b):
    return ops.linear(x, w, b, activation="relu")


def relu_linear_backward(dy, x, w, b):
    return ops.linear_backward(dy, x, w, relu_linear(x, w, b), activation="relu")


def test_linear_passes():
    assert gradcheck(ops.linear, linear_inputs(), backward=lambda dy, x, w, b: ops.linear_backward(dy, x, w))
    assert gradcheck(relu_linear, linear_inputs(1), backward=relu_linear_backward)


def test_inputs_are_not_modified():
    inputs = linear_inputs()
    before = [a.copy() for a in inputs]
    gradcheck(ops.linear, inputs, backward=lambda dy, x, w, b: ops.linear_backward(dy, x, w))
    for a, b in zip(inputs, before):
        np.testing.assert_array_equal(a, b)


WRONG_BACKWARDS = [
    ("inputs[2]", lambda dy, x, w, b: (dy @ w, dy.T @ x, 1.01 * dy.sum(axis=0))),  # 1% off
    ("inputs[1]", lambda dy, x, w, b: (dy @ w, (dy.T @ x)[::-1], dy.sum(axis=0))),  # rows swapped
    ("inputs[0]", lambda dy, x, w, b: (dy @ w + 1e-4, dy.T @ x, dy.sum(axis=0))),  # small offset
    ("inputs[0]", lambda dy, x, w, b: (np.full((5, 4), np.nan), dy.T @ x, dy.sum(axis=0))),  # NaN
    ("inputs[1]", lambda dy, x, w, b: (dy @ w, dy.T @ x[:, :3], dy.sum(axis=0))),  # wrong shape
]


@pytest.mark.parametrize("name, backward", WRONG_BACKWARDS)
def test_wrong_backward_raises(name, backward):
    with pytest.raises(GradcheckError, match=re.escape(f"gradient of {name}")):
        gradcheck(ops.linear, linear_inputs(), backward=backward)
    assert gradcheck(ops.linear, linear_inputs(), backward=backward, raise_exception=False) is False


def test_error_message_names_the_worst_entry():
    with pytest.raises(GradcheckError) as info:
        gradcheck(ops.linear, linear_inputs(),
                  backward=lambda dy, x, w, b: (dy @ w, dy.T @ x, dy.sum(axis=0) + np.array([0.0, 0.5, 1e-3])))
    message = str(info.value)
    assert isinstance(info.value, AssertionError)
    assert "2 of 3 entries" in message and "worst at index (1,)" in message
    assert "analytic" in message and "numeric" in message


def test_none_gradients_are_not_checked():
    assert gradcheck(ops.linear, linear_inputs(), backward=lambda dy, x, w, b: (dy @ w, None, None))


def test_wrong_number_of_gradients():
    with pytest.raises(GradcheckError, match="backward: expected 3 gradients"):
        gradcheck(ops.linear, linear_inputs(), backward=lambda dy, x, w, b: (dy @ w, dy.T @ x))


def test_float32_inputs_are_refused():
    x, w, b = linear_inputs()
    with pytest.raises(TypeError, match=r"inputs\[1\]: expected a float64 numpy.ndarray .* got float32"):
        gradcheck(ops.linear, (x, w.astype(np.float32), b), backward=lambda dy, x, w, b: (None, None, None))


def test_not_a_layer_without_backward():
    with pytest.raises(TypeError, match="backward: expected a function"):
        gradcheck(ops.linear, linear_inputs())


# ---- layers ----

class Affine:
    """y = tanh(x @ w.T + b) * scale, where scale is 2 in training and 1 otherwise; gradients
    accumulate (+=) into its buffers, so they are right only after zero_grad()."""

    def __init__(self, seed=0, bug=None):
        rng = np.random.default_rng(seed)
        self.w, self.b = rng.standard_normal((3, 4)), rng.standard_normal(3)
        self.dw, self.db = np.full_like(self.w, 7.0), np.full_like(self.b, 7.0)
        self.bug = bug
        self.trainings = []

    def forward(self, x, training=False):
        self.trainings.append(training)
        self.x, self.scale = x, 2.0 if training else 1.0
        self.t = np.tanh(x @ self.w.T + self.b)
        return self.scale * self.t

    def backward(self, dy):
        dz = dy * self.scale * (1 - self.t ** 2)
        self.dw += dz.T @ self.x * (1.01 if self.bug == "w" else 1.0)
        self.db += dz.sum(axis=0) + (1e-3 if self.bug == "b" else 0.0)
        return dz @ self.w * (-1.0 if self.bug == "x" else 1.0)

    def zero_grad(self):
        self.dw[...] = 0
        self.db[...] = 0

    def named_parameters(self):
        return [("w", self.w), ("b", self.b)]

    def named_gradients(self):
        return [("w", self.dw), ("b", self.db)]


def test_layer_passes_in_training_mode_after_zero_grad():
    layer = Affine()
    w, b = layer.w.copy(), layer.b.copy()
    assert gradcheck(layer, np.random.default_rng(1).standard_normal((6, 4)))
    assert set(layer.trainings) == {True}
    np.testing.assert_array_equal(layer.w, w)  # parameters restored after perturbation
    np.testing.assert_array_equal(layer.b, b)


@pytest.mark.parametrize("bug, name", [("w", "parameter 'w'"), ("b", "parameter 'b'"), ("x", r"inputs\[0\]")])
def test_layer_with_wrong_gradient_raises(bug, name):
    x = np.random.default_rng(2).standard_normal((6, 4))
    with pytest.raises(GradcheckError, match=f"gradient of {name}"):
        gradcheck(Affine(bug=bug), x)
    assert gradcheck(Affine(bug=bug), x, raise_exception=False) is False


class Square:
    """forward(x) without a training flag, no parameters."""

    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, dy):
        return 2 * self.x * dy


def test_layer_without_training_flag_or_parameters():
    assert gradcheck(Square(), np.random.default_rng(3).standard_normal((2, 3, 4)))


def test_layer_parameter_checks():
    layer = Affine()
    layer.w = layer.w.astype(np.float32)
    with pytest.raises(TypeError, match="parameter 'w': expected a float64"):
        gradcheck(layer, np.zeros((2, 4)))
    layer = Affine()
    layer.named_gradients = lambda: [("w", layer.dw)]
    with pytest.raises(GradcheckError, match="named_gradients\\(\\) has no entry 'b'"):
        gradcheck(layer, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="inputs: a layer takes one input array, got 2"):
        gradcheck(Affine(), (np.zeros((2, 4)), np.zeros((2, 4))))
