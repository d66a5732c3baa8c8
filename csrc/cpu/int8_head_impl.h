// The int8 head of int8_head.h over a vector policy ("IOps"), shared by the
// x86 levels; each level's translation unit (int8_head_<level>.cpp) defines
// its policy and instantiates Int8HeadSimd<Policy>::matmul.
//
// A policy provides: L (int8 lanes per step), vector type vi, zero(),
// step(acc, x, w) adding the L products x[0..L) * w[0..L) into int32 lanes,
// tail(acc, x, w, n) the same for the last n < L elements (masked or
// scalar), hsum(acc), and kWShift: a VNNI policy feeds w + 128 (unsigned)
// to vpdpbusd, so its lanes hold sum (w + 128) * x and the caller subtracts
// kWShift * sum(x), computed once per token instead of once per weight.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "int8_head.h"
#include "kernels.h" // num_threads()
#include "prefetch_stream.h"
#include "thread_pool.h"

namespace bitnet_ext::cpu {
namespace {

template <class Ops>
struct Int8HeadSimd {
  using vi = typename Ops::vi;
  static constexpr int L = Ops::L;
  // Rows of W per step: more concurrent row streams pull more DRAM bandwidth
  // into one core at M = 1 (as in the dense head, whose 16 rows beat 8).
  static constexpr int NB = 16;

  template <int NBr>
  static void tile(const int8_t* x, int32_t xsum, const int8_t* w, int64_t n0, int64_t K, float xs, const float* s,
                   float* yrow) {
    vi acc[NBr];
    const int8_t* wr[NBr];
    for (int j = 0; j < NBr; ++j) {
      acc[j] = Ops::zero();
      wr[j] = w + (n0 + j) * K;
    }
    int64_t k = 0;
    for (; k + L <= K; k += L) {
      for (int j = 0; j < NBr; ++j) {
        prefetch_stream(wr[j] + k + 512);
        acc[j] = Ops::step(acc[j], x + k, wr[j] + k);
      }
    }
    if (k < K) {
      for (int j = 0; j < NBr; ++j) acc[j] = Ops::tail(acc[j], x + k, wr[j] + k, static_cast<int>(K - k));
    }
    for (int j = 0; j < NBr; ++j) {
      // Modulo 2^32 (see kWShift): unsigned arithmetic, exact once converted.
      const uint32_t shift = static_cast<uint32_t>(static_cast<int64_t>(Ops::kWShift) * xsum);
      const int32_t dot = static_cast<int32_t>(static_cast<uint32_t>(Ops::hsum(acc[j])) - shift);
      y_store(yrow + n0 + j, dot, xs, s[n0 + j]);
    }
  }

  static void y_store(float* y, int32_t acc, float xs, float s) {
    // Same order as the reference: (acc * xscale) * s, two roundings.
    const float t = static_cast<float>(acc) * xs;
    *y = t * s;
  }

  static void matmul(const int8_t* xq, const float* xscale, const int8_t* wq, const float* s, float* y, int64_t M,
                     int64_t N, int64_t K) {
    std::vector<int32_t> xsum(static_cast<size_t>(M), 0);
    if (Ops::kWShift != 0) {
      for (int64_t m = 0; m < M; ++m) {
        int32_t t = 0;
        for (int64_t k = 0; k < K; ++k) t += xq[m * K + k];
        xsum[static_cast<size_t>(m)] = t;
      }
    }
    // Rows of W split over threads; a tile of NB rows (NB * K bytes, in L1/L2)
    // serves every row of x before the next tile streams in.
    parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
      int64_t n = n0;
      for (; n + NB <= n1; n += NB) {
        for (int64_t m = 0; m < M; ++m)
          tile<NB>(xq + m * K, xsum[static_cast<size_t>(m)], wq, n, K, xscale[m], s, y + m * N);
      }
      for (; n < n1; ++n) {
        for (int64_t m = 0; m < M; ++m)
          tile<1>(xq + m * K, xsum[static_cast<size_t>(m)], wq, n, K, xscale[m], s, y + m * N);
      }
    });
  }
};

} // namespace

using Int8HeadFn = void (*)(const int8_t* xq, const float* xscale, const int8_t* wq, const float* s, float* y,
                            int64_t M, int64_t N, int64_t K);
// Per-level entry points (each defined in its own translation unit).
Int8HeadFn int8_head_scalar();
Int8HeadFn int8_head_avx2();
Int8HeadFn int8_head_avx512();
Int8HeadFn int8_head_avx512_vnni();

} // namespace bitnet_ext::cpu
