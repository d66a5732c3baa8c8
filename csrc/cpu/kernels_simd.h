// Vectorized kernels written once over a vector policy `Ops` (see
// simd_x86.h / simd_neon.h). Each per-ISA translation unit includes this
// header after its policy and calls Simd<Ops>::table().
//
// Everything here has internal linkage (anonymous namespace), so every
// translation unit keeps its own copy compiled with its own ISA flags; no
// shared inline symbol can be resolved to a copy the CPU cannot run.
//
// Packed layout reminder: byte b of a row holds the codes of k = 4b .. 4b+3
// (2 bits each, code = w + 1); word j holds k = 16j .. 16j+15.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "kernels_impl.h"
#include "prefetch_stream.h"
#include "thread_pool.h"

namespace bitnet_ext::cpu {
namespace {

#if defined(__GNUC__)
// Inline every call (the static_for lambdas) so accumulators stay in registers.
#define BITNET_FLATTEN __attribute__((flatten))
#define BITNET_INLINE __attribute__((always_inline))
#else
#define BITNET_FLATTEN
#define BITNET_INLINE
#endif

// Keeps a loaded vector in a register: stops the compiler from folding the
// same load into several instructions (each fold is another load).
template <class V>
inline __attribute__((always_inline)) void opaque(V& v) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+x"(v));
#elif defined(__GNUC__) && defined(__aarch64__)
  asm("" : "+w"(v));
#endif
}

// Software prefetch into L2 (prefetcht1), for the 16-row pair-lookup GEMV
// (f_lut_group), where it measured best on Zen 4.
inline __attribute__((always_inline)) void prefetch(const void* p) {
#if defined(__GNUC__)
  __builtin_prefetch(p, 0, 2);
#endif
}

// Prefetch for the row-group GEMVs (i8_gemv_rows, f_gemv_rows), which read
// the NB contiguous rows of a group one vector of each row after another.
// While reading vector `blk` of the rows, vector blk * NB + r (r < NB) of a
// group further ahead is prefetched (into all levels: prefetcht0), so the
// group ahead is fetched in address order, one ascending stream that the
// hardware prefetchers follow as well. Prefetching each row's own vector
// instead (NB interleaved streams of 10-27 lines, too short to train on)
// left the int8 GEMV 15-30% below a plain read of the same bytes. Measured
// on a Zen 5 VM, M = 1, cold weights, interleaved in one process (median us,
// 2 threads / 1 thread):
//   6912x2560: per row, prefetcht1 123 / 187; per row, prefetcht0 123 / 150;
//              in order, prefetcht0 102 / 143; in order, prefetcht1 112 / 167;
//              a plain read of the bytes 101 / 128.
//   2560x2560: per row 43 / 51 and 43 / 47; in order 36 / 45 and 38 / 50;
//              plain read 35 / 42.
template <int NB, int VecBytes>
inline __attribute__((always_inline)) void prefetch_group_in_order(const void* group_ahead, int64_t blk) {
  const char* p = static_cast<const char*>(group_ahead) + blk * NB * VecBytes;
  for (int r = 0; r < NB; ++r) prefetch_stream(p + r * VecBytes);
}

// How many row groups (of `group_bytes` each) ahead to prefetch so that the
// prefetch distance is about 8 KiB.
inline int64_t prefetch_groups(int64_t group_bytes) {
  return (8192 + group_bytes - 1) / group_bytes;
}

inline int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

template <int N, class F>
inline __attribute__((always_inline)) void static_for(F&& f) {
  [&]<int... I>(std::integer_sequence<int, I...>) BITNET_INLINE {
    (f(std::integral_constant<int, I>{}), ...);
  }(std::make_integer_sequence<int, N>{});
}

// Grow-only 64-byte aligned per-thread buffers.
struct Scratch {
  void* p = nullptr;
  size_t n = 0;
  ~Scratch() { std::free(p); }
  template <class T>
  T* get(int64_t count) {
    const size_t bytes = static_cast<size_t>(count) * sizeof(T) + 64;
    if (bytes > n) {
      std::free(p);
      n = (bytes + 4095) & ~static_cast<size_t>(4095);
      p = std::aligned_alloc(64, n);
      if (p == nullptr) {
        n = 0;
        throw std::bad_alloc();
      }
    }
    return static_cast<T*>(p);
  }
};
// The calling thread's buffers shared with the workers (kActs, kAux) and each
// thread's private ones (kPanel, kTile); kSplit* hold the int8 planes of the
// split float GEMV and its int32 sums (calling thread).
enum Slot { kActs = 0, kAux, kPanel, kTile, kSplitPlanes, kSplitAcc, kNumSlots };
inline Scratch& scratch(int slot) {
  thread_local Scratch s[kNumSlots];
  return s[slot];
}

// Rows (or tiles) per parallel chunk so a chunk has at least ~`min_work`.
inline int64_t grain_for(int64_t work_per_unit, int64_t unit_multiple, int64_t min_work = int64_t{1} << 16) {
  int64_t g = std::max<int64_t>(1, min_work / std::max<int64_t>(1, work_per_unit));
  return ceil_div(g, unit_multiple) * unit_multiple;
}

// Sum of the 4 codes of each byte value.
struct CodeSums {
  uint8_t v[256];
  constexpr CodeSums() : v{} {
    for (int b = 0; b < 256; ++b) v[b] = static_cast<uint8_t>((b & 3) + ((b >> 2) & 3) + ((b >> 4) & 3) + (b >> 6));
  }
};
constexpr CodeSums kCodeSums{};

// Sum of the codes in n bytes: eight bytes at a time by adding the 2-bit
// fields in place (pairs into nibbles, nibbles into bytes, bytes by one
// multiply), which is 6-7x faster than a table lookup per byte and needs no
// popcount instruction.
inline int32_t code_sum(const uint8_t* src, int64_t n) {
  constexpr uint64_t kPairs = 0x3333333333333333ull, kNibbles = 0x0F0F0F0F0F0F0F0Full;
  int32_t sum = 0;
  int64_t b = 0;
  for (; b + 8 <= n; b += 8) {
    uint64_t w;
    std::memcpy(&w, src + b, 8);
    const uint64_t nibbles = (w & kPairs) + ((w >> 2) & kPairs);           // each <= 6
    const uint64_t bytes = (nibbles & kNibbles) + ((nibbles >> 4) & kNibbles); // each <= 12
    sum += static_cast<int32_t>((bytes * 0x0101010101010101ull) >> 56);     // <= 96
  }
  for (; b < n; ++b) sum += kCodeSums.v[src[b]];
  return sum;
}

template <class Ops>
struct Simd {
  using vi = typename Ops::vi;
  using vf = typename Ops::vf;
  static constexpr int L = Ops::L;
  // Up to this many rows of x use the decode (GEMV) kernels, in passes of at
  // most 8 rows; more rows use the blocked GEMM kernels (tiles of 2L rows).
  static constexpr int64_t kGemvMaxM = 2 * L > 16 ? 16 : 2 * L;

  // =========================================================================
  // Int8 GEMV (small M). Block = 4L bytes of a row = 16L weights. Within a
  // block, (byte >> 2s) & 3 gives the codes of k = 4i + s, so activations are
  // permuted once per call: xp[s*4L + i] = xq[4i + s]. Codes are u8 {0,1,2},
  // xq is s8; sum xq*w = sum xq*code - sum xq.
  static constexpr int BB = 4 * L;
  static constexpr int KB = 16 * L;

  static void i8_permute(const int8_t* xq, int64_t M, int64_t K, int64_t nblk, int8_t* xp, int32_t* sumx) {
    for (int64_t m = 0; m < M; ++m) {
      const int8_t* src = xq + m * K;
      int8_t* dst = xp + m * nblk * KB;
      int32_t sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += src[k];
      sumx[m] = sum;
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t kb = blk * KB;
        if (kb + KB <= K) {
          for (int s = 0; s < 4; ++s)
            for (int i = 0; i < BB; ++i) dst[kb + s * BB + i] = src[kb + 4 * i + s];
        } else {
          for (int s = 0; s < 4; ++s)
            for (int i = 0; i < BB; ++i) {
              const int64_t k = kb + 4 * i + s;
              dst[kb + s * BB + i] = k < K ? src[k] : 0;
            }
        }
      }
    }
  }

