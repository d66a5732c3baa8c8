"""Every bad input of the public API raises ValueError / TypeError with a
message that names the offending argument (or the violated rule)."""

import json

import mlx.core as mx
import numpy as np
import pytest

import bitnet_ext as bx
from conftest import make_weights, randn, run_python

N, K = 6, 64
_, WQ = make_weights(N, K, seed=1)
S_ROW = mx.ones((N,))
S = mx.array(0.5)
X = randn((3, K), seed=2)
XN = randn((3, N), seed=3)
W = randn((N, K), seed=4)

DTYPE = (TypeError, ValueError)  # a wrong dtype may be reported as either
SHAPE = ValueError

# Regexes the message must match. K mismatches must name K or both x and wq.
X_MSG = r"\bx\b"
WQ_MSG = r"\bwq\b"
SCALE_MSG = r"\bscale\b"
XK_MSG = r"(?s)\bK\b|\bx\b.*\bwq\b|\bwq\b.*\bx\b"
XN_MSG = r"(?s)\bN\b|\bx\b.*\bwq\b|\bwq\b.*\bx\b"

CASES = {
    # pack / unpack
    "pack/K_not_multiple_of_16": (lambda: bx.pack(mx.zeros((2, 24), mx.int8)), SHAPE, r"16"),
    "pack/float_input": (lambda: bx.pack(mx.zeros((2, 32), mx.float32)), DTYPE, r"(?i)integer|dtype"),
    "pack/float16_input": (lambda: bx.pack(mx.zeros((2, 32), mx.float16)), DTYPE, r"(?i)integer|dtype"),
    "unpack/wq_int32": (lambda: bx.unpack(WQ.astype(mx.int32)), DTYPE, WQ_MSG),
    "unpack/wq_float32": (lambda: bx.unpack(WQ.astype(mx.float32)), DTYPE, WQ_MSG),
    # ternary_matmul
    "matmul/wq_int32": (lambda: bx.ternary_matmul(X, WQ.astype(mx.int32), S), DTYPE, WQ_MSG),
    "matmul/wq_uint8": (lambda: bx.ternary_matmul(X, WQ.astype(mx.uint8), S), DTYPE, WQ_MSG),
    "matmul/wq_float32": (lambda: bx.ternary_matmul(X, WQ.astype(mx.float32), S), DTYPE, WQ_MSG),
    "matmul/wq_1d": (lambda: bx.ternary_matmul(X, WQ.reshape(-1), S), SHAPE, WQ_MSG),
    "matmul/x_int32": (lambda: bx.ternary_matmul(X.astype(mx.int32), WQ, S), DTYPE, X_MSG),
    "matmul/x_int8": (lambda: bx.ternary_matmul(X.astype(mx.int8), WQ, S), DTYPE, X_MSG),
    # float64 made on the CPU: MLX's GPU backends reject creating it there.
    "matmul/x_float64": (lambda: bx.ternary_matmul(X.astype(mx.float64, stream=mx.cpu), WQ, S), DTYPE, X_MSG),
    "matmul/x_ndim0": (lambda: bx.ternary_matmul(mx.array(1.0), WQ, S), SHAPE, X_MSG),
    "matmul/K_mismatch": (lambda: bx.ternary_matmul(randn((3, K - 16)), WQ, S), SHAPE, XK_MSG),
    "matmul/K_mismatch_not16": (lambda: bx.ternary_matmul(randn((3, K + 1)), WQ, S), SHAPE, XK_MSG),
    "matmul/N_mismatch_transpose_false": (
        lambda: bx.ternary_matmul(randn((3, N + 1)), WQ, S, transpose=False),
        SHAPE,
        XN_MSG,
    ),
    "matmul/scale_N_plus_1": (lambda: bx.ternary_matmul(X, WQ, mx.ones((N + 1,))), SHAPE, SCALE_MSG),
    "matmul/scale_N_by_1": (lambda: bx.ternary_matmul(X, WQ, mx.ones((N, 1))), SHAPE, SCALE_MSG),
    "matmul/scale_1_by_1": (lambda: bx.ternary_matmul(X, WQ, mx.ones((1, 1))), SHAPE, SCALE_MSG),
    "matmul/scale_2d": (lambda: bx.ternary_matmul(X, WQ, mx.ones((2, 3))), SHAPE, SCALE_MSG),
    # bitlinear
    "bitlinear/wq_int32": (lambda: bx.bitlinear(X, WQ.astype(mx.int32), S), DTYPE, WQ_MSG),
    "bitlinear/x_int32": (lambda: bx.bitlinear(X.astype(mx.int32), WQ, S), DTYPE, X_MSG),
    "bitlinear/x_ndim0": (lambda: bx.bitlinear(mx.array(1.0), WQ, S), SHAPE, X_MSG),
    "bitlinear/K_mismatch": (lambda: bx.bitlinear(randn((3, K + 16)), WQ, S), SHAPE, XK_MSG),
    "bitlinear/scale_N_plus_1": (lambda: bx.bitlinear(X, WQ, mx.ones((N + 1,))), SHAPE, SCALE_MSG),
    "bitlinear/scale_2d": (lambda: bx.bitlinear(X, WQ, mx.ones((N, 1))), SHAPE, SCALE_MSG),
    "bitlinear/bias_N_plus_1": (lambda: bx.bitlinear(X, WQ, S, bias=mx.zeros((N + 1,))), SHAPE, r"\bbias\b"),
    "bitlinear/bias_2d": (lambda: bx.bitlinear(X, WQ, S, bias=mx.zeros((2, N))), SHAPE, r"\bbias\b"),
    # quantizers
    "absmax/x_int32": (lambda: bx.absmax_quantize(X.astype(mx.int32)), DTYPE, X_MSG),
    "absmax/x_ndim0": (lambda: bx.absmax_quantize(mx.array(1.0)), SHAPE, X_MSG),
    # an empty last axis has no per-token maximum (the reference raises too)
    "absmax/K_empty": (lambda: bx.absmax_quantize(mx.zeros((2, 0))), SHAPE, X_MSG),
    "absmax/K_empty_3d": (lambda: bx.absmax_quantize(mx.zeros((0, 3, 0))), SHAPE, X_MSG),
    # a bool is not a scale (True would silently mean 1.0)
    "matmul/scale_bool": (lambda: bx.ternary_matmul(X, WQ, True), TypeError, SCALE_MSG),
    "bitlinear/scale_bool": (lambda: bx.bitlinear(X, WQ, False), TypeError, SCALE_MSG),
    "dequantize/scale_bool": (lambda: bx.dequantize(WQ, True), TypeError, SCALE_MSG),
    "matmul/x_not_array_like": (lambda: bx.ternary_matmul(object(), WQ, S), TypeError, X_MSG),
    "bitlinear/bias_not_array_like": (lambda: bx.bitlinear(X, WQ, S, bias="abc"), (TypeError, ValueError), r"\bbias\b"),
    "absmean/w_1d": (lambda: bx.absmean_quantize(W.reshape(-1)), SHAPE, r"\bw\b"),
    "absmean/w_3d": (lambda: bx.absmean_quantize(W.reshape(2, 3, K)), SHAPE, r"\bw\b"),
    "absmean/K_not_multiple_of_16": (lambda: bx.absmean_quantize(randn((N, 40))), SHAPE, r"16"),
    "absmean/w_int32": (lambda: bx.absmean_quantize(W.astype(mx.int32)), DTYPE, r"\bw\b"),
    "dequantize/wq_int32": (lambda: bx.dequantize(WQ.astype(mx.int32), S), DTYPE, WQ_MSG),
    "dequantize/scale_N_plus_1": (lambda: bx.dequantize(WQ, mx.ones((N + 1,))), SHAPE, SCALE_MSG),
    "fake_quantize/w_int32": (lambda: bx.fake_quantize(W.astype(mx.int32)), DTYPE, r"\bw\b"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case):
    fn, exc, pattern = CASES[case]
    with pytest.raises(exc, match=pattern):
        mx.eval(fn())  # raising at call time (preferred) or at eval is both accepted


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_at_call(case):
    """Shape/dtype problems are known without evaluating: raise in the call itself."""
    fn, exc, pattern = CASES[case]
    with pytest.raises(exc, match=pattern):
        fn()


def test_good_inputs_next_to_bad_ones():
    """The valid neighbours of the bad cases work (so the errors are specific)."""
    mx.eval(
        bx.pack(mx.zeros((2, 32), mx.int8)),
        bx.ternary_matmul(X, WQ, S),
        bx.ternary_matmul(X, WQ, mx.ones((1,))),
        bx.ternary_matmul(X, WQ, S_ROW),
        bx.ternary_matmul(XN, WQ, S_ROW, transpose=False),
        bx.bitlinear(X, WQ, S_ROW, bias=mx.zeros((N,))),
        bx.absmean_quantize(W),
        bx.dequantize(WQ, S_ROW),
    )


def test_pack_values_outside_ternary():
    """Values outside {-1, 0, 1} raise ValueError (at the call or at eval).

    Run in a child process: a kernel that throws on a worker thread would
    abort the interpreter rather than raise, and must not take pytest down.
    """
    code = r"""
        import json
        import mlx.core as mx
        import bitnet_ext as bx
        for bad in (2, -2, 3, 127, -128):
            codes = mx.zeros((3, 32), mx.int8)
            codes[1, 17] = bad
            try:
                mx.eval(bx.pack(codes))
                res = ("no error", "")
            except Exception as e:
                res = (type(e).__name__, str(e))
            print(json.dumps([bad, *res]), flush=True)
    """
    proc = run_python(code)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}); stderr:\n{proc.stderr[-2000:]}"
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(results) == 5, proc.stdout
    for bad, kind, msg in results:
        assert kind == "ValueError", f"pack with value {bad}: got {kind}: {msg}"
        assert "-1" in msg and "1" in msg, f"pack with value {bad}: message should name the allowed values: {msg}"


