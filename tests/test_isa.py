"""Every dispatched CPU path (scalar, AVX2, AVX-512, VNNI / NEON, dot) and 1 or
2 worker threads, against the reference; plus the bitnet_ext.cpu controls."""

import json
import os
import platform

import mlx.core as mx
import pytest

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import (
    ISA_ORDER,
    assert_equal,
    check_bitlinear,
    check_matmul,
    make_scale,
    make_weights,
    rand_codes,
    randn,
    run_python,
    shape_id,
    supported_isas,
)

# Decode (M <= 8) and prefill (M-blocked, with tails) sizes; N large enough to
# be split over 2 threads; K with odd word counts, and the 2B-4T sizes.
MATMUL_CASES = [
    (1, 1, 16),
    (1, 67, 208),
    (3, 130, 2560),
    (8, 65, 6912),
    (37, 130, 272),
    (130, 33, 2560),
]


@pytest.mark.parametrize("shape", MATMUL_CASES, ids=shape_id)
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("transpose", [True, False], ids=["T", "N"])
def test_isa_ternary_matmul(isa, threads, shape, dtype, transpose):
    M, N, K = shape
    codes, wq = make_weights(N, K, seed=M + N)
    scale = make_scale("row", N, seed=K)
    x = randn((M, K if transpose else N), dtype, seed=M)
    check_matmul(x, codes, wq, scale, transpose, what=f"ternary_matmul[{isa}, {threads} threads]")


def test_isa_ternary_matmul_f16_strided(isa, threads):
    N, K = 70, 512
    codes, wq = make_weights(N, K, seed=5)
    x = randn((2 * 9, K + 16), mx.float16, seed=6)[::2, 16:]
    check_matmul(x, codes, wq, make_scale("scalar", N), True, what=f"ternary_matmul f16 strided [{isa}]")


@pytest.mark.parametrize("shape", MATMUL_CASES + [(4, 33, 16400), (2, 5, 16384)], ids=shape_id)
def test_isa_bitlinear(isa, threads, shape):
    M, N, K = shape
    _, wq = make_weights(N, K, seed=M * N)
    check_bitlinear(
        randn((M, K), seed=K, std=2.0), wq, make_scale("row", N, seed=M), randn((N,), seed=N),
        what=f"bitlinear[{isa}, {threads} threads]",
    )


def test_isa_bitlinear_worst_case(isa, threads):
    M, N, K = 3, 4, 16384
    wq = ref.pack(mx.ones((N, K), mx.int8))
    y = check_bitlinear(mx.ones((M, K)), wq, mx.array(1.0), what=f"bitlinear worst case [{isa}]")
    expect = mx.array(127.0 * K) * (mx.array(1.0) / 127)
    assert_equal(y, mx.broadcast_to(expect, (M, N)), "127 * K * xscale * scale")


@pytest.mark.parametrize("shape", [(1, 16), (5, 37), (9, 2560), (130, 272)], ids=lambda s: "M{}_K{}".format(*s))
def test_isa_absmax_quantize(isa, threads, shape):
    x = randn(shape, mx.bfloat16, seed=shape[1], std=4.0)
    xq, xs = bx.absmax_quantize(x)
    rxq, rxs = ref.absmax_quantize(x)
    assert_equal(xs, rxs, f"xscale [{isa}]")
    assert_equal(xq, rxq, f"xq [{isa}]")


@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("shape", [(1, 16), (33, 208), (130, 2560)], ids=lambda s: "N{}_K{}".format(*s))
def test_isa_absmean_quantize(isa, threads, per_channel, shape):
    w = randn(shape, seed=shape[0], std=0.03)
    wq, s = bx.absmean_quantize(w, per_channel=per_channel)
    rwq, rs = ref.absmean_quantize(w, per_channel=per_channel)
    assert_equal(s, rs, f"scale [{isa}]")
    assert_equal(wq, rwq, f"codes [{isa}]")


