"""Parameters and gradients as views into two flat buffers.

A model that keeps all its parameters in one contiguous buffer (and their gradients in a
second one with the same layout) lets an optimizer update everything with one kernel call
per parameter group, walking each buffer once: an optimizer group given as a
:class:`FlatGroup` (``fp.group(names)``, or the FlatParameters itself) hands the optimizer the
spans of both buffers directly.
"""

import math

import numpy as np

from fusednn._backend import device_module

__all__ = ["FlatParameters", "FlatGroup"]


class FlatGroup:
    """Some parameters of one :class:`FlatParameters`, as an optimizer group takes them
    (``{"params": fp.group(["w1", "w2"]), ...}``): the optimizer then knows their gradients and
    updates each run of adjacent parameters as one span of the flat buffers.

    Attributes:
        names: the parameter names, in the given order.
        params: their views (``fp[name]``), in that order.
        spans: ``(data, grad, first, stop)`` for each run of parameters that follow one another
            in the buffers (in ``names`` order): ``data`` and ``grad`` are the 1-D slices of the
            two buffers that hold ``params[first:stop]``.
    """

    def __init__(self, flat, names):
        self.names = list(names)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"names: a parameter appears more than once in {self.names}")
        for name in self.names:
            if name not in flat:
                raise KeyError(f"names: no parameter {name!r}; the parameters are {flat.names()}")
        self.params = [flat[name] for name in self.names]
        runs = []  # [start, stop, first, last] in buffer elements and parameter indices
        for i, name in enumerate(self.names):
            offset, size, _ = flat._layout[name]
            if runs and runs[-1][1] == offset:
                runs[-1][1], runs[-1][3] = offset + size, i + 1
            else:
                runs.append([offset, offset + size, i, i + 1])
        self.spans = [(flat.data[a:b], flat.grad[a:b], first, stop) for a, b, first, stop in runs]

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        return f"FlatGroup({self.names}, {len(self.spans)} span{'s' if len(self.spans) != 1 else ''})"


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

    def slice_of(self, name):
        """The slice of ``data`` (and ``grad``) that holds parameter ``name``, flattened."""
        offset, size, _ = self._layout[name]
        return slice(offset, offset + size)

    def group(self, names=None):
        """A :class:`FlatGroup` of the named parameters (default: all, in layout order), for an
        optimizer's parameter group."""
        return FlatGroup(self, self.names() if names is None else names)
