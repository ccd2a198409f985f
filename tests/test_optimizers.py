"""fusednn.optim: the optimizer classes against the NumPy reference rules on every device,
parameter groups, flat buffers vs separate arrays, fused clipping, schedules as lr, state_dict
(and foreign state_dicts), hyperparameters checked once per step, bad input. The ops the classes
call: test_optim.py."""

import weakref

import numpy as np
import pytest
from conftest import assert_close, seed_of, to_device, to_numpy

from fusednn import _checks

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


def flat_and_reference(rule, dtype, seed, device="cpu"):
    """A FlatParameters on the device with random values, and NumPy copies for the reference."""
    rng = np.random.default_rng(seed)
    fp = FlatParameters(SHAPES, dtype, device=device)
    fp.data[...] = to_device(device, rng.standard_normal(fp.data.size).astype(dtype))
    ref_params = [to_numpy(fp[n]).copy() for n in fp]
    return fp, ref_params, rng


def set_grad(fp, rng, device):
    fp.grad[...] = to_device(device, rng.standard_normal(fp.grad.size).astype(fp.grad.dtype))


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trajectory_matches_reference(rule, dtype, device):
    fp, ref_params, rng = flat_and_reference(rule, dtype, seed_of("trajectory", rule), device)
    opt, ref = make_optimizer(rule, fp), ReferenceOptimizer(rule, ref_params)
    for _ in range(100):
        set_grad(fp, rng, device)
        opt.step()
        ref.step([to_numpy(fp.grad_of(n)).copy() for n in fp])
    for n, r in zip(fp, ref_params):
        assert_close(fp[n], r, err_msg=n)


@pytest.mark.parametrize("rule", list(RULES))
def test_separate_arrays_follow_the_reference(rule, device):
    # The classes on a list of arrays (one of them over several kernel chunks), on the device,
    # against the reference rule step for step.
    shapes = [(3, 5), (1,), (70_000,)]
    rng = np.random.default_rng(seed_of("separate", rule))
    host = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    params = [to_device(device, p.copy()) for p in host]
    opt, ref = make_optimizer(rule, params), ReferenceOptimizer(rule, host)
    for _ in range(20):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        opt.step([to_device(device, g) for g in grads])
        ref.step(grads)
        for i, (p, r) in enumerate(zip(params, host)):
            assert_close(p, r, err_msg=f"params[{i}]")


@pytest.mark.parametrize("rule", list(RULES))
def test_separate_arrays_equal_flat_buffer(rule, device):
    fp, _, rng = flat_and_reference(rule, np.float32, seed_of("layouts", rule), device)
    arrays = [fp[n].copy() for n in fp]
    opt_flat, opt_list = make_optimizer(rule, fp), make_optimizer(rule, arrays)
    for _ in range(20):
        set_grad(fp, rng, device)
        opt_flat.step()
        opt_list.step([fp.grad_of(n).copy() for n in fp])
    for n, a in zip(fp, arrays):
        np.testing.assert_array_equal(to_numpy(fp[n]), to_numpy(a))


def test_a_flat_group_is_one_span():
    fp = FlatParameters(SHAPES)
    opt = optim.Adam(fp)
    assert len(opt._groups_state[0]["spans"]) == 1
    grouped = optim.Adam([{"params": fp.group(["w1", "b1"])}, {"params": fp.group(["w2", "b2"])}])
    assert [len(st["spans"]) for st in grouped._groups_state] == [1, 1]
    # Not adjacent in the buffer: two spans, still one call.
    skipping = optim.Adam(fp.group(["w1", "w2"]))
    assert len(skipping._groups_state[0]["spans"]) == 2