@pytest.mark.parametrize("shape", [(1, 16), (33, 208), (130, 2560)], ids=lambda s: "N{}_K{}".format(*s))
def test_isa_pack_unpack_dequantize(isa, threads, shape):
    codes = rand_codes(shape, seed=shape[1])
    wq = bx.pack(codes)
    assert_equal(wq, ref.pack(codes), f"pack [{isa}]")
    assert_equal(bx.unpack(wq), codes, f"unpack [{isa}]")
    s = make_scale("row", shape[0])
    for dt in (mx.float32, mx.float16, mx.bfloat16):
        assert_equal(bx.dequantize(wq, s, dtype=dt), ref.dequantize(wq, s, dtype=dt), f"dequantize {dt} [{isa}]")


# ---------------------------------------------------------------------------
# the bitnet_ext.cpu controls


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def test_supported_isas_names():
    isas = supported_isas()
    assert isas, "no ISA supported"
    assert "scalar" in isas
    assert len(set(isas)) == len(isas)
    assert set(isas) <= set(ISA_ORDER), isas
    assert bx.cpu.active_isa() in isas


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only")
def test_supported_isas_match_cpu_x86():
    """Exactly the levels this CPU can run are offered (all are built on x86-64)."""
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo")
    can = {"scalar"}
    if {"avx2", "fma", "f16c"} <= flags:
        can.add("avx2")
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            can.add("avx512")
            if "avx512_vnni" in flags:
                can.add("avx512_vnni")
                if "avx512_bf16" in flags:
                    can.add("avx512_bf16")
                # Linux grants the tile state on request (arch_prctl), as the level does.
                if {"amx_tile", "amx_int8", "amx_bf16"} <= flags:
                    can.add("avx512_amx")
    assert set(supported_isas()) == can


@pytest.mark.skipif(platform.machine() not in ("arm64", "aarch64"), reason="arm64 only")
def test_supported_isas_arm64():
    assert {"scalar", "neon"} <= set(supported_isas())


def test_default_isa_is_best():
    if "BITNET_EXT_ISA" in os.environ:
        pytest.skip("BITNET_EXT_ISA is set")
    bx.cpu.reset_isa()
    isas = supported_isas()
    best = max(isas, key=ISA_ORDER.index)
    assert bx.cpu.active_isa() == best


def test_set_isa_and_reset():
    default = bx.cpu.active_isa()
    for name in supported_isas():
        bx.cpu.set_isa(name)
        assert bx.cpu.active_isa() == name
    bx.cpu.reset_isa()
    assert bx.cpu.active_isa() == default


@pytest.mark.parametrize("name", ["bogus", "AVX3", ""])
def test_set_isa_unknown_name(name):
    before = bx.cpu.active_isa()
    with pytest.raises(ValueError, match=r"(?i)\bisa\b|scalar"):
        bx.cpu.set_isa(name)
    assert bx.cpu.active_isa() == before


def test_set_isa_unsupported_level():
    unsupported = [n for n in ISA_ORDER if n not in supported_isas()]
    if not unsupported:
        pytest.skip("this machine runs every level")
    before = bx.cpu.active_isa()
    for name in unsupported:
        with pytest.raises(ValueError, match=name):
            bx.cpu.set_isa(name)
    assert bx.cpu.active_isa() == before


def test_num_threads_controls():
    old = bx.cpu.num_threads()
    assert isinstance(old, int) and old >= 1
    try:
        for n in (1, 2, 3):
            bx.cpu.set_num_threads(n)
            assert bx.cpu.num_threads() == n
    finally:
        bx.cpu.set_num_threads(old)


def test_environment_variables():
    """BITNET_EXT_ISA and BITNET_EXT_NUM_THREADS pick the level and threads at start."""
    code = """
        import json, bitnet_ext as bx
        print(json.dumps([bx.cpu.active_isa(), bx.cpu.num_threads()]))
        bx.cpu.reset_isa()
        print(json.dumps([bx.cpu.active_isa()]))
    """
    isas = supported_isas()
    for name in dict.fromkeys(["scalar", max(isas, key=ISA_ORDER.index)]):
        proc = run_python(code, env={"BITNET_EXT_ISA": name, "BITNET_EXT_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("[")]
        assert lines[0] == [name, 1], f"BITNET_EXT_ISA={name}: {lines}"
        assert lines[1] == [name], "reset_isa() must return to the environment's choice"
