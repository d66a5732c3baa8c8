// AVX-512 (F/BW) level of the int8 head: int8 widened to int16, vpmaddwd
// into int32 lanes; tails use zeroing masked loads.
#include <immintrin.h>

#include "int8_head_impl.h"

namespace bitnet_ext::cpu {
namespace {

struct IOpsAvx512 {
  static constexpr int L = 32;
  static constexpr int32_t kWShift = 0;
  using vi = __m512i;
  static vi zero() { return _mm512_setzero_si512(); }
  static vi mul(vi acc, __m256i x8, __m256i w8) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_cvtepi8_epi16(x8), _mm512_cvtepi8_epi16(w8)));
  }
  static vi step(vi acc, const int8_t* x, const int8_t* w) {
    return mul(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x)),
               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)));
  }
  static vi tail(vi acc, const int8_t* x, const int8_t* w, int n) {
    const __mmask32 m = static_cast<__mmask32>((uint64_t{1} << n) - 1);
    return mul(acc, _mm256_maskz_loadu_epi8(m, x), _mm256_maskz_loadu_epi8(m, w));
  }
  static int32_t hsum(vi v) { return _mm512_reduce_add_epi32(v); }
};

} // namespace

Int8HeadFn int8_head_avx512() {
  return &Int8HeadSimd<IOpsAvx512>::matmul;
}

} // namespace bitnet_ext::cpu
