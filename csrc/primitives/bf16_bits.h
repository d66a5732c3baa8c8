// bfloat16 <-> float32 through the bits, exactly as MLX's bfloat16_t converts
// (round to nearest even, any NaN to 0x7FC0), in a form the compiler turns
// into vector code when the file is built with -fno-trapping-math (see
// CMakeLists.txt); MLX's bfloat16_t converts one element at a time, which
// made the float32 <-> bfloat16 passes around each CPU kernel (a 512 x 6912
// product's output: 3.5 million elements) cost as much as the product.
#pragma once

#include <bit>
#include <cstdint>

namespace bitnet_ext {

inline float bf16_to_float(uint16_t b) {
  return std::bit_cast<float>(static_cast<uint32_t>(b) << 16);
}

inline uint16_t float_to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint32_t rounded = (u + ((u >> 16) & 1u) + 0x7FFFu) >> 16;
  return f != f ? uint16_t{0x7FC0} : static_cast<uint16_t>(rounded);
}

} // namespace bitnet_ext
