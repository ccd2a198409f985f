"""fusednn.optim: the optimizer classes against the NumPy reference rules, parameter groups,
flat buffers vs separate arrays, fused clipping, schedules as lr, state_dict, bad input."""

import numpy as np
import pytest
from conftest import seed_of

from fusednn import FlatParameters, optim, reference

SHAPES = {"w1": (7, 5), "b1": (7,), "w2": (3, 7), "b2": (3,)}

# class name: (constructor kwargs, function to apply the reference rule to one array in place)
RULES = {
    "SGD": dict(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "SGD-nesterov": dict(lr=0.1, momentum=0.9, nesterov=True),
    "SGD-plain": dict(lr=0.1),
    "Adagrad": dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
    "RMSprop": dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01),
    "RMSprop-plain": dict(lr=0.01),
    "Adadelta": dict(lr=1.0, weight_decay=0.01),
    "Adam": dict(lr=0.01, weight_decay=0.01, amsgrad=True),
    "AdamW": dict(lr=0.01),
    "NAdam": dict(lr=0.01, weight_decay=0.01),
}


def make_optimizer(rule, params, **extra):
    cls = getattr(optim, rule.split("-")[0])
    return cls(params, **RULES[rule], **extra)


class ReferenceOptimizer:
    """The same rule driven through fusednn.reference on one array per parameter."""

    def __init__(self, rule, params):
        self.rule, self.kw, self.params, self.step_no, self.mu = rule.split("-")[0], RULES[rule], params, 0, 1.0
        z = lambda: [np.zeros_like(p) for p in params]  # noqa: E731
        self.s0, self.s1, self.s2 = z(), z(), z()
        if self.rule == "Adagrad":
            self.s0 = [np.full_like(p, self.kw["initial_accumulator_value"]) for p in params]

    def step(self, grads, scale=1.0):
        self.step_no += 1
        kw, P, G = dict(self.kw), self.params, grads
        if self.rule == "SGD":
            mom = kw.get("momentum", 0.0)
            reference.sgd_step(P, G, self.s0 if mom else None, first_step=self.step_no == 1, grad_scale=scale, **kw)
        elif self.rule == "Adagrad":
            kw.pop("initial_accumulator_value")
            reference.adagrad_step(P, G, self.s0, step=self.step_no, grad_scale=scale, **kw)
        elif self.rule == "RMSprop":
            reference.rmsprop_step(P, G, self.s0, self.s1 if kw.get("momentum") else None,
                                   self.s2 if kw.get("centered") else None, grad_scale=scale, **kw)
        elif self.rule == "Adadelta":
            reference.adadelta_step(P, G, self.s0, self.s1, grad_scale=scale, **kw)
        elif self.rule in ("Adam", "AdamW"):
            if self.rule == "AdamW":
                kw.update(weight_decay=1e-2, decoupled_weight_decay=True)
            reference.adam_step(P, G, self.s0, self.s1, self.s2 if kw.get("amsgrad") else None,
                                step=self.step_no, grad_scale=scale, **kw)
        else:
            self.mu = reference.nadam_step(P, G, self.s0, self.s1, step=self.step_no, mu_product=self.mu,
                                           grad_scale=scale, **kw)


def flat_and_reference(rule, dtype, seed):
    rng = np.random.default_rng(seed)
    fp = FlatParameters(SHAPES, dtype)
    fp.data[...] = rng.standard_normal(fp.data.size)
    ref_params = [fp[n].copy() for n in fp]
    return fp, ref_params, rng


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trajectory_matches_reference(rule, dtype):
    fp, ref_params, rng = flat_and_reference(rule, dtype, seed_of("trajectory", rule))
    opt, ref = make_optimizer(rule, fp), ReferenceOptimizer(rule, ref_params)
    for _ in range(100):
        fp.grad[...] = rng.standard_normal(fp.grad.size)
        opt.step()
        ref.step([fp.grad_of(n).copy() for n in fp])
    # Relative to each array's largest value: a parameter passing near 0 after 100 float32
    # steps is not held to a tolerance relative to itself.
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for n, r in zip(fp, ref_params):
        np.testing.assert_allclose(fp[n], r, rtol=rtol, atol=rtol * np.abs(r).max(), err_msg=n)


@pytest.mark.parametrize("rule", list(RULES))
def test_separate_arrays_equal_flat_buffer(rule):
    fp, _, rng = flat_and_reference(rule, np.float32, seed_of("layouts", rule))
    arrays = [fp[n].copy() for n in fp]
    opt_flat, opt_list = make_optimizer(rule, fp), make_optimizer(rule, arrays)
    for _ in range(20):
        fp.grad[...] = rng.standard_normal(fp.grad.size)
        opt_flat.step()
        opt_list.step([fp.grad_of(n).copy() for n in fp])
    for n, a in zip(fp, arrays):
        np.testing.assert_array_equal(fp[n], a)


