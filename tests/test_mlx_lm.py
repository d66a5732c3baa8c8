"""bitnet_ext.mlx_lm: mlx-lm BitNet models on bitnet_ext's kernels.

Tiny models are built from mlx-lm's own `bitnet` model class with random
ternary weights in the HF layout (packed here, independently of
bitnet_ext.convert). The float reference is the same model with every
BitLinear replaced by a plain mlx.nn.Linear holding the dequantized weights
(scale convention applied by the test from mlx-lm's `invert_weight_scales`).
"""

import json
import os
import warnings

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never wait on the network
mlx_lm = pytest.importorskip("mlx_lm", reason="mlx-lm is not installed (pip install '.[mlx-lm]' in a checkout)")

import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
from mlx.utils import tree_flatten, tree_map_with_path  # noqa: E402
from mlx_lm.generate import generate_step  # noqa: E402
from mlx_lm.models import bitnet  # noqa: E402
from mlx_lm.models.bitlinear_layers import BitLinear as MlxLmBitLinear  # noqa: E402
from mlx_lm.models.cache import make_prompt_cache  # noqa: E402

import bitnet_ext as bx  # noqa: E402
from bitnet_ext import mlx_lm as bx_mlx_lm  # noqa: E402
from bitnet_ext.convert import convert_checkpoint  # noqa: E402
from bitnet_ext.nn import BitLinear  # noqa: E402

VOCAB = 64
ARGS = dict(
    model_type="bitnet",
    hidden_size=64,
    num_hidden_layers=2,
    intermediate_size=128,
    num_attention_heads=4,
    num_key_value_heads=2,
    rms_norm_eps=1e-5,
    vocab_size=VOCAB,
)


def hf_pack(codes: np.ndarray) -> np.ndarray:
    """HF BitNet packing: bits 2i..2i+1 of row r hold row i*P + r, value w + 1."""
    N, K = codes.shape
    P = (N + 3) // 4
    padded = np.ones((4 * P, K), np.uint8)  # code 1 (w = 0) in the unused rows
    padded[:N] = codes + 1
    planes = padded.reshape(4, P, K)
    return (planes[0] | planes[1] << 2 | planes[2] << 4 | planes[3] << 6).astype(np.uint8)


def make_models(*, invert=False, bias=False, seed=0, dtype=mx.float32):
    """(mlx-lm bitnet model with HF-layout weights, float reference model)."""
    args = bitnet.ModelArgs(**ARGS, attention_bias=bias, mlp_bias=bias)
    mx.random.seed(seed)
    model = bitnet.Model(args)
    rng = np.random.default_rng(seed)
    dense = {}
    for path, m in model.named_modules():
        if not isinstance(m, MlxLmBitLinear):
            continue
        codes = rng.integers(-1, 2, (m.out_features, m.in_features)).astype(np.int8)
        s = np.float32(rng.uniform(0.5, 2.0) / np.sqrt(m.in_features))  # effective multiplier
        m.invert_weight_scales = invert
        ws = np.float32(1) / s if invert else s  # what the checkpoint stores
        m.weight = mx.array(hf_pack(codes))
        m.weight_scale = mx.array([float(ws)])
        eff = (np.float32(1) / ws) if invert else ws  # as mlx-lm's kernel computes it
        dense[path] = codes.astype(np.float32) * eff
        if bias:
            m.bias = mx.array(rng.normal(0, 0.1, m.out_features).astype(np.float32))
    ref = bitnet.Model(args)
    ref.update(model.parameters())  # same embeddings, norms, biases (BitLinears replaced below)

    def to_dense(path, m):
        if isinstance(m, MlxLmBitLinear):
            lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
            lin.weight = mx.array(dense[path])
            if m.bias is not None:
                lin.bias = m.bias
            return lin
        return m

    ref.update_modules(tree_map_with_path(to_dense, ref.leaf_modules(), is_leaf=nn.Module.is_module))
    if dtype != mx.float32:
        model.set_dtype(dtype)
        ref.set_dtype(dtype)
    mx.eval(model.parameters(), ref.parameters())
    return model, ref


