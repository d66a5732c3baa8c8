"""Function transformations: mx.compile (incl. shapeless), grad / vjp / jvp /
vmap against the reference, a finite-difference check, the packed-weight
gradient error, fake_quantize's straight-through gradient, and laziness."""

import mlx.core as mx
import numpy as np
import pytest

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import (
    SCALE_KINDS,
    assert_close,
    assert_equal,
    dtype_params,
    is_unevaluated,
    lazy,
    make_scale,
    make_weights,
    matmul_sumsq,
    randn,
    row_scale_np,
    to_np,
)

TRANSPOSE = [pytest.param(True, id="T"), pytest.param(False, id="N")]


# ---------------------------------------------------------------------------
# mx.compile


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("dtype", dtype_params())
def test_compile_ternary_matmul(dtype, transpose):
    N, K = 17, 64
    codes, wq = make_weights(N, K, seed=1)
    scale = make_scale("row", N, seed=2)
    f = mx.compile(lambda x, s: bx.ternary_matmul(x * 2, wq, s, transpose=transpose) + 1)
    for M in (1, 4):
        x = randn((M, K if transpose else N), dtype, seed=M)
        y = f(x, scale)
        r = ref.ternary_matmul(x * 2, wq, scale, transpose=transpose) + 1
        sumsq = matmul_sumsq(x * 2, codes, scale, transpose)
        assert_close(y, r, sumsq + 1, K if transpose else N, f"compiled, M={M}")


@pytest.mark.parametrize("transpose", TRANSPOSE)
def test_compile_shapeless_ternary_matmul(transpose):
    N, K = 17, 64
    codes, wq = make_weights(N, K, seed=3)
    scale = make_scale("row", N, seed=4)
    mx.eval(codes, wq, scale)  # captured constants must not be lazy random ops
    f = mx.compile(lambda x: bx.ternary_matmul(x, wq, scale, transpose=transpose), shapeless=True)
    D = K if transpose else N
    for shape in [(1, D), (5, D), (2, D), (8, D), (3, 4, D), (2, 4, D), (6, 4, D)]:
        x = randn(shape, seed=sum(shape))
        y = f(x)
        assert y.shape == (*shape[:-1], N if transpose else K), f"shapeless compile: shape for x {shape}"
        r = ref.ternary_matmul(x, wq, scale, transpose=transpose)
        assert_close(y, r, matmul_sumsq(x, codes, scale, transpose), D, f"shapeless, x {shape}")


def test_compile_bitlinear_and_quantizers():
    N, K = 9, 96
    _, wq = make_weights(N, K, seed=5)
    s, b = make_scale("row", N, seed=6), randn((N,), seed=7)
    mx.eval(wq, s, b)
    fb = mx.compile(lambda x: bx.bitlinear(x, wq, s, bias=b))
    fa = mx.compile(lambda x: bx.absmax_quantize(x))
    fm = mx.compile(lambda w: bx.absmean_quantize(w, per_channel=True))
    fd = mx.compile(lambda wq, s: bx.dequantize(wq, s, dtype=mx.float32))
    fu = mx.compile(lambda wq: bx.unpack(wq))
    for M in (1, 3):
        x = randn((M, K), seed=M)
        assert_equal(fb(x), ref.bitlinear(x, wq, s, bias=b), f"compiled bitlinear, M={M}")
        for got, want, what in zip(fa(x), ref.absmax_quantize(x), ("xq", "xscale")):
            assert_equal(got, want, f"compiled absmax_quantize {what}")
    w = randn((N, K), seed=8)
    for got, want, what in zip(fm(w), ref.absmean_quantize(w, per_channel=True), ("wq", "scale")):
        assert_equal(got, want, f"compiled absmean_quantize {what}")
    assert_equal(fd(wq, s), ref.dequantize(wq, s, dtype=mx.float32), "compiled dequantize")
    assert_equal(fu(wq), ref.unpack(wq), "compiled unpack")


