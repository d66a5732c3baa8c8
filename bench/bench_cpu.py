#!/usr/bin/env python
"""CPU benchmark of bitnet_ext's ternary kernels against the strongest CPU baselines.

    python bench/bench_cpu.py [--quick] [--json out.json] [--threads 1,2] [--f16] [--bf16]

Compares, in one run on one machine (see bench/README.md for details):
  bitlinear       bx.bitlinear(x, wq, scale)          int8 activations (ours)
  ternary_matmul  bx.ternary_matmul(x, wq, scale)     float32 activations (ours)
  ternary_f16     same with float16 x                 (ours, only with --f16)
  ternary_bf16    same with bfloat16 x                (ours, only with --bf16; a bf16 model's activations)
  mlx_qmm         mx.quantized_matmul(x, wq, s, -s, transpose=True, group_size=64, bits=2)
  mlx_f32         MLX float32 x @ W.T
  numpy_f32       NumPy float32 x @ W.T (OpenBLAS)
all on the CPU, over M x (N, K), at each thread count, with hot and cold weights.

Each thread-count configuration runs in its own subprocess, with
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / BITNET_EXT_NUM_THREADS set before NumPy
is imported (so no threadpoolctl is needed) and bitnet_ext.cpu.set_num_threads(n).
The parent merges the results, prints markdown tables and writes JSON.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

FULL_SHAPES = [(2560, 2560), (6912, 2560), (2560, 6912), (4096, 4096)]
FULL_MS = [1, 8, 128, 512]
QUICK_SHAPES = [(2560, 2560)]
QUICK_MS = [1, 128]

ALL_METHODS = ["bitlinear", "ternary_matmul", "ternary_f16", "ternary_bf16", "mlx_qmm", "mlx_f32", "numpy_f32"]
OURS = ("bitlinear", "ternary_matmul", "ternary_f16", "ternary_bf16")
MLX_SINGLE_THREADED = ("mlx_qmm", "mlx_f32")
LABEL = {
    "bitlinear": "bitlinear",
    "ternary_matmul": "ternary_matmul",
    "ternary_f16": "ternary f16",
    "ternary_bf16": "ternary bf16",
    "mlx_qmm": "mx qmm 2-bit",
    "mlx_f32": "MLX f32",
    "numpy_f32": "NumPy f32",
}
SHORT = {"bitlinear": "bl", "ternary_matmul": "tm", "ternary_f16": "tm16", "ternary_bf16": "tmb16",
         "mlx_qmm": "qmm", "mlx_f32": "mlx", "numpy_f32": "np"}
GROUP = 64
SCALE = 0.0125


def weight_bytes(method: str, N: int, K: int) -> int:
    """Bytes of the weight representation one call reads."""
    packed = N * K // 4
    if method in OURS:
        return packed + 4  # + the float32 scalar scale
    if method == "mlx_qmm":
        return packed + 2 * N * (K // GROUP) * 4  # + float32 scales and biases
    return 4 * N * K  # float32 matrix


# ----------------------------------------------------------------------------
# Child: one thread-count configuration
# ----------------------------------------------------------------------------

def pack_np(codes):
    """NumPy reference packing: 16 codes (w + 1) per uint32, LSB first along K."""
    import numpy as np

    N, K = codes.shape
    c = (codes.astype(np.int64) + 1).astype(np.uint32).reshape(N, K // 16, 16)
    shifts = (2 * np.arange(16, dtype=np.uint32))
    return np.bitwise_or.reduce(c << shifts, axis=-1).astype(np.uint32)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _rel_err(y, ref) -> float:
    import numpy as np

    y = np.asarray(y, dtype=np.float64)
    den = float(np.max(np.abs(ref))) or 1.0
    return float(np.max(np.abs(y - ref))) / den


def child_main(args) -> None:
    import numpy as np
    import mlx.core as mx

    from _bandwidth import measure_read_bandwidth
    from _machine import openblas_threads
    from _timing import LoadProbe, Plan, WaitBudget, measure, measure_retry

    nthr = args.child_threads
    shapes = json.loads(args.shapes_json)
    Ms = json.loads(args.ms_json)
    methods = json.loads(args.methods_json)
    regimes = json.loads(args.regimes_json)
    skip = {tuple(k) for k in json.loads(args.skip_json)}
    llc = args.llc_bytes
    quick = args.quick
    settle = 0.15 if nthr > 1 else 0.0  # let spinning BLAS/pool threads go idle

    out: dict = {"threads": nthr, "env": {k: os.environ.get(k) for k in (
        "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "BITNET_EXT_NUM_THREADS", "BITNET_EXT_ISA")}}
    out["openblas_threads_readback"] = openblas_threads()
    out["loadavg_start"] = list(os.getloadavg())

    bx = None
    try:
        import bitnet_ext as bx  # noqa: F811
        try:
            bcpu = bx.cpu
        except AttributeError:
            import importlib
            bcpu = importlib.import_module("bitnet_ext.cpu")
        bcpu.set_num_threads(nthr)
        info = {"available": True, "version": getattr(bx, "__version__", None),
                "file": getattr(bx, "__file__", None)}
        for attr in ("active_isa", "num_threads", "best_isa", "supported_isas"):
            fn = getattr(bcpu, attr, None)
            if fn is not None:
                try:
                    v = fn()
                    info[attr] = v if isinstance(v, (int, float, str, list, tuple)) else str(v)
                except Exception as e:  # pragma: no cover
                    info[attr] = f"error: {e!r}"
        ext = getattr(bx, "_ext", None)
        so = getattr(ext, "__file__", None)
        if so and os.path.exists(so):
            import hashlib
            with open(so, "rb") as f:
                info["ext_sha256"] = hashlib.sha256(f.read()).hexdigest()[:16]
            info["ext_file"] = so
            info["ext_mtime"] = _dt.datetime.fromtimestamp(os.path.getmtime(so)).isoformat(timespec="seconds")
        out["bitnet_ext"] = info
    except Exception as e:
        bx = None
        out["bitnet_ext"] = {"available": False, "error": f"{type(e).__name__}: {e}"}
        _log(f"[thr={nthr}] bitnet_ext not usable ({e}); our methods are skipped")
    if bx is None:
        methods = [m for m in methods if m not in OURS]

    if quick:
        plan = Plan(warmup=1, budget_s=0.05, min_reps=3, max_reps=10, max_case_s=2.0, slow_s=0.5)
    else:
        plan = Plan(warmup=2, budget_s=args.budget, min_reps=7, max_reps=2000, max_case_s=6.0, slow_s=1.0)
    out["plan"] = plan.__dict__

    wait_budget = WaitBudget(args.max_wait)

    def read_bw() -> dict:
        # retried like the kernels when other processes were busy meanwhile; best kept
        best = None
        for attempt in range(1 + args.retries):
            if attempt:
                if wait_budget.left <= 0:
                    break
                wait_budget.wait(10.0, args.noisy_cores)
            probe = LoadProbe()
            r = measure_read_bandwidth(nthr, llc, quick=quick)
            r["ext_cores"] = probe.stop().get("ext_cores")
            if best is None or r["read_GBps"] > best["read_GBps"]:
                best = r
            if (r["ext_cores"] or 0.0) <= args.noisy_cores:
                break
        return best

    _log(f"[thr={nthr}] read bandwidth ...")
    bw_start = read_bw()
    _log(f"[thr={nthr}] read bandwidth {bw_start['read_GBps']:.1f} GB/s ({bw_start['method']}), "
         f"{bw_start['read_GBps_4k']:.1f} GB/s on 4 KiB pages")
    time.sleep(settle)

    # Floor of one MLX op call + mx.eval on the CPU stream (graph build, dispatch, sync):
    # every MLX/bitnet_ext timing includes it, NumPy's does not. Fastest of 3 medians.
    tiny = mx.zeros((16,), dtype=mx.float32)
    mx.eval(tiny)
    floors = [measure_retry(lambda: mx.eval(mx.add(tiny, tiny, stream=mx.cpu)), [()], plan,
                            retries=args.retries, ext_threshold=args.noisy_cores, budget=wait_budget)
              for _ in range(3)]
    out["mlx_call_overhead"] = min(floors, key=lambda r: r["median_ms"])
    _log(f"[thr={nthr}] MLX op+eval overhead {1e3 * out['mlx_call_overhead']['median_ms']:.1f} us")
    time.sleep(settle)

    def copies_needed(nbytes: int) -> int:
        return max(2, math.ceil(args.cold_factor * llc / nbytes))

    results = []
    checks = []
    stream = mx.cpu
    mx.set_default_device(mx.cpu)

    for (N, K) in shapes:
        rng = np.random.default_rng(args.seed + 1000003 * N + K)
        codes = rng.integers(-1, 2, size=(N, K), dtype=np.int8)
        wq_np = pack_np(codes)
        s = np.float32(SCALE)
        W_np = codes.astype(np.float32) * s
        need_cold = "cold" in regimes
        # --- weight sets: [0] is the hot set; cold rotates over all of them ---
        sets: dict[str, list[tuple]] = {}
        n_packed = copies_needed(N * K // 4) if need_cold else 1
        packed = []
        if bx is not None:
            try:
                wq0 = bx.pack(mx.array(codes))
                mx.eval(wq0)
                pack_ok = bool(np.array_equal(np.array(wq0), wq_np))
            except Exception as e:
                wq0, pack_ok = None, f"error: {e!r}"
            checks.append({"N": N, "K": K, "what": "bx.pack == numpy packing", "ok": pack_ok is True,
                           "detail": pack_ok})
            if pack_ok is not True:
                _log(f"[thr={nthr}] WARNING: bx.pack differs from the NumPy packing for {N}x{K} ({pack_ok})")
            else:
                packed.append(wq0)
        while len(packed) < n_packed:
            packed.append(mx.array(wq_np))  # distinct buffer each time
        scale_mx = mx.array(s)  # float32 scalar
        mx.eval(packed, scale_mx)
        for m in OURS:
            sets[m] = [(w,) for w in packed]
        n_q = copies_needed(weight_bytes("mlx_qmm", N, K)) if need_cold else 1
        qs = []
        for i in range(n_q):
            sc = mx.full((N, K // GROUP), s, dtype=mx.float32)
            qs.append((packed[i % len(packed)], sc, -sc))
        mx.eval(qs)
        sets["mlx_qmm"] = qs
        n_f = copies_needed(4 * N * K) if need_cold else 1
        if "mlx_f32" in methods:
            sets["mlx_f32"] = [(mx.array(W_np),) for _ in range(n_f)]
            mx.eval([t[0] for t in sets["mlx_f32"]])
        if "numpy_f32" in methods:
            sets["numpy_f32"] = [(W_np.copy(),) for _ in range(n_f)]
        cold_sets_info = {m: {"copies": len(v), "bytes_total": len(v) * weight_bytes(m, N, K)}
                          for m, v in sets.items()}

        for M in Ms:
            x_np = rng.standard_normal((M, K), dtype=np.float32)
            x = mx.array(x_np)
            x16 = x.astype(mx.float16)
            xb16 = x.astype(mx.bfloat16)
            mx.eval(x, x16, xb16)
            y_np = np.empty((M, N), dtype=np.float32)

            # One call of an MLX op = graph build + mx.eval, whose round trip to MLX's CPU
            # worker thread (the floor above) dominates small-M calls on some machines. A
            # decode step evaluates hundreds of layer calls per mx.eval, so for M <= graph-max-m
            # MLX-run methods are also timed that way: L calls (cold: L different weight sets)
            # in one mx.eval, time / L. The per-call latency stays in rec["call"].
            ops = {
                "bitlinear": lambda w: bx.bitlinear(x, w, scale_mx, stream=stream),
                "ternary_matmul": lambda w: bx.ternary_matmul(x, w, scale_mx, stream=stream),
                "ternary_f16": lambda w: bx.ternary_matmul(x16, w, scale_mx, stream=stream),
                "ternary_bf16": lambda w: bx.ternary_matmul(xb16, w, scale_mx, stream=stream),
                "mlx_qmm": lambda w, sc, bi: mx.quantized_matmul(
                    x, w, sc, bi, transpose=True, group_size=GROUP, bits=2, stream=stream),
                "mlx_f32": lambda w: mx.matmul(x, w.T, stream=stream),
            }
            fns = {m: (lambda *w, op=op: mx.eval(op(*w))) for m, op in ops.items()}
            fns["numpy_f32"] = lambda w: np.matmul(x_np, w.T, out=y_np)

            def measure_in_graph(m: str, per_call: dict, arg_sets: list[tuple]) -> dict:
                n_ops = min(args.graph_ops, int(args.graph_target_ms / max(per_call["median_ms"], 1e-6)))
                if n_ops < 2:
                    return per_call  # slow call: the eval floor is noise, per call == per op
                width = len(arg_sets[0])
                groups = [tuple(a for j in range(n_ops) for a in arg_sets[(g * n_ops + j) % len(arg_sets)])
                          for g in range(max(1, math.ceil(len(arg_sets) / n_ops)))]
                op = ops[m]

                def step(*flat):
                    mx.eval([op(*flat[i * width:(i + 1) * width]) for i in range(n_ops)])

                g = measure_retry(step, groups, plan, retries=args.retries,
                                  ext_threshold=args.noisy_cores, budget=wait_budget)
                out = {k: (v / n_ops if k.endswith("_ms") and isinstance(v, float) else v)
                       for k, v in g.items() if k not in ("raw_ms", "warmup_ms", "attempts")}
                out["graph_ops"] = n_ops
                out["graph_raw_ms"] = g["raw_ms"]
                out["call"] = {k: v for k, v in per_call.items() if k != "raw_ms"}
                out["call_raw_ms"] = per_call["raw_ms"]
                return out

            # --- correctness sanity (outside timing): ours at every M, baselines at the first M ---
            ref = None
            if not args.no_check:
                codes_f64 = codes.astype(np.float64)
                ref = (x_np.astype(np.float64) @ codes_f64.T) * float(s)
                for m in methods:
                    if m not in OURS and M != Ms[0]:
                        continue
                    if m == "bitlinear":
                        xs = np.maximum(np.max(np.abs(x_np), axis=-1, keepdims=True), np.float32(1e-5)) / np.float32(127)
                        xq = np.clip(np.round(x_np / xs), -128, 127).astype(np.float64)
                        # integer-valued float64 products/sums stay exact (< 2^53): an exact
                        # int32-style accumulation, through BLAS (NumPy int64 matmul is slow)
                        r = (xq @ codes_f64.T) * xs.astype(np.float64) * float(s)
                        y = bx.bitlinear(x, sets[m][0][0], scale_mx, stream=stream)
                        tol = 1e-3
                    elif m in ("ternary_f16", "ternary_bf16"):
                        xh = x16 if m == "ternary_f16" else xb16
                        r = (np.array(xh.astype(mx.float32)).astype(np.float64) @ codes_f64.T) * float(s)
                        y = bx.ternary_matmul(xh, sets[m][0][0], scale_mx, stream=stream).astype(mx.float32)
                        tol = 1e-2
                    elif m == "numpy_f32":
                        r = ref
                        y = np.matmul(x_np, sets[m][0][0].T)
                        tol = 1e-4
                    else:
                        r = ref
                        w = sets[m][0]
                        if m == "ternary_matmul":
                            y = bx.ternary_matmul(x, w[0], scale_mx, stream=stream)
                        elif m == "mlx_qmm":
                            y = mx.quantized_matmul(x, *w, transpose=True, group_size=GROUP, bits=2, stream=stream)
                        else:
                            y = mx.matmul(x, w[0].T, stream=stream)
                        tol = 1e-4
                    try:
                        y = np.array(y) if not isinstance(y, np.ndarray) else y
                        err = _rel_err(y, r)
                        ok = bool(y.shape == r.shape and err <= tol)
                    except Exception as e:
                        err, ok = repr(e), False
                    checks.append({"N": N, "K": K, "M": M, "method": m, "rel_err": err, "tol": tol, "ok": ok})
                    if not ok:
                        _log(f"[thr={nthr}] WARNING: {m} result wrong for M={M} {N}x{K}: rel err {err}")
                time.sleep(settle)

            for m in methods:
                hot_median = None
                for regime in regimes:
                    key = (m, M, N, K, regime)
                    rec = {"threads": nthr, "method": m, "M": M, "N": N, "K": K, "regime": regime,
                           "weight_bytes": weight_bytes(m, N, K)}
                    if key in skip:
                        continue
                    if regime == "cold" and hot_median is not None and hot_median > args.cold_skip_ms:
                        # compute-bound call (>> the time to stream its weights from DRAM):
                        # cold would equal hot; record the hot numbers, flagged.
                        hot = next(r for r in results if r["method"] == m and r["M"] == M and r["N"] == N
                                   and r["K"] == K and r["regime"] == "hot")
                        rec.update({k: v for k, v in hot.items() if k not in rec})
                        rec["cold_from_hot"] = True
                        results.append(rec)
                        continue
                    arg_sets = sets[m] if regime == "cold" else sets[m][:1]
                    # The VM's DRAM bandwidth drifts within a run (e.g. 35 -> 57 GB/s at
                    # 2 threads): the bandwidth target is judged against probes taken
                    # right before and after this measurement (the higher one).
                    adjacent = regime == "cold" and m == "bitlinear" and M == 1 and not quick
                    try:
                        if adjacent:
                            bw_before = read_bw()
                            time.sleep(settle)
                        r = measure_retry(fns[m], arg_sets, plan, retries=args.retries,
                                          ext_threshold=args.noisy_cores, budget=wait_budget)
                        if m != "numpy_f32" and M <= args.graph_max_m and args.graph_ops > 1:
                            r = measure_in_graph(m, r, arg_sets)
                    except Exception as e:
                        rec["error"] = f"{type(e).__name__}: {e}"
                        _log(f"[thr={nthr}] ERROR {m} M={M} {N}x{K} {regime}: {e}")
                        results.append(rec)
                        continue
                    rec.update(r)
                    if adjacent:
                        time.sleep(settle)
                        bw_after = read_bw()
                        rec["read_bw_adjacent"] = {
                            "read_GBps": max(bw_before["read_GBps"], bw_after["read_GBps"]),
                            "read_GBps_4k": max(bw_before["read_GBps_4k"], bw_after["read_GBps_4k"]),
                            "before": bw_before, "after": bw_after}
                    if regime == "cold":
                        rec["cold_set"] = cold_sets_info.get(m)
                    results.append(rec)
                    if regime == "hot":
                        hot_median = r["median_ms"]
                    _log(f"[thr={nthr}] {N}x{K} M={M:<4d} {m:<15s} {regime:<4s} "
                         f"{r['median_ms']:10.4f} ms  (n={r['n']}, iqr {r['q1_ms']:.4g}-{r['q3_ms']:.4g}, "
                         f"cores {r['own_cores'] or 0:.2f}, other load {r.get('ext_cores') or 0:.2f})")
                    time.sleep(settle)
        del sets, packed, qs
        import gc
        gc.collect()

    bw_end = None
    if not quick:
        time.sleep(settle)
        _log(f"[thr={nthr}] read bandwidth (end) ...")
        bw_end = read_bw()
        _log(f"[thr={nthr}] read bandwidth (end) {bw_end['read_GBps']:.1f} GB/s, "
             f"{bw_end['read_GBps_4k']:.1f} GB/s on 4 KiB pages")
    out["bandwidth"] = {"start": bw_start, "end": bw_end,
                        "read_GBps": max(bw_start["read_GBps"], bw_end["read_GBps"] if bw_end else 0.0),
                        "read_GBps_4k": max(bw_start["read_GBps_4k"], bw_end["read_GBps_4k"] if bw_end else 0.0)}
    out["quiet_wait_left_s"] = wait_budget.left
    out["results"] = results
    out["checks"] = checks
    out["loadavg_end"] = list(os.getloadavg())
    with open(args.child_out, "w") as f:
        json.dump(out, f)


# ----------------------------------------------------------------------------
# Parent: run configurations, derive metrics, report
# ----------------------------------------------------------------------------

def fmt_ms(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    if v >= 0.1:
        return f"{v:.3f}"
    return f"{v:.4f}"


def fmt_x(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.0f}x" if v >= 100 else (f"{v:.1f}x" if v >= 10 else f"{v:.2f}x")


def targets_for(M: int, regime: str) -> list[dict]:
    """The issue's targets (same run, same thread count, same regime)."""
    t = []
    if M == 1:
        t.append({"name": "bitlinear >= 15x NumPy (M=1)", "short": "bl/np", "ours": "bitlinear",
                  "base": "numpy_f32", "need": 15.0})
        t.append({"name": "ternary_matmul >= 5x NumPy (M=1)", "short": "tm/np", "ours": "ternary_matmul",
                  "base": "numpy_f32", "need": 5.0})
        if regime == "cold":
            t.append({"name": "bitlinear cold >= 80% read BW (M=1)", "short": "bl BW", "ours": "bitlinear",
                      "base": None, "need": 0.8})
    if M >= 128:
        t.append({"name": "bitlinear >= 3x NumPy (M>=128)", "short": "bl/np", "ours": "bitlinear",
                  "base": "numpy_f32", "need": 3.0})
        t.append({"name": "ternary_matmul >= 0.8x NumPy (M>=128)", "short": "tm/np", "ours": "ternary_matmul",
                  "base": "numpy_f32", "need": 0.8})
    t.append({"name": "bitlinear >= 30x mx qmm", "short": "bl/qmm", "ours": "bitlinear",
              "base": "mlx_qmm", "need": 30.0})
    t.append({"name": "ternary_matmul >= 30x mx qmm", "short": "tm/qmm", "ours": "ternary_matmul",
              "base": "mlx_qmm", "need": 30.0})
    return t


