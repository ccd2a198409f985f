"""Training checkpoints: one ``.npz`` file per checkpoint, written atomically, read without pickle.

A checkpoint holds the model's ``state_dict()`` (parameters and buffers), the optimizer's
``state_dict()``, the model's dropout RNG (``model.rng.seed`` and ``.offset``), the epoch, the
global step, the schedule step and an ``extra`` dict (the trainer keeps its history and the
callbacks' state there), so that a resumed run continues exactly where the saved one stopped.

File layout (format version 3): ``format_version`` (an int64 scalar), ``meta`` (UTF-8 JSON as a
uint8 array), every model array as ``model/<name>``, and the arrays found inside the optimizer
state, ``extra`` and the preprocessing as ``optimizer/<n>``, ``extra/<n>`` and
``preprocessing/<n>``; in the JSON those arrays appear as ``{"__array__": key}``, tuples as
``{"__tuple__": [...]}`` and dicts with non-string keys as ``{"__dict__": [[key, value],
...]}``, and ``meta["arrays"]`` records every array's dtype and shape. Floats survive exactly
(inf and nan included). Version 3 adds ``meta["architecture"]`` (the model's constructor calls,
see :mod:`fusednn.serialize`; None for a model that cannot describe itself),
``meta["preprocessing"]`` (a fitted fusednn.data transformer, or None) and
``meta["optimizer_class"]`` (the optimizer's class name, or None), with which
:func:`fusednn.load` rebuilds the model. Version 2 files (without those) and version 1 files
(without the table of arrays either) are read too.

:func:`save` writes to a temporary file ``.<name>.<pid>.<random>.tmp`` in the target's directory,
fsyncs it, renames it onto the target and fsyncs the directory, so the target is always either
the old or the new complete checkpoint. A run killed while saving leaves its temporary file
behind; the next save into that directory deletes it (once that process is gone).
:func:`load` reads every member in full, so its CRC-32 is checked, and raises
:class:`CheckpointError` for a corrupt, truncated or foreign file, an array whose shape or dtype
differs from the metadata's record, or metadata of the wrong structure or types.
"""

from __future__ import annotations

import io
import json
import os
import re
import secrets
import zipfile
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FORMAT_VERSION", "CheckpointError", "Checkpoint", "save", "load", "restore", "epoch_path", "epoch_files",
           "latest"]

FORMAT_VERSION = 3
_READABLE_VERSIONS = (1, 2, 3)  # version 1 lacks the table of array shapes and dtypes, 1 and 2 the architecture
_OPTIONAL_KEYS = ("architecture", "preprocessing", "optimizer_class")  # version 3's; None when absent
_EPOCH_FILE = re.compile(r"epoch-(\d+)\.npz")


class CheckpointError(ValueError):
    """A file that is not a readable fusednn checkpoint of this format version."""


@dataclass
class Checkpoint:
    """What :func:`load` read: ``model`` (name -> array, as ``model.state_dict()``),
    ``optimizer`` (an optimizer ``state_dict()`` or None), ``rng`` (``{"seed", "offset"}`` or
    None), ``epoch``, ``step``, ``schedule_step``, ``extra``, and (None in files before
    version 3) ``architecture``, ``preprocessing`` and ``optimizer_class``."""

    path: str
    model: dict
    optimizer: dict | None = None
    rng: dict | None = None
    epoch: int = 0
    step: int = 0
    schedule_step: int = 0
    extra: dict = field(default_factory=dict)
    architecture: dict | None = None
    preprocessing: dict | None = None
    optimizer_class: str | None = None


# ---- JSON with arrays on the side

_MAX_DEPTH = 64  # deeper nesting is refused when saving, and is damage when loading


