// arm64 Advanced SIMD policies for kernels_simd.h: 4 lanes of 32 bits.
// Dot selects sdot (Armv8.2 dot product); otherwise smull + pairwise adds.
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

namespace bitnet_ext::cpu {
namespace {

template <bool Dot>
struct OpsNeonT {
  static constexpr int L = 4;
  // sdot is signed x signed: GEMM activations stay plain int8 (no offset).
  static constexpr int kActOffset = 0;
  static constexpr int kNRf = 8, kMVf = 2; // 8 rows of W x 8 rows of x: 16 accumulators
  static constexpr int kNRi = 8, kMVi = 2;
  static constexpr int kMBn = 4, kGn = 4;
  static constexpr int gemv_nb(int mb) { return mb <= 1 ? 4 : (mb <= 3 ? 2 : 1); }
  static constexpr int gemv_nb_f(int mb) { return gemv_nb(mb); }
  static constexpr int gemv_acc(int mb, int nb) { return mb * nb <= 4 ? 2 : 1; }
  static constexpr bool kWideCodes = false; // sdot is signed x signed: no in-place fields (u8 up to 192)
  static constexpr bool kLut = false;       // no pair-lookup GEMV

  using vi = int32x4_t;
  using vf = float32x4_t;
  static vi zi() { return vdupq_n_s32(0); }
  static vf zf() { return vdupq_n_f32(0.0f); }
  static vi li(const void* p) { return vreinterpretq_s32_u8(vld1q_u8(static_cast<const uint8_t*>(p))); }
  static vi li_words(const void* p, int nw) {
    int32_t tmp[4] = {0, 0, 0, 0};
    std::memcpy(tmp, p, static_cast<size_t>(nw) * 4);
    return vld1q_s32(tmp);
  }
  static void si(void* p, vi v) { vst1q_u8(static_cast<uint8_t*>(p), vreinterpretq_u8_s32(v)); }
  static vf lf(const float* p) { return vld1q_f32(p); }
  static void sf(float* p, vf v) { vst1q_f32(p, v); }
  static vf bf(const float* p) { return vld1q_dup_f32(p); }
  static vi bi(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return vdupq_n_s32(v);
  }
  static vi set1i(int32_t v) { return vdupq_n_s32(v); }
  static vi set1i8(int8_t v) { return vreinterpretq_s32_s8(vdupq_n_s8(v)); }
  static vf set1f(float v) { return vdupq_n_f32(v); }
  template <int S>
  static vi srli(vi v) {
    return vreinterpretq_s32_u32(vshrq_n_u32(vreinterpretq_u32_s32(v), S));
  }
  template <int S>
  static vi srai(vi v) {
    return vshrq_n_s32(v, S);
  }
  static vi and_(vi a, vi b) { return vandq_s32(a, b); }
  static vi subi(vi a, vi b) { return vsubq_s32(a, b); }
  static vi addi(vi a, vi b) { return vaddq_s32(a, b); }
  // acc += per 32-bit lane sum of 4 byte products. Both operands are used as
  // signed bytes; callers keep them in range (codes <= 12, weights in
  // {-1,0,1}), so the pairwise int16 sums of the fallback cannot overflow.
  static vi dot(vi acc, vi u, vi s) {
    const int8x16_t a = vreinterpretq_s8_s32(u), b = vreinterpretq_s8_s32(s);
    if constexpr (Dot) {
#if defined(__ARM_FEATURE_DOTPROD)
      return vdotq_s32(acc, a, b);
#endif
    } else {
      const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
      const int16x8_t hi = vmull_high_s8(a, b);
      return vpadalq_s16(acc, vpaddq_s16(lo, hi));
    }
  }
  static vf fmadd(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
  static vf mul(vf a, vf b) { return vmulq_f32(a, b); }
  static vf add(vf a, vf b) { return vaddq_f32(a, b); }
  static vf cvt(vi v) { return vcvtq_f32_s32(v); }
  static vf decode_f(vi idx) { return vcvtq_f32_s32(vsubq_s32(vandq_s32(idx, vdupq_n_s32(3)), vdupq_n_s32(1))); }
  static vf decode_group_f(const uint32_t* row, int64_t g) {
    const int base = static_cast<int>(g & 3) * 8;
    const int32_t sh[4] = {-base, -(base + 2), -(base + 4), -(base + 6)};
    const uint32x4_t w = vshlq_u32(vdupq_n_u32(row[g >> 2]), vld1q_s32(sh));
    return decode_f(vreinterpretq_s32_u32(w));
  }
  // 4 packed bytes -> 4 dwords of 4 signed weights {-1,0,1}.
  static vi decode_group_i8(const uint8_t* p) {
    uint32_t b4;
    std::memcpy(&b4, p, 4);
    const uint8x8_t b = vreinterpret_u8_u32(vdup_n_u32(b4));
    const uint32x4_t d = vmovl_u16(vget_low_u16(vmovl_u8(b)));
    uint32x4_t e = vorrq_u32(vorrq_u32(d, vshlq_n_u32(d, 6)), vorrq_u32(vshlq_n_u32(d, 12), vshlq_n_u32(d, 18)));
    e = vandq_u32(e, vdupq_n_u32(0x03030303u));
    return vreinterpretq_s32_s8(vsubq_s8(vreinterpretq_s8_u32(e), vdupq_n_s8(1)));
  }
  static float hsum_f(vf v) { return vaddvq_f32(v); }
  static int32_t hsum_i(vi v) { return vaddvq_s32(v); }
  // |v| as bit patterns (see abs_bits in kernels_impl.h) and their max.
  static vi abs_bits(vf v) {
    return vreinterpretq_s32_u32(vandq_u32(vreinterpretq_u32_f32(v), vdupq_n_u32(0x7fffffffu)));
  }
  static vi max_u32(vi a, vi b) {
    return vreinterpretq_s32_u32(vmaxq_u32(vreinterpretq_u32_s32(a), vreinterpretq_u32_s32(b)));
  }
  static uint32_t hmax_u32(vi v) { return vmaxvq_u32(vreinterpretq_u32_s32(v)); }
  static vf max_f(vf a, vf b) { return vmaxq_f32(a, b); }
  static vf min_f(vf a, vf b) { return vminq_f32(a, b); }
  static vf div_f(vf a, vf b) { return vdivq_f32(a, b); }
  static vf round_f(vf v) { return vrndnq_f32(v); }
  static void store_i8(int8_t* p, vf v) {
    const int16x4_t h = vmovn_s32(vcvtq_s32_f32(v));
    const int8x8_t b = vmovn_s16(vcombine_s16(h, h));
    const uint32_t w = vget_lane_u32(vreinterpret_u32_s8(b), 0);
    std::memcpy(p, &w, 4);
  }
};
using OpsNeon = OpsNeonT<false>;
#if defined(__ARM_FEATURE_DOTPROD)
using OpsNeonDot = OpsNeonT<true>;
#endif

} // namespace
} // namespace bitnet_ext::cpu
