// avx512_amx level: the avx512_vnni table, except the prefill products (more
// than kGemvMaxM rows of x), which run on AMX tiles:
//
//   bitlinear (int8 x ternary):       tdpbssd, exact int32, BitLinear's epilogue
//   ternary_matmul t (float x):       tdpbf16ps over bf16 planes of x, float32 sums
//
// One tile product C += A B with A = 16 rows of decoded W (natural k order)
// and B = 16 rows of x transposed into the dot-product layout (dwords of
// 4 int8 or 2 bf16 consecutive k, one per row of x), so C is a 16 x 16 block
// of y transposed; the epilogue transposes it back in registers.
//
// Float x: x = hi + mid + lo, each a bf16 plane cut by truncation (hi keeps
// the top 8 significant bits of x, mid the next 8 of the remainder, lo the
// rest, which then has at most 8), so the three planes hold x exactly
// (barring underflow below 2^-126, where AMX flushes bf16 denormals to zero)
// and W is exact in bf16: each product is exact and only the float32 sums
// round, as in every other float path. Planes that are zero for all of x are
// skipped (bf16 activations take one plane). A call whose x holds a NaN or an
// infinity takes the avx512_vnni GEMM, whose sums propagate them the usual way.
#include <immintrin.h>

#include <atomic>

#include "simd_x86.h"
// simd_x86.h first: it defines the policy used below.
#include "kernels_simd.h"

