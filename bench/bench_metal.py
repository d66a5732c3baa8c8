#!/usr/bin/env python
"""GPU benchmark of bitnet_ext's Metal kernels on Apple Silicon, against the
strongest MLX baselines, on BitNet b1.58 2B-4T shapes.

    python bench/bench_metal.py                    # full run: markdown to stdout, JSON to bench/results/
    python bench/bench_metal.py --quick            # one shape, M in {1, 128}
    python bench/bench_metal.py --json out.json --M 1,4 --shapes q,up

Compares, all on the GPU (stream=mx.gpu), activations float16 (--dtype):
  ternary_matmul  bx.ternary_matmul(x, wq, s)                       ours, 2-bit packed weights
  bitlinear       bx.bitlinear(x, wq, s)                            ours, W1.58A8 (int8 activations)
  qmm_g64         mx.quantized_matmul(x, wq, S, -S, group_size=64, bits=2)    same ternary weights
  qmm_g128        mx.quantized_matmul(x, wq, S, -S, group_size=128, bits=2)   as MLX affine 2-bit
  f16_matmul      x @ W.T with W dense float16
  mlx_lm          mlx-lm's BitLinear Metal kernel (mlx_lm.models.bitlinear_layers), if installed
and the transposed product of the backward pass, y = g @ W (g: M x N, y: M x K):
  ternary_matmul_n  bx.ternary_matmul(g, wq, s, transpose=False)  ours
  qmm_n_g64         mx.quantized_matmul(g, wq, S, -S, transpose=False, group_size=64, bits=2)
  f16_matmul_n      g @ W with W dense float16
for M in {1, 4, 16, 32, 128, 512, 2048} x the 2B-4T projections (N, K): q/o (2560, 2560),
k/v (640, 2560), gate/up (6912, 2560), down (2560, 6912).

GEMM tiles: past M = 16 our three products run a tiled simdgroup_matrix GEMM
whose tile (BM x BN) the launch plan picks from the grid size, a rule measured
on an NVIDIA GPU through the shader harness (docs/metal_backend.md). So that a
Mac run can retune it, every tile the plan can pick is also timed on its own
(BITNET_EXT_GEMM_TILE=BMxBN forces it; --no-gemm-tiles skips this), reported as
method "<ours>@BMxBN" and in the "GEMM tiles" tables.

MLX's affine 2-bit layout is our packing (code w + 1 at bits 2*(k % 16) of word
k // 16), so quantized_matmul reads our `wq` itself, with every group's scale
s and bias -s (S: float16 (N, K / group_size)).

Timing: each measurement evaluates R back-to-back calls in one mx.eval (each
call on its own copy of the weights, the copies together >= --cold-mb, so the
weights come from DRAM and not from the GPU's system-level cache), repeated
--reps times; the median of (wall time / R) is reported. Calls are independent
so the GPU may overlap them: the result is sustained throughput, the right
measure of achieved bandwidth. `--latency` instead times single calls, each
with its own mx.eval (adds MLX's dispatch and synchronization cost).

Reported per case: ms per call, GB/s of the minimal DRAM traffic of one call
(weights in that method's format + x + y), that as a % of the chip's memory
bandwidth (Apple's published figure, table CHIPS below, or --bandwidth), and
GOP/s (2*M*N*K / time). Outputs are checked once per case (outside timing)
against a float32 reference; `bitlinear` against bitnet_ext.reference (exact).

On a machine without a Metal GPU (Linux, or MLX without Metal) it prints why
and exits with status 0 (1 with --require-metal).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _gpu_timing import copies as _copies  # noqa: E402
from _gpu_timing import rel_err as _rel_err  # noqa: E402
from _gpu_timing import time_batched, time_latency  # noqa: E402

# ---------------------------------------------------------------------------
# Memory bandwidth of Apple Silicon chips, GB/s, as Apple published it (press
# releases on Apple Newsroom and the products' tech specs pages). Where one
# chip name comes in bins with different memory buses, the bin is told apart
# by its CPU core count (sysctl hw.physicalcpu).


@dataclass(frozen=True)
class ChipBandwidth:
    gbps: float
    source: str
    cpu_cores: int | None = None  # None: every bin of this chip
    note: str = ""


CHIPS: dict[str, list[ChipBandwidth]] = {
    "M1": [ChipBandwidth(68.25, "Apple M1 (Nov 2020): LPDDR4X-4266 on a 128-bit bus; Apple's M2 "
                                 "announcement (Jun 2022) states M2's 100GB/s is 50 percent more than M1")],
    "M1 Pro": [ChipBandwidth(200, "Apple Newsroom, 'Introducing M1 Pro and M1 Max' (Oct 2021): up to 200GB/s")],
    "M1 Max": [ChipBandwidth(400, "Apple Newsroom, 'Introducing M1 Pro and M1 Max' (Oct 2021): up to 400GB/s")],
    "M1 Ultra": [ChipBandwidth(800, "Apple Newsroom, 'Apple unveils M1 Ultra' (Mar 2022): 800GB/s")],
    "M2": [ChipBandwidth(100, "Apple Newsroom, 'Apple unveils M2' (Jun 2022): 100GB/s")],
    "M2 Pro": [ChipBandwidth(200, "Apple Newsroom, M2 Pro and M2 Max announcement (Jan 2023): 200GB/s")],
    "M2 Max": [ChipBandwidth(400, "Apple Newsroom, M2 Pro and M2 Max announcement (Jan 2023): 400GB/s")],
    "M2 Ultra": [ChipBandwidth(800, "Apple Newsroom, 'Apple introduces M2 Ultra' (Jun 2023): 800GB/s")],
    "M3": [ChipBandwidth(100, "Apple MacBook Pro / MacBook Air (M3) tech specs (2023-2024): 100GB/s")],
    "M3 Pro": [ChipBandwidth(150, "Apple MacBook Pro (Nov 2023) tech specs: M3 Pro 150GB/s")],
    "M3 Max": [
        ChipBandwidth(300, "Apple MacBook Pro (Nov 2023) tech specs: M3 Max 14-core CPU / 30-core GPU, 300GB/s",
                      cpu_cores=14),
        ChipBandwidth(400, "Apple MacBook Pro (Nov 2023) tech specs: M3 Max 16-core CPU / 40-core GPU, 400GB/s",
                      cpu_cores=16),
    ],
    "M3 Ultra": [ChipBandwidth(819, "Apple Newsroom, Mac Studio with M3 Ultra (Mar 2025): 819GB/s")],
    "M4": [ChipBandwidth(120, "Apple Newsroom, 'Apple introduces M4 chip' (May 2024): 120GB/s")],
    "M4 Pro": [ChipBandwidth(273, "Apple Newsroom, M4 Pro and M4 Max announcement (Oct 2024): 273GB/s")],
    "M4 Max": [
        ChipBandwidth(410, "Apple MacBook Pro (Oct 2024) tech specs: M4 Max 14-core CPU / 32-core GPU, 410GB/s",
                      cpu_cores=14),
        ChipBandwidth(546, "Apple Newsroom, M4 Pro and M4 Max announcement (Oct 2024): M4 Max 16-core CPU / "
                           "40-core GPU, 546GB/s", cpu_cores=16),
    ],
    "M5": [ChipBandwidth(153, "Apple Newsroom, 'Apple unleashes M5' (Oct 2025): 153GB/s")],
}


def normalize_chip(name: str) -> str | None:
    """'Apple M3 Max' / 'M3 Max (40-core GPU)' -> 'M3 Max'; None when not an M-series name."""
    import re

    m = re.search(r"\bM(\d+)(?:\s+(Pro|Max|Ultra))?\b", name or "")
    if not m:
        return None
    return f"M{m.group(1)}" + (f" {m.group(2)}" if m.group(2) else "")


def lookup_bandwidth(chip_name: str, cpu_cores: int | None = None) -> tuple[float | None, str]:
    """(GB/s, source) of a chip from CHIPS, or (None, why not)."""
    chip = normalize_chip(chip_name)
    if chip is None or chip not in CHIPS:
        return None, f"chip {chip_name!r} is not in the bandwidth table (pass --bandwidth GBPS)"
    variants = CHIPS[chip]
    if len(variants) == 1:
        return variants[0].gbps, variants[0].source
    for v in variants:
        if v.cpu_cores is not None and v.cpu_cores == cpu_cores:
            return v.gbps, v.source
    best = max(variants, key=lambda v: v.gbps)
    return best.gbps, (f"{best.source} (bin not identified from {cpu_cores} CPU cores: "
                       f"the highest figure of {chip} is used)")


# ---------------------------------------------------------------------------
# The machine


def metal_status() -> tuple[bool, str]:
    """(True, description) when MLX has a usable Metal GPU, else (False, why not)."""
    try:
        import mlx.core as mx
    except Exception as e:  # pragma: no cover
        return False, f"mlx cannot be imported ({e})"
    if platform.system() != "Darwin":
        return False, f"no Metal device: this is {platform.system()} {platform.machine()}; Metal GPUs are Apple's"
    try:
        if not mx.metal.is_available():
            return False, "no Metal device: this MLX build has no Metal backend"
        if not mx.is_available(mx.gpu):
            return False, "no Metal device: MLX found no Metal device (headless or virtualized macOS?)"
    except Exception as e:
        return False, f"no Metal device: {e}"
    return True, "Metal GPU available"


def _sysctl(name: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=10).stdout.strip() or None
    except Exception:
        return None


def describe_machine() -> dict:
    import mlx.core as mx

    info: dict = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "macos": platform.mac_ver()[0] or None,
        "python": sys.version.split()[0],
        "mlx_version": mx.__version__,
        "cpu_brand": _sysctl("machdep.cpu.brand_string"),
        "cpu_cores": int(_sysctl("hw.physicalcpu") or 0) or None,
        "mem_bytes": int(_sysctl("hw.memsize") or 0) or None,
    }
    try:
        gpu = dict(mx.device_info(mx.gpu)) if hasattr(mx, "device_info") else dict(mx.metal.device_info())
    except Exception as e:
        gpu = {"error": repr(e)}
    info["gpu"] = {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in gpu.items()}
    arch = str(gpu.get("architecture", ""))
    name = str(gpu.get("device_name", ""))
    info["real_apple_gpu"] = arch.startswith("applegpu_g") and "paravirtual" not in name.lower()
    info["chip"] = normalize_chip(name) or normalize_chip(info["cpu_brand"] or "")
    try:
        import bitnet_ext as bx

        info["bitnet_ext"] = {"version": getattr(bx, "__version__", None), "file": bx.__file__,
                              "metal_jit": os.environ.get("BITNET_EXT_METAL_JIT")}
    except Exception as e:
        info["bitnet_ext"] = {"error": f"{type(e).__name__}: {e}"}
    try:
        import mlx_lm

        info["mlx_lm_version"] = getattr(mlx_lm, "__version__", "unknown")
    except Exception:
        info["mlx_lm_version"] = None
    return info


# ---------------------------------------------------------------------------
# Shapes, methods, weights

# BitNet b1.58 2B-4T: hidden 2560, intermediate 6912, 20 query heads and 5
# key/value heads of 128. (N, K) = (out_features, in_features).
SHAPES = {
    "q": ("q_proj / o_proj", 2560, 2560),
    "kv": ("k_proj / v_proj", 640, 2560),
    "up": ("gate_proj / up_proj", 6912, 2560),
    "down": ("down_proj", 2560, 6912),
}
ALL_MS = [1, 4, 16, 32, 128, 512, 2048]
ALL_METHODS = ["ternary_matmul", "bitlinear", "qmm_g64", "qmm_g128", "f16_matmul", "mlx_lm",
               "ternary_matmul_n", "qmm_n_g64", "f16_matmul_n"]
OURS = ("ternary_matmul", "bitlinear", "ternary_matmul_n")
# The transposed product y = g @ W (the VJP of ternary_matmul); the others are y = x @ W.T.
TRANSPOSED = ("ternary_matmul_n", "qmm_n_g64", "f16_matmul_n")
LABEL = {
    "ternary_matmul": "ours ternary_matmul",
    "bitlinear": "ours bitlinear",
    "qmm_g64": "mx qmm 2b g64",
    "qmm_g128": "mx qmm 2b g128",
    "f16_matmul": "f16 matmul",
    "mlx_lm": "mlx-lm BitLinear",
    "ternary_matmul_n": "ours ternary_matmul (g @ W)",
    "qmm_n_g64": "mx qmm 2b g64 (g @ W)",
    "f16_matmul_n": "f16 matmul (g @ W)",
}
# Every GEMM tile the launch plan can pick (csrc/gpu/launch_plan.cpp: kGemmTilesFloat for the
# ternary_matmul GEMMs, kGemmTilesInt8 for bitlinear's; tests/test_bench_metal.py checks the
# lists against the kernels the plans name). Past GEMV_MAX_M rows the GEMM runs.
GEMM_TILES = {
    "ternary_matmul": ("64x64", "32x64", "32x32"),
    "ternary_matmul_n": ("64x64", "32x64", "32x32"),
    "bitlinear": ("32x64", "32x32"),
}
GEMV_MAX_M = 16
SCALE = 0.0125


def weight_bytes(method: str, N: int, K: int, itemsize: int = 2) -> int:
    """Bytes of the weight representation one call reads."""
    packed = N * K // 4
    method = method.split("@")[0]
    if method in OURS:
        return packed + 4  # + float32 per-tensor scale
    if method.startswith(("qmm_g", "qmm_n_g")):
        g = int(method.split("_g")[-1])
        return packed + 2 * itemsize * N * (K // g)  # + scales and biases in x's dtype
    if method == "mlx_lm":
        return packed + itemsize  # uint8, 4 codes per byte, + one scale
    return itemsize * N * K  # dense


def pack_mlx_lm(codes):
    """int8 codes (N, K), N % 4 == 0 -> mlx-lm's BitLinear weight uint8 (N/4, K):
    byte [r, k] holds code + 1 of output rows r, r + N/4, r + N/2, r + 3N/4 at
    bits 0-1, 2-3, 4-5, 6-7 (the layout its kernel decodes)."""
    import numpy as np

    c = np.asarray(codes).astype(np.int16) + 1
    N, K = c.shape
    if N % 4:
        raise ValueError(f"mlx-lm's BitLinear needs out_features % 4 == 0, got {N}")
    q = c.reshape(4, N // 4, K).astype(np.uint8)
    return (q[0] | (q[1] << 2) | (q[2] << 4) | (q[3] << 6)).astype(np.uint8)


def unpack_mlx_lm(w):
    """Inverse of pack_mlx_lm (the decoding of mlx-lm's kernel, in NumPy)."""
    import numpy as np

    w = np.asarray(w).astype(np.int16)
    parts = [((w >> (2 * i)) & 3) - 1 for i in range(4)]
    return np.concatenate(parts, axis=0).astype(np.int8)


def _mlx_lm_caller(N, K, dtype):
    """fn(x, packed_uint8) -> y with mlx-lm's BitLinear kernel, or None if unavailable."""
    import mlx.core as mx

    try:
        from mlx_lm.models.bitlinear_layers import BitLinear
    except Exception:
        return None
    layer = BitLinear(K, N, bias=False)
    layer.weight_scale = mx.array([SCALE], dtype=dtype)
    if hasattr(layer, "dtype"):
        layer.dtype = dtype
    run = getattr(layer, "execute_matmul_kernel", None) or getattr(layer, "bitlinear_kernel", None)
    if run is not None:
        return lambda x, w: run(x, w)

    def via_call(x, w):
        layer.weight = w
        return layer(x)

    return via_call


# ---------------------------------------------------------------------------
# Timing


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# One case


def run_shape(shape_key, N, K, Ms, methods, dtype, args, results, checks):
    import mlx.core as mx
    import numpy as np

    import bitnet_ext as bx
    from bitnet_ext import reference as ref

    gpu = mx.gpu
    rng = np.random.default_rng(N * 7 + K)
    codes_np = rng.integers(-1, 2, size=(N, K), dtype=np.int8)
    codes = mx.array(codes_np)
    wq = ref.pack(codes)
    mx.eval(wq)
    s32 = mx.array(SCALE, dtype=mx.float32)
    itemsize = 2 if dtype in (mx.float16, mx.bfloat16) else 4

    calls = {}
    weights = {}
    if "ternary_matmul" in methods:
        calls["ternary_matmul"] = lambda x, w: bx.ternary_matmul(x, w, s32, stream=gpu)
        weights["ternary_matmul"] = wq
    if "bitlinear" in methods:
        calls["bitlinear"] = lambda x, w: bx.bitlinear(x, w, s32, stream=gpu)
        weights["bitlinear"] = wq
    if "ternary_matmul_n" in methods:
        calls["ternary_matmul_n"] = lambda g, w: bx.ternary_matmul(g, w, s32, transpose=False, stream=gpu)
        weights["ternary_matmul_n"] = wq
    for m, g, transpose in (("qmm_g64", 64, True), ("qmm_g128", 128, True), ("qmm_n_g64", 64, False)):
        if m in methods:
            S = mx.full((N, K // g), SCALE, dtype=dtype)
            B = -S
            mx.eval(S, B)
            calls[m] = (lambda S, B, g, t: lambda x, w: mx.quantized_matmul(
                x, w, S, B, transpose=t, group_size=g, bits=2, stream=gpu))(S, B, g, transpose)
            weights[m] = wq
    if "f16_matmul" in methods or "f16_matmul_n" in methods:
        W = (mx.array(codes_np.astype(np.float32)) * SCALE).astype(dtype)
        mx.eval(W)
        if "f16_matmul" in methods:
            calls["f16_matmul"] = lambda x, w: mx.matmul(x, w.T, stream=gpu)
            weights["f16_matmul"] = W
        if "f16_matmul_n" in methods:
            calls["f16_matmul_n"] = lambda g, w: mx.matmul(g, w, stream=gpu)
            weights["f16_matmul_n"] = W
    if "mlx_lm" in methods:
        fn = _mlx_lm_caller(N, K, dtype) if N % 4 == 0 else None
        if fn is None:
            _log(f"  mlx_lm: skipped ({'mlx-lm not installed' if N % 4 == 0 else 'N % 4 != 0'})")
        else:
            calls["mlx_lm"] = fn
            weights["mlx_lm"] = mx.array(pack_mlx_lm(codes_np))
            mx.eval(weights["mlx_lm"])

    w32 = mx.array(codes_np.astype(np.float32)) * SCALE
    cold_bytes = args.cold_mb * 2**20
    for method, call in calls.items():
        wb = weight_bytes(method, N, K, itemsize)
        n_sets = max(4, min(512, math.ceil(cold_bytes / max(wb, 1))))
        if args.latency:
            n_sets = max(4, min(n_sets, 64))
        w_sets = _copies(weights[method], n_sets)
        transposed = method in TRANSPOSED
        for M in Ms:
            # y = x @ W.T takes x (M, K); y = g @ W takes g (M, N).
            x = mx.random.normal((M, N if transposed else K), key=mx.random.key(M)).astype(dtype)
            mx.eval(x)
            tiles = GEMM_TILES.get(method, ()) if args.gemm_tiles and M > GEMV_MAX_M else ()
            for tile in (None,) + tuple(tiles):
                key = method if tile is None else f"{method}@{tile}"
                case = {"shape": shape_key, "N": N, "K": K, "M": M, "method": key, "dtype": str(dtype),
                        "gemm_tile": tile}
                try:
                    with _gemm_tile(tile):
                        t = _check_and_time(method, call, x, w_sets, wq, w32, s32, M, itemsize, args, case, checks)
                except Exception as e:
                    _log(f"  {key} M={M} {shape_key}: {type(e).__name__}: {e}")
                    results.append({**case, "error": f"{type(e).__name__}: {e}"})
                    continue
                sec = t["median_ms"] / 1e3
                traffic = wb + itemsize * M * K + itemsize * M * N
                res = {**case, **t, "weight_bytes": wb, "traffic_bytes": traffic,
                       "GBps": traffic / sec / 1e9, "weight_GBps": wb / sec / 1e9,
                       "GOPs": 2.0 * M * N * K / sec / 1e9, "weight_sets": n_sets}
                if args.bandwidth:
                    res["pct_bw"] = 100.0 * res["GBps"] / args.bandwidth
                results.append(res)
                _log(f"  {key:24s} M={M:<4d} {shape_key:5s} {t['median_ms']:9.4f} ms  {res['GBps']:8.1f} GB/s"
                     + (f"  {res['pct_bw']:5.1f}% BW" if args.bandwidth else ""))
        del w_sets


class _gemm_tile:
    """Within the block, our GEMMs use this tile (BITNET_EXT_GEMM_TILE, read by eval_gpu); None: the plan's."""

    def __init__(self, tile):
        self.tile = tile

    def __enter__(self):
        self.saved = os.environ.pop("BITNET_EXT_GEMM_TILE", None)
        if self.tile is not None:
            os.environ["BITNET_EXT_GEMM_TILE"] = self.tile

    def __exit__(self, *exc):
        os.environ.pop("BITNET_EXT_GEMM_TILE", None)
        if self.saved is not None:
            os.environ["BITNET_EXT_GEMM_TILE"] = self.saved


def _check_and_time(method, call, x, w_sets, wq, w32, s32, M, itemsize, args, case, checks):
    """Check one output against the reference (outside timing), then time the calls."""
    import mlx.core as mx

    from bitnet_ext import reference as ref

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        y = call(x, w_sets[0])
        mx.eval(y)
    fell_back = [str(w.message) for w in rec if "CPU" in str(w.message)]
    if fell_back:
        raise RuntimeError(f"ran on the CPU, not the GPU: {fell_back[0]}")
    if method == "bitlinear":
        with mx.stream(mx.cpu):
            r = ref.bitlinear(x, wq, s32)
            mx.eval(r)
        exact = bool(mx.array_equal(y, r).item())
        err = 0.0 if exact else _rel_err(y, r)
        ok = exact
    else:
        with mx.stream(mx.cpu):
            r = x.astype(mx.float32) @ (w32 if method in TRANSPOSED else w32.T)
            mx.eval(r)
        err = _rel_err(y, r)
        ok = err < (2e-2 if itemsize == 2 else 1e-4)
    checks.append({**case, "max_rel_err": err, "ok": ok})
    if not ok:
        _log(f"  CHECK FAILED {case['method']} M={M} {case['shape']}: max rel err {err:.3e}")
    # Past M ~ 128 the kernels are compute-bound: a few weight copies keep each timed batch short.
    args_sets = [(x, w) for w in (w_sets if M < 128 else w_sets[:8])]
    return (time_latency if args.latency else time_batched)(call, args_sets, args.reps)


# ---------------------------------------------------------------------------
# Report


def markdown(report: dict) -> str:
    mach = report["machine"]
    bw = report["bandwidth"]
    lines = [
        f"## bitnet_ext Metal benchmark: {mach.get('gpu', {}).get('device_name', '?')}",
        "",
        f"- chip bandwidth: {bw['GBps'] if bw['GBps'] else '?'} GB/s ({bw['source']})",
        f"- macOS {mach.get('macos')}, MLX {mach.get('mlx_version')}, bitnet_ext "
        f"{(mach.get('bitnet_ext') or {}).get('version')}, mlx-lm {mach.get('mlx_lm_version')}, "
        f"activations {report['settings']['dtype']}, mode {report['settings']['mode']}",
        "- cells: ms per call / GB/s of minimal traffic (weights + x + y)"
        + (" / % of chip bandwidth" if bw["GBps"] else "") + "; GOP/s = 2MNK / time",
        "",
    ]
    res = [r for r in report["results"] if "error" not in r]
    by = {(r["shape"], r["M"], r["method"]): r for r in res}
    errs = {(r["shape"], r["M"], r["method"]): r["error"] for r in report["results"] if "error" in r}
    shapes = list(dict.fromkeys(r["shape"] for r in report["results"]))
    Ms = sorted({r["M"] for r in report["results"]})
    present = [m for m in ALL_METHODS if any(r["method"] == m for r in report["results"])]
    groups = [("y = x @ W.T", [m for m in present if m not in TRANSPOSED]),
              ("y = g @ W (the backward pass)", [m for m in present if m in TRANSPOSED])]
    for M in Ms:
        for title, methods in groups:
            if not methods:
                continue
            lines.append(f"### M = {M}, {title}")
            lines.append("")
            head = "| shape (N x K) | " + " | ".join(LABEL[m] for m in methods) + " | ours vs best baseline |"
            lines.append(head)
            lines.append("|" + "---|" * (len(methods) + 2))
            for sk in shapes:
                name, N, K = SHAPES[sk]
                cells = []
                for m in methods:
                    r = by.get((sk, M, m))
                    if r is None:
                        cells.append("error" if (sk, M, m) in errs else "-")
                        continue
                    c = f"{r['median_ms']:.4f} / {r['GBps']:.0f}"
                    if "pct_bw" in r:
                        c += f" / {r['pct_bw']:.0f}%"
                    if M >= 128:
                        c += f" / {r['GOPs']:.0f} GOP/s"
                    cells.append(c)
                ours = [by[(sk, M, m)]["median_ms"] for m in methods if m in OURS and (sk, M, m) in by]
                base = [by[(sk, M, m)]["median_ms"] for m in methods if m not in OURS and (sk, M, m) in by]
                sp = f"{min(base) / min(ours):.2f}x" if ours and base else "-"
                lines.append(f"| {sk}: {name} ({N} x {K}) | " + " | ".join(cells) + f" | {sp} |")
            lines.append("")
    # Every GEMM tile of ours, forced: the data to retune the plan's tile rule on this chip.
    tiled = [(m, t) for m in OURS for t in GEMM_TILES.get(m, ()) if any((sk, M, f"{m}@{t}") in by
                                                                       for sk in shapes for M in Ms)]
    if tiled:
        lines.append("### GEMM tiles (ms per call; plan: the launch plan's own choice; best in bold)")
        lines.append("")
        for m in dict.fromkeys(m for m, _ in tiled):
            tiles = [t for mm, t in tiled if mm == m]
            lines.append(f"| {LABEL[m]}: shape, M | plan | " + " | ".join(tiles) + " |")
            lines.append("|---|" + "---:|" * (len(tiles) + 1))
            for sk in shapes:
                for M in Ms:
                    cells = [by.get((sk, M, m))] + [by.get((sk, M, f"{m}@{t}")) for t in tiles]
                    if all(c is None for c in cells[1:]):
                        continue
                    best = min((c["median_ms"] for c in cells if c), default=None)
                    lines.append(f"| {sk}, {M} | " + " | ".join(
                        "-" if c is None else (f"**{c['median_ms']:.4f}**" if c["median_ms"] == best
                                               else f"{c['median_ms']:.4f}") for c in cells) + " |")
            lines.append("")
    bad = [c for c in report["checks"] if not c["ok"]]
    lines.append(f"Output checks: {len(report['checks']) - len(bad)}/{len(report['checks'])} passed"
                 + ("" if not bad else "; FAILED: " + ", ".join(
                     f"{c['method']} {c['shape']} M={c['M']} (err {c['max_rel_err']:.2e})" for c in bad)))
    if errs:
        lines.append("")
        lines.append("Errors: " + "; ".join(f"{m} {s} M={M}: {e}" for (s, M, m), e in errs.items()))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="q shape only, M in {1, 128}, 5 repeats")
    p.add_argument("--M", default=None, help="comma-separated M values (default 1,4,16,128,512)")
    p.add_argument("--shapes", default=None, help="comma-separated keys of " + ", ".join(SHAPES))
    p.add_argument("--methods", default=None, help="comma-separated subset of " + ", ".join(ALL_METHODS))
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--reps", type=int, default=None, help="timed repeats per case (default 15, quick 5)")
    p.add_argument("--cold-mb", type=float, default=256.0,
                   help="weight copies per method total at least this many MiB (default 256: above the "
                        "largest system-level cache of M-series chips)")
    p.add_argument("--latency", action="store_true", help="time single calls, one mx.eval each")
    p.add_argument("--no-gemm-tiles", dest="gemm_tiles", action="store_false",
                   help="time our GEMMs (M > 16) with the plan's tile only, not every tile")
    p.add_argument("--bandwidth", type=float, default=None, help="the chip's memory bandwidth, GB/s")
    p.add_argument("--chip", default=None, help="chip name for the bandwidth table (default: detected)")
    p.add_argument("--json", default=None, help="JSON output (default bench/results/metal-<host>.json)")
    p.add_argument("--require-metal", action="store_true", help="exit 1 (not 0) without a Metal GPU")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    ok, why = metal_status()
    if not ok:
        print(f"bench_metal: {why}. This benchmark needs an Apple Silicon Mac with MLX's Metal backend; "
              f"nothing was measured.", file=sys.stderr)
        return 1 if args.require_metal else 0

    import mlx.core as mx

    mach = describe_machine()
    if not mach.get("real_apple_gpu"):
        _log(f"bench_metal: warning: {mach['gpu']} does not look like a real Apple GPU "
             "(e.g. the paravirtual GPU of a hosted CI runner): numbers are meaningless")
    chip = args.chip or mach.get("chip") or ""
    if args.bandwidth:
        bw_src = "given with --bandwidth"
    else:
        args.bandwidth, bw_src = lookup_bandwidth(chip, mach.get("cpu_cores"))
    _log(f"bench_metal: {mach['gpu'].get('device_name')} ({chip or 'chip unknown'}), "
         f"bandwidth {args.bandwidth} GB/s ({bw_src})")

    Ms = [int(v) for v in args.M.split(",")] if args.M else ([1, 128] if args.quick else ALL_MS)
    shapes = args.shapes.split(",") if args.shapes else (["q"] if args.quick else list(SHAPES))
    for s in shapes:
        if s not in SHAPES:
            print(f"bench_metal: unknown shape {s!r} (known: {', '.join(SHAPES)})", file=sys.stderr)
            return 2
    methods = args.methods.split(",") if args.methods else list(ALL_METHODS)
    for m in methods:
        if m not in ALL_METHODS:
            print(f"bench_metal: unknown method {m!r} (known: {', '.join(ALL_METHODS)})", file=sys.stderr)
            return 2
    if args.reps is None:
        args.reps = 5 if args.quick else 15
    dtype = getattr(mx, args.dtype)

    results: list = []
    checks: list = []
    t0 = time.time()
    for sk in shapes:
        name, N, K = SHAPES[sk]
        _log(f"shape {sk} ({name}): N={N} K={K}")
        run_shape(sk, N, K, Ms, methods, dtype, args, results, checks)

    report = {
        "benchmark": "bitnet_ext bench_metal",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": mach,
        "bandwidth": {"GBps": args.bandwidth, "source": bw_src, "chip": chip},
        "settings": {"M": Ms, "shapes": {s: SHAPES[s] for s in shapes}, "methods": methods,
                     "dtype": args.dtype, "reps": args.reps, "cold_mb": args.cold_mb,
                     "mode": "latency" if args.latency else "batched", "scale": SCALE},
        "chip_table": {k: [asdict(v) for v in vs] for k, vs in CHIPS.items()},
        "results": results,
        "checks": checks,
        "elapsed_s": time.time() - t0,
    }
    md = markdown(report)
    report["markdown"] = md
    path = args.json or os.path.join(HERE, "results", f"metal-{socket.gethostname()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
    print(md)
    _log(f"bench_metal: JSON written to {path}")
    return 0 if all(c["ok"] for c in checks) else 3


if __name__ == "__main__":
    sys.exit(main())
