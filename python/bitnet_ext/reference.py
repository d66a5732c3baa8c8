"""Pure-MLX reference implementations of every ``bitnet_ext`` op.

These functions use ``mlx.core`` operations only (none of our C++), are written
to be obviously correct rather than fast, and are the oracle of the test suite.
Integer paths (pack/unpack, absmean codes, absmax quantization, bitlinear) are
meant to be bit-identical to the C++ kernels; float paths (ternary_matmul) agree
up to float32 accumulation order.

Packed format: uint32 words, 16 two-bit codes per word, least-significant bits
first along K, code = w + 1 (MLX's affine ``bits=2`` layout). ``pack`` never
writes code 3 (bits ``11``); every op reads it as MLX's affine dequantization
does, code - 1 = +2, so any uint32 word has one meaning.

Non-finite inputs follow IEEE float32 arithmetic (MLX's maximum, max and clip
propagate NaN) with one explicit rule where MLX leaves the result unspecified,
the cast of NaN to an integer: a quantized value that is NaN becomes code 0.
Hence a row of x with a NaN has xscale NaN, all its int8 codes 0 and a NaN
bitlinear output; a row with an inf (and no NaN) has xscale inf, all codes 0
(finite / inf = 0, inf / inf = NaN) and bitlinear output 0 * inf = NaN. In
absmean_quantize a NaN or inf in the weights a scale covers makes that scale
NaN or inf and all its codes 0.
"""

from typing import Optional, Tuple, Union, cast

import mlx.core as mx

__all__ = [
    "pack",
    "unpack",
    "absmean_quantize",
    "dequantize",
    "ternary_matmul",
    "absmax_quantize",
    "bitlinear",
    "fake_quantize",
    "int8_quantize_rows",
    "int8_matmul",
]

_SHIFTS = mx.arange(0, 32, 2, dtype=mx.uint32)  # bit offset of code j in a word

# Float32 holds every integer of magnitude <= 2^24 exactly. A chunk of this
# many int8 x ternary products has |partial sum| <= 128 * 2^16 = 2^23, so a
# float32 matmul over one chunk is exact whatever its summation order.
_EXACT_CHUNK = 1 << 16
# The same for int8 x int8 products (|xq| <= 128, |wq| <= 127): 1024 of them
# sum to at most 128 * 127 * 1024 < 2^24.
_EXACT_CHUNK_INT8 = 1024

# A scale is a Python float or an array of shape (), (1,) or (N,).
Scale = Union[float, mx.array]


def _round_clip(q: mx.array, lo: int, hi: int) -> mx.array:
    """clip(round_half_even(q), lo, hi) with NaN -> 0 (int8 codes)."""
    r = mx.clip(mx.round(q), lo, hi)
    return mx.where(mx.isnan(r), 0, r).astype(mx.int8)


def _row_scale(scale: Scale) -> mx.array:
    """scale () or (1,) or (N,) -> float32 broadcastable against (N, K)."""
    scale = mx.array(scale).astype(mx.float32)
    return scale.reshape(-1, 1) if scale.ndim == 1 else scale


