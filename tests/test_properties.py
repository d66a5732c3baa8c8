"""Property-based tests of every op at every ISA level against the reference.

Hypothesis draws packed words (arbitrary uint32, code 3 included, or packed
ternary codes), shapes (M in 1..40 over the GEMV and GEMM paths, K up to a few
thousand with tails after every vector width), memory layouts of x (transposed,
sliced, strided) and NaN/inf positions (first, last, around lane boundaries or
anywhere). Each example runs once per ISA level this CPU supports and must
match bitnet_ext.reference: integer results (codes, words, bitlinear) equal;
float results (ternary_matmul) within conftest.assert_close's float32
tolerance; NaN, +inf and -inf exactly where the reference has them.

Each test runs 4x the profile's examples: 100 with the default profile (a few
seconds in all), 1200 with BITNET_HYPOTHESIS_PROFILE=bitnet-long.
"""

import math

import mlx.core as mx
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import FLOAT_DTYPES, assert_close, supported_isas, to_np

ISAS = supported_isas()
# Cheap examples (milliseconds each): more of them than the suite's default.
more_examples = settings(max_examples=4 * settings.default.max_examples)
SPECIALS = [math.nan, math.inf, -math.inf]
LAYOUTS = ["contiguous", "transposed", "col_sliced", "col_strided", "row_strided"]


def at_every_isa(op):
    """[(isa, op() evaluated at that level)] for every supported level."""
    results = []
    for isa in ISAS:
        with bx.cpu.use_isa(isa):
            out = op()
            mx.eval(out)
        results.append((isa, out))
    return results


# ---------------------------------------------------------------------------
# data


def draw_words(data, N, KW):
    """uint32 (N, KW): random words, packed codes, all code 3, or packed codes with random words mixed in."""
    kind = data.draw(st.sampled_from(["random", "packed", "code3", "mixed"]), label="words")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="words seed"))
    random = rng.integers(0, 2**32, (N, KW), dtype=np.uint64).astype(np.uint32)
    if kind == "random":
        return mx.array(random)
    if kind == "code3":
        return mx.full((N, KW), 0xFFFFFFFF, dtype=mx.uint32)
    packed = np.array(ref.pack(mx.array(rng.integers(-1, 2, (N, 16 * KW), dtype=np.int8))))
    if kind == "mixed":
        packed = np.where(rng.random((N, KW)) < 0.2, random, packed)
    return mx.array(packed)


def draw_floats(data, shape, std_choices=(1.0,)):
    """float32 numpy array of the shape, with 0-3 NaN/inf values at drawn positions."""
    std = data.draw(st.sampled_from(std_choices), label="std")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    a = (std * rng.standard_normal(shape)).astype(np.float32)
    rows, D = shape
    # Positions where a kernel changes path: first, last, both sides of the
    # 4/8/16-lane vectors and of 64-element blocks; or anywhere.
    edges = sorted({p % D for p in (0, 1, 3, 4, 7, 8, 15, 16, 17, 63, 64, D - 17, D - 16, D - 2, D - 1)})
    for _ in range(data.draw(st.integers(0, 3), label="non-finite count")):
        r = data.draw(st.integers(0, rows - 1), label="row")
        c = data.draw(st.one_of(st.sampled_from(edges), st.integers(0, D - 1)), label="column")
        a[r, c] = data.draw(st.sampled_from(SPECIALS), label="value")
    return a


def as_layout(a, layout, dtype):
    """An mx view of numpy a (rows, D) in the given memory layout, values cast to dtype."""
    rows, D = a.shape
    if layout == "transposed":
        return mx.array(np.ascontiguousarray(a.T)).astype(dtype).T
    if layout == "col_sliced":
        base = np.zeros((rows, D + 5), np.float32)
        base[:, 5:] = a
        return mx.array(base).astype(dtype)[:, 5:]
    if layout == "col_strided":
        base = np.zeros((rows, 2 * D), np.float32)
        base[:, ::2] = a
        return mx.array(base).astype(dtype)[:, ::2]
    if layout == "row_strided":
        base = np.zeros((2 * rows, D), np.float32)
        base[::2] = a
        return mx.array(base).astype(dtype)[::2]
    return mx.array(a).astype(dtype)


def draw_x(data, rows, D, std_choices=(1.0,)):
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    layout = data.draw(st.sampled_from(LAYOUTS), label="layout")
    x = as_layout(draw_floats(data, (rows, D), std_choices), layout, dtype)
    return x


def draw_scale(data, N):
    kind = data.draw(st.sampled_from(["scalar", "one", "row"]), label="scale")
    shape = {"scalar": (), "one": (1,), "row": (N,)}[kind]
    seed = data.draw(st.integers(0, 2**31 - 1), label="scale seed")
    return mx.random.uniform(0.05, 1.5, shape, key=mx.random.key(seed))


M_PATHS = st.one_of(st.just(1), st.integers(1, 16), st.integers(17, 40))  # LUT / GEMV / GEMM
KW = st.one_of(st.integers(1, 20), st.integers(21, 260))  # K = 16 KW up to 4160


# ---------------------------------------------------------------------------
# comparisons


def assert_same(actual, expected, what):
    """Equal dtype, shape and values; NaN where the reference has NaN."""
    assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), what
    np.testing.assert_array_equal(to_np(actual), to_np(expected), what)


