"""bitnet_ext.nn: BitLinear, BitLinearQAT, quantize, to_inference, save/load, QAT training.

What is exact and what is within float tolerance (the contract of bitnet_ext.nn):

* BitLinear(activation_bits=8) == bx.bitlinear == bx.reference.bitlinear, bit for bit.
* BitLinear(activation_bits=None) == bx.ternary_matmul (+ bias), bit for bit.
* BitLinearQAT(activation_bits=8)(x) == its to_inference()(x), bit for bit, every dtype:
  the QAT forward multiplies the int8 activation codes with the ternary codes as
  integer-valued float32 (exact), then scales in bitlinear's order.
* The textbook fake-quant forward fq(x) @ fake_quantize(W).T equals the above up to
  float32 summation error (bounded below), not bit for bit.
* BitLinearQAT(activation_bits=None) vs its BitLinear: float32 accumulation order only.
"""

import math

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlx.utils import tree_flatten

import bitnet_ext as bx
from bitnet_ext import reference as ref
from bitnet_ext.nn import BitLinear, BitLinearQAT, quantize, to_inference

DTYPES = [mx.float32, mx.float16, mx.bfloat16]
DT_IDS = ["f32", "f16", "bf16"]


def randn(shape, seed, dtype=mx.float32, std=1.0):
    return (std * mx.random.normal(shape, key=mx.random.key(seed))).astype(dtype)


def assert_identical(a, b, what="result"):
    assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
    if not mx.array_equal(a, b).item():
        d = mx.abs(a.astype(mx.float32) - b.astype(mx.float32))
        pytest.fail(f"{what}: {int((d > 0).sum().item())} of {a.size} values differ (max |diff| {d.max().item()})")


def max_rel_err(a, b, scale):
    return (mx.abs(a.astype(mx.float32) - b.astype(mx.float32)) / scale).max().item()