def tokens(shape, seed):
    return mx.random.randint(0, VOCAB, shape, key=mx.random.key(seed))


def assert_logits_close(actual, expected, rel=2e-5, what="logits"):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    scale = mx.abs(expected).max().item()
    err = mx.abs(actual.astype(mx.float32) - expected.astype(mx.float32)).max().item()
    assert err <= rel * scale, f"{what}: max |diff| {err:.3e} > {rel} * max |ref| {scale:.3e}"


@pytest.mark.skipif(mx.metal.is_available(), reason="on Metal mlx-lm's own kernel runs")
def test_unpatched_mlx_lm_bitnet_cannot_run_here():
    """The reason for this module: mlx-lm's BitNet kernel is Metal-only."""
    model, _ = make_models()
    with pytest.raises(RuntimeError, match="Metal"):
        mx.eval(model(tokens((1, 4), 0)))


@pytest.mark.parametrize("invert", [False, True], ids=["multiply", "invert_weight_scales"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
def test_patched_logits_match_float_reference(invert, bias):
    model, ref = make_models(invert=invert, bias=bias, seed=1)
    assert bx_mlx_lm.patch_model(model) is model
    layers = [m for _, m in model.named_modules() if isinstance(m, (BitLinear, MlxLmBitLinear))]
    assert len(layers) == 14 and all(isinstance(m, BitLinear) and m.activation_bits is None for m in layers)
    t = tokens((3, 16), 2)
    assert_logits_close(model(t), ref(t))


def test_patched_layer_semantics_bf16():
    """bf16 model: output dtype bf16, within bf16 rounding of the float computation."""
    model, ref = make_models(dtype=mx.bfloat16, bias=True, seed=2)
    bx_mlx_lm.patch_model(model)
    ours = model.model.layers[0].mlp.down_proj
    dense = ref.model.layers[0].mlp.down_proj
    x = mx.random.normal((2, 5, 128), key=mx.random.key(3)).astype(mx.bfloat16)
    y = ours(x)
    assert y.dtype == mx.bfloat16
    # mlx-lm: float32 sum * float32 scale -> bf16, then + bias (bf16)
    y32 = (x.astype(mx.float32) @ dense.weight.astype(mx.float32).T).astype(mx.bfloat16) + dense.bias
    assert_logits_close(y, y32, rel=2**-7, what="bf16 layer")


def test_patch_model_is_idempotent_and_keeps_other_modules():
    model, ref = make_models(seed=3)
    bx_mlx_lm.patch_model(model)
    before = dict(tree_flatten(model.parameters()))
    bx_mlx_lm.patch_model(model)
    after = dict(tree_flatten(model.parameters()))
    assert before.keys() == after.keys() and all(after[k] is before[k] for k in before)
    assert isinstance(model.model.embed_tokens, nn.Embedding)
    assert (
        "model.layers.0.self_attn.q_proj.scale" in after and "model.layers.0.self_attn.q_proj.weight_scale" not in after
    )


def test_greedy_generation_32_tokens_identical():
    model, ref = make_models(seed=4)
    bx_mlx_lm.patch_model(model)
    prompt = tokens((10,), 5)

    def greedy(m):
        return [int(t) for t, _ in generate_step(prompt, m, max_tokens=32)]  # argmax sampler by default

    ours, theirs = greedy(model), greedy(ref)
    assert len(ours) == 32
    assert ours == theirs
    assert len(set(ours)) > 1  # not a degenerate model that repeats one token


def test_batch_and_kv_cache():
    model, ref = make_models(seed=6, bias=True)
    bx_mlx_lm.patch_model(model)
    B, L, prefill = 3, 14, 9
    t = tokens((B, L), 7)
    full_ref = ref(t)
    full = model(t)
    assert_logits_close(full, full_ref, what="full sequence")
    cache = make_prompt_cache(model)
    steps = [model(t[:, :prefill], cache=cache)]
    for i in range(prefill, L):
        steps.append(model(t[:, i : i + 1], cache=cache))
    incremental = mx.concatenate(steps, axis=1)
    assert cache[0].offset == L
    assert_logits_close(incremental, full_ref, what="prefill + decode with KV cache")


# ---------------------------------------------------------------------------
# loading model directories


def write_tokenizer(path):
    pytest.importorskip("tokenizers", reason="tokenizers is needed to build the test tokenizer")
    transformers = pytest.importorskip("transformers", reason="transformers is needed for mlx-lm's tokenizer")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(VOCAB - 3)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(path))


def save_hf_dir(model, path, linear_class):
    path.mkdir()
    cfg = dict(ARGS, bos_token_id=1, eos_token_id=2)
    cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class}
    (path / "config.json").write_text(json.dumps(cfg))
    mx.save_safetensors(str(path / "model.safetensors"), dict(tree_flatten(model.parameters())))
    write_tokenizer(path)


