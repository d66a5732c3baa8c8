"""Convert BitNet checkpoints in the Hugging Face / mlx-lm layout to ours.

The Hugging Face layout (``transformers.integrations.bitnet``, used by
``microsoft/bitnet-b1.58-2B-4T`` and mlx-lm) stores a ternary ``(out, in)``
weight as uint8 of shape ``(ceil(out/4), in)``: bits ``2i..2i+1`` of packed
row ``r`` hold original row ``i * ceil(out/4) + r``, as the value ``w + 1``.
Each layer has one ``weight_scale``, a *divisor* for
``quantization_config.linear_class == "bitlinear"`` (the default) and a
*multiplier* for ``"autobitlinear"``.

Ours (:func:`bitnet_ext.pack`): uint32 ``(out, in/16)``, 16 codes ``w + 1``
per word along ``in``, least-significant bits first, and a float32 scale that
always multiplies.

* :func:`from_hf_bitnet` converts one tensor (bit-exact).
* :func:`convert_checkpoint` / ``python -m bitnet_ext convert SRC DST``
  converts a whole model directory, streaming tensor by tensor (and in row
  chunks) through memory-mapped safetensors files, so its memory use stays far
  below the size of the largest tensor. SRC is only ever read.

The converted directory loads with :func:`bitnet_ext.mlx_lm.load` (its
``quantization_config.quant_method`` is ``"bitnet_ext"``).
"""

from __future__ import annotations

import argparse
import json
import math
import mmap
import operator
import os
import re
import shutil
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._checkpoint_files import ConversionError, SourceDir, check_plain_name, open_regular, parse_json, resolve
from ._staging import Staging, remove_stale

if TYPE_CHECKING:  # mlx is imported where it is used, for the annotations only here
    import mlx.core as mx

__all__ = [
    "ConversionError",
    "from_hf_bitnet",
    "convert_checkpoint",
    "add_subparser",
    "main",
]

LINEAR_CLASSES = ("bitlinear", "autobitlinear")
QUANT_METHOD = "bitnet_ext"
FORMAT = "ternary-uint32-k16"  # bitnet_ext.pack layout, see the module doc

# Bytes per element of the safetensors dtypes.
_DTYPE_SIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip

_CHUNK_BYTES = 8 << 20  # bytes of SRC touched at a time
_PAGE = mmap.PAGESIZE


# ---------------------------------------------------------------------------
# one tensor


def _hf_plane_codes(packed: np.ndarray, i: int) -> np.ndarray:
    """Codes (w + 1, uint8 in 0..3) of original rows i*P + r, r over packed's rows."""
    return (packed >> np.uint8(2 * i)) & np.uint8(3)


