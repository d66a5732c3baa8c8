"""bitlinear (W1.58A8): bit-exact against the reference, exact int32
accumulation in the worst case, bias handling, shapes, hypothesis."""

import math

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import (
    EDGE_SHAPES,
    FLOAT_DTYPES,
    SCALE_KINDS,
    assert_equal,
    check_bitlinear,
    dtype_params,
    make_scale,
    make_weights,
    randn,
    shape_id,
    to_np,
)


@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=shape_id)
@pytest.mark.parametrize("kind", SCALE_KINDS)
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("with_bias", [False, True], ids=["nobias", "bias"])
def test_bitlinear_exact(shape, kind, dtype, with_bias):
    M, N, K = shape
    _, wq = make_weights(N, K, seed=M * N + K)
    scale = make_scale(kind, N, seed=K)
    bias = randn((N,), seed=N) if with_bias else None
    y = check_bitlinear(randn((M, K), dtype, seed=M), wq, scale, bias)
    assert y.shape == (M, N) and y.dtype == dtype


@pytest.mark.parametrize("dtype", dtype_params())
def test_bitlinear_bias_in_x_dtype(dtype):
    N, K = 10, 64
    _, wq = make_weights(N, K, seed=1)
    check_bitlinear(randn((3, K), dtype, seed=2), wq, make_scale("row", N), randn((N,), dtype, seed=3))


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("lead", [(), (2,), (2, 3)], ids=lambda s: "lead" + "x".join(map(str, s)))
def test_bitlinear_batch_dims(lead, dtype):
    N, K = 15, 96
    _, wq = make_weights(N, K, seed=4)
    y = check_bitlinear(randn((*lead, 4, K), dtype, seed=5), wq, make_scale("row", N), randn((N,), seed=6))
    assert y.shape == (*lead, 4, N)


def test_bitlinear_vector_x():
    N, K = 6, 32
    _, wq = make_weights(N, K, seed=7)
    y = check_bitlinear(randn((K,), seed=8), wq, make_scale("scalar", N))
    assert y.shape == (N,)


@pytest.mark.parametrize("dtype", dtype_params())
def test_bitlinear_non_contiguous(dtype):
    N, K = 21, 80
    _, wq = make_weights(N, K, seed=9)
    scale = make_scale("row", N)
    views = {
        "transposed": randn((K, 6), dtype, seed=10).T,
        "col_sliced_offset": randn((6, K + 16), dtype, seed=11)[:, 16:],
        "col_strided": randn((6, 2 * K), dtype, seed=12)[:, ::2],
        "row_strided": randn((12, K), dtype, seed=13)[::2],
        "batch_transposed": randn((3, 2, K), dtype, seed=14).transpose(1, 0, 2),
        "broadcast": mx.broadcast_to(randn((1, K), dtype, seed=15), (5, K)),
    }
    for name, x in views.items():
        check_bitlinear(x, wq, scale, what=f"bitlinear({name} x)")


@pytest.mark.parametrize("K", [6912, 8192, 16384, 16400])
@pytest.mark.parametrize("M", [1, 5, 20])
@pytest.mark.parametrize("dtype", dtype_params())
def test_bitlinear_large_K(K, M, dtype):
    N = 33
    _, wq = make_weights(N, K, seed=K)
    check_bitlinear(randn((M, K), dtype, seed=M), wq, make_scale("row", N, seed=M), randn((N,), seed=K))


@pytest.mark.parametrize("K", [16384, 65536])
@pytest.mark.parametrize("M", [1, 3, 17], ids=lambda m: f"M{m}")
@pytest.mark.parametrize("pattern", ["all_plus", "all_minus", "alternating"])
def test_bitlinear_worst_case_exact(K, M, pattern):
    """|acc| = 127 * K: every product is +-127, so no int16 partial sum may overflow.

    All activations have magnitude 1, so xscale = 1/127 and xq = +-127.
    'alternating': x and W both alternate sign, so every product is +127.
    """
    N = 5
    ones = mx.ones((N, K), mx.int8)
    sign = 1 - 2 * (mx.arange(K) % 2)  # +1, -1, +1, ...
    if pattern == "all_plus":
        codes, x, expect_acc = ones, mx.ones((M, K)), 127 * K
    elif pattern == "all_minus":
        codes, x, expect_acc = -ones, mx.ones((M, K)), -127 * K
    else:
        codes = ones * sign.astype(mx.int8)
        x = mx.broadcast_to(sign.astype(mx.float32), (M, K))
        expect_acc = 127 * K
    wq = ref.pack(codes)
    xq, xs = bx.absmax_quantize(x)
    assert xs[0, 0].item() == mx.array(1.0 / 127, mx.float32).item()
    assert (mx.abs(xq.astype(mx.int32)) == 127).all().item()
    scale = mx.array(0.8125)  # exactly representable
    y = check_bitlinear(x, wq, scale)
    expect = (mx.array(float(expect_acc)) * xs) * scale  # float32, reference order
    assert_equal(y, mx.broadcast_to(expect, (M, N)), "worst case")
    assert abs(y[0, 0].item() - expect_acc / 127 * 0.8125) <= 1e-6 * K


