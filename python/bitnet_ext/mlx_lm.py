"""Run mlx-lm BitNet models with bitnet_ext's kernels, on every MLX device.

mlx-lm's own BitNet layer (``mlx_lm.models.bitlinear_layers.BitLinear``) is a
Metal-only ``mx.fast.metal_kernel``: on Linux, and on any backend other than
Metal, its models cannot run. This module swaps it for
:class:`bitnet_ext.nn.BitLinear` with mlx-lm's exact semantics:

* float activations (``activation_bits=None``, i.e. :func:`bitnet_ext.ternary_matmul`);
* its scale convention, per layer: with ``invert_weight_scales=True`` the
  output is multiplied by ``float32(1) / float32(weight_scale)``, otherwise by
  ``float32(weight_scale)``, as mlx-lm's kernel computes it. (mlx-lm sets the
  flag from ``linear_class`` only in ``bitnet_quantize``, i.e. for other
  architectures; its ``bitnet`` model builds every layer with the flag off, so
  it multiplies even for ``linear_class: "bitlinear"``, where transformers
  divides. :func:`load_model` warns in that case; ``python -m bitnet_ext
  convert`` follows transformers.);
* the bias is added after the scaled product, in the bias' dtype, and the
  output has the input's dtype (mlx-lm requires input dtype == scale dtype).

Usage::

    from bitnet_ext.mlx_lm import load
    import mlx_lm

    model, tokenizer = load("path/to/bitnet-model")   # HF/mlx-lm layout or `bitnet_ext convert` output
    print(mlx_lm.generate(model, tokenizer, prompt="Hello", max_tokens=32))

or patch a model mlx-lm already loaded: ``bitnet_ext.mlx_lm.patch_model(model)``.

The float output head (a tied ``embed_tokens.as_linear`` or an untied float
``lm_head``) and any other plain float ``nn.Linear`` run on
:func:`bitnet_ext.dense_matmul` (bf16/f16/f32 weights read as stored, float32
accumulation; MLX's own matmul on GPUs). ``activation_bits=8`` selects the
BitNet b1.58 int8 activation path (:func:`bitnet_ext.bitlinear`) for every
layer instead of mlx-lm's float activations. ``head_bits=8`` (opt-in, CPU
only) quantizes the output head once, per row, to int8
(:func:`bitnet_ext.int8_quantize_rows`) and runs it on
:func:`bitnet_ext.int8_matmul`: half the bytes of a bf16 head per token, at
the cost of int8 rounding of the head's weights and inputs.

On the CPU, the attention of mlx-lm's ``bitnet`` model runs on
:func:`bitnet_ext.dense_matmul` as well (MLX's CPU attention multiplies with
reference BLAS, ~30x slower for a 512-token prompt), and every plain
``nn.RMSNorm`` / ``nn.RoPE`` becomes :class:`OneOpRMSNorm` / :class:`OneOpRoPE`:
one :func:`bitnet_ext.rms_norm` / :func:`bitnet_ext.rope` op where MLX's CPU
runs about 12 / 30 small ops (a decoded token of a 30-layer model: ~3,000
fewer op dispatches), and the ``bitnet`` model's MLP computes
``relu2(gate) * up`` as one :func:`bitnet_ext.relu2_mul` op (bit-identical).

Prefill does not compute the logits mlx-lm discards: ``generate_step`` only
evaluates the KV cache after each prompt chunk, so the (lazy) head of those
chunks never runs; the head runs for the last prompt token only.

Requires the optional package ``mlx-lm`` (``pip install '.[mlx-lm]'`` from a checkout).
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map_with_path

from . import _ext
from ._cpu_attention import install_for_mlx_lm_bitnet
from .convert import QUANT_METHOD, _read_header, _short, from_hf_bitnet
from .fused import fuse_projections
from .nn import BitLinear, _check_activation_bits, _check_module, _check_packed_weight
from .reference import int8_quantize_rows

__all__ = [
    "DenseEmbedding",
    "DenseLinear",
    "Int8HeadEmbedding",
    "Int8HeadLinear",
    "TransformersRoundingBitLinear",
    "patch_model",
    "load",
    "load_model",
]


def _mlx_lm() -> Tuple[Any, Any]:
    try:
        import mlx_lm  # noqa: F401  (absolute import: the PyPI package, not this module)
        import mlx_lm.utils
        from mlx_lm.models import bitlinear_layers
    except ImportError as e:
        raise ImportError(
            "bitnet_ext.mlx_lm needs the optional package mlx-lm: run pip install '.[mlx-lm]' "
            f"in a bitnet_ext checkout (import failed: {e})"
        ) from e
    return mlx_lm.utils, bitlinear_layers


class DenseLinear(nn.Linear):
    """``mlx.nn.Linear`` whose product runs on :func:`bitnet_ext.dense_matmul` (same result dtype)."""

    def __call__(self, x: mx.array) -> mx.array:
        y = _dense(x, self.weight)
        return y + self.bias if "bias" in self else y


class DenseEmbedding(nn.Embedding):
    """``mlx.nn.Embedding`` whose ``as_linear`` (a tied output head) runs on :func:`bitnet_ext.dense_matmul`."""

    def as_linear(self, x: mx.array) -> mx.array:
        return _dense(x, self.weight)


class OneOpRMSNorm(nn.RMSNorm):
    """``mlx.nn.RMSNorm`` run as one :func:`bitnet_ext.rms_norm` op (MLX's CPU decomposes it into ~12).

    Same parameters and result (to float rounding; GPU streams run ``mx.fast.rms_norm`` itself).
    """

    def __call__(self, x: mx.array) -> mx.array:
        return _ext.rms_norm(x, self["weight"], self.eps)


class OneOpRoPE(nn.RoPE):
    """``mlx.nn.RoPE`` run as one :func:`bitnet_ext.rope` op (MLX's CPU decomposes it into ~30).

    Same settings and result (to float rounding: one float32 rotation rounded once;
    GPU streams run ``mx.fast.rope`` itself).
    """

    def __call__(self, x: mx.array, offset: Union[int, mx.array] = 0) -> mx.array:
        return _ext.rope(
            x, self.dims, traditional=self.traditional, base=self.base, scale=self.scale, offset=offset
        )


def _one_op_norm(m: nn.Module) -> Optional[nn.Module]:
    """A plain ``nn.RMSNorm`` as its one-op twin (same parameters); anything else: None."""
    if type(m) is not nn.RMSNorm:
        return None
    return _with_state_of(m, OneOpRMSNorm(m.weight.shape[0], eps=m.eps))


def _with_state_of(m: nn.Module, new: nn.Module) -> nn.Module:
    """``new`` (a twin class of ``m``) with ``m``'s parameters and training mode."""
    # The constructors' random parameters are lazy and replaced before use.
    new.update(m.parameters())
    if m.training != new.training:
        new.train(m.training)
    return new


def _swap_ropes(model: nn.Module) -> None:
    """Every plain ``nn.RoPE`` of ``model`` becomes a :class:`OneOpRoPE` with the same settings.

    Apart from the other swaps: a RoPE holds no parameters, so ``leaf_modules`` does not list it.
    """
    for _, parent in model.named_modules():
        for name, child in list(parent.items()):
            if type(child) is nn.RoPE:
                parent[name] = OneOpRoPE(child.dims, traditional=child.traditional, base=child.base, scale=child.scale)


def _one_op_activations(model: nn.Module) -> None:
    """Every MLP of mlx-lm's ``bitnet`` model computes ``relu2(gate) * up`` as one :func:`bitnet_ext.relu2_mul` op.

    The module keeps its parameters and children; only its class changes (to a subclass whose
    forward is the same but for the one op, bit-identical to MLX's three).
    """
    try:
        from mlx_lm.models import bitnet
    except ImportError:  # an mlx-lm without the bitnet model: nothing to swap
        return
    for _, m in model.named_modules():
        if type(m) is bitnet.MLP:
            m.__class__ = _one_op_mlp_class(bitnet.MLP)


@functools.lru_cache(maxsize=None)
def _one_op_mlp_class(base: type) -> type:
    def __call__(self: Any, x: mx.array) -> mx.array:
        gate, up = self.gate_proj(x), self.up_proj(x)
        if gate.dtype == up.dtype and gate.shape == up.shape and mx.issubdtype(gate.dtype, mx.floating):
            h = _ext.relu2_mul(gate, up)
        else:  # mixed dtypes or broadcasting: MLX's ops and their promotion rules
            h = nn.relu2(gate) * up
        return self.down_proj(self.ffn_sub_norm(h))

    return type("OneOpActivationMLP", (base,), {"__call__": __call__, "__doc__": base.__doc__})


def _dense(x: mx.array, w: mx.array) -> mx.array:
    # MLX's x @ w.T has the promoted dtype of x and w (for two float dtypes:
    # the common one, else float32); dense_matmul has x's.
    dtype = x.dtype if x.dtype == w.dtype else mx.float32
    return _ext.dense_matmul(x if x.dtype == dtype else x.astype(dtype), w)


def _dense_head(m: nn.Module) -> Optional[nn.Module]:
    """A plain float Linear / Embedding as its dense_matmul twin (same parameters); anything else: None."""
    if type(m) is nn.Linear:
        out_features, in_features = m.weight.shape
        new: nn.Module = DenseLinear(in_features, out_features, bias="bias" in m)
    elif type(m) is nn.Embedding:
        new = DenseEmbedding(*m.weight.shape)
    else:
        return None
    return _with_state_of(m, new)


class Int8HeadLinear(nn.Module):
    """An untied float output head as per-row int8 (``head_bits=8``), run on :func:`bitnet_ext.int8_matmul`.

    ``weight`` is int8 (N, K) and ``row_scale`` float32 (N,), from
    :func:`bitnet_ext.int8_quantize_rows`; the float weight is dropped.
    """

    def __init__(self, weight: mx.array, bias: Optional[mx.array] = None) -> None:
        super().__init__()
        self.weight, self.row_scale = int8_quantize_rows(weight)
        if bias is not None:
            self.bias = bias

    def __call__(self, x: mx.array) -> mx.array:
        y = _ext.int8_matmul(x, self.weight, self.row_scale)
        return y + self.bias if "bias" in self else y


class Int8HeadEmbedding(DenseEmbedding):
    """A tied embedding (``head_bits=8``): the float table for the lookup, a per-row int8 copy for ``as_linear``."""

    def __init__(self, weight: mx.array) -> None:
        super().__init__(*weight.shape)
        self.weight = weight
        self.head_weight, self.head_row_scale = int8_quantize_rows(weight)

    def as_linear(self, x: mx.array) -> mx.array:
        return _ext.int8_matmul(x, self.head_weight, self.head_row_scale)


def _int8_head(m: nn.Module, path: str, tied: bool) -> Optional[nn.Module]:
    """The output head of the model as its int8 twin; anything else (or an int8 head already): None."""
    if type(m) in (nn.Linear, DenseLinear) and path.split(".")[-1] == "lm_head":
        return Int8HeadLinear(m.weight, m["bias"] if "bias" in m else None)
    if tied and type(m) in (nn.Embedding, DenseEmbedding):
        return Int8HeadEmbedding(m.weight)
    return None


def _check_head_bits(where: str, head_bits: object) -> None:
    if head_bits not in (None, 8):
        raise ValueError(
            f"{where}: head_bits must be None (the float head) or 8 (per-row int8 head weights, "
            f"bitnet_ext.int8_matmul), got {head_bits!r}"
        )


class TransformersRoundingBitLinear(BitLinear):
    """:class:`bitnet_ext.nn.BitLinear` whose int8 activations round as transformers' BitNet does.

    ``round(x * (127 / max))`` instead of ``round(x / (max / 127))`` (they
    differ on about one code in 10^6), so the codes equal those of
    transformers' int8 model; CPU only. Float activations are unchanged.
    """

    _fusable = True  # its forward is per output row: bitnet_ext.fused may concatenate layers of this class

    def __call__(self, x: mx.array) -> mx.array:
        if self.activation_bits != 8:
            return super().__call__(x)
        bias = self["bias"] if "bias" in self else None
        return _ext.bitlinear(x, self.weight, self.scale, bias, rounding="transformers")


_ROUNDING_CLASS = {"divide": BitLinear, "transformers": TransformersRoundingBitLinear}


def _check_fuse(where: str, fuse: object) -> None:
    if fuse is not None and not isinstance(fuse, bool):
        raise TypeError(f"{where}: fuse must be None (the default), True or False, got {type(fuse).__name__} {fuse!r}")


def _check_rounding(where: str, activation_rounding: object) -> None:
    if activation_rounding not in _ROUNDING_CLASS:
        raise ValueError(
            f"{where}: activation_rounding must be 'divide' (round(x / (max / 127)), bitnet_ext's default) or "
            f"'transformers' (round(x * (127 / max)), as transformers' BitNet), got {activation_rounding!r}"
        )


def _convert_layer(m: nn.Module, activation_bits: Optional[int] = None) -> BitLinear:
    linear_class = "bitlinear" if m.invert_weight_scales else "autobitlinear"
    bias = getattr(m, "bias", None)
    layer = BitLinear(m.in_features, m.out_features, bias is not None, activation_bits=activation_bits)
    layer.weight, layer.scale = from_hf_bitnet(
        m.weight, m.weight_scale, linear_class=linear_class, out_features=m.out_features
    )
    if bias is not None:
        layer.bias = bias
    return layer


def patch_model(
    model: nn.Module,
    *,
    activation_bits: Optional[int] = None,
    activation_rounding: str = "divide",
    head_bits: Optional[int] = None,
    fuse: Optional[bool] = None,
) -> nn.Module:
    """Replace every mlx-lm ``BitLinear`` of ``model`` by bitnet_ext's, in place.

    The packed weights are converted once (bit-exact, see
    :func:`bitnet_ext.convert.from_hf_bitnet`); the old uint8 weights are
    dropped. Plain float ``nn.Linear`` / ``nn.Embedding`` modules (the output
    head) become :class:`DenseLinear` / :class:`DenseEmbedding`, which run on
    :func:`bitnet_ext.dense_matmul`. ``activation_bits`` is that of every
    ternary layer: ``None`` (float activations, as mlx-lm) or ``8`` (BitNet
    b1.58 int8 activations, :func:`bitnet_ext.bitlinear`). Returns ``model``.
    ``activation_rounding="transformers"`` makes the int8 activation codes
    round as transformers' BitNet does (see
    :class:`TransformersRoundingBitLinear`; CPU only). Layers that are already
    bitnet_ext's are kept (with these two options set), so patching twice is
    harmless. mlx-lm's ``bitnet`` model attention then runs on
    :func:`bitnet_ext.dense_matmul` too when the CPU is MLX's default device
    (see :func:`bitnet_ext._cpu_attention.install_for_mlx_lm_bitnet`).
    ``head_bits=8`` makes the output head (an untied ``lm_head``, else the
    tied embedding's ``as_linear``) an :class:`Int8HeadLinear` /
    :class:`Int8HeadEmbedding`, quantized here, once (CPU only; its logits
    differ from the float head's by the int8 rounding). An int8 head stays
    int8 when patched again.
    ``fuse=True`` then gives q/k/v and gate/up one layer each
    (:func:`bitnet_ext.fused.fuse_projections`: one kernel per group, int8
    outputs bit-identical, the parameter keys become ``qkv_proj`` /
    ``gate_up_proj``). Opt-in (``None`` and ``False`` leave the layers apart; an already
    fused model stays fused): on the H200 it sped up decode with int8 activations but
    not with float ones (docs/cuda_backend.md).
    """
    _check_module("patch_model", "model", model)
    _check_fuse("patch_model", fuse)
    _check_activation_bits("patch_model", activation_bits)
    _check_rounding("patch_model", activation_rounding)
    _check_head_bits("patch_model", head_bits)
    _, bitlinear_layers = _mlx_lm()
    install_for_mlx_lm_bitnet()
    MlxLmBitLinear = bitlinear_layers.BitLinear

    def _swap(path: str, m: nn.Module) -> nn.Module:
        if isinstance(m, MlxLmBitLinear):
            try:
                m = _convert_layer(m, activation_bits)
            except ValueError as e:
                raise ValueError(f"patch_model: cannot convert {path}: {e}") from None
        if isinstance(m, BitLinear):
            m.activation_bits = activation_bits
            if type(m) in _ROUNDING_CLASS.values():  # not a user's own subclass
                # Same parameters, the forward of the chosen rounding.
                m.__class__ = _ROUNDING_CLASS[activation_rounding]
            return m
        if head_bits == 8:
            head = _int8_head(m, path, tied)
            if head is not None:
                return head
        return _dense_head(m) or _one_op_norm(m) or m

    # An untied lm_head is the head; otherwise the embedding's as_linear is.
    tied = not any(path.split(".")[-1] == "lm_head" for path, _ in model.named_modules())
    leaves = tree_map_with_path(_swap, model.leaf_modules(), is_leaf=nn.Module.is_module)
    model.update_modules(leaves)
    _swap_ropes(model)
    _one_op_activations(model)
    if fuse:
        fuse_projections(model)
    return model


def _quantization_config(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    qc = config.get("quantization_config")
    if qc is None:
        text = config.get("text_config")
        qc = text.get("quantization_config") if isinstance(text, dict) else None
    if not isinstance(qc, dict):
        return None
    names = qc.get("modules_to_not_convert")
    # mlx-lm tests `path not in names`: a string would match its substrings.
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise TypeError(
            f"bitnet_ext.mlx_lm: quantization_config.modules_to_not_convert must be a list of module names, "
            f"got {type(names).__name__} {_short(names)}"
        )
    return qc


def _check_packed_weights(model: nn.Module, where: Union[str, Path]) -> None:
    """Refuse packed weights (read from files) that hold code 3, which bitnet_ext.pack never writes."""
    for path, m in model.named_modules():
        if isinstance(m, BitLinear):
            _check_packed_weight(m.weight, f"{where}: {path}.weight")


def _check_args(path_or_hf_repo: object, **dicts: object) -> None:
    if not isinstance(path_or_hf_repo, (str, os.PathLike)):
        raise TypeError(
            f"path_or_hf_repo must be a path or a Hugging Face repo id (str), got {type(path_or_hf_repo).__name__}"
        )
    for name, value in dicts.items():
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict or None, got {type(value).__name__}")


def _converted_model_classes(
    config: Dict[str, Any], activation_bits: Optional[int] = None
) -> Tuple[Callable[[Any], nn.Module], Any]:
    """get_model_classes for mlx-lm's load_model: the model with empty bitnet_ext layers."""
    utils, bitlinear_layers = _mlx_lm()
    model_class, args_class = utils._get_classes(config)
    qc = _quantization_config(config) or {}  # present: load_model checked quant_method
    source_qc = dict(qc.get("source_quantization_config") or {"quant_method": "bitnet"})

    def build(args: Any) -> nn.Module:
        model = model_class(args)
        # Where mlx-lm would put its BitLinear (for any architecture), put ours.
        model = bitlinear_layers.bitnet_quantize(model, source_qc)

        def _empty(path: str, m: nn.Module) -> nn.Module:
            if isinstance(m, bitlinear_layers.BitLinear):
                bias = getattr(m, "bias", None) is not None
                return BitLinear(m.in_features, m.out_features, bias, activation_bits=activation_bits)
            return m

        model.update_modules(tree_map_with_path(_empty, model.leaf_modules(), is_leaf=nn.Module.is_module))
        return model

    return build, args_class


def _resolve(path_or_hf_repo: Union[str, Path], revision: Optional[str] = None) -> Path:
    p = Path(path_or_hf_repo)
    if p.exists():
        return p
    utils, _ = _mlx_lm()
    return Path(utils._download(str(path_or_hf_repo), revision=revision))


def _float_linear_prefixes(model_path: Path) -> list:
    """Modules of the checkpoint with a 2-D float ``weight`` and no ``weight_scale`` (e.g. an untied lm_head).

    Reads only the safetensors headers, checked as ``convert`` checks them
    (a malformed header raises ValueError naming the file).
    """
    tensors = {}
    for f in sorted(model_path.glob("model*.safetensors")):
        tensors.update(_read_header(f.resolve(), f.name)[0])
    return sorted(
        name[: -len(".weight")]
        for name, t in tensors.items()
        if name.endswith(".weight")
        and t.dtype in ("F32", "F16", "BF16")
        and len(t.shape) == 2
        and name + "_scale" not in tensors
    )


def _keep_float_modules(
    model_path: Path, config: Dict[str, Any], model_config: Optional[Dict[str, Any]]
) -> Optional[Dict[str, Any]]:
    """model_config for mlx-lm that keeps the checkpoint's float linears (e.g. an untied lm_head) float.

    mlx-lm's ``bitnet_quantize`` turns every ``nn.Linear`` not in
    ``modules_to_not_convert`` into a BitLinear, which then misses its
    ``weight_scale``; listing the float ones there keeps them ``nn.Linear``.
    """
    keep = _float_linear_prefixes(model_path)
    qc = dict(_quantization_config(config) or {})
    listed = list(qc.get("modules_to_not_convert") or [])
    missing = [p for p in keep if p not in listed]
    if not missing:
        return model_config
    qc["modules_to_not_convert"] = listed + missing
    return {**(model_config or {}), "quantization_config": qc}


def load_model(
    path_or_hf_repo: Union[str, Path],
    *,
    lazy: bool = False,
    model_config: Optional[Dict[str, Any]] = None,
    revision: Optional[str] = None,
    activation_bits: Optional[int] = None,
    activation_rounding: str = "divide",
    head_bits: Optional[int] = None,
    fuse: Optional[bool] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load a BitNet model with bitnet_ext layers; returns ``(model, config)``.

    Accepts both the Hugging Face / mlx-lm layout (``quant_method: "bitnet"``;
    mlx-lm loads it, then :func:`patch_model` converts the layers) and the
    output of ``python -m bitnet_ext convert`` (``quant_method: "bitnet_ext"``;
    loaded directly, nothing to convert). Float linears of the checkpoint
    (an untied ``lm_head.weight`` without ``weight_scale``) stay float and,
    like a tied head, run on :func:`bitnet_ext.dense_matmul`. The packed
    weights read from files are checked: code 3 (never written by
    :func:`bitnet_ext.pack`) raises ValueError naming the tensor; with
    ``lazy=True`` the check of a converted directory is skipped, as nothing is
    read yet. ``activation_bits``, ``activation_rounding``, ``head_bits``, ``fuse``: see :func:`patch_model`.
    """
    _check_args(path_or_hf_repo, model_config=model_config)
    _check_activation_bits("load_model", activation_bits)
    _check_rounding("load_model", activation_rounding)
    _check_head_bits("load_model", head_bits)
    _check_fuse("load_model", fuse)
    utils, _ = _mlx_lm()
    model_path = _resolve(path_or_hf_repo, revision)
    config = utils.load_config(model_path)
    if model_config:
        config.update(model_config)
    qc = _quantization_config(config) or {}
    method = qc.get("quant_method")
    if method == QUANT_METHOD:
        model, config = utils.load_model(
            model_path,
            lazy=True,
            model_config=model_config,
            get_model_classes=functools.partial(_converted_model_classes, activation_bits=activation_bits),
        )
    elif method == "bitnet":
        if config.get("model_type") == "bitnet" and qc.get("linear_class", "bitlinear") != "autobitlinear":
            warnings.warn(
                f"{model_path}: quantization_config.linear_class is {qc.get('linear_class', 'bitlinear')!r}, for "
                "which transformers divides by weight_scale, but mlx-lm's 'bitnet' model multiplies by it (its "
                "layers have invert_weight_scales=False). bitnet_ext.mlx_lm keeps mlx-lm's behaviour; "
                "`python -m bitnet_ext convert` follows transformers.",
                stacklevel=2,
            )
        model_config = _keep_float_modules(model_path, config, model_config)
        model, config = utils.load_model(model_path, lazy=True, model_config=model_config)
    else:
        raise ValueError(
            f"bitnet_ext.mlx_lm.load: {model_path} is not a BitNet model (quantization_config.quant_method is "
            f"{method!r}; expected 'bitnet' or '{QUANT_METHOD}'). Use mlx_lm.load for other models."
        )
    # Fused only after the packed weights were checked (the check names the checkpoint's layers).
    patch_model(model, activation_bits=activation_bits, activation_rounding=activation_rounding, head_bits=head_bits,
                fuse=False)
    if not lazy:
        mx.eval(model.parameters())
        if method == QUANT_METHOD:  # (the "bitnet" layout was checked while patch_model converted it)
            _check_packed_weights(model, model_path)
    if fuse:
        fuse_projections(model)
        if not lazy:
            mx.eval(model.parameters())
    return model, config


def load(
    path_or_hf_repo: Union[str, Path],
    tokenizer_config: Optional[Dict[str, Any]] = None,
    model_config: Optional[Dict[str, Any]] = None,
    *,
    lazy: bool = False,
    return_config: bool = False,
    revision: Optional[str] = None,
    activation_bits: Optional[int] = None,
    activation_rounding: str = "divide",
    head_bits: Optional[int] = None,
    fuse: Optional[bool] = None,
) -> Union[Tuple[nn.Module, Any], Tuple[nn.Module, Any, Dict[str, Any]]]:
    """Like ``mlx_lm.load`` for BitNet models: ``(model, tokenizer[, config])`` with bitnet_ext layers.

    The model then works with ``mlx_lm.generate``, ``mlx_lm.stream_generate``,
    prompt caches and batching, on any device MLX supports. ``activation_bits=8``
    runs every ternary layer with BitNet b1.58 int8 activations, and
    ``activation_rounding="transformers"`` rounds them as transformers does, and ``head_bits=8``
    runs the output head on per-row int8 weights, and ``fuse`` gives q/k/v and gate/up one
    layer each (see :func:`patch_model`).
    """
    _check_args(path_or_hf_repo, tokenizer_config=tokenizer_config, model_config=model_config)
    utils, _ = _mlx_lm()
    model_path = _resolve(path_or_hf_repo, revision)
    model, config = load_model(
        model_path,
        lazy=lazy,
        model_config=model_config,
        activation_bits=activation_bits,
        activation_rounding=activation_rounding,
        head_bits=head_bits,
        fuse=fuse,
    )
    tokenizer = utils.load_tokenizer(model_path, tokenizer_config, eos_token_ids=config.get("eos_token_id", None))
    return (model, tokenizer, config) if return_config else (model, tokenizer)
