// Prefill GEMMs with W decoded in registers, y = x @ (diag(s) W).T:
//
//   cuda_ternary_mma_<T>_<tile>    T = float16 / bfloat16: x in T, mma.m16n8k16, float32 accumulation;
//                                  y = T(s(n) * acc)
//   cuda_bitlinear_mma_<T>_<tile>  xq int8 in quad order (absmax_quantize_quad_<T>, with qsum),
//                                  mma.m16n8k32.s8 on W's codes 0..3, exact int32:
//                                  acc = sum xq code - qsum; BitLinear's epilogue
//   <tile> = bm<BM>_bn<BN>_w<warps>_s<stages>[_split] (_split: K split over blocks, block_work)
//
// Block tile BM x BN, WM x WN warps (warp tile BM/WM x BN/WN), K in stages of
// 128 bytes of x per row (128 int8 or 64 16-bit k) and the matching packed W
// (32 or 16 bytes per row: W is read once per block, 2 bits a weight), both
// by cp.async into a ring of S stages in dynamic shared memory (the plan gives
// its size: Tile::smem_bytes). One barrier per stage: wait for stage kb,
// barrier, request stage kb + S - 1 into the slot stage kb - 1 left, multiply
// stage kb. No decoded copy of W: each warp turns the packed words of its
// columns into B fragments (ternary_mma.cuh's layout), which fixes which k
// each MMA k-slot holds; x's fragments follow that order:
//   int8: a lane's B register is one LOP3 of a word (codes t, t + 4, t + 8,
//         t + 12 in its bytes): xq's quad order holds x in that order already.
//   16-bit: b0 = (W[2t], W[2t + 8]), b1 = (W[2t + 1], W[2t + 9]) of a word
//         (code - 1 by the magic-number LOP3 + FMA), so the x pairs from
//         ldmatrix are regrouped by two PRMTs: (x[2t], x[2t + 8]), (x[2t + 1], x[2t + 9]).
// x rows are 128 bytes with the 16-byte chunks XOR-swizzled by row % 8, so
// ldmatrix reads 8 rows of one chunk column without bank conflicts.
#include "kernel_args.cuh"
#include <type_traits>

#include "ternary_mma.cuh"

