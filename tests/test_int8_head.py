"""bitnet_ext.int8_matmul (the opt-in int8 head) and int8_quantize_rows
against bitnet_ext.reference: bit-exact on every ISA level and thread count
(the integer dot is exact and the epilogue is evaluated in the reference's
order), edge shapes, autodiff, vmap, compile and the argument checks."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

import bitnet_ext as bx
from bitnet_ext import reference as ref
from conftest import DTYPE_NAME, dtype_params, randn, shape_id, to_np

# int8_matmul runs on the CPU only: these tests run with the CPU as default device.
pytestmark = pytest.mark.usefixtures("cpu_device")

# (M, N, K): M = 1 (GEMV), N tails of the 8-row step and of the 16-row
# thread grain, K tails of every vector width (16 AVX2, 32 AVX-512, 64 VNNI),
# K = 1, the 2B-4T head's K, several rows of x.
SHAPES = [
    (1, 1, 1),
    (1, 7, 5),
    (1, 9, 63),
    (1, 130, 2560),
    (2, 17, 65),
    (3, 33, 100),
    (5, 40, 129),
    (13, 70, 300),
]


def exact(x, wq, s, what):
    y = bx.int8_matmul(x, wq, s)
    r = ref.int8_matmul(x, wq, s)
    assert y.shape == r.shape and y.dtype == x.dtype, what
    assert mx.array_equal(y, r).item(), f"{what}: max |diff| {np.abs(to_np(y) - to_np(r)).max()}"


@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_int8_matmul_exact_every_isa(isa, threads, shape):
    M, N, K = shape
    w = randn((N, K), mx.float32, seed=N + K)
    wq, s = bx.int8_quantize_rows(w)
    x = randn((M, K), mx.float32, seed=M + 3 * K)
    exact(x, wq, s, f"int8_matmul[{isa}, {threads} threads]")


def test_int8_matmul_extreme_codes_every_isa(isa):
    # Every product at its extreme (xq = -128 can't come from absmax, but
    # +-127 x +-127 at the 2B-4T K and a tail): the VNNI shift trick wraps
    # modulo 2^32 and must still be exact.
    K = 2560 + 37
    x = mx.where(mx.arange(K) % 2 == 0, 1.0, -1.0).reshape(1, K)
    wq = mx.stack([mx.full((K,), 127, mx.int8), mx.full((K,), -127, mx.int8),
                   mx.where(mx.arange(K) % 2 == 0, 127, -127).astype(mx.int8)])
    s = mx.array([1.0, 0.5, 0.25])
    exact(x, wq, s, f"int8_matmul extremes [{isa}]")
    y = bx.int8_matmul(x, wq, s)
    assert to_np(y)[0, 2] == pytest.approx(127 * 127 * K / 127 * 0.25)


@pytest.mark.parametrize("xdtype", dtype_params())
def test_int8_matmul_dtype_and_batch_axes(xdtype):
    w = randn((20, 48), mx.bfloat16, seed=2)
    wq, s = bx.int8_quantize_rows(w)
    x = randn((2, 3, 48), xdtype, seed=1)
    exact(x, wq, s, f"int8_matmul x {DTYPE_NAME[xdtype]}")
    assert bx.int8_matmul(x, wq, s).shape == (2, 3, 20)


def test_int8_matmul_strided_empty_and_nan():
    wq, s = bx.int8_quantize_rows(randn((10, 40), mx.float32, seed=9))
    assert bx.int8_matmul(mx.zeros((0, 40)), wq, s).shape == (0, 10)
    x = randn((40, 3), mx.float32, seed=10).T  # strided x
    exact(x, wq, s, "int8_matmul strided x")
    wt = mx.random.randint(-127, 128, (40, 10), key=mx.random.key(11)).astype(mx.int8).T  # strided wq
    exact(x, wt, s, "int8_matmul strided wq")
    # A NaN row: xscale NaN, codes 0, outputs NaN (as the reference's rules say).
    y = bx.int8_matmul(mx.full((1, 40), float("nan")), wq, s)
    assert np.isnan(to_np(y)).all()


def test_int8_quantize_rows_definition():
    w = mx.array([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [-0.3, 0.1, 0.2]])
    wq, s = bx.int8_quantize_rows(w)
    assert wq.dtype == mx.int8 and s.dtype == mx.float32 and s.shape == (3,)
    np.testing.assert_array_equal(to_np(s), np.float32([0.0, 2.0 / 127, np.float32(0.3) / np.float32(127)]))
    np.testing.assert_array_equal(to_np(wq), [[0, 0, 0], [64, -127, 32], [-127, 42, 85]])
    # A zero row gives zero outputs (not NaN).
    y = bx.int8_matmul(mx.ones((1, 3)), wq, s)
    assert to_np(y)[0, 0] == 0.0


def test_int8_matmul_close_to_float_product():
    # Per-row int8 weights and per-token int8 activations each round by at
    # most half a step, max/254 relative to the row's / token's max, so the
    # error of one product is at most about (|x|max |w|max / 127) * K / 2 in
    # the worst case and ~sqrt(K) times smaller for random signs.
    K = 256
    w = randn((64, K), mx.float32, seed=5)
    x = randn((4, K), mx.float32, seed=6)
    wq, s = bx.int8_quantize_rows(w)
    y = to_np(bx.int8_matmul(x, wq, s))
    exact_y = to_np(x) @ to_np(w).T
    bound = np.abs(to_np(x)).max() * np.abs(to_np(w)).max() / 127 * np.sqrt(K) * 4
    assert np.abs(y - exact_y).max() < bound


def test_int8_matmul_grad_vmap_compile():
    w = randn((12, 32), mx.float32, seed=7)
    wq, s = bx.int8_quantize_rows(w)
    x = randn((3, 32), mx.float32, seed=8)
    # Straight-through: d sum(y) / dx = sum_n wq[n] * s[n].
    g = mx.grad(lambda x: bx.int8_matmul(x, wq, s).sum())(x)
    wf = to_np(wq).astype(np.float32) * to_np(s)[:, None]
    np.testing.assert_allclose(to_np(g), np.broadcast_to(wf.sum(0), (3, 32)), rtol=1e-5, atol=1e-5)
    v = mx.vmap(lambda x: bx.int8_matmul(x, wq, s))(x.reshape(3, 1, 32))
    assert mx.array_equal(v.reshape(3, 12), ref.int8_matmul(x, wq, s)).item()
    c = mx.compile(lambda x: bx.int8_matmul(x, wq, s))(x)
    assert mx.array_equal(c, ref.int8_matmul(x, wq, s)).item()


WQ = mx.zeros((4, 32), mx.int8)
S4 = mx.ones((4,))


@pytest.mark.parametrize(
    "x, wq, s, error, match",
    [
        (mx.ones((1, 32), mx.int32), WQ, S4, TypeError, "int8_matmul: x must be float"),
        (mx.ones((1, 32)), mx.zeros((4, 32), mx.uint8), S4, TypeError, "int8_matmul: wq must be int8"),
        (mx.ones((1, 32)), mx.zeros((4, 2, 16), mx.int8), S4, ValueError, "wq must be a non-empty 2-D"),
        (mx.ones((1, 0)), mx.zeros((4, 0), mx.int8), S4, ValueError, "wq must be a non-empty 2-D"),
        (mx.ones((1, 33)), WQ, S4, ValueError, "last axis of x must be K = 32"),
        (mx.ones((1, 32)), WQ, mx.ones((5,)), ValueError, r"row_scale must have shape \(4,\)"),
        (mx.ones((1, 32)), WQ, mx.ones((4,), mx.int32), TypeError, "row_scale must be float"),
        (mx.array(1.0), WQ, S4, ValueError, "x must have at least one axis"),
        (mx.ones((1, 132105)), mx.zeros((1, 132105), mx.int8), mx.ones((1,)), ValueError,
         "132104, the largest K"),
    ],
    ids=["x-int", "wq-uint8", "wq-3d", "wq-empty", "k-mismatch", "scale-length", "scale-int", "x-scalar", "k-bound"],
)
def test_int8_matmul_errors(x, wq, s, error, match):
    with pytest.raises(error, match=match):
        bx.int8_matmul(x, wq, s)


def test_int8_matmul_largest_k_is_exact(isa):
    # On VNNI the shifted sum (127 + 128) * 127 * K passes 2^32 here: the
    # modulo-2^32 arithmetic must still give the exact 127 * 127 * K.
    K = 132104
    x = mx.ones((1, K))
    wq = mx.full((1, K), 127, mx.int8)
    exact(x, wq, mx.ones((1,)), f"int8_matmul at the K bound [{isa}]")


# ---------------------------------------------------------------------------
# head_bits=8 in bitnet_ext.mlx_lm (tiny models of test_mlx_lm)


def test_head_bits_8_tied_and_untied():
    pytest.importorskip("mlx_lm")
    from test_mlx_lm import graph_ops, make_models, tokens

    from bitnet_ext import mlx_lm as bx_mlx_lm

    model, _ = make_models(seed=30, dtype=mx.bfloat16)
    bx_mlx_lm.patch_model(model)
    t = tokens((2, 6), 31)
    float_logits = model(t)
    h = model.model(t)
    bx_mlx_lm.patch_model(model, head_bits=8)
    emb = model.model.embed_tokens
    assert isinstance(emb, bx_mlx_lm.Int8HeadEmbedding) and emb.weight.dtype == mx.bfloat16  # lookup stays float
    logits = model(t)
    assert "Int8Matmul" in graph_ops(logits) and logits.dtype == mx.bfloat16
    # Exactly the int8 head's definition on the same hidden states.
    wq, s = ref.int8_quantize_rows(emb.weight)
    assert mx.array_equal(logits, ref.int8_matmul(h, wq, s)).item()
    # Close to the float head: each of the K = 64 products carries a weight
    # error <= s_n / 2 and an activation error <= xscale / 2, i.e. relative
    # errors <= 1/254 of the row / token maxima; with random signs the sum's
    # error is ~sqrt(K) * |h|max |w|max / 254, a few percent of the largest
    # logit here, on top of the bf16 rounding of the result (2^-8).
    scale = mx.abs(float_logits).max().item()
    err = mx.abs(logits.astype(mx.float32) - float_logits.astype(mx.float32)).max().item()
    assert err <= 0.05 * scale, f"int8 head vs float head: {err:.3e} > 0.05 * {scale:.3e}"
    assert err > 0  # really a different (rounded) head
    bx_mlx_lm.patch_model(model)  # patched again without head_bits: the int8 head stays
    assert isinstance(model.model.embed_tokens, bx_mlx_lm.Int8HeadEmbedding)

    # An untied float lm_head becomes Int8HeadLinear (float weight dropped), the embedding stays dense.
    untied, _ = make_models(seed=32)
    untied.args.tie_word_embeddings = False
    untied.lm_head = lm_head = nn.Linear(64, 64, bias=False)  # hidden 64 -> vocab 64
    mx.eval(lm_head.parameters())
    bx_mlx_lm.patch_model(untied, head_bits=8)
    assert isinstance(untied.lm_head, bx_mlx_lm.Int8HeadLinear) and untied.lm_head.weight.dtype == mx.int8
    assert isinstance(untied.model.embed_tokens, bx_mlx_lm.DenseEmbedding)
    assert not isinstance(untied.model.embed_tokens, bx_mlx_lm.Int8HeadEmbedding)
    wq, s = ref.int8_quantize_rows(lm_head.weight)
    x = randn((1, 3, 64), mx.float32, seed=33)
    assert mx.array_equal(untied.lm_head(x), ref.int8_matmul(x, wq, s)).item()


def test_head_bits_checked():
    pytest.importorskip("mlx_lm")
    from test_mlx_lm import make_models

    from bitnet_ext import mlx_lm as bx_mlx_lm

    model, _ = make_models(seed=34)
    with pytest.raises(ValueError, match="head_bits must be None .* or 8"):
        bx_mlx_lm.patch_model(model, head_bits=4)
    with pytest.raises(ValueError, match="load_model: head_bits"):
        bx_mlx_lm.load_model("/nonexistent", head_bits=16)