namespace bitnet_ext::cpu {
namespace {

using Base = Simd<OpsAvx512Vnni>;
using vi = __m512i;
using vf = __m512;

constexpr int kTileDim = 16; // rows of every tile, and columns of every C tile
constexpr int kTileBytes = 1024; // 16 rows x 64 bytes
constexpr int kPanelRows = 32; // rows of W per panel: A tiles 4 and 5
constexpr int kStepRows = 32; // rows of x per step: B tiles 6 and 7
constexpr int64_t kStepGroupBytes = int64_t{1} << 20; // B tiles per pass over the panels
// Layouts: the two tiles that one slab's products read side by side (2 KiB
// read in address order).
//   panel: [slab][half][16 rows][64 bytes]    half = W rows 0-15 / 16-31
//   x:     [step][slab][plane][tile][16 rows][64 bytes]   tile = x rows 0-15 / 16-31 of the step
inline int64_t panel_tile(int64_t slab, int64_t half) {
  return (slab * 2 + half) * kTileBytes;
}
inline int64_t x_tile(int64_t t, int64_t slab, int64_t plane, int64_t nslab, int planes) {
  return (((t / 2 * nslab + slab) * planes + plane) * 2 + t % 2) * kTileBytes;
}

// Palette 1, every tile 16 rows x 64 bytes: C tiles 0-3, A tiles 4-5, B 6-7.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// The tile registers configured on this thread for the scope's lifetime
// (the configuration is per thread; releasing it lets the kernel skip saving
// the tile data at context switches).
class TileScope {
 public:
  TileScope() {
    TileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.colsb[t] = 64;
      c.rows[t] = kTileDim;
    }
    _tile_loadconfig(&c);
  }
  ~TileScope() { _tile_release(); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

// C tiles 0-3 += A tiles 4-5 x B tiles 6-7: 0 = (W rows 0-15, x rows 0-15),
// 1 = (W 0-15, x 16-31), 2 = (W 16-31, x 0-15), 3 = (W 16-31, x 16-31).
// Tile numbers must be literals (the intrinsics paste them into the asm).
struct DotI8 {
  static void run() {
    _tile_dpbssd(0, 4, 6);
    _tile_dpbssd(1, 4, 7);
    _tile_dpbssd(2, 5, 6);
    _tile_dpbssd(3, 5, 7);
  }
};
struct DotBf16 {
  static void run() {
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
};

// The four C tiles of one step over all nslab slabs, stored to c[4][16][16]:
// A tiles from `panel`, B tiles from `x` (the step's part of x), in the
// layouts of panel_tile / x_tile. The four loads of a slab come first, then
// its four products (measured ~15% faster than loading each tile just before
// its first product). The zero at the start and the store at the end drain
// the products' pipeline once per step: ~30% of the loop's time in a
// stand-alone test (3.4 vs 4.7 TOP/s per core without them); no tiles are
// left to hide it (4 C + 2 A + 2 B).
template <class Dot>
void tile_block(const uint8_t* panel, const uint8_t* x, int64_t nslab, int planes, void* c) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int64_t s = 0; s < nslab; ++s) {
    const uint8_t* a = panel + panel_tile(s, 0);
    for (int p = 0; p < planes; ++p) {
      const uint8_t* b = x + x_tile(0, s, p, nslab, planes);
      if (p == 0) {
        _tile_loadd(4, a, 64);
        _tile_loadd(5, a + kTileBytes, 64);
      }
      _tile_loadd(6, b, 64);
      _tile_loadd(7, b + kTileBytes, 64);
      Dot::run();
    }
  }
  auto* o = static_cast<uint8_t*>(c);
  _tile_stored(0, o, 64);
  _tile_stored(1, o + kTileBytes, 64);
  _tile_stored(2, o + 2 * kTileBytes, 64);
  _tile_stored(3, o + 3 * kTileBytes, 64);
}

// A C tile (16 rows of W x 16 rows of x) transposed: r[j] = row j of x.
inline void load_transposed(const void* tile, vi (&r)[16]) {
  const auto* t = static_cast<const uint8_t*>(tile);
  for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(t + i * 64);
  OpsAvx512Vnni::transpose16(r);
}

inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// Panels of W, steps of x, and the work split: threads take whole panels.
struct Blocking {
  int64_t npanel, nstep;
  Blocking(int64_t M, int64_t N) : npanel(ceil_div(N, kPanelRows)), nstep(ceil_div(M, kStepRows)) {}
};

// Runs the panels of W over the threads: each panel decoded once
// (decode(n0, panel)), then multiplied with every step of x (xt: B tiles of
// `planes` planes per slab), each 16 x 16 block of y handed to
// store(r, nc, mc, lanes, rows): r[j] = y row mc + j (valid: j < rows),
// lanes n = nc .. (valid: `lanes`).
template <class Dot, class Decode, class Store>
void run_panels(int64_t M, int64_t N, int64_t nslab, int planes, const uint8_t* xt, Decode&& decode,
                Store&& store) {
  const Blocking blk(M, N);
  const int64_t step_bytes = x_tile(2, 0, 0, nslab, planes); // 32 rows of x
  parallel_for(0, blk.npanel, 1, [&](int64_t p0, int64_t p1) {
    TileScope tiles;
    uint8_t* panel = scratch(kPanel).get<uint8_t>(2 * nslab * kTileBytes);
    auto* c = scratch(kTile).get<int32_t>(4 * 256);
    // Steps of x in groups whose B tiles fit in L2, each group multiplied
    // with every panel (re-decoded per group): with all of x at once, its
    // tiles streamed from L3 past ~1 MiB (K = 6912, M = 512: 1.3 instead of
    // 2.3 TOP/s per core).
    const int64_t group = std::max<int64_t>(1, kStepGroupBytes / step_bytes);
    for (int64_t g0 = 0; g0 < blk.nstep; g0 += group) {
      for (int64_t p = p0; p < p1; ++p) {
        const int64_t n0 = p * kPanelRows;
        decode(n0, panel);
        for (int64_t st = g0; st < std::min(blk.nstep, g0 + group); ++st) {
          tile_block<Dot>(panel, xt + st * step_bytes, nslab, planes, c);
          for (int q = 0; q < 4; ++q) {
            const int64_t nc = n0 + (q / 2) * kTileDim, mc = (2 * st + q % 2) * kTileDim;
            if (nc >= N || mc >= M) continue;
            vi r[16];
            load_transposed(c + q * 256, r);
            store(r, nc, mc, first_lanes(N - nc), std::min<int64_t>(kTileDim, M - mc));
          }
        }
      }
    }
  });
}

// =========================================================================
// int8: slabs of 64 k.

// x in B layout (x_tile): per tile of 16 rows of x and slab, 16 rows (k quads) x 16 dwords
// (rows of x), zero past M and K.
void pack_x_i8(const int8_t* xq, int64_t M, int64_t K, int64_t ntile, int64_t nslab, uint8_t* xt) {
  parallel_for(0, ntile, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t s = 0; s < nslab; ++s) {
        const int64_t kb = std::min<int64_t>(64, K - s * 64);
        const __mmask64 kmask = kb >= 64 ? ~__mmask64{0} : ((__mmask64{1} << kb) - 1);
        vi r[16];
        for (int i = 0; i < 16; ++i) {
          const int64_t m = t * kTileDim + i;
          r[i] = m < M ? _mm512_maskz_loadu_epi8(kmask, xq + m * K + s * 64) : _mm512_setzero_si512();
        }
        OpsAvx512Vnni::transpose16(r);
        uint8_t* dst = xt + x_tile(t, s, 0, nslab, 1);
        for (int q = 0; q < 16; ++q) _mm512_storeu_si512(dst + q * 64, r[q]);
      }
    }
  });
}

