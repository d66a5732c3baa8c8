// y = x @ W.T for a dense float W (N, K) in float32 / float16 / bfloat16:
// a model's float head (e.g. a tied embedding) on the CPU kernels of
// csrc/cpu/dense.h. Inputs: x float (..., K), w float (N, K) row-major.
// Output (..., N) in x's dtype, float32 accumulation. GPU streams never get
// this node: dense_matmul() builds MLX's own matmul there.
#pragma once

#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

class DenseMatmul : public mx::UnaryPrimitive {
 public:
  explicit DenseMatmul(mx::Stream stream) : mx::UnaryPrimitive(stream) {}

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
    return true; // no parameters: same inputs, same result
  }
  const char* name() const override {
    return "DenseMatmul";
  }
};

} // namespace bitnet_ext
