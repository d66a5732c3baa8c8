"""ternary_matmul forward vs the reference: dtypes, transpose modes, scales,
batch dims, non-contiguous x, edge sizes, large K, hypothesis over shapes."""

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
    check_matmul,
    dtype_params,
    make_scale,
    make_weights,
    randn,
    shape_id,
    to_np,
)

TRANSPOSE = [pytest.param(True, id="T"), pytest.param(False, id="N")]


@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=shape_id)
@pytest.mark.parametrize("kind", SCALE_KINDS)
@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("dtype", dtype_params())
def test_matmul(shape, kind, transpose, dtype):
    M, N, K = shape
    codes, wq = make_weights(N, K, seed=M + N + K)
    scale = make_scale(kind, N, seed=N)
    x = randn((M, K if transpose else N), dtype, seed=M)
    y = check_matmul(x, codes, wq, scale, transpose)
    assert y.shape == (M, N if transpose else K)


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("lead", [(), (1,), (2, 3), (2, 1, 3)], ids=lambda s: "lead" + "x".join(map(str, s)))
def test_matmul_batch_dims(lead, dtype, transpose):
    N, K = 19, 96
    codes, wq = make_weights(N, K, seed=1)
    scale = make_scale("row", N, seed=2)
    x = randn((*lead, 5, K if transpose else N), dtype, seed=3)
    y = check_matmul(x, codes, wq, scale, transpose)
    assert y.shape == (*lead, 5, N if transpose else K)


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("dtype", dtype_params())
def test_matmul_vector_x(dtype, transpose):
    """x of shape (K,) (no leading dims) gives (N,) and vice versa."""
    N, K = 11, 64
    codes, wq = make_weights(N, K, seed=4)
    scale = make_scale("row", N, seed=5)
    x = randn((K if transpose else N,), dtype, seed=6)
    y = check_matmul(x, codes, wq, scale, transpose)
    assert y.shape == ((N,) if transpose else (K,))


def non_contiguous_views(M, D, dtype):
    """Views of logical shape (M, D) (or with batch dims) that are not row-contiguous."""
    return {
        "transposed": randn((D, M), dtype, seed=10).T,
        "col_sliced_offset": randn((M, D + 16), dtype, seed=11)[:, 16:],
        "col_strided": randn((M, 2 * D), dtype, seed=12)[:, ::2],
        "row_strided": randn((2 * M, D), dtype, seed=13)[::2],
        "reversed_rows": randn((M, D), dtype, seed=14)[::-1],
        "batch_transposed": randn((M, 2, D), dtype, seed=15).transpose(1, 0, 2),
        "broadcast": mx.broadcast_to(randn((1, D), dtype, seed=16), (M, D)),
    }


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize(
    "view",
    ["transposed", "col_sliced_offset", "col_strided", "row_strided", "reversed_rows", "batch_transposed", "broadcast"],
)
def test_matmul_non_contiguous(view, dtype, transpose):
    N, K = 21, 80
    codes, wq = make_weights(N, K, seed=20)
    scale = make_scale("row", N, seed=21)
    x = non_contiguous_views(6, K if transpose else N, dtype)[view]
    check_matmul(x, codes, wq, scale, transpose, what=f"ternary_matmul({view} x)")


@pytest.mark.parametrize("K", [6912, 8192, 16384, 16400])
@pytest.mark.parametrize("M", [1, 5, 20])
@pytest.mark.parametrize("dtype", dtype_params())
def test_matmul_large_K(K, M, dtype):
    N = 33
    codes, wq = make_weights(N, K, seed=K)
    scale = make_scale("row", N, seed=M)
    check_matmul(randn((M, K), dtype, seed=M), codes, wq, scale, True)


@pytest.mark.parametrize("N", [6912, 8192, 16384])
@pytest.mark.parametrize("M", [1, 20])
@pytest.mark.parametrize("dtype", dtype_params())
def test_matmul_transposed_large_reduction(N, M, dtype):
    """transpose=False reduces over N: make that long too."""
    K = 48
    codes, wq = make_weights(N, K, seed=N)
    scale = make_scale("row", N, seed=M)
    check_matmul(randn((M, N), dtype, seed=M), codes, wq, scale, False)


@pytest.mark.parametrize("transpose", TRANSPOSE)
def test_matmul_signed_and_zero_scales(transpose):
    """W_eff = diag(scale) @ W for any real scale, not only positive ones."""
    N, K = 9, 64
    codes, wq = make_weights(N, K, seed=30)
    scale = mx.array([0.5, -0.25, 0.0, 2.0, -3.0, 1.0, 0.0, -1.0, 0.125])
    check_matmul(randn((4, K if transpose else N), seed=31), codes, wq, scale, transpose)


@pytest.mark.parametrize("transpose", TRANSPOSE)
def test_matmul_scale_one_equals_scalar(transpose):
    N, K = 13, 32
    _, wq = make_weights(N, K, seed=40)
    x = randn((3, K if transpose else N), seed=41)
    a = bx.ternary_matmul(x, wq, mx.array(0.7), transpose=transpose)
    b = bx.ternary_matmul(x, wq, mx.array([0.7]), transpose=transpose)
    c = bx.ternary_matmul(x, wq, mx.full((N,), 0.7), transpose=transpose)
    assert mx.array_equal(a, b).item() and a.shape == b.shape
    assert mx.allclose(a, c, rtol=1e-6, atol=1e-6).item()