def _encode(obj, prefix, arrays, where, depth=0):
    """obj as JSON data; its arrays move into ``arrays`` under ``prefix/<n>``."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"{where}: object arrays cannot be saved (checkpoints are loaded without pickle)")
        key = f"{prefix}/{len(arrays)}"
        arrays[key] = obj
        return {"__array__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        items = [_encode(v, prefix, arrays, f"{where}[{i}]", depth + 1) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, prefix, arrays, f"{where}[{k!r}]", depth + 1) for k, v in obj.items()}
        return {"__dict__": [[_encode(k, prefix, arrays, where, depth + 1),
                              _encode(v, prefix, arrays, f"{where}[{k!r}]", depth + 1)] for k, v in obj.items()]}
    raise TypeError(f"{where}: cannot save a {type(obj).__module__}.{type(obj).__qualname__} (expected arrays, "
                    "numbers, strings, None, and lists, tuples and dicts of them)")


def _decode(obj, arrays, depth=0):
    """The value that _encode turned into obj; TypeError/ValueError/KeyError for anything that
    _encode cannot have written."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"metadata nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, list):
        return [_decode(v, arrays, depth + 1) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.keys() == {"__array__"}:
        if type(obj["__array__"]) is not str or obj["__array__"].startswith("model/"):
            raise TypeError(f"bad array reference {obj['__array__']!r}")
        return arrays[obj["__array__"]]
    if obj.keys() == {"__tuple__"}:
        if type(obj["__tuple__"]) is not list:
            raise TypeError("a __tuple__ entry must hold a list")
        return tuple(_decode(v, arrays, depth + 1) for v in obj["__tuple__"])
    if obj.keys() == {"__dict__"}:
        pairs = obj["__dict__"]
        if type(pairs) is not list or not all(type(p) is list and len(p) == 2 for p in pairs):
            raise TypeError("a __dict__ entry must hold a list of [key, value] pairs")
        out = {}
        for k, v in pairs:
            key = _decode(k, arrays, depth + 1)
            if not isinstance(key, (str, int, float, bool, tuple, type(None))):
                raise TypeError(f"a dict key cannot be a {type(key).__name__}")
            out[key] = _decode(v, arrays, depth + 1)
        return out
    return {k: _decode(v, arrays, depth + 1) for k, v in obj.items()}


# ---- writing


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # a platform that cannot open directories (Windows): rename is all we have
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path):
    """``.<name>.<pid>.<random>.tmp`` next to ``path``: the pattern _clean_temp_files knows."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


_TEMP_FILE = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")


def _pid_alive(pid):
    if os.name == "nt" or pid <= 0:  # os.kill(pid, 0) would signal on Windows; 0 is a process group
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's live process (or a pid we cannot ask about): keep its file
    return True


def _clean_temp_files(directory):
    """Delete the temporary files that saves of processes no longer running left in ``directory``
    (killed mid-write): only names of save's own pattern, never those of a live process."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        m = _TEMP_FILE.fullmatch(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def save(path, model, optimizer=None, *, epoch=0, step=0, schedule_step=0, extra=None, preprocessing=None):
    """Write a checkpoint of ``model`` (and ``optimizer``) to ``path`` atomically; return the path.

    ``extra``: a dict of JSON-able values and arrays (nested lists, tuples and dicts allowed).
    ``preprocessing``: a fitted fusednn.data transformer saved with the model (see
    :mod:`fusednn.serialize`). The model's architecture is recorded when it can describe
    itself (else None: the file still restores into a model built in code).
    The file gets the permissions of any new file (0666 less the umask). Temporary files that
    earlier saves into the same directory left behind when their process was killed are deleted.
    """
    path = os.fspath(path)
    arrays = {}
    state = model.state_dict()
    for name, value in state.items():
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise TypeError(f"model.state_dict()[{name!r}]: object arrays cannot be saved")
        arrays[f"model/{name}"] = value
    from fusednn import serialize
    try:
        architecture = serialize.describe(model)
    except serialize.NotDescribableError:
        architecture = None
    rng = getattr(model, "rng", None)
    meta = {
        "epoch": int(epoch), "step": int(step), "schedule_step": int(schedule_step), "model": list(state),
        "rng": None if rng is None else {"seed": int(rng.seed), "offset": int(rng.offset)},
        "optimizer": None if optimizer is None else _encode(optimizer.state_dict(), "optimizer", arrays, "optimizer"),
        "extra": _encode(dict(extra or {}), "extra", arrays, "extra"),
        "architecture": _encode(architecture, "architecture", arrays, "architecture"),
        "preprocessing": None if preprocessing is None else _encode(serialize.describe_transformer(preprocessing),
                                                                    "preprocessing", arrays, "preprocessing"),
        "optimizer_class": None if optimizer is None else type(optimizer).__name__,
    }
    for key in ("epoch", "step", "schedule_step"):
        if meta[key] < 0:
            raise ValueError(f"{key}: expected an integer >= 0, got {meta[key]}")
    meta["arrays"] = {k: [np.asarray(a).dtype.str, list(np.shape(a))] for k, a in arrays.items()}
    arrays["format_version"] = np.array(FORMAT_VERSION, np.int64)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    _clean_temp_files(directory)
    while True:
        tmp = _temp_name(os.path.join(directory, os.path.basename(path)))
        try:  # mode 0666: the umask applies, as for every other file of the run
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
    return path


