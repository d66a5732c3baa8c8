// x86 vector policies ("Ops") for kernels_simd.h. Each policy only exists in
// the translation unit compiled with the flags it needs.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace bitnet_ext::cpu {
namespace {

#if defined(__AVX2__) && defined(__FMA__)
// AVX2 + FMA: 8 lanes of 32 bits; int8 dot products via vpmaddubsw + vpmaddwd.
struct OpsAvx2 {
  static constexpr int L = 8;
  static constexpr int kActOffset = 128; // GEMM activations are u8 = xq + 128
  static constexpr int kNRf = 6, kMVf = 2; // float GEMM tile: 6 rows of W x 16 rows of x
  static constexpr int kNRi = 4, kMVi = 2; // int8 GEMM tile: 4 x 16
  static constexpr int kMBn = 2, kGn = 4; // transpose=False tile
  static constexpr int gemv_nb(int mb) { return mb <= 2 ? 2 : 1; }
  static constexpr int gemv_nb_f(int mb) { return gemv_nb(mb); }
  static constexpr int gemv_acc(int mb, int nb) { return mb * nb <= 2 ? 2 : 1; }
  static constexpr bool kWideCodes = false; // vpmaddubsw saturates: no in-place fields (u8 up to 192)
  static constexpr bool kLut = false;       // no pair-lookup GEMV (needs 16-lane vpermps)
  // Float GEMV through three int8 planes of x (Simd::f_gemv_split) up to this M:
  // measured 2.1x (M = 1, 3 planes) and 1.4x (M = 2, 6 planes) the float decode
  // (Zen 3, cold weights); 3 x M = 9 planes (M = 3) would take two int8 passes.
  static constexpr int kSplitMaxM = 2;

  using vi = __m256i;
  using vf = __m256;
  static vi zi() { return _mm256_setzero_si256(); }
  static vf zf() { return _mm256_setzero_ps(); }
  static vi li(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  // The first nw 32-bit words at p (nw < L), the rest zero; never reads past them.
  static vi li_words(const void* p, int nw) {
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nw), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_epi32(static_cast<const int*>(p), mask);
  }
  static void si(void* p, vi v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }
  static vf lf(const float* p) { return _mm256_loadu_ps(p); }
  static void sf(float* p, vf v) { _mm256_storeu_ps(p, v); }
  static vf bf(const float* p) { return _mm256_broadcast_ss(p); }
  static vi bi(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
  }
  static vi set1i(int32_t v) { return _mm256_set1_epi32(v); }
  static vi set1i8(int8_t v) { return _mm256_set1_epi8(v); }
  static vf set1f(float v) { return _mm256_set1_ps(v); }
  template <int S>
  static vi srli(vi v) {
    return _mm256_srli_epi32(v, S);
  }
  template <int S>
  static vi srai(vi v) {
    return _mm256_srai_epi32(v, S);
  }
  static vi and_(vi a, vi b) { return _mm256_and_si256(a, b); }
  static vi subi(vi a, vi b) { return _mm256_sub_epi32(a, b); }
  static vi addi(vi a, vi b) { return _mm256_add_epi32(a, b); }
  // acc += per 32-bit lane sum of 4 products u8(u) * s8(s); exact while every
  // pair sum fits int16 (|u| * |s| pairs here are at most 2 * 255 * 1 or 2 * 2 * 128).
  static vi dot(vi acc, vi u, vi s) {
    const __m256i t = _mm256_maddubs_epi16(u, s);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(t, _mm256_set1_epi16(1)));
  }
  // int16 accumulation (Simd::i8_gemv_rows): a16 + pair sums of u8(u) * s8(s),
  // and acc + a16's pair sums as int32. The caller keeps every int16 lane in range.
  static vi dot16(vi a16, vi u, vi s) { return _mm256_add_epi16(a16, _mm256_maddubs_epi16(u, s)); }
  static vi widen16(vi acc, vi a16) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a16, _mm256_set1_epi16(1))); }
  static vf fmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
  static vf mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
  static vf add(vf a, vf b) { return _mm256_add_ps(a, b); }
  static vf cvt(vi v) { return _mm256_cvtepi32_ps(v); }
  // Weight as float from the low bits of each lane: ((idx & 3) - 1); vpermps
  // only looks at the low 3 bits of each index.
  static vf decode_f(vi idx) { return _mm256_permutevar8x32_ps(_mm256_setr_ps(-1, 0, 1, 2, -1, 0, 1, 2), idx); }
  // Weights k = g*L .. g*L+L-1 of a packed row as floats.
  static vf decode_group_f(const uint32_t* row, int64_t g) {
    const __m256i sh = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(g & 1) * 16),
                                        _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14));
    return decode_f(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(row[g >> 1])), sh));
  }
  // L packed bytes (4 codes each) -> L dwords of 4 signed weights {-1,0,1}.
  static vi decode_group_i8(const uint8_t* p) {
    __m128i b;
    std::memcpy(&b, p, 8);
    const __m256i d = _mm256_cvtepu8_epi32(b);
    __m256i e = _mm256_or_si256(_mm256_or_si256(d, _mm256_slli_epi32(d, 6)),
                                _mm256_or_si256(_mm256_slli_epi32(d, 12), _mm256_slli_epi32(d, 18)));
    e = _mm256_and_si256(e, _mm256_set1_epi32(0x03030303));
    return _mm256_sub_epi8(e, _mm256_set1_epi8(1));
  }
  static float hsum_f(vf v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static int32_t hsum_i(vi v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
  }
  // |v| as bit patterns (see abs_bits in kernels_impl.h) and their max.
  static vi abs_bits(vf v) { return _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fffffff)); }
  static vi max_u32(vi a, vi b) { return _mm256_max_epu32(a, b); }
  static uint32_t hmax_u32(vi v) {
    __m128i s = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_max_epu32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_max_epu32(s, _mm_shuffle_epi32(s, 0xb1));
    return static_cast<uint32_t>(_mm_cvtsi128_si32(s));
  }
  static vf max_f(vf a, vf b) { return _mm256_max_ps(a, b); }
  static vf min_f(vf a, vf b) { return _mm256_min_ps(a, b); }
  static vf div_f(vf a, vf b) { return _mm256_div_ps(a, b); }
  static vf round_f(vf v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // Stores L integral floats already clamped to [-128, 127] as int8.
  static void store_i8(int8_t* p, vf v) {
    const __m256i i = _mm256_cvttps_epi32(v);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(w, w));
  }
};
#endif

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)
// AVX-512: 16 lanes of 32 bits. Vnni selects vpdpbusd for the int8 dot.
template <bool Vnni>
struct OpsAvx512T {
  static constexpr int L = 16;
  static constexpr int kActOffset = 128;
  static constexpr int kNRf = 14, kMVf = 2; // 14 x 32: 28 accumulators
  static constexpr int kNRi = Vnni ? 14 : 8, kMVi = 2;
  static constexpr int kMBn = 4, kGn = 4;
  static constexpr int gemv_nb(int mb) { return mb <= 1 ? 4 : (mb <= 3 ? 2 : 1); }
  static constexpr int gemv_nb_f(int mb) { return mb <= 1 ? 4 : 2; }
  static constexpr int gemv_acc(int mb, int nb) { return mb * nb <= 4 ? 2 : 1; }
  // dot(acc, u, s) takes u as unsigned bytes 0..255 without saturation
  // (vpdpbusd; the vpmaddubsw fallback saturates to int16).
  static constexpr bool kWideCodes = Vnni;
  // Float GEMV through three int8 planes of x (Simd::f_gemv_split) up to this
  // M, with vpdpbusd only (0: never).
  static constexpr int kSplitMaxM = Vnni ? 2 : 0;