def test_absmax_empty_K_matches_reference():
    """The reference raises for an empty last axis too (mx.max of nothing)."""
    with pytest.raises(ValueError):
        mx.eval(bx.reference.absmax_quantize(mx.zeros((2, 0))))
    with pytest.raises(ValueError, match=r"absmax_quantize.*\bx\b.*\(2, 0\)"):
        bx.absmax_quantize(mx.zeros((2, 0)))


ARRAY_LIKES = {
    "numpy": lambda a: np.array(a),
    "list": lambda a: np.array(a).tolist(),
}


@pytest.mark.parametrize("kind", list(ARRAY_LIKES))
def test_array_likes_accepted_like_mx_array(kind):
    """NumPy arrays and nested lists work wherever an mx.array does, with the
    same result (they are converted by mx.array())."""
    conv = ARRAY_LIKES[kind]
    # Packed words as a plain list become int64 in mx.array() (they exceed int32),
    # which wq rejects as any int64 array: packed weights come from NumPy or MLX.
    wconv = ARRAY_LIKES["numpy"]
    b = mx.linspace(-1, 1, N)
    pairs = [
        (bx.ternary_matmul(conv(X), WQ, S_ROW), bx.ternary_matmul(X, WQ, S_ROW)),
        (bx.ternary_matmul(X, wconv(WQ), conv(S_ROW)), bx.ternary_matmul(X, WQ, S_ROW)),
        (bx.ternary_matmul(conv(XN), WQ, conv(S_ROW), transpose=False), bx.ternary_matmul(XN, WQ, S_ROW, transpose=False)),
        (bx.bitlinear(conv(X), WQ, conv(S_ROW), bias=conv(b)), bx.bitlinear(X, WQ, S_ROW, bias=b)),
        (bx.bitlinear(conv(X), WQ, conv([0.5])), bx.bitlinear(X, WQ, mx.array([0.5]))),
        (bx.dequantize(wconv(WQ), conv(S_ROW)), bx.dequantize(WQ, S_ROW)),
        (bx.unpack(wconv(WQ)), bx.unpack(WQ)),
        (bx.absmax_quantize(conv(X))[0], bx.absmax_quantize(X)[0]),
        (bx.absmean_quantize(conv(W))[0], bx.absmean_quantize(W)[0]),
    ]
    for i, (got, want) in enumerate(pairs):
        assert got.dtype == want.dtype and got.shape == want.shape, i
        assert mx.array_equal(got, want).item(), i


@pytest.mark.parametrize("dtype", [mx.uint8, mx.uint16, mx.uint32, mx.uint64])
def test_pack_unsigned_codes(dtype):
    """Unsigned codes can hold 0 and 1 (not -1): packed like the signed ones."""
    codes01 = (make_weights(N, K, seed=5)[0] != 0).astype(mx.int8)  # values 0 and 1
    assert mx.array_equal(bx.pack(codes01.astype(dtype)), bx.pack(codes01)).item()
    bad = codes01.astype(dtype)
    bad[2, 7] = 2
    with pytest.raises(ValueError, match=r"(?s)-1, 0 and 1.*max 2"):
        bx.pack(bad)
    bad[2, 7] = 255  # would wrap to -1 in int8: must be rejected, not packed as -1
    with pytest.raises(ValueError, match=r"max 255"):
        bx.pack(bad)