def analyse(children: list[dict], methods: list[str], noisy: float) -> tuple[list[dict], list[dict], dict]:
    """Attach GB/s, GOP/s, BW fractions, speedups; evaluate targets. Returns (rows, target checks, bw)."""
    bw = {c["threads"]: c["bandwidth"]["read_GBps"] for c in children}
    bw4k = {c["threads"]: c["bandwidth"]["read_GBps_4k"] for c in children}
    idx = {}
    for c in children:
        for r in c["results"]:
            if "median_ms" in r:
                t = r["median_ms"] / 1e3
                r["weight_GBps"] = r["weight_bytes"] / t / 1e9
                r["GOPs"] = 2 * r["M"] * r["N"] * r["K"] / t / 1e9
                r["frac_read_bw"] = r["weight_GBps"] / bw[r["threads"]]
                r["frac_read_bw_4k"] = r["weight_GBps"] / bw4k[r["threads"]]
                if "read_bw_adjacent" in r:
                    r["frac_read_bw_adjacent"] = r["weight_GBps"] / r["read_bw_adjacent"]["read_GBps"]
            idx[(r["threads"], r["regime"], r["M"], r["N"], r["K"], r["method"])] = r
    rows, tchecks = [], []
    keys = sorted({k[:5] for k in idx}, key=lambda k: (k[1] != "hot", k[0], k[2], k[3], k[4]))
    for k in keys:
        thr, regime, M, N, K = k
        row = {"threads": thr, "regime": regime, "M": M, "N": N, "K": K, "ms": {}, "flags": {},
               "speedup": {}, "GBps": {}, "GOPs": {}, "frac_bw": {}, "frac_bw_4k": {},
               "call_ms": {}, "frac_bw_adj": {}, "bw_adj": {}}
        for m in methods:
            r = idx.get(k + (m,))
            if r is None or "median_ms" not in r:
                continue
            row["ms"][m] = r["median_ms"]
            if "frac_read_bw_adjacent" in r:
                row["frac_bw_adj"][m] = r["frac_read_bw_adjacent"]
                row["bw_adj"][m] = r["read_bw_adjacent"]["read_GBps"]
            if "call" in r:
                row["call_ms"][m] = r["call"]["median_ms"]
            row["GBps"][m] = r["weight_GBps"]
            row["GOPs"][m] = r["GOPs"]
            row["frac_bw"][m] = r["frac_read_bw"]
            row["frac_bw_4k"][m] = r["frac_read_bw_4k"]
            fl = ""
            if r.get("cold_from_hot"):
                fl += "†"
            if r.get("reused_from_threads") is not None:
                fl += "‡"
            if (r.get("ext_cores") or 0.0) > noisy:
                fl += "~"
            if "call" in r:
                fl += "g"
            row["flags"][m] = fl
        for o in OURS:
            for b in ("mlx_qmm", "mlx_f32", "numpy_f32"):
                if o in row["ms"] and b in row["ms"]:
                    row["speedup"][f"{o}/{b}"] = row["ms"][b] / row["ms"][o]
        checks = []
        for t in targets_for(M, regime):
            if t["base"] is None:
                v = row["frac_bw_adj"].get(t["ours"], row["frac_bw"].get(t["ours"]))
            else:
                v = row["speedup"].get(f"{t['ours']}/{t['base']}")
            c = {"threads": thr, "regime": regime, "M": M, "N": N, "K": K, "target": t["name"],
                 "short": t["short"], "value": v, "need": t["need"],
                 "met": (v is not None and v >= t["need"])}
            checks.append(c)
            tchecks.append(c)
        row["targets"] = checks
        rows.append(row)
    return rows, tchecks, bw


