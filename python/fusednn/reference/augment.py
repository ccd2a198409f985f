"""NumPy reference of :mod:`fusednn.ops.augment`: the parameter draws from the Philox stream and
the per-sample image transform, written sample by sample in float64 (docs/data.md gives the
conventions). Argument checks are the op's own (``fusednn.ops.augment.check_spec``,
``check_params``, ``image_geometry``), so the messages are the same."""

import math

import numpy as np

from fusednn import _checks
from fusednn.ops.augment import ERASE_TRIES, PARAM_KEYS, WORDS_PER_SAMPLE, check_params, check_spec, image_geometry
from fusednn.reference.dropout import _normal, philox_uint32

__all__ = ["augment_params", "augment", "inverse_affine_matrix"]

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def augment_params(n, spec, *, seed, offset=0, image_shape, same_on_batch=False):
    n = _checks.integer("n", n, "an integer in [0, 2**31)")
    if not 0 <= n < 2**31:
        raise ValueError(f"n: expected an integer in [0, 2**31), got {n}")
    spec = check_spec(spec)
    same_on_batch = _checks.flag("same_on_batch", same_on_batch)
    if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
        raise TypeError(f"image_shape: expected (H, W) or (C, H, W), got {image_shape!r}")
    h, w = image_geometry((1, math.prod(image_shape)), image_shape)[1:]
    rows = 1 if same_on_batch else n
    words = philox_uint32(WORDS_PER_SAMPLE * rows, seed, offset).reshape(rows, WORDS_PER_SAMPLE)
    params = {k: [] for k in PARAM_KEYS}
    for i in range(n):
        wd = words[0 if same_on_batch else i]
        u = [int(v) / 2**32 for v in wd]

        def uni(slot, lo, hi):
            return lo + (hi - lo) * u[slot]

        fx, fy = spec["translate"]
        row = {
            "angle": uni(0, *spec["degrees"]), "translate_x": uni(1, -fx * w, fx * w),
            "translate_y": uni(2, -fy * h, fy * h), "scale": uni(3, *spec["scale"]),
            "shear_x": uni(4, *spec["shear"][:2]), "shear_y": uni(5, *spec["shear"][2:]),
            "hflip": u[6] < spec["hflip"], "vflip": u[7] < spec["vflip"],
            "brightness": uni(8, *spec["brightness"]), "contrast": uni(9, *spec["contrast"]),
            "noise_mean": spec["noise_mean"], "noise_std": spec["noise"],
        }
        box = None
        if u[10] < spec["erase"]:
            for t in range(ERASE_TRIES):
                area = h * w * uni(16 + 2 * t, *spec["erase_scale"])
                aspect = math.exp(uni(17 + 2 * t, math.log(spec["erase_ratio"][0]), math.log(spec["erase_ratio"][1])))
                eh = int(np.rint(math.sqrt(area * aspect)))
                ew = int(np.rint(math.sqrt(area / aspect)))
                if eh < h and ew < w:
                    box = (math.floor(u[11] * (h - eh + 1)), math.floor(u[12] * (w - ew + 1)), eh, ew)
                    break
        row["erase"] = box is not None
        row["erase_top"], row["erase_left"], row["erase_height"], row["erase_width"] = box or (0, 0, 0, 0)
        random_value = spec["erase_value"] == "random"
        row["erase_value"] = 0.0 if random_value else spec["erase_value"]
        row["erase_random"] = random_value
        row["noise_seed"] = int(wd[13]) | (int(wd[14]) << 32)
        for k in PARAM_KEYS:
            params[k].append(row[k])
    return {k: np.array(v, dtype=PARAM_KEYS[k]).reshape(n) for k, v in params.items()}


def inverse_affine_matrix(angle, translate_x, translate_y, scale, shear_x, shear_y, hflip, vflip, height, width):
    """The 2x3 map from output pixel (x, y) to input coordinates: torchvision's
    ``_get_inverse_affine_matrix`` about the center ((W-1)/2, (H-1)/2), then the flips."""
    m = _centered_inverse_map(angle, translate_x, translate_y, scale, shear_x, shear_y, hflip, vflip, height, width)
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    m[0, 2] -= m[0, 0] * cx + m[0, 1] * cy
    m[1, 2] -= m[1, 0] * cx + m[1, 1] * cy
    return m


def _centered_inverse_map(angle, translate_x, translate_y, scale, shear_x, shear_y, hflip, vflip, height, width):
    """inverse_affine_matrix acting on offsets from the center: input point = m @ (x - cx, y - cy,
    1), as the kernels compute it (so that points mapped to integers exactly stay exact)."""
    rot, sx, sy = math.radians(angle), math.radians(shear_x), math.radians(shear_y)
    cx, cy = 0.5 * (width - 1), 0.5 * (height - 1)
    cos_rs, sin_rs = _cos_sin(angle - shear_y, rot - sy)
    cos_r, sin_r = _cos_sin(angle, rot)
    a = cos_rs / math.cos(sy)
    b = -cos_rs * math.tan(sx) / math.cos(sy) - sin_r
    c = sin_rs / math.cos(sy)
    d = -sin_rs * math.tan(sx) / math.cos(sy) + cos_r
    m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    ux, uy = -translate_x, -translate_y
    m[2] = m[0] * ux + m[1] * uy + cx
    m[5] = m[3] * ux + m[4] * uy + cy
    if hflip:
        m[0], m[1], m[2] = -m[0], -m[1], (width - 1) - m[2]
    if vflip:
        m[3], m[4], m[5] = -m[3], -m[4], (height - 1) - m[5]
    return np.array(m).reshape(2, 3)