  // Optional policy feature of the int8 GEMV: a 4-vector horizontal sum.
  template <class O = Ops>
  static constexpr bool has_hsum4() {
    return requires(const typename O::vi (&v)[4], int32_t* out) { O::hsum4_i(v, out); };
  }

  // Optional policy feature of the int8 GEMV: int16 accumulation,
  // dot16(a16, u, s) = a16 + (pair sums of u8 * s8 as int16, no widening)
  // and widen16(acc, a16) = acc + (a16's pair sums as int32).
  template <class O = Ops>
  static constexpr bool has_dot16() {
    return requires(typename O::vi v) {
      O::dot16(v, v, v);
      O::widen16(v, v);
    };
  }

  // Per block v (two-accumulator form): c0 = v & 3 and c2 = (v >> 4) & 3 are
  // codes; v & 12 and (v >> 4) & 12 are 4 * codes (of k = 4i + 1 and 4i + 3).
  // The "odd" accumulator is therefore 4x its share; every lane is a multiple
  // of 4 and is shifted back exactly before it could overflow (kFlushBlocks:
  // also in the in-place form, whose lanes grow by at most 4 * 192 * 128 per
  // block).
  // Blocks [blk0, blk1) are done per call (nfull full blocks, then a partial
  // tail block of tailw words): K is cut into equal chunks whose activations
  // (MB x chunk bytes) fit kI8ActsBudget, so they stay in L1/L2 while every
  // row is visited. Measured on Zen 4 (32 KiB L1), 1 thread: 48 KiB in equal
  // chunks beat 20 KiB in greedy ones by 5-30% (M = 4 and 8, K = 4096 and 6912;
  // the greedy split left a short last chunk), and no split at all lost at
  // M = 8, K = 6912 (55 KiB of activations).
  static constexpr int64_t kFlushBlocks = 2048;
  static constexpr int64_t kI8ActsBudget = 48 * 1024;

  template <int MB, int NB>
  BITNET_FLATTEN static void i8_gemv_rows(const I8Args& a, const int8_t* xp, int64_t nblk, int64_t n0, int64_t m0,
                                          int64_t blk0, int64_t blk1, int32_t* out /*[NB][MB]*/) {
    const int64_t RB = a.K / 4;
    const int64_t nfull = RB / BB;
    const int tailw = static_cast<int>((RB - nfull * BB) / 4);
    const uint8_t* w = reinterpret_cast<const uint8_t*>(a.wq) + n0 * RB;
    const int8_t* x = xp + m0 * nblk * KB;
    const int64_t xstride = nblk * KB;
    // With an unsigned, non-saturating dot (vpdpbusd) the four fields of a
    // byte are masked in place (v & 3 << 2s = 4^s * code) without a shift,
    // each field into its own accumulator, scaled back exactly at the flush
    // (every lane of accumulator s is a multiple of 4^s); otherwise the
    // two-accumulator form above. MB > 2 in place measured slower (its 4 x MB
    // accumulators and activations spill).
    constexpr bool kInPlace = Ops::kWideCodes && MB * NB <= 4 && MB <= 2;
    // Without a non-saturating dot but with int16 accumulation (AVX2): the
    // four fields shifted down to codes (0..3, pair sums <= 2 * 3 * 128), all
    // four dots of a block into one int16 accumulator (<= 3072 per block),
    // widened to int32 every kNarrowBlocks blocks (<= 24576 < 2^15): two
    // instructions per dot instead of three (vpmaddubsw + vpaddw, not
    // + vpmaddwd + vpaddd).
    constexpr bool kNarrow = !kInPlace && has_dot16();
    constexpr int64_t kNarrowBlocks = 8;
    constexpr int NA = kInPlace ? 4 : 2; // kNarrow: acc[0] int32, acc[1] int16
    // Running totals live in memory (touched once per flush), leaving the
    // registers to the accumulators, activations and masks.
    alignas(64) int32_t tot[NB][MB][L] = {};
    vi acc[NA][NB][MB];
    static_for<NB>([&](auto r) BITNET_INLINE {
      static_for<MB>([&](auto m) BITNET_INLINE {
        static_for<NA>([&](auto j) BITNET_INLINE { acc[j][r][m] = Ops::zi(); });
      });
    });
    const vi m3 = Ops::set1i8(3), m12 = Ops::set1i8(12);
    auto block = [&](const vi* v, int64_t blk) BITNET_INLINE {
      if constexpr (kInPlace) {
        const vi mask[4] = {m3, m12, Ops::set1i8(48), Ops::set1i8(static_cast<int8_t>(-64))};
        vi xv[MB][4];
        static_for<MB>([&](auto m) BITNET_INLINE {
          static_for<4>([&](auto q) BITNET_INLINE { xv[m][q] = Ops::li(x + m * xstride + blk * KB + q * BB); });
        });
        static_for<NB>([&](auto r) BITNET_INLINE {
          vi vr = v[r];
          opaque(vr);
          static_for<4>([&](auto q) BITNET_INLINE {
            const vi c = Ops::and_(vr, mask[q]);
            static_for<MB>([&](auto m) BITNET_INLINE { acc[q][r][m] = Ops::dot(acc[q][r][m], c, xv[m][q]); });
          });
        });
      } else if constexpr (kNarrow) {
        vi c[NB][4];
        static_for<NB>([&](auto r) BITNET_INLINE {
          vi vr = v[r];
          opaque(vr);
          c[r][0] = Ops::and_(vr, m3);
          c[r][1] = Ops::and_(Ops::template srli<2>(vr), m3);
          c[r][2] = Ops::and_(Ops::template srli<4>(vr), m3);
          c[r][3] = Ops::and_(Ops::template srli<6>(vr), m3);
        });
        static_for<MB>([&](auto m) BITNET_INLINE {
          static_for<4>([&](auto q) BITNET_INLINE {
            constexpr int Q = decltype(q)::value;
            const vi xv = Ops::li(x + m * xstride + blk * KB + Q * BB);
            static_for<NB>([&](auto r) BITNET_INLINE { acc[1][r][m] = Ops::dot16(acc[1][r][m], c[r][Q], xv); });
          });
        });
      } else {
        vi c[NB][4];
        static_for<NB>([&](auto r) BITNET_INLINE {
          vi vr = v[r];
          opaque(vr);
          const vi h = Ops::template srli<4>(vr);
          c[r][0] = Ops::and_(vr, m3);
          c[r][1] = Ops::and_(vr, m12);
          c[r][2] = Ops::and_(h, m3);
          c[r][3] = Ops::and_(h, m12);
        });
        static_for<MB>([&](auto m) BITNET_INLINE {
          static_for<4>([&](auto q) BITNET_INLINE {
            constexpr int Q = decltype(q)::value;
            const vi xv = Ops::li(x + m * xstride + blk * KB + Q * BB);
            static_for<NB>([&](auto r) BITNET_INLINE { acc[Q % 2][r][m] = Ops::dot(acc[Q % 2][r][m], c[r][Q], xv); });
          });
        });
      }
    };
    auto widen = [&]() BITNET_INLINE {
      if constexpr (kNarrow) {
        static_for<NB>([&](auto r) BITNET_INLINE {
          static_for<MB>([&](auto m) BITNET_INLINE {
            acc[0][r][m] = Ops::widen16(acc[0][r][m], acc[1][r][m]);
            acc[1][r][m] = Ops::zi();
          });
        });
      }
    };
    auto flush = [&]() BITNET_INLINE {
      widen();
      static_for<NB>([&](auto r) BITNET_INLINE {
        static_for<MB>([&](auto m) BITNET_INLINE {
          vi t = kNarrow ? acc[0][r][m] : Ops::addi(acc[0][r][m], Ops::template srai<2>(acc[1][r][m]));
          if constexpr (kInPlace) {
            t = Ops::addi(t, Ops::addi(Ops::template srai<4>(acc[2][r][m]), Ops::template srai<6>(acc[3][r][m])));
          }
          Ops::si(tot[r][m], Ops::addi(Ops::li(tot[r][m]), t));
          static_for<NA>([&](auto j) BITNET_INLINE { acc[j][r][m] = Ops::zi(); });
        });
      });
    };
    const int64_t bfull = std::min(blk1, nfull);
    // Software prefetch of the rows a few groups ahead (the hardware
    // prefetchers stop at 4 KiB pages and ramp up slowly on short rows).
    // A pass over whole rows fetches the group ahead in address order
    // (prefetch_group_in_order); a pass over one K chunk fetches that chunk's
    // piece of each row, in the order it will be read.
    const uint8_t* pf = w + prefetch_groups(NB * RB) * NB * RB;
    const bool whole_rows = blk0 == 0 && blk1 >= nfull;
    for (int64_t b0 = blk0; b0 < bfull; b0 += kFlushBlocks) {
      const int64_t b1 = std::min(bfull, b0 + kFlushBlocks);
      for (int64_t blk = b0; blk < b1; ++blk) {
        if (whole_rows) {
          prefetch_group_in_order<NB, BB>(pf, blk);
        } else {
          static_for<NB>([&](auto r) BITNET_INLINE { prefetch(pf + r * RB + blk * BB); });
        }
        vi v[NB];
        static_for<NB>([&](auto r) BITNET_INLINE { v[r] = Ops::li(w + r * RB + blk * BB); });
        block(v, blk);
        if constexpr (kNarrow) {
          if ((blk - b0) % kNarrowBlocks == kNarrowBlocks - 1) widen();
        }
      }
      flush();
    }
    if (tailw && blk1 > nfull) {
      vi v[NB];
      static_for<NB>([&](auto r) BITNET_INLINE { v[r] = Ops::li_words(w + r * RB + nfull * BB, tailw); });
      block(v, nfull);
      flush();
    }
    if constexpr (MB == 1 && NB == 4 && has_hsum4()) {
      const vi t4[4] = {Ops::li(tot[0][0]), Ops::li(tot[1][0]), Ops::li(tot[2][0]), Ops::li(tot[3][0])};
      Ops::hsum4_i(t4, out);
    } else {
      static_for<NB>([&](auto r) BITNET_INLINE {
        static_for<MB>([&](auto m) BITNET_INLINE { out[r * MB + m] = Ops::hsum_i(Ops::li(tot[r][m])); });
      });
    }
  }

