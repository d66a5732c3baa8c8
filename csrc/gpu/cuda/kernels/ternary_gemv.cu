// Decode GEMV on tensor cores: y = x @ (diag(s) W).T for a few rows of x
// (f16 / bf16 activations, float32 accumulation).
//
// The product is computed transposed, y.T = W x.T, with mma.m16n8k16: A is a
// 16-row tile of W (decoded to code - 1 in registers, ternary_mma.cuh's
// decode_pairs: one LOP3 and one FMA per two weights), B holds up to 8 rows
// of x (one per MMA column; with fewer rows the other columns are wasted,
// which costs nothing here: the kernel is bound by reading W).
//
// A block of W warps (4, 8 or 16) owns 16 R rows of W and 8 rows of x (grid.y splits
// larger M); its warps split K: warp w takes steps w, w + W, ..., a step
// being 16 words (256 k) of each row. In a step lane (g, t) loads words
// 4t..4t+3 of rows g and g + 8 of each tile (one 16-byte load each: a warp
// reads 8 rows x 64 contiguous bytes, whole sectors) and x[m = g] at the same
// 64 k; since only lanes with the same t share k-slots, no data moves between
// lanes. W of the next step is loaded before the current one is computed, or
// (A > 0) A steps of W are kept in flight in a shared-memory ring (cp.async;
// gemv_w_loads.cuh's gemv_k_loop_async).
// Partial sums meet in shared memory, added in warp order (deterministic).
//
// K % 16 == 0; any M, N. Rows past N re-read row N - 1 (not stored); rows of
// x past M re-read the last row (their columns are not stored); words past K
// read as W = 0 against x = 0. Unaligned x or W (16-byte loads impossible)
// take the same path with 2- and 4-byte loads.
#include "kernel_args.cuh"
#include "gemv_w_loads.cuh"

namespace bitnet_cuda {
namespace {

// x[k0 .. k0 + 15] as two groups of 8 (0 when the word is past K).
template <bool Vec>
__device__ __forceinline__ void load_x16(const uint16_t* xrow, int k0, bool ok, uint4& lo, uint4& hi) {
  if (!ok) {
    lo = hi = make_uint4(0, 0, 0, 0);
  } else if (Vec) {
    lo = __ldg(reinterpret_cast<const uint4*>(xrow + k0));
    hi = __ldg(reinterpret_cast<const uint4*>(xrow + k0 + 8));
  } else {
    uint32_t v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      v[i] = uint32_t(__ldg(xrow + k0 + 2 * i)) | (uint32_t(__ldg(xrow + k0 + 2 * i + 1)) << 16);
    }
    lo = make_uint4(v[0], v[1], v[2], v[3]);
    hi = make_uint4(v[4], v[5], v[6], v[7]);
  }
}

template <class T, int R, int W, int A, bool Vec>
__device__ __forceinline__ void gemv_body(
    const uint16_t* x, const uint32_t* wq, const float* scale, T* y, int M, int N, int K, int per_row,
    float (*red)[R][4][32], uint4* ring) {
  const int words = K / 16;
  const int g = (threadIdx.x % 32) / 4;
  const int n0 = blockIdx.x * 16 * R;
  const int m0 = blockIdx.y * 8;
  const uint16_t* xrow = x + size_t(m0 + min(g, min(8, M - m0) - 1)) * K;
  float acc[R][4] = {};
  gemv_k_loop<R, W, A, Vec>(wq, N, K, n0, ring, [] {}, [&](const WStep<R>& w, int wbase) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      uint4 lo, hi;
      load_x16<Vec>(xrow, (wbase + i) * 16, wbase + i < words, lo, hi);
      uint32_t bx[8];
      pair_activations(lo, hi, bx);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        uint32_t pa[8], pb[8];
        decode_pairs<T>(w.a[r][i], pa);
        decode_pairs<T>(w.b[r][i], pb);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const uint32_t a[4] = {pa[2 * q], pb[2 * q], pa[2 * q + 1], pb[2 * q + 1]};
          mma_16816<T>(acc[r], a, bx[2 * q], bx[2 * q + 1]);
        }
      }
    }
  });
  gemv_block_sum<float, R, W>(acc, red);
  if (threadIdx.x >= 32) {
    return;
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      int n, m;
      gemv_out_index(r, c, n0, m0, n, m);
      if (n < N && m < M) {
        y[size_t(m) * N + n] = from_float<T>(scale[per_row ? n : 0] * acc[r][c]);
      }
    }
  }
}

// Slots as the shared plan's ternary_gemv_t: 0 x, 1 wq, 2 scale, 3 y; 4 M, 5 N, 6 K, 7 per_row.
template <class T, int R, int W, int A>
__global__ void __launch_bounds__(32 * W) ternary_gemv(bnc::KernelArgs a) {
  __shared__ float red[W][R][4][32];
  __shared__ uint4 ring[W * kGemvRingWords<R, A>];
  const auto* x = bnc::buffer<const uint16_t>(a, 0);
  const auto* wq = bnc::buffer<const uint32_t>(a, 1);
  const auto* scale = bnc::buffer<const float>(a, 2);
  auto* y = bnc::buffer<T>(a, 3);
  const int M = bnc::constant_i32(a, 4), N = bnc::constant_i32(a, 5), K = bnc::constant_i32(a, 6);
  const int per_row = bnc::constant_i32(a, 7);
  const bool vec = (reinterpret_cast<uintptr_t>(x) % 16 == 0) && (reinterpret_cast<uintptr_t>(wq) % 16 == 0) &&
                   (K / 16) % 4 == 0;
  if (vec) {
    gemv_body<T, R, W, A, true>(x, wq, scale, y, M, N, K, per_row, red, ring);
  } else {
    gemv_body<T, R, W, A, false>(x, wq, scale, y, M, N, K, per_row, red, ring);
  }
}

// Host names: cuda_ternary_gemv_<T>_r<R> (4 warps), cuda_ternary_gemv_<T>_r<R>_w<W> (8, 16), then
// _a<A> for A steps of W in a shared-memory ring (32 KiB a block: 4 warps of 8 steps of R = 1 or
// of 4 steps of R = 2, 8 warps of 4 steps of R = 1).
#define BITNET_CUDA_GEMV_ONE(tname, T, R, W, wsuf, A, asuf) \
  BITNET_CUDA_REGISTER("cuda_ternary_gemv_" #tname "_r" #R wsuf asuf, (ternary_gemv<T, R, W, A>))
#define BITNET_CUDA_GEMV_RW(tname, T, R)                  \
  BITNET_CUDA_GEMV_ONE(tname, T, R, 4, "", 0, "")         \
  BITNET_CUDA_GEMV_ONE(tname, T, R, 8, "_w8", 0, "")      \
  BITNET_CUDA_GEMV_ONE(tname, T, R, 16, "_w16", 0, "")
#define BITNET_CUDA_GEMV(tname, T)                                                                   \
  BITNET_CUDA_GEMV_RW(tname, T, 1) BITNET_CUDA_GEMV_RW(tname, T, 2) BITNET_CUDA_GEMV_RW(tname, T, 4) \
  BITNET_CUDA_GEMV_ONE(tname, T, 1, 4, "", 8, "_a8") BITNET_CUDA_GEMV_ONE(tname, T, 2, 4, "", 4, "_a4") \
  BITNET_CUDA_GEMV_ONE(tname, T, 1, 8, "_w8", 4, "_a4")

BITNET_CUDA_GEMV(float16, __half)
BITNET_CUDA_GEMV(bfloat16, __nv_bfloat16)

} // namespace
} // namespace bitnet_cuda