def test_compile_shapeless_bitlinear_and_absmax():
    N, K = 9, 96
    _, wq = make_weights(N, K, seed=9)
    s = make_scale("row", N, seed=10)
    mx.eval(wq, s)  # captured constants must not be lazy random ops
    fb = mx.compile(lambda x: bx.bitlinear(x, wq, s), shapeless=True)
    fa = mx.compile(lambda x: bx.absmax_quantize(x), shapeless=True)
    for shape in [(1, K), (7, K), (3, K), (2, 5, K), (4, 5, K)]:
        x = randn(shape, seed=sum(shape))
        y = fb(x)
        assert y.shape == (*shape[:-1], N)
        assert_equal(y, ref.bitlinear(x, wq, s), f"shapeless bitlinear, x {shape}")
        xq, xs = fa(x)
        rxq, rxs = ref.absmax_quantize(x)
        assert_equal(xq, rxq, f"shapeless absmax xq, x {shape}")
        assert_equal(xs, rxs, f"shapeless absmax xscale, x {shape}")


# ---------------------------------------------------------------------------
# gradients of ternary_matmul


def _loss(op, wq, ct, transpose):
    return lambda x, s: (op(x, wq, s, transpose=transpose) * ct).sum()


def _grad_sumsq(x, codes, scale, ct, transpose):
    """Sum of squared terms of d/dx and d/dscale of sum(ct * y) (numpy)."""
    N = codes.shape[0]
    s = row_scale_np(scale, N)
    W, X, C = to_np(codes), to_np(x), to_np(ct)
    X2 = X.reshape(-1, X.shape[-1]) ** 2
    C2 = C.reshape(-1, C.shape[-1]) ** 2
    w2 = np.abs(W) * (s**2)[:, None]  # (N, K)
    if transpose:  # y = x W_eff^T: dx = ct W_eff, ds_n = sum_m ct[m,n] (x_m . W_n)
        dx = C2 @ w2
        ds = (C2 * (X2 @ np.abs(W).T)).sum(0)
    else:  # y = x W_eff: dx = ct W_eff^T, ds_n = sum_m x[m,n] (ct_m . W_n)
        dx = C2 @ w2.T
        ds = (X2 * (C2 @ np.abs(W).T)).sum(0)
    return dx.reshape(x.shape), ds


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("kind", SCALE_KINDS)
@pytest.mark.parametrize("dtype", dtype_params())
def test_grad_ternary_matmul(dtype, kind, transpose):
    M, N, K = 6, 21, 80
    codes, wq = make_weights(N, K, seed=11)
    scale = make_scale(kind, N, seed=12)
    x = randn((2, M, K if transpose else N), dtype, seed=13)
    out_dim = N if transpose else K
    ct = randn((2, M, out_dim), dtype, seed=14)
    gx, gs = mx.grad(_loss(bx.ternary_matmul, wq, ct, transpose), argnums=(0, 1))(x, scale)
    rgx, rgs = mx.grad(_loss(ref.ternary_matmul, wq, ct, transpose), argnums=(0, 1))(x, scale)
    sq_dx, sq_ds = _grad_sumsq(x, codes, scale, ct, transpose)
    assert_close(gx, rgx, sq_dx, out_dim, "d/dx")
    if kind != "row":
        sq_ds = sq_ds.sum().reshape(rgs.shape)
    # each d/dscale[n] sums over batch, M and K (and n too for a shared scale)
    assert_close(gs, rgs, sq_ds, 2 * M * K * (N if kind != "row" else 1), "d/dscale")


