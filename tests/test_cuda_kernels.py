"""The hand-written CUDA kernels (csrc/gpu/cuda/kernels/) against bitnet_ext.reference, on an NVIDIA GPU.

Every kernel variant runs through its own plan (csrc/gpu/launch_plan_cuda_variants.h,
``params["variant"]``) whatever the CUDA plans would choose for the shape, and
the CUDA backend's plans (csrc/gpu/launch_plan_cuda.h, ``plans="cuda"``) run
over the same cases. Integer paths (bitlinear) must be bit-identical to the
reference; ternary_matmul within the float32-accumulation tolerance of
tests/test_metal_harness.py. Shapes: M and N of 1, tails of N around the
16-row tiles, of M around the 8 columns of an MMA and the GEMM tiles, of K
around the 256-k steps and the 64-byte GEMM slabs, K % 64 != 0 (the
word-load path), large K. Each case runs twice and must give the same bytes.

Skipped without an NVIDIA GPU or without the _metal_cuda module
(tests/cuda/run_on_gpu.sh and tests/cuda/run_cuda_kernels.sh build it on the lent GPU machine).
"""

import importlib
import os
import pathlib
import sys
import types

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_metal_on_cuda import _import_cuda_target, _nvidia_gpu  # noqa: E402  (skips the module without a GPU)

if not _nvidia_gpu():
    pytest.skip("no NVIDIA GPU here", allow_module_level=True)
C = _import_cuda_target()
if C is None:
    pytest.skip("the CUDA target is not built", allow_module_level=True)

import mlx.core as mx  # noqa: E402

mx.set_default_device(mx.cpu)

# The data and comparison helpers of the shader suite (not its tests).
_suite = types.ModuleType("metal_suite_helpers")
_suite.__file__ = str(ROOT / "tests" / "test_metal_harness.py")
_suite.H = C
exec(compile(pathlib.Path(_suite.__file__).read_text(), _suite.__file__, "exec"), _suite.__dict__)
S = _suite
ref = S.ref
DTYPES = S.DTYPES


WGMMA = C.wgmma_available()  # sm_90a code built and a compute capability 9.0 GPU (launch_plan_cuda.cpp)


def run_cuda(kind, params, inputs, out_specs):
    """The CUDA plan (or params['variant']) twice; both runs must give the same bytes."""
    if params.get("variant", "").startswith("wgmma") and not WGMMA:
        pytest.skip("wgmma GEMMs: sm_90a code on a compute capability 9.0 GPU only")
    raw_in = [S.to_raw(a) for a in inputs]
    results = []
    for _ in range(2):
        outs = [S.raw_empty(s, d) for s, d in out_specs]
        C.run_plan(kind, params, raw_in, outs, plans="cuda")
        results.append(outs)
    for j, (a, b) in enumerate(zip(*results)):
        assert a.tobytes() == b.tobytes(), f"{kind} {params}: output {j} differs between two launches (a race)"
    return [S.from_raw(o, d) for o, (_, d) in zip(results[0], out_specs)]


def kernels_of(kind, params):
    return [line.split()[0] for line in C.describe_cuda_plan(kind, params).splitlines() if not line.startswith(" ")
            and not line.startswith("temp ")]


# ---------------------------------------------------------------------------
# ternary_matmul, transpose=True, float16 / bfloat16: GEMV (M small) and GEMM


