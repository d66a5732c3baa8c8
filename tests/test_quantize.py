"""absmean_quantize, absmax_quantize, dequantize, fake_quantize vs the reference.

All of these are integer / exact paths: results must be bit-identical.
"""

import math

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import (
    FLOAT_DTYPES,
    assert_equal,
    dtype_params,
    make_scale,
    make_weights,
    randn,
    to_np,
)

PC = [pytest.param(False, id="per_tensor"), pytest.param(True, id="per_channel")]


# ---------------------------------------------------------------------------
# absmean_quantize


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("per_channel", PC)
@pytest.mark.parametrize("N,K", [(1, 16), (7, 48), (33, 256), (16, 6912), (3, 16384)], ids=lambda v: str(v))
def test_absmean_quantize_exact(dtype, per_channel, N, K):
    w = randn((N, K), dtype, seed=N + K, std=0.02)
    wq, scale = bx.absmean_quantize(w, per_channel=per_channel)
    rwq, rscale = ref.absmean_quantize(w, per_channel=per_channel)
    assert_equal(scale, rscale, "scale")
    assert_equal(wq, rwq, "packed codes")


@pytest.mark.parametrize("per_channel", PC)
def test_absmean_codes_from_own_scale(per_channel):
    """Codes are clip(round(w / scale)) of the returned scale, whatever the mean's rounding."""
    w = randn((24, 512), seed=3)
    wq, scale = bx.absmean_quantize(w, per_channel=per_channel)
    s = scale[:, None] if per_channel else scale
    expect = mx.clip(mx.round(w / s), -1, 1).astype(mx.int8)
    assert_equal(bx.unpack(wq), expect, "codes")


def test_absmean_rounds_half_to_even():
    # mean |w| = 1 exactly, so w / scale = w: 1.5 -> 2 -> 1, 0.5 -> 0, -0.5 -> 0, -1.5 -> -1.
    row = [1.5] * 4 + [0.5] * 4 + [-0.5] * 4 + [-1.5] * 4
    w = mx.array([row, row[::-1]])
    wq, scale = bx.absmean_quantize(w, per_channel=True)
    assert scale.tolist() == [1.0, 1.0]
    codes = [1] * 4 + [0] * 8 + [-1] * 4
    assert bx.unpack(wq).tolist() == [codes, codes[::-1]]
    wq1, scale1 = bx.absmean_quantize(w)
    assert scale1.shape == () and scale1.item() == 1.0
    assert_equal(wq1, wq, "per-tensor codes")


@pytest.mark.parametrize("per_channel", PC)
def test_absmean_eps(per_channel):
    w = mx.zeros((3, 64))
    w[1, 5] = 1e-4
    w[1, 6] = 3e-4  # every mean (row or whole) is below the default eps 1e-5
    wq, scale = bx.absmean_quantize(w, per_channel=per_channel)
    rwq, rscale = ref.absmean_quantize(w, per_channel=per_channel)
    assert_equal(scale, rscale, "scale")
    assert_equal(wq, rwq, "codes")
    assert (scale == mx.array(1e-5, mx.float32)).all().item()
    assert bx.unpack(wq)[1, 5:7].tolist() == [1, 1]
    # eps = 2e-4: w / scale = 0.5 -> 0 (half to even), 1.5 -> 2 -> clipped to 1
    wq, scale = bx.absmean_quantize(w, per_channel=per_channel, eps=2e-4)
    rwq, rscale = ref.absmean_quantize(w, per_channel=per_channel, eps=2e-4)
    assert_equal(scale, rscale, "scale (eps=2e-4)")
    assert_equal(wq, rwq, "codes (eps=2e-4)")
    assert bx.unpack(wq)[1, 5:7].tolist() == [0, 1]


def test_absmean_non_contiguous():
    base = randn((64, 40), seed=5)
    for name, w in {"transposed": base.T, "sliced": randn((40, 96), seed=6)[:, 16:80]}.items():
        for pc in (False, True):
            wq, scale = bx.absmean_quantize(w, per_channel=pc)
            rwq, rscale = ref.absmean_quantize(w, per_channel=pc)
            assert_equal(scale, rscale, f"scale ({name}, per_channel={pc})")
            assert_equal(wq, rwq, f"codes ({name}, per_channel={pc})")


