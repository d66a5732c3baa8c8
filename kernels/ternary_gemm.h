// Ternary GEMM for prefill (large M), on simdgroup_matrix 8x8 fragments.
//
// A threadgroup of GEMM_THREADS = 128 threads (2 x 2 simdgroups) computes a
// BM x BN output tile (BM, BN in {32, 64}: template arguments, chosen by the
// launch plan). Per step of GEMM_BK = 32 along the reduction it stages two
// tiles in threadgroup memory:
//   A: the activations, BM x GEMM_BK, in their own type T (half / bfloat
//      stay 2 bytes; the int8 path stages half, exact for |q| <= 2048),
//      copied as 16-byte runs, one or more per thread;
//   B: the weights, decoded once from their 2-bit codes by all 128 threads
//      (BN * GEMM_BK / 128 codes each, all from one word), as half
//      (W in {-1, 0, 1, 2} is exact in half) or, for the transposed product,
//      as float s(n) W (the per-row scale runs along the reduction there).
// Every tile row is padded by 16 bytes (as MLX's steel GEMM does): with a
// 64- or 128-byte row stride the 8 rows of a fragment load would fall into
// the same 4-byte banks (docs/metal_backend.md counts the accesses).
// Each simdgroup owns a (BM/2) x (BN/2) quarter: TM x TN float fragments,
// loaded lane by lane from the tiles (each lane holds elements (r, c) and
// (r, c + 1) of a fragment, Apple's layout) and accumulated with
// simdgroup_multiply_accumulate in float. Results go from the accumulators
// straight to device memory with the epilogue; tails in M, the output
// columns and the reduction are zero-filled while staging and masked when
// storing.
//
// MODE selects the product:
//   GEMM_T   y (M x N) = x (M x K) @ (diag(s) W).T   scale in the epilogue
//   GEMM_N   y (M x K) = x (M x N) @ diag(s) W       s(n) applied while decoding
//   GEMM_I8  bitlinear: xq int8 (M x K) @ W.T, exact: every product is an
//            integer of magnitude <= 128 * 2 and every partial sum one of at
//            most 256 K <= 2^24 (the plan's K <= 2^16), so float32 adds are
//            exact in any order; epilogue ((acc * xscale[m]) * s(n)) + bias[n]
#pragma once

#include "bitlinear.h"
#include "ternary_utils.h"

#define GEMM_T 0
#define GEMM_N 1
#define GEMM_I8 2

#define GEMM_BK 32
#define GEMM_THREADS 128
// Padding of every threadgroup tile row, in bytes.
#define GEMM_PAD_BYTES 16

// A run of N elements copied as one unit (MLX's loaders do the same): the
// compiler moves it with the widest loads and stores the alignment allows.
template <typename T, int N>
struct gemm_run {
  T v[N];
};

// A run converted to the tile's type (a plain copy when the types agree).
template <typename T, int N>
inline gemm_run<T, N> gemm_convert(gemm_run<T, N> in, T) {
  return in;
}
template <typename TA, typename TX, int N>
inline gemm_run<TA, N> gemm_convert(gemm_run<TX, N> in, TA) {
  gemm_run<TA, N> out;
  for (int j = 0; j < N; ++j) {
    out.v[j] = static_cast<TA>(static_cast<float>(in.v[j]));
  }
  return out;
}

// Row strides (elements) of the padded threadgroup tiles; the launch plan
// sizes [[threadgroup(0)]] / [[threadgroup(1)]] with the same formulas.
template <typename TA>
inline int gemm_lda() {
  return GEMM_BK + GEMM_PAD_BYTES / static_cast<int>(sizeof(TA));
}

