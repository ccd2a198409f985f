"""fusednn.ops augment / augment_params against the NumPy reference on every device: identity is
bitwise, flips and integer shifts are exact, bilinear sampling agrees with scipy.ndimage on interior
pixels, the parameter draws follow their laws (Kolmogorov-Smirnov on 10^5 draws), outputs do not
depend on the thread count, and every bad argument is a clear error."""

import math

import numpy as np
import pytest
from conftest import assert_close, seed_of, to_device, to_numpy

import fusednn
from fusednn import ops, reference
from fusednn.ops.augment import PARAM_KEYS

DTYPES = [np.float32, np.float64]
# (N, ...) image batches: 1x1 images, odd sizes, C = 1 and 3, N = 1; widths that are multiples of
# 16 (the float32 CPU loop's rows of 16 pixels) and not (its runs of 16 pixels across rows).
SHAPES = [(1, 1, 1), (2, 1, 1, 1), (3, 5, 7), (1, 3, 4, 6), (4, 3, 9, 5), (5, 1, 8, 8), (2, 3, 5, 16), (2, 3, 33)]
FULL = {"degrees": 25, "translate": (0.15, 0.1), "scale": (0.8, 1.2), "shear": (-10, 10, -5, 5), "hflip": 0.5,
        "vflip": 0.3, "brightness": 0.3, "contrast": 0.4, "noise": 0.1, "noise_mean": 0.02, "erase": 0.6,
        "erase_value": 0.5}


def images(shape, dtype, key):
    rng = np.random.default_rng(seed_of(*key))
    return rng.standard_normal(shape).astype(dtype)


def geometry(shape):
    return (1,) + shape[1:] if len(shape) == 3 else shape[1:]


def params_for(n, spec, shape, seed=7, offset=0, **kw):
    return ops.augment_params(n, spec, seed=seed, offset=offset, image_shape=geometry(shape), **kw)


def bits(a):
    a = np.ascontiguousarray(to_numpy(a))
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


# ---- the op against the reference ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_matches_reference(device, dtype, shape, interpolation):
    x = images(shape, dtype, ("ref", shape, interpolation))
    spec = dict(FULL, erase_value="random") if interpolation == "nearest" else FULL
    p = params_for(shape[0], spec, shape, seed=seed_of(shape))
    clip = (-1.5, 2.0) if dtype == np.float64 else None
    got = ops.augment(to_device(device, x), p, interpolation=interpolation, fill=0.25, clip=clip)
    want = reference.augment(x, p, interpolation=interpolation, fill=0.25, clip=clip)
    assert got.dtype == x.dtype and got.shape == x.shape
    assert_close(got, want, kind="transcendental")


# (1, 224, 224): the float32 CPU loop's rows of 16 pixels; (3, 60, 60): its runs across rows. The
# float32 coordinates of a rotation were once formed in float (~1.5e-5 pixel at 224): errors 100x
# the float32 reference's, growing with the image; they are in double, as the reference's.
@pytest.mark.parametrize("shape", [(2, 1, 224, 224), (2, 3, 60, 60)], ids=str)
def test_float32_bilinear_large_image_matches_wide_reference(device, shape):
    x = (np.random.default_rng(seed_of("large image", shape)).random(shape) * 255).astype(np.float32)
    p = params_for(shape[0], {"degrees": (-30, 30), "scale": (0.9, 1.1)}, shape, seed=7)
    got = ops.augment(to_device(device, x), p)
    assert_close(got, reference.augment(x, p), reference.augment(x.astype(np.float64), p), kind="transcendental")


# Fill 0: the float32 CPU loop pads its planes with a border wide enough for every tap when the
# corners' source points fit (no per-point inside tests; "fits", rows of 28 and of 32) and keeps the
# tests otherwise ("zoom-out"); pixels whose taps are all outside are the fill, sign included.
@pytest.mark.parametrize("spec", [{"degrees": 15, "translate": 0.1, "scale": (0.9, 1.1), "hflip": 0.5},
                                  {"degrees": 45, "scale": (0.1, 0.3)}], ids=["fits", "zoom-out"])
@pytest.mark.parametrize("shape", [(12, 2, 28, 28), (6, 1, 16, 32)], ids=str)
@pytest.mark.parametrize("fill", [0.0, -0.0])
def test_float32_bilinear_fill_zero_matches_reference(device, spec, shape, fill):
    x = images(shape, np.float32, ("fill zero", shape, str(spec)))
    p = params_for(shape[0], spec, shape, seed=seed_of("fill zero", shape))
    got = to_numpy(ops.augment(to_device(device, x), p, fill=fill))
    want = reference.augment(x, p, fill=fill)
    assert_close(got, want, reference.augment(x.astype(np.float64), p, fill=fill), kind="transcendental")
    filled = bits(want) == bits(np.float32(fill))
    assert filled.sum() > 100
    np.testing.assert_array_equal(bits(got)[filled], bits(want)[filled])


