"""The installed package: version guard, stubs, CLI entry point, laziness."""

import importlib.resources
import json
import pathlib
import re
import subprocess
import sys

import mlx.core as mx
import pytest

import bitnet_ext as bx
from bitnet_ext import _compat


def test_build_version_recorded_and_matches_runtime():
    assert bx._ext.MLX_BUILD_VERSION == mx.__version__
    from bitnet_ext._build_config import MLX_BUILD_VERSION

    assert MLX_BUILD_VERSION == mx.__version__


def test_version_mismatch_is_a_clear_import_error(monkeypatch):
    monkeypatch.setattr(mx, "__version__", "0.0.1")
    with pytest.raises(ImportError) as info:
        _compat.check_mlx_version()
    message = str(info.value)
    assert "0.0.1" in message and bx._ext.MLX_BUILD_VERSION in message


def test_type_stubs_and_marker_are_installed():
    files = importlib.resources.files("bitnet_ext")
    stub = files.joinpath("_ext.pyi").read_text()
    assert "def ternary_matmul(x: mlx.core.array" in stub
    assert "-> mlx.core.array" in stub
    assert files.joinpath("py.typed").is_file()


def test_ops_are_lazy():
    wq = bx.pack(mx.ones((4, 32), dtype=mx.int8))
    x = mx.ones((2, 32))
    outputs = [
        bx.ternary_matmul(x, wq, 1.0),
        bx.ternary_matmul(mx.ones((2, 4)), wq, 1.0, transpose=False),
        bx.bitlinear(x, wq, 1.0),
        *bx.absmax_quantize(x),
        *bx.absmean_quantize(x),
        bx.unpack(wq),
        bx.dequantize(wq, 1.0),
    ]
    for out in outputs:
        assert not _is_evaluated(out)
    mx.eval(*outputs)
    assert all(_is_evaluated(out) for out in outputs)


def _is_evaluated(a: mx.array) -> bool:
    # mx.array has no public "is evaluated" flag, but its graph export lists
    # the producing primitives (rectangles) until it is evaluated.
    import io

    buf = io.StringIO()
    mx.export_to_dot(buf, a)
    return "shape=rectangle" not in buf.getvalue()


def test_main_module_self_check_json():
    out = subprocess.run(
        [sys.executable, "-m", "bitnet_ext", "--json", "--no-bench"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["checks"] and all(c["passed"] for c in report["checks"])
    names = {c["name"] for c in report["checks"]}
    for op in ("pack", "unpack", "dequantize", "absmean_quantize", "absmax_quantize"):
        assert op in names


def _run_main(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "bitnet_ext", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def test_namespace_is_the_public_api():
    # A fresh interpreter: what `import bitnet_ext` alone binds (no `mx`, no helpers).
    code = "import bitnet_ext as bx; print(sorted(n for n in vars(bx) if not n.startswith('_')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == str(sorted(bx.__all__))


def _mypy(*args, cwd):
    pytest.importorskip("mypy", reason="mypy is not installed (the test extra installs it: pip install '.[test]')")
    return subprocess.run([sys.executable, "-m", "mypy", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def test_package_is_fully_annotated_and_mypy_clean():
    # pyproject.toml's [tool.mypy]: python/bitnet_ext, every function annotated; the compiled
    # module's types come from the installed _ext.pyi.
    root = pathlib.Path(__file__).resolve().parents[1]
    out = _mypy(cwd=root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Success: no issues found" in out.stdout


def test_installed_types_reach_user_code(tmp_path):
    # What a user's mypy sees of the installed package (py.typed, the generated _ext.pyi):
    # real signatures, and a wrong argument is an error, not Any.
    (tmp_path / "user.py").write_text(
        "import mlx.core as mx\n"
        "import bitnet_ext as bx\n"
        "from bitnet_ext.nn import BitLinear\n"
        "reveal_type(bx.ternary_matmul)\n"
        "reveal_type(BitLinear.from_linear)\n"
        "reveal_type(bx.convert.convert_checkpoint)\n"
        "bx.bitlinear('x', mx.ones((1, 2), dtype=mx.uint32), 1.0)\n"
    )
    out = _mypy("--cache-dir", str(tmp_path / "cache"), "user.py", cwd=tmp_path)
    assert 'Revealed type is "def (x: mlx.core.array, wq: mlx.core.array, scale: mlx.core.array | float' in out.stdout
    assert ") -> bitnet_ext.nn.BitLinear" in out.stdout
    assert "force: bool =, progress: bool =) -> dict" in out.stdout
    assert 'user.py:7: error: Argument 1 to "bitlinear" has incompatible type "str"; expected "array"' in out.stdout
    assert "Found 1 error in 1 file" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("args, message", [
    (["--repeats", "0"], "--repeats: must be >= 1, got 0"),
    (["--repeats", "x"], "--repeats: expected a positive integer, got 'x'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])  # fmt: skip
def test_main_rejects_bad_arguments_without_traceback(args, message):
    out = _run_main(*args)
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.startswith("usage: python -m bitnet_ext")


def test_console_script_names_itself():
    script = pathlib.Path(sys.executable).parent / "bitnet-ext"
    if not script.exists():
        pytest.skip(f"no bitnet-ext script next to {sys.executable} (not a pip-installed environment)")
    out = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("usage: bitnet-ext ")


def test_main_benchmark_has_numpy_and_skips_slow_baselines_by_default():
    out = _run_main("--json", "--repeats", "1")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["benchmark"]
    assert {(r["M"], r["N"], r["K"]) for r in rows} == {(1, 2560, 2560), (128, 2560, 2560), (1, 6912, 2560),
                                                          (128, 6912, 2560)}  # fmt: skip
    for r in rows:
        t = r["median_ms"]
        assert all(t[m] > 0 for m in ("bitlinear", "ternary_mm", "NumPy f32"))
        slow = [t["MLX f32"], t["mx qmm 2b"]]
        assert all(v is None for v in slow) if r["M"] > 1 else all(v > 0 for v in slow)
        fastest_other = min(v for m, v in t.items() if m not in ("bitlinear", "ternary_mm") and v)
        assert r["bitlinear_speedup"] == pytest.approx(fastest_other / t["bitlinear"])
    assert "bitlinear vs fastest other" in out.stderr  # the text table streams to stderr with --json


def test_user_wheel_leaves_the_shader_harness_out():
    # The harness is a test tool: OFF by default in CMake and explicitly OFF for pip builds
    # (a reused build dir would otherwise keep a cached ON).
    root = pathlib.Path(__file__).resolve().parents[1]
    assert 'BITNET_EXT_BUILD_METAL_HARNESS = "OFF"' in (root / "pyproject.toml").read_text()
    cmake = (root / "CMakeLists.txt").read_text()
    assert re.search(r'option\(BITNET_EXT_BUILD_METAL_HARNESS "[^"]*" OFF\)', cmake)