  template <int MB>
  static void i8_gemv_run(const I8Args& a, const int8_t* xp, const int32_t* sumx, int64_t nblk, int64_t m0) {
    constexpr int NB = Ops::gemv_nb(MB);
    // Equal chunks of K whose activations fit kI8ActsBudget.
    const int64_t cb = ceil_div(nblk, ceil_div(MB * KB * nblk, kI8ActsBudget)); // blocks per chunk
    const int64_t grain = grain_for(a.K * MB, NB * 4);
    parallel_for(0, a.N, grain, [&](int64_t b, int64_t e) {
      const int64_t rows = e - b;
      int32_t* part = scratch(kTile).get<int32_t>(rows * MB);
      for (int64_t blk0 = 0; blk0 < nblk; blk0 += cb) {
        const int64_t blk1 = std::min(nblk, blk0 + cb);
        const bool first = blk0 == 0;
        int64_t n = b;
        auto emit = [&]<int R>(int32_t* out, int64_t n0) BITNET_INLINE {
          for (int r = 0; r < R; ++r)
            for (int m = 0; m < MB; ++m) {
              int32_t& p = part[(n0 - b + r) * MB + m];
              p = first ? out[r * MB + m] : p + out[r * MB + m];
            }
        };
        for (; n + NB <= e; n += NB) {
          int32_t out[NB * MB];
          i8_gemv_rows<MB, NB>(a, xp, nblk, n, m0, blk0, blk1, out);
          emit.template operator()<NB>(out, n);
        }
        for (; n < e; ++n) {
          int32_t out[MB];
          i8_gemv_rows<MB, 1>(a, xp, nblk, n, m0, blk0, blk1, out);
          emit.template operator()<1>(out, n);
        }
      }
      for (int64_t n = b; n < e; ++n) {
        const float s = a.y ? row_scale(a.scale, a.per_row_scale, n) : 0.0f;
        for (int m = 0; m < MB; ++m) {
          const int64_t mm = m0 + m;
          const int32_t v = part[(n - b) * MB + m] - sumx[mm];
          if (a.y) {
            a.y[mm * a.N + n] = bitlinear_epilogue(v, a.xscale[mm], s, a.bias, n);
          } else {
            a.acc[mm * a.N + n] = v;
          }
        }
      }
    });
  }

  static void i8_gemv(const I8Args& a) {
    const int64_t nblk = ceil_div(a.K, KB);
    int8_t* xp = scratch(kActs).get<int8_t>(a.M * nblk * KB);
    int32_t* sumx = scratch(kAux).get<int32_t>(a.M);
    i8_permute(a.xq, a.M, a.K, nblk, xp, sumx);
    for (int64_t m0 = 0; m0 < a.M; m0 += 8) {
      switch (std::min<int64_t>(8, a.M - m0)) {
        case 1: i8_gemv_run<1>(a, xp, sumx, nblk, m0); break;
        case 2: i8_gemv_run<2>(a, xp, sumx, nblk, m0); break;
        case 3: i8_gemv_run<3>(a, xp, sumx, nblk, m0); break;
        case 4: i8_gemv_run<4>(a, xp, sumx, nblk, m0); break;
        case 5: i8_gemv_run<5>(a, xp, sumx, nblk, m0); break;
        case 6: i8_gemv_run<6>(a, xp, sumx, nblk, m0); break;
        case 7: i8_gemv_run<7>(a, xp, sumx, nblk, m0); break;
        default: i8_gemv_run<8>(a, xp, sumx, nblk, m0); break;
      }
    }
  }

  // =========================================================================
  // Int8 GEMM (large M). Tile: NR rows of W x MT = MV*L rows of x.
  //   activations xT[mt][k4][MT][4] (u8 = xq + kActOffset), padded with 0;
  //   weight panel [g][NR][L] dwords, each dword = the 4 signed weights of
  //   one packed byte (group g = bytes g*L .. g*L+L-1), padded with 0.
  // The lanes of an accumulator run over m; the weight dword is broadcast.
  static constexpr int NRi = Ops::kNRi, MVi = Ops::kMVi, MTi = MVi * L;

  static void i8_pack_acts(const int8_t* xq, int64_t M, int64_t K, int64_t K4p, uint8_t* xT) {
    const int64_t nmt = ceil_div(M, MTi);
    std::memset(xT, 0, static_cast<size_t>(nmt * K4p * MTi * 4));
    const uint32_t flip = Ops::kActOffset == 128 ? 0x80808080u : 0u;
    for (int64_t m = 0; m < M; ++m) {
      const int64_t mt = m / MTi, mm = m % MTi;
      uint8_t* dst = xT + (mt * K4p * MTi + mm) * 4;
      const int8_t* src = xq + m * K;
      for (int64_t k4 = 0; k4 < K / 4; ++k4) {
        uint32_t v;
        std::memcpy(&v, src + 4 * k4, 4);
        v ^= flip;
        std::memcpy(dst + k4 * MTi * 4, &v, 4);
      }
    }
  }

