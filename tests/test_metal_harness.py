"""The Metal shaders (kernels/*.metal), executed on the CPU by the shader harness.

Every kernel runs through the shared launch plan (csrc/gpu/launch_plan.h, the
same one the Metal eval_gpu uses) and is compared with ``bitnet_ext.reference``
over shape sweeps with tails, K = 6912, M = 1 and every dtype. Each case runs
under three fiber orders (forward, reverse, shuffled) whose outputs must be
bitwise equal (a race between threads shows up as a difference). The last test
checks that every ``[[kernel]]`` in kernels/ was executed.

Nothing here runs on a GPU: see docs/metal_harness.md for what this verifies.
tests/test_metal_on_cuda.py executes this file a second time with the CUDA
target of the harness (the same shaders compiled by nvcc, run on an NVIDIA GPU)
injected as ``H``: the case lists below are shared by both targets.
"""

import importlib
import importlib.util
import math
import os
import pathlib
import re
import sys

import mlx.core as mx
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ORDERS = ("forward", "reverse", "shuffled")


def _import_harness():
    """bitnet_ext._metal_harness, or a standalone build (BITNET_METAL_HARNESS_DIR, build/harness)."""
    candidates = [os.environ.get("BITNET_METAL_HARNESS_DIR")]
    for d in candidates:
        if d and list(pathlib.Path(d).glob("_metal_harness*")):
            sys.path.insert(0, str(d))
            return importlib.import_module("_metal_harness")
    try:
        return importlib.import_module("bitnet_ext._metal_harness")
    except Exception:
        pass
    d = ROOT / "build" / "harness"
    if list(d.glob("_metal_harness*")):
        sys.path.insert(0, str(d))
        return importlib.import_module("_metal_harness")
    return None


