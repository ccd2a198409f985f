"""Batched, seeded image augmentation with torchvision.transforms.v2's names and arguments.

Every transform draws its own parameters for every sample of a batch from the Philox stream keyed
by ``(seed, offset, sample index)`` (:func:`fusednn.ops.augment_params`), so ``t(x, seed=s,
offset=o)`` is a pure function of its inputs: the same on any thread count and on the GPU.
:class:`Compose` fuses its transforms into one :func:`fusednn.ops.augment` call.

Inputs are batches: (N, H, W), (N, C, H, W), or flat rows (N, C*H*W) with ``image_shape``, of
float32 or float64, as NumPy or CuPy arrays. docs/data.md lists the differences from torchvision
(per-sample parameters; continuous shifts; no clamping unless asked; the fill rule at the border).
"""

import numpy as np

from fusednn import _checks
from fusednn._backend import array_module, is_array
from fusednn.ops.augment import (apply_drawn, check_spec, draw_and_apply, draw_params, image_geometry,
                                 spec_values)

__all__ = ["Transform", "Compose", "RandomAffine", "RandomRotation", "RandomZoom", "RandomShift",
           "RandomHorizontalFlip", "RandomVerticalFlip", "ColorJitter", "GaussianNoise", "RandomErasing",
           "AUGMENT_KEYS", "from_string", "Standardized"]

# The fused pass applies the steps in this order; a Compose must list its transforms in it.
_STAGES = ("geometry", "color", "noise", "erasing")
_INTERPOLATIONS = ("bilinear", "nearest")


def _interpolation(value):
    if isinstance(value, str) and value.lower() in _INTERPOLATIONS:
        return value.lower()
    name = getattr(value, "value", None)  # torchvision's InterpolationMode
    if isinstance(name, str) and name.lower() in _INTERPOLATIONS:
        return name.lower()
    raise ValueError(f"interpolation: expected 'bilinear' or 'nearest', got {value!r}")


def _fill(value):
    return _checks.real("fill", 0.0 if value is None else value, "a number")


class Transform:
    """Base class: a transform contributes settings to the spec of :func:`fusednn.ops.augment_params`
    (``spec()``) and options to the :func:`fusednn.ops.augment` call."""

    stage = "geometry"
    interpolation = None  # geometric transforms set these
    fill = None
    clip = None           # GaussianNoise(clip=True) sets (0, 1)

    def spec(self):
        """This transform's part of the ``augment_params`` spec."""
        raise NotImplementedError

    def _parts(self):
        return [self]

    def params(self, n, *, seed, offset=0, image_shape, same_on_batch=False):
        """The parameters of ``n`` samples: the dict of :func:`fusednn.ops.augment_params`."""
        return Compose(self._parts()).params(n, seed=seed, offset=offset, image_shape=image_shape,
                                             same_on_batch=same_on_batch)

    def __call__(self, x, *, seed, offset=0, image_shape=None, same_on_batch=False, out=None):
        """The transformed batch: a new array of x's shape and dtype (or ``out``)."""
        return Compose(self._parts())(x, seed=seed, offset=offset, image_shape=image_shape,
                                      same_on_batch=same_on_batch, out=out)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self):
        return {}