  static void i8_decode_panel(const uint8_t* wbytes, int64_t RB, int64_t ng, int nvalid, int8_t* panel,
                              int32_t* rowsum) {
    for (int r = 0; r < NRi; ++r) {
      if (r >= nvalid) {
        for (int64_t g = 0; g < ng; ++g) std::memset(panel + (g * NRi + r) * L * 4, 0, L * 4);
        rowsum[r] = 0;
        continue;
      }
      const uint8_t* src = wbytes + r * RB;
      rowsum[r] = code_sum(src, RB) - static_cast<int32_t>(RB * 4);
      for (int64_t g = 0; g < ng; ++g) {
        int8_t* dst = panel + (g * NRi + r) * L * 4;
        const int64_t nb = std::min<int64_t>(L, RB - g * L);
        if (nb == L) {
          Ops::si(dst, Ops::decode_group_i8(src + g * L));
        } else {
          uint8_t tmp[64] = {0};
          std::memcpy(tmp, src + g * L, static_cast<size_t>(nb));
          Ops::si(dst, Ops::decode_group_i8(tmp));
          std::memset(dst + nb * 4, 0, static_cast<size_t>((L - nb) * 4));
        }
      }
    }
  }

  // acc[r][j] += the products of groups [g0, g1) of the tile: by Ops::dot
  // (int32 lanes) or, with Dot16, by Ops::dot16 (int16 lanes, see i8_micro16).
  template <bool Dot16>
  BITNET_INLINE static void i8_tile_groups(const uint8_t* xt, const int8_t* panel, int64_t g0, int64_t g1,
                                           vi (&acc)[NRi][MVi]) {
    for (int64_t g = g0; g < g1; ++g) {
      const int8_t* pg = panel + g * NRi * L * 4;
      const uint8_t* xg = xt + g * L * MTi * 4;
      for (int kk = 0; kk < L; ++kk) {
        vi xv[MVi];
        static_for<MVi>([&](auto j) BITNET_INLINE { xv[j] = Ops::li(xg + (kk * MTi + j * L) * 4); });
        static_for<NRi>([&](auto r) BITNET_INLINE {
          const vi b = Ops::bi(pg + (r * L + kk) * 4);
          static_for<MVi>([&](auto j) BITNET_INLINE {
            if constexpr (Dot16) {
              acc[r][j] = Ops::dot16(acc[r][j], xv[j], b);
            } else {
              acc[r][j] = Ops::dot(acc[r][j], xv[j], b);
            }
          });
        });
      }
    }
  }

  // Accumulates the tile over all of K in registers, then stores it as
  // out[r][MT] (int32, before the activation-offset correction).
  BITNET_FLATTEN static void i8_micro(const uint8_t* xt, const int8_t* panel, int64_t ng, int32_t* out) {
    if constexpr (has_dot16()) return i8_micro16(xt, panel, ng, out);
    vi acc[NRi][MVi];
    static_for<NRi>([&](auto r) BITNET_INLINE { static_for<MVi>([&](auto j) BITNET_INLINE { acc[r][j] = Ops::zi(); }); });
    i8_tile_groups<false>(xt, panel, 0, ng, acc);
    static_for<NRi>([&](auto r) BITNET_INLINE { static_for<MVi>([&](auto j) BITNET_INLINE { Ops::si(out + r * MTi + j * L, acc[r][j]); }); });
  }

  // i8_micro with int16 sums (policies with dot16): a pair sum of activations
  // (u8, 0..255) and weights (-1..2) lies in [-510, 1020], so kDot16Steps = 32
  // of them fit an int16 lane (32 * 1020 = 32640); the tile sums that many
  // k-steps in int16 and widens them into the int32 tile (kept in `out`: the
  // int16 sums take the registers). One vpmaddwd per 32 vpmaddubsw instead of
  // one each: both use the same multiplier ports on AVX2 machines.
  static constexpr int64_t kDot16Steps = 32;
  BITNET_FLATTEN static void i8_micro16(const uint8_t* xt, const int8_t* panel, int64_t ng, int32_t* out) {
    static_assert(kDot16Steps % L == 0, "a run of int16 sums covers whole groups");
    constexpr int64_t kGroups = kDot16Steps / L;
    static_for<NRi>([&](auto r) BITNET_INLINE {
      static_for<MVi>([&](auto j) BITNET_INLINE { Ops::si(out + r * MTi + j * L, Ops::zi()); });
    });
    for (int64_t g0 = 0; g0 < ng; g0 += kGroups) {
      vi a16[NRi][MVi];
      static_for<NRi>([&](auto r) BITNET_INLINE { static_for<MVi>([&](auto j) BITNET_INLINE { a16[r][j] = Ops::zi(); }); });
      i8_tile_groups<true>(xt, panel, g0, std::min(ng, g0 + kGroups), a16);
      static_for<NRi>([&](auto r) BITNET_INLINE {
        static_for<MVi>([&](auto j) BITNET_INLINE {
          int32_t* o = out + r * MTi + j * L;
          Ops::si(o, Ops::widen16(Ops::li(o), a16[r][j]));
        });
      });
    }
  }

  // The GEMMs' float epilogue: tile[r * MT + mm] (row n0 + r of W, row m0 + mm
  // of x) into y[m0 + mm][n0 + r], times s(n0 + r) when scale is given. With
  // 16-lane vectors (AVX-512) each 16 x 16 block is transposed in registers
  // and each row of y takes one masked store (the element-by-element copy was
  // ~3% of a 512-token prefill); elsewhere element by element.
  template <int NR, int MT>
  static void store_tile(const float* tile, const float* scale, bool per_row, float* y, int64_t N, int64_t n0,
                         int nvalid, int64_t m0, int64_t mvalid) {
    if constexpr (Ops::kLut && NR <= 16 && MT % 16 == 0) {
      alignas(64) float s[16];
      for (int r = 0; r < 16; ++r) s[r] = r >= nvalid ? 0.0f : (scale ? row_scale(scale, per_row, n0 + r) : 1.0f);
      const vf sv = Ops::lf(s);
      for (int64_t b = 0; b * 16 < mvalid; ++b) {
        vi blk[16];
        for (int r = 0; r < 16; ++r) blk[r] = r < NR ? Ops::bits(Ops::lf(tile + r * MT + b * 16)) : Ops::zi();
        Ops::transpose16(blk);
        const int64_t rows = std::min<int64_t>(16, mvalid - b * 16);
        for (int64_t mm = 0; mm < rows; ++mm) {
          Ops::sf_n(y + (m0 + b * 16 + mm) * N + n0, Ops::mul(sv, Ops::from_bits(blk[mm])), nvalid);
        }
      }
    } else {
      for (int64_t mm = 0; mm < mvalid; ++mm) {
        float* yr = y + (m0 + mm) * N + n0;
        for (int r = 0; r < nvalid; ++r) {
          const float v = tile[r * MT + mm];
          yr[r] = scale ? row_scale(scale, per_row, n0 + r) * v : v;
        }
      }
    }
  }

