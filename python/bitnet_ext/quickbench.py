"""A short benchmark on BitNet b1.58 2B-4T layer shapes, for `python -m bitnet_ext`.

The default run takes a few seconds: our two ops beside NumPy float32 (the
strongest CPU float baseline here: OpenBLAS on a float32 W) and, at M = 1 only,
MLX's float matmul and 2-bit quantized_matmul (MLX's CPU kernels for these take
0.7-2 s per call at M = 128, so they run only with ``--full``). The full,
side-by-side benchmark with cold/hot weights and bandwidth limits is
bench/bench_cpu.py in the repository.
"""

import statistics
import time
from typing import Callable, Dict, List, Optional

import mlx.core as mx
import numpy as np

from . import _ext, reference

SHAPES = [(2560, 2560), (6912, 2560)]  # (N, K): attention / MLP-in projections of 2B-4T
BATCHES = [1, 128]  # decode (one token) and prefill
SLOW_BASELINES = ("MLX f32", "mx qmm 2b")  # seconds per call at M = 128 on a CPU
FULL_REPEATS_SLOW = 3
COLUMNS = ("bitlinear", "ternary_mm", "NumPy f32", "MLX f32", "mx qmm 2b")


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm up (allocations, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _methods(
    device: mx.Device, x: mx.array, wq: mx.array, w_float: mx.array, w_np: np.ndarray,
    group_scales: mx.array, scale: mx.array,
) -> Dict[str, Callable[[], object]]:
    x_np = np.array(x.astype(mx.float32))
    return {
        "bitlinear": lambda: mx.eval(_ext.bitlinear(x, wq, scale, stream=device)),
        "ternary_mm": lambda: mx.eval(_ext.ternary_matmul(x, wq, scale, stream=device)),
        "NumPy f32": lambda: x_np @ w_np.T,
        "MLX f32": lambda: mx.eval(mx.matmul(x, w_float.T, stream=device)),
        "mx qmm 2b": lambda: mx.eval(mx.quantized_matmul(
            x, wq, group_scales, -group_scales, transpose=True, group_size=64, bits=2, stream=device)),
    }


def run_quick_bench(device: mx.Device, repeats: int = 10, full: bool = False,
                    progress: Callable[[Dict], None] = lambda row: None,
                    note: Callable[[str], None] = lambda text: None) -> List[Dict]:
    """One row per (M, N, K): median ms per method (None where not run) and
    bitlinear's speedup over the fastest baseline that ran. ``progress`` gets
    each row when done; ``note`` is told before each slow (seconds-long) case."""
    rows = []
    # The MLX float baseline per device: float32 on the CPU, float16 on a GPU.
    dtype = mx.float32 if device.type == mx.cpu else mx.float16
    for N, K in SHAPES:
        codes = mx.random.randint(-1, 2, (N, K), key=mx.random.key(N)).astype(mx.int8)
        wq = reference.pack(codes)
        scale = mx.array(0.5)
        group_scales = mx.full((N, K // 64), 0.5)
        w_float = (0.5 * codes.astype(mx.float32)).astype(dtype)
        mx.eval(wq, group_scales, w_float)
        w_np = np.array(w_float.astype(mx.float32))
        for M in BATCHES:
            x = mx.random.normal((M, K), key=mx.random.key(M)).astype(dtype)
            mx.eval(x)
            times: Dict[str, Optional[float]] = {}
            for name, fn in _methods(device, x, wq, w_float, w_np, group_scales, scale).items():
                slow = M > 1 and name in SLOW_BASELINES
                if slow and not full:
                    times[name] = None
                    continue
                if slow:
                    note(f"  ... timing {name} at M={M} N={N} K={K} (seconds per call)")
                times[name] = median_ms(fn, min(repeats, FULL_REPEATS_SLOW) if slow else repeats)
            ours = times["bitlinear"]
            assert ours is not None  # always timed
            baselines = [t for name, t in times.items() if name not in ("bitlinear", "ternary_mm") and t]
            row = dict(M=M, N=N, K=K, median_ms=times, bitlinear_speedup=min(baselines) / ours,
                       bitlinear_GOPs=2 * M * N * K / (ours * 1e-3) / 1e9)
            rows.append(row)
            progress(row)
    return rows


def format_header() -> str:
    return f"{'M':>4} {'N':>5} {'K':>5} " + " ".join(f"{c:>10}" for c in COLUMNS) + "  bitlinear vs fastest other"


def format_row(row: Dict) -> str:
    cells = " ".join("         -" if row["median_ms"][c] is None else f"{row['median_ms'][c]:10.3f}"
                     for c in COLUMNS)
    return f"{row['M']:>4} {row['N']:>5} {row['K']:>5} {cells}  {row['bitlinear_speedup']:.1f}x"
