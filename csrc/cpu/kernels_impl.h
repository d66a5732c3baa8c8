// Internal interface between dispatch.cpp and the per-ISA translation units.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels.h"

namespace bitnet_ext::cpu {

// Arguments of the int8 product. Exactly one of acc (int32 result) and y
// (fused BitLinear epilogue, float result) is non-null.
struct I8Args {
  const int8_t* xq;
  const float* xscale; // used when y != nullptr
  const uint32_t* wq;
  const float* scale;
  bool per_row_scale;
  const float* bias; // may be null
  int32_t* acc;
  float* y;
  int64_t M, N, K;
};

// One entry per public operation; each entry does the whole operation
// (including splitting work over the thread pool).
struct KernelTable {
  void (*matmul_t)(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row_scale,
                   float* y, int64_t M, int64_t N, int64_t K);
  void (*matmul_n)(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row_scale,
                   float* y, int64_t M, int64_t N, int64_t K);
  void (*absmax_quantize)(const float* x, int64_t ldx, float eps, int8_t* xq, float* xscale, int64_t M,
                          int64_t K, ActRounding rounding);
  void (*matmul_i8)(const I8Args& a);
  void (*absmean_quantize)(const float* w, float eps, bool per_row_scale, uint32_t* wq, float* scale, int64_t N,
                           int64_t K);
  bool (*pack_ternary)(const int8_t* w, uint32_t* wq, int64_t N, int64_t K);
  void (*unpack_ternary)(const uint32_t* wq, int8_t* w, int64_t N, int64_t K);
  void (*dequantize_ternary)(const uint32_t* wq, const float* scale, bool per_row_scale, float* out, int64_t N,
                             int64_t K);
};

// Whether a level is compiled into this build (dispatch.cpp).
bool isa_compiled(Isa isa);
// The table of a level compiled into this build, or nullptr. Only call it
// for a level the CPU supports: the table functions live in translation
// units compiled for their level.
const KernelTable* kernel_table(Isa isa);

// Per-ISA tables (each defined in its own translation unit).
const KernelTable& table_scalar();
const KernelTable& table_avx2();
const KernelTable& table_avx512();
const KernelTable& table_avx512_vnni();
const KernelTable& table_avx512_amx();
const KernelTable& table_avx512_bf16();
const KernelTable& table_neon();
const KernelTable& table_neon_dot();

// static: every translation unit (compiled with different ISA flags) keeps
// its own copy, so the linker never picks an AVX-512 copy for the scalar code.
static inline float row_scale(const float* scale, bool per_row_scale, int64_t n) {
  return per_row_scale ? scale[n] : scale[0];
}

// |v| as its IEEE bit pattern. For numbers the unsigned order of these is the
// order of |v|, and every NaN sorts above +inf: an integer max over them is
// NaN exactly when a NaN is present (a float max drops NaNs: maxps returns its
// second operand when either is NaN), at the cost of a float max.
static inline uint32_t abs_bits(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b & 0x7fffffffu;
}

static inline float float_from_bits(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

// max(a, b), NaN when either is NaN (MLX's maximum; std::max keeps `a` when
// b is NaN).
static inline float max_nan(float a, float b) {
  return (a != a || a > b) ? a : b;
}

// A quotient q as an integer code: clamp(round_half_even(q), lo, hi), and 0
// when q is NaN (the one value of the cast that MLX leaves unspecified; see
// bitnet_ext.reference).
static inline int quantize_code(float q, float lo, float hi) {
  if (q != q) return 0;
  const float r = std::nearbyint(q);
  return static_cast<int>(r < lo ? lo : (r > hi ? hi : r));
}

// Whether s is a positive finite scale: then x / s is a number for every
// finite x, and the quantizers take their vector path (else the exact
// per-element one).
static inline bool finite_positive(float s) {
  return s > 0.0f && s < INFINITY;
}

} // namespace bitnet_ext::cpu

namespace bitnet_ext::cpu {

static inline const uint32_t* wq_row(const uint32_t* wq, int64_t n, int64_t KW) {
  return wq + n * KW;
}

// y = (float(acc) * xscale) * s + bias, in this order, no contraction.
static inline float bitlinear_epilogue(int32_t acc, float xscale, float s, const float* bias, int64_t n) {
  float v = (static_cast<float>(acc) * xscale) * s;
  if (bias) v = v + bias[n];
  return v;
}

// Level-independent implementations (kernels_scalar.cpp).
// Quantizes one row exactly, element by element (NaN quotient -> 0): the
// scalar kernel, and the SIMD kernels' path for a row whose scale s is not
// finite positive (kept out of their translation units: it is rare). The
// quotient is x / s, or x * inv with mul (transformers' rounding, inv =
// (1 / max) * 127).
void absmax_quantize_row_exact(const float* xr, float s, float inv, bool mul, int8_t* q, int64_t K);
void absmean_quantize_generic(const float* w, float eps, bool per_row_scale, uint32_t* wq, float* scale, int64_t N,
                              int64_t K);
bool pack_ternary_generic(const int8_t* w, uint32_t* wq, int64_t N, int64_t K);
void unpack_ternary_generic(const uint32_t* wq, int8_t* w, int64_t N, int64_t K);
void dequantize_ternary_generic(const uint32_t* wq, const float* scale, bool per_row_scale, float* out, int64_t N,
                                int64_t K);

} // namespace bitnet_ext::cpu