  static void i8_gemm(const I8Args& a) {
    const int64_t M = a.M, N = a.N, K = a.K, RB = K / 4;
    const int64_t ng = ceil_div(RB, L), K4p = ng * L, nmt = ceil_div(M, MTi);
    uint8_t* xT = scratch(kActs).get<uint8_t>(nmt * K4p * MTi * 4);
    i8_pack_acts(a.xq, M, K, K4p, xT);
    float* xs = nullptr;
    if (a.y) {
      xs = scratch(kAux).get<float>(nmt * MTi);
      for (int64_t m = 0; m < nmt * MTi; ++m) xs[m] = m < M ? a.xscale[m] : 0.0f;
    }
    const uint8_t* wbytes = reinterpret_cast<const uint8_t*>(a.wq);
    const int64_t ntiles = ceil_div(N, NRi);
    parallel_for(0, ntiles, 1, [&](int64_t t0, int64_t t1) {
      int8_t* panel = scratch(kPanel).get<int8_t>(ng * NRi * L * 4);
      int32_t* tile = scratch(kTile).get<int32_t>(NRi * MTi);
      float* tilef = reinterpret_cast<float*>(tile);
      int32_t rowsum[NRi];
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = t * NRi;
        const int nvalid = static_cast<int>(std::min<int64_t>(NRi, N - n0));
        i8_decode_panel(wbytes + n0 * RB, RB, ng, nvalid, panel, rowsum);
        for (int64_t mt = 0; mt < nmt; ++mt) {
          i8_micro(xT + mt * K4p * MTi * 4, panel, ng, tile);
          const int64_t m0 = mt * MTi;
          for (int r = 0; r < nvalid; ++r) {
            const vi corr = Ops::set1i(Ops::kActOffset * rowsum[r]);
            const int64_t n = n0 + r;
            if (a.y) {
              const vf s = Ops::set1f(row_scale(a.scale, a.per_row_scale, n));
              for (int j = 0; j < MVi; ++j) {
                const vi t = Ops::subi(Ops::li(tile + r * MTi + j * L), corr);
                vf f = Ops::mul(Ops::mul(Ops::cvt(t), Ops::lf(xs + m0 + j * L)), s);
                if (a.bias) f = Ops::add(f, Ops::set1f(a.bias[n]));
                Ops::sf(tilef + r * MTi + j * L, f);
              }
            } else {
              for (int j = 0; j < MVi; ++j)
                Ops::si(tile + r * MTi + j * L, Ops::subi(Ops::li(tile + r * MTi + j * L), corr));
            }
          }
          const int64_t mvalid = std::min<int64_t>(MTi, M - m0);
          if (a.y) {
            store_tile<NRi, MTi>(tilef, nullptr, false, a.y, N, n0, nvalid, m0, mvalid);
            continue;
          }
          for (int64_t mm = 0; mm < mvalid; ++mm) {
            int32_t* yr = a.acc + (m0 + mm) * N + n0;
            for (int r = 0; r < nvalid; ++r) yr[r] = tile[r * MTi + mm];
          }
        }
      }
    });
  }

  static void matmul_i8(const I8Args& a) {
    if (a.M <= kGemvMaxM) {
      i8_gemv(a);
    } else {
      i8_gemm(a);
    }
  }

  // =========================================================================
  // Float GEMV (small M). Block = L words = 16L weights; (word >> 2s) gives,
  // in lane j, the code of k = 16j + s, decoded to a float by a table
  // permute. Activations permuted once: xp[s*L + j] = x[16j + s].
  static constexpr int KBF = 16 * L;

  static void f_permute(const float* x, int64_t ldx, int64_t M, int64_t K, int64_t nblk, float* xp) {
    for (int64_t m = 0; m < M; ++m) {
      const float* src = x + m * ldx;
      float* dst = xp + m * nblk * KBF;
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const int64_t kb = blk * KBF;
        if (kb + KBF <= K) {
          for (int j = 0; j < L; ++j)
            for (int s = 0; s < 16; ++s) dst[kb + s * L + j] = src[kb + 16 * j + s];
        } else {
          for (int j = 0; j < L; ++j)
            for (int s = 0; s < 16; ++s) {
              const int64_t k = kb + 16 * j + s;
              dst[kb + s * L + j] = k < K ? src[k] : 0.0f;
            }
        }
      }
    }
  }

  template <int MB, int NB>
  BITNET_FLATTEN static void f_gemv_rows(const float* xp, int64_t nblk, const uint32_t* wq, int64_t K, int64_t n0,
                                         int64_t m0, float* out /*[NB][MB]*/) {
    constexpr int A = Ops::gemv_acc(MB, NB);
    const int64_t KW = K / 16;
    const int64_t nfull = KW / L;
    const int tailw = static_cast<int>(KW - nfull * L);
    const uint32_t* w = wq + n0 * KW;
    const float* x = xp + m0 * nblk * KBF;
    const int64_t xstride = nblk * KBF;
    vf acc[NB][MB][A];
    static_for<NB>([&](auto r) BITNET_INLINE {
      static_for<MB>([&](auto m) BITNET_INLINE {
        static_for<A>([&](auto c) BITNET_INLINE { acc[r][m][c] = Ops::zf(); });
      });
    });
    auto block = [&](const vi* v0, int64_t blk) BITNET_INLINE {
      vi v[NB];
      static_for<NB>([&](auto r) BITNET_INLINE {
        v[r] = v0[r];
        opaque(v[r]);
      });
      static_for<16>([&](auto s) BITNET_INLINE {
        vf d[NB];
        static_for<NB>([&](auto r) BITNET_INLINE {
          d[r] = Ops::decode_f(Ops::template srli<2 * decltype(s)::value>(v[r]));
        });
        static_for<MB>([&](auto m) BITNET_INLINE {
          const vf xv = Ops::lf(x + m * xstride + blk * KBF + s * L);
          static_for<NB>([&](auto r) BITNET_INLINE {
            constexpr int ci = decltype(s)::value % A;
            acc[r][m][ci] = Ops::fmadd(d[r], xv, acc[r][m][ci]);
          });
        });
      });
    };
    const uint32_t* pf = w + prefetch_groups(NB * KW * 4) * NB * KW;
    for (int64_t blk = 0; blk < nfull; ++blk) {
      prefetch_group_in_order<NB, 4 * L>(pf, blk);
      vi v[NB];
      static_for<NB>([&](auto r) BITNET_INLINE { v[r] = Ops::li(w + r * KW + blk * L); });
      block(v, blk);
    }
    if (tailw) {
      vi v[NB];
      static_for<NB>([&](auto r) BITNET_INLINE { v[r] = Ops::li_words(w + r * KW + nfull * L, tailw); });
      block(v, nfull);
    }
    static_for<NB>([&](auto r) BITNET_INLINE {
      static_for<MB>([&](auto m) BITNET_INLINE {
        vf t = acc[r][m][0];
        if constexpr (A > 1) t = Ops::add(t, acc[r][m][1]);
        out[r * MB + m] = Ops::hsum_f(t);
      });
    });
  }

  // Each row group runs over all of K: the activations (MB x K floats) are
  // read from L2 when they exceed L1. Splitting K into chunks (as the int8
  // GEMV does) measured slower at M = 2, 4 and 8 on every shape tried, the
  // more so the smaller the chunk: up to 35% with cold weights (M = 8,
  // 2560 x 2560, 1 thread, 20 KiB chunks: 1.64 -> 1.07 ms). Prefetching in
  // read order did not change that; the cause was not isolated.
  template <int MB>
  static void f_gemv_run(const float* xp, int64_t nblk, const uint32_t* wq, const float* scale, bool per_row, float* y,
                         int64_t N, int64_t K, int64_t m0) {
    constexpr int NB = Ops::gemv_nb_f(MB);
    const int64_t grain = grain_for(K * MB, NB * 4);
    parallel_for(0, N, grain, [&](int64_t b, int64_t e) {
      auto emit = [&]<int R>(const float* out, int64_t n0) BITNET_INLINE {
        for (int r = 0; r < R; ++r)
          for (int m = 0; m < MB; ++m)
            y[(m0 + m) * N + n0 + r] = row_scale(scale, per_row, n0 + r) * out[r * MB + m];
      };
      int64_t n = b;
      for (; n + NB <= e; n += NB) {
        float out[NB * MB];
        f_gemv_rows<MB, NB>(xp, nblk, wq, K, n, m0, out);
        emit.template operator()<NB>(out, n);
      }
      for (; n < e; ++n) {
        float out[MB];
        f_gemv_rows<MB, 1>(xp, nblk, wq, K, n, m0, out);
        emit.template operator()<1>(out, n);
      }
    });
  }

  static void f_gemv(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row, float* y,
                     int64_t M, int64_t N, int64_t K) {
    const int64_t nblk = ceil_div(K, KBF);
    float* xp = scratch(kActs).get<float>(M * nblk * KBF);
    f_permute(x, ldx, M, K, nblk, xp);
    for (int64_t m0 = 0; m0 < M; m0 += 8) {
      switch (std::min<int64_t>(8, M - m0)) {
        case 1: f_gemv_run<1>(xp, nblk, wq, scale, per_row, y, N, K, m0); break;
        case 2: f_gemv_run<2>(xp, nblk, wq, scale, per_row, y, N, K, m0); break;
        case 3: f_gemv_run<3>(xp, nblk, wq, scale, per_row, y, N, K, m0); break;
        case 4: f_gemv_run<4>(xp, nblk, wq, scale, per_row, y, N, K, m0); break;
        case 5: f_gemv_run<5>(xp, nblk, wq, scale, per_row, y, N, K, m0); break;
        case 6: f_gemv_run<6>(xp, nblk, wq, scale, per_row, y, N, K, m0); break;
        case 7: f_gemv_run<7>(xp, nblk, wq, scale, per_row, y, N, K, m0); break;
        default: f_gemv_run<8>(xp, nblk, wq, scale, per_row, y, N, K, m0); break;
      }
    }
  }

  // =========================================================================
  // Float GEMV through the int8 GEMV (policies with kSplitMaxM, for
  // M <= kSplitMaxM). Each row of x is split into three int8 planes,
  //   x = s1 q1 + s2 q2 + s3 q3 + r,  s1 = max|x| / 127, s2 = s1 / 254, s3 = s2 / 254,
  // each plane rounding what the previous ones left (|q| <= 127), so
  // |r| <= s3 / 2 ~ 6.1e-8 max|x|, half a float32 ulp of the row's largest
  // element: the sums differ from the exact ones by at most sum|w| * that, within the
  // worst-case error of float32 accumulation whenever the largest element meets a
  // nonzero weight. W's dot with every plane is exact (int32), and
  // the int8 GEMV decodes each weight once for the 3M plane rows; the sums
  // are recombined in double. The float decode costs a table permute and an
  // FMA per weight and lane, the int8 one a quarter of a dot per plane: on
  // AVX2 (Zen 3, 1 thread, cold, 6912 x 2560) 1.39 ms -> 0.67 ms at M = 1.
  // Rows that are not finite, or so small that the planes' scales would be
  // subnormal, take the float GEMV (the whole call), as does K past the int32 bound.
  template <class O = Ops>
  static constexpr int split_max_m() {
    if constexpr (requires { O::kSplitMaxM; }) {
      return O::kSplitMaxM;
    } else {
      return 0;
    }
  }
  static constexpr int kPlanes = 3;
  static constexpr float kPlaneRatio = 254.0f;
  // The smallest max|x| whose third plane's scale is still a normal float.
  static constexpr float kSplitMinMax = 1e-30f;
  static constexpr int64_t kSplitMaxK = 8454656; // 127 * 2 * K < 2^31 (see bitlinear's bound)

  // Quantizes v / s (|v / s| <= 127 up to rounding) to q and returns the remainder v - q s.
  static vf split_plane(vf v, vf inv, vf neg_s, int8_t* q) {
    const vf c = Ops::min_f(Ops::max_f(Ops::round_f(Ops::mul(v, inv)), Ops::set1f(-127.0f)), Ops::set1f(127.0f));
    Ops::store_i8(q, c);
    return Ops::fmadd(c, neg_s, v);
  }
  static float split_plane(float v, float inv, float s, int8_t* q) {
    const float c = std::min(std::max(std::nearbyint(v * inv), -127.0f), 127.0f);
    *q = static_cast<int8_t>(c);
    return std::fma(-c, s, v);
  }

  // planes: (kPlanes * M) x K int8, row m * kPlanes + p; ps: the plane scales.
  // Returns false (nothing usable) when a row cannot be split.
  static bool split_rows(const float* x, int64_t ldx, int64_t M, int64_t K, int8_t* planes, float* ps) {
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * ldx;
      vi vmax = Ops::zi();
      int64_t k = 0;
      for (; k + L <= K; k += L) vmax = Ops::max_u32(vmax, Ops::abs_bits(Ops::lf(xr + k)));
      uint32_t amax = Ops::hmax_u32(vmax);
      for (; k < K; ++k) amax = std::max(amax, abs_bits(xr[k]));
      const float a = float_from_bits(amax);
      if (!(a >= kSplitMinMax && a < INFINITY)) return false; // NaN, inf or tiny
      float s[kPlanes], inv[kPlanes];
      s[0] = a / 127.0f;
      for (int p = 0; p < kPlanes; ++p) {
        if (p > 0) s[p] = s[p - 1] / kPlaneRatio;
        inv[p] = 1.0f / s[p];
        ps[m * kPlanes + p] = s[p];
      }
      int8_t* q = planes + m * kPlanes * K;
      for (k = 0; k + L <= K; k += L) {
        vf r = Ops::lf(xr + k);
        for (int p = 0; p < kPlanes; ++p) r = split_plane(r, Ops::set1f(inv[p]), Ops::set1f(-s[p]), q + p * K + k);
      }
      for (; k < K; ++k) {
        float r = xr[k];
        for (int p = 0; p < kPlanes; ++p) r = split_plane(r, inv[p], s[p], q + p * K + k);
      }
    }
    return true;
  }

  static bool f_gemv_split(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row,
                           float* y, int64_t M, int64_t N, int64_t K) {
    if (K > kSplitMaxK) return false;
    const int64_t MP = kPlanes * M;
    int8_t* planes = scratch(kSplitPlanes).get<int8_t>(MP * K + MP * 4);
    float* ps = reinterpret_cast<float*>(planes + ((MP * K + 3) & ~int64_t{3}));
    if (!split_rows(x, ldx, M, K, planes, ps)) return false;
    int32_t* acc = scratch(kSplitAcc).get<int32_t>(MP * N);
    i8_gemv(I8Args{planes, nullptr, wq, scale, per_row, nullptr, acc, nullptr, MP, N, K});
    for (int64_t m = 0; m < M; ++m) {
      const float* s = ps + m * kPlanes;
      const int32_t* a = acc + m * kPlanes * N;
      for (int64_t n = 0; n < N; ++n) {
        double t = 0.0;
        for (int p = 0; p < kPlanes; ++p) t += static_cast<double>(a[p * N + n]) * s[p];
        y[m * N + n] = row_scale(scale, per_row, n) * static_cast<float>(t);
      }
    }
    return true;
  }

  // =========================================================================
  // Float GEMM (large M). Tile NR rows of W x MT = MV*L rows of x.
  //   xT[mt][k][MT] (zero-padded rows), panel [g][NR][L] floats (group g =
  //   weights g*L .. g*L+L-1 of each row). Lanes run over m; weights are
  //   broadcast from the panel at a constant displacement per row.
  static constexpr int NRf = Ops::kNRf, MVf = Ops::kMVf, MTf = MVf * L;

  static void f_pack_acts(const float* x, int64_t ldx, int64_t M, int64_t K, float* xT) {
    const int64_t nmt = ceil_div(M, MTf);
    for (int64_t mt = 0; mt < nmt; ++mt) {
      float* dst = xT + mt * K * MTf;
      const int64_t mv = std::min<int64_t>(MTf, M - mt * MTf);
      for (int64_t k = 0; k < K; ++k) {
        for (int64_t mm = 0; mm < mv; ++mm) dst[k * MTf + mm] = x[(mt * MTf + mm) * ldx + k];
        for (int64_t mm = mv; mm < MTf; ++mm) dst[k * MTf + mm] = 0.0f;
      }
    }
  }

  BITNET_FLATTEN static void f_micro(const float* xt, const float* panel, int64_t ng, float* out) {
    vf acc[NRf][MVf];
    static_for<NRf>([&](auto r) BITNET_INLINE { static_for<MVf>([&](auto j) BITNET_INLINE { acc[r][j] = Ops::zf(); }); });
    for (int64_t g = 0; g < ng; ++g) {
      const float* pg = panel + g * NRf * L;
      const float* xg = xt + g * L * MTf;
      for (int kk = 0; kk < L; ++kk) {
        vf xv[MVf];
        static_for<MVf>([&](auto j) BITNET_INLINE { xv[j] = Ops::lf(xg + kk * MTf + j * L); });
        static_for<NRf>([&](auto r) BITNET_INLINE {
          const vf b = Ops::bf(pg + r * L + kk);
          static_for<MVf>([&](auto j) BITNET_INLINE { acc[r][j] = Ops::fmadd(xv[j], b, acc[r][j]); });
        });
      }
    }
    static_for<NRf>([&](auto r) BITNET_INLINE { static_for<MVf>([&](auto j) BITNET_INLINE { Ops::sf(out + r * MTf + j * L, acc[r][j]); }); });
  }

  static void f_gemm(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row, float* y,
                     int64_t M, int64_t N, int64_t K) {
    const int64_t KW = K / 16, ng = K / L, nmt = ceil_div(M, MTf);
    float* xT = scratch(kActs).get<float>(nmt * K * MTf);
    f_pack_acts(x, ldx, M, K, xT);
    const int64_t ntiles = ceil_div(N, NRf);
    parallel_for(0, ntiles, 1, [&](int64_t t0, int64_t t1) {
      float* panel = scratch(kPanel).get<float>(ng * NRf * L);
      float* tile = scratch(kTile).get<float>(NRf * MTf);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t n0 = t * NRf;
        const int nvalid = static_cast<int>(std::min<int64_t>(NRf, N - n0));
        for (int r = 0; r < NRf; ++r) {
          if (r < nvalid) {
            const uint32_t* row = wq + (n0 + r) * KW;
            for (int64_t g = 0; g < ng; ++g) Ops::sf(panel + (g * NRf + r) * L, Ops::decode_group_f(row, g));
          } else {
            for (int64_t g = 0; g < ng; ++g) Ops::sf(panel + (g * NRf + r) * L, Ops::zf());
          }
        }
        for (int64_t mt = 0; mt < nmt; ++mt) {
          f_micro(xT + mt * K * MTf, panel, ng, tile);
          store_tile<NRf, MTf>(tile, scale, per_row, y, N, n0, nvalid, mt * MTf, std::min<int64_t>(MTf, M - mt * MTf));
        }
      }
    });
  }

  // =========================================================================
  // Float GEMV for M = 1 by pair lookups (policies with kLut, AVX-512).
  // Lanes run over 16 rows of W: a 16 x 16 word tile (16 rows x 256 k) is
  // transposed in registers so that vector j holds word j of each row. Its
  // 4-bit fields are code pairs (c0, c1) of k = 2p, 2p + 1, and a per-call
  // table T[p][c0 + 4 c1] = x[2p] (c0 - 1) + x[2p+1] (c1 - 1) turns each
  // (shift, vpermps, add) into 2 weights per lane, twice the per-weight rate
  // of decode + FMA; and the 16 row sums come out in one vector.
  BITNET_FLATTEN static void f_lut_group(const float* tab, const uint32_t* wq, int64_t KW, int64_t n0, int nrows,
                                         const float* scale, bool per_row, float* y) {
    const int64_t nkb = ceil_div(KW, 16);
    const uint32_t* rows[16];
    for (int r = 0; r < 16; ++r) rows[r] = wq + (n0 + std::min(r, nrows - 1)) * KW;
    // Prefetch the rows of later groups in the order they will be read (row
    // r's block kb while reading our block kb), so every line gets the same
    // lead; every line is prefetched twice, one group further ahead and again
    // at the usual distance. Measured on Zen 4 with weights from DRAM: one
    // prefetch per line, at any distance of 1-4 groups, 211-224 us for
    // 2560x2560 on 1 thread; two 166-184 us (6912x2560: ~600 -> ~450 us; 2
    // threads 2560x2560: 122 -> 94 us); from L2/L3 ~5% slower (143 -> 151 us).
    // Some prefetches of this 16-row pattern are evidently lost, and the second
    // catches them (the 4-row int8 GEMV gains nothing from it).
    const uint32_t* pf = wq + (n0 + 16 * prefetch_groups(16 * KW * 4)) * KW;
    const uint32_t* pf_far = pf + 16 * KW;
    const vf one = Ops::set1f(1.0f);
    vf acc[4] = {Ops::zf(), Ops::zf(), Ops::zf(), Ops::zf()};
    for (int64_t kb = 0; kb < nkb; ++kb) {
      const int nw = static_cast<int>(std::min<int64_t>(16, KW - kb * 16));
      vi t[16];
      if (nw == 16) {
        static_for<16>([&](auto r) BITNET_INLINE { t[r] = Ops::li(rows[r] + kb * 16); });
      } else {
        static_for<16>([&](auto r) BITNET_INLINE { t[r] = Ops::li_words(rows[r] + kb * 16, nw); });
      }
      static_for<16>([&](auto r) BITNET_INLINE {
        prefetch(pf + r * KW + kb * 16);
        prefetch(pf_far + r * KW + kb * 16);
      });
      Ops::transpose16(t);
      const float* tb = tab + kb * 128 * 16;
      static_for<16>([&](auto j) BITNET_INLINE {
        static_for<8>([&](auto q) BITNET_INLINE {
          constexpr int Q = decltype(q)::value;
          vi idx = t[j];
          if constexpr (Q > 0) idx = Ops::template srli<4 * Q>(idx);
          acc[Q & 3] = Ops::fmadd(Ops::lut(idx, tb + (j * 8 + Q) * 16), one, acc[Q & 3]);
        });
      });
    }
    vf sum = Ops::add(Ops::add(acc[0], acc[1]), Ops::add(acc[2], acc[3]));
    const vf s = per_row ? (nrows == 16 ? Ops::lf(scale + n0) : Ops::zf()) : Ops::set1f(scale[0]);
    if (nrows == 16) {
      Ops::sf(y + n0, Ops::mul(s, sum));
    } else {
      float tmp[16];
      Ops::sf(tmp, sum);
      for (int r = 0; r < nrows; ++r) y[n0 + r] = row_scale(scale, per_row, n0 + r) * tmp[r];
    }
  }

  static void f_gemv_lut(const float* x, const uint32_t* wq, const float* scale, bool per_row, float* y, int64_t N,
                         int64_t K) {
    const int64_t KW = K / 16, nkb = ceil_div(KW, 16), P = nkb * 128;
    float* tab = scratch(kActs).get<float>(P * 16);
    const vf w0 = Ops::lut_w0(), w1 = Ops::lut_w1();
    for (int64_t p = 0; p < P; ++p) {
      const float x0 = 2 * p < K ? x[2 * p] : 0.0f;
      const float x1 = 2 * p + 1 < K ? x[2 * p + 1] : 0.0f;
      Ops::sf(tab + p * 16, Ops::add(Ops::mul(Ops::set1f(x0), w0), Ops::mul(Ops::set1f(x1), w1)));
    }
    const int64_t ngroups = ceil_div(N, 16);
    parallel_for(0, ngroups, grain_for(16 * K, 1), [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        const int nrows = static_cast<int>(std::min<int64_t>(16, N - g * 16));
        f_lut_group(tab, wq, KW, g * 16, nrows, scale, per_row, y);
      }
    });
  }

  static void matmul_t(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row, float* y,
                       int64_t M, int64_t N, int64_t K) {
    // The planes first: where a policy has both (AVX-512 VNNI), they beat the
    // pair lookups at M = 1 (Zen 5, 1 thread, 6912 x 2560: 846 -> ~300 us).
    if (M <= split_max_m() && f_gemv_split(x, ldx, wq, scale, per_row, y, M, N, K)) return;
    if constexpr (Ops::kLut) {
      if (M == 1) {
        f_gemv_lut(x, wq, scale, per_row, y, N, K);
        return;
      }
    }
    if (M <= kGemvMaxM) {
      f_gemv(x, ldx, wq, scale, per_row, y, M, N, K);
    } else {
      f_gemm(x, ldx, wq, scale, per_row, y, M, N, K);
    }
  }
  // matmul_t of a level that adds a float prefill GEMM (avx512_bf16,
  // avx512_amx): Gemm for M > kGemvMaxM, which may decline (returns false) and
  // leave the call to this level's matmul_t.
  using FloatGemm = bool (*)(const float*, int64_t, const uint32_t*, const float*, bool, float*, int64_t, int64_t,
                             int64_t);
  template <FloatGemm Gemm>
  static void matmul_t_with_gemm(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row,
                                 float* y, int64_t M, int64_t N, int64_t K) {
    if (M > kGemvMaxM && Gemm(x, ldx, wq, scale, per_row, y, M, N, K)) return;
    matmul_t(x, ldx, wq, scale, per_row, y, M, N, K);
  }


  // =========================================================================
  // transpose=False: y[m, k] = sum_n (x[m, n] s(n)) W[n, k]. Threads split
  // k; a register tile of MB rows of y x G groups of L columns accumulates
  // over all n.
  static constexpr int MBn = Ops::kMBn, Gn = Ops::kGn;

  template <int MB, int G>
  BITNET_FLATTEN static void n_tile(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row, float* y,
                     int64_t N, int64_t K, int64_t m0, int64_t g0) {
    const int64_t KW = K / 16;
    vf acc[MB][G];
    static_for<MB>([&](auto m) BITNET_INLINE { static_for<G>([&](auto j) BITNET_INLINE { acc[m][j] = Ops::zf(); }); });
    for (int64_t n = 0; n < N; ++n) {
      const float s = row_scale(scale, per_row, n);
      const uint32_t* row = wq + n * KW;
      vf av[MB];
      static_for<MB>([&](auto m) BITNET_INLINE { av[m] = Ops::set1f(x[(m0 + m) * ldx + n] * s); });
      static_for<G>([&](auto j) BITNET_INLINE {
        const vf d = Ops::decode_group_f(row, g0 + j);
        static_for<MB>([&](auto m) BITNET_INLINE { acc[m][j] = Ops::fmadd(d, av[m], acc[m][j]); });
      });
    }
    static_for<MB>([&](auto m) BITNET_INLINE {
      static_for<G>([&](auto j) BITNET_INLINE { Ops::sf(y + (m0 + m) * K + (g0 + j) * L, acc[m][j]); });
    });
  }

  template <int MB>
  static void n_rows(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row, float* y,
                     int64_t N, int64_t K, int64_t m0, int64_t g0, int64_t g1) {
    int64_t g = g0;
    for (; g + Gn <= g1; g += Gn) n_tile<MB, Gn>(x, ldx, wq, scale, per_row, y, N, K, m0, g);
    for (; g < g1; ++g) n_tile<MB, 1>(x, ldx, wq, scale, per_row, y, N, K, m0, g);
  }

  static void matmul_n(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row, float* y,
                       int64_t M, int64_t N, int64_t K) {
    const int64_t ngroups = K / L;
    const int64_t grain = grain_for(N * L * M, Gn);
    parallel_for(0, ngroups, grain, [&](int64_t g0, int64_t g1) {
      // Walk column blocks of one cache line of W per row so that a line
      // fetched for one block is reused by the next ones.
      const int64_t span = std::max<int64_t>(Gn, 256 / L);
      for (int64_t gb = g0; gb < g1; gb += span) {
        const int64_t ge = std::min(g1, gb + span);
        int64_t m0 = 0;
        for (; m0 + MBn <= M; m0 += MBn) n_rows<MBn>(x, ldx, wq, scale, per_row, y, N, K, m0, gb, ge);
        for (; m0 < M; ++m0) n_rows<1>(x, ldx, wq, scale, per_row, y, N, K, m0, gb, ge);
      }
    });
  }

  // =========================================================================
  static void absmax_quantize(const float* x, int64_t ldx, float eps, int8_t* xq, float* xscale, int64_t M,
                              int64_t K, ActRounding rounding) {
    const bool mul = rounding == ActRounding::Transformers;
    parallel_for(0, M, grain_for(K, 1), [&](int64_t m0, int64_t m1) {
      for (int64_t m = m0; m < m1; ++m) {
        const float* xr = x + m * ldx;
        int8_t* q = xq + m * K;
        // max |x| over the bit patterns (abs_bits): NaN if any x is NaN.
        vi vmax = Ops::zi();
        int64_t k = 0;
        for (; k + L <= K; k += L) vmax = Ops::max_u32(vmax, Ops::abs_bits(Ops::lf(xr + k)));
        uint32_t amax = Ops::hmax_u32(vmax);
        for (; k < K; ++k) amax = std::max(amax, abs_bits(xr[k]));
        const float a = max_nan(float_from_bits(amax), eps);
        const float s = a / 127.0f;
        const float inv = (1.0f / a) * 127.0f; // as torch's 127 / t
        xscale[m] = s;
        if (!finite_positive(s)) {
          // NaN or inf in the row (or s = 0): quotients can be NaN, which the
          // vector clamp would turn into -128. Rare, so exact and scalar.
          absmax_quantize_row_exact(xr, s, inv, mul, q, K);
          continue;
        }
        // Every |x| <= max |x| is finite here: every quotient is a number.
        const vf vs = Ops::set1f(s), vinv = Ops::set1f(inv), lo = Ops::set1f(-128.0f), hi = Ops::set1f(127.0f);
        for (k = 0; k + L <= K; k += L) {
          const vf v = Ops::lf(xr + k);
          const vf r = Ops::round_f(mul ? Ops::mul(v, vinv) : Ops::div_f(v, vs));
          Ops::store_i8(q + k, Ops::min_f(Ops::max_f(r, lo), hi));
        }
        for (; k < K; ++k) {
          q[k] = static_cast<int8_t>(quantize_code(mul ? xr[k] * inv : xr[k] / s, -128.0f, 127.0f));
        }
      }
    });
  }

  // =========================================================================
  // Unpack / dequantize: one decode per L weights, rows split over threads.
  static void unpack_ternary(const uint32_t* wq, int8_t* w, int64_t N, int64_t K) {
    const int64_t RB = K / 4, ng = RB / L;
    parallel_for(0, N, grain_for(K, 1), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const uint8_t* src = reinterpret_cast<const uint8_t*>(wq) + n * RB;
        int8_t* dst = w + n * K;
        for (int64_t g = 0; g < ng; ++g) Ops::si(dst + g * L * 4, Ops::decode_group_i8(src + g * L));
        for (int64_t b = ng * L; b < RB; ++b)
          for (int i = 0; i < 4; ++i) dst[4 * b + i] = static_cast<int8_t>(((src[b] >> (2 * i)) & 3) - 1);
      }
    });
  }

  static void dequantize_ternary(const uint32_t* wq, const float* scale, bool per_row, float* out, int64_t N,
                                 int64_t K) {
    const int64_t KW = K / 16, ng = K / L;
    parallel_for(0, N, grain_for(K, 1), [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const uint32_t* row = wq + n * KW;
        const vf s = Ops::set1f(row_scale(scale, per_row, n));
        float* dst = out + n * K;
        for (int64_t g = 0; g < ng; ++g) Ops::sf(dst + g * L, Ops::mul(s, Ops::decode_group_f(row, g)));
      }
    });
  }

  // Constant-initialized (no code of this translation unit runs to build it).
  static constexpr KernelTable table() {
    return KernelTable{
        &matmul_t,
        &matmul_n,
        &absmax_quantize,
        &matmul_i8,
        &absmean_quantize_generic,
        &pack_ternary_generic,
        &unpack_ternary,
        &dequantize_ternary,
    };
  }
};

} // namespace
} // namespace bitnet_ext::cpu
