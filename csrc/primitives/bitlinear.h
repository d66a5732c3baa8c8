// The BitNet b1.58 W1.58A8 linear forward, fused: per-token absmax int8
// quantization of x, exact int32 ternary dot, rescale, bias.
// Inputs: x float (..., K), wq uint32 (N, K/16), scale float32 () or (N,),
// optionally bias float (N,). Output (..., N) in x's dtype.
#pragma once

#include "kernels.h"
#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

class BitLinear : public mx::UnaryPrimitive {
 public:
  BitLinear(mx::Stream stream, float eps, cpu::ActRounding rounding = cpu::ActRounding::Divide)
      : mx::UnaryPrimitive(stream), eps_(eps), rounding_(rounding) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override;
  void eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) override;

  // The derivative with respect to x uses the straight-through estimator for
  // the activation quantizer (as in BitNet training); scale and bias are exact.
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
    return "BitLinear";
  }

 private:
  float eps_;
  cpu::ActRounding rounding_;
};

} // namespace bitnet_ext
