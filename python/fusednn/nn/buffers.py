"""Output and gradient arrays that layers and losses reuse from step to step.

A training step makes the same arrays every time: each layer's output, its backward's input
gradient, the loss's gradient. Allocating them afresh costs a page fault per page of each one,
every step. :class:`ReusableBuffers` keeps up to ``KEEP`` arrays per slot (a name such as
``"y"`` or ``"dx"``) and hands one back only when nothing outside it references it anymore:
not the caller's variables, not a view, not another layer's cache (``sys.getrefcount`` counts
them all). So an array a user still holds is never written again; they get a new one.

Two arrays per slot let a loop that keeps the previous step's output in a variable (as
``logits = model(x)`` does until it is rebound) alternate between them. A training forward of
a root :class:`fusednn.nn.Sequential` first drops the activations its layers cached for the
previous backward (:meth:`fusednn.nn.Module.release_activations`), so those become free.

This relies on CPython's reference counts; it is an optimization only: an array that looks
referenced is simply not reused.
"""

import sys

import numpy as np

__all__ = ["ReusableBuffers"]

KEEP = 2

_getrefcount = sys.getrefcount


def _reference_count(kept):
    """sys.getrefcount of kept's first array, taken as ReusableBuffers.get takes it (the
    loop's name holds one reference)."""
    for a in kept:
        return _getrefcount(a)


# The count of an array that only its slot's list (and get's loop name) holds, measured the
# same way (the interpreter's own temporary references differ between Python versions); any
# other holder adds at least one. get() inlines _reference_count's loop (tests/test_allocations.py
# fails if the two disagree: a free array never reused, or a held one overwritten).
_ONLY_THE_LIST = _reference_count([np.empty(0)])


class ReusableBuffers:
    """Arrays by slot, reused when no one else holds them (see the module's docstring)."""

    __slots__ = ("_slots",)

    def __init__(self):
        self._slots = {}

    def get(self, slot, shape, dtype, xp=np):
        """An uninitialized C-contiguous array of ``shape`` and ``dtype`` from the array module
        ``xp`` (numpy or cupy): a kept one that only this object references, or a new one (kept
        when the slot has room, or in place of a kept one of another shape that is free)."""
        kept = self._slots.get(slot)
        # The common case first: a free NumPy array of a shape given as a tuple (a shape of another
        # type, e.g. a NumPy array of the sizes, is normalized below before any comparison).
        if kept is not None and xp is np and type(shape) is tuple:
            for a in kept:
                if _getrefcount(a) == _ONLY_THE_LIST and a.shape == shape and a.dtype == dtype and (
                        type(a) is np.ndarray):
                    return a
        if type(shape) is not tuple:
            shape = tuple(shape)
        if not isinstance(dtype, np.dtype):
            dtype = np.dtype(dtype)
        if kept is None:
            kept = self._slots[slot] = []
        stale = None
        i = -1
        for a in kept:
            i += 1
            if _getrefcount(a) != _ONLY_THE_LIST:
                continue
            if a.shape == shape and (a.dtype is dtype or a.dtype == dtype) and (
                    type(a) is np.ndarray if xp is np else type(a).__module__.split(".")[0] == xp.__name__):
                return a
            stale = i
        new = xp.empty(shape, dtype)
        if len(kept) < KEEP:
            kept.append(new)
        elif stale is not None:
            kept[stale] = new
        return new

    def clear(self):
        """Forget every kept array (they stay valid for whoever still holds them)."""
        self._slots.clear()
