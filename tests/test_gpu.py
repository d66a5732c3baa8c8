"""bitnet_ext's GPU kernels: every op on the GPU (stream=mx.gpu) against
``bitnet_ext.reference`` evaluated on the CPU, on whichever GPU backend this
build has kernels for: Apple GPUs (Metal build) or NVIDIA GPUs (CUDA build,
built against MLX's CUDA backend).

Skipped, with the reason, unless this build has GPU kernels and the machine
has such a GPU (a real Apple GPU, not a paravirtual one; an NVIDIA GPU MLX can
use). With ``BITNET_EXT_REQUIRE_GPU=1`` (GPU CI jobs, tests/cuda/
run_suite_on_gpu.sh) these tests fail instead of skipping, so a machine
without a usable GPU cannot pass silently.

Every call checks that the op did not fall back to the CPU (no fallback
warning). The rest of the suite runs on the GPU too when MLX's default device
is the GPU (``BITNET_EXT_TEST_DEVICE=gpu``, .github/scripts/pytest_device.py);
this file always names ``stream=mx.gpu`` itself. Metal-only checks (the
metallib, run-time shader compilation) are in tests/test_metal_gpu.py.
"""

import os
import warnings

import mlx.core as mx
import numpy as np
import pytest

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import (
    assert_close,
    assert_equal,
    dtype_params,
    gpu_kernels_reason,
    make_scale,
    make_weights,
    matmul_sumsq,
    randn,
    run_python,
    to_np,
)

_REASON = gpu_kernels_reason()


def grid(values):
    """Parameter values of a GPU test: all of them when the GPU is usable,
    else just the first (its one skip carries the reason; no wall of skips)."""
    values = list(values)
    return values if _REASON is None else values[:1]


@pytest.fixture
def gpu():
    if _REASON is not None:
        if os.environ.get("BITNET_EXT_REQUIRE_GPU", "") not in ("", "0"):
            pytest.fail(f"BITNET_EXT_REQUIRE_GPU is set but {_REASON}")
        pytest.skip(_REASON)
    return bx._ext.GPU_BACKEND


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
def test_ternary_matmul_gpu(gpu, dtype, transpose, NK, M):
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
def test_ternary_matmul_gpu_scales(gpu, dtype, transpose, M, kind):
    N, K = 40, 256
    codes, wq = make_weights(N, K, seed=3)
    scale = make_scale(kind, N, seed=4)
    x = randn((M, K if transpose else N), dtype, seed=5)
    _check_matmul_gpu(x, codes, wq, scale, transpose, f"ternary_matmul scale={kind}")


# BitNet b1.58 2B-4T projections (N, K): q/o, k/v, gate/up, down.
BITNET_2B4T = [(2560, 2560), (640, 2560), (6912, 2560), (2560, 6912)]


@pytest.mark.parametrize("M", grid([1, 4, 16, 128]), ids=lambda m: f"M{m}")
@pytest.mark.parametrize("NK", grid(BITNET_2B4T), ids=lambda s: "N{}_K{}".format(*s))
def test_model_shapes_gpu(gpu, NK, M):
    N, K = NK
    codes, wq = make_weights(N, K, seed=11)
    scale = make_scale("scalar", N, seed=12)
    x = randn((M, K), mx.float16, seed=13)
    _check_matmul_gpu(x, codes, wq, scale, True, f"ternary_matmul 2B-4T M={M} N={N} K={K}")
    y = on_gpu(bx.bitlinear, x, wq, scale)
    assert_equal(y, ref_cpu(ref.bitlinear, x, wq, scale), f"bitlinear 2B-4T M={M} N={N} K={K}")


@pytest.mark.parametrize("transpose", grid([True, False]), ids=lambda t: "T" if t else "N")
def test_ternary_matmul_gpu_layouts(gpu, transpose):
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


def test_empty_batch_gpu(gpu):
    codes, wq = make_weights(8, 32, seed=1)
    scale = make_scale("row", 8)
    x = mx.zeros((0, 32), mx.float16)
    assert on_gpu(bx.ternary_matmul, x, wq, scale).shape == (0, 8)
    assert on_gpu(bx.bitlinear, x, wq, scale).shape == (0, 8)
    xq, xs = on_gpu(bx.absmax_quantize, x)
    assert xq.shape == (0, 32) and xs.shape == (0, 1)


