"""The installed package: version guard, stubs, CLI entry point, laziness."""

import importlib.resources
import json
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
