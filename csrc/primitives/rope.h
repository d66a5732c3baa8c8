// Rotary position embedding over the last axis on the CPU, as
// mx.fast.rope(x, dims, traditional=, base=, scale=, offset=) computes it:
// one node where MLX's CPU mx.fast.rope builds about thirty (MLX has no CPU
// kernel for it and decomposes it into ops; a BitNet block ropes queries
// and keys). Inputs: x float with >= 3 axes (B, ..., T, D), offset int32 of
// one value or one per B. Position of row t: (offset + t) * scale; angle of
// pair i: position * base^(-i / (dims / 2)), in float32 as MLX computes it.
// Each output element is one rounding to x's dtype of a float32 rotation
// (as MLX's GPU kernels; its CPU decomposition rounds cos, sin and each
// product to x's dtype as well). Elements past `dims` are copied.
// forward = false rotates by the negative angle (the VJP). GPU streams never
// get this node: rope() builds mx.fast.rope there.
#pragma once

#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

struct RopeParams {
  int dims;
  bool traditional;
  float base;
  float scale;
  bool forward;
  bool operator==(const RopeParams&) const = default;
};

class Rope : public mx::UnaryPrimitive {
 public:
  Rope(mx::Stream stream, RopeParams p) : mx::UnaryPrimitive(stream), p_(p) {}

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

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  bool is_equivalent(const mx::Primitive& other) const override {
    return p_ == static_cast<const Rope&>(other).p_;
  }
  const char* name() const override {
    return "Rope";
  }

  // The node for x rotated as `p` says (used by rope() and the transforms).
  static mx::array node(const mx::array& x, const mx::array& offset, RopeParams p, mx::Stream s);

 private:
  RopeParams p_;
};

} // namespace bitnet_ext