@pytest.mark.parametrize("transpose", TRANSPOSE)
def test_vjp_ternary_matmul(transpose):
    M, N, K = 4, 13, 48
    codes, wq = make_weights(N, K, seed=15)
    scale = make_scale("row", N, seed=16)
    x = randn((M, K if transpose else N), seed=17)
    ct = randn((M, N if transpose else K), seed=18)
    f = lambda x, s: bx.ternary_matmul(x, wq, s, transpose=transpose)  # noqa: E731
    fr = lambda x, s: ref.ternary_matmul(x, wq, s, transpose=transpose)  # noqa: E731
    (y,), (vx, vs) = mx.vjp(f, [x, scale], [ct])
    (ry,), (rvx, rvs) = mx.vjp(fr, [x, scale], [ct])
    assert_close(y, ry, matmul_sumsq(x, codes, scale, transpose), K if transpose else N, "vjp primal out")
    sq_dx, sq_ds = _grad_sumsq(x, codes, scale, ct, transpose)
    assert_close(vx, rvx, sq_dx, N if transpose else K, "vjp d/dx")
    assert_close(vs, rvs, sq_ds, M * K, "vjp d/dscale")


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("kind", ["scalar", "row"])
def test_jvp_ternary_matmul(transpose, kind):
    M, N, K = 5, 11, 64
    codes, wq = make_weights(N, K, seed=19)
    scale = make_scale(kind, N, seed=20)
    x = randn((M, K if transpose else N), seed=21)
    tx = randn(x.shape, seed=22)
    ts = make_scale(kind, N, seed=23) - 0.7
    f = lambda x, s: bx.ternary_matmul(x, wq, s, transpose=transpose)  # noqa: E731
    fr = lambda x, s: ref.ternary_matmul(x, wq, s, transpose=transpose)  # noqa: E731
    R = K if transpose else N
    # tangent along x only, then along scale only
    (_,), (t,) = mx.jvp(f, [x, scale], [tx, mx.zeros_like(ts)])
    (_,), (rt,) = mx.jvp(fr, [x, scale], [tx, mx.zeros_like(ts)])
    assert_close(t, rt, matmul_sumsq(tx, codes, scale, transpose), R, "jvp along x")
    (_,), (t,) = mx.jvp(f, [x, scale], [mx.zeros_like(tx), ts])
    (_,), (rt,) = mx.jvp(fr, [x, scale], [mx.zeros_like(tx), ts])
    assert_close(t, rt, matmul_sumsq(x, codes, ts, transpose), R, "jvp along scale")


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("kind", ["scalar", "row"])
def test_grad_finite_difference(transpose, kind):
    """Directional derivatives of L = sum(ct * y) by central differences.

    L is linear in x and in scale separately, so a central difference with a
    large step is exact up to rounding.
    """
    M, N, K = 3, 10, 64
    _, wq = make_weights(N, K, seed=24)
    scale = make_scale(kind, N, seed=25)
    x = randn((M, K if transpose else N), seed=26)
    ct = randn((M, N if transpose else K), seed=27)
    L = _loss(bx.ternary_matmul, wq, ct, transpose)
    gx, gs = mx.grad(L, argnums=(0, 1))(x, scale)
    vx = randn(x.shape, seed=28)
    vs = make_scale(kind, N, seed=29)
    h = 0.5
    fd_x = (L(x + h * vx, scale) - L(x - h * vx, scale)) / (2 * h)
    fd_s = (L(x, scale + h * vs) - L(x, scale - h * vs)) / (2 * h)
    an_x = (gx * vx).sum()
    an_s = (gs * vs).sum()
    mag_x = (mx.abs(gx) * mx.abs(vx)).sum().item()
    mag_s = (mx.abs(gs) * mx.abs(vs)).sum().item() + 1e-3
    assert abs(fd_x.item() - an_x.item()) <= 1e-3 * mag_x, (fd_x.item(), an_x.item())
    assert abs(fd_s.item() - an_s.item()) <= 1e-3 * mag_s, (fd_s.item(), an_s.item())


@pytest.mark.parametrize("how", ["grad", "vjp"])
def test_grad_wrt_packed_weights_raises(how):
    N, K = 5, 32
    _, wq = make_weights(N, K, seed=30)
    x, s = randn((2, K), seed=31), make_scale("row", N)
    with pytest.raises((ValueError, RuntimeError, TypeError, NotImplementedError), match="fake_quantize"):
        if how == "grad":
            g = mx.grad(lambda w: bx.ternary_matmul(x, w, s).sum())(wq)
        else:
            g = mx.vjp(lambda x, w: bx.ternary_matmul(x, w, s), [x, wq], [mx.ones((2, N))])
        mx.eval(g)