# Several channels: the float32 CPU loop's quad planes (each pixel's four taps side by side) are built
# 16 columns at a time with a partial last run (widths 3, 8, 9, 17; 24: one full run and a partial
# one) and rows of fill above and below the image; every tap of a rotation is read from them, with
# the per-point inside tests (fill 0.25) and without (fill 0).
@pytest.mark.parametrize("width", [3, 8, 9, 17, 24])
@pytest.mark.parametrize("fill", [0.0, 0.25])
def test_float32_bilinear_several_planes_match_reference(device, width, fill):
    shape = (6, 3, 7, width)
    x = images(shape, np.float32, ("quads", width))
    spec = {"degrees": 30, "translate": 0.1, "scale": (0.8, 1.2), "brightness": 0.2}
    p = params_for(6, spec, shape, seed=seed_of("quads", width))
    got = ops.augment(to_device(device, x), p, fill=fill)
    want = reference.augment(x, p, fill=fill)
    assert_close(got, want, reference.augment(x.astype(np.float64), p, fill=fill), kind="transcendental")


# Nearest on float32 CPU takes every plane of a sample at once, 16 columns at a time (a last partial
# run for widths that are not multiples of 16, widths below 8, 1x1 images), for C = 1 to 4: the
# reference's pixels bit for bit (one tap each, brightness in double), with NaN and inf pixels,
# fills 0, -0, 0.5 and NaN, and samples whose half-integer shifts put source points exactly half way
# between pixels (rounded half to even).
@pytest.mark.parametrize("shape", [(3, 1, 1, 1), (4, 1, 7, 5), (3, 2, 9, 13), (3, 3, 8, 28), (2, 4, 11, 37),
                                   (2, 1, 6, 16), (2, 3, 5, 24)], ids=str)
@pytest.mark.parametrize("fill", [0.0, -0.0, 0.5, math.nan], ids=["0", "-0", "0.5", "nan"])
def test_float32_nearest_all_planes_match_reference_bitwise(device, shape, fill):
    x = images(shape, np.float32, ("nearest planes", shape))
    flat = x.reshape(-1)
    flat[::7], flat[3::11], flat[5::13] = np.nan, np.inf, -0.0
    spec = {"degrees": 40, "translate": 0.2, "scale": (0.7, 1.3), "brightness": 0.3}
    p = params_for(shape[0], spec, shape, seed=seed_of("nearest planes", shape))
    p["angle"][1:] = 0.0
    p["scale"][1:] = 1.0
    p["translate_x"][1:], p["translate_y"][1:] = 1.5, -0.5
    got = ops.augment(to_device(device, x), p, interpolation="nearest", fill=fill)
    want = reference.augment(x, p, interpolation="nearest", fill=fill)
    if device == "cpu":
        assert np.array_equal(bits(got), bits(want))
    else:
        assert_close(got, want, kind="transcendental")


# Several planes are sampled on quad planes while those fit in a thread's kept planes, on one padded
# plane per channel beyond (1 x 3 x 300 x 310): either way each channel has the bits of a one-plane
# call (whose path is the same for every size).
@pytest.mark.parametrize("shape", [(2, 3, 7, 17), (2, 16, 20, 33), (1, 3, 300, 310)], ids=str)
@pytest.mark.parametrize("fill", [0.0, 0.5])
def test_float32_bilinear_planes_have_the_bits_of_one_plane_calls(shape, fill):
    x = images(shape, np.float32, ("planes", shape))
    p = params_for(shape[0], {"degrees": 20, "translate": 0.1, "scale": (0.9, 1.1), "shear": 5}, shape,
                   seed=seed_of("planes", shape))
    got = ops.augment(x, p, fill=fill)
    for c in range(shape[1]):
        one = ops.augment(np.ascontiguousarray(x[:, c:c + 1]), p, fill=fill)
        assert np.array_equal(one[:, 0].view(np.uint32), got[:, c].view(np.uint32)), f"channel {c}"


# float64 bilinear with several planes computes each group of 8 columns' weights once for all
# planes (AVX-512F CPUs), the last W mod 8 columns per plane: each channel has the bits of a
# one-plane call, brightness and fill included.
@pytest.mark.parametrize("shape", [(3, 2, 7, 5), (2, 3, 9, 19), (2, 4, 6, 24)], ids=str)
@pytest.mark.parametrize("fill", [0.0, math.nan])
def test_float64_bilinear_planes_have_the_bits_of_one_plane_calls(shape, fill):
    x = images(shape, np.float64, ("planes64", shape))
    x.reshape(-1)[::11] = np.nan
    p = params_for(shape[0], {"degrees": 30, "translate": 0.2, "scale": (0.7, 1.3), "brightness": 0.3}, shape,
                   seed=seed_of("planes64", shape))
    got = ops.augment(x, p, fill=fill)
    for c in range(shape[1]):
        one = ops.augment(np.ascontiguousarray(x[:, c:c + 1]), p, fill=fill)
        assert np.array_equal(bits(one[:, 0]), bits(got[:, c])), f"channel {c}"


