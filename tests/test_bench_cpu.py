"""bench/bench_cpu.py's analysis: which time and which bandwidth the issue-2 targets are judged on.

The benchmark itself only runs in CI's smoke step (no timing assertions anywhere); these tests feed
its `analyse` hand-made records so that a change in how targets are evaluated cannot go unnoticed.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bc():
    sys.path.insert(0, str(BENCH_DIR))
    try:
        spec = importlib.util.spec_from_file_location("bench_cpu", BENCH_DIR / "bench_cpu.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(BENCH_DIR))


N = K = 2560
WBYTES = N * K // 4


def record(method, median_ms, regime="cold", M=1, **extra):
    bytes_ = WBYTES if method in ("bitlinear", "ternary_matmul") else 4 * N * K
    return dict(threads=2, method=method, M=M, N=N, K=K, regime=regime, weight_bytes=bytes_,
                median_ms=median_ms, **extra)


def child(results, read_gbps=60.0, read_gbps_4k=40.0):
    return {"threads": 2, "results": results,
            "bandwidth": {"read_GBps": read_gbps, "read_GBps_4k": read_gbps_4k}}


def checks_by_target(tchecks):
    return {c["target"]: c for c in tchecks}


def test_bandwidth_target_uses_the_adjacent_probe(bc):
    # 1.6384 MB in 0.05 ms = 32.8 GB/s: 55% of the run's best probe, 82% of the adjacent one.
    bl = record("bitlinear", 0.05, read_bw_adjacent={"read_GBps": 40.0, "read_GBps_4k": 38.0})
    rows, tchecks, _ = bc.analyse([child([bl, record("numpy_f32", 1.0)])], ["bitlinear", "numpy_f32"], 0.3)
    c = checks_by_target(tchecks)["bitlinear cold >= 80% read BW (M=1)"]
    assert c["value"] == pytest.approx(WBYTES / 0.05e-3 / 1e9 / 40.0)
    assert c["met"]
    assert rows[0]["frac_bw"]["bitlinear"] == pytest.approx(WBYTES / 0.05e-3 / 1e9 / 60.0)


def test_bandwidth_target_falls_back_to_the_run_probe(bc):
    bl = record("bitlinear", 0.05)
    _, tchecks, _ = bc.analyse([child([bl, record("numpy_f32", 1.0)])], ["bitlinear", "numpy_f32"], 0.3)
    c = checks_by_target(tchecks)["bitlinear cold >= 80% read BW (M=1)"]
    assert c["value"] == pytest.approx(WBYTES / 0.05e-3 / 1e9 / 60.0)
    assert not c["met"]


def test_speedups_use_the_per_op_time_and_keep_the_call_latency(bc):
    # in-graph 0.06 ms per op, a lone call 0.12 ms; NumPy 1.0 ms: 16.7x (met), not 8.3x.
    bl = record("bitlinear", 0.06, regime="hot", call={"median_ms": 0.12}, graph_ops=16)
    rows, tchecks, _ = bc.analyse([child([bl, record("numpy_f32", 1.0, regime="hot")])],
                                  ["bitlinear", "numpy_f32"], 0.3)
    c = checks_by_target(tchecks)["bitlinear >= 15x NumPy (M=1)"]
    assert c["value"] == pytest.approx(1.0 / 0.06)
    assert c["met"]
    assert rows[0]["call_ms"]["bitlinear"] == 0.12
    assert "g" in rows[0]["flags"]["bitlinear"]
    md = bc.markdown(rows, tchecks, {2: 60.0}, ["bitlinear", "numpy_f32"],
                     {"read_GBps_4k": {2: 40.0}, "bitnet_ext": {"available": True}})
    assert "bl 1 call" in md and "0.0600g" in md and "0.120" in md


def test_a_miss_is_reported_as_not_met(bc):
    bl = record("bitlinear", 0.1, regime="hot")
    rows, tchecks, _ = bc.analyse([child([bl, record("numpy_f32", 1.0, regime="hot")])],
                                  ["bitlinear", "numpy_f32"], 0.3)
    c = checks_by_target(tchecks)["bitlinear >= 15x NumPy (M=1)"]
    assert c["value"] == pytest.approx(10.0) and not c["met"]
    md = bc.markdown(rows, tchecks, {2: 60.0}, ["bitlinear", "numpy_f32"],
                     {"read_GBps_4k": {2: 40.0}, "bitnet_ext": {"available": True}})
    assert "NOT met bl/np 10.00<15" in md
