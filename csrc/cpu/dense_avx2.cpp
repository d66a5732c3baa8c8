// AVX2 + FMA + F16C level of the dense matmul (see dense_impl.h).
#include <immintrin.h>

#include "attention_impl.h"
#include "dense_impl.h"
#include "simd_x86.h"

namespace bitnet_ext::cpu {
namespace {

struct DOpsAvx2 {
  static constexpr int L = 8;
  static constexpr int kGemvRows = 2; // 2 x 4 accumulators + loads fit 16 registers
  static constexpr int kGemvRowsW1 = 8; // M = 1: 8 accumulators of 16 registers
  static constexpr int kMR = 6; // 6 x 16 tile: 12 accumulators
  static constexpr int kGemmMinRows = 8;
  using vf = __m256;
  static vf zero() { return _mm256_setzero_ps(); }
  static vf lf(const float* p) { return _mm256_loadu_ps(p); }
  static vf lw(const float* p) { return _mm256_loadu_ps(p); }
  static vf lw(const Bf16* p) {
    // bfloat16 is the high half of a float32: widen and shift.
    const __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  static vf lw(const F16* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
  static void lw_pairs(const Bf16* p, vf& even, vf& odd) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static vf bf(const float* p) { return _mm256_broadcast_ss(p); }
  static vf fmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
  static vf add(vf a, vf b) { return _mm256_add_ps(a, b); }
  static float hsum(vf v) { return OpsAvx2::hsum_f(v); }
  static void sf(float* p, vf v) { _mm256_storeu_ps(p, v); }
};

} // namespace

DenseFn dense_avx2() {
  return &DenseSimd<DOpsAvx2>::matmul;
}

AttentionFn attention_avx2() {
  return &AttentionSimd<DOpsAvx2>::run;
}

} // namespace bitnet_ext::cpu
