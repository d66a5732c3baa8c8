"""Hand-written CUDA kernels vs the Metal shaders through the CUDA shim vs cuBLAS bf16, on an NVIDIA GPU.

For each layer shape (N x K of y = x @ W.T) and M, in one process:
  - ternary_matmul and bitlinear through the shared plans (kernels/*.metal via the shim),
    the CUDA backend's plans (csrc/gpu/launch_plan_cuda.cpp: what MLX's CUDA build runs) and
    every hand-written variant that applies (csrc/gpu/launch_plan_cuda_variants.h);
  - torch.matmul in bfloat16 (cuBLAS), the dense baseline;
  - a device-to-device copy (the bandwidth ceiling).
Each kernel (and cuBLAS) is timed as one CUDA graph of back-to-back launches
(MLX's CUDA backend launches through graphs too): CUDA-event time of a replay /
launches. A plan's time is the sum of its kernels. Inputs rotate through enough copies that the weights of
successive launches exceed the L2 cache several times (weights come from HBM, as
in a model's layer stack), also for cuBLAS. Weight bandwidth = packed bytes
(N K / 4; bf16 N K 2 for cuBLAS) / time; TFLOP/s = 2 M N K / time.

Usage: python3 bench/cuda_kernels_vs_shim.py OUT.json [OUT.md]   (needs _metal_cuda and torch)
BITNET_BENCH_QUICK=1: fewer shapes (a smoke run).
"""

import json
import math
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cuda"))
from plan_cases import activations, pack  # noqa: E402

LAYERS = {  # name: (N, K)
    "2560x2560": (2560, 2560),
    "6912x2560": (6912, 2560),
    "2560x6912": (2560, 6912),
    "17408x5120": (17408, 5120),
}
MS = (1, 2, 4, 8, 16, 32, 64, 128, 512, 2048)
DT = "bfloat16"
L2_BYTES = 60 << 20
SHIM_MAX_M = 512  # the shim's GEMMs emulate simdgroup_matrix with shuffles: tens of ms past this


def copies_for(bytes_per_copy):
    return max(2, math.ceil(3 * L2_BYTES / max(bytes_per_copy, 1)))


def iters_for(M, shim):
    if shim and M >= 128:
        return 2, 5
    return (10, 100) if M <= 16 else (5, 30)


def variants(op, M):
    """The hand-written variants timed at M: GEMVs up to 64 rows, GEMMs from 16 (the crossover)."""
    v = [f"gemv_r{r}" for r in (1, 2, 4)] if M <= 64 else []
    v += ["gemm_bm64", "gemm_bm128", "gemmw4_bm64", "gemmw4_bm128"] if M >= 16 else []
    return v + ([f"fused_r{r}" for r in (1, 2, 4)] if op == "bitlinear" and M == 1 else [])


def time_plan(C, op, params, ins, outs, plans, M, copies):
    warmup, iters = iters_for(M, plans == "shared")
    kernels = C.time_plan(op, params, ins, outs, warmup=warmup, iters=iters, plans=plans, input_copies=copies,
                          graph=True)
    return kernels, sum(us for _, us in kernels)