namespace bitnet_cuda {
namespace {

constexpr int kRowBytes = 128;

template <class E>
constexpr bool kInt8 = std::is_same_v<E, int8_t>;
// Packed W bytes per row per stage (kRowBytes / sizeof(E) weights of 2 bits).
template <class E>
constexpr int kWBytes = kRowBytes / int(sizeof(E)) / 4;

__device__ __forceinline__ int swizzle128(int row, int chunk) {
  return row * kRowBytes + ((chunk ^ (row & 7)) << 4);
}

template <int BM_, int BN_, int WM_, int WN_, int S_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, WM = WM_, WN = WN_, S = S_;
  static constexpr int kThreads = 32 * WM * WN;
  static constexpr int TM = BM / WM, TN = BN / WN, MT = TM / 16, NT = TN / 8;
  static_assert(TM % 16 == 0 && TN % 8 == 0 && S >= 2, "warp tile of whole m16 x n8 MMAs");
  template <class E>
  static constexpr int stage_bytes() {
    return BM * kRowBytes + BN * kWBytes<E>;
  }
  template <class E>
  static constexpr int smem_bytes() {
    return S * stage_bytes<E>();
  }
};

struct MmaEpilogue {
  const float* scale;
  const float* xscale; // bitlinear only
  const int* qsum;     // bitlinear only
  const float* bias;
  int per_row, has_bias;
};

template <class T>
__device__ __forceinline__ void store2(T* p, T a, T b) {
  if constexpr (sizeof(T) == 2) {
    const uint32_t lo = *reinterpret_cast<const uint16_t*>(&a), hi = *reinterpret_cast<const uint16_t*>(&b);
    *reinterpret_cast<uint32_t*>(p) = lo | (hi << 16);
  } else {
    *reinterpret_cast<float2*>(p) = make_float2(a, b);
  }
}

// A: M x K elements of E (row stride K); wq: packed W (N x K/16 words).
// AsyncA / AsyncW: cp.async (16-byte aligned rows of x; W rows 16-byte aligned
// and K % 64 == 0); otherwise plain loads into the same ring.
// What one block computes. Blocks 0 .. dp - 1 each own a whole tile (tile =
// block); the rest split each remaining tile's K range `splits` ways: they store
// their partial sums to `partial` (per split tile, per split, in fragment
// order), and the last of a tile's blocks to finish (counter[tile - dp], which
// it resets) sums the splits in order (deterministic) and stores y. Tiles go
// row tile fastest, so the blocks running at once share W's columns.
template <class Acc>
struct Work {
  int m0, n0, slab0, slab1; // output tile origin, this block's slabs of K
  int split, splits, st;    // st: index among the split tiles
  Acc* partial;
  int* counter;
};

template <class Acc, class Tl, bool Split>
__device__ __forceinline__ Work<Acc> block_work(int M, int slabs, int dp, int splits, Acc* partial, int* counter) {
  const int b = blockIdx.x;
  int tile = b, split = 0, n = 1;
  if (Split && b >= dp) {
    tile = dp + (b - dp) / splits;
    split = (b - dp) % splits;
    n = splits;
  }
  const int tiles_m = (M + Tl::BM - 1) / Tl::BM;
  const int per = (slabs + n - 1) / n;
  return {(tile % tiles_m) * Tl::BM, (tile / tiles_m) * Tl::BN, min(slabs, split * per), min(slabs, (split + 1) * per),
          split, n, tile - dp, partial, counter};
}

template <class E, class T, class Tl, bool AsyncA, bool AsyncW, bool Split, class Acc>
__device__ __forceinline__ void mma_gemm_body(
    const E* A, const uint32_t* wq, T* y, int M, int N, int K, const MmaEpilogue& ep, uint8_t* smem,
    const Work<Acc>& work) {
  constexpr int BM = Tl::BM, BN = Tl::BN, WN = Tl::WN, S = Tl::S;
  constexpr int TM = Tl::TM, TN = Tl::TN, MT = Tl::MT, NT = Tl::NT, kThreads = Tl::kThreads;
  constexpr int WB = kWBytes<E>;
  constexpr int kWords = WB / 4; // words of a W row per stage
  constexpr int kAChunks = BM * (kRowBytes / 16);
  constexpr int kWChunks = BN * WB / 16;
  constexpr int kStage = Tl::template stage_bytes<E>();
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / WN, wn = warp % WN;
  const int g = lane / 4, t = lane % 4;
  const int m0 = work.m0, n0 = work.n0;
  const int words = K / 16;
  const int kbytes = K * int(sizeof(E));
  const int slab0 = work.slab0, slabs = work.slab1 - work.slab0;

  auto load = [&](int rel, int stage) {
    const int slab = slab0 + rel;
    uint8_t* sa = smem + stage * kStage;
#pragma unroll
    for (int i = 0; i < (kAChunks + kThreads - 1) / kThreads; ++i) {
      const int c = tid + i * kThreads;
      if (kAChunks % kThreads == 0 || c < kAChunks) {
        const int row = c / 8, chunk = c % 8;
        const int kb = slab * kRowBytes + chunk * 16;
        const bool ok = m0 + row < M && kb < kbytes;
        const uint8_t* src = reinterpret_cast<const uint8_t*>(A) + (ok ? size_t(m0 + row) * kbytes + kb : 0);
        copy_x_chunk<AsyncA>(sa + swizzle128(row, chunk), src, ok);
      }
    }
    uint8_t* sw = sa + BM * kRowBytes;
#pragma unroll
    for (int i = 0; i < (kWChunks + kThreads - 1) / kThreads; ++i) {
      const int c = tid + i * kThreads;
      if (kWChunks % kThreads == 0 || c < kWChunks) {
        const int row = c / (WB / 16), part = c % (WB / 16);
        const int w0 = slab * kWords + part * 4;
        const int n = n0 + row < N ? max(0, min(4, words - w0)) : 0; // words inside K (0 past N)
        const uint32_t* src = n > 0 ? wq + size_t(n0 + row) * words + w0 : wq;
        uint8_t* dst = sw + row * WB + part * 16;
        if constexpr (AsyncW) {
          cp_async_16(dst, src, 4 * n);
        } else {
          uint32_t v[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            v[j] = j < n ? src[j] : 0u;
          }
          *reinterpret_cast<uint4*>(dst) = make_uint4(v[0], v[1], v[2], v[3]);
        }
      }
    }
  };

  static_assert(std::is_same_v<Acc, std::conditional_t<kInt8<E>, int, float>>, "int32 or float32 sums");
  Acc acc[MT][NT][4];
  zero_fragments(acc);
  cp_async_prologue<S>(slabs, [&](int s) { load(s, s); });

  const int a_row = wm * TM + lane % 16;
  const int w_row = wn * TN + g;
  for (int kb = 0; kb < slabs; ++kb) {
    cp_async_wait<S - 2>(); // this thread's copies of stage kb have landed
    __syncthreads();        // everyone's have, and stage kb - 1 is free
    const int next = kb + S - 1;
    if (next < slabs) {
      load(next, next % S);
    }
    cp_async_commit();

    const uint8_t* sa = smem + (kb % S) * kStage;
    const uint8_t* sw = sa + BM * kRowBytes;
#pragma unroll
    for (int ks = 0; ks < kRowBytes / 32; ++ks) {
      uint32_t af[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        ldmatrix_x4(af[mt], sa + swizzle128(a_row + mt * 16, 2 * ks + lane / 16));
        if constexpr (!kInt8<E>) {
          const uint32_t a0 = prmt(af[mt][0], af[mt][2], 0x5410), a2 = prmt(af[mt][0], af[mt][2], 0x7632);
          const uint32_t a1 = prmt(af[mt][1], af[mt][3], 0x5410), a3 = prmt(af[mt][1], af[mt][3], 0x7632);
          af[mt][0] = a0, af[mt][1] = a1, af[mt][2] = a2, af[mt][3] = a3;
        }
      }
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const uint8_t* wrow = sw + (w_row + nt * 8) * WB;
        uint32_t b0, b1;
        if constexpr (kInt8<E>) {
          const uint2 w = *reinterpret_cast<const uint2*>(wrow + 8 * ks);
          b0 = (w.x >> (2 * t)) & 0x03030303u;
          b1 = (w.y >> (2 * t)) & 0x03030303u;
        } else {
          const uint32_t h = *reinterpret_cast<const uint32_t*>(wrow + 4 * ks) >> (4 * t);
          if constexpr (std::is_same_v<E, __half>) {
            b0 = fma_f16x2(lop3_and_or(h, 0x00030003u, 0x64006400u), pair_bits(1.0, 10, 15),
                           pair_bits(-1025.0, 10, 15));
            b1 = fma_f16x2(lop3_and_or(h, 0x000C000Cu, 0x64006400u), pair_bits(0.25, 10, 15),
                           pair_bits(-257.0, 10, 15));
          } else {
            b0 = fma_bf16x2(lop3_and_or(h, 0x00030003u, 0x43004300u), pair_bits(1.0, 7, 127),
                            pair_bits(-129.0, 7, 127));
            b1 = fma_bf16x2(lop3_and_or(h, 0x000C000Cu, 0x43004300u), pair_bits(0.25, 7, 127),
                            pair_bits(-33.0, 7, 127));
          }
        }
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          if constexpr (kInt8<E>) {
            mma_16832_s8(acc[mt][nt], af[mt], b0, b1);
          } else {
            mma_16816<E>(acc[mt][nt], af[mt], b0, b1);
          }
        }
      }
    }
  }

  if constexpr (Split) {
    // This split's sums, 16 bytes per thread and fragment, coalesced across the block.
    constexpr int kFrags = MT * NT;
    using Vec = std::conditional_t<kInt8<E>, int4, float4>;
    Vec* part = reinterpret_cast<Vec*>(work.partial) + size_t(work.st) * work.splits * kFrags * kThreads;
#pragma unroll
    for (int i = 0; i < kFrags; ++i) {
      const Acc* a = acc[i / NT][i % NT];
      part[(size_t(work.split) * kFrags + i) * kThreads + tid] = Vec{a[0], a[1], a[2], a[3]};
    }
    __threadfence();
    __syncthreads(); // also: the ring is no longer read, its first word holds the flag
    int* last = reinterpret_cast<int*>(smem);
    if (tid == 0) {
      *last = atomicAdd(work.counter + work.st, 1) == work.splits - 1;
    }
    __syncthreads();
    if (!*last) {
      return;
    }
    __threadfence();
    // The splits in order (the same float sums whichever block is last), a row of
    // fragments (NT loads) at a time.
    zero_fragments(acc);
    for (int sp = 0; sp < work.splits; ++sp) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        Vec v[NT];
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          v[nt] = __ldcg(part + (size_t(sp) * kFrags + mt * NT + nt) * kThreads + tid);
        }
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          Acc* a = acc[mt][nt];
          a[0] += v[nt].x, a[1] += v[nt].y, a[2] += v[nt].z, a[3] += v[nt].w;
        }
      }
    }
    if (tid == 0) {
      work.counter[work.st] = 0; // for the next launch
    }
  }

  const bool pairs = N % 2 == 0; // (n, n + 1) 4- or 8-byte aligned
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int m = m0 + wm * TM + mt * 16 + g + 8 * half;
      if (m >= M) {
        continue;
      }
      float xs = 0.0f;
      int qs = 0;
      if constexpr (kInt8<E>) {
        xs = ep.xscale[m];
        qs = ep.qsum[m];
      }
      T* yrow = y + size_t(m) * N;
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        const int n = n0 + wn * TN + nt * 8 + 2 * t;
        T v[2];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          const int nj = min(n + j, N - 1);
          const float s = ep.scale[ep.per_row ? nj : 0];
          if constexpr (kInt8<E>) {
            v[j] = bitlinear_epilogue<T>(acc[mt][nt][2 * half + j] - qs, xs, s, ep.bias, ep.has_bias, nj);
          } else {
            v[j] = from_float<T>(s * acc[mt][nt][2 * half + j]);
          }
        }
        if (pairs && n + 1 < N) {
          store2(yrow + n, v[0], v[1]);
        } else {
          if (n < N) {
            yrow[n] = v[0];
          }
          if (n + 1 < N) {
            yrow[n + 1] = v[1];
          }
        }
      }
    }
  }
}

