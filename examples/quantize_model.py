"""Quantize the Linear layers of an MLX model to BitNet b1.58 ternary layers, save and reload them.

    python examples/quantize_model.py

`bitnet_ext.nn.quantize` works like `mlx.nn.quantize`: it swaps `mlx.nn.Linear` layers (all, or those a
predicate picks) for `bitnet_ext.nn.BitLinear`, whose parameters are the packed uint32 ternary weight and a
float32 scale. Weights round-trip exactly through MLX's own save_weights / load_weights.
"""

import tempfile
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from bitnet_ext.nn import BitLinear, quantize


class MLP(nn.Module):
    def __init__(self, dims=256, hidden=1024, classes=10):
        super().__init__()
        self.up = nn.Linear(dims, hidden)
        self.down = nn.Linear(hidden, dims)
        self.head = nn.Linear(dims, classes)

    def __call__(self, x):
        return self.head(x + self.down(nn.gelu(self.up(x))))


def keep_head_in_float(path, module):
    # Like most BitNet models, keep the output head in full precision.
    return isinstance(module, nn.Linear) and path != "head"


def main():
    mx.random.seed(0)
    model = MLP()
    x = mx.random.normal((4, 256))
    y_float = model(x)
    float_bytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))

    quantize(model, class_predicate=keep_head_in_float)  # activation_bits=8: the W1.58A8 forward
    print(model)
    q_bytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
    y_q = model(x)
    cos = (y_q * y_float).sum() / mx.sqrt((y_q * y_q).sum() * (y_float * y_float).sum())
    print(f"parameters: {float_bytes / 2**20:.2f} MiB float32 -> {q_bytes / 2**20:.2f} MiB")
    print(f"cosine similarity of the outputs, ternary vs float (no QAT): {cos.item():.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "mlp.safetensors")
        model.save_weights(path)
        fresh = quantize(MLP(), class_predicate=keep_head_in_float)  # same structure
        fresh.load_weights(path)
        assert isinstance(fresh.up, BitLinear) and fresh.up.weight.dtype == mx.uint32
        assert mx.array_equal(fresh(x), y_q).item()
    print("save_weights / load_weights round trip: outputs identical")


if __name__ == "__main__":
    main()