# The float32 CPU loop keeps each thread's padded planes, border of fill included, from one call to
# the next while the image size and the fill's bits stay the same: calls that alternate fills (+0,
# -0, 0.25), sizes and tested / untested borders give the bits of the same calls run in the
# reverse order (a stale border would turn the -0 fill into +0, or 0.25 into 0).
def test_float32_bilinear_calls_in_any_order_give_the_same_bits(device):
    fits = {"degrees": 15, "translate": 0.1, "scale": (0.9, 1.1), "hflip": 0.5}
    zoom_out = {"degrees": 45, "scale": (0.1, 0.3)}
    cases = [((8, 1, 28, 28), fits, 0.0), ((8, 1, 28, 28), fits, -0.0), ((8, 1, 28, 28), zoom_out, -0.0),
             ((8, 1, 28, 28), fits, 0.25), ((4, 3, 16, 20), fits, 0.0), ((8, 1, 28, 28), zoom_out, 0.0),
             ((4, 3, 16, 20), zoom_out, 0.25), ((4, 3, 16, 20), fits, -0.0), ((8, 1, 28, 28), fits, 0.0)]

    def run(case):
        shape, spec, fill = case
        x = images(shape, np.float32, ("order", shape))
        p = params_for(shape[0], spec, shape, seed=seed_of("order", shape, str(spec)))
        return bits(to_numpy(ops.augment(to_device(device, x), p, fill=fill)))

    forward = [run(c) for c in cases]
    backward = [run(c) for c in reversed(cases)][::-1]
    for case, a, b in zip(cases, forward, backward):
        np.testing.assert_array_equal(a, b, err_msg=str(case))
        assert (a == bits(np.float32(case[2]))).sum() > 10, case  # the fill shows, with its sign


def test_large_batch_flat_rows_matches_reference(device):
    x = images((600, 64), np.float32, ("large",))
    p = ops.augment_params(600, FULL, seed=3, offset=11, image_shape=(8, 8))
    got = ops.augment(to_device(device, x), p, image_shape=(8, 8))
    assert_close(got, reference.augment(x, p, image_shape=(8, 8)), kind="transcendental")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("contrast", [0.5, 0.0])
@pytest.mark.parametrize("noise_mean", [0.0, 0.2])
def test_photometric_only_matches_reference(device, dtype, contrast, noise_mean):
    # The identity map with brightness, contrast, noise and erasing (no resampling); without
    # contrast the float32 CPU loop applies brightness and noise in one pass.
    x = images((40, 3, 7, 9), dtype, ("photometric",))
    spec = {"brightness": 0.5, "contrast": contrast, "noise": 0.3, "noise_mean": noise_mean, "erase": 0.5,
            "erase_value": "random"}
    p = params_for(40, spec, x.shape)
    got = ops.augment(to_device(device, x), p, clip=(-2.0, 2.0))
    assert_close(got, reference.augment(x, p, clip=(-2.0, 2.0)), kind="transcendental")
    got = ops.augment(to_device(device, x), p)
    assert_close(got, reference.augment(x, p), kind="transcendental")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [(0.1, 0.7), (-0.0, 0.0), (-np.inf, 0.3)], ids=str)
def test_clip_keeps_nan_and_matches_reference_bitwise(device, dtype, clip):
    # Values on both sides of bounds that float32 cannot hold exactly, infinities and NaN on the
    # identity map (no resampling): clipping is exact, so the result is the reference's bit for bit.
    rng = np.random.default_rng(seed_of("clip", dtype, clip))
    x = (rng.standard_normal((6, 2, 5, 7)) * 0.6).astype(dtype)
    x[0, 0, 0, :4] = [np.nan, np.inf, -np.inf, 0.1]
    x[1, 1, 2, :3] = [0.7, np.float32(0.1), -0.0]
    p = params_for(6, {"brightness": 0.0}, x.shape)
    got = to_numpy(ops.augment(to_device(device, x), p, clip=clip))
    want = reference.augment(x, p, clip=clip)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.isnan(got[0, 0, 0, 0])


