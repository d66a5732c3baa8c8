// Scaled dot-product attention on the CPU kernels of csrc/cpu/attention_kernel.h,
// reading keys and values in place (e.g. a slice of a KV cache, bf16).
// Inputs: queries (B, Hq, L, D), keys and values (B, Hkv, S, D). Output
// (B, L, Hq, D) in the queries' dtype (attention() returns it transposed
// to (B, Hq, L, D), so the usual transpose back is free). GPU streams never
// get this node: attention() builds MLX's fast attention there.
#pragma once

#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

class Attention : public mx::UnaryPrimitive {
 public:
  Attention(mx::Stream stream, float scale, bool causal)
      : mx::UnaryPrimitive(stream), scale_(scale), causal_(causal) {}

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
    return "Attention";
  }

  // The node itself: (B, L, Hq, D).
  static mx::array node(const mx::array& q, const mx::array& k, const mx::array& v, float scale, bool causal,
                        mx::Stream s);
  // The same result from MLX ops (float32 scores and softmax), for autodiff.
  static mx::array reference(const mx::array& q, const mx::array& k, const mx::array& v, float scale, bool causal,
                             mx::Stream s);

 private:
  float scale_;
  bool causal_;
};

} // namespace bitnet_ext
