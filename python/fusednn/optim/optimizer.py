"""Optimizers over parameter groups, each group updated by one fused kernel call.

Parameters are NumPy arrays updated in place. A group given as a
:class:`fusednn.FlatParameters` or a :class:`fusednn.params.FlatGroup` (``fp.group(names)``,
what ``Module.parameter_groups`` returns) hands the optimizer the spans of the flat parameter
and gradient buffers that its parameters cover, so the optimizer knows their gradients
(``step()`` with no argument) and a group of adjacent parameters is updated by a single pass
over one span. Otherwise ``step(grads)`` takes the gradients as a list in parameter order, and
the kernel takes the arrays as a list (still one call and one pass per array).

Optimizer state lives in one flat buffer per state and group, in the group's parameter order.

Hyperparameters are checked in each step, for every group before any group is updated (and at
construction and in load_state_dict, for early errors); a group whose values other than lr are the
same immutable objects as at its last check keeps that check's result, so a value assigned anew is
checked in the next step (lr, which schedules change, every step); the update then calls the kernel through
the ops' unchecked entry points (for a flat group, whose arrays all live on the group's device, the
compiled module's function directly), whose binding checks the arrays.
"""

import math
import operator

import numpy as np

from fusednn import _C, _checks, ops
from fusednn._backend import _is_cupy, array_module, cuda_module, host_copy
from fusednn._backend import is_array as _is_array
from fusednn.ops import optim as _kernels
from fusednn.params import FlatGroup, FlatParameters


class _Span:
    """A run of parameters that are adjacent in one flat buffer (or a single array), its
    gradient (None when not known) and its offset into the group's state buffers."""

    def __init__(self, param, grad, state_offset, indices):
        self.param, self.grad, self.state_offset, self.indices = param, grad, state_offset, indices


_IMMUTABLE_TYPES = (bool, int, float, complex, str, type(None))


def _immutable(value):
    """Whether a hyperparameter's value cannot change in place: exactly a built-in number,
    string, None or NumPy scalar, or a tuple of those (a subclass may define a value that
    changes, e.g. a float subclass whose __float__ reads an attribute)."""
    kind = type(value)
    if kind is tuple:
        return all(map(_immutable, value))
    return kind in _IMMUTABLE_TYPES or (isinstance(value, np.generic) and kind.__module__ == "numpy")


