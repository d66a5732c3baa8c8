// Prefill GEMMs on Hopper's warpgroup MMA (wgmma.mma_async, sm_90a), y = x @ (diag(s) W).T:
//
//   cuda_ternary_wgmma_<T>_bx<BX>_s<S>[_split]    T = float16 / bfloat16 x, float32 sums, y = T(s(n) acc)
//   cuda_bitlinear_wgmma_<T>_bx<BX>_s<S>[_split]  xq int8 in quad order (absmax_quantize_quad_<T>),
//                                                 exact int32 sums of xq * code, minus qsum
//
// The product is computed transposed, y.T = W x.T, so that W is wgmma's A
// operand, which may come from registers: each thread turns the packed words
// of its two W rows into A fragments (int8: one shift and AND per register, as
// mma_gemm.cu's B fragments; 16-bit: the magic-number LOP3 + FMA, then two
// PRMTs for wgmma's (k, k + 1) pairs), and no expanded copy of W is ever
// written to shared memory. x is the B operand (K-major, BX rows of 128 bytes
// per stage in the 128-byte swizzle), read by the tensor cores through a
// descriptor (wgmma_ops.cuh). A block is 2 warpgroups: 128 rows of W (64 each)
// times BX rows of x, 128 bytes of x per row per stage; the int8 xq's quad
// order matches the codes' shift order, the 16-bit x is in natural order.
//
// Pipeline: x and the packed W by cp.async into a ring of S stages (all 256
// threads load, as in mma_gemm.cu), prefetch distance S - 2 (WgTile): the wgmmas of
// stage kb run while the block waits for stage kb + 1, and stage kb - 1's are
// waited for (wgmma.wait_group 1) before its slot is refilled after the next
// barrier. Split K as mma_gemm.cu (the last block of a tile sums the splits in
// order). Bounds: rows of x past M and K past the end are zero-filled, rows of
// W past N are zero words (codes 0, times zero x or never stored). Loads, arguments and
// the split's bookkeeping: gemm_common.cuh. Each wgmma_gemm_bx<BX>_s<S>.cu instantiates
// one tile, so that the tiles compile in parallel.
#pragma once

#include "kernel_args.cuh"
#include <type_traits>

#include "gemm_common.cuh"
#include "ternary_mma.cuh"
#include "wgmma_ops.cuh"