def test_params_match_reference():
    for spec, shape, same in [(FULL, (1, 9, 7), False), (dict(FULL, erase=1.0, erase_value="random"), (3, 6, 6), True),
                              ({}, (2, 4), False), ({"erase": 1.0, "erase_scale": (0.5, 0.9)}, (5, 5), False)]:
        got = ops.augment_params(23, spec, seed=2**64 - 1, offset=2**40 + 5, image_shape=shape, same_on_batch=same)
        want = reference.augment_params(23, spec, seed=2**64 - 1, offset=2**40 + 5, image_shape=shape,
                                        same_on_batch=same)
        assert list(got) == list(PARAM_KEYS)
        for k in got:
            assert got[k].dtype == want[k].dtype and got[k].shape == (23,), k
            if got[k].dtype.kind == "f":
                assert_close(got[k], want[k], err_msg=k)
            else:
                np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_out_and_overlap(device, xp):
    x = to_device(device, images((3, 2, 5, 5), np.float32, ("out",)))
    p = params_for(3, FULL, x.shape)
    out = xp.empty_like(x)
    assert ops.augment(x, p, out=out) is out
    np.testing.assert_array_equal(to_numpy(out), to_numpy(ops.augment(x, p)))
    with pytest.raises(ValueError, match="out"):
        ops.augment(x, p, out=x)
    with pytest.raises(ValueError, match="out"):
        ops.augment(x, p, out=xp.empty((3, 2, 5, 4), np.float32))
    with pytest.raises(TypeError, match="out"):
        ops.augment(x, p, out=xp.empty_like(x, dtype=np.float64))


# ---- exactness ----

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES + [(4, 12)], ids=str)
def test_identity_is_bitwise(device, dtype, shape):
    x = images(shape, dtype, ("identity", shape))
    x.reshape(-1)[:3] = [-0.0, np.nan, -np.inf][:x.size] if x.size >= 3 else -0.0
    image_shape = (3, 2, 2) if len(shape) == 2 else None
    n_geom = image_shape or geometry(shape)
    p = ops.augment_params(shape[0], {}, seed=1, image_shape=n_geom)
    got = ops.augment(to_device(device, x), p, image_shape=image_shape)
    np.testing.assert_array_equal(bits(got), bits(x))
    # An explicit identity in every step: scale 1, no flips, factors 1, no noise, no erasing.
    same = params_for(shape[0], {"degrees": (0, 0), "scale": (1, 1), "brightness": 0, "contrast": 0, "noise": 0.0},
                      (1,) + tuple(n_geom))
    np.testing.assert_array_equal(bits(ops.augment(to_device(device, x), same, image_shape=image_shape)), bits(x))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (6, 3, 5, 7), (6, 2, 1, 9)], ids=str)