def test_load_hf_layout_and_converted_directories(tmp_path):
    model, ref = make_models(seed=8)  # mlx-lm's bitnet model multiplies (autobitlinear semantics)
    src, dst = tmp_path / "src", tmp_path / "dst"
    save_hf_dir(model, src, "autobitlinear")
    convert_checkpoint(src, dst, progress=False)

    m_src, tok = bx_mlx_lm.load(str(src))
    m_dst, tok2 = bx_mlx_lm.load(str(dst))
    for m in (m_src, m_dst):
        assert not [p for p, x in m.named_modules() if isinstance(x, MlxLmBitLinear)]
    t = tokens((2, 12), 9)
    y_src, y_dst = m_src(t), m_dst(t)
    assert mx.array_equal(y_src, y_dst).item(), "load(SRC) and load(convert(SRC)) differ"
    assert_logits_close(y_src, ref(t))

    text = mlx_lm.generate(m_dst, tok2, prompt="w1 w2 w3", max_tokens=8)
    assert text == mlx_lm.generate(m_src, tok, prompt="w1 w2 w3", max_tokens=8)
    assert len(text.split()) >= 1

    model2, config = bx_mlx_lm.load_model(dst, lazy=True)
    assert config["quantization_config"]["quant_method"] == "bitnet_ext"


def test_load_bitlinear_class_scale_conventions(tmp_path):
    """linear_class 'bitlinear': transformers divides by weight_scale; mlx-lm's bitnet model multiplies.

    load(SRC) keeps mlx-lm's behaviour (and warns); convert follows transformers.
    """
    model, ref_mul = make_models(seed=10)
    src, dst = tmp_path / "src", tmp_path / "dst"
    save_hf_dir(model, src, "bitlinear")
    t = tokens((1, 8), 11)
    with pytest.warns(UserWarning, match="mlx-lm's 'bitnet' model multiplies"):
        m_src, _ = bx_mlx_lm.load_model(src)
    assert_logits_close(m_src(t), ref_mul(t))

    convert_checkpoint(src, dst, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m_dst, _ = bx_mlx_lm.load_model(dst)
    n = 0
    for (p, ours), (p2, theirs) in zip(m_dst.named_modules(), m_src.named_modules(), strict=True):
        if isinstance(ours, BitLinear):
            assert p == p2 and mx.array_equal(ours.weight, theirs.weight).item()
            ws = np.float32(theirs.scale.item())  # the stored weight_scale, which mlx-lm multiplies by
            assert np.float32(ours.scale.item()) == np.float32(1) / ws  # convert divides (transformers)
            n += 1
    assert n == 14


def test_load_rejects_non_bitnet(tmp_path):
    d = tmp_path / "plain"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(dict(ARGS, model_type="llama")))
    with pytest.raises(ValueError, match="not a BitNet model"):
        bx_mlx_lm.load_model(d)


def test_patched_model_runs_bitnet_ext_kernels():
    """The patched layers are bitnet_ext ops (also on the CPU), not mlx-lm's metal_kernel."""
    model, _ = make_models(seed=12)
    bx_mlx_lm.patch_model(model)
    layer = model.model.layers[1].self_attn.o_proj
    x = mx.random.normal((1, 3, 64), key=mx.random.key(13))
    assert mx.array_equal(layer(x), bx.ternary_matmul(x, layer.weight, layer.scale)).item()
    with mx.stream(mx.cpu):
        mx.eval(model(tokens((1, 4), 14)))


