"""Attention on the CPU for mlx-lm's ``bitnet`` model.

MLX's CPU ``mx.fast.scaled_dot_product_attention`` multiplies with the
reference BLAS of the mlx-cpu wheel: for the 2B-4T shapes (20 query / 5
key-value heads of 128) it takes ~3 ms per layer per decoded token at 640
positions and ~0.8 s per layer for a 512-token prompt, more than the ternary
layers themselves. Without a mask or with ``mask="causal"`` (what mlx-lm
passes for one sequence) the attention runs on :func:`bitnet_ext.attention`,
one op that reads the KV cache in place (no copies of keys or values),
skips the masked keys and keeps scores and softmax in float32. An array mask
(batched generation) takes the path below: ``q k^T`` and ``p v`` on
:func:`bitnet_ext.dense_matmul`, one key-value head (and its group of query
heads) at a time, MLX's softmax in float32.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import mlx.core as mx

from . import _ext


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
    if mask is None or (isinstance(mask, str) and mask == "causal"):
        return _ext.attention(queries, keys, values, scale=scale, mask=mask)
    if isinstance(mask, str):
        raise ValueError(f"attention mask must be None, 'causal' or an array, got {mask!r}")
    B, Hq, L, D = queries.shape
    Hkv, S = keys.shape[1], keys.shape[2]
    G = Hq // Hkv
    # The G query heads of one key-value head are consecutive: one (G*L, D) matrix.
    q = queries.astype(mx.float32).reshape(B, Hkv, G * L, D)
    keep = mx.broadcast_to(mask, (B, Hq, L, S)).reshape(B, Hkv, G, L, S)
    outs = []
    for b in range(B):
        for h in range(Hkv):
            scores = (_ext.dense_matmul(q[b, h], keys[b, h]) * scale).reshape(G, L, S)
            m = keep[b, h]
            if m.dtype == mx.bool_:
                scores = mx.where(m, scores, -mx.inf)
            else:
                scores = scores + m.astype(mx.float32)
            p = mx.softmax(scores, axis=-1).reshape(G * L, S)
            outs.append(_ext.dense_matmul(p, values[b, h].T).reshape(G, L, D))
    return mx.stack(outs).reshape(B, Hq, L, D).astype(queries.dtype)


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
