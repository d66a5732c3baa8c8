"""Decode GEMV variants (warps per block x tiles of W per block) at a model's layer shapes, on an NVIDIA GPU.

The timing of bench/cuda_kernels_vs_shim.py (one CUDA graph of back-to-back
launches, inputs rotating through copies larger than 3x the L2, so W comes
from HBM) for every hand-written decode GEMV variant of
csrc/gpu/launch_plan_cuda_variants.h (gemv / gemvw8 / gemvw16 = 4 / 8 / 16
warps splitting K; _r1 / _r2 / _r4 = 16 / 32 / 64 rows of W per block; a8 / a4 =
8 / 4 steps of W in flight in a shared-memory ring), for ternary_matmul and
bitlinear (quantizer and GEMV timed apart; and the fused M = 1 kernel, fused*), beside
cuBLAS bf16 and the plan launch_plan_cuda.cpp chooses. Shapes: the 2B-4T
layers with q/k/v and gate/up fused (bitnet_ext.fused) and not.

Usage: python3 bench/cuda_gemv_sweep.py OUT.json [OUT.md] [--M 1,8]   (needs _metal_cuda and torch)
"""

import argparse
import json
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "cuda"))
from cuda_kernels_vs_shim import copies_for, copy_bandwidth, time_plan, torch_cublas  # noqa: E402
from plan_cases import activations, pack  # noqa: E402

SHAPES = {  # name: (N, K)
    "k/v 640x2560": (640, 2560),
    "q/o 2560x2560": (2560, 2560),
    "qkv 3840x2560": (3840, 2560),
    "gate/up 6912x2560": (6912, 2560),
    "gate_up 13824x2560": (13824, 2560),
    "down 2560x6912": (2560, 6912),
    "17408x5120": (17408, 5120),
}
VARIANTS = [f"{family}_r{r}" for family in ("gemv", "gemvw8", "gemvw16") for r in (1, 2, 4)]
VARIANTS += ["gemva8_r1", "gemva4_r2", "gemvw8a4_r1"]  # W in a shared-memory ring
FUSED = ["fused_r1", "fused_r2", "fused_r4", "fusedw8_r1", "fusedw8_r2", "fusedw16_r1", "fusedw16_r2", "fuseda8_r1", "fuseda4_r2", "fusedw8a4_r1"]
OP_VARIANTS = {"ternary_matmul": VARIANTS, "bitlinear": VARIANTS + FUSED}
DT = "bfloat16"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("md", nargs="?")
    ap.add_argument("--M", default="1")
    args = ap.parse_args()
    sys.path.insert(0, os.environ.get("BITNET_METAL_CUDA_DIR", str(ROOT / "build" / "cuda")))
    import _metal_cuda as C

    rng = np.random.default_rng(0)
    rows = []
    copy_gbs = copy_bandwidth()
    for name, (N, K) in SHAPES.items():
        wq = pack(rng.integers(-1, 2, (N, K)).astype(np.int8))
        for M in [int(m) for m in args.M.split(",")]:
            x = activations((M, K), DT, rng)
            copies = copies_for(N * K // 4 + x.nbytes)
            rows.append(dict(shape=name, N=N, K=K, M=M, op="cuBLAS bf16", variant="", kernels=[],
                             us=round(torch_cublas(M, N, K), 3)))
            for op in ("ternary_matmul", "bitlinear"):
                params = dict(M=M, N=N, K=K, dtype=DT, per_row_scale=False)
                ins = [x, wq, np.array([0.7], np.float32)]
                outs = [np.empty((M, N), np.uint16)]
                for variant in [None] + OP_VARIANTS[op]:
                    if variant and variant.startswith("fused") and M != 1:
                        continue
                    p = dict(params, variant=variant) if variant else params
                    kernels, total = time_plan(C, op, p, ins, outs, "cuda", M, copies)
                    rows.append(dict(shape=name, N=N, K=K, M=M, op=op, variant=variant or "plan",
                                     kernels=[[k, round(t, 3)] for k, t in kernels], us=round(total, 3)))
            print(f"{name} M={M} done", flush=True)
    meta = dict(device=C.device_name(), dtype=DT, copy_gb_per_s=round(copy_gbs, 1),
                method="CUDA-event time of a CUDA graph of back-to-back launches / launches; inputs rotate through "
                       "copies whose weights exceed 3x the 60 MB L2; a plan's time = sum of its kernels' times")
    out = pathlib.Path(args.json)
    out.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    md = markdown(meta, rows)
    (pathlib.Path(args.md) if args.md else out.with_suffix(".md")).write_text(md)
    print(md)


def markdown(meta, rows):
    lines = [f"# Decode GEMV variants on {meta['device']} ({meta['dtype']})", "", meta["method"] + ".",
             f"Copy bandwidth {meta['copy_gb_per_s']} GB/s. us per call; bitlinear = quantizer + GEMV "
             "(the quantizer's share in brackets); best variant in bold.", ""]
    keys = []
    for r in rows:
        if (r["shape"], r["M"]) not in keys:
            keys.append((r["shape"], r["M"]))
    for op in ("ternary_matmul", "bitlinear"):
        names = OP_VARIANTS[op]
        lines += [f"## {op}", "", "| shape | M | cuBLAS bf16 | plan | " + " | ".join(names) + " | best: W % copy BW |",
                  "|---|---:|---:|---:|" + "---:|" * (len(names) + 1)]
        for shape, M in keys:
            sel = {r["variant"]: r for r in rows if (r["shape"], r["M"], r["op"]) == (shape, M, op)}
            bf = next(r for r in rows if (r["shape"], r["M"], r["op"]) == (shape, M, "cuBLAS bf16"))
            best = min(sel[v]["us"] for v in names if v in sel)

            def cell(r):
                if r is None:
                    return "-"
                txt = f"{r['us']:.2f}"
                if op == "bitlinear" and len(r["kernels"]) > 1:
                    txt += f" ({r['kernels'][0][1]:.1f})"
                return f"**{txt}**" if r["us"] == best else txt

            w_gbs = bf["N"] * bf["K"] / 4 / best / 1e3  # packed W bytes / us
            lines.append(f"| {shape} | {M} | {bf['us']:.2f} | {cell(sel['plan'])} | "
                         + " | ".join(cell(sel.get(v)) for v in names)
                         + f" | {100 * w_gbs / meta['copy_gb_per_s']:.0f}% |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
