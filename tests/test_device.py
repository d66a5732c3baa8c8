"""Streams and devices: every op takes stream=; a GPU request on an MLX
without a GPU backend (this Linux mlx-cpu build) raises, as plain MLX does."""

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
    with mx.stream(mx.cpu):  # the default device may be a GPU, whose float sums round differently
        want = _as_tuple(call())
    got = _as_tuple(call(stream=s))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert_equal(g, w, f"{op}(stream={stream})")


@pytest.mark.skipif(mx.is_available(mx.gpu), reason="this MLX has a GPU backend")
def test_gpu_request_without_gpu_backend_raises_every_time():
    """On an MLX without any GPU backend, stream=mx.gpu raises ValueError as
    plain MLX does for its own ops, on every call, whatever the warnings
    filter, and with a message that says so (not a 'no kernels' warning)."""
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
        try:
            mx.add(x, x, stream=mx.gpu)
            plain = None
        except Exception as e:
            plain = type(e).__name__
        outcomes = []
        for filt in ("default", "error", "always"):
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter(filt)
                for rep in range(2):
                    for name, call in calls.items():
                        for stream in (mx.gpu, mx.Device(mx.gpu)):
                            try:
                                out = call(stream=stream)
                                mx.eval(out)
                                outcomes.append([filt, rep, name, "no error", ""])
                            except Exception as e:
                                outcomes.append([filt, rep, name, type(e).__name__, str(e)])
                warned = [str(wr.message) for wr in rec]
            outcomes.append([filt, "warnings", warned])
        print("REPORT " + json.dumps({"plain": plain, "outcomes": outcomes}))
    """
    proc = run_python(code)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert line, proc.stdout + proc.stderr
    rep = json.loads(line[0][len("REPORT ") :])
    assert rep["plain"] == "ValueError", rep["plain"]  # what plain MLX does
    for o in rep["outcomes"]:
        if o[1] == "warnings":
            assert o[2] == [], f"warnings filter {o[0]!r}: unexpected warnings {o[2]}"
            continue
        filt, rep_i, name, kind, msg = o
        assert kind == "ValueError", f"{name} (call {rep_i}, filter {filt!r}): got {kind}: {msg}"
        assert "no GPU backend" in msg and "stream=mx.cpu" in msg, msg
        op = name.replace("_N", "").replace("fake_quantize", "absmean_quantize")
        assert msg.startswith(op + ":"), f"{name}: the message should name the op: {msg}"


def test_gpu_backend_without_our_kernels_warns_on_every_call():
    """An MLX GPU backend we have no kernels for (CUDA; simulated here with a
    test hook): the op runs on the CPU with the right result and warns on every
    call, so the warnings filter decides: 'error' raises on every call (not
    only the first), 'always' shows every call, 'default' once per place."""
    code = r"""
        import json, warnings
        import mlx.core as mx
        import bitnet_ext as bx
        if mx.is_available(mx.gpu):
            print("REPORT null")
            raise SystemExit(0)
        bx._ext._pretend_gpu_backend_for_testing(True)
        mx.random.seed(0)
        N, K = 7, 64
        codes = mx.random.randint(-1, 2, (N, K)).astype(mx.int8)
        wq = bx.pack(codes, stream=mx.cpu)
        x, s = mx.random.normal((3, K)), mx.random.uniform(0.1, 1.0, (N,))
        calls = {
            "ternary_matmul": lambda **kw: bx.ternary_matmul(x, wq, s, **kw),
            "bitlinear": lambda **kw: bx.bitlinear(x, wq, s, **kw),
            "unpack": lambda **kw: bx.unpack(wq, **kw),
        }
        report = {}
        for filt in ("error", "always", "default"):
            rows = []
            with warnings.catch_warnings(record=True) as rec:
                warnings.simplefilter(filt)
                for rep in range(3):
                    for name, call in calls.items():
                        n0 = len(rec)
                        try:
                            got = call(stream=mx.gpu)
                            same = mx.array_equal(got, call(stream=mx.cpu)).item()
                            rows.append([rep, name, "ok", same, [str(w.message) for w in rec[n0:]]])
                        except Exception as e:
                            rows.append([rep, name, type(e).__name__, str(e), []])
            report[filt] = rows
        print("REPORT " + json.dumps(report), flush=True)
    """
    proc = run_python(code)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert line, proc.stdout + proc.stderr
    rep = json.loads(line[0][len("REPORT ") :])
    if rep is None:
        pytest.skip("this MLX has a GPU backend")
    for rep_i, name, kind, msg, _ in rep["error"]:
        assert kind == "RuntimeWarning", f"filter 'error', call {rep_i} of {name}: got {kind} {msg}"
        assert msg.startswith(name + ":") and "running on the CPU" in msg, msg
    for rep_i, name, kind, same, warned in rep["always"]:
        assert kind == "ok" and same, f"{name} call {rep_i}: {kind} {same}"
        assert len(warned) == 1 and "no kernels for this MLX GPU backend" in warned[0], warned
    for rep_i, name, kind, same, warned in rep["default"]:
        assert kind == "ok" and same, f"{name} call {rep_i}: {kind} {same}"
        assert len(warned) == (1 if rep_i == 0 else 0), f"'default' filter, {name} call {rep_i}: {warned}"
