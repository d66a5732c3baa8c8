// RMSNorm over the last axis, y = T(x * rsqrt(mean(x^2) + eps)) * weight, on
// the CPU: one node where MLX's CPU mx.fast.rms_norm builds about a dozen
// (MLX has no CPU kernel for it and decomposes it into ops; a BitNet block
// has four norms, so a decoded token paid ~500 extra op dispatches).
// Inputs: x float (..., D), weight (D,) already cast to the output dtype
// T = result_type(x, weight). Same two roundings as MLX's decomposition:
// the normalized x is rounded to T, then multiplied by weight in T; the
// sum of squares runs in float32. GPU streams never get this node:
// rms_norm() builds mx.fast.rms_norm there.
#pragma once

#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

class RmsNorm : public mx::UnaryPrimitive {
 public:
  RmsNorm(mx::Stream stream, float eps) : mx::UnaryPrimitive(stream), eps_(eps) {}

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
  bool is_equivalent(const mx::Primitive& other) const override {
    return eps_ == static_cast<const RmsNorm&>(other).eps_;
  }
  const char* name() const override {
    return "RmsNorm";
  }

 private:
  float eps_;
};

} // namespace bitnet_ext