@pytest.mark.parametrize("fill", [0.0, -0.0, 0.5])
def test_flips_and_integer_shifts_with_brightness_round_as_resampling(device, dtype, shape, fill):
    # Flips and integer shifts copy their pixels (the CPU without resampling); brightness then
    # rounds as the resampling step does: in float where float32 bilinear runs with AVX-512 on the
    # CPU, in double otherwise (docs/data.md). Shifts past the image give whole rows and columns of
    # fill, times brightness.
    x = images(shape, dtype, ("integer maps",))
    x.reshape(-1)[::13] = np.nan
    x.reshape(-1)[4::17] = -0.0
    x.reshape(-1)[6::19] = -np.inf
    n, _, h, w = shape
    p = params_for(n, {"brightness": 0.4}, x.shape)
    p["hflip"][:] = [True, False, True, False, True, True]
    p["vflip"][:] = [False, True, True, False, False, True]
    p["translate_x"][:] = [0.0, 0.0, 3.0, -2.0, w + 1.0, 1.0]
    p["translate_y"][:] = [0.0, 0.0, -1.0, 2.0, 0.0, -h - 3.0]
    for interpolation in ("bilinear", "nearest"):
        got = to_numpy(ops.augment(to_device(device, x), p, fill=fill, interpolation=interpolation))
        for i in range(n):
            moved = np.full_like(x[i], fill)
            tx, ty = int(p["translate_x"][i]), int(p["translate_y"][i])
            src = x[i, :, ::-1 if p["vflip"][i] else 1, ::-1 if p["hflip"][i] else 1]
            # content moves tx right and ty down: out[r, c] = src[r - ty, c - tx]
            rows_out = slice(max(ty, 0), max(min(h, h + ty), 0))
            rows_in = slice(max(-ty, 0), max(min(h, h - ty), 0))
            cols_out = slice(max(tx, 0), max(min(w, w + tx), 0))
            cols_in = slice(max(-tx, 0), max(min(w, w - tx), 0))
            if rows_out.stop > rows_out.start and cols_out.stop > cols_out.start:
                moved[:, rows_out, cols_out] = src[:, rows_in, cols_in]
            b = p["brightness"][i]
            in_double = (moved.astype(np.float64) * b).astype(dtype)
            in_float = moved * np.float32(b) if dtype == np.float32 else in_double
            float_path = (dtype == np.float32 and device == "cpu" and interpolation == "bilinear"
                          and fusednn.build_info()["avx512_paths"])
            np.testing.assert_array_equal(bits(got[i]), bits(in_float if float_path else in_double),
                                          err_msg=f"sample {i}, {interpolation}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 6, 5), (4, 2, 9, 19)], ids=str)  # rows under 8 wide, and over
def test_flips_and_integer_shifts_are_exact(device, dtype, shape):
    x = images(shape, dtype, ("flips",))
    x[0, 0, 0, 0] = np.nan  # a NaN neighbour must not leak into exact copies
    p = params_for(4, {}, x.shape)
    p["hflip"][:] = [True, False, True, False]
    p["vflip"][:] = [False, True, True, False]
    p["translate_x"][3], p["translate_y"][3] = 2.0, -1.0
    got = to_numpy(ops.augment(to_device(device, x), p, fill=-7.0))
    np.testing.assert_array_equal(bits(got[0]), bits(x[0, :, :, ::-1]))
    np.testing.assert_array_equal(bits(got[1]), bits(x[1, :, ::-1, :]))
    np.testing.assert_array_equal(bits(got[2]), bits(x[2, :, ::-1, ::-1]))
    shifted = np.full_like(x[3], -7.0)
    shifted[:, :-1, 2:] = x[3, :, 1:, :-2]  # content moves 2 right and 1 up
    np.testing.assert_array_equal(bits(got[3]), bits(shifted))


# The center of an odd-sized image maps to itself under any rotation, zoom or shear: its output is
# its input bit for bit, and no neighbour (with a NaN or huge fill outside the image) leaks into it.
# Once the source point came out 1e-16 off the center where the kernels fused m0 x + m2 (m2 held
# the product's rounding) and the reference did not: a 1 x 31 image took the fill row below.
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 1, 31), (3, 2, 31, 1), (4, 3, 7, 9), (3, 1, 29, 29), (2, 1, 1, 65)], ids=str)
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill", [math.nan, 1e30], ids=["nan", "1e30"])
def test_center_maps_to_itself_exactly(device, dtype, shape, interpolation, fill):
    x = images(shape, dtype, ("center", shape))
    p = params_for(shape[0], {"degrees": 30, "scale": (0.8, 1.2), "shear": 10, "hflip": 0.5, "vflip": 0.5},
                   shape, seed=seed_of("center", shape))
    got = to_numpy(ops.augment(to_device(device, x), p, interpolation=interpolation, fill=fill))
    h, w = shape[-2:]
    np.testing.assert_array_equal(bits(got[..., h // 2, w // 2]), bits(x[..., h // 2, w // 2]))
    want = reference.augment(x, p, interpolation=interpolation, fill=fill)
    assert_close(got, want, kind="transcendental")


# Quarter turns are clockwise and exact: the cosine and sine of a multiple of 90 degrees are 0 and
# +-1 (libm's cos(pi / 2) is 6.1e-17, which once put source points 1e-15 off the pixels, and a
# NaN fill into 6 of a 7 x 7 image's pixels).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [7, 6, 16, 1])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_quarter_turns_are_clockwise_and_exact(device, dtype, size, interpolation):
    angles = [90.0, -90.0, 180.0, 270.0, -450.0, 360.0]
    x = images((len(angles), 2, size, size), dtype, ("rot90", size))
    x[:, :, 0, -1] = np.nan  # a NaN pixel moves with the turn and goes nowhere else
    p = params_for(len(angles), {}, x.shape)
    p["angle"][:] = angles
    got = to_numpy(ops.augment(to_device(device, x), p, interpolation=interpolation, fill=math.nan))
    for i, k in enumerate([-1, 1, 2, 1, 1, 0]):
        np.testing.assert_array_equal(bits(got[i]), bits(np.rot90(x[i], k=k, axes=(1, 2))))
    want = reference.augment(x, p, interpolation=interpolation, fill=math.nan)
    np.testing.assert_array_equal(bits(want), bits(got))


def test_bilinear_matches_scipy_affine_transform_on_interior_pixels(device):
    ndimage = pytest.importorskip("scipy.ndimage")
    h, w = 17, 23
    x = images((6, 1, h, w), np.float64, ("scipy",))
    p = params_for(6, {"degrees": 40, "translate": 0.1, "scale": (0.7, 1.3), "shear": (-15, 15, -10, 10),
                       "hflip": 0.5}, x.shape)
    got = to_numpy(ops.augment(to_device(device, x), p))
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    checked = 0
    for i in range(6):
        # The map from output to input pixel, written here independently of the op:
        # rotation/scale/shear about the center (torchvision's RSS = R S SHy SHx, whose shears
        # have the tangents' opposite signs), translation; the flip comes first.
        a, s = math.radians(p["angle"][i]), p["scale"][i]
        shx, shy = math.radians(p["shear_x"][i]), math.radians(p["shear_y"][i])
        rotation = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        shear_y = np.array([[1.0, 0.0], [-math.tan(shy), 1.0]])
        shear_x = np.array([[1.0, -math.tan(shx)], [0.0, 1.0]])
        forward = s * rotation @ shear_y @ shear_x  # (x, y) about the center
        inverse = np.linalg.inv(forward)
        center = np.array([(w - 1) / 2, (h - 1) / 2])
        shift = np.array([p["translate_x"][i], p["translate_y"][i]])
        offset_xy = center - inverse @ (center + shift)
        # scipy works in (row, col) = (y, x).
        matrix = inverse[::-1, ::-1]
        offset = offset_xy[::-1]
        src = x[i, 0][:, ::-1] if p["hflip"][i] else x[i, 0]
        want = ndimage.affine_transform(src, matrix, offset=offset, order=1, mode="constant", cval=0.0)
        sy = matrix[0, 0] * rows + matrix[0, 1] * cols + offset[0]
        sx = matrix[1, 0] * rows + matrix[1, 1] * cols + offset[1]
        interior = (sx > 0.01) & (sx < w - 1.01) & (sy > 0.01) & (sy < h - 1.01)
        checked += interior.sum()
        np.testing.assert_allclose(got[i, 0][interior], want[interior], rtol=0, atol=1e-9)
    assert checked > 500


# ---- the draws ----

def test_params_are_a_pure_function_of_seed_offset_and_sample():
    a = ops.augment_params(40, FULL, seed=5, offset=9, image_shape=(8, 8))
    b = ops.augment_params(15, FULL, seed=5, offset=9, image_shape=(8, 8))
    c = ops.augment_params(40, FULL, seed=5, offset=10, image_shape=(8, 8))
    for k in a:
        np.testing.assert_array_equal(a[k][:15], b[k], err_msg=k)
    assert not np.array_equal(a["angle"], c["angle"])
    same = ops.augment_params(40, FULL, seed=5, offset=9, image_shape=(8, 8), same_on_batch=True)
    for k in a:
        np.testing.assert_array_equal(same[k], np.full(40, a[k][0]), err_msg=k)


def test_parameter_laws_kolmogorov_smirnov():
    stats = pytest.importorskip("scipy.stats")
    n = 100_000
    spec = {"degrees": (-30, 20), "translate": (0.2, 0.1), "scale": (0.8, 1.25), "shear": 12, "hflip": 0.3,
            "vflip": 0.7, "brightness": 0.4, "contrast": (0.5, 2.0), "noise": 0.2}
    p = ops.augment_params(n, spec, seed=seed_of("laws"), offset=3, image_shape=(3, 20, 30))
    laws = {"angle": (-30, 50), "translate_x": (-6, 12), "translate_y": (-2, 4), "scale": (0.8, 0.45),
            "shear_x": (-12, 24), "brightness": (0.6, 0.8), "contrast": (0.5, 1.5)}
    for key, (loc, width) in laws.items():
        result = stats.kstest(p[key], "uniform", args=(loc, width))
        assert result.pvalue > 1e-3, (key, result)
    for key, prob in (("hflip", 0.3), ("vflip", 0.7)):
        assert abs(p[key].mean() - prob) < 5 * math.sqrt(prob * (1 - prob) / n), key
    assert (p["shear_y"] == 0).all() and (p["noise_std"] == 0.2).all() and not p["erase"].any()
    # Independence of two slots: the correlation of angle and scale is ~ N(0, 1/n).
    assert abs(np.corrcoef(p["angle"], p["scale"])[0, 1]) < 5 / math.sqrt(n)


def test_random_erasing_area_and_aspect_ratio():
    stats = pytest.importorskip("scipy.stats")
    n, h, w = 100_000, 200, 240
    p = ops.augment_params(n, {"erase": 0.4, "erase_scale": (0.05, 0.3), "erase_ratio": (0.5, 2.0)},
                           seed=seed_of("erase"), image_shape=(h, w))
    e = p["erase"]
    assert abs(e.mean() - 0.4) < 5 * math.sqrt(0.24 / n)
    eh, ew = p["erase_height"][e], p["erase_width"][e]
    top, left = p["erase_top"][e], p["erase_left"][e]
    assert (eh > 0).all() and (eh < h).all() and (ew < w).all()
    assert (top >= 0).all() and (top + eh <= h).all() and (left + ew <= w).all()
    assert (p["erase_height"][~e] == 0).all()
    # Rounding the sides to pixels perturbs area and ratio by under 1%: the statistic stays small.
    area = eh * ew / (h * w)
    assert stats.kstest(area, "uniform", args=(0.05, 0.25)).statistic < 0.01
    log_ratio = np.log(eh / ew)
    assert stats.kstest(log_ratio, "uniform", args=(math.log(0.5), math.log(4.0))).statistic < 0.01
    # The position is uniform over the places the box fits.
    assert stats.kstest(top / (h - eh + 1), "uniform").statistic < 0.01


def test_noise_is_the_gaussian_noise_stream_of_the_sample_key():
    x = np.zeros((3, 2, 10, 11), np.float64)
    p = params_for(3, {"noise": 1.5}, x.shape, seed=77)
    got = ops.augment(x, p)
    for i in range(3):
        # The same words and pairing; the kernel's Box-Muller uses polynomials, not libm.
        want = ops.gaussian_noise(x[i], 1.5, seed=int(p["noise_seed"][i]), offset=0)
        assert_close(got[i], want, kind="transcendental")
    z = ops.augment(np.zeros((200, 1, 20, 20), np.float64), params_for(200, {"noise": 1.0}, (200, 1, 20, 20)))
    assert abs(z.mean()) < 5 / math.sqrt(z.size) and abs(z.std() - 1) < 0.01


def test_erasing_writes_the_rectangle_only(device):
    x = images((50, 3, 12, 10), np.float32, ("erase only",))
    p = params_for(50, {"erase": 1.0, "erase_value": 9.0}, x.shape)
    got = to_numpy(ops.augment(to_device(device, x), p))
    for i in range(50):
        box = np.zeros((12, 10), bool)
        t, l_ = p["erase_top"][i], p["erase_left"][i]
        box[t:t + p["erase_height"][i], l_:l_ + p["erase_width"][i]] = p["erase"][i]
        assert (got[i][:, box] == 9.0).all() and np.array_equal(got[i][:, ~box], x[i][:, ~box])
    assert p["erase"].mean() > 0.5


# Erasing with value="random" writes the normals of the sample's stream (noise_seed, offset 1):
# element e of the sample takes word e % 4 of Philox block e / 4, as ops.gaussian_noise draws them
# (float32 on AVX-512F CPUs: the rectangle's rows drawn in registers, 256 elements at a time from a
# block boundary; rows up to 300 wide, starting anywhere within a block). float32: equality of
# values (the noise adds its normals to 0, which turns a normal -0 into +0).
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 1, 28, 28), (4, 3, 7, 13), (3, 2, 30, 300), (5, 1, 2, 3)], ids=str)
def test_random_erasing_is_the_erase_stream(device, dtype, shape):
    x = images(shape, dtype, ("erase stream", shape))
    p = params_for(shape[0], {"erase": 1.0, "erase_value": "random", "erase_scale": (0.2, 1.0),
                              "erase_ratio": (0.1, 10.0)}, shape, seed=seed_of("erase stream", shape))
    got = to_numpy(ops.augment(to_device(device, x), p))
    c, h, w = shape[1:]
    erased = 0
    for i in range(shape[0]):
        box = np.zeros((h, w), bool)
        t, l_ = p["erase_top"][i], p["erase_left"][i]
        box[t:t + p["erase_height"][i], l_:l_ + p["erase_width"][i]] = p["erase"][i]
        z = ops.gaussian_noise(np.zeros((c, h, w), dtype), 1.0, seed=int(p["noise_seed"][i]), offset=1)
        if dtype == np.float32:
            assert np.array_equal(got[i][:, box], z[:, box])
        else:  # float64: gaussian_noise's own loop may round a normal's last bits differently
            assert_close(got[i][:, box], z[:, box], kind="transcendental")
        assert np.array_equal(bits(got[i][:, ~box]), bits(x[i][:, ~box]))
        erased += box.sum()
    assert erased > 0


