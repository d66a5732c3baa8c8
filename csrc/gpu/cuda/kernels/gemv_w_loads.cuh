// The block skeleton shared by the decode GEMVs (ternary_gemv.cu,
// bitlinear_gemv.cu): a block of W warps (4, 8 or 16) owns 16 R rows of W and 8
// rows of x; its warps split K, warp w taking steps w, w + W, ...,
// a step being 16 words (256 k) of each row. In each step lane (g, t) of a
// warp reads words 4t..4t+3 (16 bytes) of rows g and g + 8 of each 16-row
// tile, so a warp reads 8 rows x 64 contiguous bytes per tile (whole
// sectors). The kernels supply what a step does with those words (the MMAs)
// and the epilogue.
#pragma once

#include "ternary_mma.cuh"

namespace bitnet_cuda {

// Warps per block (splitting K) of the fused decode kernel, and the GEMVs' default.
constexpr int kGemvWarps = 4;

// One step's words of this lane: a[r][i] from row 16 r + g, b[r][i] from row 16 r + g + 8.
template <int R>
struct WStep {
  uint32_t a[R][4]; // rows 16 r + g
  uint32_t b[R][4]; // rows 16 r + g + 8
};

// Vec: W and every row start 16-byte aligned (K % 64 == 0), one 16-byte load
// per row, a lane's 4 words all inside K or all past it; else word loads.
// Words past K read as kZeroWord (W = 0).
template <int R, bool Vec>
__device__ __forceinline__ void load_w(
    WStep<R>& st, const uint32_t* const (&ra)[R], const uint32_t* const (&rb)[R], int wbase, int words) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (Vec) {
      // words % 4 == 0 here, so a lane's 4 words are all inside K or all past it.
      if (wbase < words) {
        const uint4 va = ld_stream(reinterpret_cast<const uint4*>(ra[r] + wbase));
        const uint4 vb = ld_stream(reinterpret_cast<const uint4*>(rb[r] + wbase));
        st.a[r][0] = va.x, st.a[r][1] = va.y, st.a[r][2] = va.z, st.a[r][3] = va.w;
        st.b[r][0] = vb.x, st.b[r][1] = vb.y, st.b[r][2] = vb.z, st.b[r][3] = vb.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          st.a[r][i] = st.b[r][i] = kZeroWord;
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const bool ok = wbase + i < words;
        st.a[r][i] = ok ? ld_stream(ra[r] + wbase + i) : kZeroWord;
        st.b[r][i] = ok ? ld_stream(rb[r] + wbase + i) : kZeroWord;
      }
    }
  }
}

// Runs this warp's steps over K for the block whose first row of W is n0:
// W of the next step is loaded before consume(words, wbase) handles the
// current one (words: WStep, wbase: the lane's first word index in K).
// Rows past N re-read row N - 1 (the caller does not store them). W: warps per block.
template <int R, int W, bool Vec, class Consume>
__device__ __forceinline__ void gemv_k_loop(const uint32_t* wq, int N, int K, int n0, Consume&& consume) {
  const int words = K / 16;
  const int steps = (words + 15) / 16;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const uint32_t* ra[R];
  const uint32_t* rb[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    ra[r] = wq + size_t(min(n0 + 16 * r + g, N - 1)) * words;
    rb[r] = wq + size_t(min(n0 + 16 * r + g + 8, N - 1)) * words;
  }
  WStep<R> cur, nxt;
  int s = warp;
  if (s < steps) {
    load_w<R, Vec>(cur, ra, rb, 16 * s + 4 * t, words);
  }
  for (; s < steps; s += W) {
    const int wbase = 16 * s + 4 * t;
    if (s + W < steps) {
      load_w<R, Vec>(nxt, ra, rb, wbase + 16 * W, words);
    }
    consume(cur, wbase);
    cur = nxt;
  }
}

// acc (MMA accumulators of R tiles) summed over the block's W warps in warp
// order (deterministic): the threads of warp 0 get their lanes' totals back in
// acc (the other warps' acc is left partial: only warp 0 stores).
template <class A, int R, int W>
__device__ __forceinline__ void gemv_block_sum(A (&acc)[R][4], A (*red)[R][4][32]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      red[warp][r][c][lane] = acc[r][c];
    }
  }
  __syncthreads();
  if (warp != 0) {
    return;
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      A v = red[0][r][c][lane];
#pragma unroll
      for (int w = 1; w < W; ++w) {
        v += red[w][r][c][lane];
      }
      acc[r][c] = v;
    }
  }
}

// Output (m, n) of accumulator element c of tile r for this lane (the MMA's
// C layout: rows of W are n, columns are rows m of x).
__device__ __forceinline__ void gemv_out_index(int r, int c, int n0, int m0, int& n, int& m) {
  const int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  n = n0 + 16 * r + g + (c >= 2 ? 8 : 0);
  m = m0 + 2 * t + (c & 1);
}

} // namespace bitnet_cuda
