// Prefill GEMMs on tensor cores, y = x @ (diag(s) W).T for many rows of x:
//
//   cuda_ternary_gemm_<T>_bm<BM>    T = float16 / bfloat16: x in T, W decoded to T (code - 1, exact),
//                                   mma.m16n8k16 with float32 accumulation; y = T(s(n) * acc)
//   cuda_bitlinear_gemm_<T>_bm<BM>  xq int8 (absmax_quantize_<T>, natural order), W decoded to int8,
//                                   mma.m16n8k32.s8, exact int32; BitLinear's epilogue
//
// Tiles: BM x 128 outputs per block of W warps, 2 along M x W/2 along N (8
// warps: each BM/2 x 32; 4 warps: each BM/2 x 64, twice the MMAs per
// fragment load and per barrier), K in slabs of 64 bytes (64 int8 or 32 16-bit k), 3 to 5
// slabs in flight. The x slab (16-byte chunks, zero-filled past M and K) and the
// packed W slab (2 bits a weight: W is read once per block in packed form)
// arrive by cp.async; each W row is decoded one slab ahead into a
// double-buffered tile of MMA elements (gemm_body). Shared rows are
// 64 bytes with the 16-byte chunks XOR-swizzled by row, so ldmatrix reads
// 8 rows of one chunk column without bank conflicts.
#include "kernel_args.cuh"
#include <type_traits>

#include "ternary_mma.cuh"

