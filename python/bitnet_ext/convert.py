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
import os
import re
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

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


class ConversionError(ValueError):
    """A checkpoint that cannot be converted; the message says why."""


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
    N = 4 * P if out_features is None else int(out_features)
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


def _to_numpy(a: Union[np.ndarray, mx.array]) -> np.ndarray:
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


def _read_header(path: Path) -> Tuple[Dict[str, _Tensor], dict]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ConversionError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8 or n > 100 << 20:
            raise ConversionError(f"{path}: not a safetensors file (header length {n} for a {size}-byte file)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"{path}: not a safetensors file (header is not JSON: {e})") from None
    base = 8 + n
    meta = header.pop("__metadata__", None) or {}
    tensors = {}
    for name, e in header.items():
        try:
            b, en = (int(v) for v in e["data_offsets"])
            t = _Tensor(name, str(e["dtype"]), tuple(int(s) for s in e["shape"]), base + b, base + en, path)
        except (KeyError, TypeError, ValueError):
            raise ConversionError(f"{path}: malformed safetensors entry for {name!r}: {e!r}") from None
        itemsize = _DTYPE_SIZE.get(t.dtype)
        if t.end > size or t.begin > t.end or (itemsize and t.nbytes != itemsize * math.prod(t.shape)):
            raise ConversionError(f"{path}: safetensors entry {name!r} ({t.dtype} {t.shape}) has bad offsets {b}..{en}")
        tensors[name] = t
    return tensors, meta


class _Source:
    """Read-only memory maps of SRC's safetensors files."""

    def __init__(self):
        self._maps: Dict[Path, Tuple[object, mmap.mmap]] = {}

    def map(self, path: Path) -> mmap.mmap:
        if path not in self._maps:
            f = open(path, "rb")
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


def _expected_dims(config: dict) -> Optional[Dict[str, Tuple[int, int]]]:
    """(out, in) of each projection of a Llama-style BitNet block, from config.json."""
    try:
        d = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        kv = int(config.get("num_key_value_heads") or heads)
        hd = int(config.get("head_dim") or d // heads)
        ff = int(config["intermediate_size"])
    except (KeyError, TypeError, ValueError):
        return None
    return {
        "self_attn.q_proj": (heads * hd, d),
        "self_attn.k_proj": (kv * hd, d),
        "self_attn.v_proj": (kv * hd, d),
        "self_attn.o_proj": (d, heads * hd),
        "mlp.gate_proj": (ff, d),
        "mlp.up_proj": (ff, d),
        "mlp.down_proj": (d, ff),
    }


def _plan(src: Path) -> _Plan:
    if not src.exists():
        raise ConversionError(f"SRC {src} does not exist")
    if not src.is_dir():
        raise ConversionError(f"SRC {src} is not a directory (expected a model directory with config.json)")
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"SRC {src} has no config.json")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise ConversionError(f"{cfg_path}: not valid JSON: {e}") from None
    qc = config.get("quantization_config") or config.get("text_config", {}).get("quantization_config")
    if not isinstance(qc, dict):
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
    plan = _Plan(config=config, linear_class=linear_class)
    if "linear_class" not in qc:
        plan.notes.append(
            "quantization_config has no linear_class: weight_scale taken as a divisor (bitlinear), as mlx-lm does"
        )

    # Shards: the index if there is one, else every *.safetensors.
    index_path = src / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            plan.index = json.loads(index_path.read_text())
            names = sorted(set(plan.index["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise ConversionError(f"{index_path}: malformed index ({e})") from None
        missing = [n for n in names if not (src / n).is_file()]
        if missing:
            raise ConversionError(f"{index_path} names shard(s) that are missing from {src}: {', '.join(missing)}")
    else:
        names = sorted(p.name for p in src.glob("*.safetensors"))
    if not names:
        others = sorted(p.name for p in src.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".gguf", ".npz"))
        hint = f" (found {', '.join(others)}: only safetensors is supported)" if others else ""
        raise ConversionError(f"SRC {src} has no *.safetensors weight files{hint}")

    everything: Dict[str, _Tensor] = {}
    for n in names:
        tensors, meta = _read_header(src / n)
        for k in tensors:
            if k in everything:
                raise ConversionError(f"tensor {k!r} is in both {everything[k].file.name} and {n}")
        everything.update(tensors)
        plan.shards[n] = tensors
        plan.metadata[n] = meta
    if plan.index is not None:
        for k, shard in plan.index["weight_map"].items():
            if k not in plan.shards.get(shard, {}):
                raise ConversionError(f"{index_path} maps {k!r} to {shard}, which does not contain it")

    # The BitNet linears: every X.weight with an X.weight_scale.
    expected = _expected_dims(config) if config.get("model_type") == "bitnet" else None
    not_convert = set(qc.get("modules_to_not_convert") or [])
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
        m = _PROJ.search(prefix)
        if expected is not None and m:
            layer = int(m.group(1))
            if layer >= int(config.get("num_hidden_layers", layer + 1)):
                raise ConversionError(
                    f"{prefix}: layer {layer} but config.json says num_hidden_layers = {config['num_hidden_layers']}"
                )
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
    if expected is not None:
        n_layers = int(config.get("num_hidden_layers", 0))
        found = {_PROJ.search(lin.prefix).groups() for lin in plan.linears.values() if _PROJ.search(lin.prefix)}
        missing = [f"layers.{i}.{p}" for i in range(n_layers) for p in expected if (str(i), p) not in found]
        if missing:
            raise ConversionError(
                f"config.json says num_hidden_layers = {n_layers} but {len(missing)} BitNet linear(s) are missing, "
                f"e.g. {', '.join(missing[:3])}"
            )
    return plan


def _out_entries(plan: _Plan, shard: str) -> List[Tuple[str, str, Tuple[int, ...], int, object]]:
    """(name, dtype, shape, nbytes, source) of the tensors of one output shard."""
    out = []
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
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"


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
            if kind == "copy":
                _copy_tensor(src, obj, f, progress)
            elif kind == "scale":
                f.write(np.array([obj.scale], "<f4").tobytes())
                progress.update(4)
            else:
                _convert_tensor(src, obj, f, start, progress)
            f.seek(start + nbytes)
    return {name: shard for name, *_ in entries}


def _copy_tensor(src: _Source, t: _Tensor, f, progress: _Progress) -> None:
    mm = src.map(t.file)
    with memoryview(mm) as view:
        for a in range(t.begin, t.end, _CHUNK_BYTES):
            b = min(a + _CHUNK_BYTES, t.end)
            f.write(view[a:b])
            src.release(t.file, a, b)
            progress.update(b - a)


def _convert_tensor(src: _Source, lin: _Linear, f, start: int, progress: _Progress) -> None:
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
    target = config if "quantization_config" in config else config["text_config"]
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
    ``dst``. Raises :class:`ConversionError` with the reason on bad input.

    Returns a summary dict (layers converted, bytes, notes).
    """
    src, dst = Path(src).absolute(), Path(dst).absolute()
    src_r, dst_r = src.resolve(), dst.resolve()
    if src_r == dst_r or src_r in dst_r.parents:
        raise ConversionError(f"DST {dst} must not be SRC or inside it (SRC is never modified)")
    if dst_r in src_r.parents:
        raise ConversionError(f"DST {dst} contains SRC {src}; refusing to write there")
    plan = _plan(src)
    if dst.exists() or dst.is_symlink():
        if not force:
            raise ConversionError(f"DST {dst} already exists (pass --force to replace it)")
        if not dst.is_dir() or dst.is_symlink():
            raise ConversionError(f"DST {dst} exists and is not a directory; refusing to replace it even with --force")
    if not dst.parent.is_dir():
        raise ConversionError(f"the parent directory of DST, {dst.parent}, does not exist")

    source = _Source()
    for lin in plan.linears.values():
        lin.scale = _scale_from_hf(_scalar_value(source, lin.weight_scale), plan.linear_class, lin.weight_scale.name)
    total = sum(e[3] for shard in plan.shards for e in _out_entries(plan, shard))
    bar = _Progress(total, progress)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        weight_map = {}
        for shard in plan.shards:
            weight_map.update(_write_shard(source, plan, shard, tmp / shard, bar))
        (tmp / "config.json").write_text(json.dumps(_new_config(plan), indent=2) + "\n")
        if plan.index is not None:
            index = dict(plan.index)
            index["metadata"] = dict(index.get("metadata") or {})
            index["metadata"]["total_size"] = sum(e[3] for shard in plan.shards for e in _out_entries(plan, shard))
            index["weight_map"] = dict(sorted(weight_map.items()))
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        handled = set(plan.shards) | {"config.json", "model.safetensors.index.json"}
        for p in sorted(src.iterdir()):
            if p.name in handled or p.name.startswith("."):
                continue
            if p.is_dir():
                shutil.copytree(p, tmp / p.name, symlinks=False)
            elif p.suffix == ".safetensors":
                continue  # not in the index: not part of the model
            else:
                shutil.copy2(p, tmp / p.name)
        bar.close()
        source.close()
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException:
        bar.close()
        source.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "src": str(src),
        "dst": str(dst),
        "linear_class": plan.linear_class,
        "converted_layers": len(plan.linears),
        "bytes_written": total,
        "shards": list(plan.shards),
        "notes": plan.notes,
    }


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
        print(f"bitnet_ext convert: error: {e}", file=sys.stderr)
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
