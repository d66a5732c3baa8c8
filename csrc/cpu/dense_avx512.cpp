// AVX-512 (F/BW/VL/DQ) level of the dense matmul (see dense_impl.h); the
// AVX-512 VNNI level uses it too (no integer dot products here).
#include <immintrin.h>

#include "attention_impl.h"
#include "dense_impl.h"

namespace bitnet_ext::cpu {
namespace {

struct DOpsAvx512 {
  static constexpr int L = 16;
  static constexpr int kGemvRows = 4; // 4 x 4 accumulators
  static constexpr int kGemvRowsW1 = 16; // M = 1: 16 accumulators
  static constexpr int kMR = 12; // 12 x 32 tile: 24 accumulators of 32 registers
  static constexpr int kGemmMinRows = 8;
  using vf = __m512;
  static vf zero() { return _mm512_setzero_ps(); }
  static vf lf(const float* p) { return _mm512_loadu_ps(p); }
  static vf lw(const float* p) { return _mm512_loadu_ps(p); }
  static vf lw(const Bf16* p) {
    // bfloat16 is the high half of a float32: widen and shift.
    const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  }
  static vf lw(const F16* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  static void lw_pairs(const Bf16* p, vf& even, vf& odd) {
    const __m512i v = _mm512_loadu_si512(p);
    even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
    odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  }
  static vf bf(const float* p) { return _mm512_set1_ps(*p); }
  static vf fmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
  static vf add(vf a, vf b) { return _mm512_add_ps(a, b); }
  static float hsum(vf v) { return _mm512_reduce_add_ps(v); }
  static void sf(float* p, vf v) { _mm512_storeu_ps(p, v); }
};

} // namespace

DenseFn dense_avx512() {
  return &DenseSimd<DOpsAvx512>::matmul;
}

AttentionFn attention_avx512() {
  return &AttentionSimd<DOpsAvx512>::run;
}

} // namespace bitnet_ext::cpu
