"""bitnet_ext.rms_norm and bitnet_ext.rope (one CPU op each where MLX's CPU
decomposes mx.fast.rms_norm / mx.fast.rope into many) against float64 NumPy
formulas and against mx.fast itself: dtypes, strided inputs, tails, offsets,
1 and 2 threads; gradients (MLX's autograd of mx.fast, finite differences),
jvp, vmap, compile, argument checks, and the model swap of bitnet_ext.mlx_lm."""

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bitnet_ext as bx
from conftest import DTYPE_NAME, dtype_params, randn, to_np

# Relative spacing of each dtype (one unit in the last place is at most twice
# this times the value).
ULP = {mx.float32: 2.0**-23, mx.float16: 2.0**-10, mx.bfloat16: 2.0**-7}
# Below its smallest normal number a dtype's spacing is absolute.
TINY = {mx.float32: 2.0**-126, mx.float16: 2.0**-14, mx.bfloat16: 2.0**-126}


def rms_norm_np(x, w, eps):
    x = to_np(x)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * to_np(w)


def rope_np(x, dims, traditional, base, scale, offset):
    """mx.fast.rope's definition in float64; offset: int or one per B."""
    x = x if isinstance(x, np.ndarray) else to_np(x)
    T, half = x.shape[-2], dims // 2
    off = np.asarray(offset, dtype=np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    pos = (np.arange(T).reshape((T, 1)) + off) * scale  # (B or 1, 1.., T, 1)
    theta = pos * base ** (-np.arange(half) / half)
    c, s = np.cos(theta), np.sin(theta)
    if traditional:
        x1, x2 = x[..., 0:dims:2], x[..., 1:dims:2]
        out = np.stack([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1).reshape(x.shape[:-1] + (dims,))
    else:
        x1, x2 = x[..., :half], x[..., half:dims]
        out = np.concatenate([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)
    return np.concatenate([out, x[..., dims:]], axis=-1)


def assert_within_ulps(y, expected, dtype, ulps, what):
    err = np.abs(to_np(y) - expected)
    bound = ulps * 2 * ULP[dtype] * (np.abs(expected) + TINY[dtype])
    assert np.all(err <= bound), f"{what}: max error {err.max():.3g}, bound {bound.max():.3g}"


# ---------------------------------------------------------------------------
# rms_norm


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (3, 33), (2, 5, 2560), (1, 1, 6912)], ids=str)
@pytest.mark.parametrize("dtype", dtype_params())
def test_rms_norm_vs_float64(shape, dtype, threads):
    x = randn(shape, dtype, seed=shape[-1])
    w = (1 + 0.2 * randn((shape[-1],), mx.float32, seed=3)).astype(dtype)
    y = bx.rms_norm(x, w, 1e-5)
    assert y.shape == x.shape and y.dtype == dtype
    # Two roundings to dtype (normalized x, then the product with w); float32
    # results also carry the float32 sum of squares and rsqrt (a few units).
    ulps = 8 if dtype == mx.float32 else 1.5
    assert_within_ulps(y, rms_norm_np(x, w, 1e-5), dtype, ulps, f"rms_norm {DTYPE_NAME[dtype]}")
    # mx.fast.rms_norm rounds the same way: a rounding apart at most.
    assert_within_ulps(y, to_np(mx.fast.rms_norm(x, w, 1e-5)), dtype, ulps, "vs mx.fast.rms_norm")


def test_rms_norm_strided_and_mixed_dtypes():
    base = randn((6, 4, 96), mx.bfloat16, seed=5)
    x = base.transpose(1, 0, 2)[:, ::2]  # a strided view, (4, 3, 96)
    w = 1 + 0.1 * randn((96,), mx.float32, seed=6)
    y = bx.rms_norm(x, w, 1e-6)
    assert y.dtype == mx.float32  # result_type(bfloat16, float32), as mx.fast.rms_norm
    assert_within_ulps(y, rms_norm_np(x, w, 1e-6), mx.float32, 64, "strided bf16 x, f32 weight")
    w_view = mx.concatenate([w, w])[::2]  # a strided weight
    np.testing.assert_allclose(to_np(bx.rms_norm(x, w_view, 1e-6)), rms_norm_np(x, w_view, 1e-6), rtol=1e-5)


@pytest.mark.parametrize("dtype", dtype_params())
def test_rms_norm_unit_stride_and_strided_rows_agree_bitwise(dtype):
    # Unit-stride rows take a vectorized loop, strided ones the general loop:
    # the same sums in the same order, so the same bits; a NaN stays a NaN.
    base = randn((2, 2 * 2563), dtype, seed=11)
    strided = base[:, ::2]
    contiguous = mx.array(to_np(strided)).astype(dtype)
    w = (1 + 0.2 * randn((2563,), mx.float32, seed=12)).astype(dtype)
    np.testing.assert_array_equal(to_np(bx.rms_norm(strided, w, 1e-5)), to_np(bx.rms_norm(contiguous, w, 1e-5)))
    with_nan = mx.concatenate([contiguous[:1], mx.full((1, 2563), float("nan"), dtype)])
    y = to_np(bx.rms_norm(with_nan, w, 1e-5))
    assert np.all(np.isnan(y[1])) and not np.any(np.isnan(y[0]))


def test_rms_norm_zero_row_and_eps():
    x = mx.zeros((2, 16))
    w = mx.ones((16,))
    assert np.all(to_np(bx.rms_norm(x, w, 1e-5)) == 0)
    with pytest.raises(ValueError, match="rms_norm: eps must be a finite number >= 0"):
        bx.rms_norm(x, w, -1.0)


def test_rms_norm_grads_match_mlx_and_finite_differences():
    x = randn((3, 40), mx.float32, seed=7)
    w = 1 + 0.3 * randn((40,), mx.float32, seed=8)
    g = randn((3, 40), mx.float32, seed=9)

    def loss(f):
        return lambda x, w: mx.sum(f(x, w, 1e-5) * g)

    ours = mx.grad(loss(bx.rms_norm), argnums=(0, 1))(x, w)
    theirs = mx.grad(loss(mx.fast.rms_norm), argnums=(0, 1))(x, w)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-5, atol=1e-6)
    # Central differences of the float64 formula along a random direction.
    d = to_np(randn((3, 40), mx.float32, seed=10))
    h = 1e-4
    x64, w64, g64 = to_np(x), to_np(w), to_np(g)

    def f64(xv):
        return np.sum(xv / np.sqrt(np.mean(xv * xv, -1, keepdims=True) + 1e-5) * w64 * g64)

    fd = (f64(x64 + h * d) - f64(x64 - h * d)) / (2 * h)
    assert abs(np.sum(to_np(ours[0]) * d) - fd) <= 1e-3 * max(1.0, abs(fd))