class Compose(Transform):
    """Several transforms as one fused :func:`fusednn.ops.augment` call.

    The fused pass applies geometry (flips and affine maps), color (brightness, contrast), noise,
    clipping and erasing, in this order, so the transforms must be listed in that order of
    stages (ValueError otherwise). Within the geometry stage any order is exact: a flip listed
    after an affine transform is applied first with the mirrored affine parameters (negated angle,
    shears and shift along the flipped axis), which is the same map. Each spec key may be set by
    one transform only (e.g. RandomAffine(scale=...) and RandomZoom together are a ValueError).
    ``image_shape`` is the default for flat rows.
    """

    def __init__(self, transforms, image_shape=None):
        transforms = list(transforms)
        parts = []
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"transforms: expected fusednn.data.transforms objects, got {type(t).__name__}")
            parts.extend(t._parts())
        self.transforms = transforms
        self._flat = parts
        self.image_shape = None if image_shape is None else tuple(image_shape)
        stages = [_STAGES.index(t.stage) for t in parts]
        for a, b in zip(range(len(parts)), range(1, len(parts))):
            if stages[b] < stages[a]:
                raise ValueError(f"transforms: {type(parts[b]).__name__} ({parts[b].stage}) cannot follow "
                                 f"{type(parts[a]).__name__} ({parts[a].stage}): the fused pass applies "
                                 f"{', '.join(_STAGES)} in this order")
        spec, owner = {}, {}
        for t in parts:
            for key, value in t.spec().items():
                if key in spec:
                    raise ValueError(f"transforms: {type(t).__name__} and {owner[key]} both set {key!r}; "
                                     "one transform per setting")
                spec[key], owner[key] = value, type(t).__name__
        self._values = spec_values(check_spec(spec))  # the C++ draw's numbers, once
        self._spec = spec
        geometric = [t for t in parts if t.interpolation is not None]
        for name in ("interpolation", "fill"):
            values = {getattr(t, name) for t in geometric}
            if len(values) > 1:
                raise ValueError(f"transforms: the geometric transforms disagree on {name} ({sorted(values)}); "
                                 "the fused pass has one")
        self._interpolation = geometric[0].interpolation if geometric else "bilinear"
        self._fill_value = geometric[0].fill if geometric else 0.0
        clips = [t.clip for t in parts if t.clip is not None]
        self._clip = clips[0] if clips else None
        # Flips listed after an affine transform: folded in front of it (see the class docstring).
        first_affine = next((i for i, t in enumerate(parts) if isinstance(t, _Affine)), len(parts))
        self._mirror = {t.axis for i, t in enumerate(parts) if isinstance(t, _Flip) and i > first_affine}

    def _parts(self):
        return list(self._flat)

    def spec(self):
        return dict(self._spec)

    def params(self, n, *, seed, offset=0, image_shape, same_on_batch=False):
        p = draw_params(n, self._values, seed=seed, offset=offset, image_shape=image_shape,
                        same_on_batch=same_on_batch)
        for axis in self._mirror:
            flipped = p[axis + "flip"]
            for key in ("angle", "shear_x", "shear_y", "translate_x" if axis == "h" else "translate_y"):
                p[key][flipped] = -p[key][flipped]
        return p

    def __call__(self, x, *, seed, offset=0, image_shape=None, same_on_batch=False, out=None):
        if not is_array(x):
            raise TypeError(f"x: expected a numpy.ndarray or cupy.ndarray, got {type(x).__name__}")
        image_shape = self.image_shape if image_shape is None else image_shape
        c, h, w = image_geometry(x.shape, image_shape)
        if type(x) is np.ndarray and (out is None or type(out) is np.ndarray):
            # On the CPU the parameters are drawn block by block by the threads that apply them.
            return draw_and_apply(x, self._values, self._mirror, seed=seed, offset=offset,
                                  same_on_batch=same_on_batch, geometry=(c, h, w), interpolation=self._interpolation,
                                  fill=self._fill_value, clip=self._clip, out=out)
        # Compose's own draw (not an override): valid parameters by construction, applied without
        # ops.augment's per-call check of every parameter array.
        p = Compose.params(self, x.shape[0], seed=seed, offset=offset, image_shape=(c, h, w),
                           same_on_batch=same_on_batch)
        return apply_drawn(x, p, (c, h, w), self._interpolation, self._fill_value, self._clip, out)

    def __repr__(self):
        inner = ",\n    ".join(repr(t) for t in self.transforms)
        return f"Compose([\n    {inner}\n])"


class _Affine(Transform):
    stage = "geometry"

    def __init__(self, interpolation, fill):
        self.interpolation = _interpolation(interpolation)
        self.fill = _fill(fill)


class RandomAffine(_Affine):
    """torchvision's RandomAffine: angle ~ U(degrees) (a number d means (-d, d); clockwise on
    screen, as torchvision's F.affine), shift ~ U(-fx W, fx W) x U(-fy H, fy H) pixels for
    ``translate=(fx, fy)`` (continuous, not rounded), zoom ~ U(scale), shear ~ U(shear) degrees
    (s, (lo, hi) for x only, or (xlo, xhi, ylo, yhi)). ``interpolation`` "nearest" (torchvision's
    default) or "bilinear"; ``fill`` outside the input."""

    def __init__(self, degrees, translate=None, scale=None, shear=None, interpolation="nearest", fill=0):
        super().__init__(interpolation, fill)
        self.degrees, self.translate, self.scale, self.shear = degrees, translate, scale, shear
        check_spec(self.spec())

    def spec(self):
        s = {"degrees": self.degrees}
        if self.translate is not None:
            s["translate"] = self.translate
        if self.scale is not None:
            s["scale"] = self.scale
        if self.shear is not None:
            s["shear"] = self.shear
        return s

    def _repr_args(self):
        return {"degrees": self.degrees, "translate": self.translate, "scale": self.scale, "shear": self.shear,
                "interpolation": self.interpolation, "fill": self.fill}


class RandomRotation(_Affine):
    """torchvision's RandomRotation: angle ~ U(degrees), about the image center (no ``expand``)."""

    def __init__(self, degrees, interpolation="nearest", fill=0):
        super().__init__(interpolation, fill)
        self.degrees = degrees
        check_spec(self.spec())

    def spec(self):
        return {"degrees": self.degrees}

    def _repr_args(self):
        return {"degrees": self.degrees, "interpolation": self.interpolation, "fill": self.fill}


