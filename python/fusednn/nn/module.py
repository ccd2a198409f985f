"""The module base class: parameters as views into one flat buffer, modes, state, RNG.

A model is a tree of modules. Each module registers its parameters (initialized arrays) and
buffers (running statistics); the first time the root's ``params`` is needed, every
parameter of the tree is moved into one :class:`fusednn.FlatParameters` (data and gradient
buffers) and each module's parameter and gradient arrays become views into it. Parameters
that take weight decay (2-D and larger: weights) are laid out first and the others (biases,
normalization scales and shifts) after them, so that each of the two default optimizer
groups is one contiguous span: one kernel call per group.

Backward passes overwrite the gradients (one backward per step); ``zero_grad()`` exists for
code that accumulates by hand.
"""

import numpy as np

from fusednn._backend import array_module, device_module, host_copy, to_host
from fusednn.nn.buffers import ReusableBuffers
from fusednn.params import FlatParameters

__all__ = ["Module", "RNG"]


class RNG:
    """The model's Philox stream: a seed and the next unused counter. Every training-mode
    dropout draws ``take(n)`` counters, so the masks depend only on (seed, offset), and saving
    both resumes a run with the same masks."""

    def __init__(self, seed=0, offset=0):
        self.seed, self.offset = int(seed), int(offset)

    def take(self, n):
        """Reserve ``n`` counters; returns the offset of the first."""
        start = self.offset
        self.offset += int(n)
        return start

    def __repr__(self):
        return f"RNG(seed={self.seed}, offset={self.offset})"


# Bumped by every add_module: a tree's release_activations plan (its modules and their activation
# attributes, walked every training step) is rebuilt when it was made before.
_tree_version = [0]


