"""pack / unpack: bit-exact layout, round trips, MLX affine bits=2 interop."""

import mlx.core as mx
import pytest
from hypothesis import given
from hypothesis import strategies as st

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import DTYPE_NAME, assert_equal, make_weights, rand_codes, randn

SHAPES = [(1, 16), (3, 16), (7, 48), (33, 208), (64, 2560), (5, 6912), (2, 16384)]
SHAPE_IDS = [f"N{n}_K{k}" for n, k in SHAPES]


@pytest.mark.parametrize("N,K", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize(
    "dtype", [mx.int8, mx.int16, mx.int32, mx.int64], ids=lambda d: DTYPE_NAME[d]
)
def test_pack_exact(N, K, dtype):
    codes = rand_codes((N, K), seed=N * 7 + K).astype(dtype)
    wq = bx.pack(codes)
    assert_equal(wq, ref.pack(codes), "pack")


@pytest.mark.parametrize("N,K", SHAPES, ids=SHAPE_IDS)
def test_unpack_exact(N, K):
    codes, wq = make_weights(N, K, seed=N + K)
    w = bx.unpack(wq)
    assert_equal(w, ref.unpack(wq), "unpack")
    assert_equal(w, codes, "unpack(pack(codes))")


def test_pack_bit_layout():
    # W[0, k] = +1 at k = 0 only, else 0: code 2 in bits 0-1, code 1 elsewhere.
    codes = mx.zeros((2, 32), mx.int8)
    codes[0, 0] = 1
    codes[1, 17] = -1  # second word, bits 2-3 hold code 0
    got = bx.pack(codes).tolist()
    ones = 0x55555555  # code 1 in every field
    assert got == [[(ones & ~0b11) | 0b10, ones], [ones, ones & ~0b1100]]


def test_pack_all_codes_in_each_position():
    # Every field position k % 16 with every value, so no shift is off by one.
    k = mx.arange(48)
    codes = ((k // 16) - 1).astype(mx.int8)[None, :] * mx.ones((1, 1), mx.int8)  # -1 x16, 0 x16, 1 x16
    codes = mx.concatenate([codes, -codes, codes[:, ::-1]])
    assert_equal(bx.pack(codes), ref.pack(codes), "pack")
    assert_equal(bx.unpack(bx.pack(codes)), codes, "round trip")


def test_unpack_non_contiguous_words():
    codes, wq = make_weights(6, 64, seed=3)
    view = wq[::2]  # row stride 2 rows
    assert_equal(bx.unpack(view), codes[::2], "unpack(wq[::2])")
    view = wq[:, 1:3]  # column slice: words 1..2 of each row
    assert_equal(bx.unpack(view), codes[:, 16:48], "unpack(wq[:, 1:3])")


def test_pack_non_contiguous_codes():
    codes = rand_codes((64, 40), seed=4)
    for name, view in {
        "transposed": codes.T,  # (40, 64)
        "rows_strided": rand_codes((12, 48), seed=5)[::3],
        "cols_sliced": rand_codes((5, 80), seed=6)[:, 16:64],
    }.items():
        assert_equal(bx.pack(view), ref.pack(view), f"pack({name})")


@given(
    n=st.integers(1, 40),
    kw=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
)
def test_pack_unpack_roundtrip_property(n, kw, seed):
    codes = rand_codes((n, 16 * kw), seed)
    wq = bx.pack(codes)
    assert_equal(wq, ref.pack(codes), "pack")
    assert_equal(bx.unpack(wq), codes, "unpack(pack(codes))")


@pytest.mark.parametrize("group_size", [32, 64, 128])
@pytest.mark.parametrize("scales", ["constant", "per_group"])
def test_mlx_dequantize_interop(group_size, scales):
    """mx.dequantize(wq, s, -s, group_size=g, bits=2) reproduces s * W."""
    N, K = 9, 384
    codes = rand_codes((N, K), seed=group_size)
    wq = bx.pack(codes)
    if scales == "constant":
        s = mx.full((N, K // group_size), 0.3712, mx.float32)
    else:
        s = mx.random.uniform(0.1, 2.0, (N, K // group_size), key=mx.random.key(5))
    got = mx.dequantize(wq, s, -s, group_size=group_size, bits=2)
    expect = mx.repeat(s, group_size, axis=1) * codes.astype(mx.float32)
    assert_equal(got, expect, "mx.dequantize(bx.pack(W))")


def test_mlx_dequantize_interop_with_absmean():
    w = randn((6, 256), seed=11)
    wq, scale = bx.absmean_quantize(w, per_channel=True)
    s = mx.broadcast_to(scale[:, None], (6, 256 // 64))
    got = mx.dequantize(wq, s, -s, group_size=64, bits=2)
    assert_equal(got, bx.dequantize(wq, scale, dtype=mx.float32), "mx.dequantize vs bx.dequantize")
