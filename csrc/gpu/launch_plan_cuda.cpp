// Launch plans for MLX's CUDA backend: the shared plans (kernels/*.metal
// through the MSL-on-CUDA shim) with hand-written CUDA kernels
// (csrc/gpu/cuda/kernels/) swapped in where they were measured faster on the
// H200 (bench/results/nvidia-h200-cuda-kernels.md, docs/cuda_backend.md "Kernels").
#include "gpu/launch_plan_cuda.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>

#if defined(BITNET_EXT_CUDA_WGMMA)
#include <cuda_runtime_api.h>
#endif

#include "gpu/launch_plan_cuda_variants.h"
#include "gpu/plan_builders.h"

namespace bitnet_ext::gpu::cuda_plans {

namespace {

using namespace plan_builders;

// ---- tunables (H200 measurements: docs/cuda_backend.md, "Kernels") ---------
// Rows of x per GEMV block (one MMA's 8 columns).
constexpr int64_t kGemvRowsOfX = 8;
// Tensor-core GEMVs up to this M (each 8 rows of x read W again), the tiled
// GEMMs above it: at M = 64 the GEMV was still faster at every measured shape
// (ternary 10.6 vs 48.9 us at 2560x2560, 84 vs 131 us at 17408x5120; bitlinear
// 12.2 vs 32.9 and 57.6 vs 77.6 us).
constexpr int64_t kGemvMaxM = 64;
// Up to this M the quantizer gives each row up to 1024 threads, and the GEMVs use
// the decode row counts below.
constexpr int64_t kDecodeMaxM = 16;
// Blocks wanted per GEMV before taking more rows of W per block (2 per SM of
// the H200's 132): fewer, fatter blocks only when there is work for both.
constexpr int64_t kGemvMinBlocks = 264;
// The fused decode BitLinear (M = 1) keeps xq (K bytes) in shared memory; each
// of its blocks quantizes the whole row again (K divisions, by groups of 16),
// under its first loads of W. The plans take it for every M = 1 product
// (bench/results/cuda-h200.md, "Decode GEMV": kernel timing on the H200, fused
// vs quantize + GEMV, us: 640x2560 3.88 vs 4.95, 2560x2560 4.82 vs 5.65,
// 3840x2560 5.00 vs 5.80, 6912x2560 6.10 vs 6.83, 2560x6912 6.87 vs 8.25;
// slower alone at 13824x2560, 8.70 vs 8.03, and 17408x5120, 15.2 vs 13.8,
// where the quantizing of 432 / 544 blocks shows, but one kernel without the
// temporaries xq, xscale, qsum inside MLX's graph, where the two-kernel
// plan cost ~15 us a call more than its kernels at 17408x5120).
constexpr int64_t kFusedMaxK = 32768;
// Tiles and warps of the fused kernel: the fewer blocks (each quantizes K),
// the less quantizing; more warps share a block's quantizing and its K.
// 1 tile while N and K are both small, else 2; 16 warps up to
// kFusedManyWarpsMaxN rows, 8 up to twice that, then 4 (the measured best at
// each of the shapes above).
constexpr int64_t kFusedOneTileMax = 4096;
constexpr int64_t kFusedManyWarpsMaxN = 4096;

// Threads per row of the quantizer: at most 1024 for a decode row (quant_threads).
constexpr uint32_t kQuantThreadsFewRows = 1024;
constexpr uint32_t kQuantThreads = 256;
// Many rows with K <= kQuantVecMaxK: the quantizer that holds a row in registers, a thread per
// group of 16 (bitlinear_gemv.cu's absmax_quantize_quad_vec, at most 512 threads).
constexpr int64_t kQuantVecMaxK = 8192;
// The shared-memory-decode GEMMs (tensor_core_gemm.cu, variants ternary_gemm / bitlinear_gemm):
// 128 columns of W per block. The plans take the mma GEMMs (mma_tile_for) instead.
constexpr int64_t kGemmBN = 128;

// CUDA's limit on grid.y and grid.z (grid.x takes 2^31 - 1).
constexpr uint32_t kMaxGridYZ = 65535;

bool is_16bit(Dtype d) {
  return d == Dtype::float16 || d == Dtype::bfloat16;
}

void check_k(int64_t K) {
  if (K <= 0 || K % 16 != 0) {
    throw std::invalid_argument("bitnet_ext: K must be a positive multiple of 16");
  }
}

void check_variant(bool ok, const std::string& what) {
  if (!ok) {
    throw std::invalid_argument("bitnet_ext: CUDA kernel variant " + what);
  }
}

void check_grid(const KernelLaunch& k) {
  if (k.grid.x > 0x7FFFFFFFu || k.grid.y > kMaxGridYZ || k.grid.z > kMaxGridYZ) {
    throw std::invalid_argument("bitnet_ext: grid of " + k.name + " too large for one CUDA launch");
  }
}

void push(LaunchPlan& p, const KernelLaunch& k) {
  check_grid(k);
  p.kernels.push_back(k);
}

// 16-row tiles of W per block (all measured on the H200 at the four layer
// shapes). The float GEMV is bound by decoding W (LOP3 + FMA per two
// weights); tiles of a block share each x fragment: up to M = 16, 2 is the
// fastest below N = 16896 and 4 above (17408); past M = 16, 4. The int8 GEMV
// decodes in a quarter of the instructions: 1 tile up to M = 16, then 2.
int ternary_gemv_rows(int64_t M, int64_t N) {
  return M > kDecodeMaxM || N >= int64_t(16) * 4 * kGemvMinBlocks ? 4 : 2;
}
int bitlinear_gemv_rows(int64_t M) {
  return M > kDecodeMaxM ? 2 : 1;
}

// Decode (M <= 8: one block row of x, so a block does the same work as at
// M = 1): tiles and warps from bench/cuda_gemv_sweep.py at the 2B-4T shapes
// (M = 1, bf16; bench/results/nvidia-h200-gemv-sweep.md). A small N gives few
// blocks (640 rows: 40 of 16 rows), which leave most SMs idle and little
// memory in flight; more warps splitting K in each block (8 or 16 instead of
// 4) fix that: k/v 640x2560 ternary 4.52 -> 3.33 us, int8 GEMV 3.6 -> 2.7 us;
// down 2560x6912 ternary 9.13 -> 7.32 us. Warps: the fewest of 4, 8, 16 that
// give the grid at least kDecodeWarps warps (ternary 1280; int8, whose warps
// finish a step sooner, 2048), else 16. Tiles: 1 per block while N is small
// (the more blocks the better), 2 from kDecodeTwoTilesMinN rows.
constexpr int64_t kDecodeMaxRows = 8;
constexpr int64_t kTernaryDecodeWarps = 1280;
constexpr int64_t kBitlinearDecodeWarps = 2048;
constexpr int64_t kTernaryDecodeTwoTilesMinN = 8192;   // 13824x2560: r2 8.1 vs r1 12.5 us
constexpr int64_t kBitlinearDecodeTwoTilesMinN = 16384; // 17408x5120: r2 14.6 vs r1 15.4 us

struct GemvShape {
  int rows;
  int warps;
};

GemvShape decode_gemv(int64_t N, int64_t two_tiles_min_n, int64_t min_warps) {
  const int rows = N >= two_tiles_min_n ? 2 : 1;
  const int64_t blocks = ceil_div(N, 16 * rows);
  int warps = 4;
  while (warps < 16 && blocks * warps < min_warps) {
    warps *= 2;
  }
  return {rows, warps};
}

GemvShape ternary_gemv_shape(int64_t M, int64_t N) {
  if (M <= kDecodeMaxRows) {
    return decode_gemv(N, kTernaryDecodeTwoTilesMinN, kTernaryDecodeWarps);
  }
  return {ternary_gemv_rows(M, N), 4};
}
// Shared-memory ring of W (gemv_w_loads.cuh's gemv_k_loop_async) for the ternary decode GEMV of 2
// tiles and 4 warps from this many bytes of packed W: 17408x5120 (22.3 MB) 18.1 -> 16.5 us on
// the H200; at 13824x2560 (8.8 MB) slower, 8.2 -> 8.9 us.
constexpr int64_t kTernaryRingMinWBytes = int64_t(16) << 20;

GemvShape bitlinear_gemv_shape(int64_t M, int64_t N) {
  if (M <= kDecodeMaxRows) {
    return decode_gemv(N, kBitlinearDecodeTwoTilesMinN, kBitlinearDecodeWarps);
  }
  return {bitlinear_gemv_rows(M), 4};
}
GemvShape fused_gemv_shape(int64_t N, int64_t K) {
  const int rows = N <= kFusedOneTileMax && K <= kFusedOneTileMax ? 1 : 2;
  const int warps = N <= kFusedManyWarpsMaxN ? 16 : N <= 2 * kFusedManyWarpsMaxN ? 8 : 4;
  return {rows, warps};
}

std::string suffix(const char* what, int v) {
  return std::string("_") + what + std::to_string(v);
}

// The 4-warp GEMVs keep their original names; 8 and 16 warps add _w<warps>.
std::string warps_suffix(int warps) {
  return warps == 4 ? std::string() : suffix("w", warps);
}

// How a decode GEMV keeps W in flight (gemv_w_loads.cuh's gemv_k_loop): one step ahead in
// registers (async_stages 0, the original kernels, no suffix), or async_stages steps in a
// shared-memory ring (_a<stages>), instantiated (ternary_gemv.cu, bitlinear_gemv.cu) for 8 stages
// of rows 1 and 4 warps, 4 of rows 2 and 4 warps, 4 of rows 1 and 8 warps.
std::string ring_suffix(int rows, int warps, int async_stages, const std::string& what) {
  check_variant(async_stages == 0 || (async_stages == 8 && rows == 1 && warps == 4) ||
                    (async_stages == 4 && ((rows == 2 && warps == 4) || (rows == 1 && warps == 8))),
                what + ": shared-memory ring of 8 stages (rows 1, 4 warps) or 4 (rows 2, 4 warps; rows 1, 8 warps)");
  return async_stages == 0 ? std::string() : suffix("a", async_stages);
}

// Quantizer threads per row: few rows (decode) get one thread per 4 codes
// (bitlinear_gemv.cu's units), a multiple of 32 up to 1024; many rows 256.
uint32_t quant_threads(int64_t M, int64_t K) {
  if (M > kDecodeMaxM) {
    return kQuantThreads;
  }
  const int64_t t = (K / 4 + 31) / 32 * 32;
  return uint32_t(t < 32 ? 32 : t > kQuantThreadsFewRows ? kQuantThreadsFewRows : t);
}

// Without a bias, the bias slot gets the scale buffer again (never read).
int bias_slot(const BitLinearArgs& a) {
  return a.has_bias ? 3 : 2;
}

// The temporaries xq (quad order), xscale, qsum and cuda_absmax_quantize_quad_<T> writing them.
LaunchPlan quad_quantize(const BitLinearArgs& a) {
  LaunchPlan p;
  p.temporaries = {
      {"xq", size_t(a.M) * size_t(a.K), false},
      {"xscale", size_t(a.M) * sizeof(float), false},
      {"qsum", size_t(a.M) * sizeof(int32_t), false},
  };
  KernelLaunch q;
  const bool vec = a.M > kDecodeMaxM && a.K <= kQuantVecMaxK;
  q.name = std::string(vec ? "cuda_absmax_quantize_quad_vec_" : "cuda_absmax_quantize_quad_") + dtype_name(a.dtype);
  q.grid = {ceil_div(a.M, 1), 1, 1};
  q.group = {vec ? uint32_t((a.K / 16 + 31) / 32 * 32) : quant_threads(a.M, a.K), 1, 1};
  q.buffers = {in(0, 0), tmp(0, 1), tmp(1, 2), tmp(2, 3)};
  q.constants = {ci("K", 4, a.K), cf("eps", 5, a.eps)};
  push(p, q);
  return p;
}

// The slots of a kernel reading quad_quantize's temporaries (the int8 GEMV's and GEMM's): 0 xq,
// 1 xscale, 2 wq, 3 scale, 4 bias, 5 y, 11 qsum; 6 M, 7 N, 8 K, 9 per_row, 10 has_bias.
KernelLaunch quad_consumer(const BitLinearArgs& a, const std::string& name) {
  KernelLaunch k;
  k.name = name;
  k.buffers = {tmp(0, 0), tmp(1, 1), in(1, 2), in(2, 3), in(bias_slot(a), 4), out(0, 5), tmp(2, 11)};
  k.constants = {ci("M", 6, a.M), ci("N", 7, a.N), ci("K", 8, a.K), ci("per_row", 9, a.per_row_scale),
                 ci("has_bias", 10, a.has_bias)};
  return k;
}

// The W-in-registers GEMMs (kernels/mma_gemm.cu): BM x BN tiles of WM x WN
// warps, a ring of `stages` stages of 128 bytes of x per row and the packed
// W (32 bytes per row for int8, 16 for 16-bit x) in dynamic shared memory.
// blocks: how many fit on one multiprocessor (registers and shared memory, ptxas -v).
struct MmaTile {
  int bm, bn, wm, wn, stages, blocks;
};
// Indexed by the "mma_t<i>" variants; mma_gemm.cu instantiates the same list.
// (Measured and dropped, bench/results/cuda-h200-gemm-m512.md: 128 x 128 of 8 warps, 128 x 256 and
// 256 x 128 of 8 warps of 64 x 64, 5 and 6 stages: slower, or within 2%.)
constexpr MmaTile kMmaTiles[] = {{128, 128, 2, 2, 4, 2}, {64, 128, 2, 2, 4, 3}};
// Split K when the tiles fill at most half of one wave (the H200's 132 multiprocessors times
// the tile's blocks each, "slots"): each tile gets min(slots / tiles, sqrt(slabs),
// slabs / kMmaMinSplitSlabs, kMmaMaxSplits) blocks (the last one sums the splits: about one
// memory round trip per split, hence the square root). Measured on the H200 (sequential
// launches): 2560x6912 M = 512 bitlinear 60 -> 48 us, ternary_matmul 98 -> 69 us (3 splits of
// 18 / 36 slabs); with fewer than 16 slabs per split no gain (2560x2560 M = 512 bitlinear, 7
// slabs: 29.0 vs 28.7 us). Splitting only the tail past whole waves measured slower
// (17408x5120 M = 512: 185 vs 165 us), so full grids are not split. The plans split only the
// 128 x 128 tile's grids (M > kMmaSmallTileMaxM): at M = 128 every split plan measured slower
// than the unsplit old GEMM in bench_cuda.py's MLX timing (32 independent calls per eval, which
// MLX's graph overlaps; e.g. bitlinear 6912x2560 57 vs 33 us), while the splits at M = 512 were
// faster there too (2560x6912: bitlinear 78 -> 59, ternary_matmul 88 -> 69 us).
constexpr int64_t kMultiprocessors = 132;
constexpr int64_t kMmaMinSplitSlabs = 16;
constexpr int64_t kMmaMaxSplits = 16;
constexpr int kMmaTileCount = int(sizeof(kMmaTiles) / sizeof(kMmaTiles[0]));
constexpr size_t kMmaRowBytes = 128;

const MmaTile& mma_tile(int i) {
  check_variant(i >= 0 && i < kMmaTileCount, "mma: tile index 0.." + std::to_string(kMmaTileCount - 1));
  return kMmaTiles[i];
}

// Grid and split of K for `tiles` output tiles of `tile_elems` sums each (mma_launch, wgmma_launch):
// buffers `slot` (partial sums) and slot + 1 (counters), constants slot + 2 (whole tiles), slot + 3
// (splits); the two temporaries are appended to the plan when the tiles are split.
int64_t split_ways(int64_t tiles, int64_t slots, int64_t slabs) {
  if (2 * tiles > slots) {
    return 1;
  }
  int64_t root = 1;
  while ((root + 1) * (root + 1) <= slabs) {
    ++root;
  }
  return std::max<int64_t>(1, std::min({slots / tiles, root, slabs / kMmaMinSplitSlabs, kMmaMaxSplits}));
}

void split_tiles(LaunchPlan& p, KernelLaunch& k, int64_t tiles, int64_t slots, int64_t slabs, size_t tile_elems,
                 int slot, bool split) {
  const int64_t splits = split ? split_ways(tiles, slots, slabs) : 1;
  const int64_t dp = splits > 1 ? 0 : tiles;
  k.grid = {uint32_t(dp + (tiles - dp) * splits), 1, 1};
  if (splits > 1) {
    k.name += "_split";
    const int tmp0 = int(p.temporaries.size());
    p.temporaries.push_back({"partial", size_t(tiles - dp) * splits * tile_elems * 4, false});
    p.temporaries.push_back({"counters", size_t(tiles - dp) * 4, true});
    k.buffers.push_back(tmp(tmp0, slot));
    k.buffers.push_back(tmp(tmp0 + 1, slot + 1));
  }
  k.constants.push_back(ci("tiles", slot + 2, dp));
  k.constants.push_back(ci("splits", slot + 3, splits));
}

// Grid, block, ring size and split of an mma kernel on tile t (x elements of `x_bytes` bytes):
// split_tiles' slots from `slot`.
void mma_launch(LaunchPlan& p, KernelLaunch& k, const MmaTile& t, int64_t M, int64_t N, int64_t K, size_t x_bytes,
                int slot, bool split) {
  k.name += suffix("bm", t.bm) + suffix("bn", t.bn) + suffix("w", t.wm * t.wn) + suffix("s", t.stages);
  k.group = {uint32_t(32 * t.wm * t.wn), 1, 1};
  const size_t w_bytes = kMmaRowBytes / x_bytes / 4;
  k.threadgroup_memory = {{0, size_t(t.stages) * (size_t(t.bm) * kMmaRowBytes + size_t(t.bn) * w_bytes)}};
  const int64_t slabs = ceil_div(K * int64_t(x_bytes), int64_t(kMmaRowBytes));
  split_tiles(p, k, ceil_div(M, t.bm) * ceil_div(N, t.bn), kMultiprocessors * t.blocks, slabs, size_t(t.bm) * t.bn,
              slot, split);
}

// The mma tile for M rows of x (bench/results/cuda-h200-gemm-m512.md): 64 x 128 (4 warps of
// 32 x 64, 3 blocks per multiprocessor) up to kMmaSmallTileMaxM, 128 x 128 (4 warps of 64 x 64,
// 2 per multiprocessor) above. Both beat the shared-memory-decode GEMMs (cuda_*_gemm_*) at every
// measured shape from M = 128 (e.g. bitlinear 17408x5120 M = 512: 165 vs 254 us).
constexpr int64_t kMmaSmallTileMaxM = 256;
constexpr int kMmaSmallTile = 1;
constexpr int kMmaBigTile = 0;

int mma_tile_for(int64_t M) {
  return M <= kMmaSmallTileMaxM ? kMmaSmallTile : kMmaBigTile;
}

// The wgmma GEMMs (kernels/wgmma_gemm.cuh, sm_90a only): 128 rows of W (2 warpgroups of 64) times
// bx rows of x per block, a ring of `stages` stages (128 bytes of x per row, packed W) plus 1024
// bytes to align it; `blocks` per multiprocessor (wgmma_gemm.cuh's WgTile). Indexed by the
// "wgmma_t<i>" variants; the wgmma_gemm_bx<bx>_s<stages>.cu files instantiate the same list.
struct WgmmaTile {
  int bx, stages, blocks;
};
// (Measured and dropped, bench/results/cuda-h200-wgmma.md: 256 rows in 5 stages, 128 rows in 7: no
// faster.)
constexpr WgmmaTile kWgmmaTiles[] = {{256, 4, 1}, {128, 5, 1}, {128, 4, 2}};
constexpr int kWgmmaTileCount = int(sizeof(kWgmmaTiles) / sizeof(kWgmmaTiles[0]));
constexpr int64_t kWgmmaWRows = 128;

const WgmmaTile& wgmma_tile(int i) {
  check_variant(i >= 0 && i < kWgmmaTileCount, "wgmma: tile index 0.." + std::to_string(kWgmmaTileCount - 1));
  return kWgmmaTiles[i];
}

void wgmma_launch(LaunchPlan& p, KernelLaunch& k, const WgmmaTile& t, int64_t M, int64_t N, int64_t K,
                  size_t x_bytes, int slot, bool split) {
  k.name += suffix("bx", t.bx) + suffix("s", t.stages);
  k.group = {256, 1, 1};
  const size_t w_bytes = kMmaRowBytes / x_bytes / 4;
  k.threadgroup_memory = {{0, size_t(t.stages) * (size_t(t.bx) * kMmaRowBytes + kWgmmaWRows * w_bytes) + 1024}};
  const int64_t slabs = ceil_div(K * int64_t(x_bytes), int64_t(kMmaRowBytes));
  split_tiles(p, k, ceil_div(M, t.bx) * ceil_div(N, kWgmmaWRows), kMultiprocessors * t.blocks, slabs,
              size_t(t.bx) * kWgmmaWRows, slot, split);
}

// From this M the plans take the wgmma GEMMs where available: at M = 128 they beat the mma GEMM
// (64 x 128 tile) at every measured shape on the H200 (bitlinear 2560x2560 17.8 -> 15.1 us,
// 17408x5120 59.5 -> 47.1; ternary_matmul 26.0 -> 21.3, 113 -> 80). M = 65 .. 127 was not measured.
constexpr int64_t kWgmmaMinM = 128;

// The wgmma tile (bench/results/cuda-h200-wgmma.md, kernel timing on the H200): the 2-blocks tile
// (2) when its grid splits K 3 ways or more (few tiles, long K: 2560x6912 M = 512 bitlinear 36.5 ->
// 34.9 us, ternary_matmul 53.0 -> 44.4 us; M = 128 31.7 -> 22.5, 53.1 -> 21.3; 2 ways of 20 slabs
// were slower: 2560x2560 M = 512 ternary 21.6 -> 28.6 us); else the fewer waves of blocks, a
// 256-row tile (0) costing 2 and a 128-row one (1) 1.3 (the larger wgmma is the more efficient:
// 6912x2560 M = 2048, 432 vs 864 tiles, 4 vs 7 waves, bitlinear 85 vs 97 us).
int wgmma_tile_for(int64_t M, int64_t N, int64_t K, size_t x_bytes) {
  const int64_t slabs = ceil_div(K * int64_t(x_bytes), int64_t(kMmaRowBytes));
  const int64_t tiles128 = ceil_div(M, 128) * ceil_div(N, kWgmmaWRows);
  if (split_ways(tiles128, 2 * kMultiprocessors, slabs) >= 3) {
    return 2;
  }
  const int64_t waves256 = ceil_div(ceil_div(M, 256) * ceil_div(N, kWgmmaWRows), kMultiprocessors);
  const int64_t waves128 = ceil_div(tiles128, kMultiprocessors);
  return 13 * waves128 < 20 * waves256 ? 1 : 0;
}

// The tiled GEMMs' plans (mma and wgmma: the same slots, gemm_common.cuh's GemmArgs):
// cuda_<op>_<family>_<T>, grid, block, ring and split set by launch(plan, kernel).
template <class Launch>
LaunchPlan ternary_tiled(const TernaryMatmulArgs& a, const std::string& family, Launch&& launch) {
  check_k(a.K);
  check_variant(a.transpose && is_16bit(a.dtype), "ternary_" + family + ": transpose=True, float16/bfloat16");
  LaunchPlan p;
  if (a.M <= 0 || a.N <= 0) {
    return p;
  }
  KernelLaunch k;
  k.name = "cuda_ternary_" + family + "_" + dtype_name(a.dtype);
  k.buffers = {in(0, 0), in(1, 1), in(2, 2), out(0, 3)};
  k.constants = {ci("M", 4, a.M), ci("N", 5, a.N), ci("K", 6, a.K), ci("per_row", 7, a.per_row_scale)};
  launch(p, k);
  push(p, k);
  return p;
}

template <class Launch>
LaunchPlan bitlinear_tiled(const BitLinearArgs& a, const std::string& family, Launch&& launch) {
  check_k(a.K);
  if (a.M <= 0 || a.N <= 0) {
    return {};
  }
  LaunchPlan p = quad_quantize(a);
  KernelLaunch k = quad_consumer(a, "cuda_bitlinear_" + family + "_" + dtype_name(a.dtype));
  launch(p, k);
  push(p, k);
  return p;
}

} // namespace

namespace variants {

// Whether this process's GPU runs the wgmma kernels: the build has sm_90a code
// (cmake/cuda_kernels.cmake defines BITNET_EXT_CUDA_WGMMA) and the current
// device is compute capability 9.0; BITNET_EXT_CUDA_WGMMA=0 turns them off
// (the mma.sync GEMMs then serve every M, as on other GPUs).
bool wgmma_available() {
#if defined(BITNET_EXT_CUDA_WGMMA)
  static const bool ok = [] {
    const char* env = std::getenv("BITNET_EXT_CUDA_WGMMA");
    int dev = 0, major = 0, minor = 0;
    if ((env && env[0] == '0') || cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
      return false;
    }
    return major == 9 && minor == 0;
  }();
  return ok;
#else
  return false;
#endif
}

LaunchPlan ternary_mma(const TernaryMatmulArgs& a, int tile, bool split) {
  const MmaTile& t = mma_tile(tile);
  return ternary_tiled(a, "mma",
                       [&](LaunchPlan& p, KernelLaunch& k) { mma_launch(p, k, t, a.M, a.N, a.K, 2, 8, split); });
}

LaunchPlan bitlinear_mma(const BitLinearArgs& a, int tile, bool split) {
  const MmaTile& t = mma_tile(tile);
  return bitlinear_tiled(a, "mma",
                         [&](LaunchPlan& p, KernelLaunch& k) { mma_launch(p, k, t, a.M, a.N, a.K, 1, 12, split); });
}

LaunchPlan ternary_wgmma(const TernaryMatmulArgs& a, int tile, bool split) {
  const WgmmaTile& t = wgmma_tile(tile);
  return ternary_tiled(a, "wgmma",
                       [&](LaunchPlan& p, KernelLaunch& k) { wgmma_launch(p, k, t, a.M, a.N, a.K, 2, 8, split); });
}

LaunchPlan bitlinear_wgmma(const BitLinearArgs& a, int tile, bool split) {
  const WgmmaTile& t = wgmma_tile(tile);
  return bitlinear_tiled(a, "wgmma",
                         [&](LaunchPlan& p, KernelLaunch& k) { wgmma_launch(p, k, t, a.M, a.N, a.K, 1, 12, split); });
}

LaunchPlan ternary_gemv(const TernaryMatmulArgs& a, int rows, int warps, int async_stages) {
  check_k(a.K);
  check_variant(a.transpose && is_16bit(a.dtype) && (rows == 1 || rows == 2 || rows == 4),
                "ternary_gemv: transpose=True, float16/bfloat16, rows 1/2/4");
  check_variant(warps == 4 || warps == 8 || warps == 16, "ternary_gemv: warps 4/8/16");
  const std::string pipe = ring_suffix(rows, warps, async_stages, "ternary_gemv");
  LaunchPlan p;
  if (a.M <= 0 || a.N <= 0) {
    return p;
  }
  KernelLaunch k;
  k.name = std::string("cuda_ternary_gemv_") + dtype_name(a.dtype) + suffix("r", rows) + warps_suffix(warps) + pipe;
  k.grid = {ceil_div(a.N, 16 * rows), ceil_div(a.M, kGemvRowsOfX), 1};
  k.group = {uint32_t(32 * warps), 1, 1};
  k.buffers = {in(0, 0), in(1, 1), in(2, 2), out(0, 3)};
  k.constants = {ci("M", 4, a.M), ci("N", 5, a.N), ci("K", 6, a.K), ci("per_row", 7, a.per_row_scale)};
  push(p, k);
  return p;
}

LaunchPlan ternary_gemm(const TernaryMatmulArgs& a, int bm, int warps) {
  check_k(a.K);
  check_variant(a.transpose && is_16bit(a.dtype) && (bm == 64 || bm == 128) && (warps == 4 || warps == 8),
                "ternary_gemm: transpose=True, float16/bfloat16, bm 64/128, warps 4/8");
  LaunchPlan p;
  if (a.M <= 0 || a.N <= 0) {
    return p;
  }
  KernelLaunch k;
  k.name = std::string("cuda_ternary_gemm_") + dtype_name(a.dtype) + suffix("bm", bm) + suffix("w", warps);
  k.grid = {ceil_div(a.N, kGemmBN), ceil_div(a.M, bm), 1};
  k.group = {uint32_t(32 * warps), 1, 1};
  k.buffers = {in(0, 0), in(1, 1), in(2, 2), out(0, 3)};
  k.constants = {ci("M", 4, a.M), ci("N", 5, a.N), ci("K", 6, a.K), ci("per_row", 7, a.per_row_scale)};
  push(p, k);
  return p;
}

LaunchPlan bitlinear_gemv(const BitLinearArgs& a, int rows, bool fused, int warps, int async_stages) {
  check_k(a.K);
  check_variant(rows == 1 || rows == 2 || rows == 4, "bitlinear_gemv: rows 1/2/4");
  check_variant(warps == 4 || warps == 8 || warps == 16, "bitlinear_gemv: warps 4/8/16");
  check_variant(!fused || (a.M <= 1 && a.K <= kFusedMaxK), "bitlinear fused: M = 1, K <= 32768");
  const std::string pipe = ring_suffix(rows, warps, async_stages, "bitlinear_gemv");
  LaunchPlan p;
  if (a.M <= 0 || a.N <= 0) {
    return p;
  }
  const std::string dt = dtype_name(a.dtype);
  const int bias = bias_slot(a);
  if (fused) {
    KernelLaunch k;
    k.name = "cuda_bitlinear_fused_" + dt + suffix("r", rows) + warps_suffix(warps) + pipe;
    k.grid = {ceil_div(a.N, 16 * rows), 1, 1};
    k.group = {uint32_t(32 * warps), 1, 1};
    k.buffers = {in(0, 0), in(1, 1), in(2, 2), in(bias, 3), out(0, 4)};
    k.constants = {ci("N", 5, a.N), ci("K", 6, a.K), ci("per_row", 7, a.per_row_scale),
                   ci("has_bias", 8, a.has_bias), cf("eps", 9, a.eps)};
    k.threadgroup_memory = {{0, size_t(a.K)}};
    push(p, k);
    return p;
  }
  p = quad_quantize(a);
  KernelLaunch k = quad_consumer(a, "cuda_bitlinear_gemv_" + dt + suffix("r", rows) + warps_suffix(warps) + pipe);
  k.grid = {ceil_div(a.N, 16 * rows), ceil_div(a.M, kGemvRowsOfX), 1};
  k.group = {uint32_t(32 * warps), 1, 1};
  push(p, k);
  return p;
}

LaunchPlan bitlinear_gemm(const BitLinearArgs& a, int bm, int warps) {
  check_k(a.K);
  check_variant((bm == 64 || bm == 128) && (warps == 4 || warps == 8), "bitlinear_gemm: bm 64/128, warps 4/8");
  if (a.M <= 0 || a.N <= 0) {
    return {};
  }
  // The shared plan's unfused path: absmax_quantize_<T> into the temporaries
  // xq (natural order) and xscale, then its GEMM, which is swapped here.
  BitLinearArgs unfused = a;
  unfused.allow_fused = false;
  LaunchPlan p = gpu::plan_bitlinear(unfused);
  KernelLaunch& k = p.kernels.back();
  k.name = std::string("cuda_bitlinear_gemm_") + dtype_name(a.dtype) + suffix("bm", bm) + suffix("w", warps);
  k.grid = {ceil_div(a.N, kGemmBN), ceil_div(a.M, bm), 1};
  k.group = {uint32_t(32 * warps), 1, 1};
  k.threadgroup_memory.clear();
  check_grid(k);
  return p;
}

} // namespace variants

LaunchPlan plan_ternary_matmul(const TernaryMatmulArgs& a) {
  // float32 activations and the transposed product (the VJP) keep the shared
  // kernels: the tensor-core paths take 16-bit x (tf32 would not meet the
  // float32 accumulation tolerance).
  if (!a.transpose || !is_16bit(a.dtype) || a.M <= 0 || a.N <= 0) {
    return gpu::plan_ternary_matmul(a);
  }
  if (a.M <= kGemvMaxM) {
    const GemvShape g = ternary_gemv_shape(a.M, a.N);
    const bool ring = a.M <= kDecodeMaxRows && g.rows == 2 && g.warps == 4 && a.N * a.K / 4 >= kTernaryRingMinWBytes;
    return variants::ternary_gemv(a, g.rows, g.warps, ring ? 4 : 0);
  }
  if (a.M >= kWgmmaMinM && variants::wgmma_available()) {
    return variants::ternary_wgmma(a, wgmma_tile_for(a.M, a.N, a.K, 2));
  }
  const int tile = mma_tile_for(a.M);
  return variants::ternary_mma(a, tile, tile == kMmaBigTile);
}

LaunchPlan plan_bitlinear(const BitLinearArgs& a) {
  if (a.M <= 0 || a.N <= 0) {
    return gpu::plan_bitlinear(a);
  }
  if (a.M <= kGemvMaxM) {
    if (a.M == 1 && a.K <= kFusedMaxK && a.allow_fused) {
      const GemvShape f = fused_gemv_shape(a.N, a.K);
      return variants::bitlinear_gemv(a, f.rows, true, f.warps);
    }
    const GemvShape g = bitlinear_gemv_shape(a.M, a.N);
    return variants::bitlinear_gemv(a, g.rows, false, g.warps);
  }
  if (a.M >= kWgmmaMinM && variants::wgmma_available()) {
    return variants::bitlinear_wgmma(a, wgmma_tile_for(a.M, a.N, a.K, 1));
  }
  const int tile = mma_tile_for(a.M);
  return variants::bitlinear_mma(a, tile, tile == kMmaBigTile);
}

LaunchPlan plan_absmax_quantize(int64_t M, int64_t K, Dtype dtype, float eps) {
  return gpu::plan_absmax_quantize(M, K, dtype, eps);
}
LaunchPlan plan_absmean_quantize(int64_t N, int64_t K, Dtype dtype, bool per_row, float eps) {
  return gpu::plan_absmean_quantize(N, K, dtype, per_row, eps);
}
LaunchPlan plan_pack(int64_t N, int64_t K) {
  return gpu::plan_pack(N, K);
}
LaunchPlan plan_unpack(int64_t N, int64_t K) {
  return gpu::plan_unpack(N, K);
}
LaunchPlan plan_dequantize(int64_t N, int64_t K, Dtype dtype, bool per_row_scale) {
  return gpu::plan_dequantize(N, K, dtype, per_row_scale);
}

} // namespace bitnet_ext::gpu::cuda_plans
