"""fusednn.ops dropout / DropConnect / Gaussian noise against the NumPy reference on every device:
Philox4x32-10 known answers, bitwise masks over shapes, dtypes, probabilities and streams (the
same masks on the CPU and the GPU), properties of the (seed, offset, index) stream, gradients,
and bad input. dropout_mask and the raw Philox generator are host helpers of the CPU module."""

import importlib
import inspect
import math

import numpy as np
import pytest
from conftest import GRADCHECK_ATOL, GRADCHECK_RTOL, assert_close, seed_of, to_device, to_numpy

import fusednn
from fusednn import ops, reference
from fusednn.testing import numerical_gradient

DTYPES = [np.float32, np.float64]
MODES = ["inverted", "vanilla"]
PS = [0.0, 0.1, 0.5, 0.9, 0.999]
# Empty, one element, sizes around the 4-word Philox block and off the SIMD widths, 2-D, 3-D.
SHAPES = [(0,), (3, 0), (1,), (3,), (5,), (17,), (3, 1), (7, 13), (4, 5, 6), (2, 3, 17)]
LARGE = (1000, 1001)
# (seed, offset): the extremes, a large offset with both 32-bit halves non-zero, a seed with a
# non-zero high word.
STREAMS = [(0, 0), (2**64 - 1, 2**64 - 1), (12345, 2**40 + 3), (2**32 + 7, 1)]
FORWARD = ["dropout", "drop_connect"]
BACKWARD = {"dropout": "dropout_backward", "drop_connect": "drop_connect_backward"}
PUBLIC = ["dropout_mask", "dropout", "dropout_backward", "drop_connect", "drop_connect_backward", "gaussian_noise"]
TWO_24 = 2**24

# Known answers for Philox4x32-10: the three "philox4x32 10" lines of Random123's
# tests/kat_vectors (D. E. Shaw Research, https://github.com/DEShawResearch/random123);
# columns: counter (4 words), key (2 words), expected output (4 words), all hex uint32.
PHILOX_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]
PHILOX_IMPLS = {
    "reference": lambda counters, key: reference.philox4x32_10(counters, key),
    "compiled": lambda counters, key: fusednn._C._philox4x32_10(counters, key),
}


def assert_bitwise_equal(got, want):
    """Same dtype, shape and bits (so -0.0 differs from 0.0); got is a NumPy or CuPy array."""
    assert isinstance(got, np.ndarray) or hasattr(got, "__cuda_array_interface__"), type(got)
    got, want = to_numpy(got), to_numpy(want)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    as_bits = np.dtype(f"u{want.dtype.itemsize}") if want.dtype != np.bool_ else np.bool_
    np.testing.assert_array_equal(np.ascontiguousarray(got).view(as_bits), np.ascontiguousarray(want).view(as_bits))


def expected_mask(words, p):
    return (words >> 8) >= math.ceil(p * TWO_24)


# ---- Philox4x32-10 ----

@pytest.mark.parametrize("impl", PHILOX_IMPLS)
@pytest.mark.parametrize("counter, key, expected", PHILOX_KAT, ids=["zeros", "ones", "pi"])
def test_philox_known_answers(impl, counter, key, expected):
    got = PHILOX_IMPLS[impl](np.array([counter], np.uint32), np.array(key, np.uint32))
    assert got.dtype == np.uint32 and got.shape == (1, 4)
    assert [hex(v) for v in got[0]] == [hex(v) for v in expected]


def test_philox_compiled_matches_reference_on_many_counters():
    rng = np.random.default_rng(seed_of("philox many"))
    counters = rng.integers(0, 2**32, size=(1001, 4), dtype=np.uint32)
    for key in ([0, 0], [0xFFFFFFFF, 0xFFFFFFFF], rng.integers(0, 2**32, size=2)):
        key = np.array(key, np.uint32)
        assert_bitwise_equal(fusednn._C._philox4x32_10(counters, key), reference.philox4x32_10(counters, key))
    empty = fusednn._C._philox4x32_10(np.zeros((0, 4), np.uint32), np.zeros(2, np.uint32))
    assert empty.shape == (0, 4) and empty.dtype == np.uint32


def test_reference_philox_broadcasts_keys():
    counters = np.array([c for c, _, _ in PHILOX_KAT], np.uint32)
    keys = np.array([k for _, k, _ in PHILOX_KAT], np.uint32)
    expected = np.array([e for _, _, e in PHILOX_KAT], np.uint32)
    assert_bitwise_equal(reference.philox4x32_10(counters, keys), expected)
    table = reference.philox4x32_10(counters[:, None, :], keys[None, :, :])  # every counter under every key
    assert table.shape == (3, 3, 4)
    assert_bitwise_equal(table[np.arange(3), np.arange(3)], expected)


