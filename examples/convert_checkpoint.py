"""Convert a Hugging Face / mlx-lm BitNet checkpoint to bitnet_ext's packed layout.

    python examples/convert_checkpoint.py                 # converts a tiny random checkpoint
    python examples/convert_checkpoint.py SRC DST [--force]

Same as `python -m bitnet_ext convert SRC DST`. It streams tensor by tensor through memory-mapped safetensors
(SRC is only read), converts every BitNet linear (uint8 (ceil(out/4), in) + weight_scale) to uint32
(out, in/16) + a float32 scale, copies everything else, and marks config.json with
quant_method "bitnet_ext". The result loads with `bitnet_ext.mlx_lm.load(DST)`.
"""

import os
import sys
import tempfile
from pathlib import Path

# mlx-lm imports transformers, which advises installing PyTorch on import ("PyTorch was not found"):
# nothing here needs PyTorch, so silence that advice (an env var transformers reads at import).
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import mlx.core as mx  # noqa: E402

from bitnet_ext.convert import main as convert_main  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_bitnet import write_tiny_bitnet  # noqa: E402


def main(argv):
    if argv:
        return convert_main(argv)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = write_tiny_bitnet(Path(tmp) / "tiny-bitnet"), Path(tmp) / "tiny-bitnet-bx"
        rc = convert_main([str(src), str(dst)])
        if rc:
            return rc
        before, after = mx.load(str(src / "model.safetensors")), mx.load(str(dst / "model.safetensors"))
        name = "model.layers.0.mlp.up_proj"
        print(f"{name}.weight: {before[name + '.weight'].dtype} {before[name + '.weight'].shape} "
              f"-> {after[name + '.weight'].dtype} {after[name + '.weight'].shape}")  # fmt: skip
        ws, scale = before[name + ".weight_scale"].tolist(), after[name + ".scale"].tolist()
        print(f"{name}.weight_scale {ws} -> {name}.scale {scale}")
        try:
            from bitnet_ext.mlx_lm import load_model
            import mlx_lm  # noqa: F401
        except ImportError:
            print("(install mlx-lm to load the converted model)")
            return 0
        model, _ = load_model(dst)
        print("loaded with bitnet_ext.mlx_lm.load_model; logits shape", model(mx.array([[1, 2, 3]])).shape)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
