"""Every hand-written CUDA kernel variant once per small shape with tails (no MLX):
the compute-sanitizer workload of tests/cuda/run_cuda_kernels.sh. Correctness is
tests/test_cuda_kernels.py's job.

Usage: python3 tests/cuda/cuda_kernel_cases.py [--no-garbage]   (needs _metal_cuda on sys.path)
"""

import argparse
import os
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from plan_cases import DTYPES, activations, pack  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]


MMA = ("mma_t0", "mma_t1", "mmas_t0", "mmas_t1")  # launch_plan_cuda.cpp's kMmaTiles
# The decode GEMVs with W in a shared-memory ring (launch_plan_cuda.cpp's ring_suffix), and the fused BitLinear's.
RING = ("gemva8_r1", "gemva4_r2", "gemvw8a4_r1")
FUSED_RING = ("fuseda8_r1", "fuseda4_r2", "fusedw8a4_r1")
WGMMA = ("wgmma_t0", "wgmma_t1", "wgmma_t2", "wgmmas_t0", "wgmmas_t2")  # kWgmmaTiles (sm_90a on a 9.0 GPU)


def cases():
    for dt in ("float16", "bfloat16"):
        for v in [f"{f}_r{r}" for f in ("gemv", "gemvw8", "gemvw16") for r in (1, 2, 4)] + list(RING):
            for M, N, K in ((1, 13, 2048 + 64), (9, 37, 2048 + 16)):
                yield "ternary_matmul", dict(M=M, N=N, K=K, dtype=dt, per_row_scale=True, variant=v)
        for v in ("gemm_bm64", "gemm_bm128", "gemmw4_bm64", "gemmw4_bm128") + MMA:
            yield "ternary_matmul", dict(M=70, N=130, K=528, dtype=dt, variant=v)
        yield "ternary_matmul", dict(M=130, N=260, K=1024, dtype=dt, variant="mmas_t0")  # cp.async W rows, split K
        for v in WGMMA:
            yield "ternary_matmul", dict(M=300, N=130, K=4096 + 16, dtype=dt, variant=v)  # tails, split K
    for dt in DTYPES:
        for v in ("gemv_r1", "gemv_r4", "gemvw8_r1", "gemvw8_r2", "gemvw8_r4", "gemvw16_r1", "gemvw16_r2",
                  "gemvw16_r4", "fused_r1", "fused_r2", "fused_r4", "fusedw16_r1") + RING + FUSED_RING:
            yield "bitlinear", dict(M=1, N=19, K=2064, dtype=dt, per_row_scale=True, has_bias=True, variant=v)
        yield "bitlinear", dict(M=11, N=19, K=2112, dtype=dt, per_row_scale=True, has_bias=True, variant="gemv_r2")
        for v in ("gemm_bm64", "gemm_bm128", "gemmw4_bm64", "gemmw4_bm128") + MMA:
            yield "bitlinear", dict(M=70, N=130, K=528, dtype=dt, has_bias=True, variant=v)
        yield "bitlinear", dict(M=130, N=261, K=1024, dtype=dt, has_bias=True, variant="mmas_t1")
        for v in WGMMA:
            yield "bitlinear", dict(M=300, N=130, K=4096 + 64, dtype=dt, has_bias=True, variant=v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-garbage", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, os.environ.get("BITNET_METAL_CUDA_DIR", str(ROOT / "build" / "cuda")))
    import _metal_cuda as C

    rng = np.random.default_rng(0)
    n = 0
    for kind, p in cases():
        if p.get("variant", "").startswith("wgmma") and not C.wgmma_available():
            continue
        M, N, K, dt = p["M"], p["N"], p["K"], p["dtype"]
        ins = [activations((M, K), dt, rng), pack(rng.integers(-1, 2, (N, K)).astype(np.int8)),
               rng.uniform(0.5, 1.5, N).astype(np.float32)]
        if kind == "bitlinear":
            ins.append(rng.standard_normal(N).astype(np.float32))
        C.run_plan(kind, p, ins, [np.empty((M, N), DTYPES[dt])], garbage=not args.no_garbage, plans="cuda")
        n += 1
    ours = {name for name, path in C.kernel_sources() if "/csrc/gpu/cuda/kernels/" in path}
    print(f"cuda_kernel_cases: {n} plans; hand-written kernels executed: "
          f"{len(ours & set(C.executed_kernels()))} of {len(ours)}")


if __name__ == "__main__":
    main()