namespace bitnet_cuda {
namespace {

constexpr int kBN = 128;
constexpr int kSlabBytes = 64;
// Slabs in flight: as many as fit in 48 KiB of static shared memory (5 for
// BM = 64, 3 for BM = 128). The copies of slab kb + 1 are waited for at the
// start of iteration kb (kStages - 2 iterations after they were issued).
template <int BM>
constexpr int kStages = BM == 64 ? 5 : 3;

__device__ __forceinline__ int swizzle(int row, int chunk) {
  return row * kSlabBytes + ((chunk ^ ((row >> 1) & 3)) << 4);
}

// W's codes as the MMA's element type, natural k order, code - 1.
template <class E>
struct WDecode;

template <>
struct WDecode<int8_t> {
  static constexpr int kWordsPerSlab = 4; // 64 codes
  // One word -> 16 int8 (one chunk).
  __device__ static void store(uint8_t* slab, int row, int word, uint32_t w) {
    uint32_t v[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t b = (w >> (8 * i)) & 0xFFu;
      const uint32_t r = (b & 0x3u) | ((b & 0xCu) << 6) | ((b & 0x30u) << 12) | ((b & 0xC0u) << 18);
      v[i] = ((r | 0x80808080u) - 0x01010101u) ^ 0x80808080u; // bytes c - 1, no borrow between bytes
    }
    *reinterpret_cast<uint4*>(slab + swizzle(row, word)) = make_uint4(v[0], v[1], v[2], v[3]);
  }
};

template <class H>
struct WDecode16 {
  static constexpr int kWordsPerSlab = 2; // 32 codes
  // One word -> 16 values of 16 bits (two chunks).
  __device__ static void store(uint8_t* slab, int row, int word, uint32_t w) {
    uint32_t v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const uint32_t c = ((w >> (4 * i)) & 3u) | (((w >> (4 * i + 2)) & 3u) << 16);
      if constexpr (sizeof(H) == 2 && std::is_same_v<H, __half>) {
        v[i] = fma_f16x2(c | 0x64006400u, pair_bits(1.0, 10, 15), pair_bits(-1025.0, 10, 15));
      } else {
        v[i] = fma_bf16x2(c | 0x43004300u, pair_bits(1.0, 7, 127), pair_bits(-129.0, 7, 127));
      }
    }
    *reinterpret_cast<uint4*>(slab + swizzle(row, 2 * word)) = make_uint4(v[0], v[1], v[2], v[3]);
    *reinterpret_cast<uint4*>(slab + swizzle(row, 2 * word + 1)) = make_uint4(v[4], v[5], v[6], v[7]);
  }
};
template <>
struct WDecode<__half> : WDecode16<__half> {};
template <>
struct WDecode<__nv_bfloat16> : WDecode16<__nv_bfloat16> {};

template <class E>
__device__ __forceinline__ void mma_slab_step(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  mma_16816<E>(d, a, b0, b1);
}
template <class E>
__device__ __forceinline__ void mma_slab_step(int (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  mma_16832_s8(d, a, b0, b1);
}

template <class E>
using Acc = std::conditional_t<std::is_same_v<E, int8_t>, int, float>;

struct Epilogue {
  const float* scale;
  const float* xscale; // bitlinear only
  const float* bias;
  int per_row, has_bias;
};

template <class E, class T>
__device__ __forceinline__ T finish(Acc<E> acc, int m, int n, const Epilogue& ep) {
  const float s = ep.scale[ep.per_row ? n : 0];
  if constexpr (std::is_same_v<E, int8_t>) {
    return bitlinear_epilogue<T>(acc, ep.xscale[m], s, ep.bias, ep.has_bias, n);
  } else {
    return from_float<T>(s * acc);
  }
}

// A: M x K elements of E (row stride K), B: packed W (N x K/16 words).
// Pipeline (one barrier per slab): at iteration kb, thread r < 128 waits for
// its own copy of W row r's slab kb + 1 and decodes it into the other half of
// the double-buffered decoded tile (no barrier between the copy and the
// decode: the thread that copied is the one that reads; the half was last
// read by the MMAs of slab kb - 1, before the previous barrier), the slabs
// kb + S - 1 of x and W are requested by cp.async, and slab kb is multiplied
// (the decode's ALU work and the MMAs interleave across warps); the barrier
// then publishes slab kb + 1. AsyncA / AsyncW: the 16-byte (8-byte)
// alignment cp.async needs; otherwise plain loads (x) or loads at decode
// time (W).
template <class E, class T, int BM, int Warps, bool AsyncA, bool AsyncW>
__device__ __forceinline__ void gemm_body(
    const E* A, const uint32_t* wq, T* y, int M, int N, int K, const Epilogue& ep, uint8_t* smem) {
  constexpr int kThreads = 32 * Warps;
  constexpr int WN = Warps / 2;      // warps along N
  constexpr int WTN = kBN / WN;      // columns per warp
  constexpr int NT = WTN / 8;        // n8 tiles per warp
  constexpr int MT = BM / 32;        // m16 tiles per warp
  constexpr int kWords = WDecode<E>::kWordsPerSlab;
  constexpr int kAChunks = BM * 4 / kThreads;
  static_assert(kThreads >= kBN, "one thread per row of W decodes it");
  constexpr int S = kStages<BM>;
  uint8_t* sa = smem;                                                     // [kStages][BM][64]
  uint8_t* sw = sa + S * BM * kSlabBytes;                           // [kStages][kBN][16] packed
  uint8_t* sb = sw + S * kBN * 16;                                  // [2][kBN][64] decoded
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int wm = warp / WN, wn = warp % WN;
  const int m0 = blockIdx.y * BM, n0 = blockIdx.x * kBN;
  const int words = K / 16;
  const int kbytes = K * int(sizeof(E));
  const int slabs = (kbytes + kSlabBytes - 1) / kSlabBytes;
  const bool w_row_ok = tid < kBN && n0 + tid < N;
  const uint32_t* wrow = wq + size_t(w_row_ok ? n0 + tid : 0) * words;

  auto load_a = [&](int slab, int stage) {
#pragma unroll
    for (int i = 0; i < kAChunks; ++i) {
      const int c = tid + i * kThreads;
      const int row = c / 4, chunk = c % 4;
      const int kb = slab * kSlabBytes + chunk * 16;
      const bool ok = m0 + row < M && kb < kbytes;
      const uint8_t* src = reinterpret_cast<const uint8_t*>(A) + (ok ? size_t(m0 + row) * kbytes + kb : 0);
      copy_x_chunk<AsyncA>(sa + stage * BM * kSlabBytes + swizzle(row, chunk), src, ok);
    }
  };
  // Words of W row tid in this slab that lie inside K (0 past N).
  auto valid_words = [&](int slab) { return w_row_ok ? max(0, min(kWords, words - slab * kWords)) : 0; };
  auto load_w = [&](int slab, int stage) {
    if (AsyncW && tid < kBN) {
      const int n = valid_words(slab);
      uint8_t* dst = sw + (stage * kBN + tid) * 16;
      const uint32_t* src = n > 0 ? wrow + slab * kWords : wq;
      if constexpr (kWords == 4) {
        cp_async_16(dst, src, 4 * n);
      } else {
        cp_async_8(dst, src, 4 * n);
      }
    }
  };
  // Thread tid < kBN: decode its row's slab (zero-filled words past K read as
  // code 0, W = -1, against x = 0 there).
  auto decode_w = [&](int slab, int stage, int half) {
    if (tid < kBN) {
      uint32_t w[kWords];
      if (AsyncW) {
        const uint32_t* src = reinterpret_cast<const uint32_t*>(sw + (stage * kBN + tid) * 16);
#pragma unroll
        for (int i = 0; i < kWords; ++i) {
          w[i] = src[i];
        }
      } else {
        const int n = valid_words(slab);
#pragma unroll
        for (int i = 0; i < kWords; ++i) {
          w[i] = i < n ? wrow[slab * kWords + i] : 0u;
        }
      }
#pragma unroll
      for (int i = 0; i < kWords; ++i) {
        WDecode<E>::store(sb + half * kBN * kSlabBytes, tid, i, w[i]);
      }
    }
  };

  Acc<E> acc[MT][NT][4];
  zero_fragments(acc);
  cp_async_prologue<S>(slabs, [&](int s) {
    load_a(s, s);
    load_w(s, s);
  });
  cp_async_wait<S - 2>();
  decode_w(0, 0, 0);
  __syncthreads();

  for (int kb = 0; kb < slabs; ++kb) {
    // Own copies of slab kb + 1 (issued S - 2 iterations ago) have landed.
    cp_async_wait<S - 3>();
    if (kb + 1 < slabs) {
      decode_w(kb + 1, (kb + 1) % S, (kb + 1) % 2);
    }
    const int next = kb + S - 1;
    if (next < slabs) {
      load_a(next, next % S);
      load_w(next, next % S);
    }
    cp_async_commit();

    const uint8_t* a_st = sa + (kb % S) * BM * kSlabBytes;
    const uint8_t* b_st = sb + (kb % 2) * kBN * kSlabBytes;
#pragma unroll
    for (int ks = 0; ks < 2; ++ks) {
      uint32_t af[MT][4], bf[NT][2];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const int row = wm * (BM / 2) + mt * 16 + lane % 16;
        ldmatrix_x4(af[mt], a_st + swizzle(row, 2 * ks + lane / 16));
      }
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        const int row = wn * WTN + (2 * np + lane / 16) * 8 + lane % 8;
        uint32_t r[4];
        ldmatrix_x4(r, b_st + swizzle(row, 2 * ks + (lane / 8) % 2));
        bf[2 * np][0] = r[0], bf[2 * np][1] = r[1], bf[2 * np + 1][0] = r[2], bf[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          mma_slab_step<E>(acc[mt][nt], af[mt], bf[nt][0], bf[nt][1]);
        }
      }
    }
    __syncthreads();
  }

  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int m = m0 + wm * (BM / 2) + mt * 16 + g + (c >= 2 ? 8 : 0);
        const int n = n0 + wn * WTN + nt * 8 + 2 * t + (c & 1);
        if (m < M && n < N) {
          y[size_t(m) * N + n] = finish<E, T>(acc[mt][nt][c], m, n, ep);
        }
      }
    }
  }
}