def assert_close_nonfinite(actual, expected, sumsq, R, what):
    """NaN/+inf/-inf where the reference has them; finite values within assert_close's tolerance."""
    a, e = to_np(actual), to_np(expected)
    for where in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(where(a), where(e), f"{what}: {where.__name__}")
    finite = np.isfinite(e)
    keep = mx.array(finite)
    zero = mx.array(0, actual.dtype)
    assert_close(mx.where(keep, actual, zero), mx.where(keep, expected, zero), np.where(finite, sumsq, 0.0), R, what)


def squared_terms(x, wq, scale, transpose):
    """Sum of squared terms of each output (non-finite x counted as 0: those outputs are not compared)."""
    x2 = np.nan_to_num(to_np(x), nan=0.0, posinf=0.0, neginf=0.0) ** 2
    w2 = to_np(ref.unpack(wq)) ** 2  # (N, K)
    s2 = np.broadcast_to(to_np(scale).reshape(-1), (w2.shape[0],))[:, None] ** 2
    return x2 @ ((w2 * s2).T if transpose else w2 * s2)


# ---------------------------------------------------------------------------
# the ops


@more_examples
@given(data=st.data())
def test_ternary_matmul_property(data):
    M, N, kw = data.draw(M_PATHS, label="M"), data.draw(st.integers(1, 48), label="N"), data.draw(KW, label="KW")
    transpose = data.draw(st.booleans(), label="transpose")
    K = 16 * kw
    wq, scale = draw_words(data, N, kw), draw_scale(data, N)
    x = draw_x(data, M, K if transpose else N)
    expected = ref.ternary_matmul(x, wq, scale, transpose=transpose)
    sumsq = squared_terms(x, wq, scale, transpose)
    for isa, y in at_every_isa(lambda: bx.ternary_matmul(x, wq, scale, transpose=transpose)):
        assert_close_nonfinite(y, expected, sumsq, K if transpose else N,
                               f"ternary_matmul {isa} M={M} N={N} K={K} transpose={transpose}")


@more_examples
@given(data=st.data())
def test_bitlinear_property(data):
    M, N, kw = data.draw(M_PATHS, label="M"), data.draw(st.integers(1, 48), label="N"), data.draw(KW, label="KW")
    wq, scale = draw_words(data, N, kw), draw_scale(data, N)
    x = draw_x(data, M, 16 * kw, std_choices=(1.0, 1e-6, 1e3))
    bias = mx.array(draw_floats(data, (1, N))[0]) if data.draw(st.booleans(), label="bias") else None
    expected = ref.bitlinear(x, wq, scale, bias=bias)
    for isa, y in at_every_isa(lambda: bx.bitlinear(x, wq, scale, bias=bias)):
        assert_same(y, expected, f"bitlinear {isa} M={M} N={N} K={16 * kw}")


@more_examples
@given(data=st.data())
def test_absmax_quantize_property(data):
    M, K = data.draw(M_PATHS, label="M"), data.draw(st.integers(1, 3000), label="K")
    x = draw_x(data, M, K, std_choices=(1.0, 1e-6, 1e3))
    rq, rs = ref.absmax_quantize(x)
    for isa, (xq, xs) in at_every_isa(lambda: bx.absmax_quantize(x)):
        assert_same(xs, rs, f"absmax xscale {isa} M={M} K={K}")
        assert_same(xq, rq, f"absmax xq {isa} M={M} K={K}")


@more_examples
@given(data=st.data())
def test_absmean_and_fake_quantize_property(data):
    N, kw = data.draw(st.integers(1, 40), label="N"), data.draw(KW, label="KW")
    per_channel = data.draw(st.booleans(), label="per_channel")
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    w = mx.array(draw_floats(data, (N, 16 * kw), std_choices=(0.02, 1e-7, 10.0))).astype(dtype)
    rwq, rscale = ref.absmean_quantize(w, per_channel=per_channel)
    rfq = ref.fake_quantize(w, per_channel=per_channel)
    for isa, (wq, scale, fq) in at_every_isa(
        lambda: (*bx.absmean_quantize(w, per_channel=per_channel), bx.fake_quantize(w, per_channel=per_channel))
    ):
        what = f"{isa} N={N} K={16 * kw} per_channel={per_channel}"
        assert_same(scale, rscale, f"absmean scale {what}")
        assert_same(wq, rwq, f"absmean codes {what}")
        assert_same(fq, rfq, f"fake_quantize {what}")


@more_examples
@given(data=st.data())
def test_unpack_dequantize_property(data):
    N, kw = data.draw(st.integers(1, 40), label="N"), data.draw(KW, label="KW")
    wq, scale = draw_words(data, N, kw), draw_scale(data, N)
    if data.draw(st.booleans(), label="strided words"):
        wq = mx.repeat(wq, 2, axis=1)[:, ::2]  # same words, not row-contiguous
    dtype = data.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    rcodes, rdeq = ref.unpack(wq), ref.dequantize(wq, scale, dtype=dtype)
    for isa, (codes, deq) in at_every_isa(lambda: (bx.unpack(wq), bx.dequantize(wq, scale, dtype=dtype))):
        assert_same(codes, rcodes, f"unpack {isa} N={N} K={16 * kw}")
        assert_same(deq, rdeq, f"dequantize {isa} N={N} K={16 * kw}")