# ---- reading


def _read_members(path, f):
    """name -> array for every member of the .npz file ``f``, each read in full through zipfile
    (which checks the member's CRC-32) and parsed by NumPy without pickle; the header's shape
    and dtype must account for every byte of the member."""
    if f.read(6) == b"\x93NUMPY":
        raise CheckpointError(f"{path}: not a fusednn checkpoint (a single .npy array, not an .npz file)")
    f.seek(0)
    arrays = {}
    with zipfile.ZipFile(f) as zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in arrays:
                raise CheckpointError(f"{path}: not a fusednn checkpoint (unexpected zip member {name!r})")
            data = zf.read(info)  # raises BadZipFile on a CRC mismatch
            buf = io.BytesIO(data)
            array = np.lib.format.read_array(buf, allow_pickle=False)
            if buf.tell() != len(data):
                raise CheckpointError(f"{path}: damaged checkpoint: member {name!r} holds {len(data) - buf.tell()} "
                                      f"bytes more than its header's shape {array.shape} and dtype {array.dtype}")
            arrays[name[:-4]] = array
    return arrays


def load(path, model=None, optimizer=None):
    """Read the checkpoint at ``path`` (and :func:`restore` it into ``model`` and ``optimizer``
    when given). Raises :class:`CheckpointError` naming the file when it is corrupt, truncated,
    not a fusednn checkpoint or of another format version: every member's CRC-32 is checked,
    every array must have the shape and dtype that the metadata records for it, and the
    metadata must have the types that :func:`save` writes."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # a missing file is a FileNotFoundError, not a CheckpointError
        try:
            arrays = _read_members(path, f)
        except CheckpointError:
            raise
        except Exception as err:  # zipfile, numpy and OS errors all mean a damaged file
            raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated file?): "
                                  f"{type(err).__name__}: {err}") from err
    if "format_version" not in arrays or "meta" not in arrays:
        raise CheckpointError(f"{path}: not a fusednn checkpoint (no format_version/meta entries)")
    version = arrays.pop("format_version")
    if version.shape != () or version.dtype.kind not in "iu" or int(version) not in _READABLE_VERSIONS:
        raise CheckpointError(f"{path}: checkpoint format version {version.tolist()!r}, but this fusednn reads "
                              f"versions {', '.join(map(str, _READABLE_VERSIONS))}")
    raw = arrays.pop("meta")
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise TypeError(f"meta: expected a 1-d uint8 array, got {raw.dtype} of shape {raw.shape}")
        meta = json.loads(raw.tobytes().decode())
        _check_meta(meta, arrays, int(version))
        ckpt = Checkpoint(
            path=path, model={name: arrays[f"model/{name}"] for name in meta["model"]},
            optimizer=_decode(meta["optimizer"], arrays), rng=meta["rng"], epoch=meta["epoch"], step=meta["step"],
            schedule_step=meta["schedule_step"], extra=_decode(meta["extra"], arrays),
            **{key: _decode(meta.get(key), arrays) for key in _OPTIONAL_KEYS})
    except (ValueError, KeyError, TypeError, RecursionError) as err:  # JSONDecodeError and UnicodeError included
        raise CheckpointError(f"{path}: damaged checkpoint metadata: {type(err).__name__}: {err}") from None
    if model is not None:
        restore(ckpt, model, optimizer)
    return ckpt


def _count(where, value):
    if type(value) is not int or value < 0:
        raise TypeError(f"{where}: expected an integer >= 0, got {value!r}")


def _check_meta(meta, arrays, version):
    """The metadata has the keys and types that save writes, and the arrays are exactly those it
    lists, with the recorded shapes and dtypes (so a damaged array header cannot pass)."""
    keys = {"epoch", "step", "schedule_step", "model", "rng", "optimizer", "extra"} | ({"arrays"} if version >= 2
                                                                                       else set())
    if type(meta) is not dict or not keys <= set(meta) <= keys | set(_OPTIONAL_KEYS):
        raise TypeError(f"meta: expected a dict with the keys {sorted(keys)} (and {', '.join(_OPTIONAL_KEYS)})")
    for key in ("epoch", "step", "schedule_step"):
        _count(f"meta[{key!r}]", meta[key])
    rng = meta["rng"]
    if rng is not None:
        if type(rng) is not dict or set(rng) != {"seed", "offset"}:
            raise TypeError(f"meta['rng']: expected None or {{'seed': int, 'offset': int}}, got {rng!r}")
        _count("meta['rng']['seed']", rng["seed"])
        _count("meta['rng']['offset']", rng["offset"])
    names = meta["model"]
    if type(names) is not list or not all(type(n) is str for n in names) or len(set(names)) != len(names):
        raise TypeError("meta['model']: expected a list of distinct parameter names")
    table = meta["arrays"] if version >= 2 else {k: [a.dtype.str, list(a.shape)] for k, a in arrays.items()}
    if type(table) is not dict or set(table) != set(arrays):
        raise ValueError(f"meta['arrays']: lists {sorted(table) if type(table) is dict else table!r}, but the "
                         f"file holds {sorted(arrays)}")
    for key, array in arrays.items():
        entry = table[key]
        if (type(entry) is not list or len(entry) != 2 or type(entry[0]) is not str or type(entry[1]) is not list
                or entry != [array.dtype.str, list(array.shape)]):
            raise ValueError(f"array {key!r}: the metadata records {entry!r}, the file holds "
                             f"{[array.dtype.str, list(array.shape)]!r}")
    missing = [n for n in names if f"model/{n}" not in arrays]
    if missing:
        raise KeyError(f"model arrays {missing} are missing")
    if meta["optimizer"] is not None and type(meta["optimizer"]) is not dict:
        raise TypeError("meta['optimizer']: expected None or a dict")
    if type(meta["extra"]) is not dict:
        raise TypeError("meta['extra']: expected a dict")
    for key in ("architecture", "preprocessing"):
        if meta.get(key) is not None and type(meta[key]) is not dict:
            raise TypeError(f"meta[{key!r}]: expected None or a dict")
    if meta.get("optimizer_class") is not None and type(meta["optimizer_class"]) is not str:
        raise TypeError("meta['optimizer_class']: expected None or a string")


def restore(checkpoint, model, optimizer=None):
    """Copy a loaded checkpoint into ``model`` (state_dict and ``model.rng``) and ``optimizer``."""
    model.load_state_dict(checkpoint.model)
    rng = getattr(model, "rng", None)
    if rng is not None and checkpoint.rng is not None:
        rng.seed, rng.offset = checkpoint.rng["seed"], checkpoint.rng["offset"]
    if optimizer is not None:
        if checkpoint.optimizer is None:
            raise CheckpointError(f"{checkpoint.path}: holds no optimizer state")
        optimizer.load_state_dict(checkpoint.optimizer)


# ---- numbered checkpoints in a directory


def epoch_path(directory, epoch):
    """``<directory>/epoch-0005.npz``: where the trainer's Checkpoint callback saves epoch 5."""
    return os.path.join(os.fspath(directory), f"epoch-{int(epoch):04d}.npz")


def epoch_files(directory):
    """The ``epoch-NNNN.npz`` files in ``directory``, oldest epoch first."""
    directory = os.fspath(directory)
    found = sorted((int(m.group(1)), name) for name in os.listdir(directory) if (m := _EPOCH_FILE.fullmatch(name)))
    return [os.path.join(directory, name) for _, name in found]


def latest(directory):
    """The path of the highest-numbered ``epoch-NNNN.npz`` in ``directory``, or None."""
    files = epoch_files(directory)
    return files[-1] if files else None