class Optimizer:
    """Base class: parameter groups, hyperparameter checks, state, step, state_dict.

    Args:
        params: a :class:`~fusednn.FlatParameters`, a :class:`~fusednn.params.FlatGroup`, a
            list of arrays, or a list of dicts ``{"params": ..., **hyperparameters}`` (parameter
            groups, e.g. no weight decay on biases and normalization scales) whose ``"params"``
            is one of those.
        defaults: the rule's hyperparameters; a group's own values override them. ``lr`` may
            be a number or a schedule (any callable of the step count, see
            :mod:`fusednn.optim.schedules`), evaluated at the number of steps done so far.
        max_grad_norm: when set, the global norm of all gradients (of order ``grad_norm_type``:
            any p of :func:`grad_norm`) is computed first and the update uses ``g * min(1, max_grad_norm / (norm +
            1e-6))``, as ``clip_grad_norm_`` followed by the step would, without writing the
            gradients. The norm is kept in ``last_grad_norm``.
    """

    state_names = ()  # the per-parameter state arrays of the rule, in kernel order
    scalar_state_names = ()  # the per-group scalar state of the rule (NAdam's mu_product)

    def __init__(self, params, defaults, *, max_grad_norm=None, grad_norm_type=2.0):
        self.defaults = dict(defaults)
        self.max_grad_norm = None if max_grad_norm is None else _checks.positive("max_grad_norm", max_grad_norm)
        self.grad_norm_type = _checks.p_norm("grad_norm_type", grad_norm_type)
        self.last_grad_norm = None
        self.step_count = 0
        self.param_groups = []
        self._params = []  # every parameter, in group order: the indices of state_dict
        flat_spans = []  # per group: the FlatGroup's spans, or None for plain arrays
        for group in self._groups_of(params):
            flat = group["params"] if isinstance(group["params"], FlatGroup) else None
            flat_spans.append(None if flat is None else flat.spans)
            if flat is not None:
                group["params"] = list(flat.params)
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            self._check_keys(group, "param_groups")
            self._check(group)
            self._check_lr(group)
            self.param_groups.append(group)
            self._params.extend(group["params"])
        self._groups_state = [self._new_group_state(g, spans) for g, spans in zip(self.param_groups, flat_spans)]
        self._check_no_shared_memory()

    # ---- construction

    @staticmethod
    def _groups_of(params):
        if isinstance(params, FlatParameters):
            params = params.group()
        if isinstance(params, FlatGroup):
            return [{"params": params}]
        if _is_array(params):
            params = [params]
        params = list(params)
        if not params:
            raise ValueError("params: expected at least one parameter, got an empty list")
        if all(isinstance(p, dict) for p in params):
            groups = []
            for i, g in enumerate(params):
                if "params" not in g:
                    raise ValueError(f"params[{i}]: a parameter group needs a 'params' entry")
                group = dict(g)
                members = group["params"]
                if isinstance(members, FlatParameters):
                    members = members.group()
                elif _is_array(members):
                    members = [members]
                group["params"] = members if isinstance(members, FlatGroup) else list(members)
                groups.append(group)
            return groups
        if any(isinstance(p, dict) for p in params):
            raise TypeError("params: expected arrays or parameter-group dicts, not a mix")
        return [{"params": params}]

    def _new_group_state(self, group, flat_spans):
        members = group["params"]
        for i, p in enumerate(members):
            if not _is_array(p):
                raise TypeError(f"params: expected numpy or cupy arrays, got {type(p).__module__}.{type(p).__qualname__}")
            if type(p) is not type(members[0]):
                raise TypeError("params: a group must be all NumPy or all CuPy arrays, got a mix")
            if p.dtype not in (np.float32, np.float64):
                raise TypeError(f"params: expected float32 or float64 arrays, got {_checks.dtype_str(p.dtype)}")
            if p.dtype != members[0].dtype:
                raise TypeError(f"params: a group must have one dtype, got {members[0].dtype} and {p.dtype}")
            if not (p.flags.c_contiguous and getattr(p.flags, "aligned", True) and getattr(p.flags, "writeable", True)):
                raise ValueError("params: expected C-contiguous, aligned, writable arrays (they are updated in "
                                 "place), got one that is not")
        sizes = [p.size for p in members]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        return {
            "size": int(offsets[-1]),
            "offsets": offsets,
            "dtype": members[0].dtype if members else np.dtype(np.float32),
            "xp": array_module(members[0]) if members else np,  # the state lives where the parameters do
            "buffers": {},  # state name -> flat buffer, allocated on first use
            "step": 0,
            "extra": {},  # scalar state of the rule (NAdam's mu_product)
            "spans": self._spans(members, offsets, flat_spans),
            "shapes": [p.shape for p in members],
            "views": {},  # (state name, per_param) -> the state views handed to the kernel
        }

    @staticmethod
    def _spans(members, offsets, flat_spans):
        """One span per run of a FlatGroup (its gradient known), else one per array."""
        if flat_spans is None:
            return [_Span(p, None, int(offsets[i]), [i]) for i, p in enumerate(members)]
        return [_Span(data, grad, int(offsets[first]), list(range(first, stop)))
                for data, grad, first, stop in flat_spans]

    def _check_no_shared_memory(self):
        """Two parameters must not share memory (both would be updated, or one twice): the ops'
        check (the binding's sort-and-sweep), over all parameters of each device."""
        for on_gpu in (False, True):
            _kernels._check_disjoint([p for p in self._params if _is_cupy(p) == on_gpu], "params")

    # ---- hyperparameters

    def _check_keys(self, group, where):
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{where}: unknown hyperparameters {sorted(unknown)}; "
                             f"{type(self).__name__} takes {sorted(self.defaults)}")

    def _check(self, group):
        """A group's hyperparameters other than lr, checked, as the kernel takes them (subclasses
        extend the dict)."""
        return {"maximize": _checks.flag("maximize", group["maximize"])}

    def _checked(self, group, st):
        """``self._check(group)``, kept in the group's state while its hyperparameters other than
        lr are the same objects, all of immutable types (a value assigned anew is checked anew;
        a mutable one, such as a list, every step)."""
        keys = self.__dict__.get("_hyper_keys")
        if keys is None:
            keys = self._hyper_keys = tuple(k for k in self.defaults if k != "lr")
        values = tuple(map(group.__getitem__, keys))
        kept = st.get("checked")
        if kept is not None and all(map(operator.is_, kept[0], values)):
            return kept[1]
        h = self._check(group)
        st["checked"] = (values, h) if all(map(_immutable, values)) else None
        return h

    @staticmethod
    def _check_lr(group):
        """A number lr checked (a schedule is only evaluated by step(): some keep state)."""
        if not callable(group["lr"]):
            _checks.at_least_zero("lr", group["lr"])

    def _lr(self, group):
        """The group's learning rate at this step (a schedule is evaluated), checked."""
        lr = group["lr"]
        return _checks.at_least_zero("lr", lr(self.step_count) if callable(lr) else lr)

    # ---- state

    def _buffer(self, gi, name, fill=0.0):
        st = self._groups_state[gi]
        if name not in st["buffers"]:
            if st["xp"] is np:
                st["buffers"][name] = self._staggered(st, fill)
            else:
                st["buffers"][name] = st["xp"].full(st["size"], fill, st["dtype"])
        return st["buffers"][name]

    @staticmethod
    def _staggered(st, fill):
        """A NumPy state buffer placed in memory so that its address modulo 4096 is far from
        those of the group's parameters, gradients and other state buffers: the update loads
        the next elements of each array while its stores to p, m, v of the last ones are in
        flight, and a load whose address matches a pending store's in the low 12 bits waits for
        it (4K aliasing). Consecutive heap allocations of sizes that are multiples of 4096 sit
        16 bytes apart modulo 4096, so without this the Adam step over the 784-512-256-10
        MLP's 535k parameters ran about 12% slower (one thread: 316 us against 280).

        The offsets avoided are those of the arrays alive now: the group's first span's parameter
        and gradient (a group stepped with step(grads) has no known gradient: its parameter only)
        and the group's current state buffers (not those load_state_dict dropped)."""
        dtype = np.dtype(st["dtype"])
        nbytes = st["size"] * dtype.itemsize
        first = st["spans"][0] if st["spans"] else None
        live = [a for a in ((first.param, first.grad) if first is not None else ()) if a is not None]
        streams = [a.ctypes.data % 4096 for a in live + list(st["buffers"].values())]
        base = streams[0] if streams else 0
        dist = lambda c: min((min((c - s) % 4096, (s - c) % 4096) for s in streams), default=4096)  # noqa: E731
        target = max(((base + 512 * j) % 4096 for j in range(8)), key=dist)  # the first of the farthest
        raw = np.empty(nbytes + 4096, np.uint8)
        start = (target - raw.ctypes.data) % 4096
        buf = raw[start:start + nbytes].view(dtype)
        buf.fill(fill)
        return buf

    def _state_views(self, gi, name, spans, per_param):
        """The state `name` as arrays matching the parameter arrays handed to the kernel."""
        st = self._groups_state[gi]
        views = st["views"].get((name, per_param))
        if views is None:
            buf = self._buffer(gi, name)
            if per_param:
                views = [buf[st["offsets"][i]:st["offsets"][i + 1]].reshape(shape)
                         for i, shape in enumerate(st["shapes"])]
            else:
                views = [buf[s.state_offset:s.state_offset + s.param.size] for s in spans]
            st["views"][(name, per_param)] = views
        return views

    # ---- stepping

    def _grads_by_group(self, grads):
        """Per group: (params, grads, per_param) as the kernel takes them."""
        out = []
        if grads is None:
            for st in self._groups_state:
                work = st.get("flat_work")  # the spans are fixed: their lists are made once
                if work is None:
                    if any(s.grad is None for s in st["spans"]):
                        raise ValueError("grads: required, because some parameters were not given as a "
                                         "FlatParameters or FlatGroup (fp.group(names)), so the optimizer does not "
                                         "know their gradients")
                    work = st["flat_work"] = ([s.param for s in st["spans"]], [s.grad for s in st["spans"]], False)
                out.append(work)
            return out
        if _is_array(grads):
            grads = [grads]
        grads = list(grads)
        if len(grads) != len(self._params):
            raise ValueError(f"grads: expected {len(self._params)} arrays (one per parameter, in group order), "
                             f"got {len(grads)}")
        k = 0
        for group, st in zip(self.param_groups, self._groups_state):
            n = len(group["params"])
            gs = grads[k:k + n]
            dtype = st["dtype"]
            kind = type(group["params"][0]) if group["params"] else np.ndarray
            if (all(type(g) is kind and g.dtype is dtype for g in gs)
                    and [g.shape for g in gs] == st["shapes"]):  # the common case, checked fast
                out.append((group["params"], gs, True))
                k += n
                continue
            for j, (p, g) in enumerate(zip(group["params"], gs)):
                if type(g) is not type(p) or g.shape != p.shape or g.dtype != p.dtype:
                    desc = (f"{g.dtype} array of shape {g.shape}" if type(g) is type(p)
                            else f"{type(g).__module__}.{type(g).__qualname__}")
                    raise ValueError(f"grads[{k + j}]: expected a {p.dtype} array of shape {p.shape} (its "
                                     f"parameter's), got a {desc}")
            out.append((list(group["params"]), gs, True))
            k += n
        return out

    def step(self, grads=None):
        """One update of every parameter group.

        Args:
            grads: None when the parameters were given as a :class:`~fusednn.FlatParameters` or
                :class:`~fusednn.params.FlatGroup` (its gradient buffer is used), else the
                gradients as a list in parameter order (the order of ``param_groups``).
        """
        work = self._grads_by_group(grads)
        hypers = [(self._checked(group, st), self._lr(group))  # all, before any update
                  for group, st in zip(self.param_groups, self._groups_state)]
        scale = 1.0
        if self.max_grad_norm is not None:
            all_grads = [g for _, gs, _ in work for g in gs]
            norm = grad_norm(all_grads, self.grad_norm_type)
            self.last_grad_norm = norm
            coef = self.max_grad_norm / (norm + 1e-6)
            scale = coef if not coef >= 1.0 else 1.0  # NaN stays NaN, as in clip_grad_norm_
        for gi, ((h, lr), (params, gs, per_param)) in enumerate(zip(hypers, work)):
            st = self._groups_state[gi]
            st["step"] += 1
            if params:
                self._update(gi, h, params, gs, per_param, st, lr, scale)
        self.step_count += 1

    def _update(self, gi, h, params, grads, per_param, st, lr, scale):
        """One kernel call for group gi, with its checked hyperparameters h and lr."""
        raise NotImplementedError

    @staticmethod
    def _run(st, per_param, dispatch, name, *args):
        """The update: ``dispatch(*args)`` (an unchecked entry point of fusednn.ops.optim, which
        picks the compiled module from the arrays' types and names a wrong one) for gradients
        the caller passed (per_param); for a flat group, whose arrays are the same every step
        and all on the group's device, the compiled module's ``name`` directly."""
        if per_param:
            return dispatch(*args)
        module = st.get("module")
        if module is None:
            module = st["module"] = _C if st["xp"] is np else cuda_module()
        return getattr(module, name)(*args)

    def zero_grad(self):
        """Zero the gradients the optimizer knows (those in FlatParameters gradient buffers)."""
        for st in self._groups_state:
            for s in st["spans"]:
                if s.grad is not None:
                    s.grad.fill(0)

    # ---- state_dict

    def state_dict(self):
        """Plain (NumPy) arrays and numbers, as ``torch.optim.Optimizer.state_dict``: ``{"state": {i:
        {"step": n, <state name>: array, ...}}, "param_groups": [{hyperparameters...,
        "params": [i, ...]}], "step_count": n}``. A schedule-valued lr is saved as its current
        value."""
        state, groups, k = {}, [], 0
        for gi, group in enumerate(self.param_groups):
            st = self._groups_state[gi]
            ids = list(range(k, k + len(group["params"])))
            for j, i in enumerate(ids):
                entry = {"step": st["step"]}
                entry.update(st["extra"])
                for name, buf in st["buffers"].items():
                    view = buf[st["offsets"][j]:st["offsets"][j + 1]].reshape(group["params"][j].shape)
                    entry[name] = host_copy(view)  # NumPy, also for CuPy parameters
                state[i] = entry
            saved = {key: (self._lr_value(value) if key == "lr" else value)
                     for key, value in group.items() if key != "params"}
            saved["params"] = ids
            groups.append(saved)
            k += len(ids)
        return {"state": state, "param_groups": groups, "step_count": self.step_count}

    def _lr_value(self, lr):
        return float(lr(self.step_count)) if callable(lr) else lr

    def _initial_state(self, gi):
        """Create the state a rule starts from other than zeros (Adagrad's sums)."""

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned: copies the arrays into this optimizer's state
        and takes the groups' hyperparameters (a schedule-valued lr is kept). The groups must
        match in number and sizes.

        Arrays may be any array-like (NumPy or CuPy arrays, or objects with ``__array__`` such as
        CPU torch tensors) and scalars (``step``, ``mu_product``) numbers or 1-element array-likes,
        so that ``torch.optim``'s state_dict of the same rule loads too. Everything is checked
        before anything is assigned: a refused state_dict (TypeError/ValueError naming the entry)
        leaves the optimizer as it was."""
        plans, step_count = self._plan_load(state_dict)
        for gi, (hyper, step, buffers, extra) in enumerate(plans):
            group, st = self.param_groups[gi], self._groups_state[gi]
            group.update(hyper)
            st["step"], st["extra"] = step, extra
            for name in list(st["buffers"]):
                if name not in buffers:  # not in the loaded state: the rule starts it afresh
                    del st["buffers"][name]
                    st["views"] = {k: v for k, v in st["views"].items() if k[0] != name}
                    st.pop("adam_call", None)  # Adam's kept kernel arguments: made again from the new views
            for name, arrays in buffers.items():
                buf = self._buffer(gi, name)
                for j, a in enumerate(arrays):
                    buf[st["offsets"][j]:st["offsets"][j + 1]] = st["xp"].asarray(a.reshape(-1))
            self._initial_state(gi)
        self.step_count = step_count

    def _plan_load(self, state_dict):
        """The checked content of a state_dict, per group: (hyperparameters, step, {state name:
        [host array per parameter]}, {scalar state}); and the step count."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__module__}."
                            f"{type(state_dict).__qualname__}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise ValueError(f"state_dict: missing the entry {key!r}")
        groups, state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or not isinstance(state, dict):
            raise TypeError("state_dict: expected 'param_groups' to be a list and 'state' a dict")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"state_dict: expected {len(self.param_groups)} parameter groups, got {len(groups)}")
        plans = []
        for gi, (group, saved) in enumerate(zip(self.param_groups, groups)):
            where = f"state_dict['param_groups'][{gi}]"
            if not isinstance(saved, dict) or "params" not in saved:
                raise ValueError(f"{where}: expected a dict with a 'params' entry")
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"state_dict: group {gi} has {len(saved['params'])} parameters, expected "
                                 f"{len(group['params'])}")
            hyper = {k: v for k, v in saved.items()
                     if k != "params" and not (k == "lr" and callable(group.get("lr")))}
            self._check_keys(hyper, where)
            trial = {**group, **hyper}
            self._check(trial)
            self._check_lr(trial)
            entries = [state.get(i, state.get(str(i))) for i in saved["params"]]
            if all(e is None for e in entries):  # never stepped: the rule's initial state
                plans.append((hyper, 0, {}, {}))
                continue
            steps, buffers, extra = set(), {}, {}
            for j, (i, entry) in enumerate(zip(saved["params"], entries)):
                at = f"state_dict['state'][{i!r}]"
                if not isinstance(entry, dict):
                    raise TypeError(f"{at}: expected a dict of the parameter's state, got "
                                    f"{type(entry).__module__}.{type(entry).__qualname__}")
                for name, value in entry.items():
                    if name == "step":
                        steps.add(_loaded_step(value, f"{at}['step']"))
                    elif name in self.state_names:
                        shape = group["params"][j].shape
                        buffers.setdefault(name, [None] * len(entries))[j] = _loaded_array(value, f"{at}[{name!r}]",
                                                                                           shape)
                    elif name in self.scalar_state_names:
                        extra[name] = _loaded_real(value, f"{at}[{name!r}]")
                    else:
                        raise ValueError(f"{at}: unknown state {name!r}; {type(self).__name__} keeps "
                                         f"{sorted(('step',) + self.state_names + self.scalar_state_names)}")
            for name, arrays in buffers.items():
                if any(a is None for a in arrays):
                    raise ValueError(f"state_dict: group {gi} has the state {name!r} for some parameters only")
            if len(steps) > 1:
                raise ValueError(f"state_dict: the parameters of group {gi} have different steps {sorted(steps)}")
            plans.append((hyper, steps.pop() if steps else 0, buffers, extra))
        step_count = state_dict.get("step_count", self.step_count)
        return plans, _loaded_step(step_count, "state_dict['step_count']")

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            hp = ", ".join(f"{k}={v!r}" for k, v in g.items() if k != "params")
            lines.append(f"  group {i}: {len(g['params'])} parameters, {hp}")
        return "\n".join(lines + [")"])