def pack(codes: mx.array) -> mx.array:
    """Integer (..., K) in {-1, 0, 1}, K % 16 == 0 -> uint32 (..., K / 16)."""
    *lead, K = codes.shape
    if K % 16:
        raise ValueError(f"pack: K = {K} is not a multiple of 16")
    c = (codes.astype(mx.int32) + 1).astype(mx.uint32)
    c = c.reshape(*lead, K // 16, 16)
    # Codes occupy disjoint bit fields, so the sum is the bitwise OR.
    return mx.sum(mx.left_shift(c, _SHIFTS), axis=-1).astype(mx.uint32)


def unpack(wq: mx.array) -> mx.array:
    """uint32 (..., K / 16) -> int8 codes in {-1, 0, 1} of shape (..., K)."""
    *lead, W = wq.shape
    c = mx.bitwise_and(mx.right_shift(wq[..., None], _SHIFTS), 3)
    return (c.astype(mx.int8) - 1).reshape(*lead, W * 16)


def _mean_abs(w32: mx.array, axis: Optional[int]) -> mx.array:
    # Accumulated in float64 and rounded once to float32, as the C++ kernel
    # does (float64 exists on the CPU only, so the mean runs there).
    a = mx.abs(w32).astype(mx.float64, stream=mx.cpu)
    return mx.mean(a, axis=axis, stream=mx.cpu).astype(mx.float32, stream=mx.cpu)


def absmean_quantize(w: mx.array, *, per_channel: bool = False, eps: float = 1e-5) -> Tuple[mx.array, mx.array]:
    """w (N, K) -> (packed uint32 (N, K/16), float32 scale () or (N,))."""
    w32 = w.astype(mx.float32)
    scale = mx.maximum(_mean_abs(w32, -1 if per_channel else None), eps)
    return pack(_round_clip(w32 / _row_scale(scale), -1, 1)), scale


def dequantize(wq: mx.array, scale: Scale, *, dtype: mx.Dtype = mx.float16) -> mx.array:
    """scale * W, scale broadcast per row n when it is (N,)."""
    return (_row_scale(scale) * unpack(wq).astype(mx.float32)).astype(dtype)


def ternary_matmul(x: mx.array, wq: mx.array, scale: Scale, *, transpose: bool = True) -> mx.array:
    """x @ W_eff.T (transpose) or x @ W_eff with W_eff = diag(scale) @ W.

    Accumulates in float32, returns x's dtype. With transpose the scale is
    applied to the sums, (x @ W.T) * scale, as every kernel does: the same
    value up to rounding, and the same NaN/inf pattern when scale is inf
    (inf * W would put 0 * inf = NaN into every sum with a zero weight).
    """
    w = unpack(wq).astype(mx.float32)  # (N, K)
    xf = x.astype(mx.float32)
    if transpose:
        y = (xf @ w.T) * mx.array(scale).astype(mx.float32)
    else:
        y = xf @ (_row_scale(scale) * w)
    return y.astype(x.dtype)


def absmax_quantize(x: mx.array, *, eps: float = 1e-5, rounding: str = "divide") -> Tuple[mx.array, mx.array]:
    """Per-token (last axis) int8 quantization -> (xq int8, xscale f32 (..., 1)).

    rounding="transformers" rounds x * (127 / max) as transformers' BitNet
    does, with torch's ``127 / t`` = ``reciprocal(t) * 127``, instead of
    x / (max / 127); xscale is the same.
    """
    xf = x.astype(mx.float32)
    amax = mx.maximum(mx.max(mx.abs(xf), axis=-1, keepdims=True), eps)
    xscale = amax / 127
    scaled = xf * ((1 / amax) * 127) if rounding == "transformers" else xf / xscale
    return _round_clip(scaled, -128, 127), xscale


def _int_dot(xq: mx.array, w: mx.array, chunk: int = _EXACT_CHUNK) -> mx.array:
    """Exact int32 xq (..., K) @ w (N, K).T for any K (see _EXACT_CHUNK)."""
    K = xq.shape[-1]
    acc: Optional[mx.array] = None
    for k0 in range(0, K, chunk):
        xs = xq[..., k0 : k0 + chunk].astype(mx.float32)
        ws = w[:, k0 : k0 + chunk].astype(mx.float32)
        part = (xs @ ws.T).astype(mx.int32)
        acc = part if acc is None else acc + part
    assert acc is not None, "K >= 1: absmax_quantize rejects K == 0"
    return acc


def bitlinear(
    x: mx.array, wq: mx.array, scale: Scale, bias: Optional[mx.array] = None, *, rounding: str = "divide"
) -> mx.array:
    """BitNet b1.58 W1.58A8 linear layer, x (..., K) -> (..., N) in x's dtype.

    y = ((float(acc) * xscale) * scale[n]) + bias[n], in that order, in float32,
    where acc is the exact int32 dot of the int8 activations with W.
    """
    xq, xscale = absmax_quantize(x, rounding=rounding)
    acc = _int_dot(xq, unpack(wq))
    y = (acc.astype(mx.float32) * xscale) * mx.array(scale).astype(mx.float32)
    if bias is not None:
        y = y + bias.astype(mx.float32)
    return y.astype(x.dtype)


def int8_quantize_rows(w: mx.array) -> Tuple[mx.array, mx.array]:
    """Per-row symmetric int8 quantization of a float (N, K) -> (wq int8 (N, K), s f32 (N,)).

    s[n] = max_k |w[n, k]| / 127 in float32 and wq[n, k] = clip(round_half_even(
    w[n, k] / s[n]), -127, 127) (a true float32 division). A row of zeros has
    s = 0 and codes 0 (0 / 0 is NaN, and a NaN quotient becomes code 0), so
    its outputs are 0. This is also the production quantizer (run once at
    load time); bitnet_ext.int8_quantize_rows is this function.
    """
    w32 = w.astype(mx.float32)
    s = mx.max(mx.abs(w32), axis=-1, keepdims=True) / 127
    return _round_clip(w32 / s, -127, 127), s.reshape(-1)


def int8_matmul(x: mx.array, wq: mx.array, row_scale: mx.array) -> mx.array:
    """The int8 head, x (..., K) -> (..., N) in x's dtype.

    y = (float(acc) * xscale) * row_scale[n], in that order, in float32, where
    acc is the exact int32 dot of absmax_quantize(x) with wq (N, K) int8.
    """
    xq, xscale = absmax_quantize(x)
    acc = _int_dot(xq, wq, _EXACT_CHUNK_INT8)
    y = (acc.astype(mx.float32) * xscale) * row_scale.astype(mx.float32)
    return y.astype(x.dtype)


def _fake_quantize(per_channel: bool) -> mx.custom_function:
    @mx.custom_function
    def fq(w: mx.array) -> mx.array:
        wq, scale = absmean_quantize(w, per_channel=per_channel)
        return dequantize(wq, scale, dtype=w.dtype)

    # Straight-through estimator: the derivative is the identity. (With one
    # positional argument MLX passes the primal/tangent as a bare array.)
    @fq.vjp
    def fq_vjp(primal: mx.array, cotangent: mx.array, output: mx.array) -> mx.array:
        return cotangent

    @fq.jvp
    def fq_jvp(primal: mx.array, tangent: mx.array) -> mx.array:
        return tangent

    return fq


_FAKE_QUANTIZE = {False: _fake_quantize(False), True: _fake_quantize(True)}


def fake_quantize(w: mx.array, *, per_channel: bool = False) -> mx.array:
    """dequantize(absmean_quantize(w)) in w's dtype; identity gradient."""
    # MLX's stub types custom_function calls as -> object; fq returns an array.
    return cast(mx.array, _FAKE_QUANTIZE[bool(per_channel)](w))
