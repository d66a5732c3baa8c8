"""bitnet_ext.dense_matmul (a model's float head, y = x @ w.T) against a
float64 NumPy product of the same (rounded) inputs: every ISA level, 1 and 2
threads, GEMV (small M) and GEMM (M-blocked) paths with all their tails;
autodiff, vmap, compile and the argument checks."""

import mlx.core as mx
import numpy as np
import pytest

import bitnet_ext as bx
from conftest import DTYPE_NAME, assert_close, dtype_params, randn, shape_id, to_np

# (M, N, K): GEMV (M < 8) with N tails of the 4-row step and K tails of every
# vector width (K = 1, 5, 17, 33, ...); GEMM with M tails of the 12 / 6 / 8
# row micro-tile, N tails of the 2-vector panel, K over one 256 block; and
# the 2B-4T head's K.
SHAPES = [
    (1, 1, 1),
    (1, 7, 5),
    (1, 130, 2560),
    (2, 9, 17),
    (3, 33, 100),
    (4, 67, 33),
    (7, 5, 260),
    (8, 1, 16),
    (13, 70, 300),
    (37, 129, 257),
    (130, 40, 2560),
]


def reference(x, w):
    """x @ w.T in float64 from the exact values of x and w, cast to x's dtype."""
    y = to_np(x) @ to_np(w).T
    return mx.array(y.astype(np.float32)).astype(x.dtype)


def check_dense(x, w, what):
    y = bx.dense_matmul(x, w)
    mx.eval(y)
    sumsq = (to_np(x) ** 2) @ (to_np(w) ** 2).T
    assert_close(y, reference(x, w), sumsq, x.shape[-1], what=what)


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
@pytest.mark.parametrize("wdtype", dtype_params())
def test_dense_matmul_isa(isa, threads, shape, wdtype):
    M, N, K = shape
    x = randn((M, K), mx.float32, seed=M + K)
    w = randn((N, K), wdtype, seed=N)
    check_dense(x, w, f"dense_matmul[{isa}, {threads} threads, w {DTYPE_NAME[wdtype]}]")


@pytest.mark.parametrize("xdtype", dtype_params())
def test_dense_matmul_output_dtype_follows_x(xdtype):
    x = randn((2, 3, 48), xdtype, seed=1)
    w = randn((20, 48), mx.bfloat16, seed=2)
    y = bx.dense_matmul(x, w)
    assert y.shape == (2, 3, 20) and y.dtype == xdtype
    check_dense(x, w, f"dense_matmul x {DTYPE_NAME[xdtype]}")


def test_dense_matmul_strided_inputs():
    # x a strided view (rows of every other token, a column slice), w a transposed view.
    x = randn((2 * 5, 64 + 8), mx.bfloat16, seed=3)[::2, 8:]
    w = randn((64, 30), mx.float16, seed=4).T
    check_dense(x, w, "dense_matmul strided")


def test_dense_matmul_special_values():
    # bf16 / f16 weights decode exactly: subnormals, infinities and NaN come through.
    w16 = mx.array([[2.0**-24, -(2.0**-20), 65504.0, 1.0]], mx.float16)
    x = mx.ones((1, 4))
    for isa in bx.cpu.supported_isas():
        with bx.cpu.use_isa(isa):
            # w = diag(w16): y[n] = w16[n] + exact zeros.
            y = bx.dense_matmul(x, mx.eye(4, dtype=mx.float16) * w16)
            mx.eval(y)
        np.testing.assert_array_equal(np.array(y), np.array(w16.astype(mx.float32)), err_msg=isa)
    w = mx.array([[float("inf"), 1.0], [float("nan"), 0.0]], mx.bfloat16)
    y = bx.dense_matmul(mx.ones((1, 2)), w)
    assert np.isinf(np.array(y)[0, 0]) and np.isnan(np.array(y)[0, 1])


def test_dense_matmul_empty_rows_and_k():
    w = randn((5, 16), mx.bfloat16)
    assert bx.dense_matmul(mx.zeros((0, 16)), w).shape == (0, 5)
    y = bx.dense_matmul(mx.ones((3, 0)), mx.zeros((5, 0), mx.bfloat16))
    np.testing.assert_array_equal(np.array(y), np.zeros((3, 5), np.float32))


def test_dense_matmul_grad_vmap_compile():
    x = randn((3, 4, 40), mx.float32, seed=5)
    w = randn((24, 40), mx.float32, seed=6)

    def loss(x, w):
        return (bx.dense_matmul(x, w) ** 2).sum()

    def loss_ref(x, w):
        return ((x @ w.T) ** 2).sum()

    gx, gw = mx.grad(loss, argnums=(0, 1))(x, w)
    rx, rw = mx.grad(loss_ref, argnums=(0, 1))(x, w)
    np.testing.assert_allclose(np.array(gx), np.array(rx), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.array(gw), np.array(rw), rtol=1e-4, atol=1e-3)

    tangent = randn(x.shape, seed=7)
    _, jv = mx.jvp(lambda a: bx.dense_matmul(a, w), [x], [tangent])
    np.testing.assert_allclose(np.array(jv[0]), np.array(tangent @ w.T), rtol=1e-4, atol=1e-4)

    vm = mx.vmap(lambda a: bx.dense_matmul(a, w), in_axes=1)(x)
    np.testing.assert_allclose(np.array(vm), np.array(mx.moveaxis(x, 1, 0) @ w.T), rtol=1e-4, atol=1e-4)

    compiled = mx.compile(lambda a, b: bx.dense_matmul(a, b) + bx.dense_matmul(a, b))
    np.testing.assert_allclose(np.array(compiled(x, w)), np.array(2 * (x @ w.T)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "x, w, error, match",
    [
        (mx.ones((2, 8), mx.int32), mx.ones((3, 8)), TypeError, "x must be float16"),
        (mx.ones((2, 8)), mx.ones((3, 8), mx.uint32), TypeError, "w must be float16"),
        (mx.ones((2, 8)), mx.ones((3, 8, 1)), ValueError, r"w must be 2-D \(N, K\)"),
        (mx.ones((2, 8)), mx.ones((3, 9)), ValueError, "last axis of x must be K = 9"),
        (mx.array(1.0), mx.ones((3, 1)), ValueError, "got a scalar"),
    ],
    ids=["x-int", "w-uint32", "w-3d", "k-mismatch", "x-scalar"],
)
def test_dense_matmul_errors(x, w, error, match):
    with pytest.raises(error, match=match):
        bx.dense_matmul(x, w)