def markdown(rows: list[dict], tchecks: list[dict], bw: dict, methods: list[str], info: dict) -> str:
    L = []
    ours = [m for m in OURS if m in methods]
    bases = [m for m in ("mlx_qmm", "mlx_f32", "numpy_f32") if m in methods]
    bxi = info.get("bitnet_ext", {})
    bxs = (f"bitnet_ext {bxi.get('version')} ISA {bxi.get('active_isa')}" if bxi.get("available")
           else f"bitnet_ext NOT AVAILABLE ({bxi.get('error')})")
    L.append(f"Machine: {info.get('cpu_model')} ({info.get('usable_cpus')} CPUs), "
             f"LLC {info.get('llc_bytes', 0) / 2**20:.0f} MiB; mlx {info.get('mlx_version')}, "
             f"numpy {info.get('numpy_version')} ({info.get('blas_name')} {info.get('blas_version')}); {bxs}")
    if bxi.get("warning"):
        L.append(f"WARNING: {bxi['warning']}")
    bw4k = info.get("read_GBps_4k", {})
    L.append("Read bandwidth (single pass, same run; best, and on 4 KiB pages as MLX buffers get): " + ", ".join(
        f"{t} thr {v:.1f} GB/s ({bw4k.get(t, float('nan')):.1f} on 4 KiB pages)" for t, v in sorted(bw.items())))
    if info.get("mlx_call_overhead_us"):
        L.append("MLX op call + mx.eval floor (tiny add): " + ", ".join(
            f"{t} thr {v:.1f} us" for t, v in sorted(info["mlx_call_overhead_us"].items())))
    L.append("")
    L.append("### Median time per op (ms) and speedups of ours")
    L.append("")
    hdr = ["regime", "thr", "M", "N x K"] + [LABEL[m] for m in methods]
    call_cols = [m for m in ours if any(m in row["call_ms"] for row in rows)]
    hdr += [f"{SHORT[m]} 1 call" for m in call_cols]
    sp_cols = []
    for o in ("bitlinear", "ternary_matmul"):
        if o not in ours:
            continue
        for b in ("numpy_f32", "mlx_qmm", "mlx_f32"):
            if b in bases:
                sp_cols.append((o, b))
    hdr += [f"{SHORT[o]}/{SHORT[b]}" for o, b in sp_cols]
    if "bitlinear" in ours:
        hdr += ["bl %BW", "bl %BW4k", "bl %BW adj"]
    hdr.append("targets")
    L.append("| " + " | ".join(hdr) + " |")
    L.append("|" + "|".join(["---"] * len(hdr)) + "|")
    for row in rows:
        cells = [row["regime"], str(row["threads"]), str(row["M"]), f"{row['N']}x{row['K']}"]
        for m in methods:
            v = row["ms"].get(m)
            cells.append(fmt_ms(v) + row["flags"].get(m, "") if v is not None else "n/a")
        for m in call_cols:
            cells.append(fmt_ms(row["call_ms"].get(m)) if m in row["call_ms"] else "")
        for o, b in sp_cols:
            cells.append(fmt_x(row["speedup"].get(f"{o}/{b}")))
        if "bitlinear" in ours:
            for key in ("frac_bw", "frac_bw_4k"):
                f = row[key].get("bitlinear")
                cells.append(f"{100 * f:.0f}%" if f is not None else "n/a")
            f = row["frac_bw_adj"].get("bitlinear")
            cells.append(f"{100 * f:.0f}% of {row['bw_adj']['bitlinear']:.0f}" if f is not None else "")
        tc = row["targets"]
        evald = [c for c in tc if c["value"] is not None]
        missing = len(tc) - len(evald)
        failed = [c for c in evald if not c["met"]]
        if not evald:
            cell = "n/a"
        elif failed:
            cell = "NOT met " + "; ".join(
                f"{c['short']} {c['value']:.2f}<{c['need']:g}" for c in failed)
        else:
            cell = f"met ({len(evald)}/{len(evald)})"
        if missing and evald:
            cell += f" [{missing} n/a]"
        cells.append(cell)
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append("† cold not re-measured: the hot call is compute-bound (> cold-skip-ms), hot value shown.  "
             "‡ MLX op (single-threaded regardless of the thread setting) reused from the first thread "
             "configuration because one call takes > 1 s.  %BW: bitlinear weight bytes/s as a fraction of "
             "the best read-bandwidth probe of the run at that thread count (meaningful for cold); %BW4k: of "
             "the best probe on 4 KiB pages, as MLX allocates our weights; %BW adj: of the best probe (GB/s "
             "shown) taken right before and right after this measurement, since the VM's bandwidth drifts "
             "during a run (the bandwidth target uses it).  "
             "~ other processes used > --noisy-cores CPU cores during this measurement (after retries): noisy.  "
             "g: time per op with several calls (cold: on different weights) evaluated by one mx.eval, as a "
             "decode step runs its layers; the '1 call' columns give the latency of a single call + mx.eval, "
             "which adds MLX's per-eval floor (above). Speedups, %BW and targets use the first number.")
    L.append("")
    L.append("### Throughput: weight GB/s / GOP/s (2*M*N*K per call)")
    L.append("")
    hdr2 = ["regime", "thr", "M", "N x K"] + [LABEL[m] for m in methods]
    L.append("| " + " | ".join(hdr2) + " |")
    L.append("|" + "|".join(["---"] * len(hdr2)) + "|")
    for row in rows:
        cells = [row["regime"], str(row["threads"]), str(row["M"]), f"{row['N']}x{row['K']}"]
        for m in methods:
            g, o = row["GBps"].get(m), row["GOPs"].get(m)
            cells.append(f"{g:.1f} / {o:.1f}" if g is not None else "n/a")
        L.append("| " + " | ".join(cells) + " |")
    L.append("")
    L.append("### Targets summary (each target over all shapes of its M, per regime and thread count)")
    L.append("")
    L.append("| target | regime | thr | met | worst (value, case) |")
    L.append("|---|---|---|---|---|")
    groups: dict = {}
    for c in tchecks:
        groups.setdefault((c["target"], c["regime"], c["threads"]), []).append(c)
    for (name, regime, thr), cs in groups.items():
        ev = [c for c in cs if c["value"] is not None]
        if not ev:
            L.append(f"| {name} | {regime} | {thr} | n/a | |")
            continue
        worst = min(ev, key=lambda c: c["value"] / c["need"])
        nmet = sum(c["met"] for c in ev)
        L.append(f"| {name} | {regime} | {thr} | {nmet}/{len(ev)} | "
                 f"{worst['value']:.2f} (need {worst['need']:g}) at M={worst['M']} {worst['N']}x{worst['K']} |")
    return "\n".join(L)