# ---------------------------------------------------------------------------
# BitLinear


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("per_channel", [False, True], ids=["tensor", "channel"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_bitlinear_layer_is_the_bitlinear_op(dtype, per_channel, bias):
    lin = nn.Linear(64, 24, bias=bias)
    layer = BitLinear.from_linear(lin, per_channel=per_channel)
    wq, scale = bx.absmean_quantize(lin.weight, per_channel=per_channel)
    assert layer.weight.dtype == mx.uint32 and layer.weight.shape == (24, 4)
    assert layer.scale.dtype == mx.float32 and layer.scale.shape == ((24,) if per_channel else (1,))
    assert_identical(layer.weight, wq, "packed weight")
    assert_identical(layer.scale, scale.reshape(-1), "scale")
    x = randn((2, 3, 64), 1, dtype)
    b = lin.bias if bias else None
    y = layer(x)
    assert_identical(y, bx.bitlinear(x, wq, scale, b), "BitLinear vs bx.bitlinear")
    assert_identical(y, ref.bitlinear(x, wq, scale, b), "BitLinear vs reference.bitlinear")


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_bitlinear_float_activations_is_ternary_matmul(bias):
    lin = nn.Linear(32, 40, bias=bias)
    layer = BitLinear.from_linear(lin, activation_bits=None)
    x = randn((5, 32), 2)
    expected = bx.ternary_matmul(x, layer.weight, layer.scale)
    if bias:
        expected = expected + lin.bias
    assert_identical(layer(x), expected)
    # and the effective weight is scale * W
    w_eff = ref.dequantize(layer.weight, layer.scale, dtype=mx.float32)
    assert_identical(layer.dequantized_weight(), w_eff, "dequantized_weight")


def test_bitlinear_params_frozen_and_validated():
    layer = BitLinear(32, 8, bias=True)
    assert tree_flatten(layer.trainable_parameters()) == []  # like nn.QuantizedLinear
    assert sorted(k for k, _ in tree_flatten(layer.parameters())) == ["bias", "scale", "weight"]
    # A freshly built layer holds all-zero ternary weights (code 1 everywhere).
    assert mx.array_equal(bx.unpack(layer.weight), mx.zeros((8, 32), mx.int8)).item()
    with pytest.raises(ValueError, match="multiple of 16"):
        BitLinear(40, 8)
    with pytest.raises(ValueError, match="multiple of 16"):
        BitLinearQAT(20, 8)
    with pytest.raises(ValueError, match="activation_bits"):
        BitLinear(32, 8, activation_bits=4)
    layer.weight = mx.zeros((8, 32))  # float weights loaded by mistake
    with pytest.raises(TypeError, match="uint32"):
        layer(mx.zeros((1, 32)))


def test_bitlinear_compiles():
    layer = BitLinear.from_linear(nn.Linear(64, 48))
    x = randn((4, 64), 3)
    assert_identical(mx.compile(layer)(x), layer(x), "mx.compile(BitLinear)")


# ---------------------------------------------------------------------------
# BitLinearQAT <-> BitLinear


@pytest.mark.parametrize("dtype", DTYPES, ids=DT_IDS)
@pytest.mark.parametrize("per_channel", [False, True], ids=["tensor", "channel"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_qat_forward_equals_inference_bit_for_bit(dtype, per_channel, bias):
    qat = BitLinearQAT(96, 40, bias, per_channel=per_channel)
    x = randn((3, 7, 96), 4, dtype, std=2.0)
    inf = qat.to_inference()
    assert isinstance(inf, BitLinear) and inf.activation_bits == 8 and inf.per_channel == per_channel
    assert_identical(qat(x), inf(x), "QAT forward vs to_inference() forward")


def test_qat_latent_bf16_weights_still_bit_exact():
    model = nn.Sequential(BitLinearQAT(64, 32, True), BitLinearQAT(32, 16, True, per_channel=True))
    model.set_dtype(mx.bfloat16)
    assert model.layers[0].weight.dtype == mx.bfloat16
    x = randn((5, 64), 5, mx.bfloat16)
    y_qat = model(x)
    to_inference(model)
    assert isinstance(model.layers[0], BitLinear)
    assert_identical(y_qat, model(x), "bf16 latent QAT vs inference")


def test_qat_integer_parts_match_the_ops():
    """The QAT layer's ternary weights are fake_quantize's, its activation codes absmax_quantize's."""
    qat = BitLinearQAT(64, 24, per_channel=True)
    inf = qat.to_inference()
    assert_identical(
        bx.dequantize(inf.weight, inf.scale, dtype=mx.float32), bx.fake_quantize(qat.weight, per_channel=True)
    )


@pytest.mark.parametrize("per_channel", [False, True], ids=["tensor", "channel"])
def test_qat_forward_vs_textbook_fake_quant_within_float32_error(per_channel):
    """fq(x) @ fake_quantize(W).T + b: same math, float32 rounding only.

    Bound: every term x_dq[k] * w_q[k] and the sum are rounded in float32, so
    |difference| <= 2 * (K + 3) * 2**-24 * sum_k |x_dq[k] w_q[k]| (+|b| u).
    """
    K = 256
    qat = BitLinearQAT(K, 48, True, per_channel=per_channel)
    x = randn((16, K), 6, std=3.0)
    xq, xscale = bx.absmax_quantize(x)
    x_dq = xq.astype(mx.float32) * xscale
    w_q = bx.fake_quantize(qat.weight, per_channel=per_channel)
    textbook = x_dq @ w_q.T + qat.bias
    y = qat(x)
    bound = 2 * (K + 3) * 2.0**-24 * (mx.abs(x_dq) @ mx.abs(w_q).T + mx.abs(qat.bias))
    err = mx.abs(y - textbook)
    assert (err <= bound).all().item(), f"max err/bound {(err / bound).max().item()}"


@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_qat_float_activations_vs_inference_within_tolerance(bias):
    K = 128
    qat = BitLinearQAT(K, 32, bias, activation_bits=None)
    inf = qat.to_inference()
    assert inf.activation_bits is None
    x = randn((6, K), 7)
    y, yi = qat(x), inf(x)
    w_q = bx.fake_quantize(qat.weight)
    bound = 2 * (K + 3) * 2.0**-24 * (mx.abs(x) @ mx.abs(w_q).T + (mx.abs(qat.bias) if bias else 0))
    assert (mx.abs(y - yi) <= bound).all().item()
    x16 = x.astype(mx.float16)
    assert qat(x16).dtype == inf(x16).dtype  # same dtype rules (bias promotion) as the inference layer


def test_qat_gradients_are_straight_through():
    qat = BitLinearQAT(64, 24, True)
    x = randn((4, 64), 8)
    xq, xscale = bx.absmax_quantize(x)
    x_dq = xq.astype(mx.float32) * xscale
    w_q = bx.fake_quantize(qat.weight)

    def loss(model, x):
        return (model(x) ** 2).sum()

    _, grads = nn.value_and_grad(qat, loss)(qat, x)
    g = 2 * qat(x)  # dL/dy
    tol = 1e-5 * mx.abs(g).max().item() * mx.abs(x_dq).max().item() * 4
    assert mx.allclose(grads["weight"], g.T @ x_dq, atol=tol, rtol=1e-5).item(), "dL/dW_latent != g.T @ x_q"
    assert mx.allclose(grads["bias"], g.sum(0), atol=1e-4, rtol=1e-5).item()
    gx = mx.grad(lambda x: loss(qat, x))(x)
    assert mx.allclose(gx, g @ w_q, atol=1e-4, rtol=1e-4).item(), "dL/dx != g @ W_q"
    assert (mx.abs(grads["weight"]) > 0).any().item()


# ---------------------------------------------------------------------------
# quantize / to_inference


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 32)
        self.up = nn.Linear(32, 64)
        self.odd = nn.Linear(64, 24)  # K = 64: fine
        self.head = nn.Linear(24, 10, bias=False)  # K = 24: not a multiple of 16

    def __call__(self, t):
        return self.head(nn.relu(self.odd(nn.relu(self.up(self.embed(t))))))


def test_quantize_replaces_linears_and_warns_about_skipped():
    m = Tiny()
    with pytest.warns(UserWarning, match=r"head \(input_dims 24\)"):
        out = quantize(m)
    assert out is m
    assert isinstance(m.up, BitLinear) and isinstance(m.odd, BitLinear)
    assert type(m.head) is nn.Linear and isinstance(m.embed, nn.Embedding)
    assert m.up.activation_bits == 8 and not m.up.per_channel
    m(mx.array([[1, 2, 3]]))


def test_quantize_predicate_and_options():
    m = Tiny()
    quantize(
        m,
        qat=True,
        class_predicate=lambda p, mod: {"per_channel": True, "activation_bits": None} if p == "odd" else p == "up",
    )
    assert isinstance(m.up, BitLinearQAT) and m.up.activation_bits == 8
    assert isinstance(m.odd, BitLinearQAT) and m.odd.per_channel and m.odd.activation_bits is None
    assert type(m.head) is nn.Linear
    to_inference(m)
    assert isinstance(m.up, BitLinear) and isinstance(m.odd, BitLinear) and m.odd.per_channel
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize(Tiny(), class_predicate=lambda p, mod: isinstance(mod, nn.Linear))
    with pytest.raises(ValueError, match="unknown option"):
        quantize(Tiny(), class_predicate=lambda p, mod: {"bits": 2} if p == "up" else False)
    with pytest.raises(ValueError, match="only mlx.nn.Linear"):
        quantize(Tiny(), class_predicate=lambda p, mod: p == "embed")


def test_quantize_from_linear_keeps_float_weights_for_qat():
    lin = nn.Linear(32, 16)
    qat = BitLinearQAT.from_linear(lin)
    assert qat.weight is lin.weight or mx.array_equal(qat.weight, lin.weight).item()
    assert mx.array_equal(qat.bias, lin.bias).item()


# ---------------------------------------------------------------------------
# save / load


@pytest.mark.parametrize("ext", ["safetensors", "npz"])
def test_save_load_round_trip_exact(tmp_path, ext):
    m = Tiny()
    quantize(m, class_predicate=lambda p, mod: {"per_channel": True} if p == "odd" else p == "up")
    path = str(tmp_path / f"w.{ext}")
    m.save_weights(path)

    fresh = Tiny()
    quantize(fresh, class_predicate=lambda p, mod: {"per_channel": True} if p == "odd" else p == "up")
    fresh.load_weights(path)  # strict: names and shapes must match
    saved = dict(tree_flatten(m.parameters()))
    loaded = dict(tree_flatten(fresh.parameters()))
    assert saved.keys() == loaded.keys()
    assert loaded["up.weight"].dtype == mx.uint32 and loaded["odd.scale"].shape == (24,)
    for k in saved:
        assert_identical(loaded[k], saved[k], k)
    t = mx.array([[1, 5, 9]])
    assert_identical(fresh(t), m(t), "outputs after reload")


def test_save_load_qat_latent_weights(tmp_path):
    m = Tiny()
    quantize(m, qat=True, class_predicate=lambda p, mod: p in ("up", "odd"))
    m.save_weights(str(tmp_path / "qat.safetensors"))
    fresh = Tiny()
    quantize(fresh, qat=True, class_predicate=lambda p, mod: p in ("up", "odd"))
    fresh.load_weights(str(tmp_path / "qat.safetensors"))
    t = mx.array([[0, 4, 8]])
    assert_identical(fresh(t), m(t))


def _with_code3(layer: BitLinear, row: int, word: int, field: int) -> mx.array:
    """layer's packed weight with the two-bit field `field` of one word set to 3 (bits 11)."""
    w = np.array(layer.weight)
    w[row, word] |= np.uint32(3 << (2 * field))
    return mx.array(w)


@pytest.mark.parametrize("field", [0, 7, 15])
def test_load_weights_rejects_code_3(tmp_path, field):
    """Code 3 is never written by pack: a file holding it is not a ternary weight."""
    good = BitLinear.from_linear(nn.Linear(64, 8, bias=True))
    bad = _with_code3(good, 5, 2, field)
    layer = BitLinear(64, 8, bias=True)
    before = mx.array(layer.weight)
    with pytest.raises(ValueError, match=r"BitLinear.load_weights: weight \(shape \(8, 4\)\): 1 packed word.*code 3"):
        layer.load_weights([("weight", bad), ("scale", good.scale), ("bias", good.bias)])
    path = str(tmp_path / "bad.safetensors")
    mx.save_safetensors(path, {"weight": bad, "scale": good.scale, "bias": good.bias})
    with pytest.raises(ValueError, match="code 3"):
        layer.load_weights(path)
    assert mx.array_equal(layer.weight, before).item(), "the layer changed although the load was refused"
    # a valid file loads, from a path or a list
    good.save_weights(str(tmp_path / "good.safetensors"))
    assert layer.load_weights(str(tmp_path / "good.safetensors")) is layer
    assert mx.array_equal(layer.weight, good.weight).item()
    with pytest.raises(TypeError, match="must be the packed uint32 array, got mlx.core.float32"):
        layer.load_weights([("weight", mx.zeros((8, 4))), ("scale", good.scale), ("bias", good.bias)])


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=64))
def test_code_3_check_matches_fieldwise_definition(words):
    """The vectorised check refuses a weight exactly when some two-bit field of some word is 3."""
    has_code3 = any(((w >> (2 * i)) & 3) == 3 for w in words for i in range(16))
    layer = BitLinear(16, len(words))
    weights = [("weight", mx.array(np.array(words, np.uint32).reshape(-1, 1))), ("scale", layer.scale)]
    if has_code3:
        with pytest.raises(ValueError, match="code 3"):
            layer.load_weights(weights)
    else:
        layer.load_weights(weights)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: quantize(42), "quantize: model must be an mlx.nn.Module, got int"),
        (lambda: quantize(nn.Linear(16, 4), class_predicate=5), "quantize: class_predicate must be a callable"),
        (lambda: to_inference("model"), "to_inference: model must be an mlx.nn.Module, got str"),
        (lambda: BitLinear.from_linear(42), "BitLinear.from_linear: linear must be an mlx.nn.Linear"),
        (lambda: BitLinearQAT.from_linear(nn.ReLU()), "BitLinearQAT.from_linear: linear must be an mlx.nn.Linear"),
    ],
    ids=["quantize", "class_predicate", "to_inference", "BitLinear.from_linear", "BitLinearQAT.from_linear"],
)
def test_entry_points_reject_wrong_argument_types(call, match):
    with pytest.raises(TypeError, match=match):
        call()


