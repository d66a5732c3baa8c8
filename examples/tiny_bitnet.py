"""Write a tiny random BitNet b1.58 checkpoint in the Hugging Face / mlx-lm layout.

It stands in for a real download (e.g. microsoft/bitnet-b1.58-2B-4T) in the
examples, which must run offline: same file layout (config.json with
``quantization_config: {"quant_method": "bitnet", ...}``, model.safetensors with
uint8-packed ternary weights and a ``weight_scale`` per linear, a tokenizer),
about 35 KB (a 32 KB model.safetensors).

    python examples/tiny_bitnet.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import mlx.core as mx
import numpy as np

CONFIG = {
    "model_type": "bitnet",
    "architectures": ["BitNetForCausalLM"],
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_hidden_layers": 2,
    "rms_norm_eps": 1e-5,
    "vocab_size": 64,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "quantization_config": {"quant_method": "bitnet", "linear_class": "autobitlinear"},
}


def hf_pack(codes: np.ndarray) -> np.ndarray:
    """Ternary (N, K) -> uint8 (ceil(N/4), K): bits 2i..2i+1 of row r hold row i*ceil(N/4) + r, as w + 1."""
    n, k = codes.shape
    p = (n + 3) // 4
    padded = np.ones((4 * p, k), np.uint8)
    padded[:n] = codes + 1
    planes = padded.reshape(4, p, k)
    return (planes[0] | planes[1] << 2 | planes[2] << 4 | planes[3] << 6).astype(np.uint8)


def random_hf_packed(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """hf_pack of uniform random ternary codes (N, K), drawn directly as packed bytes when N % 4 == 0.

    Each byte holds 4 independent codes in {0, 1, 2}: a uniform draw among the
    81 valid bytes is the same distribution, ~10x faster at the 2B-4T sizes.
    """
    if n % 4:
        return hf_pack(rng.integers(-1, 2, (n, k)).astype(np.int8))
    valid = np.array([a | b << 2 | c << 4 | d << 6 for a in range(3) for b in range(3) for c in range(3)
                      for d in range(3)], np.uint8)  # fmt: skip
    return valid[rng.integers(0, 81, (n // 4, k), dtype=np.uint8)]


def write_random_bitnet(out: Path, cfg: dict, seed: int = 0) -> Path:
    """A random BitNet b1.58 checkpoint of config ``cfg`` (keys as in CONFIG) in the HF / mlx-lm layout."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    d, ff, heads, kv = (
        cfg["hidden_size"],
        cfg["intermediate_size"],
        cfg["num_attention_heads"],
        cfg["num_key_value_heads"],
    )
    hd = d // heads
    shapes = {
        "self_attn.q_proj": (heads * hd, d), "self_attn.k_proj": (kv * hd, d), "self_attn.v_proj": (kv * hd, d),
        "self_attn.o_proj": (d, heads * hd), "mlp.gate_proj": (ff, d), "mlp.up_proj": (ff, d), "mlp.down_proj": (d, ff),
    }  # fmt: skip
    embed = rng.standard_normal((cfg["vocab_size"], d), dtype=np.float32)
    t = {
        "model.embed_tokens.weight": mx.array(embed).astype(mx.bfloat16),
        "model.norm.weight": mx.ones((d,), mx.bfloat16),
    }
    del embed
    if not cfg.get("tie_word_embeddings", True):
        head = rng.standard_normal((cfg["vocab_size"], d), dtype=np.float32) / np.float32(np.sqrt(d))
        t["lm_head.weight"] = mx.array(head).astype(mx.bfloat16)  # a float head: no weight_scale
        del head
    for i in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{i}."
        for norm, n in [("input_layernorm", d), ("post_attention_layernorm", d),
                        ("self_attn.attn_sub_norm", d), ("mlp.ffn_sub_norm", ff)]:  # fmt: skip
            t[pre + norm + ".weight"] = mx.ones((n,), mx.bfloat16)
        for name, (n, k) in shapes.items():
            t[pre + name + ".weight"] = mx.array(random_hf_packed(n, k, rng))
            t[pre + name + ".weight_scale"] = mx.array([rng.uniform(0.5, 2.0) / np.sqrt(k)]).astype(mx.bfloat16)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    mx.save_safetensors(str(out / "model.safetensors"), t, metadata={"format": "pt"})
    _write_tokenizer(out, cfg["vocab_size"])
    return out


def write_tiny_bitnet(out: Path, seed: int = 0) -> Path:
    return write_random_bitnet(out, CONFIG, seed)


def _write_tokenizer(out: Path, vocab_size: int) -> None:
    """A word-level tokenizer over the words w0, w1, ... (needs `tokenizers` and `transformers`, as mlx-lm does)."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        return  # the converter does not need one
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"w{i}": i + 3 for i in range(vocab_size - 3)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>").save_pretrained(
        str(out)
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print(f"wrote {write_tiny_bitnet(Path(sys.argv[1]))}")
