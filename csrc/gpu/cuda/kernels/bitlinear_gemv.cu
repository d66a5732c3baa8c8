// Decode BitLinear (W1.58A8) on int8 tensor cores, exact:
//   xq, xscale = absmax_quantize(x)                 (per row of x)
//   y[m, n] = T(((float(acc) * xscale[m]) * s(n)) + bias[n]),  acc = sum_k xq[m, k] W[n, k] (int32)
// bit-identical to bitnet_ext.reference.bitlinear.
//
// The int8 product uses mma.m16n8k32.s8 with W's codes (0..3, one LOP3 per
// four codes, ternary_mma.cuh's decode_codes_quad) as A and xq as B, so
// acc = sum xq code - sum xq: the quantizer also writes qsum[m] = sum_k xq[m, k].
// It stores xq in the "quad" order inside each group of 16 (position 4 s + q
// holds k = 4 q + s), the order in which the codes come out of the LOP3s, so
// one 16-byte load gives a lane the B registers of two MMAs.
//
// Layout of the GEMV as ternary_gemv.cu: W warps (4, 8 or 16) split K, 16 R rows
// of W and 8 rows of x per block, 16 words of each row per step, one step of
// W ahead in registers or (A > 0) A steps in a shared-memory ring.
//
// Kernels:
//   cuda_absmax_quantize_quad_<T>   one block per row of x: xq (quad order), xscale, qsum
//   cuda_absmax_quantize_quad_vec_<T>  the same for many rows, x held in registers (K <= 8192)
//   cuda_bitlinear_gemv_<T>_r<R>    the int8 GEMV on those
//   cuda_bitlinear_fused_<T>_r<R>   M = 1: each block issues its first loads of W, quantizes x into
//                                   shared memory while they are in flight, then runs the GEMV
#include "kernel_args.cuh"
#include "gemv_w_loads.cuh"

namespace bitnet_cuda {
namespace {

constexpr int kQuantMaxThreads = 1024; // the plan gives 1024 threads to a row when M is small

template <class T>
__device__ __forceinline__ float load_float(const T* p) {
  return to_float<T>(p[0]);
}

// max of v over the block (a multiple of 32 threads, at most 1024): one
// shared-memory round (scratch[32]), then every thread reads the warps' values
// in one load and one warp reduction (not a serial loop over 32 warps).
__device__ __forceinline__ uint32_t block_max(uint32_t v, uint32_t* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = __reduce_max_sync(0xFFFFFFFFu, v);
  if (lane == 0) {
    scratch[warp] = v;
  }
  __syncthreads();
  return __reduce_max_sync(0xFFFFFFFFu, lane < warps ? scratch[lane] : 0u);
}

// The same for a sum (int32; called after block_max: one barrier orders the
// reads of scratch there before the writes here).
__device__ __forceinline__ int block_sum(int v, uint32_t* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = __reduce_add_sync(0xFFFFFFFFu, v);
  __syncthreads();
  if (lane == 0) {
    scratch[warp] = static_cast<uint32_t>(v);
  }
  __syncthreads();
  return __reduce_add_sync(0xFFFFFFFFu, lane < warps ? static_cast<int>(scratch[lane]) : 0);
}

// Quantizes one row of x (K elements) with the whole block (a multiple of 32
// threads): writes the K int8 codes in quad order to xq (global or shared),
// and returns xscale and qsum to every thread. IEEE divisions and NaN rules as
// kernels/bitlinear.h's absmax_quantize_impl. A thread handles whole 4-code
// units: unit u = 4 grp + s4 is register s4 of group grp, the codes of
// k = 16 grp + s4 + 4 q (q = 0..3) in its bytes q, so one 4-byte store each and
// K / 4 threads busy (a decode row of 2560 gets 640 threads, 4 divisions each).
template <class T>
__device__ __forceinline__ void quantize_row_quad(
    const T* x, int K, float eps, uint8_t* xq, float& xscale, int& qsum, uint32_t* scratch /* [32] */) {
  const int tid = threadIdx.x, threads = blockDim.x;
  const int units = K / 4;
  uint32_t amax = 0;
  for (int k = tid; k < K; k += threads) {
    amax = max(amax, abs_bits(load_float(x + k)));
  }
  const float m = __uint_as_float(block_max(amax, scratch));
  const float s = __fdiv_rn(is_nan_bits(m) ? m : fmaxf(m, eps), 127.0f);

  int sum = 0;
  for (int u = tid; u < units; u += threads) {
    const int k0 = 16 * (u / 4) + u % 4;
    uint32_t packed = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float v = __fdiv_rn(load_float(x + k0 + 4 * q), s);
      const int c = is_nan_bits(v) ? 0 : static_cast<int>(fminf(fmaxf(rintf(v), -128.0f), 127.0f));
      sum += c;
      packed |= (uint32_t(c) & 0xFFu) << (8 * q);
    }
    reinterpret_cast<uint32_t*>(xq)[u] = packed;
  }
  xscale = s;
  qsum = block_sum(sum, scratch);
}

// The 16 x of group grp (x + 16 grp) as floats: 16-byte loads where x is 16-byte aligned.
template <class T>
__device__ __forceinline__ void load_group16(const T* p, bool aligned, float (&v)[16]) {
  constexpr int kVecs = 16 * int(sizeof(T)) / 16; // 16-byte loads per group
  if (aligned) {
    uint4 q[kVecs];
#pragma unroll
    for (int i = 0; i < kVecs; ++i) {
      q[i] = reinterpret_cast<const uint4*>(p)[i];
    }
    const T* e = reinterpret_cast<const T*>(q);
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      v[i] = to_float<T>(e[i]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < 16; ++i) {
      v[i] = load_float(p + i);
    }
  }
}

// The absmax bits of a group of 16 x, with amax.
__device__ __forceinline__ uint32_t group_amax(const float (&v)[16], uint32_t amax) {
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    amax = max(amax, abs_bits(v[i]));
  }
  return amax;
}