def test_a_flat_group_is_one_span():
    fp = FlatParameters(SHAPES)
    opt = optim.Adam(fp)
    assert len(opt._groups_state[0]["spans"]) == 1
    grouped = optim.Adam([{"params": fp.group(["w1", "b1"])}, {"params": fp.group(["w2", "b2"])}])
    assert [len(st["spans"]) for st in grouped._groups_state] == [1, 1]
    # Not adjacent in the buffer: two spans, still one call.
    skipping = optim.Adam(fp.group(["w1", "w2"]))
    assert len(skipping._groups_state[0]["spans"]) == 2


def test_parameter_groups_use_their_own_hyperparameters():
    fp = FlatParameters(SHAPES)
    rng = np.random.default_rng(1)
    fp.data[...] = rng.standard_normal(fp.data.size)
    before = fp.data.copy()
    opt = optim.SGD([{"params": fp.group(["w1", "w2"]), "weight_decay": 0.5}, {"params": fp.group(["b1", "b2"])}],
                    lr=0.1)
    fp.grad[...] = 0.0
    opt.step()
    # Zero gradient: only the decayed group moves, by lr * wd * p.
    np.testing.assert_allclose(fp["w1"], before[:35].reshape(7, 5) * (1 - 0.05), rtol=1e-6)
    np.testing.assert_array_equal(fp["b1"], before[35:42])


def test_lr_is_mutable_and_may_be_a_schedule():
    fp = FlatParameters({"p": (4,)})
    fp.grad[...] = 1.0
    opt = optim.SGD(fp, lr=0.5)
    opt.step()
    np.testing.assert_allclose(fp["p"], -0.5)
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    np.testing.assert_allclose(fp["p"], -0.75)
    fp2 = FlatParameters({"p": (4,)})
    fp2.grad[...] = 1.0
    opt2 = optim.SGD(fp2, lr=lambda step: 0.1 * (step + 1))  # steps 0, 1, 2 use 0.1, 0.2, 0.3
    for _ in range(3):
        opt2.step()
    np.testing.assert_allclose(fp2["p"], -0.6, rtol=1e-6)


