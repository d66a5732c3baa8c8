// AVX-512 VNNI level of the int8 head: vpdpbusd multiplies unsigned by
// signed bytes, so it is fed u = w + 128 (w XOR 0x80) against signed x; the
// caller subtracts 128 * sum(x) (kWShift), once per token. The shifted sum
// may pass 2^31, but vpdpbusd and the horizontal sum wrap modulo 2^32, so
// the difference is exact whenever the true dot fits in int32 (the K bound
// of arg_checks.h).
// Tails use zeroing masked loads: x = 0 there, so (w + 128) * x adds 0.
#include <immintrin.h>

#include "int8_head_impl.h"

namespace bitnet_ext::cpu {
namespace {

struct IOpsAvx512Vnni {
  static constexpr int L = 64;
  static constexpr int32_t kWShift = 128;
  using vi = __m512i;
  static vi zero() { return _mm512_setzero_si512(); }
  static vi mul(vi acc, __m512i x8, __m512i w8) {
    const __m512i u = _mm512_xor_si512(w8, _mm512_set1_epi8(static_cast<char>(0x80)));
    return _mm512_dpbusd_epi32(acc, u, x8);
  }
  static vi step(vi acc, const int8_t* x, const int8_t* w) {
    return mul(acc, _mm512_loadu_si512(x), _mm512_loadu_si512(w));
  }
  static vi tail(vi acc, const int8_t* x, const int8_t* w, int n) {
    const __mmask64 m = (uint64_t{1} << n) - 1; // n < 64
    return mul(acc, _mm512_maskz_loadu_epi8(m, x), _mm512_maskz_loadu_epi8(m, w));
  }
  static int32_t hsum(vi v) { return _mm512_reduce_add_epi32(v); }
};

} // namespace

Int8HeadFn int8_head_avx512_vnni() {
  return &Int8HeadSimd<IOpsAvx512Vnni>::matmul;
}

} // namespace bitnet_ext::cpu