// xscale of a row from its absmax m (NaN propagates, else at least eps), an IEEE division.
__device__ __forceinline__ float absmax_scale(float m, float eps) {
  return __fdiv_rn(is_nan_bits(m) ? m : fmaxf(m, eps), 127.0f);
}

// The codes of one group of 16 x in quad order (register s4 holds k = s4 + 4 q in
// its bytes q), added to sum: the same divisions and NaN rules as quantize_row_quad.
__device__ __forceinline__ uint4 quantize_group16(const float (&v)[16], float s, int& sum) {
  uint32_t w[4];
#pragma unroll
  for (int s4 = 0; s4 < 4; ++s4) {
    uint32_t packed = 0;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const float r = __fdiv_rn(v[s4 + 4 * q], s);
      const int c = is_nan_bits(r) ? 0 : static_cast<int>(fminf(fmaxf(rintf(r), -128.0f), 127.0f));
      sum += c;
      packed |= (uint32_t(c) & 0xFFu) << (8 * q);
    }
    w[s4] = packed;
  }
  return make_uint4(w[0], w[1], w[2], w[3]);
}

// quantize_row_quad by groups of 16 (a thread's group: 16-byte loads, 16
// divisions, one 16-byte store), for the fused decode kernel, where every
// block quantizes the row: the 4-code units of quantize_row_quad load x by
// 2-byte loads one unit after another, latency-bound (17408x5120: the fused
// kernel took ~8 us more than the GEMV alone). The same xq, xscale and qsum.
template <class T>
__device__ __forceinline__ void quantize_row_groups(
    const T* x, int K, float eps, uint8_t* xq, float& xscale, int& qsum, uint32_t* scratch /* [32] */) {
  const int tid = threadIdx.x, threads = blockDim.x;
  const int groups = K / 16;
  const bool aligned = reinterpret_cast<uintptr_t>(x) % 16 == 0;
  uint32_t amax = 0;
#pragma unroll 2
  for (int grp = tid; grp < groups; grp += threads) {
    float v[16];
    load_group16<T>(x + 16 * grp, aligned, v);
    amax = group_amax(v, amax);
  }
  const float s = absmax_scale(__uint_as_float(block_max(amax, scratch)), eps);
  int sum = 0;
#pragma unroll 2
  for (int grp = tid; grp < groups; grp += threads) {
    float v[16];
    load_group16<T>(x + 16 * grp, aligned, v);
    reinterpret_cast<uint4*>(xq)[grp] = quantize_group16(v, s, sum);
  }
  xscale = s;
  qsum = block_sum(sum, scratch);
}

