// BitNet's gated MLP activation, y = relu(gate)^2 * up, as one CPU node where
// MLX runs three (maximum, square, multiply), each a pass over the
// (tokens x 6912) activations: a 512-token prefill of the 2B-4T shapes spent
// ~18 ms per layer in them, more than the gate and up products together.
// Inputs: gate and up of one float dtype T and one shape. Same roundings as
// MLX's ops in T: relu(gate)^2 rounded to T, then the product with up in T
// (both exact in float32 before the rounding, so the result is bit-identical).
// GPU streams never get this node: relu2_mul() builds MLX's ops there.
#pragma once

#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

class Relu2Mul : public mx::UnaryPrimitive {
 public:
  explicit Relu2Mul(mx::Stream stream) : mx::UnaryPrimitive(stream) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override;
  void eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) override;

  std::vector<mx::array> jvp(
      const std::vector<mx::array>& primals,
      const std::vector<mx::array>& tangents,
      const std::vector<int>& argnums) override;
  std::vector<mx::array> vjp(
      const std::vector<mx::array>& primals,
      const std::vector<mx::array>& cotangents,
      const std::vector<int>& argnums,
      const std::vector<mx::array>& outputs) override;
  std::pair<std::vector<mx::array>, std::vector<int>> vmap(
      const std::vector<mx::array>& inputs,
      const std::vector<int>& axes) override;

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  bool is_equivalent(const mx::Primitive&) const override {
    return true;
  }
  const char* name() const override {
    return "Relu2Mul";
  }
};

// MLX's own ops for the same function (GPU streams, derivatives).
mx::array relu2_mul_mlx(const mx::array& gate, const mx::array& up, mx::Stream s);

} // namespace bitnet_ext
