// y = x @ (diag(scale) W).T (transpose) or x @ diag(scale) W (not transpose),
// W ternary and packed (see csrc/cpu/kernels.h for the layout).
// Inputs: x float (..., K or N), wq uint32 (N, K/16), scale float32 () or (N,).
#pragma once

#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

class TernaryMatmul : public mx::UnaryPrimitive {
 public:
  TernaryMatmul(mx::Stream stream, bool transpose)
      : mx::UnaryPrimitive(stream), transpose_(transpose) {}

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
  bool is_equivalent(const mx::Primitive& other) const override;
  const char* name() const override {
    return "TernaryMatmul";
  }

  bool transpose() const {
    return transpose_;
  }

 private:
  bool transpose_;
};

} // namespace bitnet_ext
