// Ternary GEMV for decode (M from 1 to ~16): y = x @ (diag(s) W).T.
//
// A threadgroup is TGV_SIMDGROUPS simdgroups; each simdgroup owns TGV_ROWS
// consecutive rows of W and BM rows of x. Its 32 lanes split K: per step a
// lane reads 4 words (64 codes) of each of its rows as 4 coalesced words
// (word b + 32u + lane: each load instruction of the simdgroup covers 128
// consecutive bytes of W and 512 consecutive x values), decodes them in
// registers and accumulates sum x * code in float; sum x is shared by all
// rows. simd_sum reduces the lanes. (A uint4 variant, 4 consecutive words per
// lane, spread each x load over 4x the cache lines and was 1.2-2.6x slower at
// every measured shape: bench/results/metal-designs.md.) Rows past N re-read row N-1 (no
// divergence in the loop) and are not stored; any K % 16 == 0 works (the
// tail after the last full 128-word block takes one word per lane).
#pragma once

#include "ternary_utils.h"

#define TGV_ROWS 4
#define TGV_SIMDGROUPS 2

// One word column `wi` of the TGV_ROWS rows (words wv[r]) against BM rows of x.
// BM > 1: each word is decoded once, before the loop over the rows of x; BM = 1:
// on the fly (nothing to share, 64 fewer live floats). H200 measurements of
// both: bench/results/metal-designs.md.
template <typename T, int BM>
inline void gemv_t_word(
    const device T* x,
    int K,
    int mrows,
    int wi,
    thread const uint* wv,
    thread float* acc) {
  float codes[TGV_ROWS][16];
  if (BM > 1) {
    for (int r = 0; r < TGV_ROWS; ++r) {
      decode_codes16(wv[r], codes[r]);
    }
  }
  for (int m = 0; m < BM; ++m) {
    if (m < mrows) {
      float xs[16];
      const device T* xp = x + static_cast<ulong>(m) * K + wi * 16;
      float xsum = load_x16_scaled(xp, xs);
      if (is_finite_bits(xsum)) {
        for (int r = 0; r < TGV_ROWS; ++r) {
          acc[m * TGV_ROWS + r] += (BM > 1 ? dot16(codes[r], xs) : dot_codes16(wv[r], xs)) - xsum;
        }
      } else {
        // An inf or NaN among these x: sum x W directly (the identity gives inf - inf).
        for (int r = 0; r < TGV_ROWS; ++r) {
          acc[m * TGV_ROWS + r] += dot_ternary16(wv[r], xp);
        }
      }
    }
  }
}

