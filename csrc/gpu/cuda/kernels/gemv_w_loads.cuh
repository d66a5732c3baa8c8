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

// Row pointers of this lane: a[r] row 16 r + g, b[r] row 16 r + g + 8 of the
// block whose first row of W is n0 (rows past N re-read row N - 1; the caller
// does not store them).
template <int R>
struct WRows {
  const uint32_t* a[R];
  const uint32_t* b[R];
  __device__ __forceinline__ WRows(const uint32_t* wq, int N, int words, int n0, int g) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      a[r] = wq + size_t(min(n0 + 16 * r + g, N - 1)) * words;
      b[r] = wq + size_t(min(n0 + 16 * r + g + 8, N - 1)) * words;
    }
  }
};

// Runs this warp's steps over K for the block whose first row of W is n0:
// W of the next step is loaded before consume(words, wbase) handles the
// current one (words: WStep, wbase: the lane's first word index in K);
// issued() runs once the first step's loads are issued (the fused BitLinear
// quantizes x there). W: warps per block. (A ring of 4 steps in registers,
// the loop unrolled 4 times, took nvcc minutes per kernel; the deeper
// schedule is gemv_k_loop_async's.)
template <int R, int W, bool Vec, class Issued, class Consume>
__device__ __forceinline__ void gemv_k_loop_regs(
    const uint32_t* wq, int N, int K, int n0, Issued&& issued, Consume&& consume) {
  const int words = K / 16;
  const int steps = (words + 15) / 16;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = lane % 4;
  const WRows<R> rows(wq, N, words, n0, lane / 4);
  WStep<R> cur, nxt;
  int s = warp;
  if (s < steps) {
    load_w<R, Vec>(cur, rows.a, rows.b, 16 * s + 4 * t, words);
  }
  issued();
  for (; s < steps; s += W) {
    const int wbase = 16 * s + 4 * t;
    if (s + W < steps) {
      load_w<R, Vec>(nxt, rows.a, rows.b, wbase + 16 * W, words);
    }
    consume(cur, wbase);
    cur = nxt;
  }
}

// uint4s of shared memory a warp's ring of A steps takes in gemv_k_loop_async (A = 0: one, unused).
template <int R, int A>
constexpr int kGemvRingWords = A > 0 ? A * R * 2 * 32 : 1; // uint4s

// The same schedule with the W of A steps in flight in shared memory instead
// of registers (cp.async, 16 bytes per lane and row, lane-private slots: no
// barrier, no bank conflicts): a warp's bytes in flight are bounded by
// shared memory (the kernel's static ring) rather than by its registers,
// which the decode and the MMAs need. Vec only (16-byte loads); a step past
// K reads as kZeroWord. ring: this warp's A stages of R x 2 x 32 uint4.
template <int R, int W, int A, class Issued, class Consume>
__device__ __forceinline__ void gemv_k_loop_async(
    const uint32_t* wq, int N, int K, int n0, uint4* ring, Issued&& issued, Consume&& consume) {
  static_assert(A >= 2, "gemv_k_loop_async: at least one step in flight while one is computed");
  const int words = K / 16;
  const int steps = (words + 15) / 16;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = lane % 4;
  const WRows<R> rows(wq, N, words, n0, lane / 4);
  const auto slot = [&](int stage, int r, int half) { return ring + ((stage * R + r) * 2 + half) * 32 + lane; };
  const auto issue = [&](int s, int stage) {
    const int wbase = 16 * s + 4 * t;
    if (s < steps && wbase < words) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        cp_async_16(slot(stage, r, 0), rows.a[r] + wbase, 16);
        cp_async_16(slot(stage, r, 1), rows.b[r] + wbase, 16);
      }
    }
    cp_async_commit(); // empty groups too: the wait below counts groups
  };
#pragma unroll
  for (int j = 0; j < A - 1; ++j) {
    issue(warp + j * W, j);
  }
  issued();
  int stage = 0;
  for (int s = warp; s < steps; s += W) {
    issue(s + (A - 1) * W, stage == 0 ? A - 1 : stage - 1); // the stage consumed last
    cp_async_wait<A - 1>(); // step s has landed
    const int wbase = 16 * s + 4 * t;
    WStep<R> st;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const bool ok = wbase < words;
      const uint4 va = ok ? *slot(stage, r, 0) : make_uint4(kZeroWord, kZeroWord, kZeroWord, kZeroWord);
      const uint4 vb = ok ? *slot(stage, r, 1) : make_uint4(kZeroWord, kZeroWord, kZeroWord, kZeroWord);
      st.a[r][0] = va.x, st.a[r][1] = va.y, st.a[r][2] = va.z, st.a[r][3] = va.w;
      st.b[r][0] = vb.x, st.b[r][1] = vb.y, st.b[r][2] = vb.z, st.b[r][3] = vb.w;
    }
    consume(st, wbase);
    stage = stage + 1 == A ? 0 : stage + 1;
  }
  cp_async_wait<0>();
}

// The kernels' entry: A > 0 and Vec take the shared-memory ring (ring: the
// block's, kGemvRingWords<R, A> uint4s per warp), else one step ahead in registers.
template <int R, int W, int A, bool Vec, class Issued, class Consume>
__device__ __forceinline__ void gemv_k_loop(
    const uint32_t* wq, int N, int K, int n0, uint4* ring, Issued&& issued, Consume&& consume) {
  if constexpr (A > 0 && Vec) {
    gemv_k_loop_async<R, W, A>(wq, N, K, n0, ring + (threadIdx.x / 32) * kGemvRingWords<R, A>, issued, consume);
  } else {
    gemv_k_loop_regs<R, W, Vec>(wq, N, K, n0, issued, consume);
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