// 32 rows of W from n0 as int8 (code - 1) A tiles (panel_tile): per slab and half, 16
// rows x 64 k. Rows past N and k past K are 0.
void decode_panel_i8(const uint8_t* wbytes, int64_t RB, int64_t N, int64_t n0, int64_t nslab, uint8_t* panel) {
  for (int r = 0; r < kPanelRows; ++r) {
    uint8_t* row0 = panel + panel_tile(0, r / kTileDim) + (r % kTileDim) * 64;
    const int64_t n = n0 + r;
    for (int64_t s = 0; s < nslab; ++s) {
      uint8_t* dst = row0 + panel_tile(s, 0);
      const int64_t nb = n < N ? std::min<int64_t>(16, RB - s * 16) : 0;
      if (nb == 16) {
        _mm512_storeu_si512(dst, OpsAvx512Vnni::decode_group_i8(wbytes + n * RB + s * 16));
      } else {
        uint8_t tmp[16] = {0};
        if (nb > 0) std::memcpy(tmp, wbytes + n * RB + s * 16, static_cast<size_t>(nb));
        const __mmask16 keep = first_lanes(nb);
        _mm512_storeu_si512(dst, _mm512_maskz_mov_epi32(keep, OpsAvx512Vnni::decode_group_i8(tmp)));
      }
    }
  }
}

void amx_i8_gemm(const I8Args& a) {
  const int64_t M = a.M, N = a.N, K = a.K, RB = K / 4;
  const int64_t nslab = ceil_div(K, 64);
  const Blocking blk(M, N);
  uint8_t* xt = scratch(kActs).get<uint8_t>(blk.nstep * 2 * nslab * kTileBytes);
  pack_x_i8(a.xq, M, K, blk.nstep * 2, nslab, xt);
  const auto* wbytes = reinterpret_cast<const uint8_t*>(a.wq);
  run_panels<DotI8>(
      M, N, nslab, 1, xt, [&](int64_t n0, uint8_t* panel) { decode_panel_i8(wbytes, RB, N, n0, nslab, panel); },
      [&](const vi (&r)[16], int64_t nc, int64_t mc, __mmask16 lanes, int64_t rows) {
        if (!a.y) {
          for (int64_t j = 0; j < rows; ++j) _mm512_mask_storeu_epi32(a.acc + (mc + j) * N + nc, lanes, r[j]);
          return;
        }
        const vf s = a.per_row_scale ? _mm512_maskz_loadu_ps(lanes, a.scale + nc) : _mm512_set1_ps(a.scale[0]);
        const vf bias = a.bias ? _mm512_maskz_loadu_ps(lanes, a.bias + nc) : _mm512_setzero_ps();
        for (int64_t j = 0; j < rows; ++j) {
          // (float(acc) * xscale) * s + bias, in this order, as bitlinear_epilogue.
          vf v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(r[j]), _mm512_set1_ps(a.xscale[mc + j])), s);
          if (a.bias) v = _mm512_add_ps(v, bias);
          _mm512_mask_storeu_ps(a.y + (mc + j) * N + nc, lanes, v);
        }
      });
}

void amx_matmul_i8(const I8Args& a) {
  if (a.M <= Base::kGemvMaxM) {
    Base::matmul_i8(a);
  } else {
    amx_i8_gemm(a);
  }
}

// =========================================================================
// float: slabs of 32 k, up to three bf16 planes of x.