// The ring's size is the plan's business (threadgroup memory 0); a launch
// with less than the tile needs traps instead of corrupting memory.
template <class E, class Tl>
__device__ __forceinline__ uint8_t* mma_smem(const bnc::KernelArgs& a) {
  extern __shared__ __align__(128) uint8_t mma_dynamic_smem[];
  uint32_t bytes;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
  if (bytes < a.threadgroup_offset[0] + uint32_t(Tl::template smem_bytes<E>())) {
    __trap();
  }
  return mma_dynamic_smem + a.threadgroup_offset[0];
}

template <class E>
__device__ __forceinline__ bool w_rows_async(const uint32_t* wq, int K) {
  return reinterpret_cast<uintptr_t>(wq) % 16 == 0 && (K / 16) % 4 == 0;
}

// Blocks per multiprocessor the register budget is cut for (launch_plan_cuda.cpp's MmaTile::blocks):
// 4 warps of 32 x 64: 3, of 64 x 64: 2; 8 warps: 1.
template <class Tl>
constexpr int kMinBlocks = Tl::kThreads > 128 ? 1 : Tl::TM <= 32 ? 3 : 2;

// Slots as cuda_ternary_gemm: 0 x, 1 wq, 2 scale, 3 y; 4 M, 5 N, 6 K, 7 per_row; split K (block_work):
// 8 partial sums, 9 counters (zeroed), 10 whole tiles, 11 splits; threadgroup memory 0.
template <class T, class Tl, bool Split>
__global__ void __launch_bounds__(Tl::kThreads, kMinBlocks<Tl>) ternary_mma(bnc::KernelArgs a) {
  uint8_t* smem = mma_smem<T, Tl>(a);
  const auto* x = bnc::buffer<const T>(a, 0);
  const MmaEpilogue ep{bnc::buffer<const float>(a, 2), nullptr, nullptr, nullptr, bnc::constant_i32(a, 7), 0};
  const int M = bnc::constant_i32(a, 4), N = bnc::constant_i32(a, 5), K = bnc::constant_i32(a, 6);
  const auto* wq = bnc::buffer<const uint32_t>(a, 1);
  auto* y = bnc::buffer<T>(a, 3);
  const Work<float> work = block_work<float, Tl, Split>(M, (K * 2 + kRowBytes - 1) / kRowBytes, bnc::constant_i32(a, 10),
                                                 bnc::constant_i32(a, 11), bnc::buffer<float>(a, 8),
                                                 bnc::buffer<int>(a, 9));
  const bool w_ok = w_rows_async<T>(wq, K);
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    if (w_ok) {
      mma_gemm_body<T, T, Tl, true, true, Split>(x, wq, y, M, N, K, ep, smem, work);
    } else {
      mma_gemm_body<T, T, Tl, true, false, Split>(x, wq, y, M, N, K, ep, smem, work);
    }
  } else {
    mma_gemm_body<T, T, Tl, false, false, Split>(x, wq, y, M, N, K, ep, smem, work);
  }
}

