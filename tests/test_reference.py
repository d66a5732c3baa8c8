"""The oracle itself: bitnet_ext.reference against independent NumPy code.

Every other test trusts the reference, so check it once against a direct,
loop-level NumPy transcription of the spec (float64 / int64 where exact).
"""

import mlx.core as mx
import numpy as np
import pytest

from bitnet_ext import reference as ref
from conftest import dtype_params, to_np


def np_pack(codes):
    N, K = codes.shape
    out = np.zeros((N, K // 16), np.uint64)
    for k in range(K):
        out[:, k // 16] |= (codes[:, k].astype(np.int64) + 1).astype(np.uint64) << np.uint64(2 * (k % 16))
    return out.astype(np.uint32)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_pack_unpack_matches_numpy(rng):
    codes = rng.integers(-1, 2, (9, 80)).astype(np.int8)
    wq = ref.pack(mx.array(codes))
    assert wq.dtype == mx.uint32 and wq.shape == (9, 5)
    np.testing.assert_array_equal(np.array(wq), np_pack(codes))
    w = ref.unpack(wq)
    assert w.dtype == mx.int8
    np.testing.assert_array_equal(np.array(w), codes)


def test_pack_known_word():
    # k = 0 in the least-significant bits: codes (w + 1) = 2, 0, 1, then 1s.
    codes = np.array([[1, -1, 0] + [0] * 13], np.int8)
    word = 2 | (0 << 2) | (1 << 4) | sum(1 << (2 * k) for k in range(3, 16))
    assert np.array(ref.pack(mx.array(codes))).tolist() == [[word]]


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_absmean_matches_numpy(rng, per_channel):
    w = (rng.standard_normal((6, 64)) * 0.1).astype(np.float32)
    wq, scale = ref.absmean_quantize(mx.array(w), per_channel=per_channel)
    m = np.abs(w.astype(np.float64)).mean(axis=-1 if per_channel else None).astype(np.float32)
    s = np.maximum(m, np.float32(1e-5))
    assert scale.dtype == mx.float32 and scale.shape == s.shape
    np.testing.assert_array_equal(np.array(scale), s)
    codes = np.clip(np.round(w / (s[:, None] if per_channel else s)), -1, 1)  # np.round: half to even
    np.testing.assert_array_equal(np.array(ref.unpack(wq)), codes.astype(np.int8))


def test_absmax_matches_numpy(rng):
    x = rng.standard_normal((2, 3, 40)).astype(np.float32)
    x[0, 0] = 0  # eps path
    xq, xs = ref.absmax_quantize(mx.array(x))
    s = np.maximum(np.abs(x).max(-1, keepdims=True), np.float32(1e-5)) / np.float32(127)
    assert xs.dtype == mx.float32 and xs.shape == (2, 3, 1)
    np.testing.assert_array_equal(np.array(xs), s)
    assert xq.dtype == mx.int8
    np.testing.assert_array_equal(np.array(xq), np.clip(np.round(x / s), -128, 127).astype(np.int8))


@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("transpose", [True, False], ids=["T", "N"])
def test_ternary_matmul_matches_numpy(rng, dtype, transpose):
    N, K = 7, 48
    codes = rng.integers(-1, 2, (N, K)).astype(np.int8)
    s = rng.uniform(0.1, 1, N).astype(np.float32)
    x = mx.array(rng.standard_normal((3, K if transpose else N)).astype(np.float32)).astype(dtype)
    y = ref.ternary_matmul(x, ref.pack(mx.array(codes)), mx.array(s), transpose=transpose)
    w_eff = s[:, None].astype(np.float64) * codes
    expect = to_np(x) @ (w_eff.T if transpose else w_eff)
    assert y.dtype == dtype
    rtol = {mx.float32: 1e-5, mx.float16: 2e-3, mx.bfloat16: 1e-2}[dtype]
    np.testing.assert_allclose(to_np(y), expect, rtol=rtol, atol=rtol)


def test_bitlinear_matches_numpy(rng):
    N, K = 5, 64
    codes = rng.integers(-1, 2, (N, K)).astype(np.int8)
    s = rng.uniform(0.1, 1, N).astype(np.float32)
    b = rng.standard_normal(N).astype(np.float32)
    x = rng.standard_normal((4, K)).astype(np.float32)
    y = ref.bitlinear(mx.array(x), ref.pack(mx.array(codes)), mx.array(s), mx.array(b))
    xs = np.maximum(np.abs(x).max(-1, keepdims=True), np.float32(1e-5)) / np.float32(127)
    xq = np.clip(np.round(x / xs), -128, 127).astype(np.int64)
    acc = xq @ codes.T.astype(np.int64)
    expect = ((acc.astype(np.float32) * xs) * s) + b
    np.testing.assert_array_equal(np.array(y), expect.astype(np.float32))


def test_exact_int_dot_beyond_float32_chunk():
    # K spans several exact-float chunks of the reference and |acc| > 2^24.
    K = 2 * 65536 + 48
    xq = mx.full((1, K), 127, mx.int8)
    w = mx.concatenate([mx.ones((1, K), mx.int8), -mx.ones((1, K), mx.int8)])
    assert ref._int_dot(xq, w).tolist() == [[127 * K, -127 * K]]


def test_fake_quantize_is_dequantized_absmean_with_identity_grad(rng):
    w = mx.array(rng.standard_normal((4, 32)).astype(np.float32))
    wq, s = ref.absmean_quantize(w, per_channel=True)
    assert mx.array_equal(ref.fake_quantize(w, per_channel=True), ref.dequantize(wq, s, dtype=mx.float32)).item()
    c = mx.arange(128, dtype=mx.float32).reshape(4, 32)
    g = mx.grad(lambda w: (ref.fake_quantize(w) * c).sum())(w)
    assert mx.array_equal(g, c).item()
