"""Models as files: ``model.save(path)``, ``fusednn.load(path)``, ``predict``, ``predict_proba``.

A model file is a :mod:`fusednn.checkpoint` file (``.npz``, written atomically, read without
pickle) whose metadata also holds the model's *architecture* and, optionally, its fitted
*preprocessing*, so that :func:`load` rebuilds the model in a new process without the code
that built it:

- The architecture is the constructor call of every module: ``{"class": name, "config":
  {parameter: value}, "training": bool}``. :meth:`fusednn.nn.Module.get_config` gives the
  arguments the module was constructed with (recorded by ``Module.__new__``; defaults filled
  in), so every layer, including those of new families, is described without extra code; a
  layer whose arguments cannot be written (only numbers, strings, None, dtypes, arrays, modules,
  and lists, tuples and dicts of them can) overrides ``get_config`` (and, if needed,
  ``from_config``). A module argument is written as ``{"$module": <its description>}``, a dtype
  as ``{"$dtype": "float32"}``, a 1-d object array of strings (column names) as
  ``{"$strings": [...]}``, and a NumPy random Generator (which only seeds the
  initialization that the saved weights replace) as None. Changes made to a module after its
  construction (attributes set by hand, ``add_module`` calls) are not part of it.
- Classes are found by name among the subclasses of :class:`fusednn.nn.Module` (fusednn's own
  are named by their class name, others by ``module:qualname``): loading imports no module
  named in the file, so the module that defines a user's own layer must be imported before
  :func:`load`.
- The preprocessing is a fitted transformer of :mod:`fusednn.data` (``StandardScaler``,
  ``MinMaxScaler``, ...): its class, ``get_params()`` and fitted attributes.

Every checkpoint written by :func:`fusednn.checkpoint.save` records the architecture when the
model can describe itself, so the trainer's ``epoch-NNNN.npz`` files load with :func:`load`
too. ``predict`` and ``predict_proba`` take raw inputs: they apply ``model.preprocessing``
(set by :func:`load` from the file; None by default) first, then run the network in
evaluation mode; the network's outputs are taken to be class logits.
"""

import inspect

import numpy as np

from fusednn import checkpoint as _ckpt
from fusednn._backend import device_module, to_host

__all__ = ["save", "load", "describe", "build", "describe_transformer", "build_transformer", "architecture_difference",
           "predict", "predict_proba", "NotDescribableError"]


class NotDescribableError(TypeError):
    """A model or transformer whose construction cannot be written to a file."""


def _class_key(cls):
    """A class's name in files: the class name for fusednn's own, module:qualname otherwise."""
    if cls.__module__ == "fusednn" or cls.__module__.startswith("fusednn."):
        return cls.__qualname__
    return f"{cls.__module__}:{cls.__qualname__}"


def _classes(base):
    """name -> the set of subclasses of ``base`` (at any depth) that carry that name."""
    import fusednn.data  # noqa: F401 (registers fusednn's transformers)
    import fusednn.nn  # noqa: F401 (registers fusednn's layers)
    found, todo, seen = {}, [base], set()
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                found.setdefault(_class_key(sub), set()).add(sub)
    return found


def _lookup(base, key, what):
    """The one subclass of ``base`` named ``key``; ValueError naming the problem otherwise."""
    if not isinstance(key, str):
        raise TypeError(f"{what}: expected a class name, got {key!r}")
    matches = _classes(base).get(key, set())
    if len(matches) == 1:
        return next(iter(matches))
    if matches:
        raise ValueError(f"{what}: {len(matches)} loaded classes are named {key!r}")
    hint = (f" (import the module {key.split(':')[0]!r} that defines it before loading)" if ":" in key
            else " (a layer of a newer fusednn?)")
    raise ValueError(f"{what}: no {base.__name__} class named {key!r} is loaded{hint}")


def _key_of(obj, base, where):
    """The name of obj's class, checked to find that same class again when loading."""
    key = _class_key(type(obj))
    try:
        if _lookup(base, key, where) is not type(obj):
            raise ValueError(f"{where}: the class {key!r} found by name is not {type(obj)!r}")
    except (TypeError, ValueError) as e:
        raise NotDescribableError(str(e)) from None
    return key