// Keeps the top 8 significant bits of each float (bf16 by truncation).
inline vi bf16_trunc(vi bits) {
  return _mm512_and_si512(bits, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u)));
}

// The high halves of the 32 floats (a: k 0-15, b: k 16-31) as 32 bf16 in k
// order, i.e. 16 dwords of (k even, k odd).
inline vi bf16_pairs(vi a, vi b) {
  const vi idx = _mm512_setr_epi32(0x00030001, 0x00070005, 0x000B0009, 0x000F000D, 0x00130011, 0x00170015,
                                   0x001B0019, 0x001F001D, 0x00230021, 0x00270025, 0x002B0029, 0x002F002D,
                                   0x00330031, 0x00370035, 0x003B0039, 0x003F003D);
  return _mm512_permutex2var_epi16(a, idx, b);
}

// x as bf16 planes in B layout (x_tile): per tile, slab and plane, 16 rows (k
// pairs) x 16 dwords (rows of x), zero past M and K. Returns the number of
// planes needed (1-3), or 0 when x holds a NaN or an infinity.
int pack_x_bf16(const float* x, int64_t ldx, int64_t M, int64_t K, int64_t ntile, int64_t nslab, uint8_t* xt) {
  // First pass (rows over the threads): which planes are nonzero anywhere
  // (bits of |mid| and |lo| or-ed together), and whether x is finite.
  std::atomic<uint32_t> mid_bits{0}, lo_bits{0}, nonfinite{0};
  parallel_for(0, M, 16, [&](int64_t m0, int64_t m1) {
    vi any_mid = _mm512_setzero_si512(), any_lo = _mm512_setzero_si512(), maxbits = _mm512_setzero_si512();
    const vi abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
    for (int64_t m = m0; m < m1; ++m) {
      const float* row = x + m * ldx;
      for (int64_t k = 0; k < K; k += 16) {
        const vi v = _mm512_castps_si512(_mm512_loadu_ps(row + k)); // K is a multiple of 16
        maxbits = _mm512_max_epu32(maxbits, _mm512_and_si512(v, abs_mask));
        const vf r1 = _mm512_sub_ps(_mm512_castsi512_ps(v), _mm512_castsi512_ps(bf16_trunc(v)));
        const vi mid = bf16_trunc(_mm512_castps_si512(r1));
        const vf r2 = _mm512_sub_ps(r1, _mm512_castsi512_ps(mid));
        any_mid = _mm512_or_si512(any_mid, mid);
        any_lo = _mm512_or_si512(any_lo, _mm512_castps_si512(r2));
      }
    }
    mid_bits.fetch_or(static_cast<uint32_t>(_mm512_reduce_or_epi32(_mm512_and_si512(any_mid, abs_mask))));
    lo_bits.fetch_or(static_cast<uint32_t>(_mm512_reduce_or_epi32(_mm512_and_si512(any_lo, abs_mask))));
    if (_mm512_reduce_max_epu32(maxbits) >= 0x7F800000u) nonfinite.store(1);
  });
  if (nonfinite.load()) return 0;
  const int planes = lo_bits.load() ? 3 : (mid_bits.load() ? 2 : 1);

  parallel_for(0, ntile, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      for (int64_t s = 0; s < nslab; ++s) {
        const int64_t kb = std::min<int64_t>(32, K - s * 32);
        const __mmask16 m0 = first_lanes(kb), m1 = first_lanes(kb - 16 > 0 ? kb - 16 : 0);
        vi p[3][16];
        for (int i = 0; i < 16; ++i) {
          const int64_t m = t * kTileDim + i;
          vi v[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
          if (m < M) {
            const float* src = x + m * ldx + s * 32;
            v[0] = _mm512_castps_si512(_mm512_maskz_loadu_ps(m0, src));
            v[1] = _mm512_castps_si512(_mm512_maskz_loadu_ps(m1, src + 16));
          }
          vi parts[3][2];
          for (int h = 0; h < 2; ++h) {
            parts[0][h] = bf16_trunc(v[h]);
            const vf r1 = _mm512_sub_ps(_mm512_castsi512_ps(v[h]), _mm512_castsi512_ps(parts[0][h]));
            parts[1][h] = bf16_trunc(_mm512_castps_si512(r1));
            parts[2][h] = _mm512_castps_si512(_mm512_sub_ps(r1, _mm512_castsi512_ps(parts[1][h])));
          }
          for (int q = 0; q < planes; ++q) p[q][i] = bf16_pairs(parts[q][0], parts[q][1]);
        }
        for (int q = 0; q < planes; ++q) {
          OpsAvx512Vnni::transpose16(p[q]);
          uint8_t* dst = xt + x_tile(t, s, q, nslab, planes);
          for (int r = 0; r < 16; ++r) _mm512_storeu_si512(dst + r * 64, p[q][r]);
        }
      }
    }
  });
  return planes;
}