@pytest.mark.parametrize("seed, offset", STREAMS)
def test_philox_uint32_is_the_documented_stream(seed, offset):
    # Element i is word i % 4 of the block for counter (j lo, j hi, offset lo, offset hi), j = i // 4,
    # under key (seed lo, seed hi): built here one element at a time with Python ints.
    n = 11
    key = np.array([seed & 0xFFFFFFFF, seed >> 32], np.uint32)
    want = []
    for i in range(n):
        j = i // 4
        counter = np.array([[j & 0xFFFFFFFF, j >> 32, offset & 0xFFFFFFFF, offset >> 32]], np.uint32)
        want.append(reference.philox4x32_10(counter, key)[0, i % 4])
    got = reference.philox_uint32(n, seed, offset)
    assert_bitwise_equal(got, np.array(want, np.uint32))
    assert reference.philox_uint32(0, seed, offset).shape == (0,)


# ---- ops against the reference, bitwise ----

@pytest.mark.parametrize("shape", SHAPES)
def test_dropout_mask_matches_reference(shape):
    for p in PS:
        for seed, offset in STREAMS:
            got = ops.dropout_mask(shape, p, seed=seed, offset=offset)
            assert_bitwise_equal(got, reference.dropout_mask(shape, p, seed=seed, offset=offset))
    assert ops.dropout_mask(shape, 0.0, seed=1).all()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", FORWARD)
def test_forward_matches_reference(device, shape, dtype, name):
    rng = np.random.default_rng(seed_of(shape, name))
    x = rng.standard_normal(shape).astype(dtype)
    xd = to_device(device, x)
    for p in PS:
        for mode in MODES:
            for training in (True, False):
                for seed, offset in STREAMS:
                    kw = dict(seed=seed, offset=offset, training=training, mode=mode)
                    got = getattr(ops, name)(xd, p, **kw)
                    assert_bitwise_equal(got, getattr(reference, name)(x, p, **kw))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", BACKWARD.values())