PER_CHANNEL = [pytest.param(False, id="per_tensor"), pytest.param(True, id="per_channel")]


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("per_channel", PER_CHANNEL)
def test_fake_quantize_grad_is_identity(dtype, per_channel):
    w = randn((8, 64), dtype, seed=32, std=0.1)
    c = randn((8, 64), dtype, seed=33)
    g = mx.grad(lambda w: (bx.fake_quantize(w, per_channel=per_channel) * c).sum())(w)
    assert_equal(g, c, "grad of sum(c * fake_quantize(w))")  # identity, bit for bit


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("per_channel", PER_CHANNEL)
def test_fake_quantize_vjp_is_identity(dtype, per_channel):
    w = randn((8, 64), dtype, seed=32, std=0.1)
    c = randn((8, 64), dtype, seed=33)
    (y,), (v,) = mx.vjp(lambda w: bx.fake_quantize(w, per_channel=per_channel), [w], [c])
    assert_equal(v, c, "vjp")
    assert_equal(y, ref.fake_quantize(w, per_channel=per_channel), "vjp primal out")


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("per_channel", PER_CHANNEL)
def test_fake_quantize_jvp_is_identity(dtype, per_channel):
    w = randn((8, 64), dtype, seed=32, std=0.1)
    c = randn((8, 64), dtype, seed=33)
    (y,), (t,) = mx.jvp(lambda w: bx.fake_quantize(w, per_channel=per_channel), [w], [c])
    assert_equal(t, c, "jvp")
    assert_equal(y, ref.fake_quantize(w, per_channel=per_channel), "jvp primal out")


def test_fake_quantize_trains_through_ternary_matmul():
    """QAT pattern: gradient flows to float master weights via fake_quantize."""
    N, K = 6, 32
    w = randn((N, K), seed=34, std=0.05)
    x = randn((3, K), seed=35)
    g = mx.grad(lambda w: (x @ bx.fake_quantize(w).T).sum())(w)
    assert_equal(g, mx.broadcast_to(x.sum(0), (N, K)), "grad")


# ---------------------------------------------------------------------------
# vmap


@pytest.mark.parametrize("transpose", TRANSPOSE)
@pytest.mark.parametrize("in_axis", [0, 1, 2])
def test_vmap_ternary_matmul(in_axis, transpose):
    M, N, K, B = 4, 13, 48, 3
    codes, wq = make_weights(N, K, seed=36)
    scale = make_scale("row", N, seed=37)
    D = K if transpose else N
    shape = [M, D]
    shape.insert(in_axis, B)
    xb = randn(tuple(shape), seed=38)
    f = lambda x: bx.ternary_matmul(x, wq, scale, transpose=transpose)  # noqa: E731
    fr = lambda x: ref.ternary_matmul(x, wq, scale, transpose=transpose)  # noqa: E731
    y = mx.vmap(f, in_axes=in_axis)(xb)
    r = mx.vmap(fr, in_axes=in_axis)(xb)
    assert y.shape == (B, M, N if transpose else K)
    assert_close(y, r, matmul_sumsq(mx.moveaxis(xb, in_axis, 0), codes, scale, transpose), D, "vmap")


@pytest.mark.parametrize("in_axis", [0, 1])
def test_vmap_bitlinear_and_absmax(in_axis):
    M, N, K, B = 4, 13, 48, 3
    _, wq = make_weights(N, K, seed=39)
    s, b = make_scale("row", N, seed=40), randn((N,), seed=41)
    xb = randn((B, M, K) if in_axis == 0 else (M, B, K), seed=42)
    y = mx.vmap(lambda x: bx.bitlinear(x, wq, s, bias=b), in_axes=in_axis)(xb)
    assert_equal(y, ref.bitlinear(mx.moveaxis(xb, in_axis, 0), wq, s, bias=b), "vmap bitlinear")
    xq, xs = mx.vmap(bx.absmax_quantize, in_axes=in_axis)(xb)
    rxq, rxs = ref.absmax_quantize(mx.moveaxis(xb, in_axis, 0))
    assert_equal(xq, rxq, "vmap absmax xq")
    assert_equal(xs, rxs, "vmap absmax xscale")


