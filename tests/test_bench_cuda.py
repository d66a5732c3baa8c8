"""bench/bench_cuda.py (the NVIDIA-GPU benchmark) is importable everywhere, its
byte counts and report are right on a synthetic run, and without a usable
NVIDIA GPU it says so and exits 0 (1 with --require-gpu)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest

import bitnet_ext as bx

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_cuda.py"


@pytest.fixture(scope="module")
def bc():
    spec = importlib.util.spec_from_file_location("bench_cuda", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shapes_and_weight_bytes(bc):
    assert bc.SHAPES["17408x5120"] == (17408, 5120) and bc.ALL_MS == [1, 8, 32, 128, 512, 2048]
    N, K = 6912, 2560
    assert bc.weight_bytes("bitlinear", N, K) == N * K // 4 + 4  # 2 bits per weight, one float32 scale
    assert bc.weight_bytes("bf16", N, K) == 2 * N * K
    assert bc.weight_bytes("q4", N, K) == N * K // 2 + 4 * N * K // 64  # bf16 scale and bias per 64
    assert bc.weight_bytes("q2", N, K) == N * K // 4 + 4 * N * K // 64


def test_markdown_of_a_synthetic_run(bc):
    res = [{"shape": "2560x2560", "M": 1, "method": m, "median_ms": t, "pct_copy_bw": p}
           for m, t, p in [("ternary_matmul", 0.004, 40.0), ("bitlinear", 0.005, 32.0), ("bf16", 0.012, 0),
                           ("q4", 0.008, 0), ("q2", 0.016, 0)]]
    report = {"date": "d", "machine": {"mlx": "0.32.4", "nvidia_smi": "GPU"}, "calls_per_eval": 32,
              "shapes": ["2560x2560"], "Ms": [1], "copy_bandwidth": {"GBps": 3400.0}, "results": res,
              "checks": [{"method": "bitlinear", "shape": "2560x2560", "M": 1, "ok": True}]}
    md = bc.markdown(report)
    row = [line for line in md.splitlines() if line.startswith("| 2560x2560 | 1 |")][0]
    # bitlinear vs bf16 / q4 / q2 = 12/5, 8/5, 16/5; ternary_matmul vs bf16 = 12/4
    assert "2.40x / 1.60x / 3.20x" in row and "| 3.00x |" in row and "| 40% |" in row
    assert "Checks: 1 of 1 passed." in md


@pytest.mark.skipif(bx._ext.GPU_BACKEND == "cuda" and hasattr(mx, "cuda") and mx.cuda.is_available(),
                    reason="an NVIDIA GPU is usable here: the benchmark would run")
def test_without_gpu_exits_cleanly():
    for args, code in (([], 0), (["--require-gpu"], 1)):
        proc = subprocess.run([sys.executable, str(BENCH), "--quick", *args], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == code, proc.stdout + proc.stderr
        assert "nothing measured" in proc.stdout
