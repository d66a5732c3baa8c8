// The opt-in int8 model head: per-token absmax int8 quantization of x, exact
// int32 dot with per-row int8 weights, y = (acc * xscale) * row_scale[n].
// Inputs: x float (..., K), wq int8 (N, K), row_scale float32 (N,).
// Output (..., N) in x's dtype. CPU only (int8_matmul() rejects other
// streams, like bitlinear's transformers rounding).
#pragma once

#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

class Int8Matmul : public mx::UnaryPrimitive {
 public:
  explicit Int8Matmul(mx::Stream stream) : mx::UnaryPrimitive(stream) {}

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
    return true; // no parameters (eps is the fixed 1e-5 of bitlinear)
  }
  const char* name() const override {
    return "Int8Matmul";
  }
};

} // namespace bitnet_ext
