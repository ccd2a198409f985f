"""Data augmentation in one pass: per-sample parameters drawn from Philox, applied by one kernel.

:func:`augment_params` draws every sample's parameters as a pure function of
``(seed, offset, sample index)`` and returns them as a dict of plain NumPy arrays of length N
(:data:`PARAM_KEYS`), which can be inspected, edited and replayed; :func:`augment` applies them
to a batch of images in one pass: affine map (rotation, zoom, shift, shear, flips), brightness,
contrast, Gaussian noise, clipping and random erasing. docs/data.md gives the laws, the
conventions and the order of the steps.
"""

import math

import numpy as np

from fusednn import _checks
from fusednn._backend import backend_for, to_host

__all__ = ["PARAM_KEYS", "SPEC_KEYS", "check_spec", "check_params", "image_geometry", "augment_params", "augment"]

# The parameter arrays (one value per sample) and their dtypes.
PARAM_KEYS = {
    "angle": np.float64,         # degrees, clockwise on screen (torchvision's F.affine)
    "translate_x": np.float64,   # pixels, positive moves the content right
    "translate_y": np.float64,   # pixels, positive moves the content down
    "scale": np.float64,         # zoom factor, > 0
    "shear_x": np.float64,       # degrees, in (-90, 90)
    "shear_y": np.float64,
    "hflip": np.bool_,           # flip left-right (before the affine map)
    "vflip": np.bool_,           # flip top-bottom
    "brightness": np.float64,    # factor, >= 0
    "contrast": np.float64,      # factor, >= 0, about the mean gray level
    "noise_mean": np.float64,    # additive noise noise_mean + noise_std * z
    "noise_std": np.float64,     # >= 0
    "erase": np.bool_,           # erase the rectangle below
    "erase_top": np.int64,       # rectangle rows [top, top + height), columns [left, left + width)
    "erase_left": np.int64,
    "erase_height": np.int64,
    "erase_width": np.int64,
    "erase_value": np.float64,   # the value written, unless erase_random
    "erase_random": np.bool_,    # write standard normal noise instead
    "noise_seed": np.uint64,     # Philox key of the sample's per-pixel noise (and erase noise)
}

# The spec keys augment_params understands (docs/data.md: each one's law).
SPEC_KEYS = ("degrees", "translate", "scale", "shear", "hflip", "vflip", "brightness", "contrast", "noise",
             "noise_mean", "erase", "erase_scale", "erase_ratio", "erase_value")

# Word slots of a sample in the Philox stream: sample i uses the 64 words 64 i .. 64 i + 63 of the
# stream (seed, offset), i.e. blocks 16 i .. 16 i + 15; the draw reads the first 36.
WORDS_PER_SAMPLE = 64
ERASE_TRIES = 10


# ---- argument checks (the reference uses the same ones) ----

def _pair(name, value, expected):
    """A pair (lo, hi) of real numbers as floats; TypeError otherwise."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (_checks.real(name, value[0], expected), _checks.real(name, value[1], expected))
    raise TypeError(f"{name}: expected {expected}, got {value!r}")


def _ordered(name, lo, hi, expected):
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}: expected {expected}, got non-finite bounds ({lo}, {hi})")
    if lo > hi:
        raise ValueError(f"{name}: expected {expected} with low <= high, got ({lo}, {hi}) (bounds reversed)")
    return lo, hi


def _symmetric_or_pair(name, value, expected, low_limit=None, high_limit=None):
    """torchvision's convention: a number d means (-d, d) (d >= 0); a pair is (lo, hi)."""
    if isinstance(value, (tuple, list)):
        lo, hi = _ordered(name, *_pair(name, value, expected), expected)
    else:
        d = _checks.real(name, value, expected)
        if not d >= 0:
            raise ValueError(f"{name}: expected {expected} (a single number must be >= 0), got {value!r}")
        lo, hi = _ordered(name, -d, d, expected)
    if (low_limit is not None and lo <= low_limit) or (high_limit is not None and hi >= high_limit):
        raise ValueError(f"{name}: expected {expected}, got ({lo}, {hi})")
    return lo, hi