// Slots: 0 x (T, M x K), 1 xq (int8 M x K, quad order), 2 xscale (f32 M), 3 qsum (int32 M); 4 K, 5 eps.
template <class T>
__global__ void __launch_bounds__(kQuantMaxThreads) absmax_quantize_quad(bnc::KernelArgs a) {
  __shared__ uint32_t scratch[32];
  const int m = blockIdx.x;
  const int K = bnc::constant_i32(a, 4);
  const float eps = bnc::constant_f32(a, 5);
  float xscale;
  int qsum;
  quantize_row_quad<T>(bnc::buffer<const T>(a, 0) + size_t(m) * K, K, eps, bnc::buffer<uint8_t>(a, 1) + size_t(m) * K,
                       xscale, qsum, scratch);
  if (threadIdx.x == 0) {
    bnc::buffer<float>(a, 2)[m] = xscale;
    bnc::buffer<int>(a, 3)[m] = qsum;
  }
}

// Many rows (the plans' quantizer past the decode row counts): one group of 16 x per thread, in
// registers (the plan gives ceil(K / 16) threads rounded up to a warp, at most
// kQuantVecMaxThreads: K <= 8192, launch_plan_cuda.cpp's kQuantVecMaxK), x read once (16-byte loads
// where x is 16-byte aligned) and a group's 16 codes (quad order) stored at once. Few registers,
// so many rows in flight per multiprocessor: with 128 threads of up to 4 groups each (64 floats a
// thread) the H200 took 13.8 us for 2048 x 2560 bf16, latency-bound. The same codes, xscale and
// qsum as quantize_row_quad. Slots as absmax_quantize_quad.
constexpr int kQuantVecMaxThreads = 512;

template <class T>
__global__ void __launch_bounds__(kQuantVecMaxThreads) absmax_quantize_quad_vec(bnc::KernelArgs a) {
  __shared__ uint32_t scratch[32];
  const int m = blockIdx.x, u = threadIdx.x;
  const int K = bnc::constant_i32(a, 4);
  const float eps = bnc::constant_f32(a, 5);
  const T* x = bnc::buffer<const T>(a, 0) + size_t(m) * K;
  const bool mine = u < K / 16;
  float v[16];
  uint32_t amax = 0;
  if (mine) {
    load_group16<T>(x + 16 * u, reinterpret_cast<uintptr_t>(x) % 16 == 0, v);
    amax = group_amax(v, amax);
  }
  const float s = absmax_scale(__uint_as_float(block_max(amax, scratch)), eps);
  int sum = 0;
  if (mine) {
    reinterpret_cast<uint4*>(bnc::buffer<uint8_t>(a, 1) + size_t(m) * K)[u] = quantize_group16(v, s, sum);
  }
  const int qsum = block_sum(sum, scratch);
  if (u == 0) {
    bnc::buffer<float>(a, 2)[m] = s;
    bnc::buffer<int>(a, 3)[m] = qsum;
  }
}