def test_ternary_matmul_grad_gpu(gpu):
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
def test_bitlinear_gpu_exact(gpu, dtype, NK, M, kind, bias):
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
def test_absmax_quantize_gpu_exact(gpu, dtype, shape):
    x = randn(shape, dtype, seed=sum(shape), std=2.0)
    xq, xs = on_gpu(bx.absmax_quantize, x)
    rq, rs = ref_cpu(ref.absmax_quantize, x)
    assert_equal(xq, rq, "xq")
    assert_equal(xs, rs, "xscale")


@pytest.mark.parametrize("per_channel", grid([False, True]))
@pytest.mark.parametrize("NK", grid([(1, 16), (7, 48), (300, 2560), (64, 6912)]), ids=lambda s: "N{}_K{}".format(*s))
@pytest.mark.parametrize("dtype", grid(dtype_params()))
def test_absmean_quantize_gpu(gpu, dtype, NK, per_channel):
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
def test_pack_unpack_gpu_exact(gpu, NK):
    N, K = NK
    codes, wq = make_weights(N, K, seed=N)
    assert_equal(on_gpu(bx.pack, codes), wq, "pack")
    assert_equal(on_gpu(bx.unpack, wq), codes, "unpack")


@pytest.mark.parametrize("kind", grid(["scalar", "one", "row"]))
@pytest.mark.parametrize("dtype", grid(dtype_params()))
def test_dequantize_gpu_exact(gpu, dtype, kind):
    N, K = 45, 6912
    codes, wq = make_weights(N, K, seed=2)
    scale = make_scale(kind, N, seed=3)
    y = on_gpu(bx.dequantize, wq, scale, dtype=dtype)
    assert_equal(y, ref_cpu(ref.dequantize, wq, scale, dtype=dtype), "dequantize")



# ---------------------------------------------------------------------------
# Transforms, the default device, large K, mlx-lm


def test_compile_vmap_default_device_gpu(gpu):
    """mx.compile and mx.vmap around the GPU ops; with the GPU as default
    device, a call without stream= runs there too (no fallback warning)."""
    N, K = 48, 256
    codes, wq = make_weights(N, K, seed=41)
    scale = make_scale("row", N, seed=42)
    x = randn((5, K), mx.float16, seed=43)
    want = ref_cpu(ref.bitlinear, x, wq, scale)
    compiled = mx.compile(lambda x: bx.bitlinear(x, wq, scale, stream=mx.gpu))
    assert_equal(on_gpu(lambda x, stream: compiled(x), x), want, "compiled bitlinear")
    assert_equal(compiled(x), want, "compiled bitlinear, second call")
    vm = mx.vmap(lambda r: bx.bitlinear(r, wq, scale, stream=mx.gpu))(x.reshape(5, 1, K))
    assert_equal(vm.reshape(5, N), want, "vmapped bitlinear")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a CPU fallback warning fails the test
        with mx.stream(mx.gpu):
            y = bx.ternary_matmul(x, wq, scale)
            q, s = bx.absmax_quantize(x)
            mx.eval(y, q, s)
    _check_matmul_gpu(x, codes, wq, scale, True, "default-device ternary_matmul")
    rq, rs = ref_cpu(ref.absmax_quantize, x)
    assert_equal(q, rq, "default-device absmax_quantize")
    assert_equal(s, rs, "default-device absmax_quantize scale")


def test_bitlinear_largest_k_gpu(gpu):
    """K above 2^17 (the int8 GEMV path whatever M) stays exact."""
    N, K = 3, (1 << 17) + 32
    codes, wq = make_weights(N, K, seed=51)
    scale = make_scale("row", N, seed=52)
    for M in (1, 20):
        x = randn((M, K), mx.bfloat16, seed=53 + M, std=3.0)
        y = on_gpu(bx.bitlinear, x, wq, scale)
        assert_equal(y, ref_cpu(ref.bitlinear, x, wq, scale), f"bitlinear M={M} K={K}")


def test_repeated_evals_in_one_graph_gpu(gpu):
    """Twelve square layers chained lazily and evaluated at once (one CUDA
    graph / command buffer holding all of them, temporaries included) give
    exactly the reference's results layer by layer."""
    K = 512
    codes, wq = make_weights(K, K, seed=61)
    scale = make_scale("row", K, seed=62)
    h = randn((3, K), mx.float32, seed=63)
    inputs, outputs = [], []
    for _ in range(12):
        inputs.append(h)
        y = bx.bitlinear(h, wq, scale, stream=mx.gpu)
        outputs.append(y)
        h = mx.tanh(y, stream=mx.gpu)
    mx.eval(outputs)
    for i, (x, y) in enumerate(zip(inputs, outputs)):
        assert_equal(y, ref_cpu(ref.bitlinear, x, wq, scale), f"layer {i}")