def test_parameter_groups_use_their_own_hyperparameters(device):
    fp = FlatParameters(SHAPES, device=device)
    rng = np.random.default_rng(1)
    before = rng.standard_normal(fp.data.size).astype(np.float32)
    fp.data[...] = to_device(device, before)
    opt = optim.SGD([{"params": fp.group(["w1", "w2"]), "weight_decay": 0.5}, {"params": fp.group(["b1", "b2"])}],
                    lr=0.1)
    fp.grad[...] = 0.0
    opt.step()
    # Zero gradient: only the decayed group moves, by lr * wd * p.
    assert_close(fp["w1"], before[:35].reshape(7, 5) * np.float32(1 - 0.05))
    np.testing.assert_array_equal(to_numpy(fp["b1"]), before[35:42])


def test_lr_is_mutable_and_may_be_a_schedule(device):
    fp = FlatParameters({"p": (4,)}, device=device)
    fp.grad[...] = 1.0
    opt = optim.SGD(fp, lr=0.5)
    opt.step()
    assert_close(fp["p"], np.full(4, -0.5, np.float32))
    opt.param_groups[0]["lr"] = 0.25
    opt.step()
    assert_close(fp["p"], np.full(4, -0.75, np.float32))
    fp2 = FlatParameters({"p": (4,)}, device=device)
    fp2.grad[...] = 1.0
    opt2 = optim.SGD(fp2, lr=lambda step: 0.1 * (step + 1))  # steps 0, 1, 2 use 0.1, 0.2, 0.3
    for _ in range(3):
        opt2.step()
    assert_close(fp2["p"], np.full(4, -0.6, np.float32))


@pytest.mark.parametrize("rule", ["SGD", "Adam", "AdamW", "RMSprop", "NAdam"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_fused_clipping_equals_clip_then_step(rule, max_norm, device):
    fp, _, rng = flat_and_reference(rule, np.float64, seed_of("clip", rule), device)
    twin = FlatParameters(SHAPES, np.float64, device=device)
    twin.data[...] = fp.data
    fused, plain = make_optimizer(rule, fp, max_grad_norm=max_norm), make_optimizer(rule, twin)
    for _ in range(10):
        set_grad(fp, rng, device)
        twin.grad[...] = fp.grad
        grads_before = to_numpy(fp.grad).copy()
        fused.step()
        np.testing.assert_array_equal(to_numpy(fp.grad), grads_before)  # the fused path does not write them
        norm = optim.clip_grad_norm([twin.grad], max_norm)
        assert_close(np.float64(fused.last_grad_norm), np.float64(norm))
        plain.step()
    assert_close(fp.data, to_numpy(twin.data))


def test_clip_grad_norm_and_value(device):
    # Against NumPy's arithmetic on the host copies.
    rng = np.random.default_rng(2)
    host = [rng.standard_normal((3, 4)) * 10, rng.standard_normal(5)]
    grads = [to_device(device, g.copy()) for g in host]
    total = np.sqrt(sum((g**2).sum() for g in host))
    norm = optim.clip_grad_norm(grads, 1.0)
    assert_close(np.float64(norm), np.float64(total))
    for g, c in zip(grads, host):
        assert_close(g, c * (1.0 / (total + 1e-6)))
    # Below max_norm: unchanged.
    clipped = [to_numpy(g).copy() for g in grads]
    assert_close(np.float64(optim.clip_grad_norm(grads, 100.0)), np.float64(total / (total + 1e-6)))
    for g, c in zip(grads, clipped):
        np.testing.assert_array_equal(to_numpy(g), c)
    host = clipped
    inf_norm = optim.clip_grad_norm(grads, 10.0, norm_type=np.inf)
    assert inf_norm == max(np.abs(g).max() for g in host)
    optim.clip_grad_value(grads, 0.01)
    for g, c in zip(grads, host):
        np.testing.assert_array_equal(to_numpy(g), np.clip(c, -0.01, 0.01))
    bad = [to_device(device, np.array([1.0, np.nan]))]
    with pytest.raises(RuntimeError, match="non-finite"):
        optim.clip_grad_norm(bad, 1.0, error_if_nonfinite=True)
    assert to_numpy(bad[0])[0] == 1.0  # left unchanged


@pytest.mark.parametrize("rule", list(RULES))
def test_state_dict_round_trip_continues_exactly(rule, device):
    fp, _, rng = flat_and_reference(rule, np.float32, seed_of("state", rule), device)
    grads = [to_device(device, rng.standard_normal(fp.grad.size).astype(np.float32)) for _ in range(10)]
    opt = make_optimizer(rule, fp)
    for g in grads[:5]:
        fp.grad[...] = g
        opt.step()
    saved_params, saved_state = fp.data.copy(), opt.state_dict()
    for g in grads[5:]:
        fp.grad[...] = g
        opt.step()
    expected = to_numpy(fp.data).copy()

    fp2 = FlatParameters(SHAPES, np.float32, device=device)
    fp2.data[...] = saved_params
    opt2 = make_optimizer(rule, fp2)
    opt2.load_state_dict(saved_state)
    for g in grads[5:]:
        fp2.grad[...] = g
        opt2.step()
    np.testing.assert_array_equal(to_numpy(fp2.data), expected)
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


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_flat_group_and_separate_arrays_update_alike(rule):
    """A flat group's update (the compiled module called directly) and the same parameters as
    separate arrays with their gradients passed (through the ops' dispatch) give the same bits."""
    fp, ref_params, rng = flat_and_reference(rule, np.float32, seed_of("flat-vs-arrays", rule))
    arrays = [p.copy() for p in ref_params]
    flat_opt, list_opt = make_optimizer(rule, fp), make_optimizer(rule, arrays)
    for _ in range(3):
        fp.grad[...] = rng.standard_normal(fp.grad.size).astype(np.float32)
        flat_opt.step()
        list_opt.step([fp.grad_of(n).copy() for n in fp])
    for n, a in zip(fp, arrays):
        assert np.array_equal(fp[n], a), n


def test_hyperparameters_changed_between_steps_are_checked_and_used():
    """Every step checks and uses the groups' hyperparameters as they are then: a new value, a
    bad one, or a list changed in place."""
    def adam_after(changes):
        fp = FlatParameters(SHAPES)
        fp.grad[...] = 1.0
        opt = optim.Adam(fp, lr=0.1)
        opt.step()
        changes(opt.param_groups[0])
        opt.step()
        return fp.data.copy()

    plain = adam_after(lambda g: None)
    assert not np.array_equal(adam_after(lambda g: g.update(eps=0.5)), plain)  # eps 0.5 shrinks the update
    assert np.array_equal(adam_after(lambda g: g.update(eps=1e-8 + 0.0)), plain)  # a new object, same value
    with pytest.raises(ValueError, match=r"eps: expected a value > 0"):
        adam_after(lambda g: g.update(eps=-1.0))
    fp = FlatParameters(SHAPES)
    fp.grad[...] = 1.0
    opt = optim.Adam(fp, lr=0.1)
    opt.param_groups[0]["betas"] = betas = [0.9, 0.999]
    opt.step()
    betas[0] = 1.5  # in place: the list is not cached, so the next step checks it again
    with pytest.raises(ValueError, match=r"betas\[0\]"):
        opt.step()

    class Knob(float):  # a float subclass whose value can change in place
        def __float__(self):
            return self.value

    momentum = Knob(0.5)
    momentum.value = 0.5
    fp = FlatParameters(SHAPES)
    fp.grad[...] = 1.0
    opt = optim.SGD(fp, lr=0.1, momentum=momentum)
    opt.step()
    momentum.value = -3.0  # not cached (only exact built-in and NumPy scalar types are)
    with pytest.raises(ValueError, match="momentum"):
        opt.step()


def test_load_state_dict_refuses_a_mismatch():
    fp = FlatParameters(SHAPES)
    opt = optim.Adam(fp)
    fp.grad[...] = 1.0
    opt.step()
    other = optim.Adam([np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match=r"group 0 has 4 parameters, expected 1"):
        other.load_state_dict(opt.state_dict())


# ---- foreign state_dicts (issue 12): torch's tensors are converted, or the whole dict is refused ----

class FakeTensor:
    """What matters of a CPU torch tensor here: not a NumPy array, but convertible by __array__."""

    def __init__(self, value):
        self.value = np.asarray(value)

    def __array__(self, dtype=None, copy=None):
        return self.value if dtype is None else self.value.astype(dtype)


def torch_like_state(opt):
    """opt.state_dict() as torch.optim's Adam/NAdam write it: tensors, a float tensor step."""
    sd = opt.state_dict()
    state = {i: {k: FakeTensor(float(v) if k == "step" else v) for k, v in entry.items()}
             for i, entry in sd["state"].items()}
    return {"state": state, "param_groups": sd["param_groups"]}


@pytest.mark.parametrize("rule", ["Adam", "NAdam", "RMSprop", "Adagrad"])
def test_load_state_dict_converts_tensors(rule, device):
    # Regression: the tensors were dropped (zero moments) but the step kept (a late bias
    # correction); now they are converted and the run continues exactly.
    fp, _, rng = flat_and_reference(rule, np.float32, seed_of("torch-like", rule), device)
    grads = [to_device(device, rng.standard_normal(fp.grad.size).astype(np.float32)) for _ in range(6)]
    opt = make_optimizer(rule, fp)
    for g in grads[:3]:
        fp.grad[...] = g
        opt.step()
    saved_params, foreign = fp.data.copy(), torch_like_state(opt)
    for g in grads[3:]:
        fp.grad[...] = g
        opt.step()
    fp2 = FlatParameters(SHAPES, np.float32, device=device)
    fp2.data[...] = saved_params
    opt2 = make_optimizer(rule, fp2)
    opt2.load_state_dict(foreign)
    assert opt2._groups_state[0]["step"] == 3
    for g in grads[3:]:
        fp2.grad[...] = g
        opt2.step()
    np.testing.assert_array_equal(to_numpy(fp2.data), to_numpy(fp.data))


def _spoil(sd, how):
    if how == "a list for an array":
        sd["state"][3]["exp_avg"] = to_numpy(sd["state"][3]["exp_avg"]).tolist()
    elif how == "a wrong shape":
        sd["state"][3]["exp_avg_sq"] = np.zeros(5, np.float32)
    elif how == "an unknown state":
        sd["state"][2]["momentum_buffer"] = np.zeros((3, 7), np.float32)
    elif how == "a complex array":
        sd["state"][3]["exp_avg"] = np.zeros(3, np.complex64)
    elif how == "different steps":
        sd["state"][3]["step"] = 7
    elif how == "a tensor step of two values":
        sd["state"][3]["step"] = FakeTensor([1.0, 2.0])
    elif how == "a fractional step":
        sd["state"][0]["step"] = 2.5
    elif how == "a state for some parameters only":
        del sd["state"][3]["exp_avg"]
    elif how == "torch's extra hyperparameters":
        sd["param_groups"][1].update(foreach=None, fused=None, capturable=False)
    elif how == "a bad hyperparameter":
        sd["param_groups"][1]["eps"] = -1.0
    return sd


SPOILED = [("a list for an array", TypeError, r"state_dict\['state'\]\[3\]\['exp_avg'\]: expected an array"),
           ("a wrong shape", ValueError, r"\['exp_avg_sq'\]: expected shape \(3,\) \(its parameter's\), got \(5,\)"),
           ("an unknown state", ValueError, r"\[2\]: unknown state 'momentum_buffer'"),
           ("a complex array", TypeError, r"expected a real-valued array, got dtype complex64"),
           ("different steps", ValueError, r"the parameters of group 1 have different steps \[2, 7\]"),
           ("a tensor step of two values", TypeError, r"\['step'\]: expected an integer >= 0"),
           ("a fractional step", ValueError, r"\['step'\]: expected an integer >= 0, got 2.5"),
           ("a state for some parameters only", ValueError, r"group 1 has the state 'exp_avg' for some parameters"),
           ("torch's extra hyperparameters", ValueError, r"unknown hyperparameters \['capturable', 'foreach', 'fused'\]"),
           ("a bad hyperparameter", ValueError, r"eps: expected a value > 0, got -1.0")]


@pytest.mark.parametrize("how, exc, match", SPOILED, ids=[s[0] for s in SPOILED])
def test_load_state_dict_loads_nothing_of_a_refused_state(how, exc, match, device):
    # Regression: never half a state. Group 0 is valid, group 1 spoiled: the optimizer keeps
    # every value it had (parameters' state, steps, hyperparameters).
    fp = FlatParameters(SHAPES, device=device)
    opt = optim.Adam([{"params": fp.group(["w1", "b1"])}, {"params": fp.group(["w2", "b2"]), "lr": 0.5}], lr=0.1)
    fp.grad[...] = 1.0
    opt.step()
    source = optim.Adam([{"params": fp.group(["w1", "b1"])}, {"params": fp.group(["w2", "b2"]), "lr": 0.5}], lr=0.2)
    for _ in range(2):
        source.step()
    sd = _spoil(source.state_dict(), how)
    before = opt.state_dict()
    with pytest.raises(exc, match=match):
        opt.load_state_dict(sd)
    after = opt.state_dict()
    assert after["step_count"] == before["step_count"] == 1
    assert after["param_groups"] == before["param_groups"]
    for i, entry in before["state"].items():
        assert after["state"][i].keys() == entry.keys()
        for k, v in entry.items():
            np.testing.assert_array_equal(after["state"][i][k], v)


def test_load_state_dict_of_a_fresh_optimizer_resets_the_state():
    # torch's state_dict of an optimizer that never stepped has no per-parameter state.
    fp = FlatParameters(SHAPES)
    opt = optim.Adagrad(fp, lr=0.1, initial_accumulator_value=0.5)
    fp.grad[...] = 1.0
    opt.step()
    fresh = optim.Adagrad(FlatParameters(SHAPES), lr=0.1, initial_accumulator_value=0.5).state_dict()
    fresh["state"] = {}
    opt.load_state_dict(fresh)
    assert opt._groups_state[0]["step"] == 0
    np.testing.assert_array_equal(opt._groups_state[0]["buffers"]["sum"], 0.5)


# ---- hyperparameters: checked once per step, all groups before any update ----

def test_hyperparameters_are_checked_once_per_step(monkeypatch):
    # Issue 12: Optimizer._check, _lr and then ops.adam_step checked every value three times.
    fp = FlatParameters(SHAPES)
    opt = optim.Adam([{"params": fp.group(["w1", "b1"])}, {"params": fp.group(["w2", "b2"])}], lr=0.1)
    calls = []  # every scalar check goes through one of these three
    for helper in ("real", "integer", "flag"):
        original = getattr(_checks, helper)
        monkeypatch.setattr(_checks, helper, lambda name, *a, _f=original, **k: calls.append(name) or _f(name, *a, **k))
    fp.grad[...] = 1.0
    opt.step()
    counts = {name: calls.count(name) for name in set(calls)}
    assert counts == {"lr": 2, "betas[0]": 2, "betas[1]": 2, "eps": 2, "weight_decay": 2, "amsgrad": 2,
                      "decoupled_weight_decay": 2, "maximize": 2}, counts


def test_a_schedule_is_evaluated_by_step_only():
    # Some schedules keep state when called (ReduceLROnPlateau's last step): construction and
    # load_state_dict must not call them.
    calls = []

    def lr(step):
        calls.append(step)
        return 0.1

    fp = FlatParameters(SHAPES)
    opt = optim.SGD(fp, lr=lr)
    opt.load_state_dict(optim.SGD(FlatParameters(SHAPES), lr=0.1).state_dict())
    assert calls == []
    opt.step()
    opt.step()
    assert calls == [0, 1]


def test_a_bad_group_stops_the_step_before_any_update():
    fp = FlatParameters(SHAPES)
    opt = optim.SGD([{"params": fp.group(["w1", "b1"])}, {"params": fp.group(["w2", "b2"])}], lr=0.1)
    fp.grad[...] = 1.0
    opt.param_groups[1]["lr"] = -1.0
    with pytest.raises(ValueError, match=r"lr: expected a value >= 0, got -1.0"):
        opt.step()
    assert not fp.data.any() and opt.step_count == 0 and [st["step"] for st in opt._groups_state] == [0, 0]


@pytest.mark.parametrize("make, match", [
    (lambda p: optim.Adam(p, amsgrad=None), r"amsgrad: expected True or False, got None"),
    (lambda p: optim.SGD(p, momentum=0.9, nesterov=1), r"nesterov: expected True or False, got 1"),
    (lambda p: optim.RMSprop(p, centered="yes"), r"centered: expected True or False, got 'yes'"),
    (lambda p: optim.NAdam(p, maximize=np.array(False)), r"maximize: expected True or False, got array\(False\)"),
    (lambda p: optim.Adam(p, lr=np.array([1e-3])), r"lr: expected a value >= 0, got array\(\[0.001\]\)"),
    (lambda p: optim.Adam(p, eps=np.array(0.5)), r"eps: expected a value > 0, got array\(0.5\)"),
    (lambda p: optim.SGD(p, momentum=0.5j), r"momentum: expected a value >= 0, got 0.5j"),
])
def test_hyperparameters_follow_the_scalar_rule(make, match):
    with pytest.raises(TypeError, match=match):
        make(FlatParameters(SHAPES))


def test_scale_lr():
    assert optim.scale_lr(0.1, 512, 256) == pytest.approx(0.2)
    assert optim.scale_lr(0.1, 1024, 256, rule="sqrt") == pytest.approx(0.2)


def test_state_buffers_sit_apart_from_the_parameters_modulo_4096():
    """The state buffers' addresses modulo 4096 are at least 512 bytes from those of the
    parameters, the gradients and each other (no 4K aliasing between the update's streams); the
    placement leaves the update as it was: the same steps with the state in plain arrays give
    the same bits."""
    rng = np.random.default_rng(seed_of("stagger"))
    shapes = {"w": (255, 64), "b": (64,)}  # 64 KiB per buffer: plain heap blocks 16 bytes apart modulo 4096
    fp = FlatParameters(shapes)
    fp.data[...] = rng.standard_normal(fp.data.size)
    twin = FlatParameters(shapes)
    twin.data[...] = fp.data
    opt = optim.Adam(fp, lr=1e-2, amsgrad=True)
    plain = optim.Adam(twin, lr=1e-2, amsgrad=True)
    plain._staggered = lambda st, fill: np.full(st["size"], fill, st["dtype"])
    for _ in range(3):
        fp.grad[...] = twin.grad[...] = rng.standard_normal(fp.grad.size)
        opt.step()
        plain.step()
    st = opt._groups_state[0]
    offsets = [a.ctypes.data % 4096 for a in (fp.data, fp.grad, *st["buffers"].values())]
    assert len(st["buffers"]) == 3
    for i, a in enumerate(offsets[2:], 2):
        for b in offsets[:i]:
            assert min((a - b) % 4096, (b - a) % 4096) >= 512, offsets
    assert np.array_equal(fp.data, twin.data)
    for name, buf in st["buffers"].items():
        assert np.array_equal(buf, plain._groups_state[0]["buffers"][name]), name


def _assert_state_apart(fp, st):
    offsets = [a.ctypes.data % 4096 for a in (fp.data, fp.grad, *st["buffers"].values())]
    for i, a in enumerate(offsets[2:], 2):
        for b in offsets[:i]:
            assert min((a - b) % 4096, (b - a) % 4096) >= 512, offsets


@pytest.mark.parametrize("rule, kwargs, loaded", [
    ("Adam", dict(lr=1e-2, amsgrad=True), "never stepped"),
    ("Adam", dict(lr=1e-2, amsgrad=True), "without max_exp_avg_sq"),
    ("Adagrad", dict(lr=1e-2, initial_accumulator_value=0.1), "never stepped"),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, centered=True), "never stepped"),
])
def test_state_buffers_stay_apart_after_loads_that_drop_buffers(rule, kwargs, loaded):
    """load_state_dict drops the buffers a loaded state lacks; the ones made again afterwards
    are placed away from the arrays alive then, not from the dropped ones (which once made every
    candidate offset look taken after a few loads)."""
    shapes = {"w": (255, 64), "b": (64,)}
    fp = FlatParameters(shapes)
    fp.data[...] = 1.0
    opt = getattr(optim, rule)(fp, **kwargs)
    if loaded == "never stepped":
        state = getattr(optim, rule)(FlatParameters(shapes), **kwargs).state_dict()
        state["state"] = {}  # as torch saves it (fusednn's Adagrad has its sums from the start)
    else:  # a stepped state with exp_avg, exp_avg_sq only (as torch saves amsgrad=False)
        other = optim.Adam(FlatParameters(shapes), lr=1e-2)
        other.step([np.full(s, 0.5, np.float32) for s in shapes.values()])
        state = other.state_dict()
        for group in state["param_groups"]:
            group["amsgrad"] = True
    for _ in range(8):
        fp.grad[...] = 0.5
        opt.step()
        _assert_state_apart(fp, opt._groups_state[0])
        opt.load_state_dict(state)
        _assert_state_apart(fp, opt._groups_state[0])


def test_load_state_dict_releases_the_buffers_it_drops():
    """Adam's kept kernel arguments do not hold a dropped buffer until the next step."""
    fp = FlatParameters(SHAPES)
    opt = optim.Adam(fp, lr=1e-2, amsgrad=True)
    fp.grad[...] = 1.0
    opt.step()
    dropped = [weakref.ref(b.base) for b in opt._groups_state[0]["buffers"].values()]  # the memory's owners
    opt.load_state_dict(optim.Adam(FlatParameters(SHAPES), lr=1e-2).state_dict())
    assert [r() for r in dropped] == [None] * len(dropped)


def test_adam_kept_kernel_arguments_follow_amsgrad_and_loaded_state():
    """A flat group's Adam keeps its kernel arguments between steps (made again when amsgrad
    changes or load_state_dict drops a state buffer); a group of separate arrays makes them
    every step. Through amsgrad on and off, a never-stepped state loaded (buffers dropped), a
    stepped state loaded, lr and weight decay changed, the two update the parameters alike."""
    rng = np.random.default_rng(seed_of("adam kept arguments"))
    fp = FlatParameters(SHAPES)
    fp.data[...] = rng.standard_normal(fp.data.size)
    plain = [fp[n].copy() for n in SHAPES]
    kept = optim.Adam(fp, lr=1e-2)
    each = optim.Adam(plain, lr=1e-2)
    fresh = optim.Adam(FlatParameters(SHAPES), lr=1e-2).state_dict()

    def step():
        g = rng.standard_normal(fp.grad.size).astype(np.float32)
        fp.grad[...] = g
        kept.step()
        each.step([fp.grad_of(n).copy() for n in SHAPES])
        assert np.array_equal(fp.data, np.concatenate([p.ravel() for p in plain]))

    step()
    step()
    for o in (kept, each):
        o.param_groups[0]["amsgrad"] = True
    step()
    for o in (kept, each):
        o.param_groups[0]["amsgrad"] = False
    step()
    for o in (kept, each):
        o.load_state_dict(fresh)  # drops every buffer
    step()
    step()
    state = kept.state_dict()
    for o in (kept, each):
        o.load_state_dict(state)
        o.param_groups[0]["weight_decay"] = 0.1
        o.param_groups[0]["lr"] = 3e-3
    step()
