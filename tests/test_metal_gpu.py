"""The Metal backend: every op on a real Apple GPU (stream=mx.gpu) against
``bitnet_ext.reference`` on the CPU, plus the checks of the Metal host code
that run anywhere.

Two groups:

* Anywhere (Linux included): the run-time compilation (JIT) source expander
  (csrc/gpu/metal/jit_source.cpp, built here with the system C++ compiler and
  run on a synthetic tree and on every kernels/*.metal), and, on Linux, the
  type-check of the Metal host code against MLX's headers
  (csrc/gpu/metal/typecheck/typecheck.sh). Skipped without a C++ compiler.
* Real Apple GPU only: skipped, with the reason, unless MLX has a Metal device
  whose architecture is an Apple GPU (``applegpu_g*``) and that is not the
  paravirtual GPU of GitHub-hosted macOS runners. With
  ``BITNET_EXT_REQUIRE_GPU=1`` (the self-hosted GPU job of
  .github/workflows/macos.yml) these tests fail instead of skipping, so a
  runner without a usable GPU cannot pass silently.

The rest of the suite runs on the GPU too when MLX's default device is the
GPU (``BITNET_EXT_TEST_DEVICE=gpu``, see .github/scripts/pytest_device.py);
this file always names ``stream=mx.gpu`` itself and compares with the
reference evaluated on the CPU.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import (
    assert_close,
    assert_equal,
    dtype_params,
    make_scale,
    make_weights,
    matmul_sumsq,
    randn,
    run_python,
    to_np,
)

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
METAL_DIR = ROOT / "csrc" / "gpu" / "metal"


# ---------------------------------------------------------------------------
# Is there a real Apple GPU?


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


_REASON = real_apple_gpu_reason()


def grid(values):
    """Parameter values of a GPU test: all of them on a real Apple GPU, else
    just the first (its one skip carries the reason; no wall of skips)."""
    values = list(values)
    return values if _REASON is None else values[:1]


@pytest.fixture
def apple_gpu():
    if _REASON is not None:
        if os.environ.get("BITNET_EXT_REQUIRE_GPU", "") not in ("", "0"):
            pytest.fail(f"BITNET_EXT_REQUIRE_GPU is set but {_REASON}")
        pytest.skip(_REASON)
    return gpu_info()


def on_gpu(fn, *args, **kwargs):
    """fn(*args, stream=mx.gpu, ...) evaluated; fails if the op fell back to the CPU."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = fn(*args, stream=mx.gpu, **kwargs)
        mx.eval(out)
    fallback = [str(w.message) for w in rec if "CPU" in str(w.message)]
    assert not fallback, f"the op ran on the CPU instead of the GPU: {fallback}"
    return out


def evaluated(a):
    """`a`, evaluated (so that slicing or transposing it gives a real view)."""
    mx.eval(a)
    return a


def ref_cpu(fn, *args, **kwargs):
    """The reference fn(*args, **kwargs) built and evaluated on the CPU."""
    with mx.stream(mx.cpu):
        out = fn(*args, **kwargs)
        mx.eval(out)
    return out


# ---------------------------------------------------------------------------
# The metallib is part of the package


def test_metallib_installed_next_to_extension(apple_gpu):
    ext_dir = Path(bx._ext.__file__).resolve().parent
    metallib = ext_dir / "bitnet_ext.metallib"
    if os.environ.get("BITNET_EXT_METAL_JIT", "") not in ("", "0"):
        pytest.skip("BITNET_EXT_METAL_JIT is set: the shaders are compiled at run time")
    assert metallib.is_file(), f"{metallib} is missing: the wheel was built without cmake/metal.cmake"


# ---------------------------------------------------------------------------
# ternary_matmul


def _check_matmul_gpu(x, codes, wq, scale, transpose, what):
    y = on_gpu(bx.ternary_matmul, x, wq, scale, transpose=transpose)
    r = ref_cpu(ref.ternary_matmul, x, wq, scale, transpose=transpose)
    R = codes.shape[1] if transpose else codes.shape[0]
    assert_close(y, r, matmul_sumsq(x, codes, scale, transpose), R, what)
    return y