def parse_shapes(s: str) -> list[tuple[int, int]]:
    out = []
    for part in s.split(","):
        n, k = part.lower().split("x")
        out.append((int(n), int(k)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI smoke: one shape (2560x2560), M in {1,128}, few repeats")
    ap.add_argument("--json", default=None, help="output JSON (default bench/results/cpu-<hostname>.json)")
    ap.add_argument("--threads", default=None, help="comma list of thread counts (default 1,<usable CPUs>)")
    ap.add_argument("--shapes", default=None, help="comma list NxK, e.g. 2560x2560,6912x2560")
    ap.add_argument("--M", dest="ms", default=None, help="comma list of M (rows of x)")
    ap.add_argument("--methods", default=None, help=f"comma list from {','.join(ALL_METHODS)}")
    ap.add_argument("--f16", action="store_true", help="also time ternary_matmul with float16 x")
    ap.add_argument("--bf16", action="store_true", help="also time ternary_matmul with bfloat16 x")
    ap.add_argument("--regimes", default="hot,cold", help="hot,cold")
    ap.add_argument("--cold-factor", type=float, default=2.0,
                    help="cold weight copies total at least this many times the LLC (default 2)")
    ap.add_argument("--cold-skip-ms", type=float, default=500.0,
                    help="do not re-measure cold when the hot call takes longer (compute-bound)")
    ap.add_argument("--reuse-ms", type=float, default=1000.0,
                    help="MLX ops slower than this at the first thread count are not re-run at the others")
    ap.add_argument("--no-reuse", action="store_true", help="re-measure every MLX op at every thread count")
    ap.add_argument("--graph-ops", type=int, default=16,
                    help="for M <= --graph-max-m, also time MLX-run methods as this many calls per "
                         "mx.eval (as a decode step runs them) and use the per-op time; 1 disables")
    ap.add_argument("--graph-max-m", type=int, default=8, help="largest M timed in-graph (default 8)")
    ap.add_argument("--graph-target-ms", type=float, default=4.0,
                    help="in-graph calls per eval are capped so one eval takes about this long; "
                         "slower calls are timed per call only")
    ap.add_argument("--budget", type=float, default=0.5, help="timed seconds aimed at per measurement")
    ap.add_argument("--llc-mb", type=float, default=None, help="override the detected last-level cache size")
    ap.add_argument("--isa", default=None, help="force bitnet_ext's kernel level (sets BITNET_EXT_ISA)")
    ap.add_argument("--retries", type=int, default=None,
                    help="re-measure (after waiting up to 10 s for quiet) when other processes used "
                         "more than --noisy-cores meanwhile (default 2; 0 with --quick)")
    ap.add_argument("--noisy-cores", type=float, default=0.3,
                    help="outside CPU load (cores) above which a measurement is retried / flagged noisy")
    ap.add_argument("--wait-idle", type=float, default=None,
                    help="before each thread configuration, wait up to this many seconds for the "
                         "machine to go quiet (default 60; 0 with --quick)")
    ap.add_argument("--max-wait", type=float, default=240.0,
                    help="total seconds each thread configuration may spend waiting for quiet before "
                         "retries (default 240)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-check", action="store_true", help="skip the correctness sanity checks")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a correctness sanity check fails")
    # internal (child process)
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--shapes-json", help=argparse.SUPPRESS)
    ap.add_argument("--ms-json", help=argparse.SUPPRESS)
    ap.add_argument("--methods-json", help=argparse.SUPPRESS)
    ap.add_argument("--regimes-json", help=argparse.SUPPRESS)
    ap.add_argument("--skip-json", default="[]", help=argparse.SUPPRESS)
    ap.add_argument("--llc-bytes", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.retries is None:
        args.retries = 0 if args.quick else 2
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 60.0
    if args._child:
        child_main(args)
        return

    from _machine import describe

    t_start = time.time()
    # Import once here: an editable install (-Ceditable.rebuild=true) rebuilds on import,
    # better once now than in each timed child.
    try:
        import bitnet_ext  # noqa: F401
    except Exception as e:
        print(f"bitnet_ext not importable ({type(e).__name__}: {e}); baselines only", file=sys.stderr)
    info = describe()
    llc = int(args.llc_mb * 2**20) if args.llc_mb else info["llc_bytes"]
    shapes = parse_shapes(args.shapes) if args.shapes else (QUICK_SHAPES if args.quick else FULL_SHAPES)
    Ms = [int(v) for v in args.ms.split(",")] if args.ms else (QUICK_MS if args.quick else FULL_MS)
    if args.methods:
        methods = [m.strip() for m in args.methods.split(",")]
        bad = [m for m in methods if m not in ALL_METHODS]
        if bad:
            ap.error(f"unknown methods {bad}; choose from {ALL_METHODS}")
    else:
        methods = [m for m in ALL_METHODS if (m != "ternary_f16" or args.f16) and (m != "ternary_bf16" or args.bf16)]
    if args.f16 and "ternary_f16" not in methods:
        methods.insert(2, "ternary_f16")
    if args.bf16 and "ternary_bf16" not in methods:
        methods.insert(2, "ternary_bf16")
    regimes = sorted({r.strip() for r in args.regimes.split(",")}, key=lambda r: r != "hot")
    if not set(regimes) <= {"hot", "cold"}:
        ap.error("--regimes takes hot and/or cold")
    threads = ([int(v) for v in args.threads.split(",")] if args.threads
               else sorted({1, info["usable_cpus"]}))
    for (N, K) in shapes:
        if K % GROUP:
            ap.error(f"K={K} must be a multiple of {GROUP}")
    json_path = args.json or os.path.join(HERE, "results", f"cpu-{socket.gethostname()}.json")

    children = []
    first_results: list[dict] = []
    for ti, n in enumerate(threads):
        skip = []
        if ti > 0 and not args.no_reuse:
            for r in first_results:
                if (r["method"] in MLX_SINGLE_THREADED and r["regime"] == "hot"
                        and r.get("median_ms", 0) > args.reuse_ms):
                    skip += [[r["method"], r["M"], r["N"], r["K"], reg] for reg in regimes]
        env = dict(os.environ)
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BITNET_EXT_NUM_THREADS"):
            env[var] = str(n)
        if args.isa:
            env["BITNET_EXT_ISA"] = args.isa
        with tempfile.TemporaryDirectory() as td:
            out_path = os.path.join(td, "child.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--_child",
                   "--child-threads", str(n), "--child-out", out_path,
                   "--shapes-json", json.dumps(shapes), "--ms-json", json.dumps(Ms),
                   "--methods-json", json.dumps(methods), "--regimes-json", json.dumps(regimes),
                   "--skip-json", json.dumps(skip), "--llc-bytes", str(llc),
                   "--cold-factor", str(args.cold_factor), "--cold-skip-ms", str(args.cold_skip_ms),
                   "--budget", str(args.budget), "--seed", str(args.seed),
                   "--graph-ops", str(args.graph_ops), "--graph-max-m", str(args.graph_max_m),
                   "--graph-target-ms", str(args.graph_target_ms),
                   "--retries", str(args.retries), "--noisy-cores", str(args.noisy_cores),
                   "--max-wait", str(args.max_wait)]
            if args.quick:
                cmd.append("--quick")
            if args.no_check:
                cmd.append("--no-check")
            print(f"== {n} thread(s) ==", file=sys.stderr, flush=True)
            if args.wait_idle > 0:
                from _timing import wait_quiet
                w = wait_quiet(args.wait_idle, threshold=args.noisy_cores)
                if w > 1:
                    print(f"(waited {w:.0f} s for the machine to go quiet)", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, env=env)
            if proc.returncode != 0:
                sys.exit(f"benchmark child for {n} thread(s) failed with exit code {proc.returncode}")
            with open(out_path) as f:
                child = json.load(f)
        if ti == 0:
            first_results = child["results"]
        else:
            skipped = {tuple(k) for k in skip}
            for r in first_results:
                if (r["method"], r["M"], r["N"], r["K"], r["regime"]) in skipped:
                    rr = dict(r)
                    rr["threads"] = n
                    rr["reused_from_threads"] = threads[0]
                    child["results"].append(rr)
        children.append(child)

    bxinfo = next((c["bitnet_ext"] for c in children if c.get("bitnet_ext")), {"available": False})
    builds = {c["bitnet_ext"].get("ext_sha256") for c in children if c.get("bitnet_ext", {}).get("available")}
    if len(builds) > 1:
        bxinfo = dict(bxinfo, warning=f"thread configurations ran different builds of the extension: {builds}")
        print(f"WARNING: bitnet_ext was rebuilt between thread configurations ({builds})", file=sys.stderr)
    info["bitnet_ext"] = bxinfo
    info["loadavg_at_end"] = list(os.getloadavg())
    info["mlx_call_overhead_us"] = {c["threads"]: 1e3 * c["mlx_call_overhead"]["median_ms"] for c in children
                                    if c.get("mlx_call_overhead")}
    if not bxinfo.get("available"):
        methods = [m for m in methods if m not in OURS]
    rows, tchecks, bw = analyse(children, methods, args.noisy_cores)
    info["read_GBps_4k"] = {c["threads"]: c["bandwidth"]["read_GBps_4k"] for c in children}
    md = markdown(rows, tchecks, bw, methods, info)
    failed_checks = [c for ch in children for c in ch.get("checks", []) if not c.get("ok")]
    doc = {
        "schema": 1,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": [os.path.basename(sys.executable)] + sys.argv,
        "wall_s": time.time() - t_start,
        "machine": info,
        "config": {"quick": args.quick, "shapes": shapes, "M": Ms, "methods": methods, "regimes": regimes,
                   "threads": threads, "llc_bytes_used": llc, "cold_factor": args.cold_factor,
                   "cold_skip_ms": args.cold_skip_ms, "reuse_ms": None if args.no_reuse else args.reuse_ms,
                   "retries": args.retries, "noisy_cores": args.noisy_cores, "wait_idle_s": args.wait_idle,
                   "max_wait_s": args.max_wait,
                   "group_size": GROUP, "scale": SCALE, "seed": args.seed,
                   "weight_bytes_rule": "ours: N*K/4 (+4 scale); mlx_qmm: N*K/4 + 2*4*N*K/64 "
                                        "(float32 scales+biases); float32: 4*N*K"},
        "bandwidth": {str(c["threads"]): c["bandwidth"] for c in children},
        "children": [{k: v for k, v in c.items() if k not in ("results", "bandwidth")} for c in children],
        "results": [r for c in children for r in c["results"]],
        "rows": rows,
        "targets": tchecks,
        "markdown": md,
    }
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))  # compact: raw timings make it large
    print(f"JSON written to {json_path} ({doc['wall_s']:.0f} s)", file=sys.stderr)
    print(md)
    if failed_checks:
        print(f"\nWARNING: {len(failed_checks)} correctness sanity checks failed (see JSON 'checks').")
        if args.strict:
            sys.exit(1)


if __name__ == "__main__":
    main()