def test_backward_matches_reference(device, shape, dtype, name):
    rng = np.random.default_rng(seed_of(shape, name))
    dy = rng.standard_normal(shape).astype(dtype)
    dyd = to_device(device, dy)
    for p in PS:
        for mode in MODES:
            for seed, offset in STREAMS:
                kw = dict(seed=seed, offset=offset, mode=mode)
                assert_bitwise_equal(getattr(ops, name)(dyd, p, **kw), getattr(reference, name)(dy, p, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_matches_reference(device, dtype):
    rng = np.random.default_rng(seed_of("large", dtype))
    x = rng.standard_normal(LARGE).astype(dtype)
    xd = to_device(device, x)
    seed, offset = 12345, 2**40 + 3
    for p in (0.1, 0.999):
        mask = reference.dropout_mask(LARGE, p, seed=seed, offset=offset)
        if device == "cpu":
            assert_bitwise_equal(ops.dropout_mask(LARGE, p, seed=seed, offset=offset), mask)
        for mode in MODES:
            scale = dtype(1 / (1 - p)) if mode == "inverted" else dtype(1)
            want = x * np.where(mask, scale, dtype(0))
            kw = dict(seed=seed, offset=offset, mode=mode)
            assert_bitwise_equal(reference.dropout(x, p, **kw), want)
            for name in ("dropout", "dropout_backward", "drop_connect", "drop_connect_backward"):
                assert_bitwise_equal(getattr(ops, name)(xd, p, **kw), want)


@pytest.mark.parametrize("n", [1, 3, 4, 1001, 1 << 20])
@pytest.mark.parametrize("offset", [0, 5, (1 << 40) + 3])
def test_masks_equal_the_reference_bit_for_bit(device, n, offset):
    """On every device, the masks of dropout, its backward and DropConnect are the reference's,
    bit for bit: one Philox stream for the CPU and the GPU."""
    mask = reference.dropout_mask((n,), 0.3, seed=1234, offset=offset)
    ones = np.ones(n, np.float32)
    assert_bitwise_equal(ops.dropout(to_device(device, ones), 0.3, seed=1234, offset=offset),
                         np.where(mask, np.float32(1 / 0.7), np.float32(0)))
    dy = np.random.default_rng(seed_of("masks", n)).standard_normal(n).astype(np.float32)
    assert_bitwise_equal(ops.dropout_backward(to_device(device, dy), 0.3, seed=1234, offset=offset),
                         reference.dropout_backward(dy, 0.3, seed=1234, offset=offset))
    assert_bitwise_equal(ops.drop_connect(to_device(device, ones), 0.3, seed=9, offset=offset, mode="vanilla"),
                         reference.drop_connect(ones, 0.3, seed=9, offset=offset, mode="vanilla"))


def check_dropout_into_buffer(device, xs, keep, p, seed, offset, relu, shift):
    """ops.dropout of xs (ReLU first if relu) into a buffer of 7s at element `shift`: the values are
    xs (or relu(xs)) times keep, bit for bit, and the elements around out are still 7."""
    n = xs.size
    want = (np.where(xs < 0, np.float32(0), xs) if relu else xs) * keep
    buf = to_device(device, np.full(n + 32, 7.0, np.float32))
    ops.dropout(to_device(device, xs), p, seed=seed, offset=offset, activation="relu" if relu else None,
                out=buf[shift:shift + n])
    got = to_numpy(buf)
    assert_bitwise_equal(got[shift:shift + n], want)
    assert (got[:shift] == 7).all() and (got[shift + n:] == 7).all()


def test_streamed_outputs_match_the_reference(device, threads):
    """Float32 outputs of 16 MiB or more are written with streaming stores on the CPU, realigned to
    64-byte lines: at every alignment of out, with and without the ReLU, through the last partial
    step and on 1 and 2 threads, the values are the reference's and the elements around out stay
    untouched."""
    n = 4 * 2**20 + 37
    p, seed, offset = 0.3, 5, 2**33 + 9
    mask = reference.dropout_mask((n,), p, seed=seed, offset=offset)
    keep = np.where(mask, np.float32(1 / (1 - p)), np.float32(0))
    x = np.random.default_rng(seed_of("streamed")).standard_normal(n + 8).astype(np.float32)
    for shift, relu, t in ((0, False, 1), (3, True, 2), (4, False, 2), (13, False, 1)):
        threads(t)
        check_dropout_into_buffer(device, x[shift % 8:shift % 8 + n], keep, p, seed, offset, relu, shift)


def test_outputs_at_every_alignment_match_the_reference(device):
    """The AVX-512 kernel follows out's 64-byte lines (the keep bits shifted to match): at every
    offset of out in a line, x at another, sizes around the 128-element step and the 16-float line,
    with and without the ReLU, the values are the reference's and the elements around out stay
    untouched."""
    p, seed, offset = 0.4, 11, 2**32 + 5
    x = np.random.default_rng(seed_of("alignment")).standard_normal(1000 + 16).astype(np.float32)
    for n in (1, 12, 16, 17, 112, 127, 128, 129, 143, 144, 145, 271, 1000):
        keep = np.where(reference.dropout_mask((n,), p, seed=seed, offset=offset), np.float32(1 / (1 - p)),
                        np.float32(0))
        for shift in range(16):
            check_dropout_into_buffer(device, x[7 * shift % 16:7 * shift % 16 + n], keep, p, seed, offset,
                                      shift % 2 == 1, shift)


@pytest.mark.parametrize("shape", SHAPES + [LARGE])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_noise_matches_reference(device, shape, dtype):
    # The noise is computed in double from the same words on every device (Box-Muller), then
    # rounded to the dtype: elementwise agreement.
    rng = np.random.default_rng(seed_of(shape, "noise"))
    x = rng.standard_normal(shape).astype(dtype)
    xd = to_device(device, x)
    streams = STREAMS if shape != LARGE else STREAMS[2:3]
    for std in (0.0, 0.5, 3.0):
        for seed, offset in streams:
            got = ops.gaussian_noise(xd, std, seed=seed, offset=offset)
            want = reference.gaussian_noise(x, std, seed=seed, offset=offset)
            assert got.dtype == dtype and got.shape == shape
            assert_close(got, want)
            assert ops.gaussian_noise(xd, std, seed=seed, offset=offset, training=False) is xd


# ---- properties of the stream ----

@pytest.mark.parametrize("dtype", DTYPES)
def test_noise_of_an_element_does_not_depend_on_the_length(device, dtype):
    # Element i's noise is a function of (seed, offset, i) and x[i] only: a prefix of the array
    # gets the bits of the whole array's first elements (the float32 AVX-512 kernel's last step
    # once rounded x + std z as one fused multiply-add where its full steps rounded twice).
    rng = np.random.default_rng(seed_of("noise prefix", dtype))
    x = to_device(device, rng.standard_normal(700).astype(dtype))
    whole = to_numpy(ops.gaussian_noise(x, 0.3, seed=5, offset=3))
    for n in (1, 15, 16, 17, 63, 64, 65, 128, 129, 192, 193, 255, 300, 699):
        part = to_numpy(ops.gaussian_noise(x[:n], 0.3, seed=5, offset=3))
        assert np.array_equal(part, whole[:n]), n


def test_mask_is_a_function_of_seed_offset_and_index():
    seed, offset, p = 2**63 + 11, 2**40 + 3, 0.3
    n = 1000
    mask = ops.dropout_mask((n,), p, seed=seed, offset=offset)
    for a, b in ((0, 1), (3, 9), (4, 8), (5, 1000), (999, 1000), (0, 1000)):
        words = reference.philox_uint32(b, seed, offset)[a:b]
        np.testing.assert_array_equal(mask[a:b], expected_mask(words, p))
        # The mask of a shorter array is a prefix: element i does not depend on the size.
        np.testing.assert_array_equal(ops.dropout_mask((b,), p, seed=seed, offset=offset)[a:b], mask[a:b])
    # The index is the C-order index, whatever the shape.
    np.testing.assert_array_equal(ops.dropout_mask((8, 125), p, seed=seed, offset=offset), mask.reshape(8, 125))
    np.testing.assert_array_equal(ops.dropout_mask((10, 10, 10), p, seed=seed, offset=offset),
                                  mask.reshape(10, 10, 10))


def test_element_index_is_the_c_order_index_of_the_array_passed(device, xp):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((13, 7))
    xd = to_device(device, x)
    for view in (xd.T, xp.asfortranarray(xd), xd[::2, 1:], xd[:, ::-1]):
        contiguous = np.ascontiguousarray(to_numpy(view))
        kw = dict(seed=99, offset=5)
        assert_bitwise_equal(ops.dropout(view, 0.5, **kw), reference.dropout(contiguous, 0.5, **kw))
        assert_bitwise_equal(ops.dropout_backward(view, 0.5, **kw), reference.dropout_backward(contiguous, 0.5, **kw))
        assert_bitwise_equal(ops.drop_connect(view, 0.5, **kw), reference.drop_connect(contiguous, 0.5, **kw))
        assert_close(ops.gaussian_noise(view, 1.0, **kw), reference.gaussian_noise(contiguous, 1.0, **kw))


def test_same_stream_same_mask_and_different_streams_independent_masks():
    n, p = 100_000, 0.5
    base = ops.dropout_mask((n,), p, seed=7, offset=3)
    np.testing.assert_array_equal(ops.dropout_mask((n,), p, seed=7, offset=3), base)
    # Neighbouring offsets, the offset's high word, neighbouring seeds, the seed's high word.
    for seed, offset in ((7, 4), (7, 2**40 + 3), (8, 3), (2**32 + 7, 3)):
        other = ops.dropout_mask((n,), p, seed=seed, offset=offset)
        disagree = np.mean(other != base)  # 1/2 for independent masks
        assert abs(disagree - 0.5) < 5 * math.sqrt(0.25 / n), (seed, offset, disagree)


def test_seed_accepts_numpy_integers():
    want = ops.dropout_mask((37,), 0.5, seed=2**64 - 1, offset=2**40 + 3)
    got = ops.dropout_mask((37,), 0.5, seed=np.uint64(2**64 - 1), offset=np.int64(2**40 + 3))
    np.testing.assert_array_equal(got, want)


def test_threshold_is_ceil_of_p_times_2_24():
    # An element whose 24-bit uniform u equals p exactly is kept (u >= p); for the next double
    # above p it is dropped. Exercises the float64 ceil of the threshold.
    seed, offset = 5, 6
    words = reference.philox_uint32(64, seed, offset)
    for i in (0, 1, 2, 3, 17, 63):
        k = int(words[i] >> 8)
        if k == 0:
            continue
        p_at = k / TWO_24
        for impl in (ops, reference):
            assert impl.dropout_mask((64,), p_at, seed=seed, offset=offset)[i]
            assert not impl.dropout_mask((64,), np.nextafter(p_at, 1.0), seed=seed, offset=offset)[i]


def test_identical_results_for_one_and_two_threads(threads):
    n = 4 * 2**20 + 3
    rng = np.random.default_rng(11)
    x = rng.standard_normal(n, dtype=np.float32)
    kw = dict(seed=2**64 - 1, offset=2**40 + 3)
    results = []
    for t in (1, 2):
        threads(t)
        assert fusednn.get_num_threads() == t
        results.append((ops.dropout_mask((n,), 0.3, **kw), ops.dropout(x, 0.3, **kw),
                        ops.dropout_backward(x, 0.3, mode="vanilla", **kw), ops.drop_connect(x, 0.7, **kw),
                        ops.gaussian_noise(x, 0.5, **kw)))
    for one, two in zip(*results):
        assert_bitwise_equal(one, two)
    assert_bitwise_equal(results[0][0], reference.dropout_mask((n,), 0.3, **kw))


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.999])
def test_keep_rate_is_one_minus_p(p):
    n = 2**20
    rate = ops.dropout_mask((n,), p, seed=seed_of("keep", p), offset=1).mean()
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(rate - (1 - p)) < 5 * sigma, (rate, 1 - p)