def _loaded_scalar(value, where, expected):
    """A number of a loaded state: itself, or the value of a 1-element array-like (a 0-d tensor)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{where}: expected {expected}, got {value!r}")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return value
    if _is_array(value) or hasattr(value, "__array__"):
        a = np.asarray(host_copy(value) if _is_array(value) else value)
        if a.size == 1 and a.dtype.kind in "fiu":
            return a.reshape(()).item()
    raise TypeError(f"{where}: expected {expected}, got {type(value).__module__}.{type(value).__qualname__}")


def _loaded_step(value, where):
    v = _loaded_scalar(value, where, "an integer >= 0")
    if not (v >= 0 and float(v).is_integer()):
        raise ValueError(f"{where}: expected an integer >= 0, got {v!r}")
    return int(v)


def _loaded_real(value, where):
    return float(_loaded_scalar(value, where, "a real number"))


def _loaded_array(value, where, shape):
    """A state array as a NumPy array of the parameter's shape (from NumPy, CuPy or any object with
    ``__array__``, e.g. a CPU torch tensor)."""
    if _is_array(value):
        a = host_copy(value)
    elif hasattr(value, "__array__"):
        try:
            a = np.asarray(value)
        except Exception as e:
            raise TypeError(f"{where}: could not be converted to a NumPy array ({e})") from None
    else:
        raise TypeError(f"{where}: expected an array, got {type(value).__module__}.{type(value).__qualname__}")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{where}: expected a real-valued array, got dtype {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{where}: expected shape {tuple(shape)} (its parameter's), got {a.shape}")
    return a


def _betas(name, betas):
    """A pair (beta1, beta2), each in [0, 1)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{name}: expected a pair (beta1, beta2), got {betas!r}")
    return (_checks.in_unit_interval(f"{name}[0]", betas[0], closed_right=False),
            _checks.in_unit_interval(f"{name}[1]", betas[1], closed_right=False))


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and (coupled) weight
    decay, as ``torch.optim.SGD`` (velocity without the learning rate: b = mu b + g, p -= lr b)."""

    state_names = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, max_grad_norm=None, grad_norm_type=2.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize),
                         max_grad_norm=max_grad_norm, grad_norm_type=grad_norm_type)

    def _check(self, group):
        h = super()._check(group)
        h["momentum"] = _checks.at_least_zero("momentum", group["momentum"])
        h["weight_decay"] = _checks.at_least_zero("weight_decay", group["weight_decay"])
        h["dampening"] = _checks.real("dampening", group["dampening"])
        h["nesterov"] = _checks.nesterov(group["nesterov"], h["momentum"], h["dampening"])
        return h

    def _update(self, gi, h, params, grads, per_param, st, lr, scale):
        bufs, first = None, False
        if h["momentum"] != 0:
            first = "momentum_buffer" not in st["buffers"]
            bufs = self._state_views(gi, "momentum_buffer", st["spans"], per_param)
        self._run(st, per_param, _kernels._sgd, "sgd_step", params, grads, bufs, lr, h["momentum"], h["dampening"],
                  h["nesterov"], h["weight_decay"], h["maximize"], first, scale)


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad``."""

    state_names = ("sum",)

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10, *,
                 maximize=False, max_grad_norm=None, grad_norm_type=2.0):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize),
                         max_grad_norm=max_grad_norm, grad_norm_type=grad_norm_type)
        for gi in range(len(self.param_groups)):
            self._initial_state(gi)

    def _initial_state(self, gi):
        # torch fills the sums at construction
        self._buffer(gi, "sum", fill=self.param_groups[gi]["initial_accumulator_value"])

    def _check(self, group):
        h = super()._check(group)
        h["lr_decay"] = _checks.at_least_zero("lr_decay", group["lr_decay"])
        h["weight_decay"] = _checks.at_least_zero("weight_decay", group["weight_decay"])
        _checks.at_least_zero("initial_accumulator_value", group["initial_accumulator_value"])
        h["eps"] = _checks.positive("eps", group["eps"])
        return h

    def _update(self, gi, h, params, grads, per_param, st, lr, scale):
        self._run(st, per_param, _kernels._adagrad, "adagrad_step", params, grads,
                  self._state_views(gi, "sum", st["spans"], per_param), st["step"], lr, h["lr_decay"],
                  h["weight_decay"], h["eps"], h["maximize"], scale)