# ---------------------------------------------------------------------------
# QAT training on a synthetic task

D_IN, HIDDEN, CLASSES = 32, 64, 4
QAT_STEPS, QAT_LR, BATCH = 400, 5e-3, 256
# Task: 4 classes given by a random 2-layer ReLU teacher on 32-d Gaussian inputs; 4096 training and
# 2048 test points; the largest class is 40% of the test set; uniform logits give loss 1.386.
# Measured here (x86-64, these seeds): QAT train loss 0.209, test accuracy 0.812 (seeds 0-3: loss
# 0.208-0.221, accuracy 0.802-0.826). The float MLP, same recipe: loss 0.025, accuracy 0.827.
QAT_MAX_LOSS, QAT_MIN_ACC = 0.30, 0.75


def _teacher_data():
    k1, k2, k3, k4 = mx.random.split(mx.random.key(0), 4)
    a = mx.random.normal((D_IN, 64), key=k1)
    b = mx.random.normal((64, CLASSES), key=k2)

    def make(n, key):
        x = mx.random.normal((n, D_IN), key=key)
        return x, mx.argmax(mx.maximum(x @ a, 0) @ b, axis=1)

    return make(4096, k3), make(2048, k4)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(D_IN, HIDDEN)
        self.l2 = nn.Linear(HIDDEN, HIDDEN)
        self.l3 = nn.Linear(HIDDEN, CLASSES)

    def __call__(self, x):
        return self.l3(nn.relu(self.l2(nn.relu(self.l1(x)))))