# ---------------------------------------------------------------------------
# argument and file validation


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: bx_mlx_lm.patch_model(42), "patch_model: model must be an mlx.nn.Module, got int"),
        (lambda: bx_mlx_lm.load(42), "path_or_hf_repo must be a path"),
        (lambda: bx_mlx_lm.load_model(None), "path_or_hf_repo must be a path"),
        (lambda: bx_mlx_lm.load("x", model_config=[("a", 1)]), "model_config must be a dict or None, got list"),
        (lambda: bx_mlx_lm.load("x", tokenizer_config="{}"), "tokenizer_config must be a dict or None, got str"),
    ],
    ids=["patch_model", "load", "load_model", "model_config", "tokenizer_config"],
)
def test_entry_points_reject_wrong_argument_types(call, match):
    with pytest.raises(TypeError, match=match):
        call()


def test_modules_to_not_convert_must_be_a_list(tmp_path):
    """A string would be matched by substring (mlx-lm tests `path not in names`): refused, not guessed."""
    model, _ = make_models(seed=15)
    src = tmp_path / "src"
    save_hf_dir(model, src, "autobitlinear")
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"]["modules_to_not_convert"] = "lm_head"
    (src / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(TypeError, match="modules_to_not_convert must be a list of module names, got str 'lm_head'"):
        bx_mlx_lm.load_model(src)


def test_load_rejects_code_3_in_converted_weights(tmp_path):
    """A converted directory whose packed weights hold code 3 (never written by pack or convert)."""
    model, _ = make_models(seed=16)
    src, dst = tmp_path / "src", tmp_path / "dst"
    save_hf_dir(model, src, "autobitlinear")
    convert_checkpoint(src, dst, progress=False)
    weights = mx.load(str(dst / "model.safetensors"))
    name = "model.layers.1.mlp.up_proj.weight"
    w = np.array(weights[name])
    w[3, 2] |= np.uint32(0b11 << 8)
    weights[name] = mx.array(w)
    mx.save_safetensors(str(dst / "model.safetensors"), weights, metadata={"format": "mlx"})
    match = r"model.layers.1.mlp.up_proj.weight \(shape \(128, 4\)\): 1 packed word.*code 3"
    with pytest.raises(ValueError, match=match):
        bx_mlx_lm.load_model(dst)


# ---------------------------------------------------------------------------
# the float head, untied heads, int8 activations


def graph_ops(a):
    """Names of the primitives in the graph of the (unevaluated) array a."""
    import io

    f = io.StringIO()
    mx.export_to_dot(f, a)
    return f.getvalue()


def test_tied_head_runs_on_dense_matmul(cpu_device):  # on GPUs dense_matmul is MLX's matmul
    model, ref = make_models(seed=20, dtype=mx.bfloat16)
    bx_mlx_lm.patch_model(model)
    assert isinstance(model.model.embed_tokens, bx_mlx_lm.DenseEmbedding)
    t = tokens((2, 6), 21)
    logits = model(t)
    assert "DenseMatmul" in graph_ops(logits)
    # Same embedding lookup as before; head = the bf16 product of the final hidden states.
    h = model.model(t)
    expected = h @ model.model.embed_tokens.weight.T
    assert logits.dtype == expected.dtype == mx.bfloat16
    assert_logits_close(logits, expected, rel=2**-7, what="tied head")
    assert_logits_close(logits, ref(t), rel=2**-6, what="bf16 model vs float reference")


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["f32", "bf16"])
def test_norms_and_ropes_are_one_op_each(cpu_device, dtype):
    model, ref = make_models(seed=27, dtype=dtype)
    bx_mlx_lm.patch_model(model)
    kinds = [type(m) for _, m in model.named_modules()]
    assert nn.RMSNorm not in kinds and nn.RoPE not in kinds
    n_layers = len(model.model.layers)
    assert kinds.count(bx_mlx_lm.OneOpRMSNorm) == 4 * n_layers + 1
    assert kinds.count(bx_mlx_lm.OneOpRoPE) == n_layers
    t = tokens((2, 6), 28)
    logits = model(t)
    ops = graph_ops(logits)
    assert "RmsNorm" in ops and "Rope" in ops and "Rsqrt" not in ops and "Sin" not in ops
    # relu2(gate) * up: one Relu2Mul op per MLP, MLX's Square and Maximum gone.
    assert 'label ="Relu2Mul"' in ops and 'label ="Square"' not in ops
    assert all(type(layer.mlp).__name__ == "OneOpActivationMLP" for layer in model.model.layers)
    # Decoding with a KV cache (integer offsets) gives the logits of the whole sequence.
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    model(t[:, :4], cache=cache)
    step = model(t[:, 4:5], cache=cache)
    rel = 2e-5 if dtype == mx.float32 else 2**-6
    assert_logits_close(step[:, 0], logits[:, 4], rel=rel, what="cached decode vs full sequence")
    assert_logits_close(logits, ref(t), rel=rel, what="one-op norms/ropes vs the float reference")


