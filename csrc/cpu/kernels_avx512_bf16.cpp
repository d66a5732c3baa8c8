// avx512_bf16 level (AMD Zen 4 / Zen 5, Intel Cooper Lake and later): the
// avx512_vnni table, except the float prefill product (ternary_matmul with
// float activations, M > 16) when every x is exact in bfloat16, which
// bfloat16 models' activations are: vdpbf16ps multiplies 32 bf16 pairs per
// instruction where the float GEMM's FMA does 16.
//
// Exactness: W is exact in bf16 ({-1, 0, 1, 2}), x is exact in bf16 by the
// check below, so every product is exact and only the float32 sums round, as
// in the float GEMM (in another order). vdpbf16ps treats bf16 subnormals as
// zero, so a call whose x holds a subnormal, an infinity or a NaN, or any
// value with more than 8 significant bits, takes the float GEMM instead.
//
// Tile: kNR rows of W x kMT = 32 rows of x, 28 zmm accumulators. x is
// packed once per call as bf16 pairs (k = 2p, 2p + 1) with m in the lanes:
// xt[mt][p][kMT]; each thread decodes its rows of W into a panel
// [p][kNR] of bf16 pairs that the micro kernel broadcasts.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "simd_x86.h"
#include "kernels_simd.h"

namespace bitnet_ext::cpu {
namespace {

using Base = Simd<OpsAvx512Vnni>;
using vi = __m512i;
using vf = __m512;

constexpr int kNR = 14; // rows of W per tile
constexpr int kMV = 2; // vectors of x rows per tile
constexpr int kMT = kMV * 16; // rows of x per tile

inline __m512bh as_bh(vi v) {
  return reinterpret_cast<__m512bh&>(v);
}

// Lanes of `bits` (float32) that are not a finite bf16 value other than a
// subnormal: low 16 bits set, exponent all ones, or exponent zero with a
// nonzero significand.
inline __mmask16 not_exact_bf16(vi bits) {
  const vi exponent = _mm512_and_si512(bits, _mm512_set1_epi32(0x7F800000));
  const __mmask16 low = _mm512_test_epi32_mask(bits, _mm512_set1_epi32(0xFFFF));
  const __mmask16 inf_nan = _mm512_cmpeq_epi32_mask(exponent, _mm512_set1_epi32(0x7F800000));
  const __mmask16 subnormal = _mm512_cmpeq_epi32_mask(exponent, _mm512_setzero_si512()) &
                              _mm512_test_epi32_mask(bits, _mm512_set1_epi32(0x7FFFFFFF));
  return low | inf_nan | subnormal;
}

// x (M x K, row stride ldx) as bf16 pairs in tile order: xt[mt][p][kMT],
// lane m of pair p = x[m][2p] | x[m][2p + 1] << 16; rows past M are zero.
// False when some x is not exact in bf16 (xt is then unusable).
bool pack_x_pairs(const float* x, int64_t ldx, int64_t M, int64_t K, uint32_t* xt) {
  const int64_t np = K / 2, nmt = ceil_div(M, int64_t{kMT});
  for (int64_t mt = 0; mt < nmt; ++mt) {
    uint32_t* dst = xt + mt * np * kMT;
    for (int64_t mm = 0; mm < kMT; ++mm) {
      const int64_t m = mt * kMT + mm;
      if (m >= M) {
        for (int64_t p = 0; p < np; ++p) dst[p * kMT + mm] = 0;
        continue;
      }
      const float* row = x + m * ldx;
      for (int64_t k = 0; k < K; k += 32) { // K % 16 == 0: a tail of 16 at most
        const int64_t n = std::min<int64_t>(32, K - k);
        const __mmask16 hi_lanes = n == 32 ? 0xFFFF : 0;
        const vi a = _mm512_loadu_si512(row + k);
        const vi b = _mm512_maskz_loadu_epi32(hi_lanes, row + k + 16);
        if (not_exact_bf16(a) | (not_exact_bf16(b) & hi_lanes)) return false;
        // Exact values convert exactly; lane i = k + 2i | k + 2i + 1 << 16.
        alignas(64) uint32_t pairs[16];
        _mm512_store_si512(pairs, reinterpret_cast<const vi&>(
                                      static_cast<const __m512bh&>(_mm512_cvtne2ps_pbh(_mm512_castsi512_ps(b),
                                                                                       _mm512_castsi512_ps(a)))));
        for (int64_t i = 0; i < n / 2; ++i) dst[(k / 2 + i) * kMT + mm] = pairs[i];
      }
    }
  }
  return true;
}

// bf16 pair (code0 - 1, code1 - 1) for the nibble code0 | code1 << 2 (code 3 = +2).
inline vi pair_table() {
  constexpr uint32_t value[4] = {0xBF80u, 0x0000u, 0x3F80u, 0x4000u}; // -1, 0, 1, 2
  alignas(64) uint32_t t[16];
  for (int nib = 0; nib < 16; ++nib) t[nib] = value[nib & 3] | value[nib >> 2] << 16;
  return _mm512_load_si512(t);
}

// Rows n0 .. n0 + nvalid - 1 of W as the panel [p][kNR] (rows past nvalid zero).
void decode_panel(const uint32_t* wq, int64_t KW, int64_t n0, int nvalid, uint32_t* panel) {
  const vi table = pair_table();
  const vi nibble = _mm512_set1_epi32(15);
  for (int r = 0; r < kNR; ++r) {
    if (r >= nvalid) {
      for (int64_t p = 0; p < KW * 8; ++p) panel[p * kNR + r] = 0;
      continue;
    }
    const uint32_t* row = wq + (n0 + r) * KW;
    for (int64_t w0 = 0; w0 < KW; w0 += 16) {
      const int nw = static_cast<int>(std::min<int64_t>(16, KW - w0));
      const vi words = _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << nw) - 1), row + w0);
      alignas(64) uint32_t pairs[8][16]; // [q][j]: pair q of word w0 + j
      static_for<8>([&](auto q) BITNET_INLINE {
        constexpr int Q = decltype(q)::value;
        const vi idx = _mm512_and_si512(_mm512_srli_epi32(words, 4 * Q), nibble);
        _mm512_store_si512(pairs[Q], _mm512_permutexvar_epi32(idx, table));
      });
      for (int j = 0; j < nw; ++j) {
        for (int q = 0; q < 8; ++q) panel[((w0 + j) * 8 + q) * kNR + r] = pairs[q][j];
      }
    }
  }
}