@pytest.mark.parametrize("mode", MODES)
def test_training_preserves_the_expectation_of_evaluation(mode):
    n, p = 2**20, 0.3
    x = np.ones(n)
    y = ops.dropout(x, p, seed=21, offset=2, mode=mode)
    evaluation = ops.dropout(x, p, seed=21, offset=2, training=False, mode=mode)
    expected = 1.0 if mode == "inverted" else 1.0 - p
    np.testing.assert_array_equal(evaluation, np.full(n, expected))
    scale = 1 / (1 - p) if mode == "inverted" else 1.0
    assert abs(y.mean() - expected) < 5 * scale * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_noise_moments(dtype):
    n, std = 2**20, 2.5
    z = ops.gaussian_noise(np.zeros(n, dtype), std, seed=seed_of("moments", dtype), offset=9).astype(np.float64)
    assert abs(z.mean()) < 5 * std / math.sqrt(n)
    assert abs(z.std() - std) < 5 * std / math.sqrt(2 * n)
    within = np.mean(np.abs(z) < std)  # P(|Z| < 1) = erf(1/sqrt(2))
    target = math.erf(1 / math.sqrt(2))
    assert abs(within - target) < 5 * math.sqrt(target * (1 - target) / n)
    # Each Box-Muller pair is uncorrelated.
    pairs = z[: n // 2 * 2].reshape(-1, 2)
    assert abs(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1]) < 5 / math.sqrt(n / 2)


