"""GPU timing helpers shared by the GPU benchmarks (bench/bench_metal.py,
bench/bench_cuda.py): MLX arrays on whatever GPU MLX runs, wall-clock time
around mx.eval after mx.synchronize.

`time_batched` evaluates many independent calls in one mx.eval (sustained
throughput, as a model's layer stack runs: the GPU backend may overlap them);
`time_latency` evaluates one call per mx.eval (adds MLX's dispatch and
synchronization cost).
"""
from __future__ import annotations

import statistics
import time


def summary(per_call_s: list[float]) -> dict:
    ts = sorted(per_call_s)
    return {
        "median_ms": statistics.median(ts) * 1e3,
        "min_ms": ts[0] * 1e3,
        "max_ms": ts[-1] * 1e3,
        "raw_ms": [t * 1e3 for t in per_call_s],
    }


def time_batched(call, arg_sets, reps: int, warmup: int = 2) -> dict:
    """Median over `reps` of (time to evaluate every call(*args) in one mx.eval) / len(arg_sets)."""
    import mlx.core as mx

    for _ in range(warmup):
        mx.eval([call(*a) for a in arg_sets])
    per_call = []
    for _ in range(reps):
        mx.synchronize()
        t0 = time.perf_counter()
        outs = [call(*a) for a in arg_sets]
        mx.eval(outs)
        per_call.append((time.perf_counter() - t0) / len(arg_sets))
        del outs
    out = summary(per_call)
    out["calls_per_eval"] = len(arg_sets)
    return out


def time_latency(call, arg_sets, reps: int, warmup: int = 3) -> dict:
    """Median time of one call evaluated on its own (rotating through arg_sets)."""
    import mlx.core as mx

    for i in range(warmup):
        mx.eval(call(*arg_sets[i % len(arg_sets)]))
    per_call = []
    n = max(reps, len(arg_sets))
    for i in range(n):
        a = arg_sets[i % len(arg_sets)]
        mx.synchronize()
        t0 = time.perf_counter()
        mx.eval(call(*a))
        per_call.append(time.perf_counter() - t0)
    out = summary(per_call)
    out["calls_per_eval"] = 1
    return out


def copies(a, n: int):
    """n arrays equal to a, each in its own buffer."""
    import mlx.core as mx

    outs = []
    for _ in range(n):
        c = mx.bitwise_or(a, mx.array(0, a.dtype)) if mx.issubdtype(a.dtype, mx.integer) else a + mx.array(0, a.dtype)
        mx.eval(c)
        outs.append(c)
    return outs


def rel_err(y, r) -> float:
    import mlx.core as mx

    y32 = y.astype(mx.float32)
    r32 = r.astype(mx.float32)
    den = mx.max(mx.abs(r32)).item() or 1.0
    return mx.max(mx.abs(y32 - r32)).item() / den