# (N, K): N tails (1, 7, 33), K/16 odd, not a multiple of 4 words (v1 loads), K = 6912.
MATMUL_NK = [(1, 16), (7, 48), (33, 64), (130, 6912)]
MATMUL_M = [1, 2, 4, 5, 8, 9, 16, 17, 40]


@pytest.mark.parametrize("M", grid(MATMUL_M), ids=lambda m: f"M{m}")
@pytest.mark.parametrize("NK", grid(MATMUL_NK), ids=lambda s: "N{}_K{}".format(*s))
@pytest.mark.parametrize("transpose", grid([True, False]), ids=lambda t: "T" if t else "N")
@pytest.mark.parametrize("dtype", grid(dtype_params()))
def test_ternary_matmul_gpu(apple_gpu, dtype, transpose, NK, M):
    N, K = NK
    codes, wq = make_weights(N, K, seed=N + K)
    scale = make_scale("row", N, seed=N)
    x = randn((M, K if transpose else N), dtype, seed=M)
    y = _check_matmul_gpu(x, codes, wq, scale, transpose, f"ternary_matmul M={M} N={N} K={K}")
    assert y.shape == (M, N if transpose else K)


@pytest.mark.parametrize("kind", grid(["scalar", "one", "row"]))
@pytest.mark.parametrize("M", grid([1, 33]), ids=lambda m: f"M{m}")
@pytest.mark.parametrize("transpose", grid([True, False]), ids=lambda t: "T" if t else "N")
@pytest.mark.parametrize("dtype", grid(dtype_params()))
def test_ternary_matmul_gpu_scales(apple_gpu, dtype, transpose, M, kind):
    N, K = 40, 256
    codes, wq = make_weights(N, K, seed=3)
    scale = make_scale(kind, N, seed=4)
    x = randn((M, K if transpose else N), dtype, seed=5)
    _check_matmul_gpu(x, codes, wq, scale, transpose, f"ternary_matmul scale={kind}")


# BitNet b1.58 2B-4T projections (N, K): q/o, k/v, gate/up, down.
BITNET_2B4T = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)]


@pytest.mark.parametrize("M", grid([1, 4, 16, 128]), ids=lambda m: f"M{m}")
@pytest.mark.parametrize("NK", grid(BITNET_2B4T), ids=lambda s: "N{}_K{}".format(*s))
def test_model_shapes_gpu(apple_gpu, NK, M):
    N, K = NK
    codes, wq = make_weights(N, K, seed=11)
    scale = make_scale("scalar", N, seed=12)
    x = randn((M, K), mx.float16, seed=13)
    _check_matmul_gpu(x, codes, wq, scale, True, f"ternary_matmul 2B-4T M={M} N={N} K={K}")
    y = on_gpu(bx.bitlinear, x, wq, scale)
    assert_equal(y, ref_cpu(ref.bitlinear, x, wq, scale), f"bitlinear 2B-4T M={M} N={N} K={K}")


@pytest.mark.parametrize("transpose", grid([True, False]), ids=lambda t: "T" if t else "N")
def test_ternary_matmul_gpu_layouts(apple_gpu, transpose):
    """Batch axes, a transposed (non-contiguous) x, x and wq at buffer offsets."""
    N, K = 36, 320
    codes, wq = make_weights(N, K, seed=21)
    scale = make_scale("row", N, seed=22)
    D = K if transpose else N
    # leading batch axes
    x = randn((2, 3, D), mx.float32, seed=23)
    _check_matmul_gpu(x, codes, wq, scale, transpose, "batched x")
    # non-contiguous x: the transpose of a (D, 5) array
    xt = mx.transpose(evaluated(randn((D, 5), mx.float16, seed=24)))
    _check_matmul_gpu(xt, codes, wq, scale, transpose, "transposed x")
    # x and wq at an offset into their buffers (slices of bigger arrays); a
    # one-row offset of wq is K/16*4 = 80 bytes: not 16-byte aligned
    big_x = evaluated(randn((7, D), mx.bfloat16, seed=25))
    _check_matmul_gpu(big_x[3:], codes, wq, scale, transpose, "x at an offset")
    codes2, wq2 = make_weights(N + 1, K, seed=26)
    _check_matmul_gpu(big_x[1:4], codes2[1:], evaluated(wq2)[1:], scale, transpose, "wq at an offset")


