// The bfloat16 row loops around the CPU kernels (conversions to and from
// float32, RMSNorm, relu(gate)^2 * up), compiled once per x86-64 vector
// width and chosen when the library loads (GCC/Clang target_clones), since
// the rest of this library is built for baseline x86-64 (SSE2): on AVX-512
// machines these loops were ~13% of a 512-token prefill. Each computes what
// bf16_bits.h's scalar conversions do, element by element, in the same
// order (bit-identical to the strided loops beside their callers).
#pragma once

#include <cstdint>

#include "primitives/bf16_bits.h"

namespace bitnet_ext {

// One element of relu2_mul in bfloat16: bf16(bf16(relu(g)^2) * u). The NaN
// of a NaN g is kept (a NaN is not < 0), as MLX's maximum keeps it.
inline uint16_t bf16_relu2_mul(uint16_t g, uint16_t u) {
  const float gf = bf16_to_float(g);
  const float r = gf < 0.0f ? 0.0f : gf;
  return float_to_bf16(bf16_to_float(float_to_bf16(r * r)) * bf16_to_float(u));
}

void bf16_to_float_row(const uint16_t* src, float* dst, int64_t n);
void float_to_bf16_row(const float* src, uint16_t* dst, int64_t n);
// Sum of squares in eight running sums: part[l] gets elements l, l + 8, ...;
// then ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7)), then the tail.
float bf16_sum_squares_row(const uint16_t* x, int64_t n);
// y = bf16(bf16(x * inv_rms) * w), MLX's two roundings.
void bf16_scale_row(const uint16_t* x, const uint16_t* w, float inv_rms, uint16_t* y, int64_t n);
// RoPE of one row, pairs (i, i + half): y[i] = bf16(x1 c - x2 s), y[i + half] =
// bf16(x1 s + x2 c), with (c, s) = angle[2i], angle[2i + 1].
void bf16_rope_row(const uint16_t* x, const float* angle, uint16_t* y, int64_t half);
// y[i] = bf16_relu2_mul(g[i], u[i]).
void bf16_relu2_mul_row(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n);

} // namespace bitnet_ext