// Slots as cuda_bitlinear_gemv: 0 xq (quad order), 1 xscale, 2 wq, 3 scale, 4 bias, 5 y; 6 M, 7 N, 8 K,
// 9 per_row, 10 has_bias; 11 qsum; split K (block_work): 12 partial sums, 13 counters (zeroed), 14 whole
// tiles, 15 splits; threadgroup memory 0.
template <class T, class Tl, bool Split>
__global__ void __launch_bounds__(Tl::kThreads, kMinBlocks<Tl>) bitlinear_mma(bnc::KernelArgs a) {
  uint8_t* smem = mma_smem<int8_t, Tl>(a);
  const MmaEpilogue ep{bnc::buffer<const float>(a, 3), bnc::buffer<const float>(a, 1), bnc::buffer<const int>(a, 11),
                       bnc::buffer<const float>(a, 4), bnc::constant_i32(a, 9), bnc::constant_i32(a, 10)};
  const auto* xq = bnc::buffer<const int8_t>(a, 0);
  const auto* wq = bnc::buffer<const uint32_t>(a, 2);
  auto* y = bnc::buffer<T>(a, 5);
  const int M = bnc::constant_i32(a, 6), N = bnc::constant_i32(a, 7), K = bnc::constant_i32(a, 8);
  const Work<int> work = block_work<int, Tl, Split>(M, (K + kRowBytes - 1) / kRowBytes, bnc::constant_i32(a, 14),
                                             bnc::constant_i32(a, 15), bnc::buffer<int>(a, 12),
                                             bnc::buffer<int>(a, 13));
  if (w_rows_async<int8_t>(wq, K)) {
    mma_gemm_body<int8_t, T, Tl, true, true, Split>(xq, wq, y, M, N, K, ep, smem, work);
  } else {
    mma_gemm_body<int8_t, T, Tl, true, false, Split>(xq, wq, y, M, N, K, ep, smem, work);
  }
}