class RMSprop(Optimizer):
    """RMSprop (optionally centered, with momentum), as ``torch.optim.RMSprop`` (eps outside
    the square root; centered, the variance estimate is clamped at 0 before the square root)."""

    state_names = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False, max_grad_norm=None, grad_norm_type=2.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize),
                         max_grad_norm=max_grad_norm, grad_norm_type=grad_norm_type)

    def _check(self, group):
        h = super()._check(group)
        h["alpha"] = _checks.in_unit_interval("alpha", group["alpha"])
        h["eps"] = _checks.positive("eps", group["eps"])
        h["weight_decay"] = _checks.at_least_zero("weight_decay", group["weight_decay"])
        h["momentum"] = _checks.at_least_zero("momentum", group["momentum"])
        h["centered"] = _checks.flag("centered", group["centered"])
        return h

    def _update(self, gi, h, params, grads, per_param, st, lr, scale):
        views = lambda name: self._state_views(gi, name, st["spans"], per_param)  # noqa: E731
        self._run(st, per_param, _kernels._rmsprop, "rmsprop_step", params, grads, views("square_avg"),
                  views("momentum_buffer") if h["momentum"] else None, views("grad_avg") if h["centered"] else None,
                  lr, h["alpha"], h["eps"], h["weight_decay"], h["momentum"], h["centered"], h["maximize"], scale)