def _codes_to_words(codes: np.ndarray) -> np.ndarray:
    """uint8 codes (R, K) in 0..2 -> our uint32 words (R, K/16), little-endian.

    Byte j of a word holds codes 4j..4j+3 (two bits each, LSB first), so the
    words are the bytes c0 | c1<<2 | c2<<4 | c3<<6 read as little-endian uint32.
    """
    R, K = codes.shape
    c = codes.reshape(R, K // 4, 4)
    b = c[..., 0] | (c[..., 1] << np.uint8(2)) | (c[..., 2] << np.uint8(4)) | (c[..., 3] << np.uint8(6))
    return np.ascontiguousarray(b).view("<u4")


def _check_codes(codes: np.ndarray, what: str) -> None:
    bad = int(np.count_nonzero(codes == 3))
    if bad:
        raise ConversionError(
            f"{what}: {bad} two-bit fields hold the value 3, which is not a ternary weight (valid: 0, 1, 2 "
            "for w = -1, 0, +1); this is not a BitNet-packed weight"
        )


def _scale_from_hf(ws: float, linear_class: str, what: str) -> np.float32:
    ws32 = np.float32(ws)
    if not np.isfinite(ws32) or ws32 == 0:
        raise ConversionError(f"{what}: weight_scale is {float(ws32)!r}; it must be finite and non-zero")
    # As mlx-lm's kernel does: the float32 reciprocal of the float32 scale.
    return np.float32(1) / ws32 if linear_class == "bitlinear" else ws32


def _check_linear_class(linear_class: str) -> None:
    if linear_class not in LINEAR_CLASSES:
        raise ConversionError(
            f"unknown BitNet linear_class {linear_class!r}: expected one of {LINEAR_CLASSES} "
            "('bitlinear': weight_scale divides, 'autobitlinear': weight_scale multiplies)"
        )


def from_hf_bitnet(
    weight: Union[np.ndarray, mx.array],
    weight_scale: Union[float, np.ndarray, mx.array],
    *,
    linear_class: str = "bitlinear",
    out_features: Optional[int] = None,
) -> Tuple[mx.array, mx.array]:
    """Convert one Hugging Face BitNet weight to ``(wq, scale)`` in our layout.

    Args:
        weight: uint8 ``(ceil(out/4), in)`` (MLX or NumPy array).
        weight_scale: the layer's single ``weight_scale`` (array of one value,
            any float dtype, or a Python float).
        linear_class: ``"bitlinear"`` (weight_scale divides the output) or
            ``"autobitlinear"`` (it multiplies).
        out_features: the layer's output features; default ``4 * weight.shape[0]``.

    Returns:
        ``(wq, scale)``: uint32 ``(out, in/16)`` and float32 ``(1,)``, with
        ``bitnet_ext.dequantize(wq, scale) == W_eff`` of the source layer.
        The ternary codes are bit-exact; ``scale`` is ``float32(1) /
        float32(weight_scale)`` for "bitlinear" (as mlx-lm computes it) and
        ``float32(weight_scale)`` for "autobitlinear".
    """
    import mlx.core as mx

    _check_linear_class(linear_class)
    w = _to_numpy(weight)
    if w.dtype != np.uint8 or w.ndim != 2:
        raise ConversionError(
            f"from_hf_bitnet: weight must be a 2-D uint8 array (ceil(out/4), in), got {w.dtype} of shape {w.shape}"
        )
    P, K = w.shape
    N = 4 * P if out_features is None else _integer("from_hf_bitnet", "out_features", out_features)
    _check_packed_shape("from_hf_bitnet", (P, K), N, K)
    ws = _to_numpy(weight_scale).astype(np.float32).reshape(-1)
    if ws.size != 1:
        raise ConversionError(f"from_hf_bitnet: weight_scale must hold one value, got shape {ws.shape}")
    words = np.empty((N, K // 16), dtype="<u4")
    for i in range(4):
        r1 = min(P, N - i * P)
        if r1 <= 0:
            break
        codes = _hf_plane_codes(w[:r1], i)
        _check_codes(codes, "from_hf_bitnet")
        words[i * P : i * P + r1] = _codes_to_words(codes)
    scale = _scale_from_hf(ws[0], linear_class, "from_hf_bitnet")
    return mx.array(words.astype(np.uint32)), mx.array(np.array([scale], dtype=np.float32))


def _short(value: object) -> str:
    """repr(value), cut to a length that fits in a one-line error message."""
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def _integer(where: str, arg: str, value: Any) -> int:
    """value as an int: Python or NumPy integers only (int(2.7) would silently give 2)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{where}: {arg} must be an integer, got {type(value).__name__} {_short(value)}") from None


def _to_numpy(a: Union[float, np.ndarray, mx.array]) -> np.ndarray:
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, (int, float)):
        return np.array(a)
    import mlx.core as mx

    if isinstance(a, mx.array):
        if a.dtype == mx.bfloat16:
            a = a.astype(mx.float32)
        return np.array(a)
    return np.asarray(a)


def _check_packed_shape(what: str, shape: Tuple[int, int], out_features: int, in_features: int) -> None:
    P, K = shape
    if P != (out_features + 3) // 4 or K != in_features:
        raise ConversionError(
            f"{what}: packed weight of shape {tuple(shape)} does not match a ({out_features}, {in_features}) layer, "
            f"which packs to ({(out_features + 3) // 4}, {in_features})"
        )
    if K % 16:
        raise ConversionError(
            f"{what}: in_features = {K} is not a multiple of 16, which bitnet_ext's packed layout needs"
        )


# ---------------------------------------------------------------------------
# safetensors, read through mmap and written sequentially


@dataclass
class _Tensor:
    name: str
    dtype: str
    shape: Tuple[int, ...]
    begin: int  # absolute file offsets
    end: int
    file: Path

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _offsets_or_shape(v: object, n: Optional[int]) -> Tuple[int, ...]:
    """v as a tuple of non-negative ints (of length n if given); ValueError otherwise."""
    if not isinstance(v, list) or (n is not None and len(v) != n):
        raise ValueError
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
        raise ValueError
    return tuple(v)


def _read_header(path: Path, what: str) -> Tuple[Dict[str, _Tensor], dict]:
    """The tensors and ``__metadata__`` of the safetensors file ``path`` (resolved), checked against its size."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        raw = f.read(8)
        if len(raw) < 8:
            raise ConversionError(f"{what}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8 or n > 100 << 20:
            raise ConversionError(f"{what}: not a safetensors file (header length {n} for a {size}-byte file)")
        header = parse_json(f.read(n), f"{what}: not a safetensors file: its header", dict)
    base = 8 + n
    meta = header.pop("__metadata__", None)
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise ConversionError(f"{what}: safetensors __metadata__ must be a JSON object, got {type(meta).__name__}")
    tensors = {}
    for name, e in header.items():
        try:
            if not isinstance(e, dict) or not isinstance(e.get("dtype"), str):
                raise ValueError
            b, en = _offsets_or_shape(e.get("data_offsets"), 2)
            t = _Tensor(name, e["dtype"], _offsets_or_shape(e.get("shape"), None), base + b, base + en, path)
        except ValueError:
            raise ConversionError(f"{what}: malformed safetensors entry for {_short(name)}: {_short(e)}") from None
        itemsize = _DTYPE_SIZE.get(t.dtype)
        if t.end > size or t.begin > t.end or (itemsize and t.nbytes != itemsize * math.prod(t.shape)):
            raise ConversionError(f"{what}: safetensors entry {name!r} ({t.dtype} {t.shape}) has bad offsets {b}..{en}")
        tensors[name] = t
    return tensors, meta


class _Source:
    """Read-only memory maps of SRC's safetensors files."""

    def __init__(self) -> None:
        self._maps: Dict[Path, Tuple[BinaryIO, mmap.mmap]] = {}

    def map(self, path: Path) -> mmap.mmap:
        if path not in self._maps:
            f = open_regular(path, "SRC file")
            self._maps[path] = (f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        return self._maps[path][1]

    def release(self, path: Path, begin: int, end: int) -> None:
        """Drop the pages of [begin, end) from this process (they stay in the page cache)."""
        mm = self.map(path)
        a = begin - begin % _PAGE
        if hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED") and end > a:
            mm.madvise(mmap.MADV_DONTNEED, a, end - a)

    def close(self) -> None:
        for f, mm in self._maps.values():
            try:
                mm.close()
            except BufferError:  # a view is still alive (an error unwinding): let GC close it
                pass
            f.close()
        self._maps.clear()


def _scalar_value(src: _Source, t: _Tensor) -> float:
    if math.prod(t.shape) != 1:
        raise ConversionError(f"{t.name}: expected one weight_scale per tensor (shape () or (1,)), got shape {t.shape}")
    raw = bytes(src.map(t.file)[t.begin : t.end])
    if t.dtype == "BF16":
        return float((np.frombuffer(raw, "<u2").astype("<u4") << 16).view("<f4")[0])
    np_dtype = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}.get(t.dtype)
    if np_dtype is None:
        raise ConversionError(f"{t.name}: weight_scale has dtype {t.dtype}; expected BF16, F16, F32 or F64")
    return float(np.frombuffer(raw, np_dtype)[0])


# ---------------------------------------------------------------------------
# the model directory


@dataclass
class _Linear:
    prefix: str  # module path, e.g. model.layers.0.mlp.up_proj
    weight: _Tensor
    weight_scale: _Tensor
    out_features: int
    in_features: int
    scale: np.float32 = np.float32(1)


@dataclass
class _Plan:
    config: dict
    linear_class: str
    linears: Dict[str, _Linear] = field(default_factory=dict)  # by weight tensor name
    shards: Dict[str, Dict[str, _Tensor]] = field(default_factory=dict)  # file name -> its tensors
    metadata: Dict[str, dict] = field(default_factory=dict)
    index: Optional[dict] = None
    notes: List[str] = field(default_factory=list)


_PROJ = re.compile(r"(?:^|\.)layers\.(\d+)\.(self_attn\.(?:q|k|v|o)_proj|mlp\.(?:gate|up|down)_proj)$")


def _config_int(config: dict, key: str) -> Optional[int]:
    """config[key] as a positive int; None when absent or null; ConversionError when anything else."""
    v = config.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ConversionError(f"config.json: {key} must be a positive integer, got {_short(v)}")
    return v


def _expected_dims(config: dict) -> Optional[Dict[str, Tuple[int, int]]]:
    """(out, in) of each projection of a Llama-style BitNet block, from config.json (None if it does not say)."""
    d, heads, ff = (_config_int(config, k) for k in ("hidden_size", "num_attention_heads", "intermediate_size"))
    kv, hd = _config_int(config, "num_key_value_heads"), _config_int(config, "head_dim")
    if d is None or heads is None or ff is None:
        return None
    kv, hd = kv or heads, hd or d // heads
    return {
        "self_attn.q_proj": (heads * hd, d),
        "self_attn.k_proj": (kv * hd, d),
        "self_attn.v_proj": (kv * hd, d),
        "self_attn.o_proj": (d, heads * hd),
        "mlp.gate_proj": (ff, d),
        "mlp.up_proj": (ff, d),
        "mlp.down_proj": (d, ff),
    }


def _quantization_config(config: dict) -> Optional[dict]:
    """quantization_config, top-level or (multimodal models) under text_config."""
    qc = config.get("quantization_config")
    if qc is None:
        text = config.get("text_config")
        if text is not None and not isinstance(text, dict):
            raise ConversionError(f"config.json: text_config must be a JSON object, got {type(text).__name__}")
        qc = (text or {}).get("quantization_config")
    return qc if isinstance(qc, dict) else None


def _modules_to_not_convert(qc: dict) -> List[str]:
    names = qc.get("modules_to_not_convert")
    if names is None:
        return []
    # A string would be iterated character by character: refuse it rather than guess.
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConversionError(
            "config.json: quantization_config.modules_to_not_convert must be a list of module names, "
            f"got {_short(names)}"
        )
    return names


def _read_index(files: SourceDir) -> Tuple[Optional[dict], List[str]]:
    """(index, shard names) from model.safetensors.index.json; (None, []) without one."""
    what = "model.safetensors.index.json"
    index = files.read_json(what, what)
    if index is None:
        return None, []
    weight_map, meta = index.get("weight_map"), index.get("metadata")
    if not isinstance(weight_map, dict):
        raise ConversionError(f"{what}: malformed index (weight_map must be a JSON object of tensor -> file name)")
    if meta is not None and not isinstance(meta, dict):
        raise ConversionError(f"{what}: malformed index (metadata must be a JSON object)")
    for k, shard in weight_map.items():
        check_plain_name(shard, f"{what}: the file of tensor {k!r}")
        if not shard.endswith(".safetensors"):
            raise ConversionError(f"{what}: tensor {k!r} is mapped to {shard!r}, which is not a .safetensors file")
    return index, sorted(set(weight_map.values()))


def _plan(files: SourceDir) -> _Plan:
    src = files.path
    cfg_path = src / "config.json"
    config = files.read_json("config.json", "config.json")
    if config is None:
        raise ConversionError(f"SRC {src} has no config.json")
    qc = _quantization_config(config)
    if qc is None:
        raise ConversionError(
            f"{cfg_path} has no quantization_config: this is not a packed BitNet checkpoint (for float models "
            "use bitnet_ext.nn.quantize, which quantizes weights with absmean)"
        )
    method = qc.get("quant_method")
    if method == QUANT_METHOD:
        raise ConversionError(f"{src} is already in bitnet_ext's layout (quant_method {QUANT_METHOD!r})")
    if method != "bitnet":
        raise ConversionError(
            f"unknown layout: {cfg_path} has quantization_config.quant_method = {method!r}; only 'bitnet' "
            "(the Hugging Face / mlx-lm BitNet b1.58 layout) can be converted"
        )
    linear_class = qc.get("linear_class") or "bitlinear"
    _check_linear_class(linear_class)
    not_convert = set(_modules_to_not_convert(qc))
    plan = _Plan(config=config, linear_class=linear_class)
    if "linear_class" not in qc:
        plan.notes.append(
            "quantization_config has no linear_class: weight_scale taken as a divisor (bitlinear), as mlx-lm does"
        )

    # Shards: the index if there is one, else every *.safetensors.
    index_path = src / "model.safetensors.index.json"
    plan.index, names = _read_index(files)
    if plan.index is None:
        names = [n for n in files.listing() if n.endswith(".safetensors")]
    paths = {n: files.file(n, "weight file") for n in names}
    missing = [n for n, p in paths.items() if p is None]
    if missing:
        raise ConversionError(f"{index_path} names shard(s) that are missing from {src}: {', '.join(missing)}")
    if not names:
        others = [n for n in files.listing() if os.path.splitext(n)[1] in (".bin", ".pt", ".pth", ".gguf", ".npz")]
        hint = f" (found {', '.join(others)}: only safetensors is supported)" if others else ""
        raise ConversionError(f"SRC {src} has no *.safetensors weight files{hint}")

    everything: Dict[str, _Tensor] = {}
    shard_of: Dict[str, str] = {}
    for n in names:
        path = paths[n]
        assert path is not None  # missing shards raised above
        tensors, meta = _read_header(path, str(src / n))
        for k in tensors:
            if k in everything:
                raise ConversionError(f"tensor {k!r} is in both {shard_of[k]} and {n}")
            shard_of[k] = n
        everything.update(tensors)
        plan.shards[n] = tensors
        plan.metadata[n] = meta
    if plan.index is not None:
        for k, shard in plan.index["weight_map"].items():
            if k not in plan.shards.get(shard, {}):
                raise ConversionError(f"{index_path} maps {k!r} to {shard}, which does not contain it")

    # The BitNet linears: every X.weight with an X.weight_scale.
    expected = _expected_dims(config) if config.get("model_type") == "bitnet" else None
    n_layers = _config_int(config, "num_hidden_layers") if expected is not None else None
    for name, ws in everything.items():
        if not name.endswith(".weight_scale"):
            continue
        prefix = name[: -len(".weight_scale")]
        w = everything.get(prefix + ".weight")
        if w is None:
            raise ConversionError(f"{name} has no matching {prefix}.weight")
        if prefix in not_convert:
            raise ConversionError(f"{prefix} is in modules_to_not_convert but has a weight_scale: unknown layout")
        if w.dtype != "U8" or len(w.shape) != 2:
            raise ConversionError(
                f"unknown layout: {prefix}.weight is {w.dtype} {list(w.shape)}, expected packed U8 (ceil(out/4), in); "
                "float BitNet weights (online quantization / master weights) are not a packed checkpoint"
            )
        P, K = w.shape
        if P == 0 or K == 0:
            raise ConversionError(f"{prefix}.weight has shape {[P, K]}: a BitNet linear needs a row and a column")
        m = _PROJ.search(prefix)
        if expected is not None and m:
            layer = int(m.group(1))
            if n_layers is not None and layer >= n_layers:
                raise ConversionError(f"{prefix}: layer {layer} but config.json says num_hidden_layers = {n_layers}")
            out_f, in_f = expected[m.group(2)]
            if (P, K) != ((out_f + 3) // 4, in_f):
                raise ConversionError(
                    f"{prefix}.weight has shape {[P, K]} but config.json describes a ({out_f}, {in_f}) layer, "
                    f"packed as {[(out_f + 3) // 4, in_f]}: the weights do not match the config"
                )
        else:
            out_f, in_f = 4 * P, K
            plan.notes.append(f"{prefix}: not a layer config.json describes; assumed out_features = 4 * {P}")
        if K % 16:
            raise ConversionError(
                f"{prefix}: in_features = {K} is not a multiple of 16, which bitnet_ext's packed layout needs"
            )
        lin = _Linear(prefix, w, ws, out_f, in_f)
        plan.linears[w.name] = lin

    if not plan.linears:
        raise ConversionError(f"no BitNet linear (a U8 X.weight with an X.weight_scale) found in {src}")
    if expected is not None and n_layers:
        _check_all_layers_present(plan, expected, n_layers)
    return plan


def _check_all_layers_present(plan: _Plan, expected: Dict[str, Tuple[int, int]], n_layers: int) -> None:
    # Every found (layer, projection) is < n_layers (checked above), so the
    # missing ones are counted, not listed: n_layers comes from the checkpoint.
    found = {(int(m.group(1)), m.group(2)) for m in (_PROJ.search(lin.prefix) for lin in plan.linears.values()) if m}
    n_missing = n_layers * len(expected) - len(found)
    if n_missing:
        examples = []
        for i in range(n_layers):
            examples += [f"layers.{i}.{p}" for p in expected if (i, p) not in found]
            if len(examples) >= 3:
                break
        raise ConversionError(
            f"config.json says num_hidden_layers = {n_layers} but {n_missing} BitNet linear(s) are missing, "
            f"e.g. {', '.join(examples[:3])}"
        )


# (kind, what): ("copy", _Tensor), ("scale", _Linear) or ("weight", _Linear).
_EntrySource = Tuple[str, Union[_Tensor, _Linear]]


def _out_entries(plan: _Plan, shard: str) -> List[Tuple[str, str, Tuple[int, ...], int, _EntrySource]]:
    """(name, dtype, shape, nbytes, source) of the tensors of one output shard."""
    out: List[Tuple[str, str, Tuple[int, ...], int, _EntrySource]] = []
    for name, t in plan.shards[shard].items():
        if name.endswith(".weight_scale") and name[: -len("_scale")] in plan.linears:
            lin = plan.linears[name[: -len("_scale")]]
            out.append((lin.prefix + ".scale", "F32", (1,), 4, ("scale", lin)))
        elif name in plan.linears:
            lin = plan.linears[name]
            N, K = lin.out_features, lin.in_features
            out.append((name, "U32", (N, K // 16), N * K // 4, ("weight", lin)))
        else:
            out.append((name, t.dtype, t.shape, t.nbytes, ("copy", t)))
    # Largest element size first keeps every tensor aligned to its element size.
    out.sort(key=lambda e: (-_DTYPE_SIZE.get(e[1], 1), e[0]))
    return out


def _size(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GiB"


class _Progress:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.enabled = enabled
        self.total = max(total, 1)
        self.done = 0
        self._last = -1
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(
                    total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="convert", file=sys.stderr
                )
            except ImportError:
                pass

    def update(self, n: int) -> None:
        if not self.enabled:
            return
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        pct = int(100 * self.done / self.total)
        if pct // 5 != self._last // 5:
            self._last = pct
            print(f"convert: {pct:3d}% ({_size(self.done)} of {_size(self.total)})", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _write_shard(src: _Source, plan: _Plan, shard: str, path: Path, progress: _Progress) -> Dict[str, str]:
    entries = _out_entries(plan, shard)
    header: dict = {}
    meta = dict(plan.metadata.get(shard) or {})
    meta.setdefault("format", "mlx")
    meta["bitnet_ext"] = FORMAT
    header["__metadata__"] = {str(k): str(v) for k, v in meta.items()}
    offset = 0
    for name, dtype, shape, nbytes, _ in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-(8 + len(hbytes)) % 8)
    data_start = 8 + len(hbytes)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for name, _dtype, _shape, nbytes, (kind, obj) in entries:
            start = data_start + header[name]["data_offsets"][0]
            assert f.tell() == start
            if isinstance(obj, _Tensor):  # kind "copy"
                _copy_tensor(src, obj, f, progress)
            elif kind == "scale":
                f.write(np.array([obj.scale], "<f4").tobytes())
                progress.update(4)
            else:  # kind "weight"
                _convert_tensor(src, obj, f, start, progress)
            f.seek(start + nbytes)
    return {name: shard for name, *_ in entries}


def _copy_tensor(src: _Source, t: _Tensor, f: BinaryIO, progress: _Progress) -> None:
    mm = src.map(t.file)
    with memoryview(mm) as view:
        for a in range(t.begin, t.end, _CHUNK_BYTES):
            b = min(a + _CHUNK_BYTES, t.end)
            f.write(view[a:b])
            src.release(t.file, a, b)
            progress.update(b - a)


def _convert_tensor(src: _Source, lin: _Linear, f: BinaryIO, start: int, progress: _Progress) -> None:
    t = lin.weight
    P, K = t.shape
    N = lin.out_features
    rows = max(1, _CHUNK_BYTES // (8 * K))  # intermediates are a few times the chunk
    mm = src.map(t.file)
    row_bytes = K // 4  # one output row of uint32 words
    for r0 in range(0, P, rows):
        r1 = min(P, r0 + rows)
        a, b = t.begin + r0 * K, t.begin + r1 * K
        packed = np.frombuffer(mm, np.uint8, count=b - a, offset=a).reshape(r1 - r0, K)
        for i in range(4):
            n0 = i * P + r0
            n1 = min(i * P + r1, N)
            if n1 <= n0:
                break
            codes = _hf_plane_codes(packed[: n1 - n0], i)
            _check_codes(codes, f"{lin.prefix}.weight (packed rows {r0}..{r1})")
            f.seek(start + n0 * row_bytes)
            f.write(_codes_to_words(codes).tobytes())
            progress.update((n1 - n0) * row_bytes)
        del packed
        src.release(t.file, a, b)


def _new_config(plan: _Plan) -> dict:
    config = json.loads(json.dumps(plan.config))
    target = config if isinstance(config.get("quantization_config"), dict) else config["text_config"]
    source = target["quantization_config"]
    target["quantization_config"] = {
        "quant_method": QUANT_METHOD,
        "format": FORMAT,
        "linear_class": plan.linear_class,
        "activation_bits": None,  # mlx-lm's BitNet semantics: float activations
        "per_channel": False,
        "modules_to_not_convert": source.get("modules_to_not_convert"),
        "source_quantization_config": source,
    }
    return config


def convert_checkpoint(
    src: Union[str, os.PathLike], dst: Union[str, os.PathLike], *, force: bool = False, progress: bool = True
) -> dict:
    """Convert the model directory ``src`` (HF BitNet layout) into ``dst`` (ours).

    Every BitNet linear (a U8 ``X.weight`` with an ``X.weight_scale``) becomes
    ``X.weight`` uint32 ``(out, in/16)`` and ``X.scale`` float32 ``(1,)``; every
    other tensor is copied byte for byte, every other file is copied, and
    config.json gets ``quantization_config.quant_method = "bitnet_ext"``.
    The shard structure (and index) is kept. ``dst`` is written in a temporary
    directory next to it and renamed at the end, so an error leaves no partial
    ``dst``; temporary directories of killed runs for ``dst`` are removed.

    ``src`` is untrusted: only plain file names of regular files inside it are
    read (see :mod:`bitnet_ext._checkpoint_files`), and nothing in it is
    written. Raises :class:`ConversionError` with a one-line reason on bad
    input, including any OS error while reading or writing.

    Returns a summary dict (layers converted, bytes, notes).
    """
    for arg, value in (("src", src), ("dst", dst)):
        if not isinstance(value, (str, os.PathLike)):
            raise TypeError(f"convert_checkpoint: {arg} must be a path (str or PathLike), got {type(value).__name__}")
    src, dst = Path(os.path.abspath(src)), Path(os.path.abspath(dst))  # also normalises "x/.."
    try:
        return _convert_checkpoint(src, dst, force, progress)
    except OSError as e:  # a full disk, an unreadable file, ...: a reason, not a traceback
        where = f"{e.filename}: " if e.filename else ""
        raise ConversionError(f"{where}{e.strerror or e}") from None


def _convert_checkpoint(src: Path, dst: Path, force: bool, progress: bool) -> dict:
    files = SourceDir(src)
    src_r, dst_r = files.root, resolve(dst, "DST")
    if src_r == dst_r or src_r in dst_r.parents:
        raise ConversionError(f"DST {dst} must not be SRC or inside it (SRC is never modified)")
    if dst_r in src_r.parents:
        raise ConversionError(f"DST {dst} contains SRC {src}; refusing to write there")
    plan = _plan(files)
    if dst.exists() or dst.is_symlink():
        if not force:
            raise ConversionError(f"DST {dst} already exists (pass --force to replace it)")
        if not dst.is_dir() or dst.is_symlink():
            raise ConversionError(f"DST {dst} exists and is not a directory; refusing to replace it even with --force")
    if not dst.parent.is_dir():
        raise ConversionError(f"the parent directory of DST, {dst.parent}, does not exist")

    source = _Source()
    try:
        for lin in plan.linears.values():
            ws = _scalar_value(source, lin.weight_scale)
            lin.scale = _scale_from_hf(ws, plan.linear_class, lin.weight_scale.name)
        total = sum(e[3] for shard in plan.shards for e in _out_entries(plan, shard))
        remove_stale(dst)
        staging = Staging(dst)
        assert staging.path is not None  # set until commit() or discard()
        bar = _Progress(total, progress)
        try:
            _write_output(files, source, plan, staging.path, total, bar)
            bar.close()
            source.close()  # before the rename: no map of SRC outlives the conversion
            staging.commit()
        except BaseException:
            bar.close()
            staging.discard()
            raise
    finally:
        source.close()
    return {
        "src": str(src),
        "dst": str(dst),
        "linear_class": plan.linear_class,
        "converted_layers": len(plan.linears),
        "bytes_written": total,
        "shards": list(plan.shards),
        "notes": plan.notes,
    }


def _write_output(files: SourceDir, source: _Source, plan: _Plan, tmp: Path, total: int, bar: _Progress) -> None:
    """Write the converted model into ``tmp``, the staging directory: every write stays inside it."""
    weight_map = {}
    for shard in plan.shards:  # plain file names, checked by _plan
        weight_map.update(_write_shard(source, plan, shard, tmp / shard, bar))
    (tmp / "config.json").write_text(json.dumps(_new_config(plan), indent=2) + "\n")
    if plan.index is not None:
        index = dict(plan.index)
        index["metadata"] = dict(index.get("metadata") or {})
        index["metadata"]["total_size"] = total
        index["weight_map"] = dict(sorted(weight_map.items()))
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    handled = set(plan.shards) | {"config.json", "model.safetensors.index.json"}
    # Top-level *.safetensors not in the index are not part of the model.
    _copy_other_files(files, Path("."), tmp, skip=lambda n: n in handled or n.endswith(".safetensors"))


def _copy_other_files(
    files: SourceDir,
    rel: Path,
    out: Path,
    skip: Callable[[str], bool] = lambda name: False,
    _seen: Optional[Tuple[Path, ...]] = None,
) -> None:
    """Copy the non-hidden files and directories of SRC/rel to out, under SourceDir's rules.

    A symlink is followed (its target must lie in SRC) and copied as what it
    points to; a directory symlink that leads back into a directory being
    copied is a loop and refused, as is a FIFO, socket or device.
    """
    for name in files.listing(rel):
        if name.startswith(".") or skip(name):
            continue
        real, kind = files.entry(rel / name, "SRC entry")
        if kind == "dir":
            seen = _seen or (files.root,)  # the real paths of SRC/rel and the directories above it
            if real in seen:
                raise ConversionError(f"SRC entry {files.root / rel / name} is a symlink loop (it leads to {real})")
            (out / name).mkdir()
            _copy_other_files(files, rel / name, out / name, _seen=(*seen, real))
        elif kind == "file":
            with open_regular(real, "SRC file") as fin, open(out / name, "wb") as fout:
                shutil.copyfileobj(fin, fout, _CHUNK_BYTES)
            shutil.copystat(real, out / name)


# ---------------------------------------------------------------------------
# command line


_DESCRIPTION = (
    "Convert a BitNet b1.58 model directory (config.json + *.safetensors in the Hugging Face / mlx-lm "
    "packed layout) to bitnet_ext's packed uint32 layout. SRC is only read. The result loads with "
    "bitnet_ext.mlx_lm.load(DST)."
)


def add_subparser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``convert`` subcommand to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "convert",
        help="convert a Hugging Face / mlx-lm BitNet checkpoint directory to bitnet_ext's layout",
        description=_DESCRIPTION,
    )
    _add_arguments(p)
    p.set_defaults(func=run)
    return p


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="model directory to read")
    p.add_argument("dst", metavar="DST", help="model directory to write (must not exist unless --force)")
    p.add_argument("--force", action="store_true", help="replace DST if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand for parsed ``args``; returns the exit status."""
    try:
        summary = convert_checkpoint(args.src, args.dst, force=args.force, progress=not args.quiet)
    except ConversionError as e:
        # One line, whatever file or tensor names the checkpoint holds.
        reason = str(e).replace("\r", "\\r").replace("\n", "\\n")
        print(f"bitnet_ext convert: error: {reason}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for note in summary["notes"]:
            print(f"note: {note}", file=sys.stderr)
        print(
            f"converted {summary['converted_layers']} BitNet linear layers ({summary['linear_class']}) "
            f"from {summary['src']} to {summary['dst']}"
        )
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m bitnet_ext.convert SRC DST [--force] [--quiet] [--json]``."""
    p = argparse.ArgumentParser(prog="python -m bitnet_ext convert", description=_DESCRIPTION)
    _add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