namespace bitnet_cuda {
namespace wgmma {

constexpr int kWgRowBytes = 128; // bytes of x per row per stage
constexpr int kWgWRows = 128;    // rows of W per block: 2 warpgroups of 64
constexpr int kWgThreads = 256;

template <class E>
constexpr bool kWgInt8 = std::is_same_v<E, int8_t>;
// Packed W bytes per row per stage: 128 int8 or 64 16-bit k, 2 bits each.
template <class E>
constexpr int kWgWBytes = kWgRowBytes / int(sizeof(E)) / 4;

// Blocks = 1: stage kb's wgmmas overlap the wait for stage kb + 1 (wait_group 1, two sets of A
// registers, prefetch distance S - 2). Blocks = 2 (two blocks per multiprocessor, 128 registers a
// thread): each stage's wgmmas are waited for at its end (one set of A registers, distance S - 1),
// the other block keeps the tensor cores busy meanwhile.
template <int BX_, int S_, int Blocks_ = 1>
struct WgTile {
  static constexpr int BX = BX_, S = S_, Blocks = Blocks_;
  static constexpr int D = Blocks == 1 ? S - 2 : S - 1; // prefetch distance
  static_assert((BX == 128 || BX == 256) && D >= 1 && (Blocks == 1 || Blocks == 2), "wgmma N 128 or 256");
  template <class E>
  static constexpr int stage_bytes() { // a multiple of 1024: every stage starts on a swizzle atom
    return BX * kWgRowBytes + kWgWRows * kWgWBytes<E>;
  }
  template <class E>
  static constexpr int smem_bytes() { // + 1024: the ring starts at the next 1024-byte boundary
    return S * stage_bytes<E>() + 1024;
  }
};

#if BNC_HAS_WGMMA
// (W[2t], W[2t + 1]) and (W[2t + 8], W[2t + 9]) of a word shifted right by 4t:
// ternary_mma.cuh's pairs (W[2t], W[2t + 8]), (W[2t + 1], W[2t + 9]), regrouped.
template <class E>
__device__ __forceinline__ void decode_k_pairs(uint32_t h, uint32_t& lo, uint32_t& hi) {
  uint32_t p0, p1;
  if constexpr (std::is_same_v<E, __half>) {
    p0 = fma_f16x2(lop3_and_or(h, 0x00030003u, 0x64006400u), pair_bits(1.0, 10, 15), pair_bits(-1025.0, 10, 15));
    p1 = fma_f16x2(lop3_and_or(h, 0x000C000Cu, 0x64006400u), pair_bits(0.25, 10, 15), pair_bits(-257.0, 10, 15));
  } else {
    p0 = fma_bf16x2(lop3_and_or(h, 0x00030003u, 0x43004300u), pair_bits(1.0, 7, 127), pair_bits(-129.0, 7, 127));
    p1 = fma_bf16x2(lop3_and_or(h, 0x000C000Cu, 0x43004300u), pair_bits(0.25, 7, 127), pair_bits(-33.0, 7, 127));
  }
  lo = prmt(p0, p1, 0x5410);
  hi = prmt(p0, p1, 0x7632);
}

// The A fragments of one stage (4 wgmma k-steps) for W rows `row` and row + 8 of the stage's packed W.
template <class E>
__device__ __forceinline__ void decode_stage(const uint8_t* sw, int row, int t, uint32_t (&af)[4][4]) {
  constexpr int WB = kWgWBytes<E>;
  if constexpr (kWgInt8<E>) {
    // k-step ks: words 2 ks (a0, a1) and 2 ks + 1 (a2, a3); xq's quad order puts codes
    // t, t + 4, t + 8, t + 12 of a word in the k-slots 4t .. 4t + 3.
    const uint4* r0 = reinterpret_cast<const uint4*>(sw + row * WB);
    const uint4* r1 = reinterpret_cast<const uint4*>(sw + (row + 8) * WB);
    const uint4 a = r0[0], b = r0[1], c = r1[0], d = r1[1];
    const uint32_t w0[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    const uint32_t w1[8] = {c.x, c.y, c.z, c.w, d.x, d.y, d.z, d.w};
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      af[ks][0] = (w0[2 * ks] >> (2 * t)) & 0x03030303u;
      af[ks][1] = (w1[2 * ks] >> (2 * t)) & 0x03030303u;
      af[ks][2] = (w0[2 * ks + 1] >> (2 * t)) & 0x03030303u;
      af[ks][3] = (w1[2 * ks + 1] >> (2 * t)) & 0x03030303u;
    }
  } else {
    const uint4 a = *reinterpret_cast<const uint4*>(sw + row * WB);
    const uint4 c = *reinterpret_cast<const uint4*>(sw + (row + 8) * WB);
    const uint32_t w0[4] = {a.x, a.y, a.z, a.w}, w1[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      decode_k_pairs<E>(w0[ks] >> (4 * t), af[ks][0], af[ks][2]);
      decode_k_pairs<E>(w1[ks] >> (4 * t), af[ks][1], af[ks][3]);
    }
  }
}
#endif

// A: M x K elements of E (row stride K); wq: packed W (N x K/16 words). AsyncA /
// AsyncW as mma_gemm.cu (cp.async, or plain loads into the same ring).
template <class E, class T, class Tl, bool AsyncA, bool AsyncW, bool Split>
__device__ __forceinline__ void wgmma_gemm_body(
    const E* A, const uint32_t* wq, T* y, int M, int N, int K, const GemmEpilogue& ep, uint8_t* smem,
    const Work<uint32_t>& work) {
#if BNC_HAS_WGMMA
  constexpr int BX = Tl::BX, S = Tl::S;
  constexpr int kStage = Tl::template stage_bytes<E>();
  constexpr int kAcc = BX / 2;
  const int tid = threadIdx.x, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wrow = (tid / 32) * 16 + g; // warp w's rows 16 w .. (warpgroup 1: rows 64 .. 127)
  const int m0 = work.m0, n0 = work.n0;
  const int slab0 = work.slab0, slabs = work.slab1 - work.slab0;

  auto load = [&](int rel, int stage) {
    load_stage<E, AsyncA, AsyncW, BX, kWgWRows, kWgThreads>(smem + stage * kStage, A, wq, M, N, K, m0, n0,
                                                            slab0 + rel);
  };

  uint32_t acc[kAcc]; // float32 or int32 sums as raw words
#pragma unroll
  for (int i = 0; i < kAcc; ++i) {
    acc[i] = 0;
  }
  uint32_t af[Tl::Blocks == 1 ? 2 : 1][4][4] = {}; // A fragments of the stage in flight and of the one issued
  constexpr int D = Tl::D;
  cp_async_prologue<D + 1>(slabs, [&](int s) { load(s, s); });

  // P: which of af's two sets this stage uses (the loop is unrolled by two so both stay in registers).
  auto step = [&]<int P>(int kb) {
    cp_async_wait<D - 1>(); // this thread's copies of stage kb have landed
    fence_proxy_async();    // ... and are visible to wgmma
    __syncthreads();        // everyone's, and the wgmmas of the slot refilled now are done (waited below)
    const int next = kb + D;
    if (next < slabs) {
      load(next, next % S);
    }
    cp_async_commit();
    const uint8_t* sx = smem + (kb % S) * kStage;
    decode_stage<E>(sx + BX * kWgRowBytes, wrow, t, af[P]);
#pragma unroll
    for (int i = 0; i < kAcc; ++i) {
      fence_operand(acc[i]);
    }
    wgmma_fence();
    const uint64_t desc = sw128_desc(sx);
#pragma unroll
    for (int ks = 0; ks < 4; ++ks) {
      wgmma_rs<E, BX>(acc, af[P][ks], desc + 2 * ks); // + 32 bytes along K
    }
    wgmma_commit();
#pragma unroll
    for (int i = 0; i < kAcc; ++i) {
      fence_operand(acc[i]);
    }
    if constexpr (Tl::Blocks == 1) {
      wgmma_wait<1>(); // stage kb - 1's wgmmas are done: its A registers may be reused
#pragma unroll
      for (int ks = 0; ks < 4; ++ks) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          fence_operand(af[P ^ 1][ks][r]);
        }
      }
    } else {
      wgmma_wait<0>();
    }
  };
  int kb = 0;
  for (; kb + 1 < slabs; kb += 2) {
    step.template operator()<0>(kb);
    step.template operator()<Tl::Blocks == 1 ? 1 : 0>(kb + 1);
  }
  if (kb < slabs) {
    step.template operator()<0>(kb);
  }
  wgmma_wait<0>();
#pragma unroll
  for (int i = 0; i < kAcc; ++i) {
    fence_operand(acc[i]);
  }

