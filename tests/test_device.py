"""Streams and devices: every op takes stream=; a GPU request without our GPU
kernels (this Linux mlx-cpu build) runs on the CPU and warns once."""

import json

import mlx.core as mx
import pytest

import bitnet_ext as bx
from conftest import assert_equal, make_scale, make_weights, randn, run_python


def _calls():
    N, K = 7, 64
    codes, wq = make_weights(N, K, seed=1)
    x, xn, w = randn((3, K), seed=2), randn((3, N), seed=3), randn((N, K), seed=4)
    s, b = make_scale("row", N), randn((N,), seed=5)
    return {
        "pack": lambda **kw: bx.pack(codes, **kw),
        "unpack": lambda **kw: bx.unpack(wq, **kw),
        "absmean_quantize": lambda **kw: bx.absmean_quantize(w, per_channel=True, **kw),
        "dequantize": lambda **kw: bx.dequantize(wq, s, **kw),
        "ternary_matmul": lambda **kw: bx.ternary_matmul(x, wq, s, **kw),
        "ternary_matmul_N": lambda **kw: bx.ternary_matmul(xn, wq, s, transpose=False, **kw),
        "absmax_quantize": lambda **kw: bx.absmax_quantize(x, **kw),
        "bitlinear": lambda **kw: bx.bitlinear(x, wq, s, bias=b, **kw),
        "fake_quantize": lambda **kw: bx.fake_quantize(w, **kw),
    }


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


@pytest.mark.parametrize("stream", ["cpu_device", "cpu_default_stream", "new_cpu_stream"])
@pytest.mark.parametrize("op", list(_calls()))
def test_stream_argument(op, stream):
    s = {
        "cpu_device": lambda: mx.cpu,
        "cpu_default_stream": lambda: mx.default_stream(mx.cpu),
        "new_cpu_stream": lambda: mx.new_stream(mx.cpu),
    }[stream]()
    call = _calls()[op]
    want = _as_tuple(call())
    got = _as_tuple(call(stream=s))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_equal(g, w, f"{op}(stream={stream})")


@pytest.mark.skipif(mx.is_available(mx.gpu), reason="this MLX has a GPU backend; the fallback is for builds without one")
def test_gpu_request_falls_back_to_cpu_and_warns_once():
    code = r"""
        import json, warnings
        import mlx.core as mx
        import bitnet_ext as bx
        assert not mx.is_available(mx.gpu)
        mx.random.seed(0)
        N, K = 7, 64
        codes = mx.random.randint(-1, 2, (N, K)).astype(mx.int8)
        wq = bx.pack(codes, stream=mx.cpu)
        x, xn, w = mx.random.normal((3, K)), mx.random.normal((3, N)), mx.random.normal((N, K))
        s, b = mx.random.uniform(0.1, 1.0, (N,)), mx.random.normal((N,))
        calls = {
            "ternary_matmul": lambda **kw: bx.ternary_matmul(x, wq, s, **kw),
            "ternary_matmul_N": lambda **kw: bx.ternary_matmul(xn, wq, s, transpose=False, **kw),
            "bitlinear": lambda **kw: bx.bitlinear(x, wq, s, bias=b, **kw),
            "absmax_quantize": lambda **kw: bx.absmax_quantize(x, **kw),
            "absmean_quantize": lambda **kw: bx.absmean_quantize(w, **kw),
            "pack": lambda **kw: bx.pack(codes, **kw),
            "unpack": lambda **kw: bx.unpack(wq, **kw),
            "dequantize": lambda **kw: bx.dequantize(wq, s, **kw),
            "fake_quantize": lambda **kw: bx.fake_quantize(w, **kw),
        }
        report = {"warnings": [], "mismatch": [], "errors": []}
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            for rep in range(2):
                for name, call in calls.items():
                    n0 = len(rec)
                    try:
                        got = call(stream=mx.gpu)
                        got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
                        mx.eval(got)
                    except Exception as e:
                        report["errors"].append([name, type(e).__name__, str(e)])
                        continue
                    want = call(stream=mx.cpu)
                    want = tuple(want) if isinstance(want, (tuple, list)) else (want,)
                    if not all(g.shape == v.shape and g.dtype == v.dtype and mx.array_equal(g, v).item()
                               for g, v in zip(got, want)):
                        report["mismatch"].append(name)
                    for wr in rec[n0:]:
                        report["warnings"].append([rep, name, wr.category.__name__, str(wr.message)])
        print("REPORT " + json.dumps(report))
    """
    proc = run_python(code)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert line, proc.stdout + proc.stderr
    rep = json.loads(line[0][len("REPORT ") :])
    assert not rep["errors"], f"ops with stream=mx.gpu raised instead of falling back: {rep['errors']}"
    assert not rep["mismatch"], f"stream=mx.gpu results differ from the CPU ones: {rep['mismatch']}"
    warns = rep["warnings"]
    assert all(cat == "RuntimeWarning" for _, _, cat, _ in warns), warns
    # the very first GPU request warns ...
    assert warns and warns[0][:2] == [0, "ternary_matmul"], f"no RuntimeWarning on the first GPU request: {warns}"
    assert "cpu" in warns[0][3].lower(), f"the warning should say it runs on the CPU: {warns[0][3]}"
    # ... once: repeating a call never warns again, and no op warns twice
    assert not [w for w in warns if w[0] == 1], f"warned again on repeated calls: {warns}"
    names = [w[1] for w in warns]
    assert len(names) == len(set(names)), f"an op warned more than once: {warns}"