// cp.async of W needs its slab (16 bytes int8, 8 bytes 16-bit) aligned.
template <class E>
__device__ __forceinline__ bool w_async_ok(const uint32_t* wq, int K) {
  constexpr int kWords = WDecode<E>::kWordsPerSlab;
  return reinterpret_cast<uintptr_t>(wq) % (4 * kWords) == 0 && (K / 16) % kWords == 0;
}

template <int BM>
constexpr int smem_bytes() {
  return kStages<BM> * (BM * kSlabBytes + kBN * 16) + 2 * kBN * kSlabBytes;
}

// Slots as the shared plan's ternary_gemm_t: 0 x, 1 wq, 2 scale, 3 y; 4 M, 5 N, 6 K, 7 per_row.
template <class T, int BM, int Warps>
__global__ void __launch_bounds__(32 * Warps) ternary_gemm(bnc::KernelArgs a) {
  __shared__ __align__(128) uint8_t smem[smem_bytes<BM>()];
  const auto* x = bnc::buffer<const T>(a, 0);
  const Epilogue ep{bnc::buffer<const float>(a, 2), nullptr, nullptr, bnc::constant_i32(a, 7), 0};
  const int M = bnc::constant_i32(a, 4), N = bnc::constant_i32(a, 5), K = bnc::constant_i32(a, 6);
  const auto* wq = bnc::buffer<const uint32_t>(a, 1);
  auto* y = bnc::buffer<T>(a, 3);
  const bool w_ok = w_async_ok<T>(wq, K);
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0) {
    if (w_ok) {
      gemm_body<T, T, BM, Warps, true, true>(x, wq, y, M, N, K, ep, smem);
    } else {
      gemm_body<T, T, BM, Warps, true, false>(x, wq, y, M, N, K, ep, smem);
    }
  } else {
    gemm_body<T, T, BM, Warps, false, false>(x, wq, y, M, N, K, ep, smem);
  }
}

