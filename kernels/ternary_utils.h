// Shared device helpers of the bitnet_ext ternary kernels.
//
// Packed layout (csrc/cpu/kernels.h): row n of W (N x K, K % 16 == 0) is K/16
// uint32 words; W[n, k] is in word k / 16 at bits 2 (k % 16) .. +1, stored as
// code = W + 1 in {0, 1, 2} (code 3, never packed, reads as W = +2 on every
// path, as in MLX's affine dequantization). Dot products use the identity
//   sum_k x_k W_k = sum_k x_k code_k - sum_k x_k,
// where sum_k x_k is computed once per activation chunk and shared by every
// row of W that a thread handles. (With an inf among the x_k the identity
// gives inf - inf = NaN: the float kernels then sum x_k W_k directly.)
//
// Non-finite values follow bitnet_ext.reference: IEEE arithmetic, a maximum
// that propagates NaN, and code 0 for a quotient that is NaN. The tests use
// integer operations on the bit patterns, not isnan or max: those may ignore
// NaN (fast math; Metal's max returns the other operand).
#pragma once

#include <metal_stdlib>

using namespace metal;

// Kernel instantiation with its host name, as in MLX's utils.h: the name string
// is the one link between host (csrc/gpu/launch_plan.cpp) and device. (The CPU
// harness defines its own instantiate_kernel before including the shaders.)
#ifndef instantiate_kernel
#define instantiate_kernel(name, func, ...) \
  template [[host_name(name)]] [[kernel]] decltype(func<__VA_ARGS__>) func<__VA_ARGS__>;
#endif

#define instantiate_float_types(macro, ...) \
  macro(float32, float, __VA_ARGS__)        \
  macro(float16, half, __VA_ARGS__)         \
  macro(bfloat16, bfloat, __VA_ARGS__)

// Loads 16 activations x[0..15] as float. Returns their sum; xs[j] holds x[j]
// pre-scaled by 4^-(j % 4), so that a code masked in place inside its byte
// ((b & (3 << 2i)) = code * 4^i) multiplies to code * x without a shift.
template <typename T>
inline float load_x16_scaled(const device T* xp, thread float* xs) {
  float sum = 0.0f;
  for (int i = 0; i < 16; i += 4) {
    float v0 = static_cast<float>(xp[i + 0]);
    float v1 = static_cast<float>(xp[i + 1]);
    float v2 = static_cast<float>(xp[i + 2]);
    float v3 = static_cast<float>(xp[i + 3]);
    sum += (v0 + v1) + (v2 + v3);
    xs[i + 0] = v0;
    xs[i + 1] = v1 * 0.25f;
    xs[i + 2] = v2 * 0.0625f;
    xs[i + 3] = v3 * 0.015625f;
  }
  return sum;
}

// sum_j xs[j] * code_j for the 16 codes of word w (xs from load_x16_scaled),
// decoded on the fly: each code is masked in place in its byte.
inline float dot_codes16(uint w, thread const float* xs) {
  float acc = 0.0f;
  for (int i = 0; i < 4; ++i) {
    uint b = (w >> (8 * i)) & 0xFFu;
    acc = fma(xs[4 * i + 0], static_cast<float>(b & 0x03u), acc);
    acc = fma(xs[4 * i + 1], static_cast<float>(b & 0x0Cu), acc);
    acc = fma(xs[4 * i + 2], static_cast<float>(b & 0x30u), acc);
    acc = fma(xs[4 * i + 3], static_cast<float>(b & 0xC0u), acc);
  }
  return acc;
}

// The same 16 codes as float, c[j] = code_j * 4^(j % 4), for a word used
// against several rows of x: decoded once, then dot16 per row (same fma order
// as dot_codes16, so the same bits).
inline void decode_codes16(uint w, thread float* c) {
  for (int i = 0; i < 4; ++i) {
    uint b = (w >> (8 * i)) & 0xFFu;
    c[4 * i + 0] = static_cast<float>(b & 0x03u);
    c[4 * i + 1] = static_cast<float>(b & 0x0Cu);
    c[4 * i + 2] = static_cast<float>(b & 0x30u);
    c[4 * i + 3] = static_cast<float>(b & 0xC0u);
  }
}

inline float dot16(thread const float* c, thread const float* xs) {
  float acc = 0.0f;
  for (int j = 0; j < 16; ++j) {
    acc = fma(xs[j], c[j], acc);
  }
  return acc;
}

// The int8 GEMV stays in integer arithmetic. An exact float formulation was
// measured (codes masked in place as float(w & (3 << 2j)) = code * 4^j, xq
// pre-scaled by 4^-j, 16 fma per word with every partial sum an integer below
// 16 * 128 * 3 = 6144 < 2^24): 7-28% slower on the H200 at every decode
// shape (bench/results/metal-designs.md), the 16 int -> float conversions per
// word costing more than the integer multiplies they replace.