// The int8 GEMV of one block: rows n0 .. n0 + 16 R - 1 of W against rows
// m0 .. m0 + 7 of xq (global or shared memory, quad order, 16-byte aligned
// rows). Every thread ends with its lane's exact int32 sums over the block.
// issued() runs once the first loads of W are issued, before xq is read.
template <int R, int W, int A, bool Vec, class Issued>
__device__ __forceinline__ void bitlinear_gemv_block(
    const uint8_t* xq, const uint32_t* wq, int M, int N, int K, int n0, int m0, int (&acc)[R][4],
    int (*red)[R][4][32], uint4* ring, Issued&& issued) {
  const int words = K / 16;
  const int g = (threadIdx.x % 32) / 4;
  const uint8_t* xrow = xq + size_t(m0 + min(g, min(8, M - m0) - 1)) * K;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = 0;
  }
  gemv_k_loop<R, W, A, Vec>(wq, N, K, n0, ring, issued, [&](const WStep<R>& w, int wbase) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint4 q = wbase + i < words ? *reinterpret_cast<const uint4*>(xrow + 16 * (wbase + i))
                                        : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        uint32_t ca[4], cb[4];
        decode_codes_quad(w.a[r][i], ca);
        decode_codes_quad(w.b[r][i], cb);
        const uint32_t a0[4] = {ca[0], cb[0], ca[1], cb[1]};
        const uint32_t a1[4] = {ca[2], cb[2], ca[3], cb[3]};
        mma_16832_s8(acc[r], a0, q.x, q.y);
        mma_16832_s8(acc[r], a1, q.z, q.w);
      }
    }
  });
  gemv_block_sum<int, R, W>(acc, red);
}

// Warp 0 stores y for its lanes' (m, n).
template <class T, int R>
__device__ __forceinline__ void bitlinear_store(
    const int (&total)[R][4], const float* xscale, const int* qsum, const float* scale, const float* bias, T* y,
    int M, int N, int n0, int m0, int per_row, int has_bias) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      int n, m;
      gemv_out_index(r, c, n0, m0, n, m);
      if (n < N && m < M) {
        y[size_t(m) * N + n] = bitlinear_epilogue<T>(total[r][c] - qsum[m], xscale[m], scale[per_row ? n : 0],
                                                     bias, has_bias, n);
      }
    }
  }
}

__device__ __forceinline__ bool w_vec_ok(const uint32_t* wq, int K) {
  return reinterpret_cast<uintptr_t>(wq) % 16 == 0 && (K / 16) % 4 == 0;
}

// Slots as the shared plan's bitlinear_gemv (plus qsum): 0 xq, 1 xscale, 2 wq, 3 scale, 4 bias, 5 y;
// 6 M, 7 N, 8 K, 9 per_row, 10 has_bias; 11 qsum (int32 M).
template <class T, int R, int W, int A>
__global__ void __launch_bounds__(32 * W) bitlinear_gemv(bnc::KernelArgs a) {
  __shared__ int red[W][R][4][32];
  __shared__ uint4 ring[W * kGemvRingWords<R, A>];
  const auto* xq = bnc::buffer<const uint8_t>(a, 0);
  const auto* xscale = bnc::buffer<const float>(a, 1);
  const auto* wq = bnc::buffer<const uint32_t>(a, 2);
  const int M = bnc::constant_i32(a, 6), N = bnc::constant_i32(a, 7), K = bnc::constant_i32(a, 8);
  const int n0 = blockIdx.x * 16 * R, m0 = blockIdx.y * 8;
  int total[R][4];
  if (w_vec_ok(wq, K)) {
    bitlinear_gemv_block<R, W, A, true>(xq, wq, M, N, K, n0, m0, total, red, ring, [] {});
  } else {
    bitlinear_gemv_block<R, W, A, false>(xq, wq, M, N, K, n0, m0, total, red, ring, [] {});
  }
  if (threadIdx.x < 32) {
    bitlinear_store<T, R>(total, xscale, bnc::buffer<const int>(a, 11), bnc::buffer<const float>(a, 3),
                          bnc::buffer<const float>(a, 4), bnc::buffer<T>(a, 5), M, N, n0, m0,
                          bnc::constant_i32(a, 9), bnc::constant_i32(a, 10));
  }
}