// Host names as launch_plan_cuda.cpp's mma_launch: <op>_<T>_bm<BM>_bn<BN>_w<warps>_s<stages>[_split]
// (the split-K kernels apart, so that the others carry none of its registers).
#define BITNET_CUDA_MMA_KERNELS(BM, BN, W, S, tile, split, sfx)                                             \
  BITNET_CUDA_REGISTER("cuda_ternary_mma_float16_bm" #BM "_bn" #BN "_w" #W "_s" #S sfx,                    \
                       (ternary_mma<__half, tile, split>))                                                  \
  BITNET_CUDA_REGISTER("cuda_ternary_mma_bfloat16_bm" #BM "_bn" #BN "_w" #W "_s" #S sfx,                   \
                       (ternary_mma<__nv_bfloat16, tile, split>))                                           \
  BITNET_CUDA_REGISTER("cuda_bitlinear_mma_float32_bm" #BM "_bn" #BN "_w" #W "_s" #S sfx,                  \
                       (bitlinear_mma<float, tile, split>))                                                 \
  BITNET_CUDA_REGISTER("cuda_bitlinear_mma_float16_bm" #BM "_bn" #BN "_w" #W "_s" #S sfx,                  \
                       (bitlinear_mma<__half, tile, split>))                                                \
  BITNET_CUDA_REGISTER("cuda_bitlinear_mma_bfloat16_bm" #BM "_bn" #BN "_w" #W "_s" #S sfx,                 \
                       (bitlinear_mma<__nv_bfloat16, tile, split>))
#define BITNET_CUDA_MMA_TILE(BM, BN, WM, WN, S, W)                                                          \
  using Tile_##BM##_##BN##_##W##_##S = Tile<BM, BN, WM, WN, S>;                                              \
  BITNET_CUDA_MMA_KERNELS(BM, BN, W, S, Tile_##BM##_##BN##_##W##_##S, false, "")                             \
  BITNET_CUDA_MMA_KERNELS(BM, BN, W, S, Tile_##BM##_##BN##_##W##_##S, true, "_split")

// The tiles of launch_plan_cuda.cpp's kMmaTiles (keep the two lists equal).
BITNET_CUDA_MMA_TILE(128, 128, 2, 2, 4, 4)
BITNET_CUDA_MMA_TILE(64, 128, 2, 2, 4, 4)

} // namespace
} // namespace bitnet_cuda
