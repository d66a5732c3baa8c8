"""BitNet b1.58 layers for ``mlx.nn``: inference (:class:`BitLinear`) and
quantization-aware training (:class:`BitLinearQAT`), plus :func:`quantize`
and :func:`to_inference` to swap them into a model.

Exactness contract (tested in ``tests/test_nn.py``):

* ``BitLinear(activation_bits=8)`` is :func:`bitnet_ext.bitlinear`: int8
  per-token absmax activations, an exact int32 dot with the ternary weights,
  then ``((acc * xscale) * scale) + bias`` in float32, cast to x's dtype.
* ``BitLinearQAT(activation_bits=8)`` computes its forward *in the same integer
  form*: the int8 activation codes (``bitnet_ext.absmax_quantize``) and the
  ternary weight codes (from ``bitnet_ext.fake_quantize``) are multiplied as
  integer-valued float32 matrices, which is exact while ``128 * K <= 2**24``
  (``K <= 131072`` input features), then scaled in the same order. So
  ``qat(x)`` and ``qat.to_inference()(x)`` are **equal bit for bit** for every
  dtype, and both equal the textbook fake-quantized forward
  ``fq(x) @ fake_quantize(W).T`` up to float32 rounding (a relative error of a
  few float32 ulps of the accumulated magnitude, see the tests).
* With ``activation_bits=None`` the QAT forward is ``x @ fake_quantize(W).T``
  accumulated in float32 and the inference layer is
  :func:`bitnet_ext.ternary_matmul`: same math, different summation order, so
  they agree within float32 accumulation error, not bit for bit.

Gradients of :class:`BitLinearQAT` are the straight-through estimator of the
BitNet paper: ``dL/dx = g @ W_q`` and ``dL/dW_latent = g.T @ x_q`` (the
quantizers pass gradients through unchanged, the scales get none).
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union, cast

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map_with_path

from . import _ext
from ._ops import fake_quantize

__all__ = ["BitLinear", "BitLinearQAT", "quantize", "to_inference"]

_ACTIVATION_BITS = (8, None)


def _check_dims(cls_name: str, input_dims: int, output_dims: int) -> None:
    if not isinstance(input_dims, int) or not isinstance(output_dims, int) or input_dims < 1 or output_dims < 1:
        raise ValueError(
            f"{cls_name}: input_dims and output_dims must be positive integers, got {input_dims!r}, {output_dims!r}"
        )
    if input_dims % 16:
        raise ValueError(
            f"{cls_name}: input_dims = {input_dims} is not a multiple of 16; the packed ternary layout stores "
            "16 weights per uint32 along the input dimension (pad the layer or leave it in float)"
        )


def _check_activation_bits(cls_name: str, activation_bits: object) -> None:
    if activation_bits not in _ACTIVATION_BITS:
        raise ValueError(
            f"{cls_name}: activation_bits must be 8 (BitNet b1.58 int8 activations) or None (float activations), "
            f"got {activation_bits!r}"
        )


def _check_module(where: str, arg: str, value: object) -> None:
    if not isinstance(value, nn.Module):
        raise TypeError(f"{where}: {arg} must be an mlx.nn.Module, got {type(value).__name__}")


def _check_linear(where: str, linear: object) -> None:
    weight = linear.get("weight") if isinstance(linear, nn.Module) else None
    if not isinstance(weight, mx.array) or weight.ndim != 2:
        raise TypeError(
            f"{where}: linear must be an mlx.nn.Linear (or a layer with a 2-D weight), got {type(linear).__name__}"
        )


def _code3_fields(w: mx.array) -> mx.array:
    """Per word: the low bit of each two-bit field that holds code 3 (both bits set)."""
    return mx.bitwise_and(mx.bitwise_and(w, mx.right_shift(w, 1)), mx.array(0x55555555, mx.uint32))


# One fused pass (measured ~2x faster than the eager ops on a 6912x160 weight).
_any_code3 = mx.compile(lambda w: mx.max(_code3_fields(w)), shapeless=True)


def _check_packed_weight(weight: object, what: str) -> None:
    """Refuse a packed weight that is not uint32 or holds code 3 (bits 11), which pack never writes."""
    if not isinstance(weight, mx.array):
        return  # mlx.nn.Module.load_weights says what it expected
    if weight.dtype != mx.uint32:
        raise TypeError(f"{what} must be the packed uint32 array, got {weight.dtype} of shape {tuple(weight.shape)}")
    if weight.size and _any_code3(weight).item():
        bad = mx.sum(_code3_fields(weight) != 0).item()
        raise ValueError(
            f"{what} (shape {tuple(weight.shape)}): {bad} packed word(s) hold the two-bit code 3 (bits 11), which "
            "bitnet_ext.pack never writes; valid codes are 0, 1, 2 for -1, 0, +1: this is not a ternary weight"
        )


class _TernaryLinearBase(nn.Module):
    """What BitLinear and BitLinearQAT share: the configuration, its checks and repr."""

    def __init__(self, input_dims: int, output_dims: int, per_channel: bool, activation_bits: Optional[int]):
        super().__init__()
        name = type(self).__name__
        _check_dims(name, input_dims, output_dims)
        _check_activation_bits(name, activation_bits)
        self.input_dims = input_dims
        self.output_dims = output_dims
        self.per_channel = bool(per_channel)
        self.activation_bits = activation_bits

    def _extra_repr(self) -> str:
        return (
            f"input_dims={self.input_dims}, output_dims={self.output_dims}, bias={'bias' in self}, "
            f"per_channel={self.per_channel}, activation_bits={self.activation_bits}"
        )

    @classmethod
    def _linear_dims(cls, linear: nn.Module) -> Tuple[int, int, bool]:
        """``linear``'s (input_dims, output_dims, bias), checked: the first arguments of ``cls(...)``."""
        _check_linear(f"{cls.__name__}.from_linear", linear)
        output_dims, input_dims = linear.weight.shape
        return input_dims, output_dims, "bias" in linear