def test_empty_batch_gpu(apple_gpu):
    codes, wq = make_weights(8, 32, seed=1)
    scale = make_scale("row", 8)
    x = mx.zeros((0, 32), mx.float16)
    assert on_gpu(bx.ternary_matmul, x, wq, scale).shape == (0, 8)
    assert on_gpu(bx.bitlinear, x, wq, scale).shape == (0, 8)
    xq, xs = on_gpu(bx.absmax_quantize, x)
    assert xq.shape == (0, 32) and xs.shape == (0, 1)


def test_ternary_matmul_grad_gpu(apple_gpu):
    """The VJP runs the transposed (transpose=False) kernels on the GPU."""
    N, K, M = 24, 96, 3
    codes, wq = make_weights(N, K, seed=31)
    scale = make_scale("row", N, seed=32)
    x = randn((M, K), mx.float32, seed=33)
    g = randn((M, N), mx.float32, seed=34)

    def f_gpu(x):
        return (bx.ternary_matmul(x, wq, scale, stream=mx.gpu) * g).sum()

    def f_ref(x):
        return (ref.ternary_matmul(x, wq, scale) * g).sum()

    dx = mx.grad(f_gpu)(x)
    dr = ref_cpu(mx.grad(f_ref), x)
    assert_close(dx, dr, (to_np(g) ** 2) @ (np.abs(to_np(codes)) * to_np(scale)[:, None] ** 2), N, "d/dx")


# ---------------------------------------------------------------------------
# bitlinear (bit-exact) and the quantizers


@pytest.mark.parametrize("bias", grid([False, True]))
@pytest.mark.parametrize("kind", grid(["scalar", "row"]))
@pytest.mark.parametrize("M", grid([1, 3, 8, 16, 17, 70]), ids=lambda m: f"M{m}")
@pytest.mark.parametrize("NK", grid([(1, 16), (33, 208), (64, 6912)]), ids=lambda s: "N{}_K{}".format(*s))
@pytest.mark.parametrize("dtype", grid(dtype_params()))
def test_bitlinear_gpu_exact(apple_gpu, dtype, NK, M, kind, bias):
    N, K = NK
    codes, wq = make_weights(N, K, seed=N * K + M)
    scale = make_scale(kind, N, seed=7)
    b = randn((N,), mx.float32, seed=8) if bias else None
    x = randn((M, K), dtype, seed=M, std=3.0)
    y = on_gpu(bx.bitlinear, x, wq, scale, bias=b)
    assert_equal(y, ref_cpu(ref.bitlinear, x, wq, scale, bias=b), f"bitlinear M={M} N={N} K={K}")


