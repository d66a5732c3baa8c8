// arm64 Advanced SIMD level of the dense matmul (see dense_impl.h); the
// dot-product level uses it too (no integer dot products here).
#include <arm_neon.h>

#include "attention_impl.h"
#include "dense_impl.h"

namespace bitnet_ext::cpu {
namespace {

struct DOpsNeon {
  static constexpr int L = 4;
  static constexpr int kGemvRows = 4; // 4 x 4 accumulators
  static constexpr int kGemvRowsW1 = 16; // M = 1: 16 accumulators of 32 registers
  static constexpr int kMR = 8; // 8 x 8 tile: 16 accumulators of 32 registers
  static constexpr int kGemmMinRows = 8;
  using vf = float32x4_t;
  static vf zero() { return vdupq_n_f32(0.0f); }
  static vf lf(const float* p) { return vld1q_f32(p); }
  static vf lw(const float* p) { return vld1q_f32(p); }
  static vf lw(const Bf16* p) {
    // bfloat16 is the high half of a float32: widen by shifting left 16.
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)), 16));
  }
  static vf lw(const F16* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(reinterpret_cast<const uint16_t*>(p)))); }
  static void lw_pairs(const Bf16* p, vf& even, vf& odd) {
    const uint32x4_t v = vreinterpretq_u32_u16(vld1q_u16(reinterpret_cast<const uint16_t*>(p)));
    even = vreinterpretq_f32_u32(vshlq_n_u32(v, 16));
    odd = vreinterpretq_f32_u32(vandq_u32(v, vdupq_n_u32(0xffff0000u)));
  }
  static vf bf(const float* p) { return vld1q_dup_f32(p); }
  static vf fmadd(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
  static vf add(vf a, vf b) { return vaddq_f32(a, b); }
  static float hsum(vf v) { return vaddvq_f32(v); }
  static void sf(float* p, vf v) { vst1q_f32(p, v); }
};

} // namespace

DenseFn dense_neon() {
  return &DenseSimd<DOpsNeon>::matmul;
}

AttentionFn attention_neon() {
  return &AttentionSimd<DOpsNeon>::run;
}

} // namespace bitnet_ext::cpu