class Adadelta(Optimizer):
    """Adadelta, as ``torch.optim.Adadelta``."""

    state_names = ("square_avg", "acc_delta")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, *, maximize=False, max_grad_norm=None,
                 grad_norm_type=2.0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize),
                         max_grad_norm=max_grad_norm, grad_norm_type=grad_norm_type)

    def _check(self, group):
        h = super()._check(group)
        h["rho"] = _checks.in_unit_interval("rho", group["rho"])
        h["eps"] = _checks.positive("eps", group["eps"])
        h["weight_decay"] = _checks.at_least_zero("weight_decay", group["weight_decay"])
        return h

    def _update(self, gi, h, params, grads, per_param, st, lr, scale):
        self._run(st, per_param, _kernels._adadelta, "adadelta_step", params, grads,
                  self._state_views(gi, "square_avg", st["spans"], per_param),
                  self._state_views(gi, "acc_delta", st["spans"], per_param), lr, h["rho"], h["eps"],
                  h["weight_decay"], h["maximize"], scale)


class Adam(Optimizer):
    """Adam / AMSGrad, as ``torch.optim.Adam``; ``decoupled_weight_decay=True`` is AdamW."""

    state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 decoupled_weight_decay=False, maximize=False, max_grad_norm=None, grad_norm_type=2.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize),
                         max_grad_norm=max_grad_norm, grad_norm_type=grad_norm_type)

    def _check(self, group):
        h = super()._check(group)
        h["betas"] = _betas("betas", group["betas"])
        h["eps"] = _checks.positive("eps", group["eps"])
        h["weight_decay"] = _checks.at_least_zero("weight_decay", group["weight_decay"])
        h["amsgrad"] = _checks.flag("amsgrad", group["amsgrad"])
        h["decoupled_weight_decay"] = _checks.flag("decoupled_weight_decay", group["decoupled_weight_decay"])
        return h

    def _update(self, gi, h, params, grads, per_param, st, lr, scale):
        amsgrad = h["amsgrad"]
        call = None if per_param else st.get("adam_call")
        if call is None or call[0] != amsgrad:
            views = lambda name: self._state_views(gi, name, st["spans"], per_param)  # noqa: E731
            arrays = (params, grads, views("exp_avg"), views("exp_avg_sq"),
                      views("max_exp_avg_sq") if amsgrad else None)
            if per_param:
                _kernels._adam(*arrays, st["step"], lr, h["betas"][0], h["betas"][1], h["eps"], h["weight_decay"],
                               amsgrad, h["decoupled_weight_decay"], h["maximize"], scale)
                return
            # A flat group's arrays are the same every step: the call's are made once (again after
            # amsgrad changed, or load_state_dict dropped a state buffer: it drops this too); the
            # function is looked up on the compiled module at each call.
            call = st["adam_call"] = (amsgrad, _C if st["xp"] is np else cuda_module(), arrays)
        call[1].adam_step(*call[2], st["step"], lr, h["betas"][0], h["betas"][1], h["eps"], h["weight_decay"], amsgrad,
                h["decoupled_weight_decay"], h["maximize"], scale)