def _cos_sin(degrees, radians):
    """cos and sin of an angle given in degrees and in radians: exactly 0 and +-1 at multiples of
    90 degrees (math.cos(math.pi / 2) is 6.1e-17), so quarter turns map pixel centers exactly."""
    quarters = degrees / 90.0
    if abs(quarters) < 2**31 and math.floor(quarters) == quarters:
        k = int(quarters) % 4
        return (1.0, 0.0, -1.0, 0.0)[k], (0.0, 1.0, 0.0, -1.0)[k]
    return math.cos(radians), math.sin(radians)


def _resample(img, m, nearest, fill):
    """img (C, H, W) float64 sampled at m @ (x - cx, y - cy, 1) for every output pixel (x, y)."""
    c, h, w = img.shape
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64) - 0.5 * (h - 1), np.arange(w, dtype=np.float64) - 0.5 * (w - 1),
                         indexing="ij")
    sx = m[0, 0] * xs + (m[0, 1] * ys + m[0, 2])
    sy = m[1, 0] * xs + (m[1, 1] * ys + m[1, 2])

    def tap(col, row):
        inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
        cc = np.clip(col, 0, w - 1).astype(np.int64)
        rr = np.clip(row, 0, h - 1).astype(np.int64)
        return np.where(inside, img[:, rr, cc], fill)

    if nearest:
        fx, fy = np.rint(sx), np.rint(sy)
        ok = (fx >= -1) & (fx <= w) & (fy >= -1) & (fy <= h)
        return np.where(ok, tap(np.where(ok, fx, -1), np.where(ok, fy, -1)), fill)
    ok = (sx > -1) & (sx < w) & (sy > -1) & (sy < h)
    sx, sy = np.where(ok, sx, 0.0), np.where(ok, sy, 0.0)
    x0, y0 = np.floor(sx), np.floor(sy)
    wx, wy = sx - x0, sy - y0
    t00 = tap(x0, y0)
    top = np.where(wx == 0, t00, (1 - wx) * t00 + wx * tap(x0 + 1, y0))
    t10 = tap(x0, y0 + 1)
    bottom = np.where(wx == 0, t10, (1 - wx) * t10 + wx * tap(x0 + 1, y0 + 1))
    return np.where(ok, np.where(wy == 0, top, (1 - wy) * top + wy * bottom), fill)


def augment(x, params, *, image_shape=None, interpolation="bilinear", fill=0.0, clip=None, out=None):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a numpy.ndarray, got {type(x).__module__}.{type(x).__qualname__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x: expected dtype float32 or float64, got {x.dtype}")
    c, h, w = image_geometry(x.shape, image_shape)
    n = x.shape[0]
    params = check_params(params, n)
    if not (isinstance(interpolation, str) and interpolation in ("bilinear", "nearest")):
        raise ValueError(f"interpolation: expected one of 'bilinear', 'nearest', got {interpolation!r}")
    fill = _checks.real("fill", fill)
    if clip is not None:
        if not isinstance(clip, (tuple, list)) or len(clip) != 2:
            raise TypeError(f"clip: expected None or a pair (low, high), got {clip!r}")
        clip = tuple(_checks.real("clip", v, "a pair (low, high) of numbers") for v in clip)
        if not clip[0] <= clip[1]:
            raise ValueError(f"clip: expected low <= high, got {clip}")
    dt = x.dtype.type
    images = x.reshape(n, c, h, w)
    y = np.empty_like(images)
    for i in range(n):
        p = {k: v[i] for k, v in params.items()}
        m = _centered_inverse_map(p["angle"], p["translate_x"], p["translate_y"], p["scale"], p["shear_x"],
                                  p["shear_y"], p["hflip"], p["vflip"], h, w)
        if np.array_equal(m, [[1, 0, 0.5 * (w - 1)], [0, 1, 0.5 * (h - 1)]]):  # the identity
            v = images[i].copy()
        else:
            v = _resample(images[i].astype(np.float64), m, interpolation == "nearest", fill).astype(dt)
        if p["brightness"] != 1:
            v = (v.astype(np.float64) * p["brightness"]).astype(dt)
        flat = v.reshape(-1)
        if p["contrast"] != 1:
            sums = v.astype(np.float64).reshape(c, -1).sum(axis=1)
            weights = np.array(_GRAY) / (h * w) if c == 3 else np.full(c, 1.0 / (c * h * w))
            gray = float((sums * weights).sum())
            flat = (p["contrast"] * flat.astype(np.float64) + (1 - p["contrast"]) * gray).astype(dt)
        if p["noise_std"] != 0 or p["noise_mean"] != 0:
            z = _normal(flat.size, int(p["noise_seed"]), 0)
            flat = (flat.astype(np.float64) + (p["noise_mean"] + p["noise_std"] * z)).astype(dt)
        if clip is not None:
            flat = np.where(flat.astype(np.float64) < clip[0], dt(clip[0]), flat)
            flat = np.where(flat.astype(np.float64) > clip[1], dt(clip[1]), flat)
        if p["erase"] and p["erase_height"] > 0 and p["erase_width"] > 0:
            rows = np.arange(h)[:, None]
            cols = np.arange(w)[None, :]
            top, left = int(p["erase_top"]), int(p["erase_left"])  # Python ints: the sums cannot overflow
            box = ((rows >= top) & (rows < top + int(p["erase_height"]))
                   & (cols >= left) & (cols < left + int(p["erase_width"])))
            box = np.broadcast_to(box, (c, h, w)).reshape(-1)
            value = _normal(flat.size, int(p["noise_seed"]), 1) if p["erase_random"] else np.full(flat.size,
                                                                                                  p["erase_value"])
            flat = np.where(box, value.astype(dt), flat)
        y[i] = flat.reshape(c, h, w)
    y = y.reshape(x.shape)
    if out is not None:
        out[...] = y
        return out
    return y