@pytest.mark.parametrize("shape, spec", [
    ((256, 3, 16, 16), dict(FULL, erase_value="random")),
    # Rows not a multiple of 16 wide; the photometric samples (identity map, no contrast) in one pass.
    ((200, 1, 28, 28), {"degrees": 15, "translate": 0.1, "brightness": 0.2, "noise": 0.05, "erase": 0.25}),
    ((200, 1, 28, 28), {"brightness": 0.2, "noise": 0.05, "erase": 0.25}),
], ids=["full", "rotate-noise", "photometric"])
def test_same_output_for_one_and_two_threads(threads, shape, spec):
    x = images(shape, np.float32, ("threads",))
    p = params_for(shape[0], spec, x.shape)
    threads(1)
    one = ops.augment(x, p)
    threads(2)
    two = ops.augment(x, p)
    np.testing.assert_array_equal(bits(one), bits(two))


@pytest.mark.parametrize("same", [False, True])
def test_params_same_for_one_and_two_threads(threads, same):
    # 1000 samples: the draw runs in blocks of 64 on the thread pool.
    draw = lambda: ops.augment_params(1000, FULL, seed=7, offset=3, image_shape=(3, 28, 28),  # noqa: E731
                                      same_on_batch=same)
    threads(1)
    one = draw()
    threads(2)
    two = draw()
    want = reference.augment_params(1000, FULL, seed=7, offset=3, image_shape=(3, 28, 28), same_on_batch=same)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k], err_msg=k)
        if one[k].dtype.kind == "f":
            assert_close(one[k], want[k], err_msg=k)
        else:
            np.testing.assert_array_equal(one[k], want[k], err_msg=k)