_NO_GRAPHS_CHILD = r"""
import mlx.core as mx, bitnet_ext as bx
from bitnet_ext import reference as ref
codes = mx.random.randint(-1, 2, (40, 256), key=mx.random.key(0)).astype(mx.int8)
wq = ref.pack(codes)
s = mx.random.uniform(0.1, 1.0, (40,), key=mx.random.key(2))
x = mx.random.normal((33, 256), key=mx.random.key(1)).astype(mx.bfloat16)
ok = []
for M in (1, 33):
    y = bx.bitlinear(x[:M], wq, s, stream=mx.gpu)
    t = bx.ternary_matmul(x[:M], wq, s, stream=mx.gpu)
    mx.eval(y, t)
    with mx.stream(mx.cpu):
        ok.append(mx.array_equal(y, ref.bitlinear(x[:M], wq, s)).item())
        r = ref.ternary_matmul(x[:M], wq, s)
        ok.append(mx.allclose(t.astype(mx.float32), r.astype(mx.float32), rtol=2e-2, atol=2e-2).item())
p = bx.pack(codes, stream=mx.gpu)
ok.append(mx.array_equal(p, wq).item())
print("OK", all(ok), ok)
"""


def test_without_cuda_graphs_gpu(gpu):
    """MLX_USE_CUDA_GRAPHS=0: MLX launches kernels directly on its stream
    instead of building graphs; our launches take that path too."""
    if gpu != "cuda":
        pytest.skip("CUDA only")
    proc = run_python(_NO_GRAPHS_CHILD, env={"MLX_USE_CUDA_GRAPHS": "0"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "OK True" in proc.stdout, proc.stdout + proc.stderr[-4000:]


def _tiny_checkpoint(path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "tiny_bitnet", Path(__file__).resolve().parent.parent / "examples" / "tiny_bitnet.py"
    )
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    return tiny.write_random_bitnet(path, tiny.CONFIG, seed=3), tiny.CONFIG


@pytest.mark.parametrize("activation_bits", grid([None, 8]), ids=lambda b: f"a{b}")
def test_mlx_lm_tiny_model_gpu(gpu, tmp_path, activation_bits):
    """A tiny random BitNet through bitnet_ext.mlx_lm on the GPU, no fallback.
    Float activations: logits as on the CPU within rounding (float attention
    and norms differ in summation order). Int8 activations: bit for bit the
    same model with every layer on the pure-MLX reference of the int8 forward,
    on the same GPU (a rounding flip of one activation code would move the
    logits by more than any float tolerance, so the CPU is no oracle there)."""
    pytest.importorskip("mlx_lm")
    pytest.importorskip("transformers", reason="transformers is needed for mlx-lm's tokenizer")
    import mlx.nn as nn
    from mlx.utils import tree_map_with_path

    from bitnet_ext import mlx_lm as bx_mlx_lm
    from bitnet_ext.nn import BitLinear

    path, cfg = _tiny_checkpoint(tmp_path / "tiny")
    model, _ = bx_mlx_lm.load(str(path), activation_bits=activation_bits)
    t = mx.random.randint(0, cfg["vocab_size"], (2, 9), key=mx.random.key(5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with mx.stream(mx.gpu):
            on = model(t).astype(mx.float32)
            mx.eval(on)
    if activation_bits is None:
        with mx.stream(mx.cpu):
            off = model(t).astype(mx.float32)
            mx.eval(off)
        scale = mx.abs(off).max().item()
        err = mx.abs(on - off).max().item()
        assert err <= 2**-6 * scale, f"GPU vs CPU logits: max |diff| {err:.3e}, max |logit| {scale:.3e}"
        return

    class RefLayer(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def __call__(self, x):
            return ref.bitlinear(x, self.m.weight, self.m.scale, self.m.get("bias"))

    ref_model, _ = bx_mlx_lm.load(str(path))
    ref_model.update_modules(tree_map_with_path(
        lambda p, m: RefLayer(m) if isinstance(m, BitLinear) else m, ref_model.leaf_modules(),
        is_leaf=nn.Module.is_module))
    with mx.stream(mx.gpu):
        want = ref_model(t).astype(mx.float32)
        mx.eval(want)
    assert mx.array_equal(on, want).item(), "int8 model on the GPU differs from its reference layers"