def test_vmap_of_grad():
    """Per-example gradients: vmap(grad) over a batch of x."""
    N, K, B = 9, 32, 4
    codes, wq = make_weights(N, K, seed=43)
    s = make_scale("row", N, seed=44)
    xb = randn((B, 2, K), seed=45)
    gfun = mx.grad(lambda x: bx.ternary_matmul(x, wq, s).sum())
    rfun = mx.grad(lambda x: ref.ternary_matmul(x, wq, s).sum())
    g, r = mx.vmap(gfun)(xb), mx.vmap(rfun)(xb)
    ones = mx.ones((B, 2, N))
    assert_close(g, r, _grad_sumsq(xb, codes, s, ones, True)[0], N, "vmap(grad)")


# ---------------------------------------------------------------------------
# laziness: ops only build graph nodes


def _op_calls():
    N, K = 5, 32
    codes, wq = make_weights(N, K, seed=46)
    x, w = randn((3, K), seed=47), randn((N, K), seed=48)
    s, b = make_scale("row", N), randn((N,), seed=49)
    xn = randn((3, N), seed=50)
    mx.eval(codes, wq, x, w, s, b, xn)
    return {
        "unpack": lambda: (wq,),
        "absmean_quantize": lambda: (w,),
        "dequantize": lambda: (wq, s),
        "ternary_matmul": lambda: (x, wq, s),
        "ternary_matmul_N": lambda: (xn, wq, s),
        "absmax_quantize": lambda: (x,),
        "bitlinear": lambda: (x, wq, s, b),
        "fake_quantize": lambda: (w,),
    }


# pack is deliberately not in this list: it must evaluate its input to
# reject values outside {-1, 0, 1} with a ValueError (documented in
# bitnet_ext._ops.pack; see test_pack_checks_values_at_call below).
OPS = {
    "unpack": lambda wq: bx.unpack(wq),
    "absmean_quantize": lambda w: bx.absmean_quantize(w),
    "dequantize": lambda wq, s: bx.dequantize(wq, s),
    "ternary_matmul": lambda x, wq, s: bx.ternary_matmul(x, wq, s),
    "ternary_matmul_N": lambda x, wq, s: bx.ternary_matmul(x, wq, s, transpose=False),
    "absmax_quantize": lambda x: bx.absmax_quantize(x),
    "bitlinear": lambda x, wq, s, b: bx.bitlinear(x, wq, s, bias=b),
    "fake_quantize": lambda w: bx.fake_quantize(w),
}


@pytest.mark.parametrize("op", list(OPS))
def test_op_is_lazy(op):
    args = [lazy(a) for a in _op_calls()[op]()]
    assert all(is_unevaluated(a) for a in args)
    out = OPS[op](*args)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    assert all(is_unevaluated(a) for a in args), f"{op} evaluated its inputs"
    assert all(is_unevaluated(o) for o in outs), f"{op} returned an evaluated array"
    mx.eval(outs)


@pytest.mark.parametrize("op", list(OPS))
def test_op_traces_under_compile(op):
    """An op that evaluated anything inside would fail while mx.compile traces it."""
    args = _op_calls()[op]()
    got = mx.compile(OPS[op])(*args)
    want = OPS[op](*args)
    got, want = (got, want) if isinstance(got, (tuple, list)) else ((got,), (want,))
    for g, w in zip(got, want):
        assert_equal(g, w, f"compiled {op}")


def test_pack_checks_values_at_call():
    """The documented exception to laziness: pack validates its values eagerly,
    so a bad value is reported at the call, not later from a worker thread."""
    codes = lazy(mx.zeros((2, 32), mx.int8))
    bad = mx.where(mx.arange(32) == 5, 2, codes).astype(mx.int8)
    with pytest.raises(ValueError, match="-1"):
        bx.pack(bad)