def test_bitlinear_matches_manual_pipeline():
    """bitlinear == absmax_quantize, exact int dot, ((acc * xs) * s) + b."""
    N, K = 12, 128
    codes, wq = make_weights(N, K, seed=50)
    x, s, b = randn((4, K), seed=51), make_scale("row", N, seed=52), randn((N,), seed=53)
    xq, xs = bx.absmax_quantize(x)
    acc = xq.astype(mx.int32)[:, None, :] * codes.astype(mx.int32)[None]  # int32, exact
    acc = acc.sum(-1)
    expect = ((acc.astype(mx.float32) * xs) * s) + b
    assert_equal(bx.bitlinear(x, wq, s, bias=b), expect, "bitlinear")


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    m=st.integers(1, 20),
    n=st.integers(1, 70),
    kw=st.integers(1, 40),
    kind=st.sampled_from(SCALE_KINDS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    with_bias=st.booleans(),
    std=st.sampled_from([1e-3, 1.0, 50.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_bitlinear_property(lead, m, n, kw, kind, dtype, with_bias, std, seed):
    K = 16 * kw
    _, wq = make_weights(n, K, seed)
    bias = randn((n,), seed=seed + 2) if with_bias else None
    y = check_bitlinear(randn((*lead, m, K), dtype, seed + 1, std), wq, make_scale(kind, n, seed), bias)
    assert y.shape == (*lead, m, n)


@pytest.mark.parametrize("view", ["rows_strided", "cols_sliced", "from_transpose"])
def test_bitlinear_non_contiguous_weights_scale_bias(view):
    N, K = 9, 64
    codes, wq = make_weights(2 * N, 2 * K, seed=60)
    wq = {
        "rows_strided": wq[::2, : K // 16],
        "cols_sliced": wq[:N, 1 : 1 + K // 16],
        "from_transpose": mx.contiguous(wq[:N, : K // 16].T).T,
    }[view]
    scale = make_scale("row", 2 * N, seed=61)[::2]
    bias = randn((2 * N,), seed=62)[1::2]
    check_bitlinear(randn((3, K), seed=63), wq, scale, bias, what=f"bitlinear({view} wq, strided scale/bias)")


# ---------------------------------------------------------------------------
# Non-finite activations (NaN/inf): the reference's semantics on every ISA
# level and M path. A row of x with a NaN has xscale NaN; with an inf, xscale
# inf and codes 0; either way the row of y is 0 * inf or acc * NaN = NaN.

NONFINITE = [pytest.param(math.nan, id="nan"), pytest.param(math.inf, id="inf"), pytest.param(-math.inf, id="-inf")]


def test_bitlinear_nan_activation_gives_nan_row():
    """The reported case: one NaN among ones gave 61.99 (NaN quantized to -128) instead of NaN."""
    x = mx.ones((1, 64))
    x[0, 3] = math.nan
    wq = bx.pack(mx.ones((4, 64), mx.int8))
    y = bx.bitlinear(x, wq, mx.array(1.0))
    assert np.isnan(np.array(y)).all(), y
    np.testing.assert_array_equal(np.array(y), np.array(ref.bitlinear(x, wq, mx.array(1.0))))


@pytest.mark.parametrize("M", [1, 3, 40], ids=lambda m: f"M{m}")  # GEMV M=1, small-M GEMV, GEMM
@pytest.mark.parametrize("value", NONFINITE)
def test_bitlinear_nonfinite_activation_every_position(isa, M, value):
    """First, last, SIMD lane and tail positions: the row is NaN, the other rows exact."""
    N, K = 9, 1040
    codes, wq = make_weights(N, K, seed=5)
    scale = make_scale("row", N, seed=6)
    base = np.array(randn((M, K), seed=7))
    for pos in (0, 3, 7, 8, 15, 16, 17, 31, 32, 63, 64, 255, 256, K - 17, K - 16, K - 2, K - 1):
        x = base.copy()
        x[M // 2, pos] = value
        x = mx.array(x)
        y, r = bx.bitlinear(x, wq, scale), ref.bitlinear(x, wq, scale)
        mx.eval(y)
        assert np.isnan(np.array(y[M // 2])).all(), f"position {pos}: {y[M // 2]}"
        np.testing.assert_array_equal(to_np(y), to_np(r), f"position {pos}")