class RandomZoom(_Affine):
    """The course's random zoom: scale ~ U(1 - z, 1 + z) for a number z in [0, 1), or U(lo, hi)."""

    def __init__(self, zoom, interpolation="bilinear", fill=0):
        super().__init__(interpolation, fill)
        if isinstance(zoom, (tuple, list)):
            self.zoom = tuple(zoom)
            scale = self.zoom
        else:
            z = _checks.real("zoom", zoom, "a number in [0, 1) or a pair (low, high)")
            if not 0 <= z < 1:
                raise ValueError(f"zoom: expected a number in [0, 1) or a pair (low, high), got {zoom!r}")
            self.zoom = z
            scale = (1 - z, 1 + z)
        self._scale = scale
        check_spec(self.spec())

    def spec(self):
        return {"scale": self._scale}

    def _repr_args(self):
        return {"zoom": self.zoom, "interpolation": self.interpolation, "fill": self.fill}


class RandomShift(_Affine):
    """The course's random shift: a shift ~ U(-f W, f W) x U(-f H, f H) pixels for ``shift=f`` (or
    (fx, fy)), fractions of the image size."""

    def __init__(self, shift, interpolation="bilinear", fill=0):
        super().__init__(interpolation, fill)
        self.shift = shift
        check_spec(self.spec())

    def spec(self):
        return {"translate": self.shift}

    def _repr_args(self):
        return {"shift": self.shift, "interpolation": self.interpolation, "fill": self.fill}


class _Flip(Transform):
    stage = "geometry"
    axis = None

    def __init__(self, p=0.5):
        self.p = _checks.in_unit_interval("p", p)

    def spec(self):
        return {self.axis + "flip": self.p}

    def _repr_args(self):
        return {"p": self.p}


class RandomHorizontalFlip(_Flip):
    """Flip left-right with probability ``p``."""
    axis = "h"


class RandomVerticalFlip(_Flip):
    """Flip top-bottom with probability ``p``."""
    axis = "v"


class ColorJitter(Transform):
    """torchvision's ColorJitter for brightness and contrast: factors ~ U(max(0, 1 - b), 1 + b)
    (or U(lo, hi) for a pair); brightness multiplies, contrast blends with the image's mean gray
    level. The two commute, so torchvision's random order of them does not matter. Saturation and
    hue are not supported (ValueError unless 0/None). Nothing is clamped."""

    stage = "color"

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0):
        for name, value in (("saturation", saturation), ("hue", hue)):
            if value not in (None, 0, 0.0):
                raise ValueError(f"{name}: not supported by fusednn's ColorJitter (only brightness and contrast), "
                                 f"got {value!r}")
        self.brightness = 0 if brightness is None else brightness
        self.contrast = 0 if contrast is None else contrast
        check_spec(self.spec())

    def spec(self):
        return {"brightness": self.brightness, "contrast": self.contrast}

    def _repr_args(self):
        return {"brightness": self.brightness, "contrast": self.contrast}


class GaussianNoise(Transform):
    """torchvision's GaussianNoise: adds ``mean + sigma * z``, z standard normal from the Philox
    stream of the sample (per pixel); ``clip=True`` clamps the result to [0, 1] (as torchvision),
    before any erasing."""

    stage = "noise"

    def __init__(self, mean=0.0, sigma=0.1, clip=True):
        self.mean = _checks.real("mean", mean)
        self.sigma = _checks.at_least_zero("sigma", sigma)
        self.clip = (0.0, 1.0) if _checks.flag("clip", clip) else None
        check_spec(self.spec())

    def spec(self):
        return {"noise": self.sigma, "noise_mean": self.mean}

    def _repr_args(self):
        return {"mean": self.mean, "sigma": self.sigma, "clip": self.clip is not None}


class RandomErasing(Transform):
    """torchvision's RandomErasing: with probability ``p`` a rectangle of area fraction ~ U(scale)
    and log aspect ratio ~ U(log ratio) (up to 10 tries to fit inside the image, else none) is set
    to ``value`` (a number) or, for ``value="random"``, to standard normal noise, in every channel."""

    stage = "erasing"

    def __init__(self, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0):
        self.p, self.scale, self.ratio, self.value = p, scale, ratio, value
        check_spec(self.spec())

    def spec(self):
        return {"erase": self.p, "erase_scale": self.scale, "erase_ratio": self.ratio, "erase_value": self.value}

    def _repr_args(self):
        return {"p": self.p, "scale": self.scale, "ratio": self.ratio, "value": self.value}