class AdamW(Adam):
    """AdamW (decoupled weight decay, default 1e-2), as ``torch.optim.AdamW``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, max_grad_norm=None, grad_norm_type=2.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         decoupled_weight_decay=True, maximize=maximize, max_grad_norm=max_grad_norm,
                         grad_norm_type=grad_norm_type)


class NAdam(Optimizer):
    """NAdam (Nesterov-accelerated Adam with momentum decay), as ``torch.optim.NAdam``."""

    state_names = ("exp_avg", "exp_avg_sq")
    scalar_state_names = ("mu_product",)

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3, *,
                 decoupled_weight_decay=False, maximize=False, max_grad_norm=None, grad_norm_type=2.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize),
                         max_grad_norm=max_grad_norm, grad_norm_type=grad_norm_type)

    def _check(self, group):
        h = super()._check(group)
        h["betas"] = _betas("betas", group["betas"])
        h["eps"] = _checks.positive("eps", group["eps"])
        h["weight_decay"] = _checks.at_least_zero("weight_decay", group["weight_decay"])
        h["momentum_decay"] = _checks.at_least_zero("momentum_decay", group["momentum_decay"])
        h["decoupled_weight_decay"] = _checks.flag("decoupled_weight_decay", group["decoupled_weight_decay"])
        return h

    def _update(self, gi, h, params, grads, per_param, st, lr, scale):
        views = lambda name: self._state_views(gi, name, st["spans"], per_param)  # noqa: E731
        st["extra"]["mu_product"] = self._run(
            st, per_param, _kernels._nadam, "nadam_step", params, grads, views("exp_avg"), views("exp_avg_sq"),
            st["step"], st["extra"].get("mu_product", 1.0), lr, h["betas"][0], h["betas"][1], h["eps"],
            h["weight_decay"], h["momentum_decay"], h["decoupled_weight_decay"], h["maximize"], scale)


def clip_grad_value(grads, clip_value):
    """Clamp every gradient in place into [-clip_value, clip_value] (torch's
    ``clip_grad_value_``), or into the interval [a, b] for ``clip_value=(a, b)``, a <= b."""
    ops.clip_grad_value_(grads, clip_value)


def grad_norm(grads, norm_type=2.0):
    """The p-norm of all gradients together (a float), for the orders torch's
    ``clip_grad_norm_`` takes: p = 2 and inf by the fused kernel (:func:`fusednn.ops.grad_norm`);
    other p > 0 as ``(sum |g|^p)^(1/p)`` and -inf as min |g|, computed in float64 with the
    arrays' own module (NumPy or CuPy). NaN if any gradient is NaN."""
    p = _checks.p_norm("norm_type", norm_type)
    if p == 2.0 or p == math.inf:
        return ops.grad_norm(grads, p)
    arrays = [grads] if _is_array(grads) else list(grads)
    ops.grad_norm(arrays, 2.0)  # the binding's checks of the list (arrays, one float dtype)
    if not arrays or all(a.size == 0 for a in arrays):
        return 0.0
    parts = [array_module(a).abs(a.astype(np.float64)) for a in arrays if a.size]
    if p == -math.inf:
        mins = [float(a.min()) for a in parts]
        return math.nan if any(math.isnan(m) for m in mins) else min(mins)
    with np.errstate(over="ignore"):
        total = sum(float((a ** p).sum()) for a in parts)
    return total ** (1.0 / p)


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale the gradients in place so that their global norm is at most ``max_norm``, as
    ``torch.nn.utils.clip_grad_norm_``: ``g *= min(1, max_norm / (norm + 1e-6))``.
    ``norm_type``: any order p of :func:`grad_norm` (2, inf, 1, 3.5, -inf, ...).

    Returns the total norm before clipping (a float). With ``error_if_nonfinite``, a NaN or
    infinite norm raises RuntimeError and leaves the gradients unchanged.
    """
    max_norm = _checks.at_least_zero("max_norm", max_norm)
    norm = grad_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(norm):
        raise RuntimeError(f"the total norm of order {norm_type} of the gradients is non-finite ({norm}), so they "
                           "cannot be clipped; pass error_if_nonfinite=False to clip anyway")
    coef = max_norm / (norm + 1e-6)
    if not coef >= 1.0:
        ops.scale_(grads, coef)
    return norm