def check_ternary(M, N, K, dtype_name, per_row, variant=None, seed=0, nonfinite=None, raw_words=False):
    dtype = DTYPES[dtype_name]
    x = S.randn((M, K), dtype, seed)
    if nonfinite:
        x = S.with_nonfinite(x, nonfinite, seed)
    wq = S.random_words((N, K // 16), seed + 1) if raw_words else ref.pack(S.rand_codes((N, K), seed + 1))
    codes = ref.unpack(wq)
    scale = S.make_scale(per_row, N, seed)
    params = dict(M=M, N=N, K=K, dtype=dtype_name, per_row_scale=per_row)
    if variant:
        params["variant"] = variant
    (y,) = run_cuda("ternary_matmul", params, [x, wq, scale.reshape(-1)], [((M, N), dtype)])
    expected = ref.ternary_matmul(x, wq, scale)
    S.assert_close_nonfinite(y, expected, S.matmul_sumsq(x, codes, scale, True), K, dtype_name,
                             f"ternary_matmul {params} nonfinite={nonfinite} raw_words={raw_words}")


GEMV_SHAPES = [
    (1, 1, 16),
    (1, 9, 48),
    (1, 37, 2048 + 64),  # 8 full steps + a partial one, K % 64 == 0 (16-byte loads)
    (1, 13, 2048 + 16),  # K % 64 != 0: word loads
    (1, 70, 6912),
    (2, 33, 2560),
    (3, 21, 6912),
    (8, 17, 4096),
    (9, 40, 1024),  # a second block row of x (grid.y = 2)
    (16, 65, 528),
    (40, 33, 2112),  # 5 block rows of x (the GEMV serves M <= 64)
    (64, 17, 2064),
    (1, 5, 16384 + 64),
]


# 4, 8 or 16 warps splitting K (gemv, gemvw8, gemvw16) times 1, 2 or 4 tiles of W per block; and W in
# a shared-memory ring of 8 or 4 steps (launch_plan_cuda.cpp's ring_suffix: the combinations built).
RING_VARIANTS = ["gemva8_r1", "gemva4_r2", "gemvw8a4_r1"]
GEMV_VARIANTS = [f"{family}_r{r}" for family in ("gemv", "gemvw8", "gemvw16") for r in (1, 2, 4)] + RING_VARIANTS
# The fused M = 1 BitLinear: the same warps, tiles and rings.
FUSED_VARIANTS = [v.replace("gemv", "fused") for v in GEMV_VARIANTS]


@pytest.mark.parametrize("variant", GEMV_VARIANTS)
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K", GEMV_SHAPES, ids=str)
def test_ternary_gemv(M, N, K, dtype_name, variant):
    check_ternary(M, N, K, dtype_name, per_row=(N % 2 == 1), variant=variant)


GEMM_SHAPES = S.GEMM_SHAPES + [(130, 260, 1040), (256, 128, 64)]  # the shader suite's, and tiles of 128


GEMM_VARIANTS = ["gemm_bm64", "gemm_bm128", "gemmw4_bm64", "gemmw4_bm128"]  # 8 and 4 warps
# W decoded in registers (mma_gemm.cu), one per tile of launch_plan_cuda.cpp's kMmaTiles.
# mmas_t<i>: the same with the tail tiles splitting K as the plans do.
MMA_VARIANTS = ["mma_t0", "mma_t1", "mmas_t0", "mmas_t1"]
# Hopper's wgmma (wgmma_gemm.cuh), one per tile of launch_plan_cuda.cpp's kWgmmaTiles; wgmmas_t<i> split K.
WGMMA_VARIANTS = [f"{f}_t{i}" for f in ("wgmma", "wgmmas") for i in range(3)]
GEMM_VARIANTS += MMA_VARIANTS + WGMMA_VARIANTS


@pytest.mark.parametrize("variant", GEMM_VARIANTS)
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES, ids=str)
def test_ternary_gemm(M, N, K, dtype_name, variant):
    check_ternary(M, N, K, dtype_name, per_row=(M % 2 == 1), variant=variant)


# Tails of the wgmma tiles (128 rows of W x 256 or 128 rows of x) in M, N and K; K % 64 != 0 (W by
# plain loads); K long enough that the wgmmas_t<i> plans split it.
WGMMA_SHAPES = [(255, 129, 1040), (257, 127, 2064), (300, 260, 4096 + 64), (129, 300, 6912), (513, 136, 528)]


@pytest.mark.parametrize("variant", WGMMA_VARIANTS)
@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("M,N,K", WGMMA_SHAPES, ids=str)
def test_ternary_wgmma(M, N, K, dtype_name, variant):
    check_ternary(M, N, K, dtype_name, per_row=(N % 2 == 1), variant=variant, seed=M + K)


@pytest.mark.parametrize("kind", list(S.NONFINITE))
@pytest.mark.parametrize("variant,M,N,K", [("wgmma_t0", 33, 40, 48), ("wgmmas_t2", 260, 9, 4096),
                                           ("gemv_r1", 1, 9, 48), ("gemv_r2", 3, 40, 2048 + 64),
                                           ("gemva8_r1", 1, 9, 2048), ("gemvw8a4_r1", 3, 40, 2048 + 64),
                                           ("gemm_bm64", 33, 40, 48), ("gemm_bm128", 20, 9, 96),
                                           ("gemmw4_bm64", 33, 40, 48), ("gemmw4_bm128", 20, 9, 96),
                                           ("mma_t0", 33, 40, 48), ("mmas_t1", 20, 9, 96)], ids=str)
def test_ternary_nonfinite_activations(variant, M, N, K, kind):
    """inf * 0 = NaN in the tensor cores too: NaN and inf exactly where the reference has them."""
    check_ternary(M, N, K, "float16", per_row=True, variant=variant, seed=M + N, nonfinite=kind)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
@pytest.mark.parametrize("variant,M,N,K", [("gemv_r1", 1, 21, 6912), ("gemv_r4", 5, 70, 2064),
                                           ("gemm_bm64", 33, 40, 528), ("gemm_bm128", 70, 9, 6912),
                                           ("mma_t0", 33, 40, 528), ("mmas_t1", 70, 9, 6912),
                                           ("wgmma_t1", 300, 40, 528), ("wgmmas_t2", 70, 9, 6912)], ids=str)
def test_ternary_random_words(variant, M, N, K, dtype_name):
    """Arbitrary words: code 3 reads as +2 in the LOP3/FMA decode as in the reference."""
    check_ternary(M, N, K, dtype_name, per_row=False, variant=variant, seed=3 * M + K, raw_words=True)


# ---------------------------------------------------------------------------
# bitlinear: exact int8 GEMV (fused at M = 1, or quantize + GEMV) and GEMM


def check_bitlinear(M, N, K, dtype_name, per_row, has_bias, variant=None, nonfinite=None, raw_words=False, x=None,
                    wq=None, scale=None):
    dtype = DTYPES[dtype_name]
    if x is None:
        x = S.randn((M, K), dtype, M + N + K)
        if nonfinite:
            x = S.with_nonfinite(x, nonfinite, K)
    if wq is None:
        wq = S.random_words((N, K // 16), N) if raw_words else ref.pack(S.rand_codes((N, K), N))
    if scale is None:
        scale = S.make_scale(per_row, N, K)
    inputs = [x, wq, scale.reshape(-1)]
    bias = None
    if has_bias:
        bias = S.randn((N,), mx.float32, 99)
        inputs.append(bias)
    params = dict(M=M, N=N, K=K, dtype=dtype_name, per_row_scale=per_row, has_bias=has_bias)
    if variant:
        params["variant"] = variant
    (y,) = run_cuda("bitlinear", params, inputs, [((M, N), dtype)])
    S.assert_equal(y, ref.bitlinear(x, wq, scale, bias=bias), f"bitlinear {params} {nonfinite} raw_words={raw_words}")


BITLINEAR_GEMV_SHAPES = [
    (1, 1, 16),
    (1, 19, 2560),
    (1, 10, 6912),
    (1, 33, 2064),  # K % 64 != 0
    (1, 5, 16384 + 16),
    (3, 9, 80),
    (8, 17, 2064),
    (11, 6, 512),
    (16, 33, 1040),
    (40, 19, 1040),
    (64, 9, 2112),
]


@pytest.mark.parametrize("variant", GEMV_VARIANTS + FUSED_VARIANTS)
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,N,K", BITLINEAR_GEMV_SHAPES, ids=str)
def test_bitlinear_gemv(M, N, K, dtype_name, variant):
    if variant.startswith("fused") and M != 1:
        pytest.skip("the fused kernel is the M = 1 plan only (variants.bitlinear_gemv rejects M > 1)")
    check_bitlinear(M, N, K, dtype_name, per_row=N % 2 == 1, has_bias=(M + N) % 2 == 1, variant=variant)


BITLINEAR_GEMM_SHAPES = [
    (17, 5, 16),
    (40, 37, 96),
    (64, 33, 6912),
    (130, 70, 528),
    (65, 129, 2064),
    (256, 128, 64),
]


@pytest.mark.parametrize("variant", GEMM_VARIANTS)
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,N,K", BITLINEAR_GEMM_SHAPES, ids=str)
def test_bitlinear_gemm(M, N, K, dtype_name, variant):
    check_bitlinear(M, N, K, dtype_name, per_row=N % 2 == 1, has_bias=M % 2 == 1, variant=variant)


@pytest.mark.parametrize("variant", WGMMA_VARIANTS)
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,N,K", WGMMA_SHAPES, ids=str)
def test_bitlinear_wgmma(M, N, K, dtype_name, variant):
    check_bitlinear(M, N, K, dtype_name, per_row=N % 2 == 1, has_bias=M % 2 == 1, variant=variant)


BITLINEAR_VARIANT_CASES = [("fused_r1", 1, 7, 2560), ("gemv_r1", 1, 5, 16384 + 16), ("gemv_r2", 6, 9, 80),
                           ("fuseda8_r1", 1, 7, 2560), ("gemva4_r2", 3, 40, 4096), ("fusedw8a4_r1", 1, 5, 2064),
                           ("gemm_bm64", 40, 37, 96), ("gemm_bm128", 20, 9, 2064), ("gemmw4_bm64", 40, 37, 96),
                           ("gemmw4_bm128", 20, 9, 2064), ("mma_t0", 40, 37, 96), ("mmas_t0", 130, 9, 2064),
                           ("mmas_t1", 20, 300, 6912), ("wgmma_t0", 300, 37, 96), ("wgmmas_t2", 130, 9, 6912)]


@pytest.mark.parametrize("kind", list(S.NONFINITE))
@pytest.mark.parametrize("variant,M,N,K", BITLINEAR_VARIANT_CASES, ids=str)
def test_bitlinear_nonfinite_activations(variant, M, N, K, kind):
    check_bitlinear(M, N, K, "float32", True, True, variant=variant, nonfinite=kind)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
@pytest.mark.parametrize("variant,M,N,K", BITLINEAR_VARIANT_CASES, ids=str)
def test_bitlinear_random_words(variant, M, N, K, dtype_name):
    check_bitlinear(M, N, K, dtype_name, True, True, variant=variant, raw_words=True)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["plus", "minus"])
@pytest.mark.parametrize("variant,M,K", [("fused_r1", 1, 16384), ("gemv_r1", 1, 65536), ("gemv_r4", 8, 4096),
                                         ("fuseda8_r1", 1, 16384), ("gemva4_r2", 8, 65536),
                                         ("gemm_bm64", 17, 4096), ("gemm_bm128", 40, 65536),
                                         ("gemmw4_bm128", 40, 65536), ("mma_t0", 40, 65536), ("mmas_t0", 40, 65536),
                                         ("wgmma_t0", 40, 65536), ("wgmmas_t2", 300, 65536)],
                         ids=str)
def test_bitlinear_is_exact_at_the_bound(variant, M, K, sign):
    """Every code 3 (+2) and every activation at +-127 after quantization: the largest |acc|, 254 K."""
    N = 5
    rows = np.where(np.arange(M) % 2 == 0, sign, -sign).astype(np.float32)
    x = mx.array(np.repeat(rows[:, None], K, axis=1))
    wq = mx.array(np.full((N, K // 16), 0xFFFFFFFF, np.uint32))
    check_bitlinear(M, N, K, "float32", False, False, variant=variant, x=x, wq=wq, scale=mx.array([0.5]))


@pytest.mark.parametrize("variant", ["fused_r1", "fuseda8_r1", "gemvw16_r1"])
@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
@pytest.mark.parametrize("K", [16, 64, 80, 272, 2560, 4112 + 4096])
def test_bitlinear_quantizer_adversarial_max_positions(K, dtype_name, variant):
    """The absmax and sum reductions (fused: 128 threads; the decode quantizer: K / 4 threads up to 1024, so
    several units per thread at the largest K) with the spike at every boundary."""
    N = 9
    wq = ref.pack(S.rand_codes((N, K), K))
    scale = S.make_scale(True, N, K)
    rows = S.spike_rows(K, DTYPES[dtype_name], 3 * K)
    for i in range(rows.shape[0]):
        check_bitlinear(1, N, K, dtype_name, True, False, variant=variant, x=rows[i : i + 1], wq=wq, scale=scale)


# ---------------------------------------------------------------------------
# The CUDA plans themselves (what launch_plan_cuda.cpp chooses), and coverage


PLAN_CASES = [
    ("ternary_matmul", dict(M=1, N=17408, K=5120, dtype="bfloat16"), "cuda_ternary_gemv_bfloat16_r2_a4"),
    ("ternary_matmul", dict(M=1, N=13824, K=2560, dtype="bfloat16"), "cuda_ternary_gemv_bfloat16_r2"),
    ("ternary_matmul", dict(M=1, N=640, K=2560, dtype="bfloat16"), "cuda_ternary_gemv_bfloat16_r1_w16"),
    ("ternary_matmul", dict(M=1, N=6912, K=2560, dtype="bfloat16"), "cuda_ternary_gemv_bfloat16_r1"),
    ("ternary_matmul", dict(M=9, N=2560, K=2560, dtype="bfloat16"), "cuda_ternary_gemv_bfloat16_r2"),
    ("ternary_matmul", dict(M=4, N=2560, K=2560, dtype="float16"), "cuda_ternary_gemv_float16_r1_w8"),
    ("ternary_matmul", dict(M=512, N=2560, K=2560, dtype="bfloat16"),
     "cuda_ternary_mma_bfloat16_bm128_bn128_w4_s4_split"),  # 80 tiles: K split 2 ways
    ("ternary_matmul", dict(M=512, N=17408, K=5120, dtype="bfloat16"), "cuda_ternary_mma_bfloat16_bm128_bn128_w4_s4"),
    ("ternary_matmul", dict(M=128, N=17408, K=5120, dtype="float16"), "cuda_ternary_mma_float16_bm64_bn128_w4_s4"),
    ("ternary_matmul", dict(M=4, N=64, K=256, dtype="float32"), "ternary_gemv_t_float32_bm4"),
    ("ternary_matmul", dict(M=4, N=64, K=256, dtype="float16", transpose=False), "ternary_gemv_n_float16_bm4"),
    ("bitlinear", dict(M=1, N=2560, K=2560, dtype="bfloat16"), "cuda_bitlinear_fused_bfloat16_r1_w16"),
    ("bitlinear", dict(M=1, N=640, K=2560, dtype="float16"), "cuda_bitlinear_fused_float16_r1_w16"),
    ("bitlinear", dict(M=2, N=2560, K=2560, dtype="bfloat16"), "cuda_bitlinear_gemv_bfloat16_r1_w16"),
    ("bitlinear", dict(M=8, N=2560, K=6912, dtype="bfloat16"), "cuda_bitlinear_gemv_bfloat16_r1_w16"),
    ("bitlinear", dict(M=1, N=13824, K=2560, dtype="bfloat16"), "cuda_bitlinear_fused_bfloat16_r2"),
    ("bitlinear", dict(M=1, N=17408, K=5120, dtype="bfloat16"), "cuda_bitlinear_fused_bfloat16_r2"),
    ("bitlinear", dict(M=1, N=6912, K=2560, dtype="bfloat16"), "cuda_bitlinear_fused_bfloat16_r2_w8"),
    ("bitlinear", dict(M=1, N=2560, K=6912, dtype="float32"), "cuda_bitlinear_fused_float32_r2_w16"),
    ("bitlinear", dict(M=2, N=17408, K=5120, dtype="bfloat16"), "cuda_bitlinear_gemv_bfloat16_r2"),
    ("bitlinear", dict(M=16, N=2560, K=6912, dtype="bfloat16"), "cuda_bitlinear_gemv_bfloat16_r1"),
    ("bitlinear", dict(M=64, N=2560, K=6912, dtype="bfloat16"), "cuda_bitlinear_gemv_bfloat16_r2"),
    ("ternary_matmul", dict(M=64, N=2560, K=2560, dtype="bfloat16"), "cuda_ternary_gemv_bfloat16_r4"),
    ("ternary_matmul", dict(M=65, N=2560, K=2560, dtype="bfloat16"), "cuda_ternary_mma_bfloat16_bm64_bn128_w4_s4"),
    ("bitlinear", dict(M=512, N=6912, K=2560, dtype="float16"), "cuda_bitlinear_mma_float16_bm128_bn128_w4_s4"),
    ("bitlinear", dict(M=2048, N=2560, K=6912, dtype="float32"), "cuda_bitlinear_mma_float32_bm128_bn128_w4_s4"),
    ("bitlinear", dict(M=512, N=6912, K=2560, dtype="bfloat16"), "cuda_absmax_quantize_quad_vec_bfloat16"),
    ("bitlinear", dict(M=100, N=64, K=8192 + 16, dtype="float32"), "cuda_absmax_quantize_quad_float32"),
]


# From M = 128 on a 9.0 GPU (sm_90a build), the wgmma GEMMs instead (launch_plan_cuda.cpp's kWgmmaMinM).
WGMMA_PLAN_CASES = [
    ("ternary_matmul", dict(M=512, N=2560, K=2560, dtype="bfloat16"), "cuda_ternary_wgmma_bfloat16_bx128_s5"),
    ("ternary_matmul", dict(M=2048, N=17408, K=5120, dtype="float16"), "cuda_ternary_wgmma_float16_bx256_s4"),
    ("bitlinear", dict(M=512, N=6912, K=2560, dtype="bfloat16"), "cuda_bitlinear_wgmma_bfloat16_bx256_s4"),
    ("bitlinear", dict(M=2048, N=2560, K=6912, dtype="float32"), "cuda_bitlinear_wgmma_float32_bx128_s5"),
    ("bitlinear", dict(M=512, N=2560, K=6912, dtype="bfloat16"), "cuda_bitlinear_wgmma_bfloat16_bx128_s4_split"),
    ("ternary_matmul", dict(M=512, N=2560, K=6912, dtype="bfloat16"), "cuda_ternary_wgmma_bfloat16_bx128_s4_split"),
    ("bitlinear", dict(M=127, N=2560, K=2560, dtype="bfloat16"), "cuda_bitlinear_mma_bfloat16_bm64_bn128_w4_s4"),
    ("ternary_matmul", dict(M=128, N=2560, K=6912, dtype="bfloat16"), "cuda_ternary_wgmma_bfloat16_bx128_s4_split"),
]


@pytest.mark.parametrize("kind,params,kernel", PLAN_CASES, ids=str)
def test_cuda_plan_choice(kind, params, kernel):
    if WGMMA and "_mma_" in kernel and params["M"] >= 128:
        pytest.skip("the wgmma GEMMs serve this M here (WGMMA_PLAN_CASES)")
    assert kernel in kernels_of(kind, params), C.describe_cuda_plan(kind, params)


@pytest.mark.parametrize("kind,params,kernel", WGMMA_PLAN_CASES, ids=str)
def test_cuda_plan_choice_wgmma(kind, params, kernel):
    if not WGMMA:
        pytest.skip("no sm_90a code or not a compute capability 9.0 GPU")
    assert kernel in kernels_of(kind, params), C.describe_cuda_plan(kind, params)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,N,K", [(1, 19, 2560), (5, 70, 2064), (40, 37, 96), (70, 33, 528)], ids=str)
def test_cuda_plans_match_the_reference(M, N, K, dtype_name):
    """No variant named: the plans launch_plan_cuda.cpp makes (shim kernels for float32 ternary_matmul)."""
    check_bitlinear(M, N, K, dtype_name, per_row=True, has_bias=True)
    check_ternary(M, N, K, dtype_name, per_row=False)


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("M,N,K", [(300, 1000, 4096), (512, 2560, 6912), (256, 640, 2560), (2049, 300, 2064)],
                         ids=str)
def test_cuda_plans_split_k(M, N, K, dtype_name):
    """Shapes whose last wave of GEMM tiles splits K (launch_plan_cuda.cpp's mma_launch), through the plans."""
    check_bitlinear(M, N, K, dtype_name, per_row=True, has_bias=True)
    if dtype_name != "float32":
        check_ternary(M, N, K, dtype_name, per_row=True)


def test_every_cuda_kernel_ran():
    """Keep last: every kernel registered from csrc/gpu/cuda/kernels/ was executed by the tests above."""
    ours = {name for name, path in C.kernel_sources() if "/csrc/gpu/cuda/kernels/" in path.replace(os.sep, "/")
            and (WGMMA or "_wgmma_" not in name)}
    assert ours, "no hand-written CUDA kernel is registered"
    missing = sorted(ours - set(C.executed_kernels()))
    assert not missing, f"never executed: {missing}"
