"""Run an mlx-lm BitNet model with bitnet_ext's kernels: on Linux, on the CPU, on any MLX device.

    python examples/mlx_lm_bitnet.py                      # a tiny random model, made on the fly
    python examples/mlx_lm_bitnet.py MODEL [--prompt ...] # a local directory or a Hugging Face repo id,
                                                          # e.g. microsoft/bitnet-b1.58-2B-4T

mlx-lm's own BitNet layer is a Metal-only kernel, so `mlx_lm.load` + `mlx_lm.generate` fails on Linux
("No Metal back-end"). `bitnet_ext.mlx_lm.load` loads the same model (or a `bitnet_ext convert` output)
with bitnet_ext's layers, and everything else in mlx-lm works unchanged. Needs mlx-lm: pip install '.[mlx-lm]' from a bitnet_ext checkout.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

# mlx-lm imports transformers, which advises installing PyTorch on import ("PyTorch was not found"):
# nothing here needs PyTorch, so silence that advice (an env var transformers reads at import).
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import mlx_lm  # noqa: E402

from bitnet_ext.mlx_lm import load  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_bitnet import write_tiny_bitnet  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="model directory or Hugging Face repo (default: a tiny random model)")
    p.add_argument("--prompt", default=None)
    p.add_argument("--max-tokens", type=int, default=24)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.model or str(write_tiny_bitnet(Path(tmp) / "tiny-bitnet"))
        prompt = args.prompt or ("w1 w2 w3" if args.model is None else "The capital of France is")
        model, tokenizer = load(path)
        if getattr(tokenizer, "chat_template", None) and args.model:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True)
        text = mlx_lm.generate(model, tokenizer, prompt=prompt, max_tokens=args.max_tokens, verbose=True)
    print(f"generated {len(text)} characters")


if __name__ == "__main__":
    main()