def write_tiny_checkpoint(path, **config):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "tiny_bitnet", Path(__file__).resolve().parent.parent / "examples" / "tiny_bitnet.py"
    )
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    return tiny.write_random_bitnet(path, {**tiny.CONFIG, **config}, seed=3)


def test_load_untied_float_lm_head(tmp_path, cpu_device):  # on GPUs dense_matmul is MLX's matmul
    """tie_word_embeddings false with a float lm_head.weight (no weight_scale): loads, runs on dense_matmul."""
    pytest.importorskip("transformers", reason="transformers is needed for mlx-lm's tokenizer")
    path = write_tiny_checkpoint(tmp_path / "untied", tie_word_embeddings=False)
    model, tok = bx_mlx_lm.load(str(path))
    assert isinstance(model.lm_head, bx_mlx_lm.DenseLinear)
    assert model.lm_head.weight.dtype == mx.bfloat16
    t = tokens((1, 7), 22)
    h = model.model(t)
    logits = model(t)
    assert "DenseMatmul" in graph_ops(logits)
    assert_logits_close(logits, h @ model.lm_head.weight.T, rel=2**-7, what="untied head")
    assert not mx.array_equal(logits, model.model.embed_tokens.as_linear(h)).item()  # really the lm_head
    assert len(mlx_lm.generate(model, tok, prompt="w1 w2", max_tokens=4).split()) >= 1