def _dtype_of(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    return dtype


class Module:
    """Base class of layers and models.

    Subclasses call :meth:`add_parameter` / :meth:`add_buffer` / :meth:`add_module` in their
    constructor and implement ``forward(x, training)`` and ``backward(dy)``. A parameter's
    value is ``self.p[name]`` and its gradient ``self.g[name]`` (backward writes it).

    Every module remembers the arguments it was constructed with (:meth:`get_config`), which
    is how :meth:`save` and :func:`fusednn.load` describe and rebuild a model
    (:mod:`fusednn.serialize`).
    """

    preprocessing = None  # a fitted fusednn.data transformer that predict applies first (fusednn.load sets it)
    # The attributes where a layer keeps arrays of its last training forward for its backward
    # (dropped by release_activations).
    _activation_attrs = ("_cache",)

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        self._init_args = (args, kwargs)  # the constructor call, for get_config
        return self

    def __init__(self):
        self.p, self.g, self.buffers = {}, {}, {}
        self._children = {}
        self._parent = None
        self._flat = None
        self._rng = RNG()
        self.training = True
        self.device = "cpu"

    # ---- arrays reused from step to step (fusednn.nn.buffers)

    def _buffer(self, slot, shape, dtype):
        """An uninitialized array of ``shape`` and ``dtype`` on the module's device for one of
        its outputs (``slot``, e.g. ``"y"`` or ``"dx"``): one of the arrays this module made in
        earlier steps when nothing else holds it anymore, else a new one."""
        buffers = self.__dict__.get("_reusable")
        if buffers is None:
            buffers = self._reusable = ReusableBuffers()
        return buffers.get(slot, shape, dtype, np if self.device == "cpu" else device_module(self.device))

    def release_activations(self):
        """Drop what every layer of the tree kept from its last training forward for its
        backward (its backward raises until the next training forward), so that those arrays
        can be reused; a training forward of a root Sequential does this first."""
        plan = self.__dict__.get("_release_plan")
        if plan is None or plan[0] != _tree_version[0]:  # built once per tree (add_module bumps the version)
            plan = self._release_plan = (_tree_version[0], tuple((m, m._activation_attrs) for _, m in
                                                                 self.named_modules()))
        for m, names in plan[1]:
            attrs = m.__dict__
            for name in names:
                if name in attrs:
                    attrs[name] = None

    # ---- registration

    def add_parameter(self, name, value):
        self.p[name] = value
        self.g[name] = np.zeros_like(value)
        return value

    def add_buffer(self, name, value):
        self.buffers[name] = value
        return value

    def add_module(self, name, module):
        if not isinstance(module, Module):
            raise TypeError(f"{name}: expected a fusednn.nn.Module, got {type(module).__module__}."
                            f"{type(module).__qualname__}")
        if module._parent is not None:
            raise ValueError(f"{name}: this module already belongs to another model")
        module._parent = self
        _tree_version[0] += 1  # the modules' release_activations plans are rebuilt
        module.rng = self._rng
        module.training = self.training
        if module.device != self.device:
            module.to(self.device)
        self._children[name] = module
        return module

    # ---- the tree

    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}{name}.")

    def children(self):
        return list(self._children.values())

    def _root(self):
        m = self
        while m._parent is not None:
            m = m._parent
        return m

    def named_parameters(self):
        """``(name, array)`` for every parameter, in registration order (e.g. ``0.weight``)."""
        self.params  # noqa: B018 (the views exist once the flat buffer does)
        return [(prefix + n, m.p[n]) for prefix, m in self.named_modules() for n in m.p]

    def named_gradients(self):
        self.params  # noqa: B018
        return [(prefix + n, m.g[n]) for prefix, m in self.named_modules() for n in m.g]

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    @property
    def params(self):
        """The :class:`FlatParameters` holding every parameter of the model (of the root module
        when this one is part of a larger model)."""
        root = self._root()
        if root._flat is None:
            root._flatten()
        return root._flat

    def _flatten(self):
        entries = [(prefix, m, n) for prefix, m in self.named_modules() for n in m.p]
        if not entries:
            self._flat = FlatParameters({}, self.dtype, self.device)
            return
        entries.sort(key=lambda e: e[1].p[e[2]].ndim < 2)  # decayed first, stable within each kind
        flat = FlatParameters({prefix + n: m.p[n].shape for prefix, m, n in entries}, self.dtype, self.device)
        for prefix, m, n in entries:
            flat[prefix + n][...] = m.p[n]
            flat.grad_of(prefix + n)[...] = m.g[n]
            m.p[n], m.g[n] = flat[prefix + n], flat.grad_of(prefix + n)
        self._flat = flat

    @property
    def dtype(self):
        for _, m in self.named_modules():
            for a in list(m.p.values()) + list(m.buffers.values()):
                return a.dtype
        return getattr(self, "_dtype", np.dtype(np.float32))

    def parameter_groups(self, weight_decay=None):
        """Optimizer groups: weights (2-D and larger), which take weight decay, and biases and
        normalization parameters, which do not (``"weight_decay": 0.0``; empty groups are left
        out). With ``weight_decay=None`` (the default) the weights' group has no
        ``"weight_decay"`` entry, so it takes the optimizer's: ``optim.Adam(model.parameter_groups(),
        weight_decay=0.5)`` decays the weights by 0.5. A number sets the group's own value. Each
        group's ``"params"`` is a :class:`fusednn.params.FlatGroup`, so the optimizer gets the
        spans of the flat parameter and gradient buffers directly: one span, one kernel call per
        group."""
        named = self.named_parameters()
        decay = [name for name, p in named if p.ndim >= 2]
        other = [name for name, p in named if p.ndim < 2]
        decay_group = {"params": decay} if weight_decay is None else {"params": decay, "weight_decay": weight_decay}
        groups = [decay_group, {"params": other, "weight_decay": 0.0}]
        return [{**g, "params": self.params.group(g["params"])} for g in groups if g["params"]]

    def zero_grad(self):
        self.params.grad.fill(0)

    def num_parameters(self):
        return int(self.params.data.size)

    # ---- modes and randomness

    def train(self, mode=True):
        for _, m in self.named_modules():
            m.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    @property
    def rng(self):
        return self._rng

    @rng.setter
    def rng(self, value):
        if not isinstance(value, RNG):
            raise TypeError(f"rng: expected a fusednn.nn.RNG, got {type(value).__qualname__}")
        for _, m in self.named_modules():
            m._rng = value

    def seed(self, seed, offset=0):
        """Restart the dropout stream of the whole model at (seed, offset)."""
        self.rng = RNG(seed, offset)
        return self

    def to(self, device):
        """Move every parameter, gradient and buffer of the model to ``"cpu"`` (NumPy arrays) or
        ``"cuda"`` (CuPy arrays; the ops then run the CUDA kernels). Inputs must then be arrays
        of that device. Create the optimizer after moving the model: it holds views of the flat
        buffer, which moving replaces."""
        root = self._root()
        xp = device_module(device)
        if device == root.device:
            return self
        for _, m in root.named_modules():
            m.device = device
            for arrays in (m.p, m.g, m.buffers):
                for name, a in arrays.items():
                    arrays[name] = xp.asarray(a) if device == "cuda" else host_copy(a)
        root._flat = None  # rebuilt on the device when next needed
        return self

    # ---- state

    def state_dict(self):
        """Copies of every parameter and buffer, by dotted name, as NumPy arrays (whatever the
        model's device: what checkpoints store)."""
        self.params  # noqa: B018
        out = {}
        for prefix, m in self.named_modules():
            for n, a in list(m.p.items()) + list(m.buffers.items()):
                out[prefix + n] = host_copy(a)
        return out

    def load_state_dict(self, state):
        """Copy arrays into the parameters and buffers in place; names and shapes must match and
        the values must be real numbers. Everything is checked before anything is copied, so a
        state that does not fit leaves the model unchanged."""
        self.params  # noqa: B018
        targets = {prefix + n: a for prefix, m in self.named_modules() for n, a in
                   list(m.p.items()) + list(m.buffers.items())}
        if not isinstance(state, dict):
            raise TypeError(f"state_dict: expected a dict of arrays, got {type(state).__qualname__}")
        missing, unexpected = sorted(set(targets) - set(state)), sorted(set(state) - set(targets))
        if missing or unexpected:
            raise ValueError(f"state_dict: missing {missing}, unexpected {unexpected}")
        values = {}
        for name, target in targets.items():
            value = np.asarray(to_host(state[name]))
            if value.shape != target.shape:
                raise ValueError(f"state_dict[{name!r}]: expected shape {target.shape}, got {value.shape}")
            if value.dtype.kind not in "biuf":
                raise TypeError(f"state_dict[{name!r}]: expected real numbers, got dtype {value.dtype}")
            values[name] = value
        for name, target in targets.items():
            target[...] = array_module(target).asarray(values[name])

    # ---- saving and predicting (fusednn.serialize)

    def get_config(self):
        """The arguments this module was constructed with, by parameter name (defaults filled
        in): what :meth:`save` writes as its architecture. A layer whose arguments are not
        numbers, strings, dtypes, arrays or modules overrides this (and :meth:`from_config`)."""
        from fusednn import serialize
        return serialize.constructor_config(self)

    @classmethod
    def from_config(cls, config):
        """A new module of this class from a :meth:`get_config` dict."""
        from fusednn import serialize
        return serialize.from_constructor_config(cls, config)

    def save(self, path, preprocessing=None):
        """Write the model (architecture, parameters, buffers, dropout RNG) and its fitted
        ``preprocessing`` (default: :attr:`preprocessing`) to ``path``, an ``.npz`` file read
        without pickle; :func:`fusednn.load` rebuilds it. Returns the path."""
        from fusednn import serialize
        return serialize.save(path, self, preprocessing)

    def predict_proba(self, x, batch_size=1024):
        """Class probabilities, shape (n, classes): softmax of the outputs for raw input rows
        ``x`` (:attr:`preprocessing` applied first when set, cast to the model's dtype), in
        evaluation mode, ``batch_size`` rows at a time; a NumPy array."""
        from fusednn import serialize
        return serialize.predict_proba(self, x, batch_size)

    def predict(self, x, batch_size=1024):
        """Class labels (int64, shape (n,)): the argmax of the outputs, as :meth:`predict_proba`."""
        from fusednn import serialize
        return serialize.predict(self, x, batch_size)

    # ---- running

    def forward(self, x, training=None):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    def __call__(self, x, training=None):
        return self.forward(x, training)

    def _mode(self, training):
        return self.training if training is None else bool(training)

    def extra_repr(self):
        return ""

    def __repr__(self):
        if not self._children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"{type(self).__name__}("]
        for name, child in self._children.items():
            lines.append(f"  ({name}): " + repr(child).replace("\n", "\n  "))
        return "\n".join(lines + [")"])
