"""Parameters and gradients as views into two flat buffers.

A model that keeps all its parameters in one contiguous buffer (and their gradients in a
second one with the same layout) lets an optimizer update everything with one kernel call
per parameter group, walking each buffer once.
"""

import math
import weakref

import numpy as np

from fusednn._backend import address_of, device_module

_registry = weakref.WeakValueDictionary()  # id(data buffer) -> FlatParameters


class FlatParameters:
    """Named parameters of the given shapes, laid out one after another in ``data`` (1-D), with
    their gradients at the same offsets in ``grad``. ``fp[name]`` is a writable view of the
    parameter, ``fp.grad_of(name)`` of its gradient. Both buffers start at zero, as NumPy arrays
    (``device="cpu"``) or CuPy arrays (``device="cuda"``).

    Example::

        fp = FlatParameters({"w": (256, 784), "b": (256,)})
        fp["w"][...] = init...; opt = Adam(fp); ...; fp.grad_of("w")[...] = dw; opt.step()
    """

    def __init__(self, shapes, dtype=np.float32, device="cpu"):
        xp = device_module(device)
        self.device = device
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
        self._layout = {}
        offset = 0
        for name, shape in dict(shapes).items():
            shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
            if any(d < 0 for d in shape):
                raise ValueError(f"shapes[{name!r}]: expected non-negative sizes, got {shape}")
            size = math.prod(shape)
            self._layout[name] = (offset, size, shape)
            offset += size
        self.data = xp.zeros(offset, dtype)
        self.grad = xp.zeros(offset, dtype)
        _registry[id(self.data)] = self

    def __getitem__(self, name):
        offset, size, shape = self._layout[name]
        return self.data[offset:offset + size].reshape(shape)

    def grad_of(self, name):
        offset, size, shape = self._layout[name]
        return self.grad[offset:offset + size].reshape(shape)

    def names(self):
        return list(self._layout)

    def __contains__(self, name):
        return name in self._layout

    def __len__(self):
        return len(self._layout)

    def __iter__(self):
        return iter(self._layout)

    def __repr__(self):
        return f"FlatParameters({len(self)} parameters, {self.data.size} values, {self.data.dtype})"

    def span_of(self, view):
        """(offset, size) of a view of ``data`` made by ``fp[name]``, or None."""
        if view.base is not self.data or not view.flags.c_contiguous:
            return None
        offset = (address_of(view) - address_of(self.data)) // view.itemsize
        return offset, view.size

    @staticmethod
    def owner_of(array):
        """The FlatParameters whose ``data`` the array is a view of, or None."""
        base = getattr(array, "base", None)
        return None if base is None else _registry.get(id(base))
