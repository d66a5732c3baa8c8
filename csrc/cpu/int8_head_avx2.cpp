// AVX2 level of the int8 head: int8 widened to int16, vpmaddwd into int32
// (exact: |x * w| <= 128 * 127 and pairs fit int32 easily).
#include <immintrin.h>

#include "int8_head_impl.h"

namespace bitnet_ext::cpu {
namespace {

struct IOpsAvx2 {
  static constexpr int L = 16;
  static constexpr int32_t kWShift = 0;
  using vi = __m256i;
  static vi zero() { return _mm256_setzero_si256(); }
  static vi step(vi acc, const int8_t* x, const int8_t* w) {
    const __m256i xv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
    const __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(xv, wv));
  }
  static vi tail(vi acc, const int8_t* x, const int8_t* w, int n) {
    alignas(16) int8_t xb[L] = {}, wb[L] = {};
    for (int i = 0; i < n; ++i) {
      xb[i] = x[i];
      wb[i] = w[i];
    }
    return step(acc, xb, wb);
  }
  static int32_t hsum(vi v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
  }
};

} // namespace

Int8HeadFn int8_head_avx2() {
  return &Int8HeadSimd<IOpsAvx2>::matmul;
}

} // namespace bitnet_ext::cpu
