"""Write a random BitNet b1.58 checkpoint with the shapes of microsoft/bitnet-b1.58-2B-4T.

Same Hugging Face / mlx-lm layout as examples/tiny_bitnet.py (whose writer it uses) (uint8-packed
ternary weights with a weight_scale per linear, bf16 embedding and norms, a
word-level tokenizer), no download: hidden 2560, 30 layers, FFN 6912,
20 query / 5 key-value heads, vocabulary 128256, tied 128256 x 2560 head.
About 1.2 GB on disk; bench/bench_model.py writes it into a temporary
directory. Weights are random, so the text it generates is noise;
speed is all it is for.

    python bench/bitnet_2b4t_shaped.py OUT_DIR [--untied] [--seed N]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from tiny_bitnet import CONFIG, write_random_bitnet  # noqa: E402

CONFIG_2B4T = {
    **CONFIG,
    "hidden_size": 2560,
    "intermediate_size": 6912,
    "num_attention_heads": 20,
    "num_key_value_heads": 5,
    "num_hidden_layers": 30,
    "max_position_embeddings": 4096,
    "rope_theta": 500000.0,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
}


def write_bitnet_2b4t_shaped(out: Path, *, tied: bool = True, seed: int = 0) -> Path:
    return write_random_bitnet(out, {**CONFIG_2B4T, "tie_word_embeddings": tied}, seed)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir", type=Path, help="directory to write the checkpoint into")
    ap.add_argument("--untied", action="store_true", help="a separate float lm_head instead of the tied embedding")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"wrote {write_bitnet_2b4t_shaped(args.out_dir, tied=not args.untied, seed=args.seed)}")