// Loads 16 int8 activations as int; returns their sum. (P: a device or
// threadgroup int8_t pointer.)
template <typename P>
inline int load_q16(P xp, thread int* xq) {
  int sum = 0;
  for (int j = 0; j < 16; ++j) {
    xq[j] = static_cast<int>(xp[j]);
    sum += xq[j];
  }
  return sum;
}

// The 16 codes of word w as int (decoded once per word, reused for every
// activation row).
inline void decode_codes16_i32(uint w, thread int* c) {
  for (int j = 0; j < 16; ++j) {
    c[j] = static_cast<int>((w >> (2 * j)) & 3u);
  }
}

// Exact sum_j xq[j] * c[j] (c from decode_codes16_i32).
inline int dot16_i32(thread const int* c, thread const int* xq) {
  int acc = 0;
  for (int j = 0; j < 16; ++j) {
    acc += xq[j] * c[j];
  }
  return acc;
}

// The ternary value (-1, 0, 1; +2 for code 3) of code j of word w.
inline int ternary_at(uint w, int j) {
  return static_cast<int>((w >> (2 * j)) & 3u) - 1;
}

// sum_j x[j] W_j for the 16 codes of word w, without the code - 1 identity:
// for activations with an inf or NaN, where x * W must be inf * 0 = NaN.
template <typename T>
inline float dot_ternary16(uint w, const device T* xp) {
  float acc = 0.0f;
  for (int j = 0; j < 16; ++j) {
    acc = fma(static_cast<float>(xp[j]), static_cast<float>(ternary_at(w, j)), acc);
  }
  return acc;
}

inline float row_scale(const device float* scale, int per_row, int n) {
  return per_row ? scale[n] : scale[0];
}

// ---------------------------------------------------------------------------
// Non-finite values, tested on the bit patterns.

// |v| as bits: ordered like |v| for numbers, and every NaN sorts above +inf,
// so an integer max over them is NaN exactly when a NaN is present.
inline uint abs_bits(float v) {
  return as_type<uint>(v) & 0x7FFFFFFFu;
}

inline bool is_nan_bits(float v) {
  return abs_bits(v) > 0x7F800000u;
}

inline bool is_finite_bits(float v) {
  return abs_bits(v) < 0x7F800000u;
}

// max(a, b), NaN when either is NaN (MLX's maximum).
inline float max_nan(float a, float b) {
  return is_nan_bits(a) ? a : (is_nan_bits(b) ? b : max(a, b));
}

// The integer code of a quotient q: clamp(rint(q), lo, hi), 0 when q is NaN.
inline int quantize_code(float q, float lo, float hi) {
  return is_nan_bits(q) ? 0 : static_cast<int>(clamp(rint(q), lo, hi));
}

// ---------------------------------------------------------------------------
// float-float ("double-single") arithmetic for reductions that must match a
// float64 reference after rounding to float32 (Metal has no double).

struct ffloat {
  float hi;
  float lo;
};

inline ffloat ff_make(float v) {
  ffloat r;
  r.hi = v;
  r.lo = 0.0f;
  return r;
}

// Error-free a + b (Knuth's TwoSum). A sum that is inf or NaN keeps lo = 0
// (TwoSum's error term would be inf - inf = NaN), so an inf stays an inf as
// in the float64 sum the float-float stands for.
inline ffloat ff_two_sum(float a, float b) {
  float s = a + b;
  float bb = s - a;
  float err = (a - (s - bb)) + (b - bb);
  ffloat r;
  r.hi = s;
  r.lo = is_finite_bits(s) ? err : 0.0f;
  return r;
}

inline ffloat ff_add(ffloat a, ffloat b) {
  ffloat s = ff_two_sum(a.hi, b.hi);
  float lo = s.lo + (a.lo + b.lo);
  return ff_two_sum(s.hi, lo);
}

inline ffloat ff_add_f(ffloat a, float b) {
  ffloat s = ff_two_sum(a.hi, b);
  return ff_two_sum(s.hi, s.lo + a.lo);
}

// (a.hi + a.lo) / (d.hi + d.lo) rounded to float (one Newton correction).
inline float ff_div(ffloat a, ffloat d) {
  float q = precise::divide(a.hi, d.hi);
  if (!is_finite_bits(q)) {
    return q; // inf or NaN sum (the correction would be NaN)
  }
  // r = a - q * d. a.hi - q * d.hi is exact in one fma (the remainder of a
  // rounded quotient is a float); every product sits inside an explicit fma,
  // so no a * b + c is left for the compiler to contract or not.
  const float r0 = fma(-q, d.hi, a.hi);
  const float r = fma(-q, d.lo, r0 + a.lo);
  return q + precise::divide(r, d.hi);
}

// An integer count < 2^48 exactly as a float-float.
inline ffloat ff_from_count(ulong n) {
  float hi = static_cast<float>(n & ~ulong(0xFFFFFF));
  float lo = static_cast<float>(n & ulong(0xFFFFFF));
  return ff_two_sum(hi, lo);
}