// Slots as the shared plan's bitlinear_gemm: 0 xq (int8, natural order), 1 xscale, 2 wq, 3 scale,
// 4 bias, 5 y; 6 M, 7 N, 8 K, 9 per_row, 10 has_bias.
template <class T, int BM, int Warps>
__global__ void __launch_bounds__(32 * Warps) bitlinear_gemm(bnc::KernelArgs a) {
  __shared__ __align__(128) uint8_t smem[smem_bytes<BM>()];
  const Epilogue ep{bnc::buffer<const float>(a, 3), bnc::buffer<const float>(a, 1), bnc::buffer<const float>(a, 4),
                    bnc::constant_i32(a, 9), bnc::constant_i32(a, 10)};
  const auto* xq = bnc::buffer<const int8_t>(a, 0);
  const auto* wq = bnc::buffer<const uint32_t>(a, 2);
  auto* y = bnc::buffer<T>(a, 5);
  const int M = bnc::constant_i32(a, 6), N = bnc::constant_i32(a, 7), K = bnc::constant_i32(a, 8);
  if (w_async_ok<int8_t>(wq, K)) {
    gemm_body<int8_t, T, BM, Warps, true, true>(xq, wq, y, M, N, K, ep, smem);
  } else {
    gemm_body<int8_t, T, BM, Warps, true, false>(xq, wq, y, M, N, K, ep, smem);
  }
}

#define BITNET_CUDA_GEMMS(tname, T, BM, W)                                                          \
  BITNET_CUDA_REGISTER("cuda_bitlinear_gemm_" #tname "_bm" #BM "_w" #W, (bitlinear_gemm<T, BM, W>))
#define BITNET_CUDA_TERNARY_GEMMS(tname, T, BM, W)                                                  \
  BITNET_CUDA_REGISTER("cuda_ternary_gemm_" #tname "_bm" #BM "_w" #W, (ternary_gemm<T, BM, W>))

BITNET_CUDA_TERNARY_GEMMS(float16, __half, 64, 8)
BITNET_CUDA_TERNARY_GEMMS(float16, __half, 128, 8)
BITNET_CUDA_TERNARY_GEMMS(float16, __half, 64, 4)
BITNET_CUDA_TERNARY_GEMMS(float16, __half, 128, 4)
BITNET_CUDA_TERNARY_GEMMS(bfloat16, __nv_bfloat16, 64, 8)
BITNET_CUDA_TERNARY_GEMMS(bfloat16, __nv_bfloat16, 128, 8)
BITNET_CUDA_TERNARY_GEMMS(bfloat16, __nv_bfloat16, 64, 4)
BITNET_CUDA_TERNARY_GEMMS(bfloat16, __nv_bfloat16, 128, 4)
BITNET_CUDA_GEMMS(float32, float, 64, 8)
BITNET_CUDA_GEMMS(float32, float, 128, 8)
BITNET_CUDA_GEMMS(float32, float, 64, 4)
BITNET_CUDA_GEMMS(float32, float, 128, 4)
BITNET_CUDA_GEMMS(float16, __half, 64, 8)
BITNET_CUDA_GEMMS(float16, __half, 128, 8)
BITNET_CUDA_GEMMS(float16, __half, 64, 4)
BITNET_CUDA_GEMMS(float16, __half, 128, 4)
BITNET_CUDA_GEMMS(bfloat16, __nv_bfloat16, 64, 8)
BITNET_CUDA_GEMMS(bfloat16, __nv_bfloat16, 128, 8)
BITNET_CUDA_GEMMS(bfloat16, __nv_bfloat16, 64, 4)
BITNET_CUDA_GEMMS(bfloat16, __nv_bfloat16, 128, 4)

} // namespace
} // namespace bitnet_cuda
