"""bitnet_ext.relu2_mul (relu(gate)^2 * up in one CPU op) against MLX's own three ops, bit for bit:
dtypes, special values, shapes, 1 and 2 threads; gradients and jvp (MLX's, and finite
differences), vmap, compile, argument checks, and the MLP swap of bitnet_ext.mlx_lm."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bitnet_ext as bx
from conftest import dtype_params, randn, to_np


def mlx_ops(gate, up):
    return nn.relu2(gate) * up


def assert_bit_identical(y, expected):
    assert y.dtype == expected.dtype and y.shape == expected.shape
    a, b = np.asarray(y.astype(mx.float32)), np.asarray(expected.astype(mx.float32))
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    assert same.all(), f"{(~same).sum()} of {a.size} differ, e.g. {a[~same][:3]} vs {b[~same][:3]}"


@pytest.mark.parametrize("shape", [(1,), (7,), (3, 33), (2, 5, 6912), (1, 1, 1)], ids=str)
@pytest.mark.parametrize("dtype", dtype_params())
def test_relu2_mul_bit_identical_to_mlx(shape, dtype, threads):
    gate = (3 * randn(shape, mx.float32, seed=shape[-1])).astype(dtype)
    up = (3 * randn(shape, mx.float32, seed=shape[-1] + 1)).astype(dtype)
    assert_bit_identical(bx.relu2_mul(gate, up, stream=mx.cpu), mlx_ops(gate, up))


@pytest.mark.parametrize("dtype", dtype_params())
def test_relu2_mul_special_values(dtype):
    specials = [0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), -float("inf"), 1e-30, -1e-30, 300.0, 1e20]
    g, u = np.meshgrid(np.array(specials, np.float32), np.array(specials, np.float32))
    gate, up = mx.array(g).astype(dtype), mx.array(u).astype(dtype)
    assert_bit_identical(bx.relu2_mul(gate, up, stream=mx.cpu), mlx_ops(gate, up))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
    dtype=st.sampled_from([mx.float32, mx.float16, mx.bfloat16]),
    seed=st.integers(0, 2**16),
    strided=st.booleans(),
)
def test_relu2_mul_property(shape, dtype, seed, strided):
    gate = (4 * randn(shape, mx.float32, seed=seed)).astype(dtype)
    up = (4 * randn(shape, mx.float32, seed=seed + 1)).astype(dtype)
    if strided and len(shape) >= 2:  # transposed views: the op copies them row-major first
        gate, up = gate.swapaxes(0, -1), up.swapaxes(0, -1)
    assert_bit_identical(bx.relu2_mul(gate, up, stream=mx.cpu), mlx_ops(gate, up))


def test_relu2_mul_views_without_copies():
    """Transposed, sliced and broadcast views are read in place: no Contiguous node, same bits."""
    import io

    base = 3 * randn((6, 8, 10), mx.float32, seed=9)
    views = [
        (base.transpose(2, 0, 1), (base + 1).transpose(2, 0, 1)),
        (base.transpose(2, 0, 1), base.reshape(10, 6, 8)),
        (base[:, ::2, 1:9], base[:, 1::2, :8]),
        (mx.broadcast_to(base[:1, :1, :], (6, 8, 10)), base),
    ]
    for dtype in (mx.float32, mx.bfloat16):
        for gate, up in views:
            gate, up = gate.astype(dtype), up.astype(dtype)
            y = bx.relu2_mul(gate, up, stream=mx.cpu)
            f = io.StringIO()
            mx.export_to_dot(f, y)
            assert 'label ="Contiguous"' not in f.getvalue()
            assert_bit_identical(y, mlx_ops(gate, up))


def test_relu2_mul_grads_jvp_vmap_compile():
    gate = randn((3, 17), mx.float32, seed=1)
    up = randn((3, 17), mx.float32, seed=2)
    cot = randn((3, 17), mx.float32, seed=3)
    ours = mx.vjp(lambda g, u: bx.relu2_mul(g, u, stream=mx.cpu), [gate, up], [cot])[1]
    theirs = mx.vjp(mlx_ops, [gate, up], [cot])[1]
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(to_np(a), to_np(b), rtol=1e-6, atol=1e-7)
    # Finite differences of sum(cot * y) along a random direction.
    f = lambda g, u: mx.sum(cot * bx.relu2_mul(g, u, stream=mx.cpu))  # noqa: E731
    dg, du = randn((3, 17), mx.float32, seed=4), randn((3, 17), mx.float32, seed=5)
    h = 1e-3
    fd = (f(gate + h * dg, up + h * du) - f(gate - h * dg, up - h * du)).item() / (2 * h)
    analytic = (mx.sum(ours[0] * dg) + mx.sum(ours[1] * du)).item()
    assert abs(fd - analytic) <= 1e-2 * (1 + abs(analytic))
    _, jv = mx.jvp(lambda g, u: bx.relu2_mul(g, u, stream=mx.cpu), [gate, up], [dg, du])
    _, jv_ref = mx.jvp(mlx_ops, [gate, up], [dg, du])
    np.testing.assert_allclose(to_np(jv[0]), to_np(jv_ref[0]), rtol=1e-6, atol=1e-7)
    # vmap over either input, or both along different axes.
    vm = mx.vmap(lambda g, u: bx.relu2_mul(g, u, stream=mx.cpu), in_axes=(1, None))(gate, up[:, 0])
    np.testing.assert_array_equal(to_np(vm), to_np(mlx_ops(gate.T, up[:, 0])))
    vm2 = mx.vmap(lambda g, u: bx.relu2_mul(g, u, stream=mx.cpu), in_axes=(0, 1))(gate, up.T)
    np.testing.assert_array_equal(to_np(vm2), to_np(mlx_ops(gate, up)))
    compiled = mx.compile(lambda g, u: bx.relu2_mul(g, u, stream=mx.cpu))
    np.testing.assert_array_equal(to_np(compiled(gate, up)), to_np(mlx_ops(gate, up)))


@pytest.mark.parametrize(
    "gate,up,err,match",
    [
        (mx.ones((2, 3)), mx.ones((2, 4)), ValueError, r"relu2_mul: gate and up must have one shape, got \(2, 3\)"),
        (mx.ones((2, 3)), mx.ones((2, 3), mx.float16), TypeError, "relu2_mul: gate and up must have one dtype"),
        (mx.ones((2, 3), mx.int32), mx.ones((2, 3), mx.int32), TypeError, "relu2_mul: gate must be"),
        (mx.ones((2, 3)), "up", TypeError, "relu2_mul: up must be an mx.array"),
    ],
)
def test_relu2_mul_bad_arguments(gate, up, err, match):
    with pytest.raises(err, match=match):
        bx.relu2_mul(gate, up)