@pytest.mark.parametrize("how", ["load", "patch_model"])
def test_activation_bits_8_is_the_exact_int8_path(tmp_path, how):
    pytest.importorskip("transformers", reason="transformers is needed for mlx-lm's tokenizer")
    path = write_tiny_checkpoint(tmp_path / "tiny")
    if how == "load":
        model, _ = bx_mlx_lm.load(str(path), activation_bits=8)
    else:
        model, _ = bx_mlx_lm.load(str(path))
        bx_mlx_lm.patch_model(model, activation_bits=8)
    layers = [m for _, m in model.named_modules() if isinstance(m, BitLinear)]
    assert len(layers) == 14 and all(m.activation_bits == 8 for m in layers)
    t = tokens((2, 5), 23)
    hidden = model.model(t)

    # The same model with every layer on the pure-MLX reference of the int8 forward: bit-identical.
    class RefLayer(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def __call__(self, x):
            return bx.reference.bitlinear(x, self.m.weight, self.m.scale, self.m.get("bias"))

    ref_model, _ = bx_mlx_lm.load(str(path))
    ref_model.update_modules(
        tree_map_with_path(
            lambda p, m: RefLayer(m) if isinstance(m, BitLinear) else m,
            ref_model.leaf_modules(),
            is_leaf=nn.Module.is_module,
        )
    )
    assert mx.array_equal(hidden, ref_model.model(t)).item()
    # Switching back to float activations changes the result (the option is not a no-op).
    bx_mlx_lm.patch_model(model, activation_bits=None)
    assert not mx.array_equal(model.model(t), hidden).item()


def test_activation_bits_checked():
    model, _ = make_models(seed=24)
    with pytest.raises(ValueError, match="activation_bits must be 8"):
        bx_mlx_lm.patch_model(model, activation_bits=4)


def test_activation_rounding_option(cpu_device):
    model, _ = make_models(seed=25)
    with pytest.raises(ValueError, match="activation_rounding must be 'divide'"):
        bx_mlx_lm.patch_model(model, activation_rounding="torch")
    bx_mlx_lm.patch_model(model, activation_bits=8, activation_rounding="transformers")
    layers = [m for _, m in model.named_modules() if isinstance(m, BitLinear)]
    assert len(layers) == 14 and all(isinstance(m, bx_mlx_lm.TransformersRoundingBitLinear) for m in layers)
    x = mx.random.normal((3, 64), key=mx.random.key(26))
    q = model.model.layers[0].self_attn.q_proj
    ref_y = bx.reference.bitlinear(x, q.weight, q.scale, rounding="transformers")
    assert mx.array_equal(q(x), ref_y).item()
    bx_mlx_lm.patch_model(model, activation_bits=8)  # back to the default rounding
    assert all(type(m) is BitLinear for _, m in model.named_modules() if isinstance(m, BitLinear))


@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16], ids=["f32", "bf16"])
@pytest.mark.parametrize(
    "B, Hq, Hkv, L, S, mask",
    [(1, 20, 5, 1, 40, None), (2, 4, 2, 7, 7, "causal"), (1, 4, 1, 5, 9, "causal"), (2, 4, 2, 3, 6, "bool"),
     (1, 2, 2, 4, 4, "additive"), (1, 4, 2, 150, 150, "causal"), (2, 4, 1, 130, 170, "causal")],  # fmt: skip
    ids=["decode-gqa", "prefill-causal", "causal-with-cache", "bool-mask", "additive-mask", "causal-query-blocks",
         "causal-query-blocks-with-cache"],
)
def test_cpu_attention_matches_mlx_sdpa(dtype, B, Hq, Hkv, L, S, mask, cpu_device):
    from bitnet_ext._cpu_attention import cpu_attention

    q, k, v = (mx.random.normal(s, key=mx.random.key(i)).astype(dtype)
               for i, s in enumerate([(B, Hq, L, 32), (B, Hkv, S, 32), (B, Hkv, S, 32)]))  # fmt: skip
    if mask == "bool":
        mask = mx.random.uniform(shape=(B, 1, L, S), key=mx.random.key(5)) > 0.3
        mask[..., 0] = True  # every query sees at least one key
    elif mask == "additive":
        mask = mx.random.normal((L, S), key=mx.random.key(6)).astype(dtype)
    ours = cpu_attention(q, k, v, scale=0.2, mask=mask)
    # None and "causal": one bitnet_ext.attention node; array masks: dense_matmul per head.
    assert ("Attention" if mask is None or isinstance(mask, str) else "DenseMatmul") in graph_ops(ours)
    theirs = mx.fast.scaled_dot_product_attention(q, k, v, scale=0.2, mask=mask)
    rel = 1e-5 if dtype == mx.float32 else 2**-6
    assert_logits_close(ours, theirs, rel=rel, what="attention")


def test_patch_model_routes_bitnet_attention_on_the_cpu():
    from mlx_lm.models import bitnet as bitnet_module

    model, ref = make_models(seed=27)
    bx_mlx_lm.patch_model(model)
    assert getattr(bitnet_module.scaled_dot_product_attention, "_bitnet_ext_cpu_attention", False)
    t = tokens((2, 9), 28)
    with mx.stream(mx.cpu):
        logits = model(t)
    if mx.default_device() == mx.cpu:
        assert "Attention" in graph_ops(logits) and "DenseMatmul" in graph_ops(logits)
    assert_logits_close(logits, ref(t))
