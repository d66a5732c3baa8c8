// The tiled prefill GEMM's pieces around the MMAs (wgmma_gemm.cuh): its arguments (the slots of
// mma_gemm.cu's kernels), which tile and K range a block computes (split K), the ring-stage loads, the
// election of a split tile's last block, the dynamic shared memory check, the copy paths by alignment.
// mma_gemm.cu keeps its own copy of the same logic: built on these functions its GEMMs measured 4-14%
// slower on the H200 (17408x5120 M = 512 bitlinear 158.5 -> 174.1 us, 2560x6912 52.5 -> 60.0 us).
#pragma once

#include <cstdint>

#include "kernel_args.cuh"
#include "ternary_mma.cuh"

namespace bitnet_cuda {

struct GemmEpilogue {
  const float* scale;
  const float* xscale; // bitlinear only
  const int* qsum;     // bitlinear only
  const float* bias;
  int per_row, has_bias;
};

// A kernel's arguments. Slots, ternary_matmul (as cuda_ternary_gemm): 0 x, 1 wq, 2 scale, 3 y; 4 M, 5 N,
// 6 K, 7 per_row; split K: 8 partial sums, 9 counters (zeroed), 10 whole tiles, 11 splits. bitlinear (as
// cuda_bitlinear_gemv): 0 xq (quad order), 1 xscale, 2 wq, 3 scale, 4 bias, 5 y; 6 M, 7 N, 8 K, 9 per_row,
// 10 has_bias; 11 qsum; split K: 12 .. 15 as 8 .. 11. Threadgroup memory 0: the ring.
struct GemmArgs {
  const void* x;
  const uint32_t* wq;
  void* y;
  int M, N, K;
  GemmEpilogue ep;
  void* partial;
  int* counter;
  int dp, splits;
};

__device__ __forceinline__ GemmArgs ternary_gemm_args(const bnc::KernelArgs& a) {
  return {a.buffers[0],
          bnc::buffer<const uint32_t>(a, 1),
          a.buffers[3],
          bnc::constant_i32(a, 4),
          bnc::constant_i32(a, 5),
          bnc::constant_i32(a, 6),
          {bnc::buffer<const float>(a, 2), nullptr, nullptr, nullptr, bnc::constant_i32(a, 7), 0},
          a.buffers[8],
          bnc::buffer<int>(a, 9),
          bnc::constant_i32(a, 10),
          bnc::constant_i32(a, 11)};
}

__device__ __forceinline__ GemmArgs bitlinear_gemm_args(const bnc::KernelArgs& a) {
  return {a.buffers[0],
          bnc::buffer<const uint32_t>(a, 2),
          a.buffers[5],
          bnc::constant_i32(a, 6),
          bnc::constant_i32(a, 7),
          bnc::constant_i32(a, 8),
          {bnc::buffer<const float>(a, 3), bnc::buffer<const float>(a, 1), bnc::buffer<const int>(a, 11),
           bnc::buffer<const float>(a, 4), bnc::constant_i32(a, 9), bnc::constant_i32(a, 10)},
          a.buffers[12],
          bnc::buffer<int>(a, 13),
          bnc::constant_i32(a, 14),
          bnc::constant_i32(a, 15)};
}

// What one block computes. Blocks 0 .. dp - 1 each own a whole tile (tile =
// block); the rest split each remaining tile's K range `splits` ways: they store
// their partial sums to `partial` (per split tile, per split, in fragment
// order), and the last of a tile's blocks to finish (counter[tile - dp], which
// it resets) sums the splits in order (deterministic) and stores y. Tiles go
// row tile of x fastest, so the blocks running at once share W's rows.
template <class Acc>
struct Work {
  int m0, n0, slab0, slab1; // output tile origin, this block's slabs of K
  int split, splits, st;    // st: index among the split tiles
  Acc* partial;
  int* counter;
};

// BM rows of x times BN rows of W per tile.
template <class Acc, int BM, int BN, bool Split>
__device__ __forceinline__ Work<Acc> block_work(const GemmArgs& g, int slabs) {
  const int b = blockIdx.x, dp = g.dp;
  int tile = b, split = 0, n = 1;
  if (Split && b >= dp) {
    tile = dp + (b - dp) / g.splits;
    split = (b - dp) % g.splits;
    n = g.splits;
  }
  const int tiles_m = (g.M + BM - 1) / BM;
  const int per = (slabs + n - 1) / n;
  return {(tile % tiles_m) * BM, (tile / tiles_m) * BN, min(slabs, split * per), min(slabs, (split + 1) * per),
          split, n, tile - dp, static_cast<Acc*>(g.partial), g.counter};
}

// After a split block stored its partial sums: whether it is the last of its tile to finish (it
// then sums the splits). flag: a word of shared memory that no thread reads any more.
template <class Acc>
__device__ __forceinline__ bool split_is_last(const Work<Acc>& work, int* flag) {
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    *flag = atomicAdd(work.counter + work.st, 1) == work.splits - 1;
  }
  __syncthreads();
  const bool last = *flag;
  if (last) {
    __threadfence();
  }
  return last;
}

