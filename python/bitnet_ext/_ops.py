"""The ops that need a little Python around the C++ primitives."""

from typing import TYPE_CHECKING, List, Optional, Tuple, Union, cast

import mlx.core as mx

from . import _ext

if TYPE_CHECKING:
    import numpy as np

StreamOrDevice = Optional[Union[mx.Stream, mx.Device]]


def pack(codes: Union[mx.array, "np.ndarray", list, tuple], *, stream: StreamOrDevice = None) -> mx.array:
    """Pack ternary codes into uint32 words, 16 per word.

    Args:
        codes: integer array (N, K) with values in {-1, 0, 1}; K % 16 == 0.
            NumPy arrays and nested lists are accepted; an unsigned dtype
            can only hold 0 and 1.

    Returns:
        uint32 array (N, K/16): code ``w + 1`` of ``codes[n, k]`` sits at bits
        ``2*(k % 16)`` of word ``k // 16``, MLX's affine ``bits=2`` layout.

    Unlike the other ops, ``pack`` evaluates ``codes`` to check its values: a
    value outside {-1, 0, 1} raises ValueError instead of packing garbage.
    """
    if not isinstance(codes, mx.array):
        codes = mx.array(codes)
    packed = _ext.pack(codes, stream=stream)  # checks dtype and shape
    # The check runs on the CPU: it is tiny, and works whatever `stream` names.
    # Unsigned codes cannot hold -1 (and `codes < -1` would not even convert):
    # only 0 and 1 are valid there.
    if mx.issubdtype(codes.dtype, mx.unsignedinteger):
        outside = (codes > 1).sum(stream=mx.cpu)
    else:
        outside = mx.logical_or(codes < -1, codes > 1, stream=mx.cpu).sum(stream=mx.cpu)
    # A count, so != 0 is > 0 (item() is typed int | float | complex, which has no >).
    if outside.item() != 0:
        raise ValueError(
            f"pack: codes must contain only -1, 0 and 1, but {outside.item()} of the "
            f"{codes.size} values of codes (shape {tuple(codes.shape)}) are outside that set "
            f"(min {codes.min().item()}, max {codes.max().item()})."
        )
    return packed


def fake_quantize(w: mx.array, *, per_channel: bool = False, stream: StreamOrDevice = None) -> mx.array:
    """``dequantize(*absmean_quantize(w))`` in w's dtype, with an identity gradient.

    The straight-through estimator of BitNet quantization-aware training: the
    forward sees the ternary weights ``scale * W``, the backward passes the
    cotangent to the latent float weights unchanged.
    """

    @mx.custom_function
    def quantize_dequantize(latent: mx.array) -> mx.array:
        # Forward-mode autodiff still walks the body of a custom function; the
        # quantizer has no derivative, and the custom rules below define it.
        latent = mx.stop_gradient(latent)
        wq, scale = _ext.absmean_quantize(latent, per_channel=per_channel, stream=stream)
        return _ext.dequantize(wq, scale, dtype=latent.dtype, stream=stream)

    @quantize_dequantize.vjp
    def straight_through_vjp(primals: mx.array, cotangent: mx.array, output: mx.array) -> mx.array:
        return cotangent

    @quantize_dequantize.jvp
    def straight_through_jvp(primals: mx.array, tangent: mx.array) -> mx.array:
        return tangent

    @quantize_dequantize.vmap
    def per_matrix_vmap(inputs: List[mx.array], axes: List[int]) -> Tuple[mx.array, int]:
        # Quantize each matrix of the batch on its own (its own absmean).
        latent = mx.moveaxis(inputs[0], axes[0], 0)
        return mx.stack([cast(mx.array, quantize_dequantize(m)) for m in latent]), 0

    # MLX's stub types custom_function calls as -> object; the body returns an array.
    return cast(mx.array, quantize_dequantize(w))
