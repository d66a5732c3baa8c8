// The dense float matmul of dense.h over a vector policy ("DOps"), shared by
// every ISA level. Each per-level translation unit (dense_<level>.cpp)
// defines its policy and instantiates DenseSimd<Policy>::matmul.
//
// A policy provides: L (float lanes), kGemvRows (rows of x one GEMV pass
// keeps in registers), kGemvRowsW1 (rows of W per GEMV step at M = 1, 4 to 16), kMR (rows of x of a GEMM micro-tile; its width is two
// vectors), vector type vf and zero, lf (load floats), lw (load L weights of
// type float / Bf16 / F16 as floats), lw_pairs (load 2L Bf16 weights as the
// floats of their even and of their odd elements), bf (broadcast one float), fmadd(a, b,
// c) = a * b + c, add, hsum, sf (store), and kGemmMinRows (the M from which
// the GEMM beats repeated GEMV passes).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "dense.h"
#include "kernels.h" // num_threads()
#include "prefetch_stream.h"
#include "thread_pool.h"

namespace bitnet_ext::cpu {
namespace {

// Weight element tags: 16-bit storage whose float value the policy decodes.
struct Bf16 {
  uint16_t bits;
};
struct F16 {
  uint16_t bits;
};

inline float to_float(float v) {
  return v;
}
inline float to_float(Bf16 v) {
  uint32_t u = static_cast<uint32_t>(v.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float to_float(F16 v) {
  // IEEE binary16 -> binary32, exact (subnormals, infinities and NaN kept).
  uint32_t sign = static_cast<uint32_t>(v.bits & 0x8000u) << 16;
  uint32_t exp = (v.bits >> 10) & 0x1fu;
  uint32_t man = v.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else {
    // Subnormal: normalize the mantissa.
    int e = -1;
    do {
      man <<= 1;
      ++e;
    } while ((man & 0x400u) == 0);
    u = sign | (static_cast<uint32_t>(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <class Ops>
struct DenseSimd {
  using vf = typename Ops::vf;
  static constexpr int L = Ops::L;
  // Rows of W per GEMV step: at M = 1 as many as the registers hold
  // (Ops::kGemvRowsW1): more concurrent row streams pull more DRAM bandwidth
  // into one core (2B-4T head, bf16, Zen 4, 1 thread: 4 rows 13.6 GB/s,
  // 8 rows 16.8, 16 rows 19 GB/s); 4 when several rows of x share each load.
  static constexpr int nb_for(int MB) {
    return MB == 1 ? Ops::kGemvRowsW1 : 4;
  }
  static constexpr int NR = 2 * L; // rows of W per GEMM panel (the micro-tile width)
  static constexpr int MR = Ops::kMR;
  static constexpr int64_t KC = 256; // K per packed panel block (the x micro-tile stays in L1)
  static constexpr int64_t kMaxPanelsPerBlock = 16; // packed W block of at most 16 * NR * KC floats (L2)

  // ---- GEMV: vectorized along K, each W element loaded once per MB rows of x.
  // y[m, n] for m < MB, n in [n0, n0 + NBr).
  template <class T, int MB, int NBr>
  static void gemv_tile(const float* x, int64_t ldx, const T* w, float* y, int64_t ldy, int64_t n0, int64_t K) {
    vf acc[MB][NBr];
    for (int m = 0; m < MB; ++m)
      for (int j = 0; j < NBr; ++j) acc[m][j] = Ops::zero();
    const T* wr[NBr];
    for (int j = 0; j < NBr; ++j) wr[j] = w + (n0 + j) * K;
    int64_t k = 0;
    if constexpr (std::is_same_v<T, Bf16>) {
      // x comes permuted by permute_pairs: one load of 2L weights, split into
      // even and odd elements by a shift and a mask, takes fewer instructions
      // than widening L weights at a time.
      for (; k + 2 * L <= K; k += 2 * L) {
        vf xe[MB], xo[MB];
        for (int m = 0; m < MB; ++m) {
          xe[m] = Ops::lf(x + m * ldx + k);
          xo[m] = Ops::lf(x + m * ldx + k + L);
        }
        for (int j = 0; j < NBr; ++j) {
          prefetch_stream(wr[j] + k + 256);
          vf we, wo;
          Ops::lw_pairs(wr[j] + k, we, wo);
          for (int m = 0; m < MB; ++m) acc[m][j] = Ops::fmadd(xo[m], wo, Ops::fmadd(xe[m], we, acc[m][j]));
        }
      }
    } else {
      for (; k + L <= K; k += L) {
        vf xv[MB];
        for (int m = 0; m < MB; ++m) xv[m] = Ops::lf(x + m * ldx + k);
        for (int j = 0; j < NBr; ++j) {
          // Streamed once from DRAM at M = 1: ask for the lines ahead of use.
          prefetch_stream(wr[j] + k + 512 / static_cast<int>(sizeof(T)));
          const vf wv = Ops::lw(wr[j] + k);
          for (int m = 0; m < MB; ++m) acc[m][j] = Ops::fmadd(xv[m], wv, acc[m][j]);
        }
      }
    }
    for (int m = 0; m < MB; ++m) {
      for (int j = 0; j < NBr; ++j) {
        float s = Ops::hsum(acc[m][j]);
        for (int64_t t = k; t < K; ++t) s += x[m * ldx + t] * to_float(wr[j][t]);
        y[m * ldy + n0 + j] = s;
      }
    }
  }

  template <class T, int MB>
  static void gemv_rows(const float* x, int64_t ldx, const T* w, float* y, int64_t ldy, int64_t n0, int64_t n1,
                        int64_t K) {
    constexpr int NB = nb_for(MB);
    int64_t n = n0;
    for (; n + NB <= n1; n += NB) gemv_tile<T, MB, NB>(x, ldx, w, y, ldy, n, K);
    for (; n < n1; ++n) gemv_tile<T, MB, 1>(x, ldx, w, y, ldy, n, K);
  }

  // Rows [m0, m0 + mb) of x, mb <= kGemvRows, against rows [n0, n1) of W.
  template <class T>
  static void gemv_block(const float* x, int64_t ldx, const T* w, float* y, int64_t N, int64_t mb, int64_t n0,
                         int64_t n1, int64_t K) {
    static_assert(Ops::kGemvRows >= 1 && Ops::kGemvRows <= 4, "GEMV keeps 1..4 rows of x");
    switch (mb) {
      case 1:
        return gemv_rows<T, 1>(x, ldx, w, y, N, n0, n1, K);
      case 2:
        if constexpr (Ops::kGemvRows >= 2) return gemv_rows<T, 2>(x, ldx, w, y, N, n0, n1, K);
        break;
      case 3:
        if constexpr (Ops::kGemvRows >= 3) return gemv_rows<T, 3>(x, ldx, w, y, N, n0, n1, K);
        break;
      case 4:
        if constexpr (Ops::kGemvRows >= 4) return gemv_rows<T, 4>(x, ldx, w, y, N, n0, n1, K);
        break;
    }
  }

  // Rows of x for the bfloat16 GEMV: each block of 2L elements as its even
  // elements, then its odd ones (the order of Ops::lw_pairs); the tail past the
  // last whole block stays in place.
  static void permute_pairs(const float* x, int64_t ldx, int64_t M, int64_t K, float* xp) {
    for (int64_t m = 0; m < M; ++m) {
      const float* src = x + m * ldx;
      float* dst = xp + m * K;
      int64_t k = 0;
      for (; k + 2 * L <= K; k += 2 * L) {
        for (int i = 0; i < L; ++i) {
          dst[k + i] = src[k + 2 * i];
          dst[k + L + i] = src[k + 2 * i + 1];
        }
      }
      for (; k < K; ++k) dst[k] = src[k];
    }
  }

  template <class T>
  static void gemv(const float* x, int64_t ldx, const T* w, float* y, int64_t M, int64_t N, int64_t K) {
    std::vector<float> permuted;
    if constexpr (std::is_same_v<T, Bf16>) {
      permuted.resize(static_cast<size_t>(M * K));
      permute_pairs(x, ldx, M, K, permuted.data());
      x = permuted.data();
      ldx = K;
    }
    // Rows of W split over threads; each thread passes its rows once per
    // kGemvRows rows of x (small M only: larger M takes the GEMM).
    parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) { // 16: a multiple of every step
      for (int64_t m = 0; m < M; m += Ops::kGemvRows) {
        const int64_t mb = std::min<int64_t>(Ops::kGemvRows, M - m);
        gemv_block(x + m * ldx, ldx, w, y + m * N, N, mb, n0, n1, K);
      }
    });
  }

  // ---- GEMM: W converted once into float32 panels (KC x NR, k-major), each
  // reused by every row of x; micro-tile of MR rows of x x NR rows of W
  // (broadcast x, two vector FMAs per broadcast).
  template <class T>
  static void pack_panel(const T* w, int64_t rows, int64_t K, int64_t k0, int64_t kc, float* dst) {
    for (int64_t k = 0; k < kc; ++k) {
      float* d = dst + k * NR;
      int64_t r = 0;
      for (; r < rows; ++r) d[r] = to_float(w[r * K + k0 + k]);
      for (; r < NR; ++r) d[r] = 0.0f; // rows past N: zero, never stored
    }
  }

  template <int MRr>
  static void micro(const float* x, int64_t ldx, const float* pw, int64_t kc, float* y, int64_t ldy, bool first,
                    int64_t cols) {
    vf c0[MRr], c1[MRr];
    for (int i = 0; i < MRr; ++i) c0[i] = c1[i] = Ops::zero();
    for (int64_t k = 0; k < kc; ++k) {
      const vf w0 = Ops::lf(pw + k * NR);
      const vf w1 = Ops::lf(pw + k * NR + L);
      for (int i = 0; i < MRr; ++i) {
        const vf xb = Ops::bf(x + i * ldx + k);
        c0[i] = Ops::fmadd(xb, w0, c0[i]);
        c1[i] = Ops::fmadd(xb, w1, c1[i]);
      }
    }
    for (int i = 0; i < MRr; ++i) {
      float* yr = y + i * ldy;
      if (cols == NR) {
        if (!first) {
          c0[i] = Ops::add(c0[i], Ops::lf(yr));
          c1[i] = Ops::add(c1[i], Ops::lf(yr + L));
        }
        Ops::sf(yr, c0[i]);
        Ops::sf(yr + L, c1[i]);
      } else {
        float tmp[NR];
        Ops::sf(tmp, c0[i]);
        Ops::sf(tmp + L, c1[i]);
        for (int64_t j = 0; j < cols; ++j) yr[j] = first ? tmp[j] : yr[j] + tmp[j];
      }
    }
  }

  template <int MRr = MR>
  static void micro_rows(int64_t mr, const float* x, int64_t ldx, const float* pw, int64_t kc, float* y, int64_t ldy,
                         bool first, int64_t cols) {
    if constexpr (MRr >= 1) {
      if (mr == MRr) return micro<MRr>(x, ldx, pw, kc, y, ldy, first, cols);
      if constexpr (MRr > 1) return micro_rows<MRr - 1>(mr, x, ldx, pw, kc, y, ldy, first, cols);
    }
  }

  template <class T>
  static void gemm(const float* x, int64_t ldx, const T* w, float* y, int64_t M, int64_t N, int64_t K) {
    const int64_t npanels = (N + NR - 1) / NR;
    // Enough blocks of panels for every thread (a few each), at most
    // kMaxPanelsPerBlock panels per block so a packed block stays in L2.
    const int64_t per_thread = (npanels + 4 * num_threads() - 1) / (4 * num_threads());
    const int64_t pb = std::clamp<int64_t>(per_thread, 1, kMaxPanelsPerBlock);
    parallel_for(0, npanels, pb, [&](int64_t p0, int64_t p1) {
      thread_local std::vector<float> packed;
      packed.resize(static_cast<size_t>(kMaxPanelsPerBlock * KC * NR));
      for (int64_t b0 = p0; b0 < p1; b0 += pb) {
        const int64_t b1 = std::min(p1, b0 + pb);
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
          const int64_t kc = std::min<int64_t>(KC, K - k0);
          for (int64_t p = b0; p < b1; ++p) {
            const int64_t rows = std::min<int64_t>(NR, N - p * NR);
            pack_panel(w + p * NR * K, rows, K, k0, kc, packed.data() + (p - b0) * KC * NR);
          }
          for (int64_t m = 0; m < M; m += MR) {
            const int64_t mr = std::min<int64_t>(MR, M - m);
            for (int64_t p = b0; p < b1; ++p) {
              const int64_t cols = std::min<int64_t>(NR, N - p * NR);
              micro_rows(mr, x + m * ldx + k0, ldx, packed.data() + (p - b0) * KC * NR, kc, y + m * N + p * NR, N,
                         k0 == 0, cols);
            }
          }
        }
      }
    });
  }

  template <class T>
  static void run(const float* x, int64_t ldx, const T* w, float* y, int64_t M, int64_t N, int64_t K) {
    if (K == 0) {
      std::fill(y, y + M * N, 0.0f);
    } else if (M < Ops::kGemmMinRows) {
      gemv(x, ldx, w, y, M, N, K);
    } else {
      gemm(x, ldx, w, y, M, N, K);
    }
  }

  static void matmul(const float* x, int64_t ldx, const void* w, DenseType wtype, float* y, int64_t M, int64_t N,
                     int64_t K) {
    switch (wtype) {
      case DenseType::F32:
        return run(x, ldx, static_cast<const float*>(w), y, M, N, K);
      case DenseType::F16:
        return run(x, ldx, static_cast<const F16*>(w), y, M, N, K);
      case DenseType::BF16:
        return run(x, ldx, static_cast<const Bf16*>(w), y, M, N, K);
    }
  }
};

} // namespace

using DenseFn = void (*)(const float* x, int64_t ldx, const void* w, DenseType wtype, float* y, int64_t M, int64_t N,
                         int64_t K);
// Per-level entry points (each defined in its own translation unit).
DenseFn dense_scalar();
DenseFn dense_avx2();
DenseFn dense_avx512();
DenseFn dense_neon();

} // namespace bitnet_ext::cpu
