"""Extreme sizes: no int32 overflow in shape arithmetic, and bitlinear's
int32 accumulation is exact up to its documented largest K (larger K raises).

The error cases build lazy inputs (mx.zeros is not evaluated), so they need
no memory; the large evaluated cases stay under ~3 GB and run in a child
process so that their memory is returned."""

import json

import mlx.core as mx
import numpy as np
import pytest

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import run_python

INT32_MAX = 2**31 - 1
# int8 activations (|xq| <= 127) times codes (|w| <= 2, code 3 reads as +2)
# summed in int32 stay exact while 254 * K <= 2^31 - 1; K is a multiple of 16.
BITLINEAR_MAX_K = INT32_MAX // 254 // 16 * 16  # 8,454,656


@pytest.mark.parametrize(
    "call",
    [
        "unpack",
        "dequantize",
        "ternary_matmul_transpose_false",
    ],
)
def test_K_beyond_int32_axis_raises(call):
    """wq of (1, 2^27) words holds K = 2^31 codes per row: not an MLX axis."""
    wq = mx.zeros((1, 1 << 27), mx.uint32)  # lazy: no memory
    fn = {
        "unpack": lambda: bx.unpack(wq),
        "dequantize": lambda: bx.dequantize(wq, 1.0),
        "ternary_matmul_transpose_false": lambda: bx.ternary_matmul(mx.ones((1, 1)), wq, 1.0, transpose=False),
    }[call]
    with pytest.raises(ValueError, match=r"(?s)wq.*2147483648.*2147483647"):
        fn()


def test_bitlinear_K_beyond_exact_limit_raises():
    K = BITLINEAR_MAX_K + 16
    x = mx.zeros((1, K))  # lazy: no memory
    wq = mx.zeros((1, K // 16), mx.uint32)
    with pytest.raises(ValueError, match=rf"(?s)bitlinear.*{K}.*{BITLINEAR_MAX_K}"):
        bx.bitlinear(x, wq, 1.0)
    # The reproducer size (there, all +1 weights with x = 1 gave -15992848).
    K = 17_825_792
    with pytest.raises(ValueError, match=rf"{BITLINEAR_MAX_K}"):
        bx.bitlinear(mx.ones((1, K)), mx.full((1, K // 16), 0xAAAAAAAA, mx.uint32), 1.0)


@pytest.mark.parametrize("M", [1, 3])
def test_bitlinear_exact_at_largest_K(isa, M):
    """At the largest accepted K the results equal the reference (no wrap)."""
    K = BITLINEAR_MAX_K
    plus, minus = 0xAAAAAAAA, 0x00000000  # all codes +1, all -1
    wq = mx.array(np.array([[plus], [minus], [0x99999999]], np.uint32).repeat(K // 16, axis=1))
    rows = [mx.ones((K,)), -mx.ones((K,)), mx.random.normal((K,), key=mx.random.key(3))]
    x = mx.stack(rows[:M])
    scale = mx.array([1.0, 0.5, 2.0])
    got = bx.bitlinear(x, wq, scale)
    want = ref.bitlinear(x, wq, scale)
    mx.eval(got, want)
    np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-6, atol=0)
    # With x = 1 and all +1 codes: 127 * K accumulated, times xscale = 1/127.
    assert abs(got[0, 0].item() - K) <= K * 1e-6, got[0, 0].item()


def test_unpack_more_than_2pow31_elements():
    """(131073, 16384) int8 output: 2^31 + 16384 elements; the last row starts
    exactly at element 2^31, where 32-bit offsets would wrap."""
    code = r"""
        import json
        import mlx.core as mx
        import numpy as np
        import bitnet_ext as bx
        from bitnet_ext import reference as ref
        N, W = 131073, 1024
        codes = np.random.default_rng(0).integers(0, 3, (W, 16)).astype(np.uint64)  # codes 0..2
        last = mx.array((codes << (2 * np.arange(16, dtype=np.uint64))).sum(axis=1).astype(np.uint32)[None])
        wq = mx.concatenate([mx.zeros((N - 1, W), mx.uint32), last])
        out = bx.unpack(wq)
        rows = [out[0], out[N // 2], out[N - 1]]
        mx.eval(rows)
        report = {
            "shape": list(out.shape),
            "size": out.size,
            "first_ok": mx.all(rows[0] == -1).item(),
            "middle_ok": mx.all(rows[1] == -1).item(),
            "last_ok": mx.array_equal(rows[2], ref.unpack(last)[0]).item(),
        }
        print("REPORT " + json.dumps(report), flush=True)
    """
    proc = run_python(code, timeout=300)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert line, proc.stdout + proc.stderr
    rep = json.loads(line[0][len("REPORT ") :])
    assert rep["shape"] == [131073, 16384] and rep["size"] == 131073 * 16384 > 2**31, rep
    assert rep["first_ok"] and rep["middle_ok"], rep
    assert rep["last_ok"], f"the row past element 2^31 unpacks wrong: {rep}"
