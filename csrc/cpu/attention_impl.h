// The attention of attention_kernel.h over a dense vector policy ("DOps", see
// dense_impl.h: L, vf, zero, lf, lw, bf, fmadd, add, hsum, sf). Each
// dense_<level>.cpp instantiates AttentionSimd<its policy>::run.
//
// Work is split over (batch, key-value head, block of queries): a task
// takes the G = Hq / Hkv query heads of one key-value head for up to
// kQueryBlock queries (rows r = g * nq + i), so each key and value row is
// read and widened to float32 once per task and used by all its rows.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "attention_kernel.h"
#include "dense_impl.h" // Bf16, F16, to_float
#include "thread_pool.h"

namespace bitnet_ext::cpu {
namespace {

// exp(x) for the max-subtracted scores (x <= 0; NaN stays NaN): 2^n * 2^f,
// n = round(x log2 e), |f| <= 1/2, 2^f by its Taylor series to degree 6
// (relative error < 2e-7). Below -87 it returns exp(-87) ~ 1.6e-38 instead of
// a smaller number or 0: no weight that small changes a float32 sum that holds
// the row's largest weight, 1. Written as plain arithmetic so the compiler
// vectorizes the loop that calls it.
inline float softmax_exp(float x) {
  const float t = std::max(x, -87.0f) * 1.44269504088896341f;
  const float n = std::nearbyint(t);
  const float f = (t - n) * 0.693147180559945309f;
  float p = 1.0f / 720.0f;
  p = p * f + 1.0f / 120.0f;
  p = p * f + 1.0f / 24.0f;
  p = p * f + 1.0f / 6.0f;
  p = p * f + 0.5f;
  p = p * f + 1.0f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, 4);
  return p * two_n;
}

template <class Ops>
struct AttentionSimd {
  using vf = typename Ops::vf;
  static constexpr int L = Ops::L;
  // Queries per task of a prompt: G * kQueryBlock rows share each key and
  // value row; their scores (rows x keys floats) stay in L2 for 512 keys.
  static constexpr int64_t kQueryBlock = 16;

  // Per-thread buffers (grow only).
  struct Buffers {
    std::vector<float> scores, acc, row, kt, sums;
    std::vector<const float*> qp;
    std::vector<float*> outp;
  };
  static Buffers& buffers() {
    thread_local Buffers b;
    return b;
  }

  template <class T>
  static void widen(const T* src, int64_t D, float* dst) {
    int64_t d = 0;
    for (; d + L <= D; d += L) Ops::sf(dst + d, Ops::lw(src + d));
    for (; d < D; ++d) dst[d] = to_float(src[d]);
  }

  static float dot(const float* a, const float* b, int64_t D) {
    vf s0 = Ops::zero(), s1 = Ops::zero();
    int64_t d = 0;
    for (; d + 2 * L <= D; d += 2 * L) {
      s0 = Ops::fmadd(Ops::lf(a + d), Ops::lf(b + d), s0);
      s1 = Ops::fmadd(Ops::lf(a + d + L), Ops::lf(b + d + L), s1);
    }
    for (; d + L <= D; d += L) s0 = Ops::fmadd(Ops::lf(a + d), Ops::lf(b + d), s0);
    float s = Ops::hsum(Ops::add(s0, s1));
    for (; d < D; ++d) s += a[d] * b[d];
    return s;
  }

  // acc[r][0, D) = sum over s < e of p[r][s] * v[s][0, D) for nr <=
  // kRowTile rows (p is 0 past each row's visible keys), D in register tiles
  // of 2 vectors: each value vector is loaded and widened once per row tile.
  // 8 rows x 2 vectors = 16 accumulators with 32 vector registers (AVX-512), 8 with 16.
  static constexpr int kRowTile = L >= 16 ? 8 : 4;
  template <class T>
  static void weighted_values(const T* vb, int64_t vs, int64_t e, const float* p, int64_t ldp, int nr, int64_t D,
                              float* acc) {
    int64_t d = 0;
    for (; d + 2 * L <= D; d += 2 * L) {
      vf a[kRowTile][2];
      for (int r = 0; r < kRowTile; ++r) a[r][0] = a[r][1] = Ops::zero();
      for (int64_t s = 0; s < e; ++s) {
        const vf v0 = Ops::lw(vb + s * vs + d), v1 = Ops::lw(vb + s * vs + d + L);
        for (int r = 0; r < kRowTile; ++r) {
          if (r < nr) {
            const vf pr = Ops::bf(p + r * ldp + s);
            a[r][0] = Ops::fmadd(pr, v0, a[r][0]);
            a[r][1] = Ops::fmadd(pr, v1, a[r][1]);
          }
        }
      }
      for (int r = 0; r < nr; ++r) {
        Ops::sf(acc + r * D + d, a[r][0]);
        Ops::sf(acc + r * D + d + L, a[r][1]);
      }
    }
    for (; d < D; ++d) {
      for (int r = 0; r < nr; ++r) {
        float t = 0.0f;
        for (int64_t s = 0; s < e; ++s) t += p[r * ldp + s] * to_float(vb[s * vs + d]);
        acc[r * D + d] = t;
      }
    }
  }