@pytest.mark.parametrize("rule", ["SGD", "Adam", "AdamW", "RMSprop", "NAdam"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_fused_clipping_equals_clip_then_step(rule, max_norm):
    fp, _, rng = flat_and_reference(rule, np.float64, seed_of("clip", rule))
    twin = FlatParameters(SHAPES, np.float64)
    twin.data[...] = fp.data
    fused, plain = make_optimizer(rule, fp, max_grad_norm=max_norm), make_optimizer(rule, twin)
    for _ in range(10):
        fp.grad[...] = rng.standard_normal(fp.grad.size)
        twin.grad[...] = fp.grad
        grads_before = fp.grad.copy()
        fused.step()
        np.testing.assert_array_equal(fp.grad, grads_before)  # the fused path does not write the gradients
        norm = optim.clip_grad_norm([twin.grad], max_norm)
        assert fused.last_grad_norm == pytest.approx(norm, rel=1e-12)
        plain.step()
    np.testing.assert_allclose(fp.data, twin.data, rtol=1e-10, atol=1e-12)


def test_clip_grad_norm_and_value():
    rng = np.random.default_rng(2)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    total = np.sqrt(sum((g**2).sum() for g in grads))
    copies = [g.copy() for g in grads]
    norm = optim.clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(total, rel=1e-12)
    for g, c in zip(grads, copies):
        np.testing.assert_allclose(g, c * (1.0 / (total + 1e-6)), rtol=1e-12)
    assert optim.clip_grad_norm(grads, 100.0) == pytest.approx(1.0, rel=1e-5)  # below max_norm: unchanged
    inf_norm = optim.clip_grad_norm(grads, 10.0, norm_type=np.inf)
    assert inf_norm == pytest.approx(max(np.abs(g).max() for g in grads))
    optim.clip_grad_value(grads, 0.01)
    assert max(np.abs(g).max() for g in grads) <= 0.01
    bad = [np.array([1.0, np.nan])]
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm(bad, 1.0, error_if_nonfinite=True)
    assert np.isnan(bad[0][0]) == False  # noqa: E712  (left unchanged)


@pytest.mark.parametrize("rule", list(RULES))
def test_state_dict_round_trip_continues_exactly(rule):
    fp, _, rng = flat_and_reference(rule, np.float32, seed_of("state", rule))
    grads = [rng.standard_normal(fp.grad.size).astype(np.float32) for _ in range(10)]
    opt = make_optimizer(rule, fp)
    for g in grads[:5]:
        fp.grad[...] = g
        opt.step()
    saved_params, saved_state = fp.data.copy(), opt.state_dict()
    for g in grads[5:]:
        fp.grad[...] = g
        opt.step()
    expected = fp.data.copy()

    fp2 = FlatParameters(SHAPES, np.float32)
    fp2.data[...] = saved_params
    opt2 = make_optimizer(rule, fp2)
    opt2.load_state_dict(saved_state)
    for g in grads[5:]:
        fp2.grad[...] = g
        opt2.step()
    np.testing.assert_array_equal(fp2.data, expected)
    # Plain arrays and numbers only (no pickle needed to store it).
    for entry in saved_state["state"].values():
        assert all(isinstance(v, (np.ndarray, int, float)) for v in entry.values())


def test_identical_results_for_one_and_two_threads(threads):
    results = []
    for n in (1, 2):
        threads(n)
        fp = FlatParameters({"p": (3_000_001,)})
        rng = np.random.default_rng(3)
        fp.data[...] = rng.standard_normal(fp.data.size)
        opt = optim.Adam(fp, lr=1e-2, max_grad_norm=1.0)
        for _ in range(3):
            fp.grad[...] = rng.standard_normal(fp.grad.size)
            opt.step()
        results.append((fp.data.copy(), opt.last_grad_norm))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_zero_grad_clears_the_flat_gradient_buffer():
    fp = FlatParameters(SHAPES)
    fp.grad[...] = 3.0
    optim.SGD(fp, lr=0.1).zero_grad()
    assert not fp.grad.any()


@pytest.mark.parametrize("make, exc, match", [
    (lambda p: optim.SGD(p, lr=-1), ValueError, r"lr: expected a value >= 0, got -1"),
    (lambda p: optim.SGD(p, lr=0.1, momentum=-0.5), ValueError, r"momentum: expected a value >= 0"),
    (lambda p: optim.SGD(p, lr=0.1, nesterov=True), ValueError, r"nesterov: requires momentum > 0"),
    (lambda p: optim.Adam(p, betas=(1.0, 0.999)), ValueError, r"betas\[0\]: expected a value in \[0, 1\), got 1.0"),
    (lambda p: optim.Adam(p, betas=(0.9,)), ValueError, r"betas: expected a pair"),
    (lambda p: optim.Adam(p, eps=0), ValueError, r"eps: expected a value > 0, got 0"),
    (lambda p: optim.RMSprop(p, alpha=1.5), ValueError, r"alpha: expected a value in \[0, 1\]"),
    (lambda p: optim.Adadelta(p, rho=-0.1), ValueError, r"rho: expected a value in \[0, 1\]"),
    (lambda p: optim.Adagrad(p, lr_decay=-1), ValueError, r"lr_decay: expected a value >= 0"),
    (lambda p: optim.NAdam(p, momentum_decay=-1), ValueError, r"momentum_decay: expected a value >= 0"),
    (lambda p: optim.Adam(p, max_grad_norm=0), ValueError, r"max_grad_norm: expected a value > 0"),
    (lambda p: optim.Adam([{"params": [p["w1"]], "bogus": 1}]), ValueError, r"unknown hyperparameters \['bogus'\]"),
    (lambda p: optim.Adam([]), ValueError, r"params: expected at least one parameter"),
    (lambda p: optim.Adam([p["w1"], p["w1"]]), ValueError, r"params\[1\]: must not share memory with params\[0\]"),
    (lambda p: optim.Adam([p["w1"].T]), ValueError, r"params: expected C-contiguous"),
    (lambda p: optim.Adam([p["w1"].astype(np.int64)]), TypeError, r"float32 or float64"),
    (lambda p: optim.Adam([p["w1"], np.zeros(3)]), TypeError, r"one dtype"),
])
def test_bad_construction(make, exc, match):
    with pytest.raises(exc, match=match):
        make(FlatParameters(SHAPES))


def test_bad_step_arguments():
    w = np.zeros((3, 4), np.float32)
    opt = optim.Adam([w])
    with pytest.raises(ValueError, match=r"grads: required"):
        opt.step()
    with pytest.raises(ValueError, match=r"grads: expected 1 arrays"):
        opt.step([w, w])
    with pytest.raises(ValueError, match=r"grads\[0\]: expected a float32 array of shape \(3, 4\)"):
        opt.step([np.zeros((4, 3), np.float32)])
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"lr: expected a value >= 0"):
        opt.step([np.zeros((3, 4), np.float32)])


def test_load_state_dict_refuses_a_mismatch():
    fp = FlatParameters(SHAPES)
    opt = optim.Adam(fp)
    fp.grad[...] = 1.0
    opt.step()
    other = optim.Adam([np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match=r"group 0 has 4 parameters, expected 1"):
        other.load_state_dict(opt.state_dict())


def test_scale_lr():
    assert optim.scale_lr(0.1, 512, 256) == pytest.approx(0.2)
    assert optim.scale_lr(0.1, 1024, 256, rule="sqrt") == pytest.approx(0.2)
