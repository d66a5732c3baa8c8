"""Attention on the CPU with both products on :func:`bitnet_ext.dense_matmul`.

MLX's CPU ``mx.fast.scaled_dot_product_attention`` multiplies with the
reference BLAS of the mlx-cpu wheel: for the 2B-4T shapes (20 query / 5
key-value heads of 128) it takes ~3 ms per layer per decoded token at 640
positions and ~0.8 s per layer for a 512-token prompt, more than the ternary
layers themselves. Here ``q k^T`` and ``p v`` run on our dense kernels, one
key-value head (and its group of query heads) at a time; scores and softmax
are float32.

A causal prompt (``mask="causal"``, more than one block of queries) runs in
blocks of ``_QUERY_BLOCK`` queries, each against the keys it can see: the
masked upper triangle is neither multiplied nor softmaxed. MLX's CPU softmax
(~13-22 ns per score here) dominates a prompt's attention, and the blocks
halve the scores of a 512-token prompt (0.56 of them at 64-query blocks).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import mlx.core as mx

from . import _ext

# Queries per block of a causal prompt: smaller blocks skip more of the masked
# triangle ((n + 1) / 2n of the scores for n blocks) but add MLX ops (~6 per block).
_QUERY_BLOCK = 64


def _keep(mask: Union[None, str, mx.array], B: int, Hq: int, Hkv: int, L: int, S: int) -> Optional[mx.array]:
    """Where a query may look, as (B, Hkv, Hq/Hkv, L, S)-indexable: None (everywhere), bool or additive."""
    if mask is None:
        return None
    if isinstance(mask, str):
        if mask != "causal":
            raise ValueError(f"attention mask must be None, 'causal' or an array, got {mask!r}")
        # Query i sits at position S - L + i: it sees keys 0 .. S - L + i.
        causal = mx.arange(S)[None, :] <= (mx.arange(L)[:, None] + (S - L))
        return mx.broadcast_to(causal, (B, Hkv, Hq // Hkv, L, S))
    return mx.broadcast_to(mask, (B, Hq, L, S)).reshape(B, Hkv, Hq // Hkv, L, S)


def cpu_attention(
    queries: mx.array,
    keys: mx.array,
    values: mx.array,
    *,
    scale: float,
    mask: Union[None, str, mx.array] = None,
) -> mx.array:
    """``softmax(q k^T * scale + mask) v`` for q (B, Hq, L, D), k and v (B, Hkv, S, D), Hq % Hkv == 0.

    ``mask`` as ``mx.fast.scaled_dot_product_attention`` takes it: None,
    ``"causal"`` (aligned to the last key) or an array broadcastable to
    (B, Hq, L, S), boolean (True = attend) or additive. Returns q's dtype.
    """
    B, Hq, L, D = queries.shape
    Hkv, S = keys.shape[1], keys.shape[2]
    G = Hq // Hkv
    # The G query heads of one key-value head are consecutive: one (G*L, D) matrix.
    if isinstance(mask, str) and mask == "causal" and L > _QUERY_BLOCK:
        q = queries.astype(mx.float32).reshape(B, Hkv, G, L, D)
        out = [_causal_blocks(q[b, h], keys[b, h], values[b, h], scale, S - L) for b in range(B) for h in range(Hkv)]
        return mx.stack(out).reshape(B, Hq, L, D).astype(queries.dtype)
    q = queries.astype(mx.float32).reshape(B, Hkv, G * L, D)
    keep = _keep(mask, B, Hq, Hkv, L, S)
    outs = []
    for b in range(B):
        for h in range(Hkv):
            scores = (_ext.dense_matmul(q[b, h], keys[b, h]) * scale).reshape(G, L, S)
            if keep is not None:
                m = keep[b, h]
                if m.dtype == mx.bool_:
                    scores = mx.where(m, scores, -mx.inf)
                else:
                    scores = scores + m.astype(mx.float32)
            p = mx.softmax(scores, axis=-1).reshape(G * L, S)
            outs.append(_ext.dense_matmul(p, values[b, h].T).reshape(G, L, D))
    return mx.stack(outs).reshape(B, Hq, L, D).astype(queries.dtype)


def _causal_blocks(q: mx.array, k: mx.array, v: mx.array, scale: float, offset: int) -> mx.array:
    """Causal attention of one key-value head: q (G, L, D) float32, k and v (S, D), S = offset + L.

    Query i sits at position offset + i; each block of queries meets only the
    keys up to its last query's position, and its own triangle is masked.
    """
    G, L, D = q.shape
    vt = mx.contiguous(v.T)  # (D, S): p @ v as dense_matmul(p, vt), W rows along the keys
    blocks = []
    for i0 in range(0, L, _QUERY_BLOCK):
        i1 = min(L, i0 + _QUERY_BLOCK)
        n, e = i1 - i0, offset + i1  # the block's queries see keys [0, e) at most
        scores = (_ext.dense_matmul(q[:, i0:i1].reshape(G * n, D), k[:e]) * scale).reshape(G, n, e)
        keep = mx.arange(e)[None, :] <= (mx.arange(i0, i1)[:, None] + offset)
        p = mx.softmax(mx.where(keep, scores, -mx.inf), axis=-1).reshape(G * n, e)
        blocks.append(_ext.dense_matmul(p, vt[:, :e]).reshape(G, n, D))
    return mx.concatenate(blocks, axis=1)


def install_for_mlx_lm_bitnet() -> None:
    """Route mlx-lm's ``bitnet`` model attention through :func:`cpu_attention` on the CPU.

    Replaces (once) the ``scaled_dot_product_attention`` that
    ``mlx_lm.models.bitnet`` imported from ``mlx_lm.models.base`` by a function
    that calls :func:`cpu_attention` when MLX's default device is the CPU and
    the cache is not quantized (no attention sinks), and mlx-lm's own function
    otherwise (GPUs have fast attention of their own).
    """
    from mlx_lm.models import bitnet as bitnet_module

    # Callable[..., mx.array]: mlx-lm annotates mask as Optional[mx.array], yet its models pass "causal".
    original: Callable[..., mx.array] = bitnet_module.scaled_dot_product_attention
    if getattr(original, "_bitnet_ext_cpu_attention", False):
        return

    def scaled_dot_product_attention(
        queries: mx.array, keys: mx.array, values: mx.array, cache: Any, scale: float,
        mask: Union[None, str, mx.array], sinks: Optional[mx.array] = None,
    ) -> mx.array:
        if sinks is None and not hasattr(cache, "bits") and mx.default_device() == mx.cpu:
            return cpu_attention(queries, keys, values, scale=scale, mask=mask)
        return original(queries, keys, values, cache, scale=scale, mask=mask, sinks=sinks)

    # A marker on the function object: mypy has no type for attributes set on a function.
    scaled_dot_product_attention._bitnet_ext_cpu_attention = True  # type: ignore[attr-defined]
    bitnet_module.scaled_dot_product_attention = scaled_dot_product_attention