  // out[i][0, KT) = scale * (q_i . key j of the tile), for n rows; kt: the
  // tile as kt[d * KT + j], floats. Register tile: kRowTile rows x 2 vectors.
  static constexpr int KT = 2 * L;
  static void score_tile(const float* kt, const float* const* qp, float* const* out, int n, int64_t D, float scale) {
    for (int i = 0; i < n; i += kRowTile) {
      const int nr = std::min(kRowTile, n - i);
      vf acc[kRowTile][2];
      for (int r = 0; r < kRowTile; ++r) acc[r][0] = acc[r][1] = Ops::zero();
      for (int64_t d = 0; d < D; ++d) {
        const vf k0 = Ops::lf(kt + d * KT), k1 = Ops::lf(kt + d * KT + L);
        for (int r = 0; r < kRowTile; ++r) {
          if (r < nr) {
            const vf qb = Ops::bf(qp[i + r] + d);
            acc[r][0] = Ops::fmadd(qb, k0, acc[r][0]);
            acc[r][1] = Ops::fmadd(qb, k1, acc[r][1]);
          }
        }
      }
      for (int r = 0; r < nr; ++r) {
        float* o = out[i + r];
        Ops::sf(o, acc[r][0]);
        Ops::sf(o + L, acc[r][1]);
        for (int j = 0; j < KT; ++j) o[j] *= scale;
      }
    }
  }

  // p[0, n) = exp(p - max p) (NaN anywhere: all NaN); returns their sum.
  static float softmax_row(float* p, int64_t n) {
    float m = -INFINITY;
    bool nan = false;
    for (int64_t s = 0; s < n; ++s) {
      nan |= p[s] != p[s];
      m = std::max(m, p[s]);
    }
    if (nan) m = NAN; // std::max drops NaNs; MLX's softmax keeps them
    for (int64_t s = 0; s < n; ++s) p[s] = softmax_exp(p[s] - m); // vectorized by the compiler
    vf t = Ops::zero();
    int64_t s = 0;
    for (; s + L <= n; s += L) t = Ops::add(t, Ops::lf(p + s));
    float sum = Ops::hsum(t);
    for (; s < n; ++s) sum += p[s];
    return sum;
  }

