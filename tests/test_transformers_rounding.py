"""rounding="transformers": int8 activation codes round(x * (127 / max)) as
transformers' BitNet computes them, instead of round(x / (max / 127)).

Every ISA level and thread count against bitnet_ext.reference (bit-exact), the
whole-model option of bitnet_ext.mlx_lm, and (optional: torch + transformers)
transformers' own quantizer on the activations of a tiny random model."""

import mlx.core as mx
import numpy as np
import pytest

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import assert_equal, make_scale, make_weights, randn, run_python

# rounding="transformers" runs on the CPU only: these tests run with the CPU as default device.
pytestmark = pytest.mark.usefixtures("cpu_device")


def differing_rows(n=8192, K=256, seed=0):
    """Random rows on which the two roundings give different codes somewhere (both are then tested)."""
    x = randn((n, K), mx.float32, seed=seed)
    a, _ = ref.absmax_quantize(x)
    b, _ = ref.absmax_quantize(x, rounding="transformers")
    rows = mx.any(a != b, axis=-1)
    picked = x[mx.array(np.flatnonzero(np.array(rows)))]
    return mx.concatenate([picked, x[:64]]), int(mx.sum(a != b).item())


def test_the_two_roundings_differ():
    x, ndiff = differing_rows()
    assert ndiff > 0, "no input where the two roundings differ: the option would be untestable"
    assert x.shape[0] > 64


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["f32", "bf16"])
def test_absmax_quantize_transformers_rounding(isa, threads, dtype):
    x, ndiff = differing_rows(seed=1)
    assert ndiff > 0
    x = x.astype(dtype)
    xq, xs = bx.absmax_quantize(x, rounding="transformers")
    rq, rs = ref.absmax_quantize(x, rounding="transformers")
    assert_equal(xq, rq, what=f"xq [{isa}]")
    assert_equal(xs, rs, what=f"xscale [{isa}]")
    dq, _ = bx.absmax_quantize(x)
    assert not mx.array_equal(dq, xq).item()


def test_bitlinear_transformers_rounding(isa, threads):
    x, ndiff = differing_rows(seed=3)
    assert ndiff > 0
    N = 40
    _, wq = make_weights(N, x.shape[-1], seed=3)
    scale = make_scale("row", N, seed=4)
    bias = randn((N,), seed=5)
    y = bx.bitlinear(x, wq, scale, bias, rounding="transformers")
    assert_equal(y, ref.bitlinear(x, wq, scale, bias, rounding="transformers"), what=f"bitlinear [{isa}]")
    assert not mx.array_equal(y, bx.bitlinear(x, wq, scale, bias)).item()


def test_rounding_argument_checked():
    with pytest.raises(ValueError, match="rounding must be 'divide'"):
        bx.absmax_quantize(mx.ones((2, 16)), rounding="nearest")
    with pytest.raises(ValueError, match="rounding must be 'divide'"):
        bx.bitlinear(mx.ones((2, 16)), mx.zeros((3, 1), mx.uint32), 1.0, rounding="x")


def test_against_transformers_activation_quant_on_a_tiny_model(tmp_path):
    """transformers' BitLinear.activation_quant (eager, float32) gives the codes of every
    layer input of a tiny random model, run through bitnet_ext.mlx_lm with the option."""
    pytest.importorskip("mlx_lm", reason="mlx-lm is not installed")
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch, CPU build)")
    pytest.importorskip("transformers.integrations.bitnet", reason="transformers with BitNet is not installed")
    del torch
    # Plus rows where the two roundings differ: transformers must agree with one of them only.
    x_diff, ndiff = differing_rows(seed=0)
    assert ndiff > 0
    np.save(tmp_path / "x_diff.npy", np.array(x_diff))
    code = f"""
import importlib.util
import mlx.core as mx, numpy as np, torch
from transformers.integrations.bitnet import BitLinear as HFBitLinear
import bitnet_ext as bx
from bitnet_ext import mlx_lm as bx_mlx_lm

spec = importlib.util.spec_from_file_location("tiny", {str((__import__("pathlib").Path(__file__).resolve().parent.parent / "examples" / "tiny_bitnet.py"))!r})
tiny = importlib.util.module_from_spec(spec); spec.loader.exec_module(tiny)
path = tiny.write_random_bitnet({str(tmp_path / "tiny")!r}, tiny.CONFIG, seed=5)
model, _ = bx_mlx_lm.load(str(path), activation_bits=8, activation_rounding="transformers")
inputs = []
cls = bx_mlx_lm.TransformersRoundingBitLinear
orig = cls.__call__
def spy(self, x):
    inputs.append(x)
    return orig(self, x)
cls.__call__ = spy
mx.eval(model(mx.array([[3, 9, 27, 40, 11, 5]])))
cls.__call__ = orig
assert len(inputs) == 14, len(inputs)  # every ternary layer of the 2-layer model
hf = HFBitLinear(64, 64, bias=False, dtype=torch.float32)
n = 0
for x in inputs:
    ours, _ = bx.absmax_quantize(x, rounding="transformers")
    theirs, _ = hf.activation_quant(torch.from_numpy(np.array(x.astype(mx.float32))))
    assert np.array_equal(np.array(ours), theirs.numpy()), "codes differ"
    n += x.size
x = np.load({str(tmp_path / "x_diff.npy")!r})
theirs, _ = hf.activation_quant(torch.from_numpy(x))
assert np.array_equal(np.array(bx.absmax_quantize(mx.array(x), rounding="transformers")[0]), theirs.numpy())
assert not np.array_equal(np.array(bx.absmax_quantize(mx.array(x))[0]), theirs.numpy())
print("ok", n)
"""
    # Eager transformers (its activation_quant is torch.compile'd; the compiler is not what is tested).
    proc = run_python(code, env={"TORCHDYNAMO_DISABLE": "1"}, timeout=600)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr
