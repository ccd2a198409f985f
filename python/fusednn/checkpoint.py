"""Training checkpoints: one ``.npz`` file per checkpoint, written atomically, read without pickle.

A checkpoint holds the model's ``state_dict()`` (parameters and buffers), the optimizer's
``state_dict()``, the model's dropout RNG (``model.rng.seed`` and ``.offset``), the epoch, the
global step, the schedule step and an ``extra`` dict (the trainer keeps its history and the
callbacks' state there), so that a resumed run continues exactly where the saved one stopped.

File layout (format version 1): ``format_version`` (an int64 scalar), ``meta`` (UTF-8 JSON as a
uint8 array), every model array as ``model/<name>``, and the arrays found inside the optimizer
state and ``extra`` as ``optimizer/<n>`` and ``extra/<n>``; in the JSON those arrays appear as
``{"__array__": key}``, tuples as ``{"__tuple__": [...]}`` and dicts with non-string keys as
``{"__dict__": [[key, value], ...]}``. Floats survive exactly (inf and nan included).

:func:`save` writes to a temporary file in the target's directory, fsyncs it, renames it onto
the target and fsyncs the directory, so the target is always either the old or the new
complete checkpoint (a run killed while saving may leave a ``.<name>.*.tmp`` file behind).
:func:`load` raises :class:`CheckpointError` for a corrupt, truncated or foreign file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field

import numpy as np

__all__ = ["FORMAT_VERSION", "CheckpointError", "Checkpoint", "save", "load", "restore", "epoch_path", "epoch_files",
           "latest"]

FORMAT_VERSION = 1
_EPOCH_FILE = re.compile(r"epoch-(\d+)\.npz")


class CheckpointError(ValueError):
    """A file that is not a readable fusednn checkpoint of this format version."""


@dataclass
class Checkpoint:
    """What :func:`load` read: ``model`` (name -> array, as ``model.state_dict()``),
    ``optimizer`` (an optimizer ``state_dict()`` or None), ``rng`` (``{"seed", "offset"}`` or
    None), ``epoch``, ``step``, ``schedule_step`` and ``extra``."""

    path: str
    model: dict
    optimizer: dict | None = None
    rng: dict | None = None
    epoch: int = 0
    step: int = 0
    schedule_step: int = 0
    extra: dict = field(default_factory=dict)


# ---- JSON with arrays on the side


def _encode(obj, prefix, arrays, where):
    """obj as JSON data; its arrays move into ``arrays`` under ``prefix/<n>``."""
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
        items = [_encode(v, prefix, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, prefix, arrays, f"{where}[{k!r}]") for k, v in obj.items()}
        return {"__dict__": [[_encode(k, prefix, arrays, where), _encode(v, prefix, arrays, f"{where}[{k!r}]")]
                             for k, v in obj.items()]}
    raise TypeError(f"{where}: cannot save a {type(obj).__module__}.{type(obj).__qualname__} (expected arrays, "
                    "numbers, strings, None, and lists, tuples and dicts of them)")


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if obj.keys() == {"__array__"}:
        return arrays[obj["__array__"]]
    if obj.keys() == {"__tuple__"}:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if obj.keys() == {"__dict__"}:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in obj["__dict__"]}
    return {k: _decode(v, arrays) for k, v in obj.items()}


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


def save(path, model, optimizer=None, *, epoch=0, step=0, schedule_step=0, extra=None):
    """Write a checkpoint of ``model`` (and ``optimizer``) to ``path`` atomically; return the path.

    ``extra``: a dict of JSON-able values and arrays (nested lists, tuples and dicts allowed).
    """
    path = os.fspath(path)
    arrays = {}
    state = model.state_dict()
    for name, value in state.items():
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise TypeError(f"model.state_dict()[{name!r}]: object arrays cannot be saved")
        arrays[f"model/{name}"] = value
    rng = getattr(model, "rng", None)
    meta = {
        "epoch": int(epoch), "step": int(step), "schedule_step": int(schedule_step), "model": list(state),
        "rng": None if rng is None else {"seed": int(rng.seed), "offset": int(rng.offset)},
        "optimizer": None if optimizer is None else _encode(optimizer.state_dict(), "optimizer", arrays, "optimizer"),
        "extra": _encode(dict(extra or {}), "extra", arrays, "extra"),
    }
    arrays["format_version"] = np.array(FORMAT_VERSION, np.int64)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
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


def load(path, model=None, optimizer=None):
    """Read the checkpoint at ``path`` (and :func:`restore` it into ``model`` and ``optimizer``
    when given). Raises :class:`CheckpointError` naming the file when it is corrupt, truncated,
    not a fusednn checkpoint or of another format version."""
    path = os.fspath(path)
    with open(path, "rb") as f:  # a missing file is a FileNotFoundError, not a CheckpointError
        try:
            z = np.load(f, allow_pickle=False)  # closed with f
            arrays = {k: z[k] for k in z.files} if hasattr(z, "files") else {}  # {}: a lone .npy array
        except Exception as err:  # zipfile, numpy and OS errors all mean a damaged file
            raise CheckpointError(f"{path}: not a readable checkpoint (corrupt or truncated file?): "
                                  f"{type(err).__name__}: {err}") from err
    if "format_version" not in arrays or "meta" not in arrays:
        raise CheckpointError(f"{path}: not a fusednn checkpoint (no format_version/meta entries)")
    version = arrays.pop("format_version")
    if version.shape != () or version.dtype.kind not in "iu" or int(version) != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version.tolist()!r}, but this fusednn reads "
                              f"version {FORMAT_VERSION}")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
        ckpt = Checkpoint(
            path=path, model={name: arrays[f"model/{name}"] for name in meta["model"]},
            optimizer=_decode(meta["optimizer"], arrays), rng=meta["rng"], epoch=meta["epoch"], step=meta["step"],
            schedule_step=meta["schedule_step"], extra=_decode(meta["extra"], arrays))
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: damaged checkpoint metadata: {type(err).__name__}: {err}") from err
    if model is not None:
        restore(ckpt, model, optimizer)
    return ckpt


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
