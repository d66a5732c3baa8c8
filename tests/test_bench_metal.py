"""bench/bench_metal.py (the Apple-GPU benchmark) is importable everywhere, its
chip bandwidth table is sane, and without a Metal GPU it says so and exits 0."""

import importlib.util
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_metal.py"


@pytest.fixture(scope="module")
def bm():
    spec = importlib.util.spec_from_file_location("bench_metal", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_metal", mod)  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_chip_table(bm):
    for gen in (1, 2, 3, 4):
        for tier in ("", " Pro", " Max"):
            assert f"M{gen}{tier}" in bm.CHIPS, f"M{gen}{tier} missing"
    for chip in ("M1 Ultra", "M2 Ultra", "M3 Ultra"):  # no M4 Ultra was released
        assert chip in bm.CHIPS
    for chip, variants in bm.CHIPS.items():
        assert variants, chip
        for v in variants:
            assert 50 <= v.gbps <= 1000, (chip, v)
            assert "Apple" in v.source, (chip, v)
        if len(variants) > 1:  # bins told apart by CPU core count
            assert len({v.cpu_cores for v in variants}) == len(variants), chip
    # within a generation: base < Pro < Max <= Ultra
    for gen in (1, 2, 3):
        top = [max(v.gbps for v in bm.CHIPS[f"M{gen}{t}"]) for t in ("", " Pro", " Max", " Ultra")]
        assert top == sorted(top), (gen, top)


def test_chip_lookup(bm):
    assert bm.normalize_chip("Apple M3 Max") == "M3 Max"
    assert bm.normalize_chip("Apple M2") == "M2"
    assert bm.normalize_chip("Apple M1 Ultra (64-core GPU)") == "M1 Ultra"
    assert bm.normalize_chip("AMD EPYC") is None
    assert bm.lookup_bandwidth("Apple M2 Pro")[0] == 200
    assert bm.lookup_bandwidth("Apple M3 Max", 14)[0] == 300
    assert bm.lookup_bandwidth("Apple M3 Max", 16)[0] == 400
    assert bm.lookup_bandwidth("Apple M4 Max", 14)[0] == 410
    gbps, why = bm.lookup_bandwidth("Apple M4 Max", None)
    assert gbps == 546 and "not identified" in why
    gbps, why = bm.lookup_bandwidth("Intel UHD")
    assert gbps is None and "--bandwidth" in why


def test_model_shapes_and_bytes(bm):
    assert {k: v[1:] for k, v in bm.SHAPES.items()} == {
        "q": (2560, 2560), "kv": (640, 2560), "up": (6912, 2560), "down": (2560, 6912)}
    assert bm.ALL_MS == [1, 4, 16, 32, 128, 512, 2048]
    N, K = 2560, 6912
    assert bm.weight_bytes("ternary_matmul", N, K) == N * K // 4 + 4
    assert bm.weight_bytes("qmm_g64", N, K) == N * K // 4 + 2 * 2 * N * K // 64
    assert bm.weight_bytes("f16_matmul", N, K) == 2 * N * K


def test_gemm_tiles_are_the_plans(bm):
    """The tiles the benchmark forces (BITNET_EXT_GEMM_TILE) are those the launch plans can pick."""
    import re

    try:
        from bitnet_ext import _metal_harness as H
    except ImportError:
        pytest.skip("needs the shader harness (pip install . -Ccmake.define.BITNET_EXT_BUILD_METAL_HARNESS=ON)")
    names = H.plan_kernel_names()
    for method, op in (("ternary_matmul", "ternary_gemm_t"), ("ternary_matmul_n", "ternary_gemm_n"),
                       ("bitlinear", "bitlinear_gemm")):
        plan = {f"{a}x{b}" for a, b in (re.match(rf"^{op}_float16_bm(\d+)_bn(\d+)$", n).groups()
                                          for n in names if re.match(rf"^{op}_float16_bm", n))}
        assert set(bm.GEMM_TILES[method]) == plan, method
    assert bm.weight_bytes("ternary_matmul@64x64", 2560, 2560) == bm.weight_bytes("ternary_matmul", 2560, 2560)
    assert bm.weight_bytes("qmm_n_g64", 2560, 2560) == bm.weight_bytes("qmm_g64", 2560, 2560)


def test_mlx_lm_packing_round_trip(bm):
    codes = np.random.default_rng(0).integers(-1, 2, size=(12, 40), dtype=np.int8)
    packed = bm.pack_mlx_lm(codes)
    assert packed.dtype == np.uint8 and packed.shape == (3, 40)
    np.testing.assert_array_equal(bm.unpack_mlx_lm(packed), codes)
    with pytest.raises(ValueError):
        bm.pack_mlx_lm(codes[:10])


@pytest.mark.skipif(platform.system() == "Darwin", reason="a Mac may have a Metal GPU")
def test_no_metal_message():
    proc = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no Metal device" in proc.stderr and "nothing was measured" in proc.stderr
    assert proc.stdout == ""
    proc = subprocess.run([sys.executable, str(BENCH), "--require-metal"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "no Metal device" in proc.stderr


def test_metal_status_agrees_with_mlx(bm):
    import mlx.core as mx

    ok, why = bm.metal_status()
    if platform.system() != "Darwin":
        assert not ok and "no Metal device" in why
    else:
        assert ok == bool(mx.metal.is_available() and mx.is_available(mx.gpu)), why
