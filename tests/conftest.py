"""Shared fixtures and helpers of the bitnet_ext test suite.

Every op is checked against ``bitnet_ext.reference`` (pure MLX). Integer paths
must match it exactly; float paths within a tolerance derived from float32
accumulation error (see ``assert_close``).

Tests import the helpers below with ``from conftest import ...`` (pytest puts
this directory on sys.path; there is no tests/__init__.py).
"""

import io
import math
import os
import platform
import subprocess
import sys
import textwrap
import warnings

# The reference's float32 matmuls must be float32: MLX's CUDA (and Metal)
# backends may compute them in TF32 unless told otherwise. Read by MLX at its
# first matmul, so set before any test runs (and inherited by run_python's
# child interpreters).
os.environ.setdefault("MLX_ENABLE_TF32", "0")

import mlx.core as mx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import bitnet_ext as bx  # noqa: E402
from bitnet_ext import reference as ref  # noqa: E402

# ---------------------------------------------------------------------------
# pytest / hypothesis configuration (pyproject.toml is not ours to edit).

settings.register_profile(
    "bitnet",
    max_examples=25,
    deadline=None,
    database=None,  # keep the source tree clean; failures print a repro blob
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("bitnet-long", parent=settings.get_profile("bitnet"), max_examples=300)
settings.load_profile(os.environ.get("BITNET_HYPOTHESIS_PROFILE", "bitnet"))


# ---------------------------------------------------------------------------
# dtypes

FLOAT_DTYPES = [mx.float32, mx.float16, mx.bfloat16]
DTYPE_NAME = {
    mx.float32: "f32",
    mx.float16: "f16",
    mx.bfloat16: "bf16",
    mx.int8: "i8",
    mx.int16: "i16",
    mx.int32: "i32",
    mx.int64: "i64",
    mx.uint8: "u8",
    mx.uint32: "u32",
}
# Unit roundoff of each float dtype.
UNIT_ROUNDOFF = {mx.float32: 2.0**-24, mx.float16: 2.0**-11, mx.bfloat16: 2.0**-8}
SCALE_KINDS = ["scalar", "one", "row"]  # scale of shape (), (1,), (N,)


def dtype_params(dtypes=FLOAT_DTYPES):
    return [pytest.param(d, id=DTYPE_NAME[d]) for d in dtypes]


# ---------------------------------------------------------------------------
# data


def randn(shape, dtype=mx.float32, seed=0, std=1.0):
    x = std * mx.random.normal(shape, key=mx.random.key(seed))
    return x.astype(dtype)


def rand_codes(shape, seed=0):
    """int8 array of values in {-1, 0, 1}."""
    return mx.random.randint(-1, 2, shape, key=mx.random.key(seed)).astype(mx.int8)


def make_weights(N, K, seed=0):
    """(codes int8 (N, K), packed uint32 (N, K/16)); packed by the reference."""
    codes = rand_codes((N, K), seed)
    return codes, ref.pack(codes)


def make_scale(kind, N, seed=0):
    """float32 scale of shape () ('scalar'), (1,) ('one') or (N,) ('row')."""
    shape = {"scalar": (), "one": (1,), "row": (N,)}[kind]
    return mx.random.uniform(0.05, 1.5, shape, key=mx.random.key(seed + 7919))


def lazy(a):
    """A not-yet-evaluated copy of a (an Add / BitwiseOr graph node)."""
    if mx.issubdtype(a.dtype, mx.floating):
        return a + mx.array(0, a.dtype)
    return mx.bitwise_or(a, mx.array(0, a.dtype))


def is_unevaluated(a):
    """True while `a` is still a graph node with a primitive (not evaluated)."""
    f = io.StringIO()
    mx.export_to_dot(f, a)
    return "label =" in f.getvalue()


# ---------------------------------------------------------------------------
# comparison


def to_np(a):
    """MLX array -> numpy (float dtypes as float64, integers as int64)."""
    if mx.issubdtype(a.dtype, mx.floating):
        return np.array(a.astype(mx.float32)).astype(np.float64)
    return np.array(a).astype(np.int64)


def _check_meta(actual, expected, what):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != expected {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != expected {expected.dtype}"


def assert_equal(actual, expected, what="result"):
    """Exact equality (shape, dtype and every bit of every value)."""
    _check_meta(actual, expected, what)
    if mx.array_equal(actual, expected).item():
        return
    a, e = to_np(actual), to_np(expected)
    bad = np.argwhere(a != e)
    first = [(tuple(int(i) for i in idx), a[tuple(idx)], e[tuple(idx)]) for idx in bad[:5]]
    pytest.fail(f"{what}: {len(bad)} of {a.size} values differ; first (index, actual, expected): {first}")


def assert_close(actual, expected, sumsq, R, what="result", C=16.0):
    """Float comparison with a tolerance that follows float32 accumulation error.

    Two float32 sums of the same R terms in different orders differ by about
    u32 * sqrt(R) * sqrt(sum of squared terms) (random-walk rounding error);
    `sumsq` is that sum of squared terms for every output element (numpy,
    broadcastable). C is a safety factor. On top of that the outputs may
    differ by one ulp of the output dtype (the float32 values straddle a
    rounding boundary), and by one float16 subnormal step near zero.
    """
    _check_meta(actual, expected, what)
    a, e = to_np(actual), to_np(expected)
    atol = C * 2.0**-24 * math.sqrt(max(R, 1)) * np.sqrt(np.asarray(sumsq, np.float64))
    if actual.dtype == mx.float16:
        atol = atol + 2.0**-24
    rtol = 2 * UNIT_ROUNDOFF[actual.dtype]
    tol = atol + rtol * np.abs(e)
    err = np.abs(a - e)
    bad = ~(err <= tol)  # also catches NaN
    if bad.any():
        idx = np.unravel_index(np.argmax(np.where(bad, err / np.maximum(tol, 1e-300), -1)), err.shape)
        pytest.fail(
            f"{what}: {int(bad.sum())} of {a.size} values out of tolerance; worst at {tuple(int(i) for i in idx)}: "
            f"actual {a[idx]!r}, expected {e[idx]!r}, |err| {err[idx]:.3e} > tol {np.broadcast_to(tol, err.shape)[idx]:.3e} "
            f"(R={R}, max |expected| {np.abs(e).max() if e.size else 0:.3e})"
        )


def row_scale_np(scale, N):
    s = to_np(scale)
    return np.broadcast_to(s.reshape(-1) if s.ndim else s, (N,))


def matmul_sumsq(x, codes, scale, transpose=True):
    """Sum of squared terms of each output of ternary_matmul (for assert_close)."""
    x2 = to_np(x) ** 2
    N = codes.shape[0]
    w2 = np.abs(to_np(codes)) * row_scale_np(scale, N)[:, None] ** 2  # (N, K)
    return x2 @ (w2.T if transpose else w2)


# ---------------------------------------------------------------------------
# CPU instruction-set levels and threads

ISA_ORDER = ["scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "avx512_amx", "neon", "neon_dot"]


def supported_isas():
    return list(bx.cpu.supported_isas())


@pytest.fixture
def isa(request):
    """Force one ISA level for the test, then restore the default choice."""
    name = request.param
    bx.cpu.set_isa(name)
    try:
        assert bx.cpu.active_isa() == name
        yield name
    finally:
        bx.cpu.reset_isa()


@pytest.fixture
def threads(request):
    """Run the kernels on request.param worker threads, then restore."""
    old = bx.cpu.num_threads()
    bx.cpu.set_num_threads(request.param)
    try:
        assert bx.cpu.num_threads() == request.param
        yield request.param
    finally:
        bx.cpu.set_num_threads(old)


def pytest_generate_tests(metafunc):
    if "isa" in metafunc.fixturenames:
        metafunc.parametrize("isa", supported_isas(), indirect=True, ids=lambda n: f"isa={n}")
    if "threads" in metafunc.fixturenames:
        metafunc.parametrize("threads", [1, 2], indirect=True, ids=lambda n: f"threads={n}")


# ---------------------------------------------------------------------------
# shapes shared by the op tests

# (M, N, K): decode sizes (M <= 8), prefill sizes with M-block tails, N or M
# of 1, odd N, K/16 odd and even, K not a multiple of 64/128/512.
EDGE_SHAPES = [
    (1, 1, 16),
    (1, 7, 48),
    (3, 1, 64),
    (4, 33, 208),
    (8, 64, 256),
    (9, 31, 512),
    (37, 67, 2560),
    (130, 17, 160),
]


def shape_id(s):
    return "M{}_N{}_K{}".format(*s)


# ---------------------------------------------------------------------------
# subprocesses (fresh interpreter for once-per-process behaviour / env vars)


def run_python(code, env=None, timeout=180):
    full_env = dict(os.environ)
    full_env.update(env or {})
    code = textwrap.dedent(code)
    # The macOS workflow picks MLX's default device with BITNET_EXT_TEST_DEVICE
    # (.github/scripts/pytest_device.py); a child interpreter must pick it too.
    device = full_env.get("BITNET_EXT_TEST_DEVICE", "").strip().lower()
    if device in ("cpu", "gpu"):
        code = f"import mlx.core as _mx\n_mx.set_default_device(_mx.{device})\n" + code
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )
    return proc


def check_matmul(x, codes, wq, scale, transpose=True, what="ternary_matmul", **kw):
    """bx.ternary_matmul vs the reference; returns the result."""
    y = bx.ternary_matmul(x, wq, scale, transpose=transpose, **kw)
    r = ref.ternary_matmul(x, wq, scale, transpose=transpose)
    R = codes.shape[1] if transpose else codes.shape[0]
    assert_close(y, r, matmul_sumsq(x, codes, scale, transpose), R, what)
    return y


def check_bitlinear(x, wq, scale, bias=None, what="bitlinear", **kw):
    """bx.bitlinear must equal the reference bit for bit; returns the result."""
    y = bx.bitlinear(x, wq, scale, bias=bias, **kw)
    assert_equal(y, ref.bitlinear(x, wq, scale, bias=bias), what)
    return y

# ---------------------------------------------------------------------------
# GPUs: which one, if any, this build's kernels serve (tests/test_gpu.py,
# tests/test_metal_gpu.py)


def gpu_info():
    """MLX's description of the GPU, or {} when MLX has no usable Metal device."""
    try:
        if not mx.metal.is_available():
            return {}
        if hasattr(mx, "device_info"):
            return dict(mx.device_info(mx.gpu))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(mx.metal.device_info())
    except Exception:  # no Metal device (headless / virtualized macOS)
        return {}


def real_apple_gpu_reason():
    """None when this machine has a real Apple GPU, else why not."""
    if platform.system() != "Darwin":
        return f"no Metal on {platform.system()} (the Metal kernels run on Apple GPUs only)"
    if not mx.metal.is_available():
        return "this MLX build has no Metal backend"
    info = gpu_info()
    arch = str(info.get("architecture", ""))
    name = str(info.get("device_name", ""))
    if not arch.startswith("applegpu_g"):
        return f"the Metal device is not a real Apple GPU (architecture {arch!r}, name {name!r})"
    if "paravirtual" in name.lower():
        return f"the Metal device is a paravirtual GPU ({name!r}), e.g. a GitHub-hosted runner"
    return None



def gpu_kernels_reason():
    """None when this build of bitnet_ext has GPU kernels for a GPU that this
    machine has (a real Apple GPU in a Metal build, an NVIDIA GPU in a CUDA
    build), else why not."""
    backend = getattr(bx._ext, "GPU_BACKEND", "none")
    if backend == "metal":
        return real_apple_gpu_reason()
    if backend == "cuda":
        if not (hasattr(mx, "cuda") and mx.cuda.is_available()):
            return "this is a CUDA build of bitnet_ext, but MLX finds no usable NVIDIA GPU"
        return None
    return "this build of bitnet_ext has no GPU kernels (it was built against an MLX without a GPU backend)"


@pytest.fixture
def cpu_device(monkeypatch):
    """MLX's default device is the CPU for this test (and for run_python's
    children): for features that exist only on the CPU (int8_matmul,
    rounding="transformers"), which raise on a GPU stream, when the suite runs
    with the GPU as default device."""
    monkeypatch.setenv("BITNET_EXT_TEST_DEVICE", "cpu")
    previous = mx.default_device()
    mx.set_default_device(mx.cpu)
    yield
    mx.set_default_device(previous)
