"""The Metal backend's own checks: the metallib and run-time shader
compilation on a real Apple GPU, plus the checks of the Metal host code that
run anywhere. Every op on the GPU against the reference is in
tests/test_gpu.py (the same tests for every GPU backend).

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
"""

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest

import bitnet_ext as bx
from conftest import gpu_info, real_apple_gpu_reason, run_python

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "kernels"
METAL_DIR = ROOT / "csrc" / "gpu" / "metal"


# ---------------------------------------------------------------------------
# Is there a real Apple GPU? (conftest.real_apple_gpu_reason)

_REASON = real_apple_gpu_reason()


@pytest.fixture
def apple_gpu():
    if _REASON is not None:
        if os.environ.get("BITNET_EXT_REQUIRE_GPU", "") not in ("", "0"):
            pytest.fail(f"BITNET_EXT_REQUIRE_GPU is set but {_REASON}")
        pytest.skip(_REASON)
    return gpu_info()


# ---------------------------------------------------------------------------
# The metallib is part of the package


def test_metallib_installed_next_to_extension(apple_gpu):
    ext_dir = Path(bx._ext.__file__).resolve().parent
    metallib = ext_dir / "bitnet_ext.metallib"
    if os.environ.get("BITNET_EXT_METAL_JIT", "") not in ("", "0"):
        pytest.skip("BITNET_EXT_METAL_JIT is set: the shaders are compiled at run time")
    assert metallib.is_file(), f"{metallib} is missing: the wheel was built without cmake/metal.cmake"


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
