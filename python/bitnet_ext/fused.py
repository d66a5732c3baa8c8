"""One ternary product for the projections that read the same input.

Attention's q/k/v projections and an MLP's gate/up projections all multiply
the same activations. :func:`fuse_projections` gives each such group one
:class:`bitnet_ext.nn.BitLinear` over the concatenated packed weights (rows of
q, then k, then v) and replaces the members by :class:`FusedOutput` views
that return their columns of the one product. A decode step then runs one
kernel (and, with int8 activations, one absmax quantization) per group
instead of one per projection; on a GPU the small k/v products also stop
being too small to fill the machine.

Exactness: the fused layer has one scale per output row (``per_channel``),
each member's scale repeated over its rows, and the members' biases
concatenated, so each output is computed by the same epilogue as before.
With int8 activations (:func:`bitnet_ext.bitlinear`) every output equals the
unfused one bit for bit (the int32 sum is exact; per-row and per-tensor scales
go through the same ``((acc * xscale) * s) + bias``). With float activations
(:func:`bitnet_ext.ternary_matmul`) the kernels may sum in another order for
another N: equal within float32 accumulation error (tests/test_fused.py
checks both on the CPU and, in a CUDA build, on the GPU).

The members stay attributes of their module, so the model's own forward
(``self.q_proj(x)``, ``self.k_proj(x)``, ...) is unchanged: the first member
called with an input computes the fused product, the others called with the
*same* array (``is``) take their slice of it; called with another input, a
member computes the product again (correct, only not faster). The product is
dropped once every member has taken its slice.

The fused weights replace the members' parameters (the keys become e.g.
``self_attn.qkv_proj.weight``): save a model before fusing it.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import mlx.core as mx
import mlx.nn as nn

from .nn import BitLinear, _check_module

__all__ = ["DEFAULT_GROUPS", "FusedOutput", "fuse_projections"]

# (member attribute names, attribute name of the fused layer)
DEFAULT_GROUPS: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    (("q_proj", "k_proj", "v_proj"), "qkv_proj"),
    (("gate_proj", "up_proj"), "gate_up_proj"),
)


class _Group:
    """The fused layer of one group and the product of its last input (not a Module: not in the tree)."""

    def __init__(self, layer: BitLinear, bounds: List[Tuple[int, int]]) -> None:
        self.layer = layer
        self.bounds = bounds
        self._x: Optional[mx.array] = None
        self._y: Optional[mx.array] = None
        self._taken: set = set()

    def output(self, x: mx.array, i: int) -> mx.array:
        if self._x is not x or i in self._taken:
            # A new input (or the same member twice): compute the product again.
            self._x, self._y, self._taken = x, self.layer(x), set()
        assert self._y is not None
        start, stop = self.bounds[i]
        y = self._y[..., start:stop]
        self._taken.add(i)
        if len(self._taken) == len(self.bounds):
            self._x = self._y = None  # every member served: do not keep the arrays alive
        return y

    def __repr__(self) -> str:
        return f"_Group(bounds={self.bounds})"


class FusedOutput(nn.Module):
    """A projection replaced by its columns of a fused product (no parameters of its own).

    ``output_dims`` is the member's; the fused layer is ``fused_layer``.
    """

    def __init__(self, group: _Group, index: int) -> None:
        super().__init__()
        # Plain attributes (not arrays or modules): outside the parameter tree.
        object.__setattr__(self, "_group", group)
        object.__setattr__(self, "_index", index)
        start, stop = group.bounds[index]
        self.output_dims = stop - start

    @property
    def fused_layer(self) -> BitLinear:
        return self._group.layer

    def __call__(self, x: mx.array) -> mx.array:
        return self._group.output(x, self._index)

    def _extra_repr(self) -> str:
        start, stop = self._group.bounds[self._index]
        return f"columns {start}:{stop} of the fused layer"


def _fusable(members: Sequence[Any]) -> bool:
    """Same kind of layer, input size, activation bits and bias presence, not already fused."""
    first = members[0]
    if not isinstance(first, BitLinear) or not getattr(type(first), "_fusable", type(first) is BitLinear):
        return False
    bias = "bias" in first
    for m in members:
        if type(m) is not type(first) or m.input_dims != first.input_dims:
            return False
        if m.activation_bits != first.activation_bits or ("bias" in m) != bias:
            return False
        if m.weight.dtype != mx.uint32 or (bias and m.bias.dtype != first.bias.dtype):
            return False
    return True


def _fuse(members: Sequence[BitLinear]) -> Tuple[BitLinear, List[Tuple[int, int]]]:
    first = members[0]
    sizes = [m.output_dims for m in members]
    bias = "bias" in first
    layer = BitLinear(first.input_dims, sum(sizes), bias, per_channel=True, activation_bits=first.activation_bits)
    layer.__class__ = type(first)  # e.g. mlx_lm's TransformersRoundingBitLinear: same forward
    layer.weight = mx.concatenate([m.weight for m in members], axis=0)
    # One scale per row: each member's per-tensor scale repeated over its rows.
    layer.scale = mx.concatenate(
        [mx.broadcast_to(m.scale.astype(mx.float32).reshape(-1), (n,)) for m, n in zip(members, sizes)]
    )
    if bias:
        layer.bias = mx.concatenate([m.bias for m in members])
    layer.freeze()
    bounds, start = [], 0
    for n in sizes:
        bounds.append((start, start + n))
        start += n
    return layer, bounds


def fuse_projections(
    model: nn.Module, groups: Sequence[Tuple[Sequence[str], str]] = DEFAULT_GROUPS
) -> nn.Module:
    """Fuse each group of BitLinear siblings that read the same input, in place; returns ``model``.

    ``groups``: ``(member names, fused layer name)`` pairs (default: q/k/v
    into ``qkv_proj``, gate/up into ``gate_up_proj``). A module is changed
    only when it has every member of a group as a :class:`BitLinear` of the
    same class, input size, ``activation_bits`` and bias presence, and no
    attribute of the fused name yet; everything else is left as it is, so
    fusing twice is harmless. Changing ``activation_bits`` afterwards (e.g.
    :func:`bitnet_ext.mlx_lm.patch_model`) acts on the fused layer.
    """
    _check_module("fuse_projections", "model", model)
    for names, fused_name in groups:
        if not names or not isinstance(fused_name, str) or any(not isinstance(n, str) for n in names):
            raise ValueError(
                f"fuse_projections: each group must be (member names, fused layer name), got {(names, fused_name)!r}"
            )
    parents: List[nn.Module] = [m for _, m in model.named_modules()]
    for parent in parents:
        for names, fused_name in groups:
            found = [parent.get(n) for n in names]
            if any(m is None for m in found) or fused_name in parent or not _fusable(found):
                continue
            layer, bounds = _fuse([m for m in found if isinstance(m, BitLinear)])  # all are (_fusable)
            group = _Group(layer, bounds)
            setattr(parent, fused_name, layer)
            for i, n in enumerate(names):
                setattr(parent, n, FusedOutput(group, i))
    return model