  auto sum = [](uint32_t a, uint32_t b) -> uint32_t {
    if constexpr (kWgInt8<E>) {
      return a + b; // int32 sums: two's complement addition
    } else {
      return __float_as_uint(__uint_as_float(a) + __uint_as_float(b));
    }
  };
  if constexpr (Split) {
    // This split's sums, 16 bytes per thread and vector, coalesced across the block.
    constexpr int kVecs = kAcc / 4;
    uint4* part = reinterpret_cast<uint4*>(work.partial) + size_t(work.st) * work.splits * kVecs * kWgThreads;
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      part[(size_t(work.split) * kVecs + i) * kWgThreads + tid] =
          make_uint4(acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]);
    }
    if (!split_is_last(work, reinterpret_cast<int*>(smem))) { // the ring is no longer read
      return;
    }
#pragma unroll
    for (int i = 0; i < kAcc; ++i) {
      acc[i] = 0;
    }
    for (int sp = 0; sp < work.splits; ++sp) { // in order: the same float sums whichever block is last
#pragma unroll
      for (int i = 0; i < kVecs; ++i) {
        const uint4 v = __ldcg(part + (size_t(sp) * kVecs + i) * kWgThreads + tid);
        acc[4 * i] = sum(acc[4 * i], v.x), acc[4 * i + 1] = sum(acc[4 * i + 1], v.y);
        acc[4 * i + 2] = sum(acc[4 * i + 2], v.z), acc[4 * i + 3] = sum(acc[4 * i + 3], v.w);
      }
    }
    if (tid == 0) {
      work.counter[work.st] = 0; // for the next launch
    }
  }

  // acc[4 i + 2 h + j]: W row n0 + wrow + 8 h (n), x row m0 + 8 i + 2 t + j (m). Each value goes
  // to y's row m through a BX x 128 tile of T in the ring (rows padded by 16 bytes: the four t of
  // a warp write four rows on different banks), then whole 16-byte pieces of rows to y: the
  // fragments alone would store 2 or 4 bytes per lane to four rows at a time.
  constexpr int kRow = kWgWRows * int(sizeof(T)) + 16;
  static_assert(BX * kRow <= S * kStage, "the output tile fits in the ring");
  __syncthreads(); // both warpgroups' wgmmas are done with the ring (and the split flag was read)
  float s[2];
  int n[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    n[h] = n0 + wrow + 8 * h;
    s[h] = ep.scale[ep.per_row ? min(n[h], N - 1) : 0];
  }
