// Quantizers: absmean for weights (BitNet b1.58 ternary codes) and per-token
// absmax for activations (int8). Both return integers, so neither has a
// gradient; quantization-aware training goes through fake_quantize.
#pragma once

#include "kernels.h"
#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// w float (N, K) -> wq uint32 (N, K/16), scale float32 () or (N,).
class AbsmeanQuantize : public mx::Primitive {
 public:
  AbsmeanQuantize(mx::Stream stream, bool per_channel, float eps)
      : mx::Primitive(stream), per_channel_(per_channel), eps_(eps) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  std::vector<mx::array> vjp(
      const std::vector<mx::array>& primals,
      const std::vector<mx::array>& cotangents,
      const std::vector<int>& argnums,
      const std::vector<mx::array>& outputs) override;
  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override;
  bool is_equivalent(const mx::Primitive& other) const override;
  const char* name() const override {
    return "AbsmeanQuantize";
  }

 private:
  bool per_channel_;
  float eps_;
};

// x float (..., K) -> xq int8 (..., K), xscale float32 (..., 1).
class AbsmaxQuantize : public mx::Primitive {
 public:
  AbsmaxQuantize(mx::Stream stream, float eps, cpu::ActRounding rounding = cpu::ActRounding::Divide)
      : mx::Primitive(stream), eps_(eps), rounding_(rounding) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
  void eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override;
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
    return "AbsmaxQuantize";
  }

 private:
  float eps_;
  cpu::ActRounding rounding_;
};

} // namespace bitnet_ext
