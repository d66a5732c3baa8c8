"""Timing helpers for the CPU benchmark (no MLX or NumPy specifics here).

`measure` times a callable over a list of argument tuples. With one tuple the
same weights are reused every call ("hot"); with several, calls rotate through
them round-robin ("cold": the caller makes the tuples' total size exceed the
last-level cache, so each call finds its weights evicted and streams them from
DRAM). Warmup calls are made first and are not recorded; the number of timed
repeats adapts to the cost of one call (see `plan_repeats`).

Each measurement also records how busy the machine was meanwhile: the
process's own CPU time per wall second (`own_cores`, ~1.0 for a single-threaded
op, ~n for an op that keeps n threads busy) and the CPU time used by everything
else on the machine (`ext_cores`, from /proc/stat minus our own), which flags
results taken while other jobs (builds, tests) were running.
"""
from __future__ import annotations

import gc
import math
import os
import statistics
import time
from dataclasses import dataclass


def _proc_stat_busy() -> tuple[float, float] | None:
    """(busy, total) seconds summed over all CPUs, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    vals = [int(v) for v in fields[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    # guest time is already counted in user/nice
    total = sum(vals[:8]) if len(vals) >= 8 else sum(vals)
    hz = os.sysconf("SC_CLK_TCK")
    return (total - idle) / hz, total / hz


class LoadProbe:
    """Measures own CPU cores and other processes' CPU cores over an interval."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.own0 = time.process_time()  # all threads of this process, ns resolution
        self.sys0 = _proc_stat_busy()

    def stop(self) -> dict:
        wall = time.perf_counter() - self.t0
        own = time.process_time() - self.own0
        out = {"wall_s": wall, "own_cores": own / wall if wall > 0 else None}
        sys1 = _proc_stat_busy()
        if self.sys0 is not None and sys1 is not None:
            busy = sys1[0] - self.sys0[0]
            total = sys1[1] - self.sys0[1]
            ncpu = os.cpu_count() or 1
            if total > 0:
                # /proc/stat counts in clock ticks (10 ms): only meaningful over
                # windows of a few hundred ms; wall seconds ~ total / ncpu.
                out["ext_cores"] = max(0.0, (busy - own) / (total / ncpu))
        return out


@dataclass
class Plan:
    warmup: int = 2          # untimed calls before timing
    budget_s: float = 0.6    # aim for this much timed wall time per measurement
    min_reps: int = 7
    max_reps: int = 100
    max_case_s: float = 6.0  # never spend more than this on the timed calls...
    slow_s: float = 1.0      # ...and a first call slower than this gets one warmup only


def plan_repeats(t_call: float, plan: Plan) -> int:
    reps = math.ceil(plan.budget_s / max(t_call, 1e-9))
    reps = max(plan.min_reps, min(plan.max_reps, reps))
    if t_call * reps > plan.max_case_s:  # very slow calls: fewer repeats
        reps = max(1, int(plan.max_case_s // t_call))
    return reps


def summarize(times_s: list[float]) -> dict:
    ts = sorted(times_s)
    n = len(ts)
    if n >= 4:
        q1, _, q3 = statistics.quantiles(ts, n=4, method="inclusive")
    else:
        q1, q3 = ts[0], ts[-1]
    return {
        "n": n,
        "median_ms": statistics.median(ts) * 1e3,
        "min_ms": ts[0] * 1e3,
        "q1_ms": q1 * 1e3,
        "q3_ms": q3 * 1e3,
        "mean_ms": statistics.fmean(ts) * 1e3,
        "raw_ms": [round(t * 1e3, 5) for t in times_s],
    }


def measure(fn, arg_sets: list[tuple], plan: Plan) -> dict:
    """Time fn(*arg_sets[i % len]) round-robin. fn must force evaluation."""
    n_sets = len(arg_sets)
    idx = 0
    gc_was = gc.isenabled()
    gc.disable()
    try:
        warm = []
        for w in range(max(1, plan.warmup)):
            t0 = time.perf_counter()
            fn(*arg_sets[idx % n_sets])
            warm.append(time.perf_counter() - t0)
            idx += 1
            if warm[-1] > plan.slow_s:
                break
        reps = plan_repeats(min(warm), plan)
        probe = LoadProbe()
        times = []
        for _ in range(reps):
            args = arg_sets[idx % n_sets]
            idx += 1
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
        load = probe.stop()
    finally:
        if gc_was:
            gc.enable()
    out = summarize(times)
    out["warmup_ms"] = [t * 1e3 for t in warm]
    out["n_weight_sets"] = n_sets
    out["own_cores"] = load.get("own_cores")
    out["ext_cores"] = load.get("ext_cores")
    return out


def wait_quiet(max_s: float, threshold: float = 0.25, window_s: float = 0.5) -> float:
    """Sleep until other processes use < threshold cores over a window, or max_s passes.

    Returns the seconds waited. We are idle meanwhile, so all busy time is others'.
    """
    t0 = time.perf_counter()
    while True:
        a = _proc_stat_busy()
        if a is None:
            return 0.0
        time.sleep(window_s)
        b = _proc_stat_busy()
        ncpu = os.cpu_count() or 1
        total = b[1] - a[1]
        busy = b[0] - a[0]
        if total <= 0 or busy / (total / ncpu) < threshold:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > max_s:
            return time.perf_counter() - t0


class WaitBudget:
    """Total seconds a process may spend waiting for quiet (shared by all retries)."""

    def __init__(self, total_s: float) -> None:
        self.left = total_s

    def wait(self, max_s: float, threshold: float) -> float:
        if self.left <= 0:
            return 0.0
        w = wait_quiet(min(max_s, self.left), threshold=threshold)
        self.left -= w
        return w


def measure_retry(fn, arg_sets: list[tuple], plan: Plan, *, retries: int = 2,
                  ext_threshold: float = 0.3, wait_s: float = 10.0, retry_max_s: float = 3.0,
                  budget: WaitBudget | None = None) -> dict:
    """`measure`, repeated (after waiting for the machine to go quiet) when other
    processes used more than ext_threshold cores meanwhile. Keeps the attempt with
    the least outside load; every attempt's median is recorded in `attempts`.
    Retries stop once `budget` (total waiting allowed) is spent."""
    best = measure(fn, arg_sets, plan)
    attempts = [{"median_ms": best["median_ms"], "ext_cores": best.get("ext_cores")}]
    waited = 0.0
    for _ in range(retries):
        ext = best.get("ext_cores")
        if ext is None or ext <= ext_threshold:
            break
        if best["median_ms"] * best["n"] / 1e3 > retry_max_s:
            break  # too slow to repeat (compute-bound MLX baselines)
        if budget is not None and budget.left <= 0:
            break
        waited += budget.wait(wait_s, ext_threshold) if budget is not None else wait_quiet(wait_s, ext_threshold)
        r = measure(fn, arg_sets, plan)
        attempts.append({"median_ms": r["median_ms"], "ext_cores": r.get("ext_cores")})
        if (r.get("ext_cores") or 0.0) < (best.get("ext_cores") or 0.0):
            best = r
    best["attempts"] = attempts
    best["waited_quiet_s"] = waited
    return best