# The keys of the command line's --augment spec and what each one sets.
AUGMENT_KEYS = {
    "rotate": "RandomAffine degrees (a number d: angles ~ U(-d, d))",
    "shift": "RandomAffine translate (a fraction f of the image size: shifts ~ U(-f, f) * size)",
    "zoom": "RandomAffine scale (z in [0, 1): factors ~ U(1 - z, 1 + z))",
    "shear": "RandomAffine shear (degrees s: x-shear ~ U(-s, s))",
    "hflip": "RandomHorizontalFlip p",
    "vflip": "RandomVerticalFlip p",
    "brightness": "ColorJitter brightness b (factors ~ U(max(0, 1 - b), 1 + b))",
    "contrast": "ColorJitter contrast c",
    "noise": "GaussianNoise sigma (no clipping)",
    "erase": "RandomErasing p (torchvision's scale and ratio, value 0)",
}


def from_string(text, *, image_shape=None, interpolation="bilinear"):
    """A :class:`Compose` from a spec such as ``"rotate=10,shift=0.1,zoom=0.1,noise=0.05,erase=0.25"``
    (keys: :data:`AUGMENT_KEYS`, each at most once; values are numbers). ValueError for anything
    else, naming the key."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"expected comma-separated key=value pairs such as rotate=10,shift=0.1, got {text!r}")
    values = {}
    for item in text.split(","):
        key, sep, value = item.strip().partition("=")
        key = key.strip()
        if not sep or key not in AUGMENT_KEYS:
            raise ValueError(f"expected key=value with a key among {', '.join(AUGMENT_KEYS)}, got {item.strip()!r}")
        if key in values:
            raise ValueError(f"{key}: given twice")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{key}: expected a number, got {value.strip()!r}") from None
        if not (number >= 0 and number != float("inf")):
            raise ValueError(f"{key}: expected a finite number >= 0, got {value.strip()!r}")
        values[key] = number
    for key, limit, closed in (("hflip", 1, True), ("vflip", 1, True), ("erase", 1, True), ("shift", 1, True),
                               ("zoom", 1, False), ("shear", 90, False)):
        v = values.get(key, 0.0)
        if v > limit or (v == limit and not closed):
            raise ValueError(f"{key}: expected a number in [0, {limit}{']' if closed else ')'}, got {v:g}")
    parts = []
    for key in ("hflip", "vflip"):
        if key in values:
            parts.append((RandomHorizontalFlip if key == "hflip" else RandomVerticalFlip)(values[key]))
    if {"rotate", "shift", "zoom", "shear"} & set(values):
        zoom = values.get("zoom", 0.0)
        shift = values.get("shift", 0.0)
        parts.append(RandomAffine(values.get("rotate", 0.0), translate=(shift, shift), scale=(1 - zoom, 1 + zoom),
                                  shear=values.get("shear", 0.0), interpolation=interpolation))
    if "brightness" in values or "contrast" in values:
        parts.append(ColorJitter(values.get("brightness", 0.0), values.get("contrast", 0.0)))
    if "noise" in values:
        parts.append(GaussianNoise(sigma=values["noise"], clip=False))
    if "erase" in values:
        parts.append(RandomErasing(values["erase"]))
    return Compose(parts, image_shape=image_shape)


class Standardized:
    """Apply ``transform`` to standardized rows in their raw (pixel) space.

    For data standardized per feature as ``(raw - mean) / scale`` (a fitted
    :class:`fusednn.data.StandardScaler`'s ``mean_`` and ``scale_``), ``Standardized(t, mean,
    scale)(x, seed=, offset=)`` is ``(t(x * scale + mean) - mean) / scale``, computed in x's dtype
    on x's device: rotating or shifting standardized pixels directly would move each pixel's
    statistics to another position. Any call keywords go to ``transform``.
    """

    def __init__(self, transform, mean, scale):
        if not callable(transform):
            raise TypeError(f"transform: expected a callable, got {type(transform).__name__}")
        self.transform = transform
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        if self.mean.ndim != 1 or self.mean.shape != self.scale.shape:
            raise ValueError(f"mean, scale: expected two 1-d arrays of one length, got shapes {self.mean.shape} and "
                             f"{self.scale.shape}")
        if not (self.scale > 0).all():
            raise ValueError("scale: expected positive values")

    def __call__(self, x, **kwargs):
        xp = array_module(x)
        mean = xp.asarray(self.mean.astype(x.dtype))
        scale = xp.asarray(self.scale.astype(x.dtype))
        y = self.transform(x * scale + mean, **kwargs)
        y -= mean
        y /= scale
        return y

    def __repr__(self):
        return f"Standardized({self.transform!r}, mean=<{self.mean.size} values>, scale=<{self.scale.size} values>)"