# ---- bad arguments ----

@pytest.mark.parametrize("spec, error, match", [
    ({"degrees": -5}, ValueError, "degrees"),
    ({"degrees": (10, -10)}, ValueError, "degrees.*reversed"),
    ({"degrees": "5"}, TypeError, "degrees"),
    ({"hflip": 1.5}, ValueError, "hflip"),
    ({"vflip": -0.1}, ValueError, "vflip"),
    ({"erase": 2}, ValueError, "erase"),
    ({"hflip": True}, TypeError, "hflip"),
    ({"scale": (1.2, 0.8)}, ValueError, "scale.*reversed"),
    ({"scale": (0.0, 1.0)}, ValueError, "scale"),
    ({"scale": 1.0}, TypeError, "scale"),
    ({"erase_scale": (0.3, 0.1)}, ValueError, "erase_scale"),
    ({"erase_ratio": (0.0, 2.0)}, ValueError, "erase_ratio"),
    ({"erase_value": "noise"}, ValueError, "erase_value"),
    ({"shear": 90}, ValueError, "shear"),
    ({"translate": (0.1, 1.5)}, ValueError, "translate"),
    ({"brightness": float("nan")}, ValueError, "brightness"),
    ({"noise": float("nan")}, ValueError, "noise"),
    ({"rotate": 10}, ValueError, "unknown keys"),
    ([("degrees", 5)], TypeError, "spec"),
])
def test_bad_spec(spec, error, match):
    with pytest.raises(error, match=match):
        ops.augment_params(4, spec, seed=0, image_shape=(8, 8))
    with pytest.raises(error, match=match):
        reference.augment_params(4, spec, seed=0, image_shape=(8, 8))