  // One task: batch b, key-value head h, queries [i0, i1).
  template <class T>
  static void task(const AttentionArgs& a, int64_t b, int64_t h, int64_t i0, int64_t i1) {
    const int64_t G = a.Hq / a.Hkv, D = a.D, nq = i1 - i0, R = G * nq;
    const int64_t offset = a.S - a.L; // query i sits at position offset + i
    // Keys query i sees: [0, vis[i - i0]).
    int64_t vis[kQueryBlock];
    for (int64_t i = i0; i < i1; ++i) vis[i - i0] = a.causal ? std::clamp<int64_t>(offset + i + 1, 0, a.S) : a.S;
    const int64_t e = vis[nq - 1]; // the block's widest row
    const T* kb = static_cast<const T*>(a.k) + b * a.k_stride[0] + h * a.k_stride[1];
    const T* vb = static_cast<const T*>(a.v) + b * a.v_stride[0] + h * a.v_stride[1];
    Buffers& buf = buffers();
    buf.scores.resize(static_cast<size_t>(std::max<int64_t>(R * e, 1)));
    buf.acc.resize(static_cast<size_t>(R * D));
    buf.row.resize(static_cast<size_t>(D));
    float* sc = buf.scores.data(); // row r = g * nq + (i - i0): scores of query i, head h * G + g
    float* acc = buf.acc.data();
    float* row = buf.row.data();
    const float* q0 = a.q + ((b * a.Hq + h * G) * a.L + i0) * D; // row r at q0 + (g * L + i - i0) * D

    // Scores, KT keys at a time: the key tile transposed to float32 (d-major,
    // kt[d][j]) so each row's scores come from broadcasts of q and FMAs, no
    // horizontal sums; only rows that see part of the tile (rows of one head
    // see nested prefixes) are computed. Other keys: one dot per row.
    buf.kt.resize(static_cast<size_t>(D * KT));
    float* kt = buf.kt.data();
    buf.qp.resize(static_cast<size_t>(R));
    buf.outp.resize(static_cast<size_t>(R));
    const float** qp = buf.qp.data();
    float** outp = buf.outp.data();
    // The transposition costs D stores per key: with fewer than 2 row tiles
    // (a decode step: G rows) one dot per key and row is faster (measured
    // 2B-4T decode, 640 keys: 377 vs 460 us per layer, Zen 3, 1 thread).
    int64_t s0 = 0;
    for (; R >= 2 * kRowTile && s0 + KT <= e; s0 += KT) {
      for (int j = 0; j < KT; ++j) {
        const T* kr = kb + (s0 + j) * a.k_stride[2];
        for (int64_t d = 0; d < D; ++d) kt[d * KT + j] = to_float(kr[d]);
      }
      int64_t j0 = 0;
      while (vis[j0] <= s0) ++j0; // vis[nq - 1] = e > s0
      int n = 0;
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t j = j0; j < nq; ++j, ++n) {
          qp[n] = q0 + (g * a.L + j) * D;
          outp[n] = sc + (g * nq + j) * e + s0;
        }
      }
      score_tile(kt, qp, outp, n, D, a.scale);
    }
    for (int64_t s = s0; s < e; ++s) {
      widen(kb + s * a.k_stride[2], D, row);
      int64_t j0 = 0;
      while (vis[j0] <= s) ++j0;
      for (int64_t g = 0; g < G; ++g) {
        for (int64_t j = j0; j < nq; ++j) sc[(g * nq + j) * e + s] = dot(q0 + (g * a.L + j) * D, row, D) * a.scale;
      }
    }
    buf.sums.resize(static_cast<size_t>(R));
    float* sums = buf.sums.data();
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t j = 0; j < nq; ++j) {
        float* p = sc + (g * nq + j) * e;
        sums[g * nq + j] = softmax_row(p, vis[j]);
        std::fill(p + vis[j], p + e, 0.0f);
      }
    }
    // Every row of the task weighs the same values: tiles of kRowTile rows.
    for (int64_t r = 0; r < R; r += kRowTile) {
      const int nr = static_cast<int>(std::min<int64_t>(kRowTile, R - r));
      weighted_values(vb, a.v_stride[2], e, sc + r * e, e, nr, D, acc + r * D);
    }
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t j = 0; j < nq; ++j) {
        const int64_t r = g * nq + j;
        float* o = a.out + ((b * a.L + i0 + j) * a.Hq + h * G + g) * D;
        // A query that sees no key (causal, L > S) is 0, not 0 / 0.
        const float inv = vis[j] > 0 ? 1.0f / sums[r] : 0.0f;
        for (int64_t d = 0; d < D; ++d) o[d] = acc[r * D + d] * inv;
      }
    }
  }

  template <class T>
  static void run_t(const AttentionArgs& a) {
    const int64_t nqb = (a.L + kQueryBlock - 1) / kQueryBlock;
    const int64_t tasks = a.B * a.Hkv * nqb;
    parallel_for(0, tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t qb = t % nqb, bh = t / nqb;
        const int64_t i0 = qb * kQueryBlock;
        task<T>(a, bh / a.Hkv, bh % a.Hkv, i0, std::min(a.L, i0 + kQueryBlock));
      }
    });
  }

  static void run(const AttentionArgs& a) {
    switch (a.kv_type) {
      case DenseType::BF16:
        run_t<Bf16>(a);
        break;
      case DenseType::F16:
        run_t<F16>(a);
        break;
      default:
        run_t<float>(a);
        break;
    }
  }
};

} // namespace

using AttentionFn = void (*)(const AttentionArgs&);
// Per-level entry points, defined next to the dense ones (dense_<level>.cpp: same policy).
AttentionFn attention_scalar();
AttentionFn attention_avx2();
AttentionFn attention_avx512();
AttentionFn attention_neon();

} // namespace bitnet_ext::cpu
