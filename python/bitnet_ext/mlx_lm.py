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

Requires the optional package ``mlx-lm`` (``pip install '.[mlx-lm]'`` from a checkout).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_map_with_path

from .convert import QUANT_METHOD, _short, from_hf_bitnet
from .nn import BitLinear, _check_module, _check_packed_weight

__all__ = ["patch_model", "load", "load_model"]


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


def _convert_layer(m: nn.Module) -> BitLinear:
    linear_class = "bitlinear" if m.invert_weight_scales else "autobitlinear"
    bias = getattr(m, "bias", None)
    layer = BitLinear(m.in_features, m.out_features, bias is not None, activation_bits=None)
    layer.weight, layer.scale = from_hf_bitnet(
        m.weight, m.weight_scale, linear_class=linear_class, out_features=m.out_features
    )
    if bias is not None:
        layer.bias = bias
    return layer


def patch_model(model: nn.Module) -> nn.Module:
    """Replace every mlx-lm ``BitLinear`` of ``model`` by bitnet_ext's, in place.

    The packed weights are converted once (bit-exact, see
    :func:`bitnet_ext.convert.from_hf_bitnet`); the old uint8 weights are
    dropped. Returns ``model``. Layers that are already bitnet_ext's are left
    alone, so patching twice is harmless.
    """
    _check_module("patch_model", "model", model)
    _, bitlinear_layers = _mlx_lm()
    MlxLmBitLinear = bitlinear_layers.BitLinear

    def _swap(path, m):
        if isinstance(m, MlxLmBitLinear):
            try:
                return _convert_layer(m)
            except ValueError as e:
                raise ValueError(f"patch_model: cannot convert {path}: {e}") from None
        return m

    leaves = tree_map_with_path(_swap, model.leaf_modules(), is_leaf=nn.Module.is_module)
    model.update_modules(leaves)
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


def _check_packed_weights(model: nn.Module, where) -> None:
    """Refuse packed weights (read from files) that hold code 3, which bitnet_ext.pack never writes."""
    for path, m in model.named_modules():
        if isinstance(m, BitLinear):
            _check_packed_weight(m.weight, f"{where}: {path}.weight")


def _check_args(path_or_hf_repo, **dicts) -> None:
    if not isinstance(path_or_hf_repo, (str, os.PathLike)):
        raise TypeError(
            f"path_or_hf_repo must be a path or a Hugging Face repo id (str), got {type(path_or_hf_repo).__name__}"
        )
    for name, value in dicts.items():
        if value is not None and not isinstance(value, dict):
            raise TypeError(f"{name} must be a dict or None, got {type(value).__name__}")


def _converted_model_classes(config: Dict[str, Any]) -> Tuple[Callable[[Any], nn.Module], Any]:
    """get_model_classes for mlx-lm's load_model: the model with empty bitnet_ext layers."""
    utils, bitlinear_layers = _mlx_lm()
    model_class, args_class = utils._get_classes(config)
    source_qc = dict(_quantization_config(config).get("source_quantization_config") or {"quant_method": "bitnet"})

    def build(args):
        model = model_class(args)
        # Where mlx-lm would put its BitLinear (for any architecture), put ours.
        model = bitlinear_layers.bitnet_quantize(model, source_qc)

        def _empty(path, m):
            if isinstance(m, bitlinear_layers.BitLinear):
                bias = getattr(m, "bias", None) is not None
                return BitLinear(m.in_features, m.out_features, bias, activation_bits=None)
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


def load_model(
    path_or_hf_repo: Union[str, Path],
    *,
    lazy: bool = False,
    model_config: Optional[Dict[str, Any]] = None,
    revision: Optional[str] = None,
) -> Tuple[nn.Module, Dict[str, Any]]:
    """Load a BitNet model with bitnet_ext layers; returns ``(model, config)``.

    Accepts both the Hugging Face / mlx-lm layout (``quant_method: "bitnet"``;
    mlx-lm loads it, then :func:`patch_model` converts the layers) and the
    output of ``python -m bitnet_ext convert`` (``quant_method: "bitnet_ext"``;
    loaded directly, nothing to convert). The packed weights read from files
    are checked: code 3 (never written by :func:`bitnet_ext.pack`) raises
    ValueError naming the tensor; with ``lazy=True`` the check of a converted
    directory is skipped, as nothing is read yet.
    """
    _check_args(path_or_hf_repo, model_config=model_config)
    utils, _ = _mlx_lm()
    model_path = _resolve(path_or_hf_repo, revision)
    config = utils.load_config(model_path)
    if model_config:
        config.update(model_config)
    qc = _quantization_config(config)
    method = qc.get("quant_method") if qc else None
    if method == QUANT_METHOD:
        model, config = utils.load_model(
            model_path, lazy=True, model_config=model_config, get_model_classes=_converted_model_classes
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
        model, config = utils.load_model(model_path, lazy=True, model_config=model_config)
        patch_model(model)
    else:
        raise ValueError(
            f"bitnet_ext.mlx_lm.load: {model_path} is not a BitNet model (quantization_config.quant_method is "
            f"{method!r}; expected 'bitnet' or '{QUANT_METHOD}'). Use mlx_lm.load for other models."
        )
    if not lazy:
        mx.eval(model.parameters())
        if method == QUANT_METHOD:  # (the "bitnet" layout was checked while patch_model converted it)
            _check_packed_weights(model, model_path)
    return model, config


def load(
    path_or_hf_repo: Union[str, Path],
    tokenizer_config: Optional[Dict[str, Any]] = None,
    model_config: Optional[Dict[str, Any]] = None,
    *,
    lazy: bool = False,
    return_config: bool = False,
    revision: Optional[str] = None,
) -> Union[Tuple[nn.Module, Any], Tuple[nn.Module, Any, Dict[str, Any]]]:
    """Like ``mlx_lm.load`` for BitNet models: ``(model, tokenizer[, config])`` with bitnet_ext layers.

    The model then works with ``mlx_lm.generate``, ``mlx_lm.stream_generate``,
    prompt caches and batching, on any device MLX supports.
    """
    _check_args(path_or_hf_repo, tokenizer_config=tokenizer_config, model_config=model_config)
    utils, _ = _mlx_lm()
    model_path = _resolve(path_or_hf_repo, revision)
    model, config = load_model(model_path, lazy=lazy, model_config=model_config)
    tokenizer = utils.load_tokenizer(model_path, tokenizer_config, eos_token_ids=config.get("eos_token_id", None))
    return (model, tokenizer, config) if return_config else (model, tokenizer)