// M = 1 in one kernel. Each block quantizes the whole row of x again (K
// divisions), but only after issuing its first loads of W (with a ring,
// A - 1 steps), so the
// quantizer runs under their latency instead of as a launch of its own (and
// without the temporaries xq, xscale, qsum). Slots as the shared plan's
// bitlinear_fused: 0 x, 1 wq, 2 scale, 3 bias, 4 y; 5 N, 6 K, 7 per_row,
// 8 has_bias, 9 eps; threadgroup memory 0: K bytes (xq, quad order).
template <class T, int R, int W, int A>
__global__ void __launch_bounds__(32 * W) bitlinear_fused(bnc::KernelArgs a) {
  extern __shared__ __align__(16) uint8_t dynamic_smem[];
  __shared__ int red[W][R][4][32];
  __shared__ uint4 ring[W * kGemvRingWords<R, A>];
  __shared__ uint32_t scratch[32];
  const int N = bnc::constant_i32(a, 5), K = bnc::constant_i32(a, 6);
  uint8_t* xq = dynamic_smem + a.threadgroup_offset[0];
  const T* x = bnc::buffer<const T>(a, 0);
  const float eps = bnc::constant_f32(a, 9);
  float xscale;
  int qsum;
  const auto quantize = [&] {
    quantize_row_groups<T>(x, K, eps, xq, xscale, qsum, scratch);
    __syncthreads(); // xq complete
  };
  const auto* wq = bnc::buffer<const uint32_t>(a, 1);
  const int n0 = blockIdx.x * 16 * R;
  int total[R][4];
  if (w_vec_ok(wq, K)) {
    bitlinear_gemv_block<R, W, A, true>(xq, wq, 1, N, K, n0, 0, total, red, ring, quantize);
  } else {
    bitlinear_gemv_block<R, W, A, false>(xq, wq, 1, N, K, n0, 0, total, red, ring, quantize);
  }
  if (threadIdx.x < 32) {
    bitlinear_store<T, R>(total, &xscale, &qsum, bnc::buffer<const float>(a, 2), bnc::buffer<const float>(a, 3),
                          bnc::buffer<T>(a, 4), 1, N, n0, 0, bnc::constant_i32(a, 7), bnc::constant_i32(a, 8));
  }
}

// Host names: cuda_bitlinear_gemv_<T>_r<R> (4 warps), cuda_bitlinear_gemv_<T>_r<R>_w<W> (8, 16), the
// same with fused for gemv; then _a<A> as ternary_gemv.cu's.
#define BITNET_CUDA_BITLINEAR_ONE(kind, tname, T, R, W, wsuf, A, asuf) \
  BITNET_CUDA_REGISTER("cuda_bitlinear_" #kind "_" #tname "_r" #R wsuf asuf, (bitlinear_##kind<T, R, W, A>))
#define BITNET_CUDA_BITLINEAR_RW(kind, tname, T, R)          \
  BITNET_CUDA_BITLINEAR_ONE(kind, tname, T, R, 4, "", 0, "")    \
  BITNET_CUDA_BITLINEAR_ONE(kind, tname, T, R, 8, "_w8", 0, "") \
  BITNET_CUDA_BITLINEAR_ONE(kind, tname, T, R, 16, "_w16", 0, "")
#define BITNET_CUDA_BITLINEAR_KIND(kind, tname, T)                                      \
  BITNET_CUDA_BITLINEAR_RW(kind, tname, T, 1) BITNET_CUDA_BITLINEAR_RW(kind, tname, T, 2) \
  BITNET_CUDA_BITLINEAR_RW(kind, tname, T, 4)                                           \
  BITNET_CUDA_BITLINEAR_ONE(kind, tname, T, 1, 4, "", 8, "_a8")                         \
  BITNET_CUDA_BITLINEAR_ONE(kind, tname, T, 2, 4, "", 4, "_a4")                         \
  BITNET_CUDA_BITLINEAR_ONE(kind, tname, T, 1, 8, "_w8", 4, "_a4")
#define BITNET_CUDA_BITLINEAR(tname, T)                                                       \
  BITNET_CUDA_REGISTER("cuda_absmax_quantize_quad_" #tname, absmax_quantize_quad<T>)         \
  BITNET_CUDA_REGISTER("cuda_absmax_quantize_quad_vec_" #tname, absmax_quantize_quad_vec<T>) \
  BITNET_CUDA_BITLINEAR_KIND(gemv, tname, T)                                                 \
  BITNET_CUDA_BITLINEAR_KIND(fused, tname, T)

BITNET_CUDA_BITLINEAR(float32, float)
BITNET_CUDA_BITLINEAR(float16, __half)
BITNET_CUDA_BITLINEAR(bfloat16, __nv_bfloat16)

} // namespace
} // namespace bitnet_cuda