def test_rms_norm_jvp_vmap_compile():
    x = randn((4, 3, 24), mx.float32, seed=11)
    w = 1 + 0.1 * randn((24,), mx.float32, seed=12)
    t = randn((4, 3, 24), mx.float32, seed=13)
    _, (ours,) = mx.jvp(lambda x: bx.rms_norm(x, w, 1e-5), [x], [t])
    _, (theirs,) = mx.jvp(lambda x: mx.fast.rms_norm(x, w, 1e-5), [x], [t])
    np.testing.assert_allclose(to_np(ours), to_np(theirs), rtol=1e-5, atol=1e-6)
    # vmap over an axis that is not the normalized one, and over the last one.
    xv = randn((3, 24, 5), mx.float32, seed=14)
    y = mx.vmap(lambda r: bx.rms_norm(r, w, 1e-5), in_axes=2, out_axes=2)(xv)
    np.testing.assert_allclose(to_np(y), to_np(bx.rms_norm(xv.transpose(2, 0, 1), w, 1e-5)).transpose(1, 2, 0), rtol=1e-6)
    f = mx.compile(lambda x: bx.rms_norm(x, w, 1e-5), shapeless=True)
    for shape in [(2, 24), (5, 3, 24)]:
        xs = randn(shape, mx.float32, seed=len(shape))
        np.testing.assert_array_equal(to_np(f(xs)), to_np(bx.rms_norm(xs, w, 1e-5)))