#pragma unroll
  for (int i = 0; i < kAcc / 4; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int ml = 8 * i + 2 * t + j;
      const int m = min(m0 + ml, M - 1);
      float xs = 0.0f;
      int qs = 0;
      if constexpr (kWgInt8<E>) {
        xs = ep.xscale[m];
        qs = ep.qsum[m];
      }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const uint32_t v = acc[4 * i + 2 * h + j];
        T out;
        if constexpr (kWgInt8<E>) {
          out = bitlinear_epilogue<T>(int(v) - qs, xs, s[h], ep.bias, ep.has_bias, min(n[h], N - 1));
        } else {
          out = from_float<T>(s[h] * __uint_as_float(v));
        }
        *reinterpret_cast<T*>(smem + ml * kRow + (wrow + 8 * h) * int(sizeof(T))) = out;
      }
    }
  }
  __syncthreads();
  constexpr int kPer = 16 / int(sizeof(T));  // elements per 16-byte piece
  constexpr int kPieces = kWgWRows / kPer; // per row
  const bool vec = N % kPer == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0;
  for (int c = tid; c < BX * kPieces; c += kWgThreads) {
    const int ml = c / kPieces, nl = (c % kPieces) * kPer;
    const int m = m0 + ml, nn = n0 + nl;
    if (m >= M || nn >= N) {
      continue;
    }
    const uint8_t* src = smem + ml * kRow + nl * int(sizeof(T));
    T* dst = y + size_t(m) * N + nn;
    if (vec) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
    } else {
      for (int e = 0; e < kPer && nn + e < N; ++e) {
        dst[e] = reinterpret_cast<const T*>(src)[e];
      }
    }
  }
#else
  __trap(); // no sm_90a code: the plans never launch it (launch_plan_cuda.cpp's wgmma_available)
#endif
}

