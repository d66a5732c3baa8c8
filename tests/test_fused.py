"""bitnet_ext.fused: q/k/v and gate/up as one layer each, against the unfused layers.

With int8 activations the fused model must give the unfused model's outputs
bit for bit (same int32 sums, same per-row epilogue); with float activations
within float32 accumulation error. Runs on MLX's default device (the GPU in
the GPU suite runs, tests/cuda/run_suite_on_gpu.sh).
"""

import mlx.core as mx
import mlx.nn as nn
import pytest
from mlx.utils import tree_flatten

import bitnet_ext as bx
from bitnet_ext import mlx_lm as bx_mlx_lm
from bitnet_ext.fused import FusedOutput, fuse_projections
from bitnet_ext.nn import BitLinear
from test_mlx_lm import assert_logits_close, make_models, tokens  # noqa: E402  (skips without mlx-lm)

from mlx_lm.generate import generate_step  # noqa: E402  (after test_mlx_lm's importorskip)


def patched_pair(activation_bits, dtype=mx.float32, bias=False, seed=3):
    """(unfused, fused) bitnet_ext models with the same weights."""
    plain, _ = make_models(bias=bias, seed=seed, dtype=dtype)
    fused, _ = make_models(bias=bias, seed=seed, dtype=dtype)
    bx_mlx_lm.patch_model(plain, activation_bits=activation_bits, fuse=False)
    bx_mlx_lm.patch_model(fused, activation_bits=activation_bits, fuse=True)
    return plain, fused


def bitlinears(model):
    return [p for p, m in model.named_modules() if isinstance(m, BitLinear)]


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_int8_activations_bit_exact(dtype, bias):
    plain, fused = patched_pair(8, dtype, bias)
    names = bitlinears(fused)
    assert len(names) == 8 and sum(n.endswith("qkv_proj") for n in names) == 2  # 2 layers x (qkv, gate_up, o, down)
    t = tokens((2, 11), 4)
    a, b = plain(t), fused(t)
    mx.eval(a, b)
    assert a.dtype == b.dtype == dtype
    assert mx.array_equal(a, b).item()


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["f32", "bf16"])
def test_float_activations_within_accumulation_error(dtype):
    plain, fused = patched_pair(None, dtype)
    t = tokens((2, 9), 5)
    # bf16: each layer's output is rounded to bf16, so a different summation order can flip roundings.
    assert_logits_close(fused(t), plain(t), rel=2e-5 if dtype == mx.float32 else 3e-2)


def test_generation_identical_with_kv_cache():
    plain, fused = patched_pair(8)
    prompt = tokens((7,), 6)
    outs = []
    for model in (plain, fused):
        gen = generate_step(prompt, model, max_tokens=12, sampler=lambda logits: mx.argmax(logits, axis=-1))
        outs.append([int(tok) for tok, _ in gen])
    assert outs[0] == outs[1]


class Block(nn.Module):
    """q/k/v (per-channel k, biases) and gate/up siblings, called as a model would."""

    def __init__(self, dims=48, bias=True, activation_bits=8):
        super().__init__()
        self.q_proj = BitLinear(dims, 32, bias, activation_bits=activation_bits)
        self.k_proj = BitLinear(dims, 16, bias, per_channel=True, activation_bits=activation_bits)
        self.v_proj = BitLinear(dims, 16, bias, activation_bits=activation_bits)
        self.gate_proj = BitLinear(dims, 64, activation_bits=activation_bits)
        self.up_proj = BitLinear(dims, 64, activation_bits=activation_bits)
        for i, (_, m) in enumerate(sorted(self.children().items())):
            k1, k2, k3 = mx.random.split(mx.random.key(i), 3)
            codes = mx.random.randint(-1, 2, (m.output_dims, m.input_dims), key=k1)
            m.weight = pack(codes)
            m.scale = mx.random.uniform(0.5, 2.0, m.scale.shape, key=k2)
            if bias:
                m.bias = mx.random.normal((m.output_dims,), key=k3)

    def __call__(self, x):
        return [self.q_proj(x), self.k_proj(x), self.v_proj(x), self.gate_proj(x), self.up_proj(x)]


def pack(codes):
    return bx.pack(codes.astype(mx.int8))


def test_layer_level_exact_per_channel_members_and_bias():
    block = Block()
    x = mx.random.normal((3, 5, 48), key=mx.random.key(1))
    before = block(x)
    assert fuse_projections(block) is block
    assert isinstance(block.k_proj, FusedOutput) and block.k_proj.output_dims == 16
    keys = sorted(k for k, _ in tree_flatten(block.parameters()))
    assert keys == [f"{g}.{p}" for g in ("gate_up_proj", "qkv_proj") for p in ("bias", "scale", "weight")]
    after = block(x)
    for a, b in zip(before, after):
        assert a.shape == b.shape and mx.array_equal(a, b).item()
    # A member called with another input computes that input's product.
    x2 = x * 0.5 + 1
    assert mx.array_equal(block.v_proj(x2), Block()(x2)[2]).item()
    # Fusing again changes nothing; activation_bits set later acts on the fused layer.
    fuse_projections(block)
    assert sorted(bitlinears(block)) == ["gate_up_proj", "qkv_proj"]


def test_members_that_differ_are_not_fused():
    block = Block()
    block.v_proj = BitLinear(48, 16, True, activation_bits=None)  # other activation bits
    block.up_proj = BitLinear(32, 64)  # other input size
    fuse_projections(block)
    assert sorted(bitlinears(block)) == sorted(["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"])
    partial = Block()
    del partial["v_proj"]
    fuse_projections(partial)
    assert "qkv_proj" not in partial and "gate_up_proj" in partial


def test_patch_model_options():
    model, _ = make_models(seed=2)
    bx_mlx_lm.patch_model(model, fuse=True)
    attn = model.model.layers[0].self_attn
    assert isinstance(attn.q_proj, FusedOutput) and attn.qkv_proj.activation_bits is None
    bx_mlx_lm.patch_model(model, activation_bits=8)  # reaches the fused layers
    assert attn.qkv_proj.activation_bits == 8 and model.model.layers[1].mlp.gate_up_proj.activation_bits == 8
    plain, _ = make_models(seed=2)
    bx_mlx_lm.patch_model(plain)  # opt-in: not fused by default
    assert isinstance(plain.model.layers[0].mlp.up_proj, BitLinear)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: fuse_projections(None), TypeError, "mlx.nn.Module"),
        (lambda: fuse_projections(Block(), groups=[(("q_proj",), 3)]), ValueError, "member names"),
        (lambda: bx_mlx_lm.patch_model(Block(), fuse="yes"), TypeError, "fuse must be"),
    ],
    ids=["model", "groups", "fuse"],
)
def test_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
