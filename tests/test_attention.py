"""bitnet_ext.attention (CPU kernel) against a pure-MLX float64-free reference.

The reference is written here from MLX ops in float32 (scores, causal mask,
softmax, weighted sum, grouped-query heads by repetition), independently of
the kernel and of mx.fast.scaled_dot_product_attention.
"""

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bitnet_ext as bx

DTYPES = {"f32": mx.float32, "f16": mx.float16, "bf16": mx.bfloat16}


def reference(q, k, v, scale, causal):
    B, Hq, L, D = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    kf = mx.repeat(k.astype(mx.float32), Hq // Hkv, axis=1)
    vf = mx.repeat(v.astype(mx.float32), Hq // Hkv, axis=1)
    scores = (q.astype(mx.float32) @ kf.swapaxes(2, 3)) * scale
    if causal:
        keep = mx.arange(S)[None, :] <= mx.arange(L)[:, None] + (S - L)
        scores = mx.where(keep, scores, -mx.inf)
        # A query that sees no key (L > S) is 0 by definition (softmax would give NaN).
        seen = keep.any(axis=-1)[:, None]
        p = mx.where(seen, mx.softmax(mx.where(seen, scores, 0.0), axis=-1), 0.0)
    else:
        p = mx.softmax(scores, axis=-1)
    return (p @ vf).astype(q.dtype)


def inputs(B, Hq, Hkv, L, S, D, dtype, kv_dtype=None, seed=0):
    kv_dtype = kv_dtype or dtype
    q = mx.random.normal((B, Hq, L, D), key=mx.random.key(seed)).astype(dtype)
    k = mx.random.normal((B, Hkv, S, D), key=mx.random.key(seed + 1)).astype(kv_dtype)
    v = mx.random.normal((B, Hkv, S, D), key=mx.random.key(seed + 2)).astype(kv_dtype)
    return q, k, v


def assert_close(ours, ref, dtype):
    tol = 2e-5 if dtype == mx.float32 else 2**-7
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    err = mx.abs(ours.astype(mx.float32) - ref.astype(mx.float32)).max().item()
    assert err <= tol, err


CASES = [
    # B, Hq, Hkv, L, S, D, causal
    (1, 20, 5, 1, 640, 128, False),  # 2B-4T decode
    (1, 20, 5, 1, 640, 128, True),
    (1, 4, 2, 33, 33, 64, True),  # a prompt: more than one block of queries
    (2, 4, 1, 20, 50, 48, True),  # a prompt after a cache
    (1, 8, 1, 3, 1, 32, False),  # one key
    (1, 2, 2, 1, 1, 16, True),  # one query, one key
    (1, 3, 3, 17, 9, 20, True),  # L > S: the first queries see no key; D not a multiple of the lanes
    (2, 6, 3, 5, 7, 1, False),  # D = 1
    (1, 16, 2, 2, 300, 136, False),  # G = 8, D = 136
]


@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
@pytest.mark.parametrize("B, Hq, Hkv, L, S, D, causal", CASES)
def test_matches_reference(dtype, B, Hq, Hkv, L, S, D, causal):
    q, k, v = inputs(B, Hq, Hkv, L, S, D, dtype)
    scale = D**-0.5
    ours = bx.attention(q, k, v, scale=scale, mask="causal" if causal else None, stream=mx.cpu)
    assert_close(ours, reference(q, k, v, scale, causal), dtype)


def test_matches_mlx_fast_attention():
    q, k, v = inputs(1, 20, 5, 7, 40, 128, mx.float32)
    for mask in (None, "causal"):
        ours = bx.attention(q, k, v, scale=0.1, mask=mask, stream=mx.cpu)
        theirs = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.1, mask=mask, stream=mx.cpu)
        assert_close(ours, theirs, mx.float32)


def test_kv_cache_slice_read_in_place():
    """Keys and values as mlx-lm's KVCache returns them: a slice of a longer buffer."""
    q, _, _ = inputs(1, 8, 2, 1, 1, 64, mx.bfloat16)
    buf_k = mx.random.normal((1, 2, 256, 64), key=mx.random.key(7)).astype(mx.bfloat16)
    buf_v = mx.random.normal((1, 2, 256, 64), key=mx.random.key(8)).astype(mx.bfloat16)
    mx.eval(buf_k, buf_v)
    k, v = buf_k[..., :100, :], buf_v[..., :100, :]
    ours = bx.attention(q, k, v, scale=0.125, stream=mx.cpu)
    assert_close(ours, reference(q, mx.contiguous(k), mx.contiguous(v), 0.125, False), mx.bfloat16)


def test_strided_inputs():
    """Transposed queries, keys and values whose last axis is not contiguous."""
    q, k, v = inputs(1, 4, 2, 6, 10, 32, mx.float32)
    qt = mx.contiguous(q.swapaxes(2, 3)).swapaxes(2, 3)  # strides (.., 1, L): last axis strided
    kt = mx.contiguous(k.swapaxes(2, 3)).swapaxes(2, 3)
    vt = mx.contiguous(v.transpose(3, 2, 1, 0)).transpose(3, 2, 1, 0)
    ours = bx.attention(qt, kt, vt, scale=0.3, mask="causal", stream=mx.cpu)
    assert_close(ours, reference(q, k, v, 0.3, True), mx.float32)


def test_mixed_dtypes_and_output_layout():
    q, k, v = inputs(1, 4, 2, 5, 8, 32, mx.bfloat16, kv_dtype=mx.float32)
    ours = bx.attention(q, k, v, scale=0.2, stream=mx.cpu)
    assert ours.dtype == mx.bfloat16 and ours.shape == (1, 4, 5, 32)
    assert_close(ours, reference(q, k, v, 0.2, False), mx.bfloat16)


def test_nan_propagates():
    q, k, v = inputs(1, 2, 1, 1, 6, 16, mx.float32)
    k = mx.where(mx.arange(6)[:, None] == 2, mx.nan, k)  # key 2 is NaN
    ours = bx.attention(q, k, v, scale=0.5, stream=mx.cpu)
    assert mx.isnan(ours).all().item()


def test_grad_vmap_compile():
    q, k, v = inputs(1, 4, 2, 3, 5, 16, mx.float32)

    def loss(f):
        return lambda q, k, v: (f(q, k, v) * mx.arange(16)).sum()

    ours = loss(lambda q, k, v: bx.attention(q, k, v, scale=0.25, mask="causal", stream=mx.cpu))
    ref = loss(lambda q, k, v: reference(q, k, v, 0.25, True))
    for g_ours, g_ref in zip(mx.grad(ours, argnums=(0, 1, 2))(q, k, v), mx.grad(ref, argnums=(0, 1, 2))(q, k, v)):
        assert mx.allclose(g_ours, g_ref, rtol=1e-4, atol=1e-5).item()
    _, jv = mx.jvp(lambda q: bx.attention(q, k, v, scale=0.25, stream=mx.cpu), [q], [mx.ones_like(q)])
    _, jr = mx.jvp(lambda q: reference(q, k, v, 0.25, False), [q], [mx.ones_like(q)])
    assert mx.allclose(jv[0], jr[0], rtol=1e-4, atol=1e-5).item()
    qs = mx.stack([q, 2 * q])
    vm = mx.vmap(lambda q: bx.attention(q, k, v, scale=0.25, stream=mx.cpu))(qs)
    assert_close(vm[1], reference(2 * q, k, v, 0.25, False), mx.float32)
    vm_kv = mx.vmap(lambda k, v: bx.attention(q, k, v, scale=0.25, stream=mx.cpu))(mx.stack([k, -k]), mx.stack([v, v]))
    assert_close(vm_kv[1], reference(q, -k, v, 0.25, False), mx.float32)
    compiled = mx.compile(lambda q, k, v: bx.attention(q, k, v, scale=0.25, mask="causal", stream=mx.cpu))
    assert_close(compiled(q, k, v), reference(q, k, v, 0.25, True), mx.float32)


@pytest.mark.parametrize(
    "shapes, dtypes, mask, err, match",
    [
        (((4, 2, 8), (1, 2, 3, 8), (1, 2, 3, 8)), None, None, ValueError, "4-D"),
        (((1, 4, 1, 8), (1, 3, 3, 8), (1, 3, 3, 8)), None, None, ValueError, "multiple of the key-value heads"),
        (((1, 4, 1, 8), (1, 2, 3, 8), (1, 2, 4, 8)), None, None, ValueError, "one shape"),
        (((1, 4, 1, 8), (1, 2, 3, 4), (1, 2, 3, 4)), None, None, ValueError, "agree on B and D"),
        (((1, 4, 1, 8), (1, 2, 3, 8), (1, 2, 3, 8)), (mx.float32, mx.int32, mx.int32), None, TypeError, "keys must be"),
        (((1, 4, 1, 8), (1, 2, 3, 8), (1, 2, 3, 8)), (mx.float32, mx.float16, mx.float32), None, TypeError, "one dtype"),
        (((1, 4, 1, 8), (1, 2, 3, 8), (1, 2, 3, 8)), None, "full", ValueError, "None or 'causal'"),
    ],
)
def test_argument_errors(shapes, dtypes, mask, err, match):
    dtypes = dtypes or (mx.float32,) * 3
    q, k, v = (mx.zeros(s, dtype=d) for s, d in zip(shapes, dtypes))
    with pytest.raises(err, match=match):
        bx.attention(q, k, v, scale=1.0, mask=mask, stream=mx.cpu)


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 2),
    Hkv=st.integers(1, 3),
    G=st.integers(1, 4),
    L=st.integers(1, 40),
    extra=st.integers(0, 40),
    D=st.integers(1, 70),
    causal=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_random_shapes(B, Hkv, G, L, extra, D, causal, seed):
    q, k, v = inputs(B, Hkv * G, Hkv, L, max(1, L + extra - 20), D, mx.float32, seed=seed)
    ours = bx.attention(q, k, v, scale=0.3, mask="causal" if causal else None, stream=mx.cpu)
    assert_close(ours, reference(q, k, v, 0.3, causal), mx.float32)


def test_threads_agree():
    q, k, v = inputs(1, 20, 5, 70, 70, 128, mx.bfloat16)
    outs = []
    for t in (1, 2):
        with bx.cpu.use_threads(t):
            outs.append(bx.attention(q, k, v, scale=0.1, mask="causal", stream=mx.cpu))
            mx.eval(outs[-1])
    assert mx.array_equal(outs[0], outs[1]).item()


def test_every_isa_level(isa):
    """The kernel is instantiated per ISA level (the dense policies): each one this CPU runs (conftest's fixture)."""
    for B, Hq, Hkv, L, S, D, causal in [(1, 8, 2, 1, 77, 128, False), (1, 4, 2, 40, 45, 36, True)]:
        q, k, v = inputs(B, Hq, Hkv, L, S, D, mx.bfloat16)
        ours = bx.attention(q, k, v, scale=0.1, mask="causal" if causal else None, stream=mx.cpu)
        assert_close(ours, reference(q, k, v, 0.1, causal), mx.bfloat16)