@given(
    n=st.integers(1, 24),
    kw=st.integers(1, 24),
    per_channel=st.booleans(),
    dtype=st.sampled_from(FLOAT_DTYPES),
    std=st.sampled_from([1e-4, 0.02, 1.0, 300.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_absmean_property(n, kw, per_channel, dtype, std, seed):
    w = randn((n, 16 * kw), dtype, seed, std)
    wq, scale = bx.absmean_quantize(w, per_channel=per_channel)
    rwq, rscale = ref.absmean_quantize(w, per_channel=per_channel)
    assert_equal(scale, rscale, "scale")
    assert_equal(wq, rwq, "codes")


# ---------------------------------------------------------------------------
# absmax_quantize

ABSMAX_SHAPES = {
    "1d": (64,),
    "M1": (1, 2560),
    "M5": (5, 48),
    "odd_K": (4, 37),
    "batch": (2, 3, 80),
    "large_K": (3, 16384),
    "K6912": (2, 6912),
}


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("shape", ABSMAX_SHAPES.values(), ids=ABSMAX_SHAPES.keys())
def test_absmax_quantize_exact(dtype, shape):
    x = randn(shape, dtype, seed=len(shape) + shape[-1], std=3.0)
    xq, xs = bx.absmax_quantize(x)
    rxq, rxs = ref.absmax_quantize(x)
    assert xs.shape == (*shape[:-1], 1)
    assert_equal(xs, rxs, "xscale")
    assert_equal(xq, rxq, "xq")


def test_absmax_rounds_half_to_even_and_eps():
    # max |x| = 127, so xscale = 1 and xq = round(x).
    x = mx.array(
        [
            [127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5],
            [0.0] * 8,  # eps path: xscale = eps / 127, xq = 0
        ]
    )
    xq, xs = bx.absmax_quantize(x)
    assert xq.dtype == mx.int8
    assert xq.tolist() == [[127, 0, 2, 2, 0, -2, -2, 4], [0] * 8]
    assert_equal(xs, ref.absmax_quantize(x)[1], "xscale")
    assert xs[0, 0].item() == 1.0
    _, xs = bx.absmax_quantize(x, eps=254.0)  # eps wins for both rows
    assert xs.tolist() == [[2.0], [2.0]]


@pytest.mark.parametrize("dtype", dtype_params())
def test_absmax_non_contiguous(dtype):
    views = {
        "transposed": randn((48, 6), dtype, seed=1).T,
        "col_sliced": randn((5, 100), dtype, seed=2)[:, 3:83],
        "row_strided": randn((10, 32), dtype, seed=3)[::3],
        "batch_transposed": randn((4, 2, 32), dtype, seed=4).transpose(1, 0, 2),
        "broadcast": mx.broadcast_to(randn((1, 64), dtype, seed=5), (3, 64)),
    }
    for name, x in views.items():
        xq, xs = bx.absmax_quantize(x)
        rxq, rxs = ref.absmax_quantize(x)
        assert_equal(xs, rxs, f"xscale ({name})")
        assert_equal(xq, rxq, f"xq ({name})")


@given(
    lead=st.lists(st.integers(1, 4), min_size=0, max_size=2),
    k=st.integers(1, 300),
    dtype=st.sampled_from(FLOAT_DTYPES),
    std=st.sampled_from([1e-6, 1.0, 1e3]),
    seed=st.integers(0, 2**31 - 1),
)
def test_absmax_property(lead, k, dtype, std, seed):
    x = randn((*lead, k), dtype, seed, std)
    xq, xs = bx.absmax_quantize(x)
    rxq, rxs = ref.absmax_quantize(x)
    assert_equal(xs, rxs, "xscale")
    assert_equal(xq, rxq, "xq")


# ---------------------------------------------------------------------------
# dequantize


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("kind", ["scalar", "one", "row"])
@pytest.mark.parametrize("N,K", [(1, 16), (7, 48), (33, 2560)], ids=lambda v: str(v))
def test_dequantize_exact(dtype, kind, N, K):
    _, wq = make_weights(N, K, seed=N)
    scale = make_scale(kind, N, seed=K)
    got = bx.dequantize(wq, scale, dtype=dtype)
    assert_equal(got, ref.dequantize(wq, scale, dtype=dtype), "dequantize")


def test_dequantize_default_dtype_is_float16():
    _, wq = make_weights(4, 32)
    got = bx.dequantize(wq, mx.array(0.5))
    assert_equal(got, ref.dequantize(wq, mx.array(0.5)), "dequantize")
    assert got.dtype == mx.float16


# ---------------------------------------------------------------------------
# fake_quantize


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("per_channel", PC)
def test_fake_quantize_forward(dtype, per_channel):
    w = randn((12, 96), dtype, seed=9, std=0.05)
    got = bx.fake_quantize(w, per_channel=per_channel)
    assert_equal(got, ref.fake_quantize(w, per_channel=per_channel), "fake_quantize")
    wq, scale = bx.absmean_quantize(w, per_channel=per_channel)
    assert_equal(got, bx.dequantize(wq, scale, dtype=dtype), "dequantize(absmean_quantize(w))")


@pytest.mark.parametrize("dtype", dtype_params())
def test_dequantize_non_contiguous(dtype):
    N, K = 8, 64
    _, wq = make_weights(2 * N, 2 * K, seed=70)
    scale = make_scale("row", 2 * N, seed=71)[::2]
    for name, view in {
        "rows_strided": wq[::2, : K // 16],
        "cols_sliced": wq[:N, 2 : 2 + K // 16],
        "from_transpose": mx.contiguous(wq[:N, : K // 16].T).T,
    }.items():
        got = bx.dequantize(view, scale, dtype=dtype)
        assert_equal(got, ref.dequantize(view, scale, dtype=dtype), f"dequantize({name} wq, strided scale)")


# ---------------------------------------------------------------------------
# Non-finite inputs (bitnet_ext.reference states the rule): a NaN or inf in a
# row of x gives xscale NaN or inf and codes 0; one in the weights a scale
# covers gives that scale NaN or inf and codes 0. On every ISA level.

NONFINITE = [pytest.param(math.nan, id="nan"), pytest.param(math.inf, id="inf"), pytest.param(-math.inf, id="-inf")]
# First, last, both sides of 4-, 8- and 16-lane vectors and of scalar tails.
ABSMAX_POSITIONS = (0, 1, 3, 4, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65)


def assert_same_values(actual, expected, what):
    """Equal dtype, shape and values, NaN where the expected value is NaN."""
    assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), what
    np.testing.assert_array_equal(to_np(actual), to_np(expected), what)


def test_absmax_quantize_nan_row():
    """The reported case: the NaN was quantized to -128 under a finite xscale."""
    x = mx.ones((1, 64))
    x[0, 3] = math.nan
    xq, xs = bx.absmax_quantize(x)
    assert math.isnan(xs.item())
    assert xq.tolist() == [[0] * 64]


@pytest.mark.parametrize("K", [1, 5, 67, 1040])
@pytest.mark.parametrize("value", NONFINITE)
def test_absmax_quantize_nonfinite_every_position(isa, value, K):
    base = np.array(randn((3, K), seed=K, std=3.0))
    for pos in sorted({p for p in ABSMAX_POSITIONS + (K - 17, K - 16, K - 2, K - 1) if 0 <= p < K}):
        x = base.copy()
        x[1, pos] = value
        x = mx.array(x)
        xq, xs = bx.absmax_quantize(x)
        rxq, rxs = ref.absmax_quantize(x)
        mx.eval(xq, xs)
        assert_same_values(xs, rxs, f"xscale, {value} at {pos}")
        assert_equal(xq, rxq, f"xq, {value} at {pos}")
        assert xq[1].tolist() == [0] * K


@pytest.mark.parametrize("per_channel", PC)
@pytest.mark.parametrize("value", NONFINITE)
def test_absmean_quantize_nonfinite_weights(isa, per_channel, value):
    """Codes 0 under a NaN or inf scale (a NaN code was -1)."""
    N, K = 5, 96
    w = np.array(randn((N, K), seed=3, std=0.02))
    w[2, 17] = value
    w = mx.array(w)
    wq, scale = bx.absmean_quantize(w, per_channel=per_channel)
    rwq, rscale = ref.absmean_quantize(w, per_channel=per_channel)
    assert_same_values(scale, rscale, "scale")
    assert_equal(wq, rwq, "packed codes")
    zero_rows = [2] if per_channel else list(range(N))
    assert (np.array(wq)[zero_rows] == 0x55555555).all()
    fq = bx.fake_quantize(w, per_channel=per_channel)
    assert_same_values(fq, ref.fake_quantize(w, per_channel=per_channel), "fake_quantize")
    assert np.isnan(np.array(fq)[zero_rows]).all()  # scale NaN or inf times code 0
