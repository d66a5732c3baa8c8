// Conversions between ternary codes and the packed uint32 layout.
#pragma once

#include "mlx/primitives.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// Declares a primitive with one output, CPU/GPU eval and shape inference.
#define BITNET_PACKING_PRIMITIVE(NAME)                                                 \
  class NAME : public mx::UnaryPrimitive {                                             \
   public:                                                                             \
    explicit NAME(mx::Stream stream) : mx::UnaryPrimitive(stream) {}                   \
    void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override;      \
    void eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) override;      \
    std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override; \
    bool is_equivalent(const mx::Primitive&) const override {                          \
      return true;                                                                     \
    }                                                                                  \
    const char* name() const override {                                                \
      return #NAME;                                                                    \
    }                                                                                  \
  };

// int8 codes (N, K) in {-1, 0, 1} -> uint32 (N, K/16).
BITNET_PACKING_PRIMITIVE(TernaryPack)
// uint32 (N, K/16) -> int8 codes (N, K).
BITNET_PACKING_PRIMITIVE(TernaryUnpack)
// (wq uint32 (N, K/16), scale float32 () or (N,)) -> scale * W, (N, K), any float dtype.
BITNET_PACKING_PRIMITIVE(TernaryDequantize)

#undef BITNET_PACKING_PRIMITIVE

} // namespace bitnet_ext