// Stage A[i][kk] = x[m0 + i, r0 + kk] (zero outside M x R) for i < BM,
// kk < GEMM_BK. Thread t copies runs of V elements: run v = t + 128 u covers
// row v / (GEMM_BK / V), columns V (v % (GEMM_BK / V)) .. + V - 1, so the 4
// to 8 threads of one row read one contiguous 64- or 128-byte piece of it.
template <typename TX, typename TA, int BM>
inline void gemm_stage_x(
    const device TX* x,
    threadgroup TA* As,
    int M,
    int R,
    int m0,
    int r0,
    uint tid) {
  // 16 bytes of x per run, fewer when the tile has fewer elements than 128 runs of 16 bytes.
  constexpr int V0 = 16 / static_cast<int>(sizeof(TX));
  constexpr int V = V0 * GEMM_THREADS <= BM * GEMM_BK ? V0 : BM * GEMM_BK / GEMM_THREADS;
  constexpr int RUNS_PER_ROW = GEMM_BK / V;
  constexpr int RUNS = BM * GEMM_BK / V;
  const int lda = gemm_lda<TA>();
  for (int v = static_cast<int>(tid); v < RUNS; v += GEMM_THREADS) {
    const int i = v / RUNS_PER_ROW;
    const int kk = (v % RUNS_PER_ROW) * V;
    const int m = m0 + i;
    const int r = r0 + kk;
    const device TX* src = x + static_cast<ulong>(m) * R + r;
    threadgroup TA* dst = As + i * lda + kk;
    if (m < M && r + V <= R) {
      const gemm_run<TX, V> in = *reinterpret_cast<const device gemm_run<TX, V>*>(src);
      *reinterpret_cast<threadgroup gemm_run<TA, V>*>(dst) = gemm_convert(in, TA());
    } else {
      for (int j = 0; j < V; ++j) {
        dst[j] = static_cast<TA>((m < M && r + j < R) ? static_cast<float>(src[j]) : 0.0f);
      }
    }
  }
}

// Stage the weights of the product y = x @ W.T (GEMM_T, GEMM_I8):
// Bs[j][kk] = W[c0 + j, r0 + kk] for j < BN, kk < GEMM_BK, as half. Thread t
// decodes P = BN / 4 codes of row j = t / (GEMM_BK / P), all from one word
// (P <= 16 and P divides 16), and stores them as one run.
template <int BN>
inline void gemm_stage_w(
    const device uint* wq,
    const device float*, // the scale goes to the epilogue
    threadgroup half* Bs,
    int N,
    int words,
    int,
    int c0,
    int r0,
    uint tid) {
  constexpr int P = BN * GEMM_BK / GEMM_THREADS;
  constexpr int CHUNKS = GEMM_BK / P;
  const int ldb = gemm_lda<half>();
  const int j = static_cast<int>(tid) / CHUNKS;
  const int kk = (static_cast<int>(tid) % CHUNKS) * P;
  const int n = c0 + j;
  const int wi = (r0 + kk) / 16;
  const uint w = (n < N && wi < words) ? wq[static_cast<ulong>(n) * words + wi] : 0x55555555u; // code 1 = 0
  const int shift = 2 * (kk % 16);
  gemm_run<half, P> out;
  for (int q = 0; q < P; ++q) {
    out.v[q] = static_cast<half>(static_cast<float>(ternary_at(w >> shift, q)));
  }
  *reinterpret_cast<threadgroup gemm_run<half, P>*>(Bs + j * ldb + kk) = out;
}

// Stage the weights of the product y = x @ diag(s) W (GEMM_N), the reduction
// running over the rows n of W: Bs[nn][j] = s(n) W[n, c0 + j] for
// nn < GEMM_BK, j < BN, n = r0 + nn, as float. Thread t decodes P = BN / 4
// codes of row nn = t / 4, all from one word.
template <int BN>
inline void gemm_stage_w(
    const device uint* wq,
    const device float* scale,
    threadgroup float* Bs,
    int N,
    int words,
    int per_row,
    int c0,
    int r0,
    uint tid) {
  constexpr int P = BN * GEMM_BK / GEMM_THREADS;
  constexpr int CHUNKS = BN / P;
  const int ldb = BN + GEMM_PAD_BYTES / 4;
  const int nn = static_cast<int>(tid) / CHUNKS;
  const int j = (static_cast<int>(tid) % CHUNKS) * P;
  const int n = r0 + nn;
  const int wi = (c0 + j) / 16;
  const bool ok = n < N && wi < words;
  const uint w = ok ? wq[static_cast<ulong>(n) * words + wi] : 0x55555555u;
  const float s = ok ? row_scale(scale, per_row, n) : 0.0f;
  const int shift = 2 * (j % 16);
  gemm_run<float, P> out;
  for (int q = 0; q < P; ++q) {
    out.v[q] = s * static_cast<float>(ternary_at(w >> shift, q));
  }
  *reinterpret_cast<threadgroup gemm_run<float, P>*>(Bs + nn * ldb + j) = out;
}