@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_matmul_matches_mlx_quantized_matmul(group_size):
    """Second oracle: MLX's own affine bits=2 kernel on our packed weights."""
    N, K = 24, 256
    codes, wq = make_weights(N, K, seed=group_size)
    scale = make_scale("row", N, seed=1)
    s = mx.broadcast_to(scale[:, None], (N, K // group_size))
    x = randn((3, K), seed=2)
    # On the CPU: MLX's CUDA backend has no float32 2-bit kernel for this shape.
    expect = mx.quantized_matmul(x, wq, s, -s, transpose=True, group_size=group_size, bits=2, stream=mx.cpu)
    y = bx.ternary_matmul(x, wq, scale)
    assert mx.allclose(y, expect, rtol=1e-5, atol=1e-4).item(), mx.abs(y - expect).max().item()


@given(
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    m=st.integers(1, 20),
    n=st.integers(1, 70),
    kw=st.integers(1, 40),
    transpose=st.booleans(),
    kind=st.sampled_from(SCALE_KINDS),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_matmul_property(lead, m, n, kw, transpose, kind, dtype, seed):
    K = 16 * kw
    codes, wq = make_weights(n, K, seed)
    scale = make_scale(kind, n, seed)
    x = randn((*lead, m, K if transpose else n), dtype, seed + 1)
    y = check_matmul(x, codes, wq, scale, transpose)
    assert y.shape == (*lead, m, n if transpose else K)


def weight_views(N, K, seed=0):
    """(name, codes view, packed view): packed weights that are not row-contiguous."""
    codes, wq = make_weights(2 * N, 2 * K, seed)
    return {
        "rows_strided": (codes[::2, :K], wq[::2, : K // 16]),
        "cols_sliced": (codes[:N, 16 : 16 + K], wq[:N, 1 : 1 + K // 16]),
        "transposed_twice": (codes[:N, :K], wq[:N, : K // 16].T.T),
        "from_transpose": (codes[:N, :K], mx.contiguous(wq[:N, : K // 16].T).T),
    }


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("view", ["rows_strided", "cols_sliced", "transposed_twice", "from_transpose"])
def test_matmul_non_contiguous_weights_and_scale(view, transpose):
    N, K = 9, 64
    codes, wq = weight_views(N, K, seed=50)[view]
    scale = make_scale("row", 2 * N, seed=51)[::2]  # strided scale too
    x = randn((3, K if transpose else N), seed=52)
    check_matmul(x, codes, wq, scale, transpose, what=f"ternary_matmul({view} wq, strided scale)")


# ---------------------------------------------------------------------------
# Code 3 (bits 11, never written by pack) is +2 on every op, ISA level and M
# path: MLX's affine reading (code - 1), as mx.dequantize gives.


def test_code3_reads_plus_two_at_m1():
    """The reported case: all-ones words gave 0 at M = 1 (AVX-512 pair lookups) and 128 at M = 2."""
    w = mx.full((16, 4), 0xFFFFFFFF, dtype=mx.uint32)
    for M in (1, 2):
        y = bx.ternary_matmul(mx.ones((M, 64)), w, mx.array(1.0))
        assert y.tolist() == [[128.0] * 16] * M, (M, y)


@pytest.mark.parametrize("M", [1, 2, 5, 17, 40], ids=lambda m: f"M{m}")
@pytest.mark.parametrize("transpose", TRANSPOSE)
def test_random_words_every_path(isa, M, transpose):
    """Arbitrary uint32 words against the reference and MLX's own dequantization."""
    N, K = 37, 1056  # 66 words: a tail after every vector width
    wq = mx.array(np.random.default_rng(M).integers(0, 2**32, (N, K // 16), dtype=np.uint64).astype(np.uint32))
    codes = ref.unpack(wq)
    assert (np.array(codes) == 2).any()
    scale = make_scale("row", N, seed=M)
    mlx_w = mx.dequantize(wq, mx.ones((N, K // 32)), -mx.ones((N, K // 32)), group_size=32, bits=2)
    assert mx.array_equal(mlx_w, codes.astype(mx.float32)).item()
    check_matmul(randn((M, K if transpose else N), seed=M), codes, wq, scale, transpose)
    if transpose:
        x = randn((M, K), seed=M + 1)
        assert_equal(bx.bitlinear(x, wq, scale), ref.bitlinear(x, wq, scale), "bitlinear")
        assert_equal(bx.unpack(wq), codes, "unpack")
        assert_equal(bx.dequantize(wq, scale, dtype=mx.float32), ref.dequantize(wq, scale, dtype=mx.float32),
                     "dequantize")


@pytest.mark.parametrize("M", [1, 3, 40], ids=lambda m: f"M{m}")
@pytest.mark.parametrize("transpose", TRANSPOSE)
def test_nonfinite_activations_same_pattern(isa, M, transpose):
    """NaN, +inf and -inf outputs exactly where the reference has them (inf * 0 = NaN)."""
    N, K = 19, 528
    codes, wq = make_weights(N, K, seed=M)
    scale = make_scale("row", N, seed=1)
    x = np.array(randn((M, K if transpose else N), seed=2))
    x[0, 5] = math.nan
    x[-1, -1] = math.inf
    if M > 2:
        x[1, 0] = -math.inf
    x = mx.array(x)
    y = bx.ternary_matmul(x, wq, scale, transpose=transpose)
    r = to_np(ref.ternary_matmul(x, wq, scale, transpose=transpose))
    a = to_np(y)
    for where in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(where(a), where(r), where.__name__)
    finite = np.isfinite(r)
    np.testing.assert_allclose(a[finite], r[finite], rtol=1e-5, atol=1e-4)