def _import_reference():
    try:
        return importlib.import_module("bitnet_ext.reference")
    except Exception:
        # The package may be mid-rebuild; the reference is pure MLX, load it by path.
        spec = importlib.util.spec_from_file_location("_bx_reference", ROOT / "python/bitnet_ext/reference.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


# The target: injected by tests/test_metal_on_cuda.py, else the CPU fiber harness.
H = globals().get("H") or _import_harness()
if H is None:
    _why = (
        "the CPU shader harness (bitnet_ext._metal_harness) is not built (the user wheel leaves it out): "
        "pip install . -Ccmake.define.BITNET_EXT_BUILD_METAL_HARNESS=ON, "
        "or cmake -S csrc/harness -B build/harness && cmake --build build/harness -j2"
    )
    # CI sets BITNET_EXT_REQUIRE_HARNESS=1 after building it: there a skip would hide every shader test.
    if os.environ.get("BITNET_EXT_REQUIRE_HARNESS") == "1":
        pytest.fail(f"BITNET_EXT_REQUIRE_HARNESS=1 but {_why}", pytrace=False)
    pytest.skip(_why, allow_module_level=True)
ref = _import_reference()

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
U = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


# ---------------------------------------------------------------------------
# MLX <-> raw NumPy (bfloat16 travels as uint16 bits)


def to_raw(a):
    if a.dtype == mx.bfloat16:
        return np.ascontiguousarray(np.array(a.view(mx.uint16)))
    return np.ascontiguousarray(np.array(a))


def raw_empty(shape, dtype):
    np_dtype = {
        mx.float32: np.float32,
        mx.float16: np.float16,
        mx.bfloat16: np.uint16,
        mx.int8: np.int8,
        mx.uint32: np.uint32,
    }[dtype]
    return np.empty(shape, np_dtype)


def from_raw(r, dtype):
    if dtype == mx.bfloat16:
        return mx.array(r).view(mx.bfloat16)
    return mx.array(r)


def run(kind, params, inputs, out_specs):
    """Run a primitive's plan under the three fiber orders (on the CUDA target: three
    launches); outputs must agree bitwise.

    inputs: MLX arrays in the primitive's order. out_specs: [(shape, mx dtype)].
    Returns the outputs as MLX arrays.
    """
    raw_in = [to_raw(a) for a in inputs]
    results = []
    for i, order in enumerate(ORDERS):
        outs = [raw_empty(s, d) for s, d in out_specs]
        H.run_plan(kind, params, raw_in, outs, order=order, seed=1000 + i)
        results.append(outs)
    for order, outs in zip(ORDERS[1:], results[1:]):
        for j, (a, b) in enumerate(zip(results[0], outs)):
            if a.tobytes() != b.tobytes():
                bad = int(np.sum(a.view(np.uint8) != b.view(np.uint8)))
                pytest.fail(f"{kind} {params}: output {j} differs between the forward and {order} runs ({bad} bytes; "
                            f"fiber orders on the CPU, repeated launches on a GPU): a race between threads")
    return [from_raw(o, d) for o, (_, d) in zip(results[0], out_specs)]


# ---------------------------------------------------------------------------
# data and comparisons


def randn(shape, dtype, seed):
    return mx.random.normal(shape, key=mx.random.key(seed)).astype(dtype)


def rand_codes(shape, seed):
    return mx.random.randint(-1, 2, shape, key=mx.random.key(seed)).astype(mx.int8)


def make_scale(per_row, N, seed):
    shape = (N,) if per_row else ()
    return mx.random.uniform(0.05, 1.5, shape, key=mx.random.key(seed + 7919))


def f64(a):
    return np.array(a.astype(mx.float32)).astype(np.float64)


def assert_equal(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if mx.array_equal(actual, expected, equal_nan=True).item():  # NaN where the reference has NaN
        return
    a, e = np.array(actual.astype(mx.float32) if actual.dtype == mx.bfloat16 else actual), np.array(
        expected.astype(mx.float32) if expected.dtype == mx.bfloat16 else expected
    )
    bad = np.argwhere(~((a == e) | (np.isnan(a) & np.isnan(e))))
    first = [(tuple(int(i) for i in idx), a[tuple(idx)], e[tuple(idx)]) for idx in bad[:5]]
    pytest.fail(f"{what}: {len(bad)} of {a.size} values differ; first (index, actual, expected): {first}")


def assert_close(actual, expected, sumsq, R, dtype_name, what, C=16.0):
    """float32-accumulation tolerance (as tests/conftest.py's assert_close)."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    a, e = f64(actual), f64(expected)
    atol = C * 2.0**-24 * math.sqrt(max(R, 1)) * np.sqrt(sumsq)
    if dtype_name == "float16":
        atol = atol + 2.0**-24
    tol = atol + 2 * U[dtype_name] * np.abs(e)
    err = np.abs(a - e)
    bad = ~(err <= tol)
    if bad.any():
        idx = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(tol, 1e-300), -1)), err.shape)
        pytest.fail(f"{what}: {int(bad.sum())} of {a.size} out of tolerance; worst at {idx}: actual {a[idx]!r}, "
                    f"expected {e[idx]!r}, tol {tol[idx]:.3e}")


def assert_close_nonfinite(actual, expected, sumsq, R, dtype_name, what):
    """NaN, +inf and -inf exactly where the reference has them; the finite values within tolerance."""
    a, e = f64(actual), f64(expected)
    for name, where in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        if not np.array_equal(where(a), where(e)):
            pytest.fail(f"{what}: {name} at {np.argwhere(where(a))[:5].tolist()}..., "
                        f"the reference at {np.argwhere(where(e))[:5].tolist()}...")
    finite = np.isfinite(e)
    zero = mx.array(0, actual.dtype)
    mask = mx.array(finite)
    assert_close(mx.where(mask, actual, zero), mx.where(mask, expected, zero),
                 np.where(finite, np.nan_to_num(sumsq, posinf=0.0), 0.0), R, dtype_name, what)


# Non-finite activations: each kind is put into every row but the last (which
# stays finite), at the first or last element, around a word boundary or at a
# seeded position.
NONFINITE = {"nan": [math.nan], "inf": [math.inf], "-inf": [-math.inf], "inf-inf": [math.inf, -math.inf],
             "nan-inf": [math.nan, math.inf]}


def with_nonfinite(x, kind, seed):
    a = np.array(x.astype(mx.float32))
    M, K = a.shape
    rng = np.random.default_rng(seed)
    for m in range(max(M - 1, 1)):
        for j, v in enumerate(NONFINITE[kind]):
            pos = [0, K - 1, min(15, K - 1), min(16, K - 1), int(rng.integers(K))][(m + 2 * j) % 5]
            a[m, pos] = v
    return mx.array(a).astype(x.dtype)


def random_words(shape, seed):
    """Arbitrary uint32 words: code 3 (never packed) reads as +2 everywhere."""
    return mx.array(np.random.default_rng(seed).integers(0, 2**32, shape, dtype=np.uint64).astype(np.uint32))


def matmul_sumsq(x, codes, scale, transpose):
    """Sum of squared terms of each output, counting the kernels' x * code and -x terms."""
    x2 = f64(x) ** 2
    N = codes.shape[0]
    s = f64(scale).reshape(-1)
    s2 = np.broadcast_to(s, (N,))[:, None] ** 2
    c = f64(codes) + 1
    w2 = (c**2 + 1) * s2  # (N, K)
    return x2 @ (w2.T if transpose else w2)


def plan_gemm_tiles(op):
    """Every GEMM tile (BM, BN) the launch plans can choose for op, from their kernel names."""
    pattern = re.compile(rf"^{op}_float32_bm(\d+)_bn(\d+)$")
    return sorted({tuple(int(v) for v in m.groups()) for m in map(pattern.search, H.plan_kernel_names()) if m})


GEMM_TILES = plan_gemm_tiles("ternary_gemm_t")
assert GEMM_TILES == plan_gemm_tiles("ternary_gemm_n"), "the two float GEMMs have the same tiles"
INT8_GEMM_TILES = plan_gemm_tiles("bitlinear_gemm")


def gemm_tile(tile):
    """Plan parameters forcing a GEMM tile (None: the plan's own choice)."""
    return {} if tile is None else dict(gemm_bm=tile[0], gemm_bn=tile[1])


# ---------------------------------------------------------------------------
# ternary_matmul (GEMV decode, wide GEMV, GEMM prefill; both transpose modes)

# (M, N, K): M = 1 and small M (every bm variant), N tails around the 8 rows of a
# threadgroup, K tails around the 128-word block, K = 6912 (BitNet 2B FFN).
MATMUL_T_SHAPES = [
    (1, 1, 16),
    (1, 9, 48),
    (1, 37, 2048 + 64),  # one full block + a 4-word tail
    (1, 13, 2048 + 16),  # words % 4 != 0
    (1, 21, 6912),
    (3, 8, 6912),
    (4, 11, 80),
    (5, 7, 2064),
    (8, 17, 4096),
    (13, 10, 1024),
]


def check_matmul(M, N, K, dtype_name, transpose, per_row, seed=0, nonfinite=None, raw_words=False, tile=None):
    dtype = DTYPES[dtype_name]
    x = randn((M, K if transpose else N), dtype, seed)
    if nonfinite:
        x = with_nonfinite(x, nonfinite, seed)
    wq = random_words((N, K // 16), seed + 1) if raw_words else ref.pack(rand_codes((N, K), seed + 1))
    codes = ref.unpack(wq)
    scale = make_scale(per_row, N, seed)
    params = dict(M=M, N=N, K=K, dtype=dtype_name, transpose=transpose, per_row_scale=per_row, **gemm_tile(tile))
    (y,) = run("ternary_matmul", params, [x, wq, scale.reshape(-1)], [((M, N if transpose else K), dtype)])
    expected = ref.ternary_matmul(x, wq, scale, transpose=transpose)
    R = K if transpose else N
    what = (f"ternary_matmul M={M} N={N} K={K} {dtype_name} transpose={transpose} per_row={per_row} "
            f"nonfinite={nonfinite} raw_words={raw_words}")
    assert_close_nonfinite(y, expected, matmul_sumsq(x, codes, scale, transpose), R, dtype_name, what)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,N,K", MATMUL_T_SHAPES, ids=lambda v: str(v))
def test_ternary_gemv_t(M, N, K, dtype_name):
    check_matmul(M, N, K, dtype_name, True, per_row=(N % 2 == 1))


@pytest.mark.parametrize("wq_offset", [0, 4])
def test_ternary_gemv_t_is_the_word_load_kernel_at_any_alignment(wq_offset):
    """One GEMV for decode (coalesced word loads): aligned or not, no uint4 variant."""
    text = H.describe_plan("ternary_matmul", dict(M=1, N=8, K=2048, dtype="float16", wq_byte_offset=wq_offset))
    assert text.startswith("ternary_gemv_t_float16_bm1 grid"), text


def _threadgroup_bytes_per_kernel(text):
    """Total [[threadgroup(i)]] bytes of each kernel in a describe_plan text."""
    totals = []
    for line in text.splitlines():
        if not line.startswith(" "):
            totals.append(0)
        elif "threadgroup(" in line:
            totals[-1] += int(line.split("=")[1].split()[0])
    return totals


@pytest.mark.parametrize("kind,params", [
    ("bitlinear", dict(M=1, N=8, K=4096)),       # the largest fused decode row
    ("bitlinear", dict(M=1, N=8, K=4096 + 16)),  # past it: absmax + GEMV
    ("bitlinear", dict(M=1, N=8, K=1 << 20)),
    ("bitlinear", dict(M=40, N=8, K=4096)),
    ("ternary_matmul", dict(M=1, N=8, K=1 << 20, transpose=False)),
    ("ternary_matmul", dict(M=40, N=64, K=4096, transpose=False)),
    ("ternary_matmul", dict(M=40, N=64, K=4096)),
    ("absmax_quantize", dict(M=3, K=1 << 20)),
    ("absmean_quantize", dict(N=3, K=4096)),
], ids=str)
def test_every_plan_fits_in_32_kib_of_threadgroup_memory(kind, params):
    text = H.describe_plan(kind, dict(params, dtype="float16"))
    totals = _threadgroup_bytes_per_kernel(text)
    assert totals and max(totals) <= 32768, text


def test_plan_threadgroup_memory_check_rejects_more_than_32_kib():
    H.check_threadgroup_memory([16384, 16384])
    with pytest.raises(ValueError, match=r"probe asks for 32769 bytes of threadgroup memory; Apple GPUs allow 32768"):
        H.check_threadgroup_memory([16384, 16385])


# (M, N, K) for transpose=False (y = x @ diag(s) W, the VJP): M = 1 (bm1),
# M <= 16 (bm4 in one or more threadgroup rows), N not a multiple of the 8
# simdgroups, K tails around the 512 outputs of a threadgroup, K = 6912.
MATMUL_N_SHAPES = [
    (1, 1, 16),
    (1, 9, 528),
    (1, 40, 6912),
    (2, 13, 48),
    (4, 8, 1040),
    (7, 3, 6912),
    (16, 21, 96),
    (1, 300, 528),  # N split in 3 across the grid (128 rows each), the last one partial
    (5, 257, 96),   # a last split of one row
]


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,N,K", MATMUL_N_SHAPES, ids=lambda v: str(v))
def test_ternary_gemv_n(M, N, K, dtype_name):
    check_matmul(M, N, K, dtype_name, False, per_row=(N % 2 == 1))


# Every float path (GEMV t, GEMV n, GEMM t and n)
# with NaN/inf activations, and with arbitrary words (code 3).
NONFINITE_MATMUL_CASES = [
    (1, 9, 48, True),
    (3, 8, 2048 + 64, True),
    (1, 9, 528, False),
    (4, 8, 1040, False),
    (2, 300, 48, False),  # N split across the grid (3 splits)
    (33, 40, 48, True),
    (33, 40, 48, False),
]


@pytest.mark.parametrize("kind", list(NONFINITE))
@pytest.mark.parametrize("M,N,K,transpose", NONFINITE_MATMUL_CASES, ids=lambda v: str(v))
def test_ternary_matmul_nonfinite_activations(M, N, K, transpose, kind):
    check_matmul(M, N, K, "float32", transpose, per_row=True, seed=M + N, nonfinite=kind)


@pytest.mark.parametrize("dtype_name", ["float32", "float16"])
@pytest.mark.parametrize("M,N,K,transpose", NONFINITE_MATMUL_CASES + [(1, 21, 6912, True)], ids=lambda v: str(v))
def test_ternary_matmul_random_words(M, N, K, transpose, dtype_name):
    check_matmul(M, N, K, dtype_name, transpose, per_row=False, seed=3 * M + K, raw_words=True)


# ---------------------------------------------------------------------------
# absmax_quantize (per token int8) and bitlinear (W1.58A8), bit-exact


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,K", [(1, 1), (1, 2560), (3, 7), (5, 300), (2, 6912)], ids=lambda v: str(v))
def test_absmax_quantize(M, K, dtype_name):
    dtype = DTYPES[dtype_name]
    x = randn((M, K), dtype, M * 31 + K) * 3
    xq, xscale = run("absmax_quantize", dict(M=M, K=K, dtype=dtype_name), [x], [((M, K), mx.int8), ((M,), mx.float32)])
    rq, rs = ref.absmax_quantize(x)
    assert_equal(xscale, rs.reshape(-1), f"absmax_quantize xscale {dtype_name} M={M} K={K}")
    assert_equal(xq, rq, f"absmax_quantize xq {dtype_name} M={M} K={K}")


@pytest.mark.parametrize("kind", list(NONFINITE))
@pytest.mark.parametrize("M,K", [(1, 1), (1, 2560), (6, 300), (3, 6912)], ids=lambda v: str(v))
def test_absmax_quantize_nonfinite(M, K, kind):
    """A row with a NaN: xscale NaN; with an inf: xscale inf; codes 0 either way (as the reference)."""
    x = with_nonfinite(randn((M, K), mx.float32, K) * 3, kind, M)
    xq, xscale = run("absmax_quantize", dict(M=M, K=K, dtype="float32"), [x], [((M, K), mx.int8), ((M,), mx.float32)])
    rq, rs = ref.absmax_quantize(x)
    assert_equal(xscale, rs.reshape(-1), f"absmax_quantize xscale {kind} M={M} K={K}")
    assert_equal(xq, rq, f"absmax_quantize xq {kind} M={M} K={K}")


def test_absmax_quantize_zero_row_uses_eps():
    x = mx.zeros((2, 32), mx.float32)
    xq, xscale = run("absmax_quantize", dict(M=2, K=32, dtype="float32", eps=1e-5), [x],
                     [((2, 32), mx.int8), ((2,), mx.float32)])
    rq, rs = ref.absmax_quantize(x)
    assert_equal(xscale, rs.reshape(-1), "xscale")
    assert_equal(xq, rq, "xq")


# Adversarial rows: the one large |x| of a row at its first or last element or
# at a threadgroup boundary (the row kernels stride by 256 threads, the fused
# bitlinear by 64), with either sign. A reduction that skips an element or
# mixes up its lanes changes the scale, so every element's code.
ADVERSARIAL_K = [1, 63, 64, 65, 255, 256, 257, 300, 2560]


def adversarial_positions(K):
    return sorted({p for p in (0, K - 1, 63, 64, 255, 256, K // 2) if 0 <= p < K})


def spike_rows(K, dtype, seed):
    """One row per (position, sign): small noise with one large |x| at that position."""
    rows = []
    for p in adversarial_positions(K):
        for sign in (1.0, -1.0):
            r = np.array(randn((K,), mx.float32, seed + p).astype(mx.float32)) * 0.5
            r[p] = sign * 7.75
            rows.append(r)
    return mx.array(np.stack(rows)).astype(dtype)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("K", ADVERSARIAL_K)
def test_absmax_quantize_adversarial_max_positions(K, dtype_name):
    x = spike_rows(K, DTYPES[dtype_name], K)
    M = x.shape[0]
    xq, xscale = run("absmax_quantize", dict(M=M, K=K, dtype=dtype_name), [x], [((M, K), mx.int8), ((M,), mx.float32)])
    rq, rs = ref.absmax_quantize(x)
    assert_equal(xscale, rs.reshape(-1), f"absmax_quantize xscale K={K} {dtype_name}")
    assert_equal(xq, rq, f"absmax_quantize xq K={K} {dtype_name}")


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("K", [16, 64, 80, 256, 272, 2560])
def test_bitlinear_fused_adversarial_max_positions(K, dtype_name):
    """M = 1 (the fused kernel quantizes x itself): every spike row separately."""
    N = 9
    codes = rand_codes((N, K), K)
    wq = ref.pack(codes)
    scale = make_scale(True, N, K)
    rows = spike_rows(K, DTYPES[dtype_name], 3 * K)
    for i in range(rows.shape[0]):
        x = rows[i : i + 1]
        params = dict(M=1, N=N, K=K, dtype=dtype_name, per_row_scale=True)
        (y,) = run("bitlinear", params, [x, wq, scale], [((1, N), DTYPES[dtype_name])])
        assert_equal(y, ref.bitlinear(x, wq, scale), f"bitlinear fused K={K} {dtype_name} spike row {i}")


@pytest.mark.parametrize("per_row", [False, True], ids=["tensor", "row"])
@pytest.mark.parametrize("N,K", [(3, 16), (2, 4096), (40, 2560)], ids=lambda v: str(v))
def test_absmean_quantize_adversarial(N, K, per_row):
    """Magnitudes over 12 binades (a float32 running sum would lose the small
    ones, the float-float sum must not) and the largest |w| at the first and
    last element of each row and of the tensor."""
    rng = np.random.default_rng(N * K)
    w = rng.standard_normal((N, K)) * np.exp2(rng.integers(-6, 6, (N, K)))
    w[:, 0] *= 3e3
    w[:, -1] *= -5e3
    w[-1, -1] = 1e5
    w = mx.array(w.astype(np.float32))
    wq, scale = run("absmean_quantize", dict(N=N, K=K, dtype="float32", per_row=per_row),
                    [w], [((N, K // 16), mx.uint32), ((N if per_row else 1,), mx.float32)])
    rq, rs = ref.absmean_quantize(w, per_channel=per_row)
    assert_equal(scale, rs.reshape(-1), f"absmean scale N={N} K={K} per_row={per_row}")
    assert_equal(wq, rq, "absmean codes")


# M = 1: the fused kernel (K <= 4096) or the int8 GEMV bm1; M <= 16: int8 GEMV
# (bm4/bm8); M > 16: the int8 simdgroup GEMM.
BITLINEAR_SHAPES = [
    (1, 1, 16),
    (1, 19, 2560),
    (1, 10, 6912),
    (1, 5, 16384 + 16),
    (3, 9, 80),
    (8, 17, 2064),
    (11, 6, 512),
    (40, 37, 96),
    (64, 33, 6912),
]


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,N,K", BITLINEAR_SHAPES, ids=lambda v: str(v))
def test_bitlinear(M, N, K, dtype_name):
    dtype = DTYPES[dtype_name]
    x = randn((M, K), dtype, M + N + K)
    codes = rand_codes((N, K), N)
    wq = ref.pack(codes)
    per_row = N % 2 == 1
    has_bias = M % 2 == 1
    scale = make_scale(per_row, N, K)
    inputs = [x, wq, scale.reshape(-1)]
    bias = None
    if has_bias:
        bias = randn((N,), mx.float32, 99)
        inputs.append(bias)
    params = dict(M=M, N=N, K=K, dtype=dtype_name, per_row_scale=per_row, has_bias=has_bias)
    (y,) = run("bitlinear", params, inputs, [((M, N), dtype)])
    assert_equal(y, ref.bitlinear(x, wq, scale, bias=bias), f"bitlinear {params}")


# One shape per kernel: fused, int8 GEMV bm1 (K > 4096), bm4/bm8, GEMM.
NONFINITE_BITLINEAR_SHAPES = [(1, 7, 2560), (1, 5, 16384 + 16), (6, 9, 80), (40, 37, 96)]


def check_bitlinear(M, N, K, dtype_name, nonfinite=None, raw_words=False, tile=None):
    dtype = DTYPES[dtype_name]
    x = randn((M, K), dtype, M + N + K)
    if nonfinite:
        x = with_nonfinite(x, nonfinite, K)
    wq = random_words((N, K // 16), N) if raw_words else ref.pack(rand_codes((N, K), N))
    scale = make_scale(True, N, K)
    bias = randn((N,), mx.float32, 99)
    params = dict(M=M, N=N, K=K, dtype=dtype_name, per_row_scale=True, has_bias=True, **gemm_tile(tile))
    (y,) = run("bitlinear", params, [x, wq, scale, bias], [((M, N), dtype)])
    assert_equal(y, ref.bitlinear(x, wq, scale, bias=bias), f"bitlinear {params} {nonfinite} raw_words={raw_words}")


@pytest.mark.parametrize("kind", list(NONFINITE))
@pytest.mark.parametrize("M,N,K", NONFINITE_BITLINEAR_SHAPES, ids=lambda v: str(v))
def test_bitlinear_nonfinite_activations(M, N, K, kind):
    """A row of x with a NaN or inf gives a NaN row of y (xscale NaN, or codes 0 times xscale inf)."""
    check_bitlinear(M, N, K, "float32", nonfinite=kind)


@pytest.mark.parametrize("dtype_name", ["float32", "bfloat16"])
@pytest.mark.parametrize("M,N,K", NONFINITE_BITLINEAR_SHAPES, ids=lambda v: str(v))
def test_bitlinear_random_words(M, N, K, dtype_name):
    check_bitlinear(M, N, K, dtype_name, raw_words=True)


def test_bitlinear_int32_accumulation_is_exact_at_large_k():
    """All weights +1 and every activation at +127 after quantization: |acc| = 127 K."""
    M, N, K = 2, 3, 16384
    x = mx.ones((M, K), mx.float32)
    wq = ref.pack(mx.ones((N, K), mx.int8))
    scale = mx.array([1.0])
    (y,) = run("bitlinear", dict(M=M, N=N, K=K, dtype="float32"), [x, wq, scale], [((M, N), mx.float32)])
    assert_equal(y, ref.bitlinear(x, wq, mx.array(1.0)), "bitlinear K=16384")


@pytest.mark.parametrize("M,N,K", [(1, 19, 2560), (1, 5, 4096)], ids=lambda v: str(v))
def test_bitlinear_unfused_decode_plan_gives_the_fused_bits(M, N, K):
    """fused=False (the timing switch) runs absmax_quantize + the int8 GEMV bm1 at M = 1: same bits."""
    assert "bitlinear_gemv_float32_bm1" in H.describe_plan("bitlinear", dict(M=M, N=N, K=K, dtype="float32",
                                                                             fused=False))
    x = randn((M, K), mx.float32, 7)
    wq = random_words((N, K // 16), N)
    scale = make_scale(True, N, K)
    bias = randn((N,), mx.float32, 99)
    params = dict(M=M, N=N, K=K, dtype="float32", per_row_scale=True, has_bias=True)
    (fused,) = run("bitlinear", params, [x, wq, scale, bias], [((M, N), mx.float32)])
    (unfused,) = run("bitlinear", dict(params, fused=False), [x, wq, scale, bias], [((M, N), mx.float32)])
    expect = ref.bitlinear(x, wq, scale, bias=bias)
    assert_equal(fused, expect, "fused")
    assert_equal(unfused, expect, "absmax + int8 GEMV bm1")


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["plus", "minus"])
@pytest.mark.parametrize("M,K", [(1, 4096), (1, 16384), (2, 2048), (8, 4096)], ids=lambda v: str(v))
def test_bitlinear_is_exact_at_the_bound(M, K, sign):
    """Every code 3 (+2) and every activation at +-127 after quantization: each word's 16 products reach
    their largest magnitude, 16 * 127 * 3 per word, at every int8 GEMV (fused, bm1, bm4, bm8)."""
    N = 5
    rows = np.where(np.arange(M) % 2 == 0, sign, -sign).astype(np.float32)
    x = mx.array(np.repeat(rows[:, None], K, axis=1))
    wq = mx.array(np.full((N, K // 16), 0xFFFFFFFF, np.uint32))
    scale = mx.array([0.5], mx.float32)
    (y,) = run("bitlinear", dict(M=M, N=N, K=K, dtype="float32"), [x, wq, scale], [((M, N), mx.float32)])
    expect = ref.bitlinear(x, wq, scale[0])
    # the case intended: xq = +-127, W = +2, so y = 0.5 * (2 * 127 K) * xscale = +-K (up to xscale's rounding)
    np.testing.assert_allclose(np.array(expect), rows[:, None] * K * np.ones((1, N)), rtol=1e-6)
    assert_equal(y, expect, f"bitlinear all code 3, M={M} K={K}")


# ---------------------------------------------------------------------------
# absmean_quantize (reduction + quantize-and-pack)


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("per_row", [False, True], ids=["tensor", "row"])
@pytest.mark.parametrize("N,K", [(1, 16), (7, 48), (33, 2560), (5, 6912), (300, 32)], ids=lambda v: str(v))
def test_absmean_quantize(N, K, per_row, dtype_name):
    dtype = DTYPES[dtype_name]
    w = randn((N, K), dtype, N * 7 + K) * 0.02
    wq, scale = run("absmean_quantize", dict(N=N, K=K, dtype=dtype_name, per_row=per_row),
                    [w], [((N, K // 16), mx.uint32), ((N if per_row else 1,), mx.float32)])
    rq, rs = ref.absmean_quantize(w, per_channel=per_row)
    # The mean is a float-float sum in the kernel (no float64 in Metal), the
    # reference's a float64 sum on the CPU: both round to the same float32.
    assert_equal(scale, rs.reshape(-1), f"absmean scale N={N} K={K} {dtype_name} per_row={per_row}")
    assert_equal(wq, rq, "absmean codes")


@pytest.mark.parametrize("kind", list(NONFINITE))
@pytest.mark.parametrize("per_row", [False, True], ids=["tensor", "row"])
@pytest.mark.parametrize("N,K", [(1, 16), (7, 48), (5, 2560)], ids=lambda v: str(v))
def test_absmean_quantize_nonfinite(N, K, per_row, kind):
    """A NaN or inf weight makes its scale NaN or inf (as the float64 mean) and zeroes its codes."""
    w = with_nonfinite(randn((N, K), mx.float32, N + K) * 0.02, kind, N)
    wq, scale = run("absmean_quantize", dict(N=N, K=K, dtype="float32", per_row=per_row),
                    [w], [((N, K // 16), mx.uint32), ((N if per_row else 1,), mx.float32)])
    rq, rs = ref.absmean_quantize(w, per_channel=per_row)
    s, r = np.array(scale), np.array(rs.reshape(-1))
    for where in (np.isnan, np.isposinf):
        np.testing.assert_array_equal(where(s), where(r), f"scale {s} != reference {r}")
    finite = np.isfinite(r)
    # The finite ones (float-float mean) may be a neighbour of the reference's.
    ulps = np.abs(s.view(np.int32).astype(np.int64) - r.view(np.int32).astype(np.int64))
    assert ulps[finite].max(initial=0) <= 1
    rows = np.flatnonzero(~finite) if per_row else np.arange(0 if finite.all() else N)
    assert len(rows) > 0
    for n in rows:
        assert np.all(np.array(wq[int(n)]) == 0x55555555), f"row {n}: codes of a NaN/inf scale must be 0"
    if ulps[finite].max(initial=0) == 0:
        assert_equal(wq, rq, "absmean codes")


def test_absmean_quantize_zero_weights_use_eps():
    w = mx.zeros((3, 32), mx.float32)
    wq, scale = run("absmean_quantize", dict(N=3, K=32, dtype="float32", per_row=False, eps=1e-5),
                    [w], [((3, 2), mx.uint32), ((1,), mx.float32)])
    rq, rs = ref.absmean_quantize(w)
    assert_equal(scale, rs.reshape(-1), "scale")
    assert_equal(wq, rq, "codes")


# ---------------------------------------------------------------------------
# pack / unpack / dequantize


@pytest.mark.parametrize("N,K", [(1, 16), (5, 48), (70, 160), (3, 6912)], ids=lambda v: str(v))
def test_pack_unpack(N, K):
    codes = rand_codes((N, K), N + K)
    (wq,) = run("pack", dict(N=N, K=K), [codes], [((N, K // 16), mx.uint32)])
    assert_equal(wq, ref.pack(codes), "pack")
    (back,) = run("unpack", dict(N=N, K=K), [wq], [((N, K), mx.int8)])
    assert_equal(back, codes, "unpack")


def test_unpack_dequantize_random_words():
    """Arbitrary words, code 3 included (+2), as the reference."""
    N, K = 5, 6912
    wq = random_words((N, K // 16), 5)
    (back,) = run("unpack", dict(N=N, K=K), [wq], [((N, K), mx.int8)])
    assert_equal(back, ref.unpack(wq), "unpack")
    scale = make_scale(True, N, 1)
    (out,) = run("dequantize", dict(N=N, K=K, dtype="float32", per_row_scale=True), [wq, scale],
                 [((N, K), mx.float32)])
    assert_equal(out, ref.dequantize(wq, scale, dtype=mx.float32), "dequantize")


def test_pack_flags_invalid_codes():
    codes = np.zeros((2, 32), np.int8)
    codes[1, 5] = 2
    wq = np.empty((2, 2), np.uint32)
    # The `invalid` flag is a plan temporary; the kernel must still pack the valid words.
    H.run_plan("pack", dict(N=2, K=32), [codes], [wq])
    assert_equal(mx.array(wq[0]), ref.pack(mx.array(codes[:1]))[0], "valid words")


@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("per_row", [False, True], ids=["tensor", "row"])
@pytest.mark.parametrize("N,K", [(1, 16), (9, 80), (4, 6912)], ids=lambda v: str(v))
def test_dequantize(N, K, per_row, dtype_name):
    dtype = DTYPES[dtype_name]
    codes = rand_codes((N, K), 3 * N + K)
    wq = ref.pack(codes)
    scale = make_scale(per_row, N, K)
    (out,) = run("dequantize", dict(N=N, K=K, dtype=dtype_name, per_row_scale=per_row),
                 [wq, scale.reshape(-1)], [((N, K), dtype)])
    assert_equal(out, ref.dequantize(wq, scale, dtype=dtype), f"dequantize {dtype_name}")


# ---------------------------------------------------------------------------
# GEMM (prefill, simdgroup_matrix): M > 16, tails in every dimension, every tile

GEMM_SHAPES = [
    (17, 5, 16),
    (32, 32, 32),
    (33, 40, 48),
    (64, 64, 64),    # one full 64 x 64 tile
    (70, 9, 6912),
    (45, 65, 528),
    (130, 70, 96),   # several tiles in both output dimensions, tails in both
]


@pytest.mark.parametrize("tile", GEMM_TILES, ids=lambda t: f"bm{t[0]}_bn{t[1]}")
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("transpose", [True, False], ids=["t", "n"])
@pytest.mark.parametrize("M,N,K", GEMM_SHAPES, ids=lambda v: str(v))
def test_ternary_gemm(M, N, K, transpose, dtype_name, tile):
    check_matmul(M, N, K, dtype_name, transpose, per_row=(M % 2 == 1), tile=tile)


@pytest.mark.parametrize("tile", GEMM_TILES, ids=lambda t: f"bm{t[0]}_bn{t[1]}")
@pytest.mark.parametrize("transpose", [True, False], ids=["t", "n"])
def test_ternary_gemm_nonfinite_and_random_words(transpose, tile):
    """NaN/inf activations and code 3 (+2) words through every tile (N, K tails included)."""
    check_matmul(70, 37, 80, "float32", transpose, per_row=True, seed=5, nonfinite="inf-inf", tile=tile)
    check_matmul(70, 37, 80, "float16", transpose, per_row=False, seed=6, raw_words=True, tile=tile)


@pytest.mark.parametrize("tile", INT8_GEMM_TILES, ids=lambda t: f"bm{t[0]}_bn{t[1]}")
@pytest.mark.parametrize("dtype_name", list(DTYPES))
@pytest.mark.parametrize("M,N,K", [(40, 37, 96), (130, 70, 528)], ids=lambda v: str(v))
def test_bitlinear_gemm(M, N, K, dtype_name, tile):
    assert f"bitlinear_gemm_{dtype_name}_bm{tile[0]}_bn{tile[1]}" in H.describe_plan(
        "bitlinear", dict(M=M, N=N, K=K, dtype=dtype_name, **gemm_tile(tile)))
    check_bitlinear(M, N, K, dtype_name, raw_words=(N % 2 == 1), tile=tile)


def test_gemm_tile_must_be_one_the_kernels_instantiate():
    with pytest.raises(ValueError, match="ternary_gemm_t has no 48 x 32 tile"):
        H.describe_plan("ternary_matmul", dict(M=40, N=8, K=64, dtype="float32", gemm_bm=48, gemm_bn=32))
    with pytest.raises(ValueError, match="bitlinear_gemm has no 64 x 64 tile"):
        H.describe_plan("bitlinear", dict(M=40, N=8, K=64, dtype="float32", gemm_bm=64, gemm_bn=64))


@pytest.mark.parametrize("kind,params,kernel", [
    ("ternary_matmul", dict(M=17, N=8, K=64), "ternary_gemm_t_float16_bm32_bn32"),  # a small grid: the smallest tile
    ("ternary_matmul", dict(M=2048, N=2560, K=64), "ternary_gemm_t_float16_bm64_bn64"),  # a large one: the largest
    ("ternary_matmul", dict(M=512, N=2560, K=64), "ternary_gemm_t_float16_bm32_bn64"),  # between the two
    ("ternary_matmul", dict(M=2048, N=2560, K=64, transpose=False), "ternary_gemm_n_float16_bm32_bn32"),  # 64 cols
    ("bitlinear", dict(M=2048, N=2560, K=64), "bitlinear_gemm_float16_bm32_bn64"),  # BM = 32 only
], ids=str)
def test_gemm_tile_grows_with_the_grid(kind, params, kernel):
    assert kernel in H.describe_plan(kind, dict(params, dtype="float16"))


def test_bitlinear_gemm_is_exact_at_the_bound():
    """The int8 GEMM's largest K (2^16): every code 3 (+2) and xq = +-127, so |acc| = 254 * 2^16 < 2^24."""
    M, N, K = 33, 5, 1 << 16
    assert "bitlinear_gemm" in H.describe_plan("bitlinear", dict(M=M, N=N, K=K, dtype="float32"))
    assert "bitlinear_gemv" in H.describe_plan("bitlinear", dict(M=M, N=N, K=K + 16, dtype="float32"))
    rows = np.where(np.arange(M) % 2 == 0, 1.0, -1.0).astype(np.float32)
    x = mx.array(np.repeat(rows[:, None], K, axis=1))
    wq = mx.array(np.full((N, K // 16), 0xFFFFFFFF, np.uint32))
    scale = mx.array([0.5], mx.float32)
    (y,) = run("bitlinear", dict(M=M, N=N, K=K, dtype="float32"), [x, wq, scale], [((M, N), mx.float32)])
    assert_equal(y, ref.bitlinear(x, wq, scale[0]), f"bitlinear GEMM all code 3, M={M} K={K}")


# ---------------------------------------------------------------------------
# The harness itself (kernels in csrc/harness/testdata/, not shipped)


@pytest.mark.parametrize("kernel", ["bnh_check_race", "bnh_check_race_local"])
def test_harness_exposes_races_across_fiber_orders(kernel):
    """Threadgroup memory as a [[threadgroup(0)]] parameter or as an array declared in the kernel."""
    n = 64
    outs = {}
    for fixed in (0, 1):
        for order in ORDERS:
            out = np.zeros(n, np.float32)
            H.launch(kernel, (2,), (n,), [out, fixed], threadgroup_memory=[4 * n], order=order, seed=3)
            outs[fixed, order] = out
    expected = ((np.arange(n) + 1) % n + 1).astype(np.float32)
    for order in ORDERS:
        np.testing.assert_array_equal(outs[1, order], expected)
    # Without the barrier, forward and reverse orders disagree.
    assert outs[0, "forward"].tobytes() != outs[0, "reverse"].tobytes()


def test_harness_simd_collectives():
    x = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    out = np.zeros(5 * 64, np.float32)
    H.launch("bnh_check_simd", (1,), (64,), [x, out], order="shuffled")
    out = out.reshape(64, 5)
    for sg in range(2):
        v = x[32 * sg : 32 * sg + 32]
        o = out[32 * sg : 32 * sg + 32]
        np.testing.assert_allclose(o[:, 0], np.float32(v.astype(np.float64).sum()), rtol=1e-6)
        np.testing.assert_array_equal(o[:, 1], v.max())
        np.testing.assert_array_equal(o[:, 2], v[np.arange(32) ^ 1])
        np.testing.assert_array_equal(o[:, 3], v[3])
        np.testing.assert_array_equal(o[:, 4], v[np.minimum(np.arange(32) + 1, 31)])
        assert len(set(o[:, 0].tolist())) == 1  # every lane gets the same sum


def test_harness_reports_divergent_collectives_and_deadlocks():
    out = np.zeros(32, np.float32)
    with pytest.raises(RuntimeError, match="divergent simdgroup"):
        H.launch("bnh_check_divergent", (1,), (32,), [out])
    with pytest.raises(RuntimeError, match="deadlock"):
        H.launch("bnh_check_deadlock", (1,), (32,), [out])


def test_harness_checks_barrier_mem_flags():
    """Threadgroup memory read by another thread needs mem_flags::mem_threadgroup on the barrier."""
    out = np.zeros(64, np.float32)
    H.launch("bnh_check_barrier_flags", (2,), (64,), [out, 2], threadgroup_memory=[4 * 64])
    np.testing.assert_array_equal(out, (np.arange(64) + 1) % 64 + 1)
    with pytest.raises(RuntimeError, match="without mem_flags::mem_threadgroup"):
        H.launch("bnh_check_barrier_flags", (2,), (64,), [out, 0], threadgroup_memory=[4 * 64])


def test_harness_reports_barrier_after_return():
    out = np.zeros(64, np.float32)
    H.launch("bnh_check_barrier_after_return", (1,), (64,), [out, 0])
    for order in ORDERS:
        with pytest.raises(RuntimeError, match="threadgroup_barrier reached after 32 thread"):
            H.launch("bnh_check_barrier_after_return", (1,), (64,), [out, 1], order=order)


def test_harness_rejects_more_than_32_kib_of_threadgroup_memory():
    out = np.zeros(64, np.float32)
    with pytest.raises(RuntimeError, match="40000 bytes of threadgroup memory requested; Apple GPUs allow 32768"):
        H.launch("bnh_check_race", (1,), (64,), [out, 1], threadgroup_memory=[40000])


def test_harness_out_of_bounds_access_is_an_exception_naming_the_kernel():
    """A fault on a guard page fails the launch (a RuntimeError pytest shows), not the process.

    In a child interpreter: where the conversion is broken, the fault kills the child only."""
    import subprocess
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        sys.path.insert(0, {str(pathlib.Path(H.__file__).parent)!r})
        import importlib
        H = importlib.import_module({H.__name__!r})  # _metal_harness (standalone) or bitnet_ext._metal_harness
        x = np.zeros((1, 16), np.float32)  # the plan reads 2048 per row
        wq = np.zeros((8, 128), np.uint32)
        y = np.empty((1, 8), np.float32)
        params = dict(M=1, N=8, K=2048, dtype="float32")
        for _ in range(2):  # and the harness keeps working after one
            try:
                H.run_plan("ternary_matmul", params, [x, wq, np.ones(1, np.float32)], [y])
            except RuntimeError as e:
                print("RAISED", e)
        H.run_plan("ternary_matmul", params, [np.zeros((1, 2048), np.float32), wq, np.ones(1, np.float32)], [y])
        print("DONE")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    raised = [line for line in proc.stdout.splitlines() if line.startswith("RAISED")]
    assert proc.returncode == 0 and "DONE" in proc.stdout, f"child failed ({proc.returncode}): {proc.stderr[-2000:]}"
    assert len(raised) == 2, proc.stdout
    for line in raised:
        assert "kernel ternary_gemv_t_float32_bm1" in line and "faulted at address" in line, line


@pytest.mark.parametrize("transpose_b", [0, 1])
def test_harness_simdgroup_matrix(transpose_b):
    rng = np.random.default_rng(1)
    a, b, c = (rng.integers(-4, 5, (8, 8)).astype(np.float32) for _ in range(3))
    d = np.zeros((8, 8), np.float32)
    H.launch("bnh_check_mma", (1,), (32,), [a, b, c, d, transpose_b], order="reverse")
    np.testing.assert_array_equal(d, a @ (b.T if transpose_b else b) + c)


# ---------------------------------------------------------------------------
# Coverage: every [[kernel]] in kernels/ ran (keep this test last)


def _shader_kernels():
    return {name for name, path in H.kernel_sources() if pathlib.Path(path).parent == ROOT / "kernels"}


def test_launch_plans_and_shaders_name_the_same_kernels():
    shaders = _shader_kernels()
    plans = set(H.plan_kernel_names())
    assert plans - shaders == set(), f"plans name kernels that kernels/ does not instantiate: {plans - shaders}"
    assert shaders - plans == set(), f"kernels/ instantiates kernels no plan uses: {shaders - plans}"


def test_zz_every_kernel_was_executed(request):
    module = request.module
    ran = {item.function.__name__ for item in request.session.items if getattr(item, "module", None) is module}
    wanted = {name for name in dir(module) if name.startswith("test_")}
    if wanted - ran:
        pytest.skip(f"partial run of {pathlib.Path(__file__).name} (not run: {sorted(wanted - ran)[:3]}...)")
    missing = sorted(_shader_kernels() - set(H.executed_kernels()))
    assert not missing, f"kernels never executed by the harness tests: {missing}"
    record = os.environ.get("BITNET_HARNESS_RECORD")
    if record:
        recorded = set(pathlib.Path(record).read_text().split())
        missing = sorted(_shader_kernels() - recorded)
        assert not missing, f"kernels missing from {record}: {missing}"
