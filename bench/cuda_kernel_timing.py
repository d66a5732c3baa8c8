"""Per-kernel time of the Metal shaders on an NVIDIA GPU (the CUDA target of the shader harness).

NVIDIA NUMBERS, NOT APPLE-GPU NUMBERS: the same kernels/*.metal sources,
compiled by nvcc through csrc/harness/cuda/msl_cuda.h (scalar emulation of
simdgroup_matrix, no tensor cores) and launched with the shared launch plans.
They are a relative measure for comparing kernel designs (GEMV layouts, fused
vs unfused BitLinear, GEMV vs GEMM tilings), not a prediction of Apple-GPU speed.

Shapes: the BitNet b1.58 2B-4T projections (hidden 2560, FFN 6912, 5 KV heads
of 128) at M = 1, 8, 128, 512, float16 activations. Each kernel of a plan is
timed separately with CUDA events over repeated launches of the same inputs:
the weights (<= 4.5 MB) stay in the H200's 50 MB L2, so "achieved bandwidth"
(bytes a kernel must move / time) is hot-cache bandwidth.

Usage: python3 bench/cuda_kernel_timing.py OUT.json [OUT.md]   (needs _metal_cuda, see tests/cuda/run_on_gpu.sh)
BITNET_TIMING_ONLY=bitlinear: only the ops whose name starts with it (a before/after run of one kernel family).
"""

import json
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cuda"))
from plan_cases import activations, pack  # noqa: E402

LAYERS = {  # name: (N, K) of y = x @ W.T
    "attn.q/o 2560x2560": (2560, 2560),
    "attn.k/v 640x2560": (640, 2560),
    "mlp.gate/up 6912x2560": (6912, 2560),
    "mlp.down 2560x6912": (2560, 6912),
}
MS = (1, 8, 128, 512)
DT = "float16"


def kernel_bytes(name, M, N, K):
    """Bytes a kernel must read and write at least (weights 2 bits each)."""
    w, act = N * K // 4, 2  # packed weights; float16 activations
    if name.startswith("absmax_quantize"):
        return M * K * act + M * K + 4 * M
    if name.startswith(("bitlinear_gemv", "bitlinear_gemm")):
        return w + M * K + 4 * M + M * N * act + 4 * N
    if name.startswith("ternary_gemv_n_reduce"):  # float partial sums of ceil(N/128) splits in, y out
        return M * K * (4 * -(-N // 128) + act)
    if name.startswith("ternary_gemv_n") or name.startswith("ternary_gemm_n"):
        return w + M * N * act + M * K * act + 4 * N  # y = x (M x N) @ W (N x K)
    return w + M * K * act + M * N * act + 4 * N  # fused bitlinear, ternary GEMV/GEMM (transpose)


def cases():
    """(op, variant, kind, params) of every timed plan."""
    for layer, (N, K) in LAYERS.items():
        for M in MS:
            base = dict(M=M, N=N, K=K, dtype=DT, per_row_scale=False)
            if M <= 16:
                yield layer, "ternary_matmul gemv", "ternary_matmul", dict(base)
            else:
                yield layer, "ternary_matmul gemm", "ternary_matmul", dict(base)
            yield layer, "bitlinear", "bitlinear", dict(base)
            if M == 1:  # unfused decode BitLinear: absmax_quantize, then the int8 GEMV bm1
                yield layer, "bitlinear unfused (fused=False)", "bitlinear", dict(base, fused=False)
            if M in (1, 8, 128):
                yield layer, "ternary_matmul transposed (VJP)", "ternary_matmul", dict(base, transpose=False)
            if M == 8:  # the GEMM at M = 17: one 32-row tile, what it costs at any M <= 32 (GEMV threshold)
                for t in (True, False):
                    yield (layer, "GEMM at M=17 (one tile row)" + ("" if t else ", transposed (VJP)"),
                           "ternary_matmul", dict(base, M=17, transpose=t))


def inputs_for(kind, p, rng):
    M, N, K = p.get("M", 1), p.get("N", 1), p["K"]
    if kind == "absmax_quantize":
        return [activations((M, K), DT, rng)], [np.empty((M, K), np.int8), np.empty(M, np.float32)]
    wq = pack(rng.integers(-1, 2, (N, K)).astype(np.int8))
    scale = np.array([0.7], np.float32)
    if kind == "bitlinear":
        return [activations((M, K), DT, rng), wq, scale], [np.empty((M, N), np.float16)]
    t = p.get("transpose", True)
    return [activations((M, K if t else N), DT, rng), wq, scale], [np.empty((M, N if t else K), np.float16)]


def main():
    out_json = pathlib.Path(sys.argv[1])
    out_md = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else out_json.with_suffix(".md")
    sys.path.insert(0, os.environ.get("BITNET_METAL_CUDA_DIR", str(ROOT / "build" / "cuda")))
    import _metal_cuda as C

    only = os.environ.get("BITNET_TIMING_ONLY", "")  # time only the ops whose name starts with this
    rng = np.random.default_rng(0)
    rows = []
    for layer, variant, kind, p in cases():
        if not variant.startswith(only):
            continue
        ins, outs = inputs_for(kind, p, rng)
        for name, us in C.time_plan(kind, p, ins, outs, warmup=20, iters=200):
            M = p.get("M", 1)
            N, K = p.get("N", 0), p["K"]
            b = kernel_bytes(name, M, N, K)
            rows.append(dict(layer=layer, M=M, N=N, K=K, op=variant, kernel=name, us=round(us, 3),
                             bytes=b, gb_per_s=round(b / us / 1e3, 1)))
    meta = dict(
        label="NVIDIA GPU timing of the Metal shaders through the CUDA shim - NOT Apple-GPU numbers",
        device=C.device_name(), dtype=DT,
        method="CUDA events, 20 warmup + 200 launches per kernel, same inputs (weights hot in L2)",
        note="relative measure for comparing kernel designs; simdgroup_matrix is emulated with shuffles "
             "(no tensor cores), so GEMM times say nothing about Apple's simdgroup_matrix hardware")
    out_json.write_text(json.dumps(dict(meta=meta, rows=rows), indent=1) + "\n")
    lines = [f"# Metal shaders on {meta['device']} through the CUDA shim (NVIDIA numbers, not Apple)", "",
             meta["method"] + ". " + meta["note"] + ".", "",
             "| layer | M | op | kernel | us | GB/s |", "|---|---:|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['layer']} | {r['M']} | {r['op']} | {r['kernel']} | {r['us']:.2f} | {r['gb_per_s']:.0f} |")
    out_md.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