def test_qat_training_reaches_stated_loss_and_converts():
    (xtr, ytr), (xte, yte) = _teacher_data()
    mx.random.seed(1)
    model = quantize(MLP(), qat=True)
    assert all(isinstance(getattr(model, n), BitLinearQAT) for n in ("l1", "l2", "l3"))
    initial = {k: v for k, v in tree_flatten(model.parameters())}

    def loss_fn(m, x, y):
        return nn.losses.cross_entropy(m(x), y, reduction="mean")

    opt = optim.Adam(learning_rate=optim.cosine_decay(QAT_LR, QAT_STEPS))
    step = nn.value_and_grad(model, loss_fn)
    first_grads = None
    for i in range(QAT_STEPS):
        idx = mx.random.randint(0, xtr.shape[0], (BATCH,), key=mx.random.key(100 + i))
        loss, grads = step(model, xtr[idx], ytr[idx])
        if first_grads is None:
            first_grads = grads
        opt.update(model, grads)
        mx.eval(model.parameters(), opt.state)

    # Gradients reached every latent weight, and training moved them.
    for name, g in tree_flatten(first_grads):
        assert (mx.abs(g) > 0).any().item(), f"no gradient for {name}"
    for name, v in tree_flatten(model.parameters()):
        assert not mx.array_equal(v, initial[name]).item(), f"{name} did not change"

    train_loss = loss_fn(model, xtr, ytr).item()
    qat_logits = model(xte)
    acc = (mx.argmax(qat_logits, 1) == yte).mean().item()
    print(f"\nQAT: train loss {train_loss:.4f}, test accuracy {acc:.4f}")
    assert train_loss <= QAT_MAX_LOSS, f"QAT train loss {train_loss:.4f} > {QAT_MAX_LOSS}"
    assert acc >= QAT_MIN_ACC, f"QAT test accuracy {acc:.4f} < {QAT_MIN_ACC}"

    to_inference(model)
    assert all(isinstance(getattr(model, n), BitLinear) for n in ("l1", "l2", "l3"))
    inf_logits = model(xte)
    assert_identical(inf_logits, qat_logits, "logits after to_inference")  # so accuracy is kept exactly
    assert loss_fn(model, xtr, ytr).item() == train_loss
    assert math.isclose((mx.argmax(inf_logits, 1) == yte).mean().item(), acc)


def test_qat_training_step_compiles():
    """A compiled (mx.compile) training step gives the eager losses."""
    from functools import partial

    def make():
        mx.random.seed(3)
        m = quantize(nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4)), qat=True)
        return m, optim.Adam(learning_rate=1e-2)

    def loss_fn(m, x, y):
        return nn.losses.cross_entropy(m(x), y, reduction="mean")

    x, y = randn((32, 32), 9), mx.random.randint(0, 4, (32,), key=mx.random.key(10))
    m, opt = make()
    eager = []
    for _ in range(4):
        loss, g = nn.value_and_grad(m, loss_fn)(m, x, y)
        opt.update(m, g)
        eager.append(loss.item())

    m, opt = make()
    state = [m.state, opt.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(x, y):
        loss, g = nn.value_and_grad(m, loss_fn)(m, x, y)
        opt.update(m, g)
        return loss

    compiled = [step(x, y).item() for _ in range(4)]
    assert eager[-1] < eager[0]
    assert compiled == pytest.approx(eager, rel=1e-4)