template <typename T, int BM>
inline void ternary_gemv_t_impl(
    const device T* x,
    const device uint* wq,
    const device float* scale,
    device T* y,
    int M,
    int N,
    int K,
    int per_row,
    uint3 tgid,
    uint sgid,
    uint lane) {
  const int words = K / 16;
  const int row0 = (static_cast<int>(tgid.x) * TGV_SIMDGROUPS + static_cast<int>(sgid)) * TGV_ROWS;
  const int m0 = static_cast<int>(tgid.y) * BM;
  const int mrows = min(BM, M - m0);
  x += static_cast<ulong>(m0) * K;

  const device uint* wrow[TGV_ROWS];
  for (int r = 0; r < TGV_ROWS; ++r) {
    wrow[r] = wq + static_cast<ulong>(min(row0 + r, N - 1)) * words;
  }

  float acc[BM * TGV_ROWS];
  for (int i = 0; i < BM * TGV_ROWS; ++i) {
    acc[i] = 0.0f;
  }

  // Full blocks of 32 lanes x 4 words.
  int b = 0;
  for (; b + 128 <= words; b += 128) {
    uint wv[4][TGV_ROWS];
    for (int u = 0; u < 4; ++u) {
      for (int r = 0; r < TGV_ROWS; ++r) {
        wv[u][r] = wrow[r][b + 32 * u + static_cast<int>(lane)];
      }
    }
    for (int u = 0; u < 4; ++u) {
      gemv_t_word<T, BM>(x, K, mrows, b + 32 * u + static_cast<int>(lane), wv[u], acc);
    }
  }
  // Tail: fewer than 128 words left, one word per lane per step.
  for (int wi = b + static_cast<int>(lane); wi < words; wi += 32) {
    uint wv[TGV_ROWS];
    for (int r = 0; r < TGV_ROWS; ++r) {
      wv[r] = wrow[r][wi];
    }
    gemv_t_word<T, BM>(x, K, mrows, wi, wv, acc);
  }

  for (int m = 0; m < BM; ++m) {
    if (m < mrows) {
      for (int r = 0; r < TGV_ROWS; ++r) {
        float total = simd_sum(acc[m * TGV_ROWS + r]);
        const int n = row0 + r;
        if (lane == static_cast<uint>(r) && n < N) {
          y[static_cast<ulong>(m0 + m) * N + n] = static_cast<T>(row_scale(scale, per_row, n) * total);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Transposed ternary GEMV (the VJP, M small): y = x @ diag(s) W, y is M x K.
//
// Each lane owns one word column of W (16 outputs k); a threadgroup covers 32
// word columns (512 outputs) and the rows n in [n0, n0 + rows) of W, with
// n0 = tgid.z * rows: N is split across the grid (K / 512 threadgroups alone
// would be 5 for K = 2560). Its TGVN_SIMDGROUPS simdgroups split those rows
// (simdgroup g takes n = n0 + g, n0 + g + TGVN_SIMDGROUPS, ...), so each warp
// reads 32 consecutive words (128 bytes) of a row per step. Per m, the
// simdgroups' sums meet in threadgroup memory, are added in a fixed order and
// stored as float in part[tgid.z][m][k]; ternary_gemv_n_reduce adds the
// splits in order. Uses sum_n a_n W_nk = sum_n a_n code_nk - sum_n a_n with
// a_n = x[m, n] s(n).
#define TGVN_SIMDGROUPS 8

template <typename T, int BM>
inline void ternary_gemv_n_impl(
    const device T* x,
    const device uint* wq,
    const device float* scale,
    device float* part,
    int M,
    int N,
    int K,
    int per_row,
    int rows,
    threadgroup float* partial, // [TGVN_SIMDGROUPS][32 * 16]
    uint3 tgid,
    uint tid,
    uint sgid,
    uint lane) {
  const int words = K / 16;
  const int col = static_cast<int>(tgid.x) * 32 + static_cast<int>(lane); // word column
  const int col_load = min(col, words - 1);
  const int m0 = static_cast<int>(tgid.y) * BM;
  const int mrows = min(BM, M - m0);
  x += static_cast<ulong>(m0) * N;
  const int n0 = static_cast<int>(tgid.z) * rows;
  const int n1 = min(N, n0 + rows);

  float acc[BM * 16];
  float asum[BM];
  for (int i = 0; i < BM * 16; ++i) {
    acc[i] = 0.0f;
  }
  for (int m = 0; m < BM; ++m) {
    asum[m] = 0.0f;
  }

  for (int n = n0 + static_cast<int>(sgid); n < n1; n += TGVN_SIMDGROUPS) {
    const uint w = wq[static_cast<ulong>(n) * words + col_load];
    const float s = row_scale(scale, per_row, n);
    for (int m = 0; m < BM; ++m) {
      if (m < mrows) {
        const float a = static_cast<float>(x[static_cast<ulong>(m) * N + n]) * s;
        asum[m] += a;
        // a * 4^-i times the code masked in place in its byte (exact scaling).
        const float a4[4] = {a, a * 0.25f, a * 0.0625f, a * 0.015625f};
        for (int i = 0; i < 4; ++i) {
          const uint b = (w >> (8 * i)) & 0xFFu;
          acc[m * 16 + 4 * i + 0] = fma(a4[0], static_cast<float>(b & 0x03u), acc[m * 16 + 4 * i + 0]);
          acc[m * 16 + 4 * i + 1] = fma(a4[1], static_cast<float>(b & 0x0Cu), acc[m * 16 + 4 * i + 1]);
          acc[m * 16 + 4 * i + 2] = fma(a4[2], static_cast<float>(b & 0x30u), acc[m * 16 + 4 * i + 2]);
          acc[m * 16 + 4 * i + 3] = fma(a4[3], static_cast<float>(b & 0xC0u), acc[m * 16 + 4 * i + 3]);
        }
      }
    }
  }

  // An inf or NaN among this simdgroup's a_n (uniform over its lanes): the
  // identity gives inf - inf, so sum a_n W_nk again directly (rare).
  for (int m = 0; m < BM; ++m) {
    if (m < mrows && !is_finite_bits(asum[m])) {
      for (int j = 0; j < 16; ++j) {
        acc[m * 16 + j] = 0.0f;
      }
      for (int n = n0 + static_cast<int>(sgid); n < n1; n += TGVN_SIMDGROUPS) {
        const uint w = wq[static_cast<ulong>(n) * words + col_load];
        const float a = static_cast<float>(x[static_cast<ulong>(m) * N + n]) * row_scale(scale, per_row, n);
        for (int j = 0; j < 16; ++j) {
          acc[m * 16 + j] = fma(a, static_cast<float>(ternary_at(w, j)), acc[m * 16 + j]);
        }
      }
      asum[m] = 0.0f;
    }
  }

  const int threads = 32 * TGVN_SIMDGROUPS;
  for (int m = 0; m < BM; ++m) {
    if (m < mrows) {
      for (int j = 0; j < 16; ++j) {
        partial[sgid * 512 + lane * 16 + j] = acc[m * 16 + j] - asum[m];
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);
      for (int o = static_cast<int>(tid); o < 512; o += threads) {
        float total = 0.0f;
        for (int g = 0; g < TGVN_SIMDGROUPS; ++g) {
          total += partial[g * 512 + o];
        }
        const int k = static_cast<int>(tgid.x) * 512 + o;
        if (k < K) {
          part[(static_cast<ulong>(tgid.z) * M + m0 + m) * K + k] = total;
        }
      }
      threadgroup_barrier(mem_flags::mem_threadgroup);
    }
  }
}

// y[i] = T(sum over the splits s = 0, 1, ... of part[s][i]), in that order
// (one thread per element i of the M x K output).
template <typename T>
inline void ternary_gemv_n_reduce_impl(const device float* part, device T* y, int count, int splits, uint i) {
  if (static_cast<int>(i) >= count) {
    return;
  }
  float total = 0.0f;
  for (int s = 0; s < splits; ++s) {
    total += part[static_cast<ulong>(s) * count + i];
  }
  y[i] = static_cast<T>(total);
}