def _factor_range(name, value):
    """ColorJitter's convention: a number b means (max(0, 1 - b), 1 + b); a pair is (lo, hi), lo >= 0."""
    expected = "a number >= 0 or a pair (low, high) of factors >= 0"
    if isinstance(value, (tuple, list)):
        lo, hi = _ordered(name, *_pair(name, value, expected), expected)
        if lo < 0:
            raise ValueError(f"{name}: expected {expected}, got ({lo}, {hi})")
        return lo, hi
    b = _checks.real(name, value, expected)
    if not (b >= 0 and math.isfinite(b)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return max(0.0, 1.0 - b), 1.0 + b


def check_spec(spec):
    """The spec as a canonical dict: every key present, ranges as (lo, hi) float pairs.

    Keys (all optional; docs/data.md): ``degrees`` (d or (lo, hi)), ``translate`` ((fx, fy)
    fractions of the width and height, or one fraction for both), ``scale`` ((lo, hi), > 0),
    ``shear`` (s, (lo, hi) or (xlo, xhi, ylo, yhi), degrees in (-90, 90)), ``hflip`` and
    ``vflip`` (probabilities), ``brightness`` and ``contrast`` (b or (lo, hi)), ``noise``
    (sigma >= 0), ``noise_mean``, ``erase`` (probability), ``erase_scale`` ((lo, hi) area
    fractions in (0, 1]), ``erase_ratio`` ((lo, hi) aspect ratios > 0), ``erase_value`` (a
    number or ``"random"``).
    """
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise TypeError(f"spec: expected a dict of augmentation settings, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"spec: unknown keys {unknown}; expected some of {list(SPEC_KEYS)}")
    out = {}
    out["degrees"] = _symmetric_or_pair("degrees", spec.get("degrees", 0.0),
                                        "a number of degrees >= 0 or a pair (low, high)")
    t = spec.get("translate", (0.0, 0.0))
    if not isinstance(t, (tuple, list)):
        t = (t, t)
    tx, ty = _pair("translate", t, "a pair (fx, fy) of fractions in [0, 1]")
    if not (0.0 <= tx <= 1.0 and 0.0 <= ty <= 1.0):
        raise ValueError(f"translate: expected fractions of the image size in [0, 1], got ({tx}, {ty})")
    out["translate"] = (tx, ty)
    lo, hi = _ordered("scale", *_pair("scale", spec.get("scale", (1.0, 1.0)), "a pair (low, high) of factors > 0"),
                      "a pair (low, high) of factors > 0")
    if not lo > 0:
        raise ValueError(f"scale: expected a pair (low, high) of factors > 0, got ({lo}, {hi})")
    out["scale"] = (lo, hi)
    shear = spec.get("shear", 0.0)
    expected = "degrees in (-90, 90): s, (low, high) or (xlow, xhigh, ylow, yhigh)"
    if isinstance(shear, (tuple, list)) and len(shear) == 4:
        out["shear"] = (_symmetric_or_pair("shear", tuple(shear[:2]), expected, -90, 90)
                        + _symmetric_or_pair("shear", tuple(shear[2:]), expected, -90, 90))
    else:
        out["shear"] = _symmetric_or_pair("shear", shear, expected, -90, 90) + (0.0, 0.0)
    for key in ("hflip", "vflip", "erase"):
        out[key] = _checks.in_unit_interval(key, spec.get(key, 0.0))
    out["brightness"] = _factor_range("brightness", spec.get("brightness", (1.0, 1.0)))
    out["contrast"] = _factor_range("contrast", spec.get("contrast", (1.0, 1.0)))
    out["noise"] = _checks.at_least_zero("noise", spec.get("noise", 0.0))
    out["noise_mean"] = _checks.real("noise_mean", spec.get("noise_mean", 0.0))
    if not (math.isfinite(out["noise"]) and math.isfinite(out["noise_mean"])):
        raise ValueError("noise, noise_mean: expected finite values")
    expected = "a pair (low, high) of area fractions in (0, 1]"
    lo, hi = _ordered("erase_scale", *_pair("erase_scale", spec.get("erase_scale", (0.02, 0.33)), expected), expected)
    if not (0 < lo and hi <= 1):
        raise ValueError(f"erase_scale: expected {expected}, got ({lo}, {hi})")
    out["erase_scale"] = (lo, hi)
    expected = "a pair (low, high) of aspect ratios > 0"
    lo, hi = _ordered("erase_ratio", *_pair("erase_ratio", spec.get("erase_ratio", (0.3, 3.3)), expected), expected)
    if not lo > 0:
        raise ValueError(f"erase_ratio: expected {expected}, got ({lo}, {hi})")
    out["erase_ratio"] = (lo, hi)
    value = spec.get("erase_value", 0.0)
    if isinstance(value, str):
        if value != "random":
            raise ValueError(f"erase_value: expected a number or 'random', got {value!r}")
    else:
        value = _checks.real("erase_value", value, "a number or 'random'")
        if not math.isfinite(value):
            raise ValueError(f"erase_value: expected a finite number or 'random', got {value}")
    out["erase_value"] = value
    return out


def image_geometry(shape, image_shape, name="x"):
    """(C, H, W) of the images of an array of this shape: (N, H, W) and (N, C, H, W) carry it;
    flat rows (N, F) need ``image_shape`` ((H, W) or (C, H, W), with C H W == F)."""
    shape = tuple(shape)
    given = None
    if image_shape is not None:
        if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
            raise TypeError(f"image_shape: expected (H, W) or (C, H, W), got {image_shape!r}")
        given = tuple(_checks.integer("image_shape", d, "positive integers") for d in image_shape)
        if min(given) < 1:
            raise ValueError(f"image_shape: expected positive sizes, got {image_shape!r}")
        if len(given) == 2:
            given = (1,) + given
    if len(shape) == 2:
        if given is None:
            raise ValueError(f"image_shape: required for flat rows ({name} has shape {shape}); pass (H, W) or "
                             "(C, H, W)")
        if math.prod(given) != shape[1]:
            raise ValueError(f"image_shape: {tuple(image_shape)} has {math.prod(given)} values per image, but {name} "
                             f"has {shape[1]} per row (shape {shape})")
        return given
    if len(shape) not in (3, 4):
        raise ValueError(f"{name}: expected images (N, H, W) or (N, C, H, W), or flat rows (N, C*H*W) with "
                         f"image_shape, got shape {shape}")
    geometry = (1,) + shape[1:] if len(shape) == 3 else shape[1:]
    if min(geometry) < 1:
        raise ValueError(f"{name}: expected non-empty images, got shape {shape}")
    if given is not None and given != geometry:
        raise ValueError(f"image_shape: {tuple(image_shape)} does not match {name}'s images {geometry} "
                         f"(shape {shape})")
    return geometry


def check_params(params, n):
    """The parameter dict as host arrays of the canonical dtypes, each of shape (n,), with values
    checked (finite, scale > 0, |shear| < 90, factors and noise_std >= 0, erase boxes >= 0)."""
    if not isinstance(params, dict):
        raise TypeError(f"params: expected the dict that augment_params returns, got {type(params).__name__}")
    missing = [k for k in PARAM_KEYS if k not in params]
    extra = sorted(set(params) - set(PARAM_KEYS))
    if missing or extra:
        raise ValueError(f"params: expected the keys {list(PARAM_KEYS)}; missing {missing}, unknown {extra}")
    out = {}
    for key, dtype in PARAM_KEYS.items():
        name = f"params[{key!r}]"
        a = np.asarray(to_host(params[key]))
        kind = np.dtype(dtype).kind
        if kind == "b" and a.dtype.kind != "b":
            raise TypeError(f"{name}: expected a bool array, got dtype {a.dtype}")
        if kind in "iu" and a.dtype.kind not in "iu":
            raise TypeError(f"{name}: expected an integer array, got dtype {a.dtype}")
        if kind == "f" and a.dtype.kind not in "iuf":
            raise TypeError(f"{name}: expected a real array, got dtype {a.dtype}")
        if a.shape != (n,):
            raise ValueError(f"{name}: expected shape ({n},) (one value per sample), got {a.shape}")
        if kind == "u" and a.size and a.dtype.kind == "i" and a.min() < 0:
            raise ValueError(f"{name}: expected values in [0, 2**64), got {a.min()}")
        a = np.ascontiguousarray(a, dtype=dtype)
        if kind == "f" and not np.isfinite(a).all():
            i = int(np.flatnonzero(~np.isfinite(a))[0])
            raise ValueError(f"{name}: expected finite values, got {a[i]} at sample {i}")
        out[key] = a
    def bad(key, ok, expected):
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise ValueError(f"params[{key!r}]: expected {expected}, got {out[key][i]} at sample {i}")
    bad("scale", out["scale"] > 0, "values > 0")
    bad("shear_x", np.abs(out["shear_x"]) < 90, "degrees in (-90, 90)")
    bad("shear_y", np.abs(out["shear_y"]) < 90, "degrees in (-90, 90)")
    for key in ("brightness", "contrast", "noise_std"):
        bad(key, out[key] >= 0, "values >= 0")
    for key in ("erase_top", "erase_left", "erase_height", "erase_width"):
        bad(key, out[key] >= 0, "values >= 0")
    return out


# ---- the draws ----

def _u64(name, value):
    v = _checks.integer(name, value, "an integer in [0, 2**64)")
    if not 0 <= v < 2**64:
        raise ValueError(f"{name}: expected an integer in [0, 2**64), got {v}")
    return v


def augment_params(n, spec, *, seed, offset=0, image_shape, same_on_batch=False):
    """Draw the augmentation parameters of ``n`` samples.

    Sample i's parameters are a pure function of ``(seed, offset, i)`` (its words are 64 i ..
    64 i + 63 of the Philox4x32-10 stream (seed, offset), docs/data.md); with
    ``same_on_batch=True`` every sample gets sample 0's (torchvision's batched behaviour).
    ``spec`` is a dict of settings (:func:`check_spec`); an empty spec gives the identity.
    ``image_shape`` ((H, W) or (C, H, W)) turns the translation fractions and the erased area
    into pixels. Returns a dict of NumPy arrays of length n (:data:`PARAM_KEYS`).
    """
    return draw_params(n, spec_values(check_spec(spec)), seed=seed, offset=offset, image_shape=image_shape,
                       same_on_batch=same_on_batch)


def spec_values(spec):
    """A checked spec (the dict :func:`check_spec` returns) as the 25 numbers of the C++ draw
    (bind_augment.cpp documents their order); ``fusednn.data.transforms.Compose`` computes them
    once, at construction."""
    random_value = spec["erase_value"] == "random"
    values = (list(spec["degrees"]) + list(spec["translate"]) + list(spec["scale"]) + list(spec["shear"])
              + [spec["hflip"], spec["vflip"], spec["erase"]] + list(spec["brightness"]) + list(spec["contrast"])
              + [spec["noise"], spec["noise_mean"]] + list(spec["erase_scale"])
              + [math.log(spec["erase_ratio"][0]), math.log(spec["erase_ratio"][1])]
              + [0.0 if random_value else spec["erase_value"], 1.0 if random_value else 0.0])
    return [float(v) for v in values]


def draw_params(n, values, *, seed, offset, image_shape, same_on_batch):
    """:func:`augment_params` for a spec already turned into :func:`spec_values`."""
    n = _checks.integer("n", n, "an integer in [0, 2**31)")
    if not 0 <= n < 2**31:
        raise ValueError(f"n: expected an integer in [0, 2**31), got {n}")
    seed, offset = _u64("seed", seed), _u64("offset", offset)
    same_on_batch = _checks.flag("same_on_batch", same_on_batch)
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
        raise TypeError(f"image_shape: expected (H, W) or (C, H, W), got {image_shape!r}")
    h, w = image_geometry((1, math.prod(image_shape)), image_shape)[1:]
    # The draws run in C++ (bind_augment.cpp), formula for formula the NumPy reference's:
    # u_s = word s / 2^32 of the sample's slot, uniform(s, lo, hi) = lo + (hi - lo) u_s; flips
    # and erasing when u_s < p; random erasing as torchvision's RandomErasing.get_params: up to
    # ERASE_TRIES (area, log-ratio) draws from slots 16 + 2t and 17 + 2t, the first whose rounded
    # box fits strictly inside the image, placed by slots 11 and 12; the noise key is words 13
    # and 14. Blocks of 64 samples run on the thread pool.
    from fusednn import _C
    return _C._augment_params_draw(n, seed, offset, same_on_batch, h, w, values, ERASE_TRIES)


def draw_and_apply(x, values, mirror, *, seed, offset, same_on_batch, geometry, interpolation, fill, clip, out):
    """``apply_drawn(x, draw_params(...), ...)`` with the flips of ``mirror`` (a set of "h", "v")
    mirrored as ``fusednn.data.transforms.Compose.params`` mirrors them, for NumPy ``x`` and
    ``out``: bitwise the same result, with each block of samples' parameters drawn on the worker
    thread that applies them (the compiled augment's second overload, bind_augment.cpp) instead of
    as arrays first. ``geometry``: x's
    (C, H, W); options already checked."""
    n = x.shape[0]
    if not n < 2**31:
        raise ValueError(f"x: expected fewer than 2**31 samples, got {n}")
    seed, offset = _u64("seed", seed), _u64("offset", offset)
    same_on_batch = _checks.flag("same_on_batch", same_on_batch)
    c, h, w = geometry
    from fusednn import _C
    return _C.augment(x, c, h, w, seed, offset, same_on_batch, values, ERASE_TRIES, "h" in mirror, "v" in mirror,
                      interpolation, fill, clip, out)


def augment(x, params, *, image_shape=None, interpolation="bilinear", fill=0.0, clip=None, out=None):
    """Apply each sample's parameters (the dict of :func:`augment_params`) to the batch ``x``.

    ``x``: float32 or float64 images (N, H, W) or (N, C, H, W), or flat rows (N, C*H*W) with
    ``image_shape``. Per sample, in this order: the affine map with the flips (``interpolation``
    ``"bilinear"`` or ``"nearest"``, ``fill`` outside the input), brightness, contrast, noise,
    clipping to ``clip = (low, high)`` (None: none), erasing. Identity parameters return the
    input's values bit for bit. Returns a new array of x's shape and dtype, or ``out``.
    """
    backend = backend_for(x=x, out=out)
    c, h, w = image_geometry(x.shape, image_shape)
    n = x.shape[0]
    params = check_params(params, n)
    fill = _checks.real("fill", fill)
    if clip is not None:
        if not isinstance(clip, (tuple, list)) or len(clip) != 2:
            raise TypeError(f"clip: expected None or a pair (low, high), got {clip!r}")
        lo, hi = (_checks.real("clip", v, "a pair (low, high) of numbers") for v in clip)
        if not lo <= hi:
            raise ValueError(f"clip: expected low <= high, got ({lo}, {hi})")
        clip = (lo, hi)
    return backend.augment(x, c, h, w, params, interpolation, fill, clip, out)


def apply_drawn(x, params, geometry, interpolation, fill, clip, out):
    """:func:`augment` for parameters fresh from :func:`augment_params` and options already
    checked (``fusednn.data.transforms.Compose``): the parameter values are valid by construction,
    so the per-call checks of :func:`check_params` are skipped; x and out are checked by the
    binding as always. ``geometry``: x's (C, H, W)."""
    c, h, w = geometry
    return backend_for(x=x, out=out).augment(x, c, h, w, params, interpolation, fill, clip, out)