# ---- returning x itself, out=, non-finite values, long double ----

@pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])
def test_identity_cases_return_x_itself(device, xp, impl):
    if impl is reference and device != "cpu":
        pytest.skip("the reference takes NumPy arrays")
    x = xp.arange(12, dtype=xp.float32).reshape(3, 4)
    for fn in (impl.dropout, impl.drop_connect):
        assert fn(x, 0.0, seed=1) is x
        assert fn(x, 0.0, seed=1, mode="vanilla") is x
        assert fn(x, 0.5, seed=1, training=False) is x
        strided = x.T
        assert fn(strided, 0.0, seed=1) is strided
    assert impl.gaussian_noise(x, 1.0, seed=1, training=False) is x
    for kw in (dict(p=0.0), dict(p=0.5, training=False)):
        out = xp.full_like(x, np.nan)
        assert impl.dropout(x, seed=1, out=out, **kw) is out
        np.testing.assert_array_equal(to_numpy(out), to_numpy(x))
    out = xp.full_like(x, np.nan)
    assert impl.gaussian_noise(x, 1.0, seed=1, training=False, out=out) is out
    np.testing.assert_array_equal(to_numpy(out), to_numpy(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_is_written_in_place_and_returned(device, xp, dtype):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((9, 5)).astype(dtype)
    x_before = x.copy()
    xd = to_device(device, x)
    kw = dict(seed=3, offset=4)
    for name in FORWARD:
        for mode in MODES:
            for training in (True, False):
                out = xp.full_like(xd, np.nan)
                got = getattr(ops, name)(xd, 0.4, training=training, mode=mode, out=out, **kw)
                assert got is out
                assert_bitwise_equal(out, getattr(reference, name)(x, 0.4, training=training, mode=mode, **kw))
    for name in BACKWARD.values():
        out = xp.full_like(xd, np.nan)
        assert getattr(ops, name)(xd, 0.4, out=out, **kw) is out
        assert_bitwise_equal(out, getattr(reference, name)(x, 0.4, **kw))
    out = xp.full_like(xd, np.nan)
    assert ops.gaussian_noise(xd, 0.7, out=out, **kw) is out
    assert_close(out, reference.gaussian_noise(x, 0.7, **kw))
    assert_bitwise_equal(xd, x_before)  # the input is untouched


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropped_nan_and_inf_give_nan(device, dtype):
    n, p, kw = 64, 0.5, dict(seed=13, offset=0)
    mask = reference.dropout_mask((n,), p, **kw)
    assert mask.any() and not mask.all()
    x = np.ones(n, dtype)
    x[::3] = np.nan
    x[1::3] = np.inf
    x[2::6] = -np.inf
    for impl, put in ((ops, lambda a: to_device(device, a)), (reference, lambda a: a)):
        for fn in (impl.dropout, impl.dropout_backward, impl.drop_connect, impl.drop_connect_backward):
            y = to_numpy(fn(put(x), p, **kw))
            assert np.isnan(y[~mask & ~np.isfinite(x)]).all()
            np.testing.assert_array_equal(np.isnan(y), np.isnan(x) | (np.isinf(x) & ~mask))
            np.testing.assert_array_equal(y[np.isfinite(x) & ~mask], 0)
            kept_inf = mask & np.isinf(x)
            np.testing.assert_array_equal(y[kept_inf], x[kept_inf])
    # A multiplication: a dropped negative finite value gives -0.0, as in PyTorch.
    neg = -np.ones(n, dtype)
    y = to_numpy(ops.dropout(to_device(device, neg), p, **kw))
    assert np.signbit(y[~mask]).all() and (y[~mask] == 0).all()


def test_reference_works_in_long_double():
    rng = np.random.default_rng(14)
    x64 = rng.standard_normal((6, 7))
    x = x64.astype(np.longdouble)
    kw = dict(seed=15, offset=16)
    for mode in MODES:
        y = reference.dropout(x, 0.3, mode=mode, **kw)
        assert y.dtype == np.longdouble
        np.testing.assert_array_equal(y != 0, reference.dropout(x64, 0.3, mode=mode, **kw) != 0)
        np.testing.assert_array_equal(reference.dropout_backward(x, 0.3, mode=mode, **kw), y)
    noisy = reference.gaussian_noise(x, 0.5, **kw)
    assert noisy.dtype == np.longdouble
    assert_close(noisy.astype(np.float64), reference.gaussian_noise(x64, 0.5, **kw))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_and_dtype_preserved(device, dtype):
    for shape in ((0,), (3, 0), (0, 4, 2)):
        x = to_device(device, np.zeros(shape, dtype))
        if device == "cpu":
            assert ops.dropout_mask(shape, 0.5, seed=1).shape == shape
        for fn in (ops.dropout, ops.dropout_backward, ops.drop_connect, ops.drop_connect_backward):
            y = fn(x, 0.5, seed=1)
            assert y.shape == shape and y.dtype == dtype
        y = ops.gaussian_noise(x, 1.0, seed=1)
        assert y.shape == shape and y.dtype == dtype


# ---- gradients ----

@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_backward_is_the_forward_multiplier(device, name, mode, dtype):
    rng = np.random.default_rng(seed_of(name, mode, dtype))
    kw = dict(seed=2**64 - 1, offset=2**40 + 3, mode=mode)
    forward, backward = getattr(ops, name), getattr(ops, BACKWARD[name])
    multiplier = to_numpy(forward(to_device(device, np.ones((37, 29), dtype)), 0.4, **kw))  # m * s exactly
    assert set(np.unique(multiplier)) <= {dtype(0), dtype(1 / 0.6) if mode == "inverted" else dtype(1)}
    dy = rng.standard_normal((37, 29)).astype(dtype)
    assert_bitwise_equal(backward(to_device(device, dy), 0.4, **kw), dy * multiplier)
    x = rng.standard_normal((37, 29)).astype(dtype)
    np.testing.assert_array_equal(to_numpy(forward(to_device(device, x), 0.4, **kw)) != 0, multiplier != 0)


@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_float64(name, mode):
    rng = np.random.default_rng(seed_of("gradcheck", name, mode))
    x = rng.standard_normal((4, 5))
    r = rng.standard_normal((4, 5))  # loss = sum(r * y), so dL/dy = r
    kw = dict(seed=17, offset=2**40 + 3, mode=mode)

    def loss():
        return float((getattr(ops, name)(x, 0.5, **kw) * r).sum())

    analytic = getattr(ops, BACKWARD[name])(r, 0.5, **kw)
    np.testing.assert_allclose(analytic, numerical_gradient(loss, x), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


# ---- dropout(relu(x)): activation="relu"

@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("shape", SHAPES + [LARGE])
@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_forward_matches_reference_and_the_composition(device, shape, dtype):
    rng = np.random.default_rng(seed_of("relu", shape))
    x = rng.standard_normal(shape).astype(dtype)
    if x.size > 3:
        x.reshape(-1)[:3] = [np.nan, np.inf, -np.inf]
    xd, relu_x = to_device(device, x, np.maximum(x, dtype(0)))
    for p in (0.0, 0.5, 0.999):
        for mode in MODES:
            for training in (True, False):
                kw = dict(seed=12345, offset=2**40 + 3, training=training, mode=mode)
                got = ops.dropout(xd, p, activation="relu", **kw)
                assert_bitwise_equal(got, reference.dropout(x, p, activation="relu", **kw))
                assert_bitwise_equal(got, ops.dropout(relu_x, p, **kw))
                assert got is not xd


@pytest.mark.parametrize("shape", SHAPES + [LARGE])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_relu_backward_from_the_output_is_the_chain_rule(device, shape, dtype, mode):
    """With finite gradients, the backward read off y equals relu's backward after dropout's
    regenerated mask (up to the sign of zeros: a dropped unit gives +0 from the select, where
    the mask's product gives -0 for a negative dy)."""
    rng = np.random.default_rng(seed_of("relu backward", shape, mode))
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    xd, dyd = to_device(device, x, dy)
    for p in (0.0, 0.3, 0.999):
        kw = dict(seed=7, offset=2**33 + 1, mode=mode)
        y = reference.dropout(x, p, activation="relu", **kw)
        yd = ops.dropout(xd, p, activation="relu", **kw)
        assert_bitwise_equal(yd, y)
        got = ops.dropout_backward(dyd, p, y=yd, activation="relu", **kw)
        assert_bitwise_equal(got, reference.dropout_backward(dy, p, y=y, activation="relu", **kw))
        chain = np.where(x > 0, reference.dropout_backward(dy, p, **kw), dtype(0))
        np.testing.assert_array_equal(to_numpy(got), chain)


def test_relu_backward_is_a_select(device):
    """An infinite gradient at a dropped or inactive unit gives 0, as ReLU's backward."""
    y, dy = to_device(device, np.array([0.0, 2.0, 0.0], np.float32), np.array([np.inf, 1.0, -np.inf], np.float32))
    got = ops.dropout_backward(dy, 0.5, seed=1, y=y, activation="relu")
    assert_bitwise_equal(got, np.array([0.0, 2.0, 0.0], np.float32))


@pytest.mark.parametrize("mode", MODES)
def test_relu_gradcheck_float64(mode):
    rng = np.random.default_rng(seed_of("relu gradcheck", mode))
    x = rng.standard_normal((6, 7))
    x[np.abs(x) < 1e-3] = 0.5  # away from the kink
    r = rng.standard_normal((6, 7))
    kw = dict(seed=17, offset=5, mode=mode)

    def loss():
        return float((ops.dropout(x, 0.5, activation="relu", **kw) * r).sum())

    y = ops.dropout(x, 0.5, activation="relu", **kw)
    analytic = ops.dropout_backward(r, 0.5, y=y, activation="relu", **kw)
    np.testing.assert_allclose(analytic, numerical_gradient(loss, x), rtol=GRADCHECK_RTOL, atol=GRADCHECK_ATOL)


@pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])
def test_relu_backward_needs_y(device, impl):
    put = (lambda *a: to_device(device, *a)) if impl is ops else (lambda *a: a[0] if len(a) == 1 else a)
    dy = put(np.ones((3, 4), np.float32))
    with pytest.raises(ValueError, match="y: the forward output is required"):
        impl.dropout_backward(dy, 0.5, seed=1, activation="relu")
    with pytest.raises(ValueError, match="activation: expected None or 'relu'"):
        impl.dropout(dy, 0.5, seed=1, activation="tanh")
    with pytest.raises(ValueError, match="y: expected"):
        impl.dropout_backward(dy, 0.5, seed=1, y=put(np.ones((4, 3), np.float32)), activation="relu")


# ---- bad input: every case names the argument ----

IMPLS = pytest.mark.parametrize("impl", [ops, reference], ids=["ops", "reference"])


def _calls(impl, device, p=0.5, **kw):
    """Every op that takes p, called with these arguments (on the device for fusednn.ops;
    dropout_mask, a host helper, on the CPU only)."""
    x = np.ones((3, 4), np.float32)
    if impl is ops:
        x = to_device(device, x)
    kw.setdefault("seed", 1)
    modeless = {k: v for k, v in kw.items() if k != "mode"}
    if device == "cpu":
        yield lambda: impl.dropout_mask((3, 4), p, **modeless)
    yield lambda: impl.dropout(x, p, **kw)
    yield lambda: impl.dropout_backward(x, p, **kw)
    yield lambda: impl.drop_connect(x, p, **kw)
    yield lambda: impl.drop_connect_backward(x, p, **kw)


@IMPLS
@pytest.mark.parametrize("p, shown", [(-0.1, "-0.1"), (1.0, "1.0"), (1.5, "1.5"), (float("nan"), "nan"),
                                      (-np.inf, "-inf")])
def test_bad_p(device, impl, p, shown):
    for call in _calls(impl, device, p):
        with pytest.raises(ValueError, match=rf"p: expected a drop probability in \[0, 1\), got {shown}"):
            call()
    for call in _calls(impl, device, "0.5"):
        with pytest.raises(TypeError, match=r"p: expected a drop probability in \[0, 1\)"):
            call()


@IMPLS
@pytest.mark.parametrize("name", ["seed", "offset"])
@pytest.mark.parametrize("value, exc, shown", [(-1, ValueError, "-1"), (2**64, ValueError, str(2**64)),
                                               (1.5, TypeError, ""), ("1", TypeError, ""), (None, TypeError, "")])
def test_bad_seed_and_offset(device, impl, name, value, exc, shown):
    calls = list(_calls(impl, device, **{name: value}))
    x = to_device(device, np.ones(3)) if impl is ops else np.ones(3)
    calls.append(lambda: impl.gaussian_noise(x, 1.0, **{"seed": 1, name: value}))
    for call in calls:
        with pytest.raises(exc, match=rf"{name}: expected an integer in \[0, 2\*\*64\), got {shown}"):
            call()


@IMPLS
def test_bad_mode(device, impl):
    x = to_device(device, np.ones(5)) if impl is ops else np.ones(5)
    for fn in (impl.dropout, impl.dropout_backward, impl.drop_connect, impl.drop_connect_backward):
        for mode in ("x", None, "Inverted"):
            with pytest.raises(ValueError, match=r"mode: expected 'inverted' or 'vanilla', got " + repr(mode)):
                fn(x, 0.5, seed=1, mode=mode)


@IMPLS
def test_bad_std(device, impl):
    x = to_device(device, np.ones(5)) if impl is ops else np.ones(5)
    with pytest.raises(ValueError, match=r"std: expected a value >= 0, got -1"):
        impl.gaussian_noise(x, -1, seed=1)
    with pytest.raises(ValueError, match=r"std: expected a value >= 0, got nan"):
        impl.gaussian_noise(x, float("nan"), seed=1)
    with pytest.raises(TypeError, match=r"std: expected a value >= 0"):
        impl.gaussian_noise(x, "1", seed=1)


ARRAY_OPS = [("dropout", "x"), ("dropout_backward", "dy"), ("drop_connect", "w"), ("drop_connect_backward", "dw"),
             ("gaussian_noise", "x")]


@pytest.mark.parametrize("name, arg", ARRAY_OPS)
def test_bad_input_array(device, name, arg):
    fn = getattr(ops, name)
    x = np.ones((4, 6), np.float32)
    # The CUDA module names the dtype by its array-interface type string (<i8, <f2).
    with pytest.raises(TypeError, match=rf"{arg}: expected dtype float32 or float64, got (int64|<i8)"):
        fn(to_device(device, x.astype(np.int64)), 0.5, seed=1)
    with pytest.raises(TypeError, match=rf"{arg}: expected dtype float32 or float64, got (float16|<f2)"):
        fn(to_device(device, x.astype(np.float16)), 0.5, seed=1)
    with pytest.raises(TypeError, match=rf"{arg}: expected a numpy.ndarray or cupy.ndarray, got builtins.list"):
        fn(x.tolist(), 0.5, seed=1)


def _read_only(a):
    a.flags.writeable = False
    return a


@pytest.mark.parametrize("name, arg", ARRAY_OPS)
@pytest.mark.parametrize(
    "make_out, exc, match",
    [
        (lambda: np.empty((4, 5), np.float32), ValueError, r"out: expected shape \(4, 6\), got \(4, 5\)"),
        (lambda: np.empty((6, 4), np.float32), ValueError, r"out: expected shape \(4, 6\), got \(6, 4\)"),
        (lambda: np.empty((4, 6), np.float64), TypeError, r"out: expected dtype float32, got float64"),
        (lambda: np.empty((6, 4), np.float32).T, ValueError, r"out: expected a C-contiguous"),
        (lambda: np.empty((4, 12), np.float32)[:, ::2], ValueError, r"out: expected a C-contiguous"),
        (lambda: _read_only(np.empty((4, 6), np.float32)), ValueError, r"out: expected a writable array"),
        (lambda: np.zeros(97, np.uint8)[1:].view(np.float32).reshape(4, 6), ValueError,
         r"out: expected a C-contiguous, aligned"),
        (lambda: [[0.0] * 6] * 4, TypeError, r"out: expected a numpy.ndarray"),
    ],
    ids=["shape", "transposed-shape", "dtype", "transposed", "strided", "read-only", "unaligned", "list"],
)
def test_bad_out(name, arg, make_out, exc, match):
    fn = getattr(ops, name)
    x = np.ones((4, 6), np.float32)
    # Checked whether or not the op takes its shortcut (p == 0, evaluation).
    variants = [dict(), dict(training=False)] if name in ("dropout", "drop_connect", "gaussian_noise") else [dict()]
    for kw in variants:
        with pytest.raises(exc, match=match):
            fn(x, 0.5, seed=1, out=make_out(), **kw)
    if name != "gaussian_noise":
        with pytest.raises(exc, match=match):
            fn(x, 0.0, seed=1, out=make_out())


# ---- the surface ----

def test_reference_has_the_same_signatures():
    # The submodule by its full name: the package's attribute `dropout` is the function.
    module = importlib.import_module("fusednn.reference.dropout")
    public = sorted(n for n, f in vars(module).items()
                    if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == module.__name__)
    assert sorted(PUBLIC + ["philox4x32_10", "philox_uint32"]) == public
    for name in ("philox4x32_10", "philox_uint32"):
        assert getattr(reference, name) is getattr(module, name)
    for name in PUBLIC:
        assert inspect.signature(getattr(ops, name)) == inspect.signature(getattr(reference, name)), name
        assert name in ops.__all__ and name in reference.__all__