def test_bad_draw_arguments():
    with pytest.raises(ValueError, match="n:"):
        ops.augment_params(-1, {}, seed=0, image_shape=(8, 8))
    with pytest.raises(TypeError, match="seed"):
        ops.augment_params(2, {}, seed=1.5, image_shape=(8, 8))
    with pytest.raises(ValueError, match="offset"):
        ops.augment_params(2, {}, seed=0, offset=-1, image_shape=(8, 8))
    with pytest.raises(TypeError, match="image_shape"):
        ops.augment_params(2, {}, seed=0, image_shape=64)
    with pytest.raises(ValueError, match="image_shape"):
        ops.augment_params(2, {}, seed=0, image_shape=(0, 8))
    with pytest.raises(TypeError, match="same_on_batch"):
        ops.augment_params(2, {}, seed=0, image_shape=(8, 8), same_on_batch=1)


def test_params_draw_rejects_erase_tries_past_the_sample_words():
    from fusednn import _C
    values = [0.0] * 25
    with pytest.raises(ValueError, match="erase_tries.*got 11"):
        _C._augment_params_draw(2, 0, 0, False, 8, 8, values, 11)
    with pytest.raises(ValueError, match="erase_tries.*got -1"):
        _C._augment_params_draw(2, 0, 0, False, 8, 8, values, -1)
    assert set(_C._augment_params_draw(2, 0, 0, False, 8, 8, values, 10)) == set(PARAM_KEYS)


def test_bad_augment_arguments(device, xp):
    x = to_device(device, images((2, 1, 8, 8), np.float32, ("bad",)))
    p = params_for(2, FULL, x.shape)
    flat = x.reshape(2, 64)
    for fn in (ops.augment, reference.augment):
        if fn is reference.augment and device != "cpu":
            continue
        with pytest.raises(ValueError, match="image_shape: required"):
            fn(flat, p)
        with pytest.raises(ValueError, match="image_shape"):
            fn(flat, p, image_shape=(7, 8))
        with pytest.raises(ValueError, match="image_shape"):
            fn(x, p, image_shape=(8, 7))
        with pytest.raises(ValueError, match="x: expected images"):
            fn(x.reshape(2, 1, 1, 8, 8), p)
        for key, value, error in (("angle", np.nan, ValueError), ("scale", 0.0, ValueError),
                                  ("noise_std", -1.0, ValueError), ("translate_x", np.inf, ValueError),
                                  ("shear_x", 90.0, ValueError), ("erase_top", -1, ValueError)):
            bad = {k: v.copy() for k, v in p.items()}
            bad[key][1] = value
            with pytest.raises(error, match=rf"params\['{key}'\].*sample 1"):
                fn(x, bad)
        with pytest.raises(ValueError, match=r"params\['angle'\]: expected shape \(2,\)"):
            fn(x, dict(p, angle=np.zeros(3)))
        with pytest.raises(TypeError, match=r"params\['hflip'\]: expected a bool array"):
            fn(x, dict(p, hflip=np.zeros(2)))
        with pytest.raises(ValueError, match="params: expected the keys"):
            fn(x, {k: v for k, v in p.items() if k != "scale"})
        with pytest.raises(TypeError, match="params"):
            fn(x, None)
        with pytest.raises(ValueError, match="interpolation"):
            fn(x, p, interpolation="bicubic")
        with pytest.raises(TypeError, match="fill"):
            fn(x, p, fill=None)
        with pytest.raises(ValueError, match="clip"):
            fn(x, p, clip=(1.0, 0.0))
        with pytest.raises(TypeError, match="clip"):
            fn(x, p, clip=1.0)
    with pytest.raises(TypeError, match="x"):
        ops.augment(x.astype(np.int32), p)
    with pytest.raises(TypeError, match="x"):
        ops.augment([[1.0]], p)