@pytest.mark.parametrize(
    "x, w, err, match",
    [
        (mx.zeros((2, 8), mx.int32), mx.ones((8,)), TypeError, "rms_norm: x must be float16, bfloat16 or float32"),
        (mx.zeros((2, 8)), mx.ones((8,), mx.int8), TypeError, "rms_norm: weight must be float16"),
        (mx.zeros((2, 8)), mx.ones((7,)), ValueError, r"rms_norm: weight must have shape \(8,\)"),
        (mx.zeros((2, 8)), mx.ones((2, 8)), ValueError, r"weight must have shape \(8,\).*got \(2, 8\)"),
        (mx.zeros(()), mx.ones((1,)), ValueError, "rms_norm: x must have a non-empty last axis"),
        (mx.zeros((3, 0)), mx.ones((0,)), ValueError, "rms_norm: x must have a non-empty last axis"),
    ],
)
def test_rms_norm_bad_arguments(x, w, err, match):
    with pytest.raises(err, match=match):
        bx.rms_norm(x, w)


# ---------------------------------------------------------------------------
# rope


@pytest.mark.parametrize("traditional", [False, True], ids=["halves", "traditional"])
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("offset", [0, 37, 4000])
def test_rope_vs_float64(traditional, dtype, offset):
    # (B, T, H, D) transposed to (B, H, T, D): the strided view mlx-lm passes.
    x = randn((2, 9, 5, 128), dtype, seed=offset).transpose(0, 2, 1, 3)
    y = bx.rope(x, 128, traditional=traditional, base=500000.0, offset=offset)
    assert y.shape == x.shape and y.dtype == dtype
    expected = rope_np(x, 128, traditional, 500000.0, 1.0, offset)
    # One rounding of a float32 rotation; float32 angles of positions up to
    # ~4000 carry ~2e-4 absolute error (shared with MLX).
    angle_err = 3e-7 * (offset + 9) * np.abs(to_np(x)).max()
    err = np.abs(to_np(y) - expected)
    assert np.all(err <= ULP[dtype] * np.abs(expected) + 2 * ULP[dtype] * 0.5 + angle_err), err.max()
    # No further from the float64 values than mx.fast.rope's own CPU result.
    theirs = mx.fast.rope(x, 128, traditional=traditional, base=500000.0, scale=1.0, offset=offset)
    assert np.abs(to_np(y) - expected).mean() <= np.abs(to_np(theirs) - expected).mean() * 1.05 + 1e-12


@pytest.mark.parametrize("dims", [128, 96])
def test_rope_unit_stride_and_strided_rows_agree_bitwise(dims):
    # bfloat16 unit-stride rows take a loop built per vector width, strided
    # ones the general loop: the same float operations, so the same bits.
    base = randn((1, 4, 9, 2 * 128), mx.bfloat16, seed=21)
    strided = base[..., ::2]
    contiguous = mx.array(to_np(strided)).astype(mx.bfloat16)
    a = bx.rope(strided, dims, base=500000.0, offset=mx.array(5))
    b = bx.rope(contiguous, dims, base=500000.0, offset=mx.array(5))
    np.testing.assert_array_equal(to_np(a), to_np(b))


def test_rope_partial_dims_scale_and_batch_offsets(threads):
    x = randn((3, 2, 7, 20), mx.float32, seed=1)
    offsets = mx.array([0, 5, 300], mx.int32)
    y = bx.rope(x, 12, base=100.0, scale=0.5, offset=offsets)
    np.testing.assert_allclose(to_np(y), rope_np(x, 12, False, 100.0, 0.5, [0, 5, 300]), atol=2e-5)
    np.testing.assert_array_equal(to_np(y)[..., 12:], to_np(x)[..., 12:])  # past dims: copied
    for ndim_shape in [(3, 7, 20), (3, 2, 2, 7, 20)]:  # 3-D and 5-D inputs, as mx.fast.rope takes
        xs = randn(ndim_shape, mx.float32, seed=len(ndim_shape))
        ys = bx.rope(xs, 20, traditional=True, offset=mx.array(3))
        np.testing.assert_allclose(to_np(ys), rope_np(xs, 20, True, 10000.0, 1.0, 3), atol=2e-5)