// 16 bytes of row n of packed W (N x `words` words), words w0 .. w0 + 3, into a ring stage: zero
// words past K and past N. Async: cp.async (16-byte aligned rows), else plain loads.
template <bool Async>
__device__ __forceinline__ void copy_w_chunk(uint8_t* dst, const uint32_t* wq, int n, int N, int words, int w0) {
  const int cnt = n < N ? max(0, min(4, words - w0)) : 0;
  const uint32_t* src = cnt > 0 ? wq + size_t(n) * words + w0 : wq;
  if constexpr (Async) {
    cp_async_16(dst, src, 4 * cnt);
  } else {
    uint32_t v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      v[j] = j < cnt ? src[j] : 0u;
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(v[0], v[1], v[2], v[3]);
  }
}

// One ring stage: 128 bytes of K (slab `slab`) of XRows rows of x from row m0, in 128-byte rows whose
// 16-byte chunks are XOR-swizzled by row % 8 (ldmatrix reads 8 rows of a chunk column without bank
// conflicts; on a 1024-byte aligned stage it is wgmma's 128-byte swizzle), zero past M and K; then the
// matching packed W of WRows rows from row n0 (32 or 16 bytes a row). Async: cp.async, else plain loads.
template <class E, bool AsyncA, bool AsyncW, int XRows, int WRows, int Threads>
__device__ __forceinline__ void load_stage(uint8_t* stage, const E* A, const uint32_t* wq, int M, int N, int K, int m0,
                                           int n0, int slab) {
  constexpr int kRow = 128, WB = kRow / int(sizeof(E)) / 4, kXChunks = XRows * 8, kWChunks = WRows * WB / 16;
  const int tid = threadIdx.x, words = K / 16, kbytes = K * int(sizeof(E));
#pragma unroll
  for (int i = 0; i < (kXChunks + Threads - 1) / Threads; ++i) {
    const int c = tid + i * Threads;
    if (kXChunks % Threads == 0 || c < kXChunks) {
      const int row = c / 8, chunk = c % 8;
      const int kb = slab * kRow + chunk * 16;
      const bool ok = m0 + row < M && kb < kbytes;
      const uint8_t* src = reinterpret_cast<const uint8_t*>(A) + (ok ? size_t(m0 + row) * kbytes + kb : 0);
      copy_x_chunk<AsyncA>(stage + row * kRow + ((chunk ^ (row & 7)) << 4), src, ok);
    }
  }
  uint8_t* sw = stage + XRows * kRow;
#pragma unroll
  for (int i = 0; i < (kWChunks + Threads - 1) / Threads; ++i) {
    const int c = tid + i * Threads;
    if (kWChunks % Threads == 0 || c < kWChunks) {
      const int row = c / (WB / 16), part = c % (WB / 16);
      copy_w_chunk<AsyncW>(sw + row * WB + part * 16, wq, n0 + row, N, words, slab * (WB / 4) + part * 4);
    }
  }
}

// The ring's size is the plan's business (threadgroup memory 0); a launch with less than `need`
// bytes traps instead of corrupting memory.
__device__ __forceinline__ uint8_t* gemm_smem(const bnc::KernelArgs& a, uint32_t need) {
  extern __shared__ __align__(128) uint8_t gemm_dynamic_smem[];
  uint32_t bytes;
  asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(bytes));
  if (bytes < a.threadgroup_offset[0] + need) {
    __trap();
  }
  return gemm_dynamic_smem + a.threadgroup_offset[0];
}

// Calls f.template operator()<AsyncA, AsyncW>() with the copy paths the alignment allows: cp.async for
// x when 16-byte aligned (always for bitlinear's xq: CheckX false), for W when its rows are
// (K % 64 == 0, wq 16-byte aligned); else plain loads (2-byte x loads: x and W both plain).
template <bool CheckX, class F>
__device__ __forceinline__ void with_copy_paths(const GemmArgs& g, F&& f) {
  const bool w_async = reinterpret_cast<uintptr_t>(g.wq) % 16 == 0 && (g.K / 16) % 4 == 0;
  if (!CheckX || reinterpret_cast<uintptr_t>(g.x) % 16 == 0) {
    if (w_async) {
      f.template operator()<true, true>();
    } else {
      f.template operator()<true, false>();
    }
  } else if constexpr (CheckX) {
    f.template operator()<false, false>();
  }
}

} // namespace bitnet_cuda