def torch_cublas(M, N, K):
    import torch

    w_bytes = N * K * 2
    copies = copies_for(w_bytes)
    ws = [torch.randn(N, K, device="cuda", dtype=torch.bfloat16) for _ in range(copies)]
    x = torch.randn(M, K, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(M, N, device="cuda", dtype=torch.bfloat16)
    iters = 100 if M <= 16 else 30
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for i in range(3):
            torch.matmul(x, ws[i % copies].T, out=y)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(iters):
            torch.matmul(x, ws[i % copies].T, out=y)
    graph.replay()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    stop.record()
    torch.cuda.synchronize()
    us = start.elapsed_time(stop) * 1000.0 / iters
    del graph
    del ws
    return us


def copy_bandwidth():
    import torch

    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        b.copy_(a)
    stop.record()
    torch.cuda.synchronize()
    s = start.elapsed_time(stop) / 1000.0 / 10
    return 2 * n / s / 1e9  # GB/s, bytes read + written


def main():
    out_json = pathlib.Path(sys.argv[1])
    out_md = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else out_json.with_suffix(".md")
    sys.path.insert(0, os.environ.get("BITNET_METAL_CUDA_DIR", str(ROOT / "build" / "cuda")))
    import _metal_cuda as C

    quick = os.environ.get("BITNET_BENCH_QUICK") == "1"
    layers = dict(list(LAYERS.items())[-1:]) if quick else LAYERS
    ms = (1, 8, 512) if quick else MS
    rng = np.random.default_rng(0)
    copy_gbs = copy_bandwidth()
    rows = []
    for layer, (N, K) in layers.items():
        wq = pack(rng.integers(-1, 2, (N, K)).astype(np.int8))
        scale = np.array([0.7], np.float32)
        for M in ms:
            x = activations((M, K), DT, rng)
            copies = copies_for(N * K // 4 + x.nbytes)
            flops = 2.0 * M * N * K

            def record(op, plans, variant, kernels, us, w_bytes):
                rows.append(dict(layer=layer, M=M, N=N, K=K, op=op, plans=plans, variant=variant,
                                 kernels=[[k, round(t, 3)] for k, t in kernels], us=round(us, 3),
                                 weight_gb_per_s=round(w_bytes / us / 1e3, 1),
                                 pct_of_copy_bw=round(100.0 * w_bytes / us / 1e3 / copy_gbs, 1),
                                 tflops=round(flops / us / 1e6, 2)))

            us = torch_cublas(M, N, K)
            record("matmul bf16 (cuBLAS, torch)", "torch", "", [["torch.matmul", us]], us, N * K * 2)
            for op in ("ternary_matmul", "bitlinear"):
                params = dict(M=M, N=N, K=K, dtype=DT, per_row_scale=False)
                ins = [x, wq, scale]
                outs = [np.empty((M, N), np.uint16)]
                plan_list = [("cuda", None)] + [("cuda", v) for v in variants(op, M)]
                if M <= SHIM_MAX_M:
                    plan_list.insert(0, ("shared", None))
                for plans, variant in plan_list:
                    p = dict(params, variant=variant) if variant else params
                    kernels, total = time_plan(C, op, p, ins, outs, plans, M, copies)
                    record(op, plans, variant or "", kernels, total, N * K // 4)
                print(f"{layer} M={M} done", flush=True)
    meta = dict(device=C.device_name(), dtype=DT, copy_gb_per_s=round(copy_gbs, 1),
                copy_note="torch device-to-device copy of 1 GiB, bytes read + written per second",
                method="CUDA-event time of a CUDA graph of back-to-back launches / launches; inputs rotate through copies whose weights "
                       "exceed 3x the 60 MB L2; plan time = sum of its kernels' times")
    out_json.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    out_md.write_text(markdown(meta, rows))
    print(out_md.read_text())


def markdown(meta, rows):
    def pick(layer, M, op, plans, variant=""):
        for r in rows:
            if (r["layer"], r["M"], r["op"], r["plans"], r["variant"]) == (layer, M, op, plans, variant):
                return r
        return None

    lines = [f"# Hand-written CUDA kernels vs the shim vs cuBLAS bf16 on {meta['device']}", "",
             f"{meta['method']}. Copy bandwidth: {meta['copy_gb_per_s']} GB/s ({meta['copy_note']}). "
             "us per op; W GB/s = packed weight bytes / time; % copy = that over the copy bandwidth.", "",
             "| layer | M | cuBLAS bf16 us | ternary shim us | ternary CUDA us | W GB/s | % copy | TFLOP/s | "
             "vs bf16 | bitlinear shim us | bitlinear CUDA us | W GB/s | % copy | vs bf16 | CUDA kernels |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    seen = []
    for r in rows:
        key = (r["layer"], r["M"])
        if key in seen:
            continue
        seen.append(key)
        bf = pick(*key, "matmul bf16 (cuBLAS, torch)", "torch")
        ts, tc = pick(*key, "ternary_matmul", "shared"), pick(*key, "ternary_matmul", "cuda")
        bs, bc = pick(*key, "bitlinear", "shared"), pick(*key, "bitlinear", "cuda")

        def us(x):
            return f"{x['us']:.2f}" if x else "-"

        names = " + ".join(k for k, _ in tc["kernels"]) + " ; " + " + ".join(k for k, _ in bc["kernels"])
        lines.append(f"| {key[0]} | {key[1]} | {us(bf)} | {us(ts)} | {us(tc)} | {tc['weight_gb_per_s']:.0f} | "
                     f"{tc['pct_of_copy_bw']:.0f} | {tc['tflops']:.1f} | {bf['us'] / tc['us']:.2f}x | {us(bs)} | "
                     f"{us(bc)} | {bc['weight_gb_per_s']:.0f} | {bc['pct_of_copy_bw']:.0f} | "
                     f"{bf['us'] / bc['us']:.2f}x | {names} |")
    lines += ["", "## Every variant", "", "| layer | M | op | plans | variant | us | W GB/s | TFLOP/s | kernels |",
              "|---|---:|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        ks = " + ".join(f"{k} {t:.2f}" for k, t in r["kernels"])
        lines.append(f"| {r['layer']} | {r['M']} | {r['op']} | {r['plans']} | {r['variant']} | {r['us']:.2f} | "
                     f"{r['weight_gb_per_s']:.0f} | {r['tflops']:.2f} | {ks} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