// bf16 pair (code0 - 1, code1 - 1) for the nibble code0 | code1 << 2 (code 3
// reads +2, as on every path).
inline vi bf16_pair_table() {
  constexpr uint32_t v[4] = {0xBF80u, 0x0000u, 0x3F80u, 0x4000u}; // -1, 0, 1, 2
  alignas(64) uint32_t t[16];
  for (int i = 0; i < 16; ++i) t[i] = v[i & 3] | (v[i >> 2] << 16);
  return _mm512_load_si512(t);
}

// 32 rows of W from n0 as bf16 A tiles (panel_tile): per slab and half, 16 rows x 32 k.
void decode_panel_bf16(const uint32_t* wq, int64_t KW, int64_t N, int64_t n0, int64_t nslab, uint8_t* panel) {
  const vi table = bf16_pair_table();
  const vi halves = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
  const vi shifts = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28);
  for (int r = 0; r < kPanelRows; ++r) {
    uint8_t* row0 = panel + panel_tile(0, r / kTileDim) + (r % kTileDim) * 64;
    const int64_t n = n0 + r;
    for (int64_t s = 0; s < nslab; ++s) {
      uint8_t* dst = row0 + panel_tile(s, 0);
      if (n >= N) {
        _mm512_storeu_si512(dst, _mm512_setzero_si512());
        continue;
      }
      const uint32_t* w = wq + n * KW + 2 * s;
      const uint32_t lo = w[0], hi = 2 * s + 1 < KW ? w[1] : 0x55555555u; // code 1: weight 0
      const vi words = _mm512_permutexvar_epi32(halves, _mm512_set1_epi64(static_cast<int64_t>(lo | uint64_t{hi} << 32)));
      _mm512_storeu_si512(dst, _mm512_permutexvar_epi32(_mm512_srlv_epi32(words, shifts), table));
    }
  }
}

bool amx_f_gemm(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row, float* y,
                int64_t M, int64_t N, int64_t K) {
  const int64_t KW = K / 16, nslab = ceil_div(K, 32);
  const Blocking blk(M, N);
  uint8_t* xt = scratch(kActs).get<uint8_t>(blk.nstep * 2 * nslab * 3 * kTileBytes);
  const int planes = pack_x_bf16(x, ldx, M, K, blk.nstep * 2, nslab, xt);
  if (planes == 0) return false;
  run_panels<DotBf16>(
      M, N, nslab, planes, xt, [&](int64_t n0, uint8_t* panel) { decode_panel_bf16(wq, KW, N, n0, nslab, panel); },
      [&](const vi (&r)[16], int64_t nc, int64_t mc, __mmask16 lanes, int64_t rows) {
        const vf s = per_row ? _mm512_maskz_loadu_ps(lanes, scale + nc) : _mm512_set1_ps(scale[0]);
        for (int64_t j = 0; j < rows; ++j)
          _mm512_mask_storeu_ps(y + (mc + j) * N + nc, lanes, _mm512_mul_ps(s, _mm512_castsi512_ps(r[j])));
      });
  return true;
}

constexpr KernelTable amx_table() {
  KernelTable t = Base::table();
  t.matmul_t = &Base::matmul_t_with_gemm<amx_f_gemm>;
  t.matmul_i8 = &amx_matmul_i8;
  return t;
}

} // namespace

const KernelTable& table_avx512_amx() {
  static constexpr KernelTable t = amx_table();
  return t;
}

} // namespace bitnet_ext::cpu