class BitLinear(_TernaryLinearBase):
    """Inference linear layer with ternary weights, ``y = x @ (scale * W).T + bias``.

    Parameters (saved and loaded by ``save_weights``/``load_weights``):
    ``weight`` uint32 ``(output_dims, input_dims // 16)`` (the packed ternary
    codes, see :func:`bitnet_ext.pack`), ``scale`` float32 ``(1,)`` or
    ``(output_dims,)`` with ``per_channel=True``, and ``bias`` (optional).

    Args:
        input_dims: input features K, a multiple of 16.
        output_dims: output features N.
        bias: whether the layer has a bias.
        per_channel: one scale per output row instead of one per tensor.
        activation_bits: ``8`` is the BitNet b1.58 W1.58A8 forward
            (:func:`bitnet_ext.bitlinear`); ``None`` keeps float activations
            (:func:`bitnet_ext.ternary_matmul`), as mlx-lm's BitNet layer does.

    The parameters are frozen (like ``mlx.nn.QuantizedLinear``): the packed
    weight has no gradient. Train with :class:`BitLinearQAT` instead.
    """

    def __init__(
        self,
        input_dims: int,
        output_dims: int,
        bias: bool = False,
        *,
        per_channel: bool = False,
        activation_bits: Optional[int] = 8,
    ):
        super().__init__(input_dims, output_dims, per_channel, activation_bits)
        # All-zero ternary weights (code 1 everywhere) until loaded.
        self.weight = mx.full((output_dims, input_dims // 16), 0x55555555, dtype=mx.uint32)
        self.scale = mx.ones((output_dims,) if per_channel else (1,), dtype=mx.float32)
        if bias:
            self.bias = mx.zeros((output_dims,))
        self.freeze()

    def __call__(self, x: mx.array) -> mx.array:
        if self.weight.dtype != mx.uint32:
            raise TypeError(
                f"BitLinear: weight must be the packed uint32 array, but it is {self.weight.dtype} "
                f"(shape {tuple(self.weight.shape)}); were float weights loaded into a BitLinear? "
                "Use BitLinear.from_linear or bitnet_ext.nn.quantize to quantize float weights"
            )
        bias = self["bias"] if "bias" in self else None
        if self.activation_bits == 8:
            return _ext.bitlinear(x, self.weight, self.scale, bias)
        y = _ext.ternary_matmul(x, self.weight, self.scale)
        return y if bias is None else y + bias

    @classmethod
    def from_linear(
        cls,
        linear: nn.Module,
        *,
        per_channel: bool = False,
        activation_bits: Optional[int] = 8,
    ) -> "BitLinear":
        """Absmean-quantize an ``mlx.nn.Linear`` (or a :class:`BitLinearQAT`)."""
        layer = cls(*cls._linear_dims(linear), per_channel=per_channel, activation_bits=activation_bits)
        wq, scale = _ext.absmean_quantize(linear.weight, per_channel=per_channel)
        layer.weight = wq
        layer.scale = scale.reshape(-1)
        if "bias" in linear:
            layer.bias = linear.bias
        return layer

    def load_weights(
        self, file_or_weights: Union[str, os.PathLike, Sequence[Tuple[str, mx.array]]], strict: bool = True
    ) -> "BitLinear":
        """``mlx.nn.Module.load_weights``, refusing a ``weight`` that is not a valid packed ternary array.

        The weight must be uint32 and hold only the codes 0, 1, 2 (code 3,
        bits ``11``, is never written by :func:`bitnet_ext.pack`); the check
        runs before the layer is changed.
        """
        if isinstance(file_or_weights, (str, os.PathLike)):
            # A weights file (.npz, .safetensors) loads as a dict, as mlx.nn.Module.load_weights assumes.
            weights = list(cast(Dict[str, mx.array], mx.load(os.fspath(file_or_weights))).items())
        else:
            weights = list(file_or_weights)
        for name, value in weights:
            if name == "weight":
                _check_packed_weight(value, "BitLinear.load_weights: weight")
        super().load_weights(weights, strict=strict)  # returns self
        return self

    def dequantized_weight(self, dtype: mx.Dtype = mx.float32) -> mx.array:
        """The effective float weight ``scale * W``, shape (output_dims, input_dims)."""
        return _ext.dequantize(self.weight, self.scale, dtype=dtype)


def _ste_round_to(value: mx.array, target: mx.array) -> mx.array:
    """``target`` in the forward, exactly; identity gradient to ``value``.

    ``value - stop_gradient(value)`` is exactly 0 for any finite value, so the
    forward is ``target + 0 == target`` bit for bit, and the gradient is
    ``d value``: the straight-through estimator.
    """
    return mx.stop_gradient(target) + (value - mx.stop_gradient(value))


class BitLinearQAT(_TernaryLinearBase):
    """Quantization-aware training layer with latent float weights.

    The forward sees ternary weights (``bitnet_ext.fake_quantize``, absmean)
    and, with ``activation_bits=8``, int8 per-token absmax activations; both
    quantizers pass gradients straight through, so any ``mlx.optimizers``
    optimizer trains the latent ``weight``. :meth:`to_inference` returns the
    :class:`BitLinear` whose output equals this layer's output bit for bit
    (``activation_bits=8``) or within float32 accumulation error (``None``).

    Args are those of :class:`BitLinear`. The latent weight is initialised
    like ``mlx.nn.Linear`` (uniform in ``+-1/sqrt(input_dims)``).
    """

    def __init__(
        self,
        input_dims: int,
        output_dims: int,
        bias: bool = False,
        *,
        per_channel: bool = False,
        activation_bits: Optional[int] = 8,
    ):
        super().__init__(input_dims, output_dims, per_channel, activation_bits)
        bound = math.sqrt(1.0 / input_dims)
        self.weight = mx.random.uniform(-bound, bound, (output_dims, input_dims))
        if bias:
            self.bias = mx.random.uniform(-bound, bound, (output_dims,))

    def __call__(self, x: mx.array) -> mx.array:
        w = self.weight
        w_q = fake_quantize(w, per_channel=self.per_channel)  # scale * codes, in w's dtype; STE
        # The scale fake_quantize used (same op on the same values: bit-identical).
        _, scale = _ext.absmean_quantize(mx.stop_gradient(w), per_channel=self.per_channel)
        scale_rows = scale.reshape(-1, 1) if self.per_channel else scale
        # w_q / scale is exactly the ternary code (+-s / s == +-1 in any float dtype).
        codes = (w_q / scale_rows.astype(w.dtype)).astype(mx.float32)
        scale = scale.reshape(-1)
        bias = self["bias"] if "bias" in self else None

        if self.activation_bits is None:
            # As BitLinear(activation_bits=None): float32 accumulation, x's dtype, then + bias.
            y = ((x.astype(mx.float32) @ codes.T) * scale).astype(x.dtype)
            return y if bias is None else y + bias

        # int8 per-token absmax activations, straight-through.
        xq, xscale = _ext.absmax_quantize(mx.stop_gradient(x))
        x32 = x.astype(mx.float32)
        xq_ste = _ste_round_to(x32 / xscale, xq.astype(mx.float32))
        # Integer-valued float32 matmul: exact for K <= 131072 (see module doc),
        # i.e. the int32 accumulator of bitnet_ext.bitlinear.
        acc = xq_ste @ codes.T
        y = (acc * xscale) * scale
        if bias is not None:
            y = y + bias.astype(mx.float32)
        return y.astype(x.dtype)

    def to_inference(self) -> BitLinear:
        """The :class:`BitLinear` with this layer's quantized weights."""
        return BitLinear.from_linear(self, per_channel=self.per_channel, activation_bits=self.activation_bits)

    @classmethod
    def from_linear(
        cls,
        linear: nn.Module,
        *,
        per_channel: bool = False,
        activation_bits: Optional[int] = 8,
    ) -> "BitLinearQAT":
        """Start QAT from a float ``mlx.nn.Linear`` (its weights become the latent weights)."""
        layer = cls(*cls._linear_dims(linear), per_channel=per_channel, activation_bits=activation_bits)
        layer.weight = linear.weight
        if "bias" in linear:
            layer.bias = linear.bias
        return layer


def _default_predicate(path: str, module: nn.Module) -> bool:
    return type(module) is nn.Linear


def quantize(
    model: nn.Module,
    *,
    class_predicate: Optional[Callable[[str, nn.Module], Union[bool, dict]]] = None,
    qat: bool = False,
    per_channel: bool = False,
    activation_bits: Optional[int] = 8,
) -> nn.Module:
    """Replace ``mlx.nn.Linear`` layers of ``model`` by BitNet layers, in place.

    Like ``mlx.nn.quantize``: ``class_predicate(path, module)`` selects the
    layers (default: every ``mlx.nn.Linear``) and may return a dict of
    keyword overrides (``per_channel``, ``activation_bits``, ``qat``) for that
    layer. With ``qat=False`` the layers become :class:`BitLinear` (weights
    absmean-quantized now); with ``qat=True`` :class:`BitLinearQAT` (the float
    weights become the latent weights).

    With the default predicate, a Linear whose input_dims is not a multiple of
    16 is left in float with a warning; one chosen by a custom predicate raises.

    Returns the model (modified in place), as ``mlx.nn.quantize`` does not.
    """
    _check_module("quantize", "model", model)
    if class_predicate is not None and not callable(class_predicate):
        raise TypeError(
            f"quantize: class_predicate must be a callable (path, module) -> bool or dict, "
            f"got {type(class_predicate).__name__}"
        )
    defaults = {"qat": qat, "per_channel": per_channel, "activation_bits": activation_bits}
    skipped: List[str] = []

    def _maybe_replace(path: str, m: nn.Module) -> nn.Module:
        selected = (class_predicate or _default_predicate)(path, m)
        if not selected:
            return m
        if isinstance(selected, dict):
            unknown = set(selected) - set(defaults)
            if unknown:
                raise ValueError(
                    f"quantize: class_predicate returned unknown option(s) {sorted(unknown)} for {path!r}; "
                    f"allowed: {sorted(defaults)}"
                )
            opts = {**defaults, **selected}
        elif selected is True:
            opts = dict(defaults)
        else:
            raise ValueError(f"quantize: class_predicate must return a bool or a dict, got {selected!r} for {path!r}")
        if not (isinstance(m, nn.Linear) or isinstance(m, BitLinearQAT)):
            raise ValueError(f"quantize: {path!r} is a {type(m).__name__}; only mlx.nn.Linear layers can be replaced")
        if m.weight.shape[1] % 16:
            if class_predicate is None:
                skipped.append(f"{path} (input_dims {m.weight.shape[1]})")
                return m
            raise ValueError(
                f"quantize: {path!r} has input_dims {m.weight.shape[1]}, not a multiple of 16; "
                "exclude it with class_predicate"
            )
        cls = BitLinearQAT if opts.pop("qat") else BitLinear
        return cls.from_linear(m, **opts)

    leaves = tree_map_with_path(_maybe_replace, model.leaf_modules(), is_leaf=nn.Module.is_module)
    model.update_modules(leaves)
    if skipped:
        warnings.warn(
            "bitnet_ext.nn.quantize left these Linear layers in float (input_dims not a multiple of 16): "
            + ", ".join(skipped),
            stacklevel=2,
        )
    return model


def to_inference(model: nn.Module) -> nn.Module:
    """Replace every :class:`BitLinearQAT` of ``model`` by its :class:`BitLinear`, in place; returns the model."""
    _check_module("to_inference", "model", model)

    def _convert(path: str, m: nn.Module) -> nn.Module:
        return m.to_inference() if isinstance(m, BitLinearQAT) else m

    leaves = tree_map_with_path(_convert, model.leaf_modules(), is_leaf=nn.Module.is_module)
    model.update_modules(leaves)
    return model