// Row and column of fragment element 0 held by `lane` (element 1 is the next
// column): Apple's simdgroup_matrix layout, as MLX's steel MMA fragments use.
inline int gemm_frag_row(uint lane) {
  return static_cast<int>(((lane >> 4) & 1u) * 4 + ((lane >> 1) & 3u));
}
inline int gemm_frag_col(uint lane) {
  return static_cast<int>(((lane >> 3) & 1u) * 4 + (lane & 1u) * 2);
}

template <typename TX, typename TA, typename TB, typename TY, int MODE, int BM, int BN>
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
    threadgroup TA* As, // [BM][GEMM_BK + pad]
    threadgroup TB* Bs, // [BN][GEMM_BK + pad] (GEMM_T, GEMM_I8) or [GEMM_BK][BN + pad] (GEMM_N)
    uint3 tgid,
    uint tid,
    uint sgid,
    uint lane) {
  constexpr int TM = BM / 16; // fragments per simdgroup along M
  constexpr int TN = BN / 16; // and along the output columns
  const int lda = gemm_lda<TA>();
  const int ldb = MODE == GEMM_N ? BN + GEMM_PAD_BYTES / static_cast<int>(sizeof(TB)) : gemm_lda<TB>();
  const int words = K / 16;
  // Reduction length and output columns.
  const int R = MODE == GEMM_N ? N : K;
  const int C = MODE == GEMM_N ? K : N;
  const int m0 = static_cast<int>(tgid.y) * BM;
  const int c0 = static_cast<int>(tgid.x) * BN;
  // This simdgroup's quarter of the tile, and this lane's place in a fragment.
  const int wm = (static_cast<int>(sgid) / 2) * (BM / 2);
  const int wn = (static_cast<int>(sgid) % 2) * (BN / 2);
  const int fr = gemm_frag_row(lane);
  const int fc = gemm_frag_col(lane);

  simdgroup_float8x8 acc[TM][TN];
  for (int i = 0; i < TM; ++i) {
    for (int j = 0; j < TN; ++j) {
      acc[i][j] = make_filled_simdgroup_matrix<float, 8, 8>(0.0f);
    }
  }

  for (int r0 = 0; r0 < R; r0 += GEMM_BK) {
    gemm_stage_x<TX, TA, BM>(x, As, M, R, m0, r0, tid);
    gemm_stage_w<BN>(wq, scale, Bs, N, words, per_row, c0, r0, tid); // by Bs's type: half (T, I8), float (N)
    threadgroup_barrier(mem_flags::mem_threadgroup);

    for (int kk = 0; kk < GEMM_BK; kk += 8) {
      simdgroup_float8x8 a[TM];
      simdgroup_float8x8 b[TN];
      for (int i = 0; i < TM; ++i) {
        const threadgroup TA* p = As + (wm + 8 * i + fr) * lda + kk + fc;
        a[i].thread_elements()[0] = static_cast<float>(p[0]);
        a[i].thread_elements()[1] = static_cast<float>(p[1]);
      }
      for (int j = 0; j < TN; ++j) {
        // b[j] holds B(kk + fr, wn + 8 j + fc + e) for e = 0, 1.
        if (MODE == GEMM_N) {
          const threadgroup TB* p = Bs + (kk + fr) * ldb + wn + 8 * j + fc;
          b[j].thread_elements()[0] = static_cast<float>(p[0]);
          b[j].thread_elements()[1] = static_cast<float>(p[1]);
        } else {
          const threadgroup TB* p = Bs + (wn + 8 * j + fc) * ldb + kk + fr;
          b[j].thread_elements()[0] = static_cast<float>(p[0]);
          b[j].thread_elements()[1] = static_cast<float>(p[ldb]);
        }
      }
      for (int i = 0; i < TM; ++i) {
        for (int j = 0; j < TN; ++j) {
          simdgroup_multiply_accumulate(acc[i][j], a[i], b[j], acc[i][j]);
        }
      }
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
  }

  // Epilogue, straight from the accumulators: lane holds (m, c) and (m, c + 1).
  for (int i = 0; i < TM; ++i) {
    const int m = m0 + wm + 8 * i + fr;
    if (m >= M) {
      continue;
    }
    for (int j = 0; j < TN; ++j) {
      for (int e = 0; e < 2; ++e) {
        const int c = c0 + wn + 8 * j + fc + e;
        if (c >= C) {
          continue;
        }
        const float v = acc[i][j].thread_elements()[e];
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
}
