"""mx.compile(shapeless=True) replays a traced graph on new input shapes
without calling the ops: every primitive must check its inputs again there
(output_shapes), so a mismatch raises instead of reading or writing outside
the buffers. Each case runs in a child process, where a crash is a failure
and not a dead pytest."""

import json

import pytest

from conftest import run_python

# name: (function of the compiled inputs, first inputs (valid), second inputs
# (same ndim and dtypes, so MLX reuses the trace), words the error must name)
CASES = {
    "ternary_matmul/huge_wq_after_small": (
        "lambda x, w, s: bx.ternary_matmul(x, w, s)",
        "mx.ones((1, 32)), W4x32, mx.array(1.0)",
        "mx.ones((1, 32)), mx.zeros((4, 1 << 22), mx.uint32), mx.array(1.0)",
        ["ternary_matmul", "x"],
    ),
    "ternary_matmul/K_mismatch": (
        "lambda x, w, s: bx.ternary_matmul(x, w, s)",
        "mx.ones((1, 32)), W4x32, mx.array(1.0)",
        "mx.ones((1, 64)), W4x32, mx.array(1.0)",
        ["ternary_matmul", "K"],
    ),
    "ternary_matmul/scale_length": (
        "lambda x, w, s: bx.ternary_matmul(x, w, s)",
        "mx.ones((1, 32)), W4x32, mx.ones((4,))",
        "mx.ones((1, 32)), W4x32, mx.ones((7,))",
        ["ternary_matmul", "scale"],
    ),
    "ternary_matmul/N_mismatch_transpose_false": (
        "lambda x, w, s: bx.ternary_matmul(x, w, s, transpose=False)",
        "mx.ones((1, 4)), W4x32, mx.ones((4,))",
        "mx.ones((1, 5)), W4x32, mx.ones((4,))",
        ["ternary_matmul", "N"],
    ),
    "bitlinear/huge_wq_after_small": (
        "lambda x, w, s: bx.bitlinear(x, w, s)",
        "mx.ones((1, 32)), W4x32, mx.array(1.0)",
        "mx.ones((1, 32)), mx.zeros((4, 1 << 22), mx.uint32), mx.array(1.0)",
        ["bitlinear", "x"],
    ),
    "bitlinear/K_mismatch": (
        "lambda x, w, s: bx.bitlinear(x, w, s)",
        "mx.ones((2, 32)), W4x32, mx.array(1.0)",
        "mx.ones((2, 48)), W4x32, mx.array(1.0)",
        ["bitlinear", "K"],
    ),
    "bitlinear/scale_length": (
        "lambda x, w, s: bx.bitlinear(x, w, s)",
        "mx.ones((1, 32)), W4x32, mx.ones((4,))",
        "mx.ones((1, 32)), W4x32, mx.ones((9,))",
        ["bitlinear", "scale"],
    ),
    "bitlinear/bias_length": (
        "lambda x, w, s, b: bx.bitlinear(x, w, s, bias=b)",
        "mx.ones((1, 32)), W4x32, mx.ones((4,)), mx.zeros((4,))",
        "mx.ones((1, 32)), W4x32, mx.ones((4,)), mx.zeros((5,))",
        ["bitlinear", "bias"],
    ),
    "dense_matmul/K_mismatch": (
        "lambda x, w: bx.dense_matmul(x, w)",
        "mx.ones((1, 32)), mx.ones((4, 32))",
        "mx.ones((1, 32)), mx.ones((4, 1 << 20))",
        ["dense_matmul", "K"],
    ),
    "int8_matmul/K_mismatch": (
        "lambda x, w, s: bx.int8_matmul(x, w, s)",
        "mx.ones((1, 32)), mx.ones((4, 32), mx.int8), mx.ones((4,))",
        "mx.ones((1, 32)), mx.ones((4, 1 << 16), mx.int8), mx.ones((4,))",
        ["int8_matmul", "K"],
    ),
    "int8_matmul/row_scale_length": (
        "lambda x, w, s: bx.int8_matmul(x, w, s)",
        "mx.ones((1, 32)), mx.ones((4, 32), mx.int8), mx.ones((4,))",
        "mx.ones((1, 32)), mx.ones((4, 32), mx.int8), mx.ones((9,))",
        ["int8_matmul", "row_scale"],
    ),
    "dequantize/scale_length": (
        "lambda w, s: bx.dequantize(w, s)",
        "W4x32, mx.ones((4,))",
        "mx.zeros((8, 2), mx.uint32), mx.ones((4,))",
        ["dequantize", "scale"],
    ),
    "unpack/K_beyond_int32": (
        "lambda w: bx.unpack(w)",
        "W4x32",
        "mx.zeros((1, 1 << 27), mx.uint32)",
        ["unpack", "wq"],
    ),
    "pack/K_not_multiple_of_16": (
        # The C++ op itself (bitnet_ext.pack evaluates codes to check values).
        "lambda c: bx._ext.pack(c)",
        "mx.zeros((2, 32), mx.int8)",
        "mx.zeros((2, 24), mx.int8)",
        ["pack", "16"],
    ),
    "absmean_quantize/K_not_multiple_of_16": (
        "lambda w: bx.absmean_quantize(w)",
        "mx.ones((4, 32))",
        "mx.ones((4, 40))",
        ["absmean_quantize", "16"],
    ),
    "absmax_quantize/K_empty": (
        "lambda x: bx.absmax_quantize(x)",
        "mx.ones((2, 64))",
        "mx.ones((2, 0))",
        ["absmax_quantize", "x"],
    ),
}

CHILD = r"""
import json
import mlx.core as mx
import bitnet_ext as bx

W4x32 = bx.pack(mx.ones((4, 32), mx.int8))

def outputs(r):
    return list(r) if isinstance(r, (tuple, list)) else [r]

f = mx.compile(FN, shapeless=True)
first = outputs(f(FIRST))
mx.eval(first)
try:
    second = outputs(f(SECOND))
    mx.eval(second)
    result = {"error": None, "shapes": [list(a.shape) for a in second]}
except Exception as e:
    result = {"error": type(e).__name__, "message": str(e)}
# The compiled function still works on valid inputs afterwards.
again = outputs(f(FIRST))
result["still_works"] = all(mx.array_equal(a, b).item() for a, b in zip(again, first))
print("RESULT " + json.dumps(result), flush=True)
"""


@pytest.mark.parametrize("case", list(CASES))
def test_shapeless_compile_checks_shapes(case, request):
    if case.startswith(("int8_matmul", "dense_matmul")):
        # int8_matmul: a CPU-only op (on a GPU stream it raises before any shape
        # check); dense_matmul: on GPUs it is MLX's own matmul, whose checks these are not.
        request.getfixturevalue("cpu_device")
    fn, first, second, words = CASES[case]
    code = CHILD.replace("FN", fn).replace("FIRST", first).replace("SECOND", second)
    proc = run_python(code)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stdout + proc.stderr
    res = json.loads(line[0][len("RESULT ") :])
    assert res["error"] == "ValueError", f"{case}: expected ValueError, got {res}"
    for word in words:
        assert word in res["message"], f"{case}: the message should name {word!r}: {res['message']}"
    assert res["still_works"], f"{case}: the compiled function broke after the error"
