"""Single-pass read bandwidth of this machine, measured with NumPy.

A buffer several times larger than the last-level cache is read once per call
by `nthreads` threads, each reducing its own contiguous slice (NumPy releases
the GIL inside reductions, so Python threads run in parallel). Every pass reads
the buffer from DRAM because the buffer does not fit in the cache.

Reductions tried (the reported bandwidth is the best median over them):
  - int64 `np.max`: SIMD min/max loops; on the Zen 4 dev machine it runs at
    ~69 GB/s on an L2-resident array, so from DRAM it is bandwidth-bound,
    not compute-bound. This is normally the winner.
  - int64 `np.sum`: also SIMD, ~47 GB/s from L2.
  - float64 `a @ a` (OpenBLAS ddot; one pass, since both operands are the same
    buffer), single call, threaded by OpenBLAS itself: only where OpenBLAS
    runs `nthreads` threads (its environment variables, else every CPU), since
    a 1-thread probe that let OpenBLAS use both cores of a 2-core VM read
    34 GB/s where one thread reads 16-18.
Each is run with the buffer on transparent huge pages (NumPy madvises them
for large arrays) and on 4 KiB pages: on the dev machine (THP 'madvise') huge
pages read ~20% faster at 1 thread (~31 vs ~25 GB/s), and MLX-allocated
buffers (our packed weights) get 4 KiB pages.
Avoided: float64/float32 `np.sum` (pairwise summation is compute-bound at
~29/15 GB/s even from L2) and `np.add.reduce` on int8/uint32 (slow loops).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _time(fn, reps: int) -> list[float]:
    fn()
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def _openblas_threads() -> int:
    """Threads NumPy's OpenBLAS uses for one call: its environment variables, else every CPU."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "")
        if v.isdigit() and int(v) > 0:
            return int(v)
    return os.cpu_count() or 1


def _set_hugepage(on: bool) -> bool | None:
    """NumPy madvise(MADV_HUGEPAGE)s its allocations >= 4 MiB by default; toggle it."""
    try:
        from numpy._core import multiarray as ma
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray as ma
    try:
        return ma._set_madvise_hugepage(on)
    except AttributeError:
        return None


def measure_read_bandwidth(nthreads: int, llc_bytes: int, *, quick: bool = False) -> dict:
    """Best single-pass read bandwidth, with the buffer on transparent huge pages
    (NumPy's default for big arrays, where THP is 'madvise' or 'always') and on
    plain 4 KiB pages (what MLX's allocator gives our weights when THP is
    'madvise'). read_GBps is the best of all; read_GBps_4k the best on 4 KiB pages."""
    out = {"threads": nthreads, "variants": {}}
    for hp in (True, False):
        prev = _set_hugepage(hp)
        try:
            r = _measure(nthreads, llc_bytes, quick=quick)
        finally:
            if prev is not None:
                _set_hugepage(prev)
        r["madvise_hugepage"] = hp if prev is not None else None
        out["variants"]["thp" if hp else "4k"] = r
    best = max(out["variants"].values(), key=lambda r: r["read_GBps"])
    out.update(read_GBps=best["read_GBps"], method=best["method"], buffer_bytes=best["buffer_bytes"],
               read_GBps_4k=out["variants"]["4k"]["read_GBps"])
    return out


def _measure(nthreads: int, llc_bytes: int, *, quick: bool = False) -> dict:
    nbytes = max(8 * llc_bytes, 512 << 20) if not quick else max(4 * llc_bytes, 128 << 20)
    nbytes -= nbytes % (8 * 4096)
    buf = np.empty(nbytes // 8, dtype=np.int64)
    buf[:] = np.arange(buf.size, dtype=np.int64) % 1013  # touch every page
    chunks = np.array_split(buf, nthreads)
    f64 = buf.view(np.float64)
    f64[:] = 1.0
    reps = 5 if quick else 11
    results = {}
    pool = ThreadPoolExecutor(nthreads) if nthreads > 1 else None
    try:
        def threaded(op):
            if pool is None:
                return lambda: op(buf)
            return lambda: list(pool.map(op, chunks))

        cands = {
            "numpy_int64_max": threaded(np.max),
            "numpy_int64_sum": threaded(np.sum),
        }
        if _openblas_threads() == nthreads:  # else it would not measure nthreads threads
            cands["openblas_float64_dot"] = lambda: f64 @ f64
        for name, fn in cands.items():
            ts = _time(fn, reps)
            med = float(np.median(ts))
            results[name] = {
                "median_GBps": nbytes / med / 1e9,
                "best_GBps": nbytes / min(ts) / 1e9,
                "raw_s": ts,
            }
    finally:
        if pool is not None:
            pool.shutdown()
    best = max(results, key=lambda k: results[k]["median_GBps"])
    return {
        "threads": nthreads,
        "buffer_bytes": nbytes,
        "read_GBps": results[best]["median_GBps"],
        "method": best,
        "methods": results,
    }
