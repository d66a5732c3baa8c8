"""Plans at small shapes covering every [[kernel]], with NumPy inputs (no MLX):
the workload of the compute-sanitizer runs (tests/cuda/run_on_gpu.sh).

Correctness is tests/test_metal_on_cuda.py's job; here every kernel just runs
once per case under memcheck / racecheck / synccheck / initcheck, at shapes
with tails in every dimension.

Usage: python3 tests/cuda/plan_cases.py [--no-garbage]   (needs _metal_cuda on sys.path)
"""

import argparse
import os
import pathlib
import re
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}


def pack(codes):
    """int8 codes in {-1, 0, 1} (N, K) -> uint32 words (N, K/16), code + 1 at bits 2j."""
    c = (codes.astype(np.int64) + 1).reshape(codes.shape[0], -1, 16)
    return (c << (2 * np.arange(16))).sum(axis=2).astype(np.uint32)


def activations(shape, dtype, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    if dtype == "bfloat16":
        return (a.view(np.uint32) >> 16).astype(np.uint16)
    return a.astype(DTYPES[dtype])


def gemm_tiles(kernel_names, op="ternary_gemm_t"):
    """Every GEMM tile (BM, BN) the plans can choose for op, from their kernel names."""
    pattern = re.compile(rf"^{op}_float32_bm(\d+)_bn(\d+)$")
    return sorted({(int(m.group(1)), int(m.group(2))) for m in map(pattern.search, kernel_names) if m})


def cases(kernel_names=()):
    """(kind, params) pairs; together they launch every kernel the plans name (every GEMM tile of kernel_names
    forced, with tails in M, the output columns and the reduction)."""
    for dt in DTYPES:
        for bm, bn in gemm_tiles(kernel_names):
            tile = dict(gemm_bm=bm, gemm_bn=bn)
            yield "ternary_matmul", dict(M=bm + 5, N=bn + 3, K=80, dtype=dt, per_row_scale=True, **tile)
            yield "ternary_matmul", dict(M=bm + 5, N=37, K=bn + 16, dtype=dt, transpose=False, **tile)
        for bm, bn in gemm_tiles(kernel_names, "bitlinear_gemm"):
            tile = dict(gemm_bm=bm, gemm_bn=bn)
            yield "bitlinear", dict(M=bm + 5, N=bn + 3, K=80, dtype=dt, per_row_scale=True, has_bias=True, **tile)
        for M in (1, 3, 8, 17):
            for off in (0, 4):  # W at a 16-byte aligned and an unaligned offset
                yield "ternary_matmul", dict(M=M, N=13, K=2048 + 64, dtype=dt, per_row_scale=True, wq_byte_offset=off)
        for M in (1, 4, 17):
            yield "ternary_matmul", dict(M=M, N=11, K=528, dtype=dt, transpose=False)
        yield "ternary_matmul", dict(M=3, N=300, K=528, dtype=dt, transpose=False)  # N split in 3
        for M, K in ((1, 80), (1, 16384 + 16), (3, 80), (8, 96), (17, 48)):
            yield "bitlinear", dict(M=M, N=9, K=K, dtype=dt, per_row_scale=True, has_bias=True)
        yield "absmax_quantize", dict(M=2, K=300, dtype=dt)
        for per_row in (False, True):
            yield "absmean_quantize", dict(N=5, K=48, dtype=dt, per_row=per_row)
        yield "dequantize", dict(N=3, K=48, dtype=dt, per_row_scale=True)
    yield "pack", dict(N=3, K=48)
    yield "unpack", dict(N=3, K=48)


def arrays(kind, p, rng):
    """(inputs, outputs) NumPy arrays of a plan, in the primitive's order."""
    dt = p.get("dtype", "float32")
    M, N, K = p.get("M", 1), p.get("N", 1), p.get("K", 16)
    codes = rng.integers(-1, 2, (N, K)).astype(np.int8)
    if kind == "ternary_matmul":
        t = p.get("transpose", True)
        scale = rng.uniform(0.5, 1.5, N if p.get("per_row_scale") else 1).astype(np.float32)
        x = activations((M, K if t else N), dt, rng)
        return [x, pack(codes), scale], [np.empty((M, N if t else K), DTYPES[dt])]
    if kind == "bitlinear":
        scale = rng.uniform(0.5, 1.5, N).astype(np.float32)
        ins = [activations((M, K), dt, rng), pack(codes), scale, rng.standard_normal(N).astype(np.float32)]
        return ins, [np.empty((M, N), DTYPES[dt])]
    if kind == "absmax_quantize":
        return [activations((M, K), dt, rng)], [np.empty((M, K), np.int8), np.empty(M, np.float32)]
    if kind == "absmean_quantize":
        return [activations((N, K), dt, rng)], [np.empty((N, K // 16), np.uint32),
                                                np.empty(N if p["per_row"] else 1, np.float32)]
    if kind == "dequantize":
        return [pack(codes), rng.uniform(0.5, 1.5, N).astype(np.float32)], [np.empty((N, K), DTYPES[dt])]
    if kind == "pack":
        return [codes], [np.empty((N, K // 16), np.uint32)]
    if kind == "unpack":
        return [pack(codes)], [np.empty((N, K), np.int8)]
    raise ValueError(kind)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-garbage", action="store_true", help="leave outputs uninitialized (initcheck)")
    args = ap.parse_args()
    sys.path.insert(0, os.environ.get("BITNET_METAL_CUDA_DIR", str(ROOT / "build" / "cuda")))
    import _metal_cuda as C

    rng = np.random.default_rng(0)
    names = C.plan_kernel_names()
    for kind, p in cases(names):
        ins, outs = arrays(kind, p, rng)
        C.run_plan(kind, p, ins, outs, garbage=not args.no_garbage)
    missing = sorted(set(names) - set(C.executed_kernels()))
    print(f"plan_cases: {len(list(cases(names)))} plans, {len(C.executed_kernels())} kernels executed")
    if missing:
        sys.exit(f"plan_cases: kernels not executed: {missing}")


if __name__ == "__main__":
    main()