@pytest.mark.parametrize("shape", grid([(1, 1), (1, 16), (3, 100), (17, 2560), (5, 6912), (2, 3, 64)]),
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", grid(dtype_params()))
def test_absmax_quantize_gpu_exact(apple_gpu, dtype, shape):
    x = randn(shape, dtype, seed=sum(shape), std=2.0)
    xq, xs = on_gpu(bx.absmax_quantize, x)
    rq, rs = ref_cpu(ref.absmax_quantize, x)
    assert_equal(xq, rq, "xq")
    assert_equal(xs, rs, "xscale")


@pytest.mark.parametrize("per_channel", grid([False, True]))
@pytest.mark.parametrize("NK", grid([(1, 16), (7, 48), (300, 2560), (64, 6912)]), ids=lambda s: "N{}_K{}".format(*s))
@pytest.mark.parametrize("dtype", grid(dtype_params()))
def test_absmean_quantize_gpu(apple_gpu, dtype, NK, per_channel):
    """The scale within float32 reduction error of the float64 reference; the
    codes exactly those of round(w / scale) with the GPU's own scale."""
    N, K = NK
    w = randn((N, K), dtype, seed=N + K)
    wq, scale = on_gpu(bx.absmean_quantize, w, per_channel=per_channel)
    _, rscale = ref_cpu(ref.absmean_quantize, w, per_channel=per_channel)
    n = K if per_channel else N * K
    s, r = to_np(scale), to_np(rscale)
    assert s.shape == r.shape
    np.testing.assert_allclose(s, r, rtol=8 * 2.0**-24 * max(1.0, np.sqrt(n)), atol=0)
    w32 = np.array(w.astype(mx.float32))
    rs = s.reshape(-1, 1) if s.ndim else s
    expected = np.clip(np.round(w32 / rs.astype(np.float32)), -1, 1).astype(np.int8)
    assert_equal(bx.unpack(wq, stream=mx.cpu), mx.array(expected), "codes from the GPU's own scale")


@pytest.mark.parametrize("NK", grid([(1, 16), (5, 48), (257, 2560)]), ids=lambda s: "N{}_K{}".format(*s))
def test_pack_unpack_gpu_exact(apple_gpu, NK):
    N, K = NK
    codes, wq = make_weights(N, K, seed=N)
    assert_equal(on_gpu(bx.pack, codes), wq, "pack")
    assert_equal(on_gpu(bx.unpack, wq), codes, "unpack")


@pytest.mark.parametrize("kind", grid(["scalar", "one", "row"]))
@pytest.mark.parametrize("dtype", grid(dtype_params()))
def test_dequantize_gpu_exact(apple_gpu, dtype, kind):
    N, K = 45, 6912
    codes, wq = make_weights(N, K, seed=2)
    scale = make_scale(kind, N, seed=3)
    y = on_gpu(bx.dequantize, wq, scale, dtype=dtype)
    assert_equal(y, ref_cpu(ref.dequantize, wq, scale, dtype=dtype), "dequantize")


# ---------------------------------------------------------------------------
# Kernel library loading (subprocesses: the choice is made once per process)

_CHILD = r"""
import mlx.core as mx, bitnet_ext as bx
from bitnet_ext import reference as ref
codes = mx.random.randint(-1, 2, (40, 256), key=mx.random.key(0)).astype(mx.int8)
wq = ref.pack(codes)
s = mx.array(0.5)
x = mx.random.normal((3, 256), key=mx.random.key(1)).astype(mx.float16)
y = bx.bitlinear(x, wq, s, stream=mx.gpu)
print("EQUAL", mx.array_equal(y, ref.bitlinear(x, wq, s)).item())
"""


def test_jit_mode_gpu(apple_gpu):
    """BITNET_EXT_METAL_JIT=<kernels dir>: the shaders compiled from source at run time."""
    if not any(KERNELS.glob("*.metal")):
        pytest.skip("no kernels/*.metal in this checkout")
    proc = run_python(_CHILD, env={"BITNET_EXT_METAL_JIT": str(KERNELS)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "EQUAL True" in proc.stdout, proc.stdout + proc.stderr[-4000:]


def test_missing_metallib_is_a_clear_error(apple_gpu):
    proc = run_python(_CHILD, env={"BITNET_EXT_METALLIB": "/nonexistent/bitnet_ext.metallib",
                                   "BITNET_EXT_METAL_JIT": "0"})
    assert proc.returncode != 0
    assert "/nonexistent/bitnet_ext.metallib" in proc.stderr and "BITNET_EXT_METAL_JIT" in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------
# Anywhere: the JIT source expander and the host-code type-check


def _cxx():
    for c in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if c and shutil.which(c):
            return shutil.which(c)
    return None


_DRIVER = r"""
#include <cstdio>
#include <string>
#include <vector>
#include "gpu/metal/jit_source.h"

static void str(const std::string& s) {
  std::putchar('"');
  for (char c : s) {
    if (c == '"' || c == '\\') std::putchar('\\');
    std::putchar(c);
  }
  std::putchar('"');
}

int main(int argc, char** argv) {
  // jit_expand OUT MAIN [INCLUDE_DIR...]
  std::vector<std::string> dirs(argv + 3, argv + argc);
  auto js = bitnet_ext::metal::expand_metal_source(argv[2], dirs);
  if (FILE* f = std::fopen(argv[1], "wb")) {
    std::fwrite(js.text.data(), 1, js.text.size(), f);
    std::fclose(f);
  }
  std::printf("{\"non_ascii_bytes\": %d, \"files\": [", js.non_ascii_bytes);
  for (size_t i = 0; i < js.files.size(); ++i) { if (i) std::printf(", "); str(js.files[i]); }
  std::printf("], \"unresolved\": [");
  for (size_t i = 0; i < js.unresolved.size(); ++i) { if (i) std::printf(", "); str(js.unresolved[i]); }
  std::printf("]}\n");
  return 0;
}
"""


@pytest.fixture(scope="module")
def jit_expand(tmp_path_factory):
    cxx = _cxx()
    if cxx is None:
        pytest.skip("no C++ compiler to build the JIT source expander")
    d = tmp_path_factory.mktemp("jit")
    (d / "driver.cpp").write_text(_DRIVER)
    exe = d / "jit_expand"
    cmd = [cxx, "-std=c++17", "-O1", f"-I{ROOT / 'csrc'}", str(d / "driver.cpp"),
           str(METAL_DIR / "jit_source.cpp"), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr

    def run(main, *include_dirs):
        out = d / "expanded.metal"
        p = subprocess.run([str(exe), str(out), str(main), *map(str, include_dirs)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return out.read_text(), json.loads(p.stdout)

    return run


def test_jit_source_synthetic(jit_expand, tmp_path):
    k = tmp_path / "kernels"
    (k / "sub").mkdir(parents=True)
    inc = tmp_path / "inc" / "mlx"
    inc.mkdir(parents=True)
    (k / "common.h").write_text("#pragma once\n// caf\u00e9\nconstant int A = 1;\n", encoding="utf-8")
    (k / "sub" / "deep.h").write_text('# pragma once // guard\n#include "../common.h"\n#include "mlx/x.h"\nint b;\n')
    (k / "twice.h").write_text("int twice;\n")
    (inc / "x.h").write_text("int from_mlx;\n")
    (k / "main.metal").write_text(
        '#include "common.h"\n#include "sub/deep.h"\n#include <metal_stdlib>\n'
        '#include "twice.h"\n#include "twice.h"\n#include "missing.h"\nkernel void f() {}\n'
    )
    text, info = jit_expand(k / "main.metal", k, tmp_path / "inc")
    assert text.startswith("#define BITNET_EXT_METAL_JIT 1\n#define MLX_METAL_JIT 1\n")
    assert text.count("constant int A = 1;") == 1  # #pragma once honoured across files
    assert text.count("int twice;") == 2  # no pragma once: inlined each time
    assert "int from_mlx;" in text and "int b;" in text
    assert "#include <metal_stdlib>" in text
    assert '#include "missing.h"' in text and info["unresolved"] == ["missing.h"]
    assert "pragma once" not in text
    assert info["non_ascii_bytes"] == 1 * len("\u00e9".encode("utf-8"))
    assert all(ord(c) < 128 for c in text)
    # line directives point back at the original files and lines
    main = str((k / "main.metal").resolve())
    assert f'#line 1 "{main}"' in text and f'#line 3 "{main}"' in text
    assert [Path(f).name for f in info["files"]] == ["main.metal", "common.h", "deep.h", "x.h", "twice.h"]


def test_jit_source_expands_every_kernel_file(jit_expand):
    files = sorted(KERNELS.glob("*.metal"))
    if not files:
        pytest.skip("no kernels/*.metal yet")
    mlx_inc = Path(mx.__file__).parent / "include"
    for f in files:
        text, info = jit_expand(f, KERNELS, ROOT, mlx_inc)
        assert not info["unresolved"], f"{f.name}: #include not found by the JIT expander: {info['unresolved']}"
        assert "[[kernel]]" in text or "kernel void" in text, f"{f.name}: no kernel after expansion"


@pytest.mark.skipif(platform.system() == "Darwin", reason="on macOS the real build compiles the Metal host code")
def test_metal_host_code_typechecks():
    """csrc/gpu/metal/*.cpp against MLX's real headers (stand-in metal-cpp declarations)."""
    if _cxx() is None or shutil.which("bash") is None:
        pytest.skip("needs bash and a C++ compiler")
    script = METAL_DIR / "typecheck" / "typecheck.sh"
    env = dict(os.environ, CXX=_cxx())
    proc = subprocess.run(["bash", str(script), sys.executable], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-6000:]