  using vi = __m512i;
  using vf = __m512;
  static vi zi() { return _mm512_setzero_si512(); }
  static vf zf() { return _mm512_setzero_ps(); }
  static vi li(const void* p) { return _mm512_loadu_si512(p); }
  static vi li_words(const void* p, int nw) {
    return _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << nw) - 1u), p);
  }
  static void si(void* p, vi v) { _mm512_storeu_si512(p, v); }
  static vf lf(const float* p) { return _mm512_loadu_ps(p); }
  static void sf(float* p, vf v) { _mm512_storeu_ps(p, v); }
  static vf bf(const float* p) { return _mm512_set1_ps(*p); }
  static vi bi(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
  }
  static vi set1i(int32_t v) { return _mm512_set1_epi32(v); }
  static vi set1i8(int8_t v) { return _mm512_set1_epi8(v); }
  static vf set1f(float v) { return _mm512_set1_ps(v); }
  template <int S>
  static vi srli(vi v) {
    return _mm512_srli_epi32(v, S);
  }
  template <int S>
  static vi srai(vi v) {
    return _mm512_srai_epi32(v, S);
  }
  static vi and_(vi a, vi b) { return _mm512_and_si512(a, b); }
  static vi subi(vi a, vi b) { return _mm512_sub_epi32(a, b); }
  static vi addi(vi a, vi b) { return _mm512_add_epi32(a, b); }
  static vi dot(vi acc, vi u, vi s) {
    if constexpr (Vnni) {
#if defined(__AVX512VNNI__)
      return _mm512_dpbusd_epi32(acc, u, s);
#endif
    } else {
      const __m512i t = _mm512_maddubs_epi16(u, s);
      return _mm512_add_epi32(acc, _mm512_madd_epi16(t, _mm512_set1_epi16(1)));
    }
  }
  static vf fmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
  static vf mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
  static vf add(vf a, vf b) { return _mm512_add_ps(a, b); }
  static vf cvt(vi v) { return _mm512_cvtepi32_ps(v); }
  // vpermps (zmm) uses the low 4 bits of each index: entry i = (i & 3) - 1.
  static vf decode_f(vi idx) {
    return _mm512_permutexvar_ps(idx, _mm512_setr_ps(-1, 0, 1, 2, -1, 0, 1, 2, -1, 0, 1, 2, -1, 0, 1, 2));
  }
  static vf decode_group_f(const uint32_t* row, int64_t g) {
    const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return decode_f(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(row[g])), sh));
  }
  static vi decode_group_i8(const uint8_t* p) {
    const __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    __m512i e = _mm512_ternarylogic_epi32(d, _mm512_slli_epi32(d, 6), _mm512_slli_epi32(d, 12), 0xfe);
    e = _mm512_or_si512(e, _mm512_slli_epi32(d, 18));
    e = _mm512_and_si512(e, _mm512_set1_epi32(0x03030303));
    return _mm512_sub_epi8(e, _mm512_set1_epi8(1));
  }
  // --- Pair-lookup float GEMV (M = 1), see Simd::f_gemv_lut.
  static constexpr bool kLut = true;
  // Weights of a code pair (c0, c1) = (i & 3, i >> 2) as floats: w0, w1 =
  // code - 1, so code 3 (never packed) is +2 as on every other path.
  static vf lut_w0() { return _mm512_setr_ps(-1, 0, 1, 2, -1, 0, 1, 2, -1, 0, 1, 2, -1, 0, 1, 2); }
  static vf lut_w1() { return _mm512_setr_ps(-1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2); }
  // table[idx & 15] per lane (vpermps uses the low 4 bits of each index).
  static vf lut(vi idx, const float* table) { return _mm512_permutexvar_ps(idx, _mm512_loadu_ps(table)); }
  static void sf_n(float* p, vf v, int n) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v); }
  static vi bits(vf v) { return _mm512_castps_si512(v); }
  static vf from_bits(vi v) { return _mm512_castsi512_ps(v); }
  // In-register transpose of 16 x 16 dwords: afterwards r[j] lane i = old r[i] lane j.
  static void transpose16(vi (&r)[16]) {
    vi t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
      r[4 * i + 0] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
      r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
      r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
      r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    // r[4i + c], 128-bit lane L: rows 4i..4i+3 of column 4L + c.
    for (int c = 0; c < 4; ++c) {
      const vi a0 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0x44);
      const vi a1 = _mm512_shuffle_i32x4(r[c], r[4 + c], 0xee);
      const vi b0 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0x44);
      const vi b1 = _mm512_shuffle_i32x4(r[8 + c], r[12 + c], 0xee);
      t[c] = _mm512_shuffle_i32x4(a0, b0, 0x88);
      t[4 + c] = _mm512_shuffle_i32x4(a0, b0, 0xdd);
      t[8 + c] = _mm512_shuffle_i32x4(a1, b1, 0x88);
      t[12 + c] = _mm512_shuffle_i32x4(a1, b1, 0xdd);
    }
    for (int i = 0; i < 16; ++i) r[i] = t[i];
  }
  static float hsum_f(vf v) { return _mm512_reduce_add_ps(v); }
  static int32_t hsum_i(vi v) { return _mm512_reduce_add_epi32(v); }
  // out[i] = sum of the lanes of v[i], 4 vectors at once (13 ops, not 4 x 8).
  static void hsum4_i(const vi (&v)[4], int32_t* out) {
    const vi a = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
    const vi b = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
    // each 128-bit lane: (v0, v1, v2, v3) partial sums of its quarter
    const vi c = _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b));
    const __m256i d = _mm256_add_epi32(_mm512_castsi512_si256(c), _mm512_extracti64x4_epi64(c, 1));
    const __m128i e = _mm_add_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), e);
  }
  static vi abs_bits(vf v) { return _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff)); }
  static vi max_u32(vi a, vi b) { return _mm512_max_epu32(a, b); }
  static uint32_t hmax_u32(vi v) { return _mm512_reduce_max_epu32(v); }
  static vf max_f(vf a, vf b) { return _mm512_max_ps(a, b); }
  static vf min_f(vf a, vf b) { return _mm512_min_ps(a, b); }
  static vf div_f(vf a, vf b) { return _mm512_div_ps(a, b); }
  static vf round_f(vf v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static void store_i8(int8_t* p, vf v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(v)));
  }
};
using OpsAvx512 = OpsAvx512T<false>;
#if defined(__AVX512VNNI__)
using OpsAvx512Vnni = OpsAvx512T<true>;
#endif
#endif

} // namespace
} // namespace bitnet_ext::cpu
