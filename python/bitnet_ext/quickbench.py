"""A short benchmark on BitNet b1.58 2B-4T layer shapes, for `python -m bitnet_ext`.

The full, side-by-side benchmark with cold/hot weights and bandwidth limits
is bench/bench_cpu.py in the repository; this one answers "how fast is it
here" in a few seconds.
"""

import statistics
import time
from typing import Callable, Dict, List

import mlx.core as mx

from . import _ext, reference

SHAPES = [(2560, 2560), (6912, 2560)]  # (N, K): attention/MLP-in projections of 2B-4T
BATCHES = [1, 128]


def median_ms(fn: Callable[[], mx.array], repeats: int) -> float:
    mx.eval(fn())  # warm up (allocations, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mx.eval(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run_quick_bench(device, repeats: int = 10, progress=lambda s: None) -> List[Dict]:
    rows = []
    for N, K in SHAPES:
        codes = mx.random.randint(-1, 2, (N, K), key=mx.random.key(N)).astype(mx.int8)
        wq = reference.pack(codes)
        scale = mx.array(0.5)
        group_scales = mx.full((N, K // 64), 0.5)
        # The strongest float baseline per device: float32 BLAS on the CPU,
        # float16 on a GPU. Activations use the same dtype.
        dtype = mx.float32 if device.type == mx.cpu else mx.float16
        w_float = (0.5 * codes.astype(mx.float32)).astype(dtype)
        mx.eval(wq, group_scales, w_float)
        for M in BATCHES:
            x = mx.random.normal((M, K)).astype(dtype)
            methods = {
                "ternary_matmul": (lambda: _ext.ternary_matmul(x, wq, scale, stream=device), N * K / 4),
                "bitlinear": (lambda: _ext.bitlinear(x, wq, scale, stream=device), N * K / 4),
                "mx.quantized_matmul b2": (
                    lambda: mx.quantized_matmul(x, wq, group_scales, -group_scales, transpose=True,
                                                group_size=64, bits=2, stream=device),
                    N * K / 4 + 2 * group_scales.nbytes),
                f"{str(dtype).split('.')[-1]} matmul": (
                    lambda: mx.matmul(x, w_float.T, stream=device), w_float.itemsize * N * K),
            }
            base = None
            for name, (fn, weight_bytes) in methods.items():
                # The MLX CPU baselines are slow at large M; fewer repeats keep this short.
                reps = repeats if M == 1 or name in ("ternary_matmul", "bitlinear") else 3
                ms = median_ms(fn, reps)
                row = dict(M=M, N=N, K=K, method=name, median_ms=ms,
                           weight_GBps=weight_bytes / (ms * 1e-3) / 1e9,
                           GOPs=2 * M * N * K / (ms * 1e-3) / 1e9)
                rows.append(row)
                progress(f"  M={M:<4d} N={N:<5d} K={K:<5d} {name:24s} {ms:9.3f} ms")
            ours = {r["method"]: r["median_ms"] for r in rows[-len(methods):]}
            for r in rows[-len(methods):]:
                r["speedup_of_bitlinear"] = r["median_ms"] / ours["bitlinear"]
    return rows


def format_table(rows: List[Dict]) -> str:
    lines = ["| M | N | K | method | median ms | weight GB/s | GOP/s | bitlinear speedup |",
             "|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['M']} | {r['N']} | {r['K']} | {r['method']} | {r['median_ms']:.3f} | "
                     f"{r['weight_GBps']:.1f} | {r['GOPs']:.1f} | {r['speedup_of_bitlinear']:.1f}x |")
    return "\n".join(lines)
