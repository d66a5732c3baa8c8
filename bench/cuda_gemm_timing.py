"""Per-tile time of the prefill GEMM kernels on an NVIDIA GPU (the CUDA target of the shader harness).

NVIDIA NUMBERS, NOT APPLE-GPU NUMBERS: kernels/ternary_gemm.metal compiled by nvcc
through csrc/harness/cuda/msl_cuda.h, where simdgroup_multiply_accumulate is
emulated with 32 warp shuffles and 16 fma per lane (no tensor cores). An Apple
GPU does the same 8x8x8 product in about 16 fma-cycles per lane, so the
emulation inflates the multiply-accumulate part of every design by the same
factor: the numbers rank designs of this kernel, they do not predict Apple time.

Times ternary_matmul (y = x @ W.T, "t"), its VJP (y = g @ W, "n") and bitlinear
(absmax_quantize, then the int8 GEMM) on the BitNet b1.58 2B-4T projections
for M in {32, 128, 512, 2048}, float16 activations, through the launch plans:

    time:   python3 bench/cuda_gemm_timing.py time OUT.json LABEL [--tiles all|plan|BMxBN,...]
            all: every tile the plans can choose, forced with gemm_bm / gemm_bn;
            plan: the plan's own choice only (a build without the switch ignores it);
            BMxBN,...: these tiles only
    report: python3 bench/cuda_gemm_timing.py report OUT.md A.json [B.json ...]

Each kernel: CUDA events over back-to-back launches on the same inputs (weights
<= 4.5 MB stay in the H200's L2), 3 warmup launches, 50 / 20 / 10 / 5 timed
launches at M = 32 / 128 / 512 / 2048.
"""

import json
import os
import pathlib
import re
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cuda"))
from plan_cases import activations, gemm_tiles, pack  # noqa: E402

LAYERS = {  # name: (N, K) of y = x @ W.T
    "attn.q/o 2560x2560": (2560, 2560),
    "attn.k/v 640x2560": (640, 2560),
    "mlp.gate/up 6912x2560": (6912, 2560),
    "mlp.down 2560x6912": (2560, 6912),
}
ITERS = {32: 50, 128: 20, 512: 10, 2048: 5}
DT = "float16"


def time_all(out_json, label, tiles_mode):
    sys.path.insert(0, os.environ.get("BITNET_METAL_CUDA_DIR", str(ROOT / "build" / "cuda")))
    import _metal_cuda as C

    if tiles_mode == "all":
        tiles = sorted(set(gemm_tiles(C.plan_kernel_names())) | set(gemm_tiles(C.plan_kernel_names(), "bitlinear_gemm")))
    elif tiles_mode == "plan":
        tiles = [None]
    else:
        tiles = [tuple(int(v) for v in t.split("x")) for t in tiles_mode.split(",")]
    meta = dict(label="NVIDIA GPU timing of the Metal GEMM kernels through the CUDA shim - NOT Apple-GPU numbers",
                device=C.device_name(), dtype=DT, tree=label,
                method="CUDA events, 3 warmup launches, then 50/20/10/5 timed launches at M = 32/128/512/2048, "
                       "same inputs (weights hot in L2)",
                note="simdgroup_multiply_accumulate is emulated with warp shuffles (no tensor cores): "
                     "relative speed of designs only")
    rng = np.random.default_rng(0)
    rows = []
    for layer, (N, K) in LAYERS.items():
        wq = pack(rng.integers(-1, 2, (N, K)).astype(np.int8))
        scale = np.array([0.7], np.float32)
        for M in ITERS:
            xt = activations((M, K), DT, rng)
            xn = activations((M, N), DT, rng)
            for op in ("t", "n", "bitlinear"):
                for tile in tiles:
                    if tiles_mode == "all" and tile not in gemm_tiles(
                            C.plan_kernel_names(), "bitlinear_gemm" if op == "bitlinear" else "ternary_gemm_t"):
                        continue
                    p = dict(M=M, N=N, K=K, dtype=DT, per_row_scale=False)
                    if tile is not None:
                        p.update(gemm_bm=tile[0], gemm_bn=tile[1])
                    if op == "bitlinear":
                        kind, ins, outs = "bitlinear", [xt, wq, scale], [np.empty((M, N), np.float16)]
                    else:
                        p["transpose"] = op == "t"
                        kind = "ternary_matmul"
                        ins = [xt if op == "t" else xn, wq, scale]
                        outs = [np.empty((M, N if op == "t" else K), np.float16)]
                    for name, us in C.time_plan(kind, p, ins, outs, warmup=3, iters=ITERS[M]):
                        rows.append(dict(tree=label, layer=layer, op=op, M=M, N=N, K=K,
                                         tile=None if tile is None else f"bm{tile[0]}_bn{tile[1]}",
                                         kernel=name, us=round(us, 3)))
                        print(f"{label} {layer} {op} M={M} {name}: {us:.2f} us", flush=True)
        # after each layer, so that a run cut short keeps what it measured
        pathlib.Path(out_json).write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")


def report(out_md, paths):
    """One table per op: us of the GEMM kernel per (layer, M), a column per (tree, tile)."""
    rows = []
    for p in paths:
        rows += json.loads(pathlib.Path(p).read_text())["rows"]
    gemm = [r for r in rows if re.match(r"(ternary_gemm|bitlinear_gemm)", r["kernel"])]
    cols = list(dict.fromkeys((r["tree"], r["tile"]) for r in gemm))
    lines = ["# Prefill GEMM per tile on an NVIDIA GPU through the CUDA shim (NVIDIA numbers, not Apple)", "",
             "us per launch of the GEMM kernel alone (bitlinear: without absmax_quantize); float16 activations.", ""]
    for op in ("t", "n", "bitlinear"):
        lines += [f"## {op}", "", "| layer | M | " + " | ".join(f"{t} {tile or 'plan'}" for t, tile in cols) + " |",
                  "|---|---:|" + "---:|" * len(cols)]
        by = {(r["layer"], r["M"], r["tree"], r["tile"]): r["us"] for r in gemm if r["op"] == op}
        for layer in LAYERS:
            for M in ITERS:
                cells = [by.get((layer, M, t, tile)) for t, tile in cols]
                best = min((c for c in cells if c is not None), default=None)
                lines.append(f"| {layer} | {M} | " + " | ".join(
                    "-" if c is None else (f"**{c:.1f}**" if c == best else f"{c:.1f}") for c in cells) + " |")
        lines.append("")
    pathlib.Path(out_md).write_text("\n".join(lines))
    print("\n".join(lines))


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "time":
        mode = sys.argv[sys.argv.index("--tiles") + 1] if "--tiles" in sys.argv else "all"
        time_all(sys.argv[2], sys.argv[3], mode)
    elif len(sys.argv) >= 4 and sys.argv[1] == "report":
        report(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