// out[r][kMT] = sum over the np pairs of the panel's row r times the tile's x.
BITNET_FLATTEN void micro(const uint32_t* xt, const uint32_t* panel, int64_t np, float* out) {
  vf acc[kNR][kMV];
  static_for<kNR>([&](auto r) BITNET_INLINE {
    static_for<kMV>([&](auto j) BITNET_INLINE { acc[r][j] = _mm512_setzero_ps(); });
  });
  for (int64_t p = 0; p < np; ++p) {
    vi xv[kMV];
    static_for<kMV>([&](auto j) BITNET_INLINE { xv[j] = _mm512_loadu_si512(xt + p * kMT + j * 16); });
    const uint32_t* pp = panel + p * kNR;
    static_for<kNR>([&](auto r) BITNET_INLINE {
      const vi w = _mm512_set1_epi32(static_cast<int>(pp[r]));
      static_for<kMV>([&](auto j) BITNET_INLINE { acc[r][j] = _mm512_dpbf16_ps(acc[r][j], as_bh(xv[j]), as_bh(w)); });
    });
  }
  static_for<kNR>([&](auto r) BITNET_INLINE {
    static_for<kMV>([&](auto j) BITNET_INLINE { _mm512_storeu_ps(out + r * kMT + j * 16, acc[r][j]); });
  });
}

bool bf16_f_gemm(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row, float* y,
                 int64_t M, int64_t N, int64_t K) {
  const int64_t KW = K / 16, np = K / 2, nmt = ceil_div(M, int64_t{kMT});
  uint32_t* xt = scratch(kActs).get<uint32_t>(nmt * np * kMT);
  if (!pack_x_pairs(x, ldx, M, K, xt)) return false;
  const int64_t ntiles = ceil_div(N, int64_t{kNR});
  parallel_for(0, ntiles, 1, [&](int64_t t0, int64_t t1) {
    uint32_t* panel = scratch(kPanel).get<uint32_t>(np * kNR);
    float* tile = scratch(kTile).get<float>(kNR * kMT);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t n0 = t * kNR;
      const int nvalid = static_cast<int>(std::min<int64_t>(kNR, N - n0));
      decode_panel(wq, KW, n0, nvalid, panel);
      for (int64_t mt = 0; mt < nmt; ++mt) {
        micro(xt + mt * np * kMT, panel, np, tile);
        Base::store_tile<kNR, kMT>(tile, scale, per_row, y, N, n0, nvalid, mt * kMT,
                                   std::min<int64_t>(kMT, M - mt * kMT));
      }
    }
  });
  return true;
}

constexpr KernelTable bf16_table() {
  KernelTable t = Base::table();
  t.matmul_t = &Base::matmul_t_with_gemm<bf16_f_gemm>;
  return t;
}

} // namespace

const KernelTable& table_avx512_bf16() {
  static constexpr KernelTable t = bf16_table();
  return t;
}

} // namespace bitnet_ext::cpu