@given(data=st.data())
def test_rope_property(data):
    B = data.draw(st.integers(1, 3))
    T = data.draw(st.integers(1, 9))
    D = 2 * data.draw(st.integers(1, 40))
    dims = 2 * data.draw(st.integers(1, D // 2))
    traditional = data.draw(st.booleans())
    offset = data.draw(st.integers(0, 2000))
    x = randn((B, 2, T, D), mx.float32, seed=data.draw(st.integers(0, 1000)))
    y = bx.rope(x, dims, traditional=traditional, base=10000.0, offset=offset)
    np.testing.assert_allclose(
        to_np(y), rope_np(x, dims, traditional, 10000.0, 1.0, offset), atol=1e-6 + 4e-7 * (offset + T) * 4.0
    )


def test_rope_grads_jvp_compile():
    x = randn((1, 2, 5, 16), mx.float32, seed=2)
    g = randn((1, 2, 5, 16), mx.float32, seed=3)
    ours = mx.grad(lambda x: mx.sum(bx.rope(x, 16, offset=7) * g))(x)
    theirs = mx.grad(lambda x: mx.sum(mx.fast.rope(x, 16, traditional=False, base=10000.0, scale=1.0, offset=7) * g))(x)
    np.testing.assert_allclose(to_np(ours), to_np(theirs), atol=1e-5)
    # Linear in x: the gradient of sum(rope(x) * g) is exactly rope^T g, and
    # finite differences of the float64 formula agree.
    d = to_np(randn(x.shape, mx.float32, seed=4))
    h = 1e-3
    fd = (np.sum(rope_np(to_np(x) + h * d, 16, False, 1e4, 1.0, 7) * to_np(g))
          - np.sum(rope_np(to_np(x) - h * d, 16, False, 1e4, 1.0, 7) * to_np(g))) / (2 * h)
    assert abs(np.sum(to_np(ours) * d) - fd) <= 1e-4 * max(1.0, abs(fd))
    _, (t_ours,) = mx.jvp(lambda x: bx.rope(x, 16, offset=7), [x], [g])
    np.testing.assert_allclose(to_np(t_ours), to_np(bx.rope(g, 16, offset=7)), rtol=1e-6, atol=1e-6)
    f = mx.compile(lambda x, o: bx.rope(x, 16, offset=o), shapeless=True)
    for T, off in [(5, 7), (3, 100)]:
        xs = randn((1, 2, T, 16), mx.float32, seed=T)
        np.testing.assert_array_equal(to_np(f(xs, mx.array(off))), to_np(bx.rope(xs, 16, offset=off)))


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(x=mx.zeros((2, 3, 8), mx.int32), dims=8), TypeError, "rope: x must be float16"),
        (dict(x=mx.zeros((3, 8)), dims=8), ValueError, "rope: x must have at least 3 axes"),
        (dict(x=mx.zeros((1, 3, 8)), dims=7), ValueError, r"rope: dims must be even and in \[2, 8\]"),
        (dict(x=mx.zeros((1, 3, 8)), dims=10), ValueError, "rope: dims must be even"),
        (dict(x=mx.zeros((1, 3, 8)), dims=0), ValueError, "rope: dims must be even"),
        (dict(x=mx.zeros((1, 3, 8)), dims=8, offset=1.5), TypeError, "rope: offset must be an integer"),
        (dict(x=mx.zeros((1, 3, 8)), dims=8, offset=True), TypeError, "rope: offset must be an int"),
        (dict(x=mx.zeros((2, 3, 8)), dims=8, offset=mx.array([1, 2, 3])), ValueError, "one per batch entry"),
        (dict(x=mx.zeros((1, 3, 8)), dims=8, base=0.0), ValueError, "rope: base must be a finite number > 0"),
    ],
)
def test_rope_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        bx.rope(**kwargs)


def test_rope_offset_is_not_differentiable(cpu_device):  # mx.fast.rope on GPUs words it its own way
    x = randn((1, 1, 2, 8), mx.float32, seed=1)
    with pytest.raises(ValueError, match="rope: no derivative with respect to offset"):
        mx.grad(lambda o: mx.sum(bx.rope(x, 8, offset=o)))(mx.array(1.0).astype(mx.int32))