# ---- the architecture


def _arg_value(value, where, depth=0):
    """A constructor argument as checkpoint metadata (modules, dtypes and Generators marked)."""
    from fusednn.nn import Module
    if depth > 32:
        raise NotDescribableError(f"{where}: nested deeper than 32 levels")
    if isinstance(value, Module):
        return {"$module": describe(value, where)}
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return {"$dtype": np.dtype(value).name}
    if isinstance(value, (np.random.Generator, np.random.RandomState)):
        return None  # only seeds the initialization, which the saved weights replace
    if isinstance(value, np.ndarray) and value.dtype == object:
        if value.ndim == 1 and all(isinstance(v, str) for v in value):  # column names (feature_names_in_)
            return {"$strings": [str(v) for v in value]}
        raise NotDescribableError(f"{where}: an object array other than 1-d strings cannot be saved")
    if value is None or isinstance(value, (bool, int, float, str, np.ndarray)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, (list, tuple)):
        items = [_arg_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, dict) and all(isinstance(k, str) and not k.startswith("$") for k in value):
        return {k: _arg_value(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
    t = type(value)
    raise NotDescribableError(f"{where}: a constructor argument of type {t.__module__}.{t.__qualname__} cannot be "
                              "saved (give the class a get_config() of numbers, strings, arrays and modules)")


def _arg_from(value, where, depth=0):
    """The inverse of _arg_value (on what checkpoint.load decoded)."""
    if depth > 32:
        raise ValueError(f"{where}: nested deeper than 32 levels")
    if isinstance(value, dict):
        if set(value) == {"$module"}:
            return build(value["$module"], where)
        if set(value) == {"$strings"}:
            if not isinstance(value["$strings"], list) or not all(isinstance(v, str) for v in value["$strings"]):
                raise ValueError(f"{where}: $strings must hold a list of strings")
            return np.asarray(value["$strings"], dtype=object)
        if set(value) == {"$dtype"}:
            if value["$dtype"] not in ("float16", "float32", "float64", "int32", "int64", "bool"):
                raise ValueError(f"{where}: unexpected dtype {value['$dtype']!r}")
            return np.dtype(value["$dtype"])
        if any(k.startswith("$") for k in value if isinstance(k, str)):
            raise ValueError(f"{where}: unknown marker in {sorted(value)}")
        return {k: _arg_from(v, f"{where}[{k!r}]", depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_arg_from(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def constructor_config(module):
    """The arguments ``module`` was constructed with, by parameter name, defaults filled in
    (``*args`` as a tuple and ``**kwargs`` as a dict under their own names):
    :meth:`fusednn.nn.Module.get_config`'s default."""
    args, kwargs = getattr(module, "_init_args", ((), {}))
    params = list(inspect.signature(type(module).__init__).parameters.values())[1:]
    bound = inspect.Signature(params).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def from_constructor_config(cls, config):
    """``cls(...)`` called with the arguments of a :func:`constructor_config`."""
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise TypeError(f"{cls.__name__} config: expected a dict of arguments by name, got {config!r}")
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    unknown = sorted(set(config) - {p.name for p in params})
    if unknown:
        raise TypeError(f"{cls.__name__} has no parameters {unknown}")
    args, kwargs = [], {}
    for p in params:
        if p.name not in config:
            continue
        value = config[p.name]
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            args.append(value)
        elif p.kind is p.VAR_POSITIONAL:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"{cls.__name__} config[{p.name!r}]: expected a list (*{p.name}), got {value!r}")
            args.extend(value)
        elif p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            if not isinstance(value, dict):
                raise TypeError(f"{cls.__name__} config[{p.name!r}]: expected a dict (**{p.name}), got {value!r}")
            kwargs.update(value)
    return cls(*args, **kwargs)


def describe(model, where="model"):
    """The architecture of ``model`` as checkpoint metadata: ``{"class", "config",
    "training"}``, nested modules described the same way. NotDescribableError when a
    constructor argument cannot be written."""
    from fusednn.nn import Module
    if not isinstance(model, Module):
        t = type(model)
        raise NotDescribableError(f"{where}: expected a fusednn.nn.Module, got {t.__module__}.{t.__qualname__}")
    key = _key_of(model, Module, where)
    try:
        config = model.get_config()
    except TypeError as e:  # arguments the signature cannot bind (a constructor changed since?)
        raise NotDescribableError(f"{where} ({key}): get_config: {e}") from None
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise NotDescribableError(f"{where} ({key}): get_config() must return a dict with string keys")
    return {"class": key, "config": {k: _arg_value(v, f"{where} ({key}) argument {k!r}") for k, v in config.items()},
            "training": bool(model.training)}


def build(description, where="architecture"):
    """A new model from a :func:`describe` result (its weights freshly initialized)."""
    from fusednn.nn import Module
    if not isinstance(description, dict) or set(description) != {"class", "config", "training"}:
        raise ValueError(f"{where}: expected a dict with the keys class, config and training")
    cls = _lookup(Module, description["class"], where)
    config = description["config"]
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the config of {description['class']} is not a dict")
    config = {k: _arg_from(v, f"{where} ({description['class']}) argument {k!r}") for k, v in config.items()}
    model = cls.from_config(config)
    if type(description["training"]) is not bool:
        raise ValueError(f"{where}: training must be True or False")
    return model.train(description["training"])


def architecture_difference(a, b):
    """The first difference between the module trees of models ``a`` and ``b`` (a layer's class
    or its ``repr`` settings, a missing layer), as text such as "layer 2: Dropout(p=0.2,
    mode='inverted') vs Dropout(p=0.5, mode='inverted')"; None when they are the same
    (initialization arguments and seeds are not compared)."""
    def layers(model):
        return [(prefix.rstrip(".") or "the model", f"{type(m).__name__}({m.extra_repr()})")
                for prefix, m in model.named_modules()]
    la, lb = layers(a), layers(b)
    for (na, ra), (nb, rb) in zip(la, lb):
        if (na, ra) != (nb, rb):
            return f"layer {na}: {ra} vs {rb}" if na == nb else f"layer {na}: {ra} vs layer {nb}: {rb}"
    if len(la) != len(lb):
        longer, which = (la, "first") if len(la) > len(lb) else (lb, "second")
        name, text = longer[min(len(la), len(lb))]
        return f"layer {name}: {text} only in the {which}"
    return None


# ---- the preprocessing


def _transformer_base():
    from fusednn.data.preprocessing import _Scaler
    return _Scaler


def describe_transformer(transformer, where="preprocessing"):
    """A fitted fusednn.data transformer as checkpoint metadata: ``{"class", "params",
    "state"}`` (its get_params() and fitted attributes)."""
    base = _transformer_base()
    if not isinstance(transformer, base):
        t = type(transformer)
        raise TypeError(f"{where}: expected a fitted fusednn.data transformer (StandardScaler, MinMaxScaler, ...), "
                        f"got {t.__module__}.{t.__qualname__}")
    key = _key_of(transformer, base, where)
    state = transformer._fitted_state()  # NotFittedError before fit
    params = {k: _arg_value(v, f"{where} ({key}) parameter {k!r}") for k, v in transformer.get_params().items()}
    return {"class": key, "params": params,
            "state": {k: _arg_value(v, f"{where} ({key}) attribute {k!r}") for k, v in state.items()}}


def build_transformer(description, where="preprocessing"):
    """The fitted transformer of a :func:`describe_transformer` result."""
    if not isinstance(description, dict) or set(description) != {"class", "params", "state"}:
        raise ValueError(f"{where}: expected a dict with the keys class, params and state")
    cls = _lookup(_transformer_base(), description["class"], where)
    params, state = description["params"], description["state"]
    if not isinstance(params, dict) or not isinstance(state, dict):
        raise ValueError(f"{where}: params and state must be dicts")
    transformer = cls(**{k: _arg_from(v, f"{where} parameter {k!r}") for k, v in params.items()})
    for name, value in state.items():
        if not (isinstance(name, str) and name.isidentifier() and name.endswith("_") and not name.startswith("_")):
            raise ValueError(f"{where}: {name!r} is not the name of a fitted attribute")
        setattr(transformer, name, _arg_from(value, f"{where} attribute {name!r}"))
    if "n_features_in_" not in state:
        raise ValueError(f"{where}: the fitted state has no n_features_in_")
    return transformer


# ---- files


def save(path, model, preprocessing=None):
    """Write ``model`` (architecture, parameters, buffers such as batch-norm running statistics,
    dropout RNG) and the fitted ``preprocessing`` (default: ``model.preprocessing``) to
    ``path`` atomically, without pickle; return the path. NotDescribableError when the
    architecture cannot be written, TypeError/NotFittedError for preprocessing that is not a
    fitted fusednn.data transformer."""
    describe(model)  # raises here, where checkpoint.save would record no architecture
    if preprocessing is None:
        preprocessing = getattr(model, "preprocessing", None)
    return _ckpt.save(path, model, preprocessing=preprocessing)


def load(path):
    """The model saved at ``path`` by :meth:`Module.save <fusednn.nn.Module.save>` (or any
    checkpoint with an architecture: the trainer's ``epoch-NNNN.npz``, the CLI's
    ``final.npz``), with its weights, buffers and dropout RNG, on the CPU, in the training
    mode it was saved in; ``model.preprocessing`` is the saved fitted transformer or None.
    Raises :class:`fusednn.checkpoint.CheckpointError` (naming the file) for a damaged or
    foreign file, a checkpoint without an architecture, or an architecture that does not
    build or does not fit the saved weights."""
    return model_of(_ckpt.load(path))


def model_of(ckpt):
    """The model of a loaded :class:`fusednn.checkpoint.Checkpoint` (see :func:`load`)."""
    if ckpt.architecture is None:
        raise _ckpt.CheckpointError(
            f"{ckpt.path}: holds weights but no model architecture (written by an older fusednn, or for a model "
            "whose layers cannot describe their constructor arguments); build the model in code and load the "
            "weights with fusednn.checkpoint.load(path, model)")
    try:
        model = build(ckpt.architecture)
        _ckpt.restore(ckpt, model)
        model.preprocessing = None if ckpt.preprocessing is None else build_transformer(ckpt.preprocessing)
    except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as e:
        raise _ckpt.CheckpointError(f"{ckpt.path}: the saved model cannot be rebuilt: {type(e).__name__}: {e}") \
            from None
    return model


# ---- prediction


def network_input(model, x):
    """``x`` as the network takes it: ``model.preprocessing`` applied (when set), then cast to
    the model's dtype; a NumPy array with at least one row."""
    if model.preprocessing is not None:
        x = model.preprocessing.transform(x)
    if isinstance(x, list):
        x = np.asarray(x)
    if not hasattr(x, "dtype") or not hasattr(x, "shape"):
        t = type(x)
        raise TypeError(f"x: expected an array, got {t.__module__}.{t.__qualname__}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"x: expected an array of real numbers, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x: expected an array of shape (n, features...) with n >= 1, got shape {x.shape}")
    return x.astype(model.dtype, copy=False)


def _logits(model, x, batch_size):
    from fusednn._checks import integer
    batch_size = integer("batch_size", batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size}")
    x = network_input(model, x)
    xp = device_module(model.device)
    out = [to_host(model.forward(xp.asarray(x[i:i + batch_size]), training=False)) for i in range(0, len(x),
                                                                                             batch_size)]
    return np.concatenate(out) if len(out) > 1 else out[0]


def predict_proba(model, x, batch_size=1024):
    """Class probabilities (softmax of the network's outputs), shape (n, classes), a NumPy
    array of the model's dtype."""
    z = _logits(model, x, batch_size)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict(model, x, batch_size=1024):
    """Class labels (argmax of the network's outputs), int64 of shape (n,)."""
    return np.argmax(_logits(model, x, batch_size), axis=1).astype(np.int64)
