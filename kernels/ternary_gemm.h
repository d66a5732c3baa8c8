// Ternary GEMM for prefill (large M), on simdgroup_matrix 8x8 tiles.
//
// A threadgroup of 4 simdgroups computes a GEMM_BM x GEMM_BN = 32 x 32 output tile; per
// step of GEMM_BK = 32 along the reduction it stages the activation tile (as
// float) and the weight tile, decoded once from its 2-bit codes (each of 64
// threads decodes one word into 16 values), in threadgroup memory. Each
// simdgroup owns a 16 x 16 quarter: 2 x 2 fragments of simdgroup_float8x8
// accumulated with simdgroup_multiply_accumulate. Tails in M, N and K are
// zero-filled while staging and masked when storing.
//
// MODE selects the product:
//   GEMM_T   y (M x N) = x (M x K) @ (diag(s) W).T   scale in the epilogue
//   GEMM_N   y (M x K) = x (M x N) @ diag(s) W       s(n) applied while decoding
//   GEMM_I8  bitlinear: xq int8 (M x K) @ W.T, exact (integers < 2^24 in
//            float32), epilogue ((acc * xscale[m]) * s(n)) + bias[n]
#pragma once

#include "bitlinear.h"
#include "ternary_utils.h"

#define GEMM_T 0
#define GEMM_N 1
#define GEMM_I8 2

#define GEMM_BM 32
#define GEMM_BN 32
#define GEMM_BK 32
#define GEMM_THREADS 128

template <typename TX, typename TY, int MODE>
inline void ternary_gemm_impl(
    const device TX* x,
    const device float* xscale, // GEMM_I8 only
    const device uint* wq,
    const device float* scale,
    const device float* bias, // GEMM_I8 only
    device TY* y,
    int M,
    int N,
    int K,
    int per_row,
    int has_bias,
    threadgroup float* smem, // As [GEMM_BM][GEMM_BK] then Bs [GEMM_BK][GEMM_BN]; reused for the output tile
    uint3 tgid,
    uint tid,
    uint sgid) {
  threadgroup float* As = smem;
  threadgroup float* Bs = smem + GEMM_BM * GEMM_BK;
  const int words = K / 16;
  // Reduction length and output columns.
  const int R = MODE == GEMM_N ? N : K;
  const int C = MODE == GEMM_N ? K : N;
  const int m0 = static_cast<int>(tgid.y) * GEMM_BM;
  const int c0 = static_cast<int>(tgid.x) * GEMM_BN;
  const int sm = static_cast<int>(sgid) / 2;
  const int sn = static_cast<int>(sgid) % 2;

  simdgroup_float8x8 acc[2][2];
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    }
  }

  for (int r0 = 0; r0 < R; r0 += GEMM_BK) {
    // Activation tile As[i][kk] = x[m0 + i, r0 + kk].
    for (int e = static_cast<int>(tid); e < GEMM_BM * GEMM_BK; e += GEMM_THREADS) {
      const int i = e / GEMM_BK;
      const int kk = e % GEMM_BK;
      float v = 0.0f;
      if (m0 + i < M && r0 + kk < R) {
        v = static_cast<float>(x[static_cast<ulong>(m0 + i) * R + r0 + kk]);
      }
      As[e] = v;
    }
    // Weight tile Bs[kk][j], one packed word per thread.
    if (tid < 2 * GEMM_BN) {
      if (MODE == GEMM_N) {
        // Bs[nn][16 h + jj] = s(n) W[n, c0 + 16 h + jj], n = r0 + nn.
        const int nn = static_cast<int>(tid) / 2;
        const int h = static_cast<int>(tid) % 2;
        const int n = r0 + nn;
        const int wi = c0 / 16 + h;
        const bool ok = n < N && wi < words;
        const uint w = ok ? wq[static_cast<ulong>(n) * words + wi] : 0x55555555u; // code 1 = 0
        const float s = ok ? row_scale(scale, per_row, n) : 0.0f;
        for (int jj = 0; jj < 16; ++jj) {
          Bs[nn * GEMM_BN + 16 * h + jj] = s * static_cast<float>(ternary_at(w, jj));
        }
      } else {
        // Bs[16 h + jj][j] = W[c0 + j, r0 + 16 h + jj].
        const int j = static_cast<int>(tid) / 2;
        const int h = static_cast<int>(tid) % 2;
        const int n = c0 + j;
        const int wi = r0 / 16 + h;
        const bool ok = n < N && wi < words;
        const uint w = ok ? wq[static_cast<ulong>(n) * words + wi] : 0x55555555u;
        for (int jj = 0; jj < 16; ++jj) {
          Bs[(16 * h + jj) * GEMM_BN + j] = static_cast<float>(ternary_at(w, jj));
        }
      }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);

    for (int kk = 0; kk < GEMM_BK; kk += 8) {
      simdgroup_float8x8 a[2];
      simdgroup_float8x8 b[2];
      for (int i = 0; i < 2; ++i) {
        simdgroup_load(a[i], As + (sm * 16 + 8 * i) * GEMM_BK + kk, GEMM_BK);
      }
      for (int j = 0; j < 2; ++j) {
        simdgroup_load(b[j], Bs + kk * GEMM_BN + sn * 16 + 8 * j, GEMM_BN);
      }
      for (int i = 0; i < 2; ++i) {
        for (int j = 0; j < 2; ++j) {
          simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);
        }
      }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }

  // Output tile through threadgroup memory (As is free now), then masked stores.
  threadgroup float* Cs = smem;
  for (int i = 0; i < 2; ++i) {
    for (int j = 0; j < 2; ++j) {
      simdgroup_store(acc[i][j], Cs + (sm * 16 + 8 * i) * GEMM_BN + sn * 16 + 8 * j, GEMM_BN);
    }
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  for (int e = static_cast<int>(tid); e < GEMM_BM * GEMM_BN; e += GEMM_THREADS) {
    const int i = e / GEMM_BN;
    const int j = e % GEMM_BN;
    const int m = m0 + i;
    const int c = c0 + j;
    if (m < M && c < C) {
      const float v = Cs[e];
      device TY* out = y + static_cast<ulong>(m) * C + c;
      if (MODE == GEMM_T) {
        *out = static_cast<TY>(row_scale(scale, per_row, c) * v);
      } else if (MODE == GEMM_N) {
        *out = static_cast<TY>(v);
      } else {
        bitlinear_store(out, static_cast<int>(v), xscale[m], row_scale(scale, per_row, c), bias, has_bias, c);
      }
    }
  }
}