// The ring, at the next 1024-byte boundary of threadgroup memory 0 (the plan adds 1024 bytes).
template <class E, class Tl>
__device__ __forceinline__ uint8_t* wgmma_smem(const bnc::KernelArgs& a) {
  uint8_t* p = gemm_smem(a, Tl::template smem_bytes<E>());
  const uint32_t at = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  return p + ((1024u - at % 1024u) % 1024u);
}

template <class Tl>
constexpr int kWgMinBlocks = Tl::Blocks;

// Arguments: gemm_common.cuh's GemmArgs (ternary_gemm_args / bitlinear_gemm_args), as the mma GEMMs.
template <class T, class Tl, bool Split>
__global__ void __launch_bounds__(kWgThreads, kWgMinBlocks<Tl>) ternary_wgmma(bnc::KernelArgs a) {
  uint8_t* smem = wgmma_smem<T, Tl>(a);
  const GemmArgs g = ternary_gemm_args(a);
  const auto work = block_work<uint32_t, Tl::BX, kWgWRows, Split>(g, (g.K * 2 + kWgRowBytes - 1) / kWgRowBytes);
  with_copy_paths<true>(g, [&]<bool AsyncA, bool AsyncW>() {
    wgmma_gemm_body<T, T, Tl, AsyncA, AsyncW, Split>(static_cast<const T*>(g.x), g.wq, static_cast<T*>(g.y), g.M, g.N,
                                                     g.K, g.ep, smem, work);
  });
}

template <class T, class Tl, bool Split>
__global__ void __launch_bounds__(kWgThreads, kWgMinBlocks<Tl>) bitlinear_wgmma(bnc::KernelArgs a) {
  uint8_t* smem = wgmma_smem<int8_t, Tl>(a);
  const GemmArgs g = bitlinear_gemm_args(a);
  const auto work = block_work<uint32_t, Tl::BX, kWgWRows, Split>(g, (g.K + kWgRowBytes - 1) / kWgRowBytes);
  with_copy_paths<false>(g, [&]<bool AsyncA, bool AsyncW>() {
    wgmma_gemm_body<int8_t, T, Tl, AsyncA, AsyncW, Split>(static_cast<const int8_t*>(g.x), g.wq, static_cast<T*>(g.y),
                                                          g.M, g.N, g.K, g.ep, smem, work);
  });
}

// Host names as launch_plan_cuda.cpp's wgmma_launch: <op>_<T>_bx<BX>_s<S>[_split].
#define BITNET_CUDA_WGMMA_KERNELS(BX, S, tile, split, sfx)                                                       \
  BITNET_CUDA_REGISTER("cuda_ternary_wgmma_float16_bx" #BX "_s" #S sfx, (ternary_wgmma<__half, tile, split>))    \
  BITNET_CUDA_REGISTER("cuda_ternary_wgmma_bfloat16_bx" #BX "_s" #S sfx,                                        \
                       (ternary_wgmma<__nv_bfloat16, tile, split>))                                              \
  BITNET_CUDA_REGISTER("cuda_bitlinear_wgmma_float32_bx" #BX "_s" #S sfx, (bitlinear_wgmma<float, tile, split>)) \
  BITNET_CUDA_REGISTER("cuda_bitlinear_wgmma_float16_bx" #BX "_s" #S sfx, (bitlinear_wgmma<__half, tile, split>))\
  BITNET_CUDA_REGISTER("cuda_bitlinear_wgmma_bfloat16_bx" #BX "_s" #S sfx,                                      \
                       (bitlinear_wgmma<__nv_bfloat16, tile, split>))
#define BITNET_CUDA_WGMMA_TILE(BX, S, B)                                     \
  using WgTile_##BX##_##S = WgTile<BX, S, B>;                                \
  BITNET_CUDA_WGMMA_KERNELS(BX, S, WgTile_##BX##_##S, false, "")             \
  BITNET_CUDA_WGMMA_KERNELS(BX, S, WgTile_##BX##_##S, true, "_split")

} // namespace wgmma
} // namespace bitnet_cuda
