"""Per-kernel time of the prefill GEMM variants on an NVIDIA GPU (the hand-written CUDA kernels, through
the CUDA target of the shader harness), beside cuBLAS bf16 (torch) on the same shapes.

    python3 bench/cuda_mma_sweep.py OUT.json OUT.md [--shapes 2560x2560,...] [--M 128,512,2048]
            [--variants plan,mma_t0,...]

bitlinear and ternary_matmul, bfloat16 activations, the BitNet shapes (N x K). Each kernel of a
plan is timed with CUDA events over a CUDA graph of back-to-back launches that cycle through 4
device copies of the inputs (weights from HBM, not L2); "plan" is what launch_plan_cuda.cpp
chooses, mma_t<i> the W-in-registers GEMM on tile i. torch's x @ W.T (cuBLAS, bf16, 4 weight
copies) is the reference. Needs _metal_cuda (BITNET_METAL_CUDA_DIR) and, for the reference, torch.
"""

import argparse
import json
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cuda"))
from plan_cases import activations, pack  # noqa: E402

SHAPES = "2560x2560,6912x2560,2560x6912,17408x5120"
COPIES = 4


def iters_for(M, N, K):
    flop = 2.0 * M * N * K
    return int(min(200, max(10, 2e12 / flop)))  # ~ 5-20 ms of work per graph


def cublas_us(M, N, K):
    try:
        import torch
    except ImportError:
        return None
    x = [torch.randn(M, K, device="cuda", dtype=torch.bfloat16) for _ in range(COPIES)]
    w = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) for _ in range(COPIES)]
    iters = iters_for(M, N, K)
    for i in range(3):
        x[i % COPIES] @ w[i % COPIES].T
    torch.cuda.synchronize()
    times = []
    for _ in range(3):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for i in range(iters):
            x[i % COPIES] @ w[i % COPIES].T
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1000 / iters)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("md")
    ap.add_argument("--shapes", default=SHAPES)
    ap.add_argument("--M", default="128,512,2048")
    ap.add_argument("--variants", default="plan,mma_t0,mmas_t0,mma_t1,mmas_t1")
    ap.add_argument("--ops", default="bitlinear,ternary_matmul")
    args = ap.parse_args()
    sys.path.insert(0, os.environ.get("BITNET_METAL_CUDA_DIR", str(ROOT / "build" / "cuda")))
    import _metal_cuda as C

    rng = np.random.default_rng(0)
    rows = []
    out = pathlib.Path(args.json)
    for shape in args.shapes.split(","):
        N, K = (int(v) for v in shape.split("x"))
        wq = pack(rng.integers(-1, 2, (N, K)).astype(np.int8))
        scale = np.array([0.7], np.float32)
        for M in (int(m) for m in args.M.split(",")):
            x = activations((M, K), "bfloat16", rng)
            ref = cublas_us(M, N, K)
            rows.append(dict(shape=shape, M=M, op="bf16", variant="cublas", kernel="torch matmul", us=ref))
            print(f"{shape} M={M} cublas bf16: {ref} us", flush=True)
            for op in args.ops.split(","):
                for v in args.variants.split(","):
                    p = dict(M=M, N=N, K=K, dtype="bfloat16", per_row_scale=False)
                    if op == "ternary_matmul":
                        p["transpose"] = True
                    if v != "plan":
                        p["variant"] = v
                    try:
                        res = C.time_plan(op, p, [x, wq, scale], [np.empty((M, N), np.uint16)], warmup=3,
                                          iters=iters_for(M, N, K), plans="cuda", input_copies=COPIES, graph=True)
                    except Exception as e:  # a variant the shape does not take
                        print(f"{shape} M={M} {op} {v}: {e}", flush=True)
                        continue
                    total = sum(us for _, us in res)
                    for name, us in res:
                        rows.append(dict(shape=shape, M=M, op=op, variant=v, kernel=name, us=round(us, 2)))
                    rows.append(dict(shape=shape, M=M, op=op, variant=v, kernel="total", us=round(total, 2)))
                    print(f"{shape} M={M} {op} {v}: " + ", ".join(f"{n} {us:.1f}" for n, us in res)
                          + f" total {total:.1f} us", flush=True)
            out.write_text(json.dumps(dict(device=C.device_name(), copies=COPIES, rows=rows), indent=1) + "\n")
    # Table: total us per (shape, M, op), a column per variant, the fastest in bold, x vs cuBLAS.
    variants = args.variants.split(",")
    lines = [f"# Prefill GEMM variants on {C.device_name()} (us per call, CUDA graph, {COPIES} input copies)", "",
             "| shape | M | op | cuBLAS bf16 | " + " | ".join(variants) + " | best vs bf16 |",
             "|---|---:|---|---:|" + "---:|" * (len(variants) + 1)]
    tot = {(r["shape"], r["M"], r["op"], r["variant"]): r["us"] for r in rows if r["kernel"] in ("total", "torch matmul")}
    for shape in args.shapes.split(","):
        for M in (int(m) for m in args.M.split(",")):
            ref = tot.get((shape, M, "bf16", "cublas"))
            for op in args.ops.split(","):
                cells = [tot.get((shape, M, op, v)) for v in variants]
                best = min((c for c in cells if c is not None), default=None)
                ratio = f"{ref / best:.2f}x" if ref and best else "-"
                lines.append(f"| {shape} | {M} | {op} | {ref or 0:.1f} | " + " | ".join(
                    "-" if c is None else (f"**{c:.1f}**" if c == best else f"{c:.1f}") for c in cells)
                    + f" | {ratio} |")
    pathlib.Path(args.md).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
