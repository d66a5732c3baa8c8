// The Metal Shading Language subset used by kernels/, for nvcc (CUDA C++20):
// the second execution target of the same shader sources (the first is the
// CPU fiber harness, ../shim.h). See docs/metal_harness.md.
//
// Included (as <metal_stdlib>, see include/metal_stdlib) by the .metal sources
// after gen_bindings.py --target cuda has rewritten their copies: address-space
// qualifiers (device, constant, thread, threadgroup) erased, [[kernel]] ->
// __device__, parameter attributes removed (the generated __global__ entry
// binds them, entry.cuh), threadgroup arrays -> __shared__. Helper functions
// are plain `inline`: the generated translation unit defines `inline` as
// `__device__ inline` while the shaders are included.
//
// Mapping (MSL -> CUDA), chosen so that results are bitwise those of the fiber
// harness wherever MSL fixes them:
// - threadgroup -> thread block, simdgroup -> warp (the host asserts that
//   threadgroup sizes are multiples of 32), lane = linear thread index % 32.
// - threadgroup_barrier(flags) -> __syncthreads() (CUDA orders shared and
//   global memory at every barrier, so a barrier with too weak mem_flags works
//   here: the debug build checks mem_flags, bnc_check below, as the fiber
//   harness does), simdgroup_barrier -> __syncwarp().
// - simd_sum / simd_max / simd_min -> a butterfly of __shfl_xor_sync over the
//   full warp (lane distances 1, 2, 4, ..., 16: the fiber harness's order, so
//   float sums agree bitwise); simd_shuffle* / simd_broadcast -> __shfl_*_sync
//   with the full mask (MSL's collectives involve every lane of the
//   simdgroup: one reached by a partial simdgroup traps with a message,
//   check_full_simdgroup below).
// - half = __half, bfloat = __nv_bfloat16: conversions round to nearest even;
//   arithmetic on half stays in half (cuda_fp16 operators), as in MSL.
// - precise::divide -> __fdiv_rn (correctly rounded); rint -> rintf (ties to
//   even); the TUs compile with -fmad=false (no contraction, as the metallib's
//   -fno-fast-math and the harness's -ffp-contract=off).
// - simdgroup_matrix<T, 8, 8>: each lane owns 2 elements in Apple's layout
//   (the fiber harness's simdgroup_lane_rc); multiply_accumulate gathers rows
//   and columns with shuffles and accumulates in the harness's order (fma over
//   k, then + C). Correctness first, no tensor cores.
// - vector types: CUDA's uint2/uint4/float2/float4/... (same size and
//   alignment as MSL's 2- and 4-element vectors; member access only). MSL's
//   3-element vectors (16 bytes, unlike CUDA's 12) and half/bfloat vectors are
//   not mapped: using one fails the build (see the #defines at the end).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <type_traits>

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;
// `half` is cuda_fp16.h's typedef of __half.
typedef __nv_bfloat16 bfloat;

// The block's [[threadgroup(i)]] memory (dynamic shared memory, carved by the
// generated entry, entry.cuh).
extern __shared__ __align__(16) unsigned char bnc_threadgroup_memory[];

// Debug build (-DBNC_CHECK_MEM_FLAGS, cmake -DBNC_CHECK_MEM_FLAGS=ON): the
// fiber harness's mem_flags check on the GPU. CUDA's __syncthreads orders
// shared memory whatever the flags, so a barrier without mem_threadgroup
// works here and fails on Apple GPUs; instead, each barrier with
// mem_threadgroup copies the block's threadgroup memory to a snapshot in
// global memory, and a barrier without it traps if threadgroup memory
// changed since (writes it would not publish).
namespace bnc_check {
static __shared__ unsigned char* snapshot; // this block's copy, or null
static __shared__ unsigned bytes;

__device__ inline void barrier_flags(bool orders_threadgroup) {
  unsigned char* snap = snapshot;
  if (!snap) {
    return;
  }
  const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
  bool changed = false;
  for (unsigned i = tid; i < bytes; i += threads) {
    if (orders_threadgroup) {
      snap[i] = bnc_threadgroup_memory[i];
    } else {
      changed = changed || snap[i] != bnc_threadgroup_memory[i];
    }
  }
  if (__syncthreads_or(changed)) {
    if (tid == 0) {
      printf("msl_cuda: threadgroup memory was written before a threadgroup_barrier without "
             "mem_flags::mem_threadgroup (block (%u, %u, %u))\n", blockIdx.x, blockIdx.y, blockIdx.z);
    }
    __syncthreads(); // the message is out before any thread traps
    __trap();
  }
}
} // namespace bnc_check

namespace metal {

// ---------------------------------------------------------------------------
// Reinterpretation and math (fabs, rint, fma, min/max of int and float come
// from CUDA's device overloads at global scope).

template <class To, class From>
__device__ inline To as_type(const From& f) {
  static_assert(sizeof(To) == sizeof(From), "as_type: sizes differ");
  return __builtin_bit_cast(To, f);
}

template <class T>
__device__ inline T clamp(T x, T lo, T hi) {
  T m = x < lo ? lo : x;
  return hi < m ? hi : m;
}

template <class T>
__device__ inline T select(T a, T b, bool c) {
  return c ? b : a;
}

namespace precise {
__device__ inline float divide(float a, float b) {
  return __fdiv_rn(a, b);
}
__device__ inline float sqrt(float x) {
  return __fsqrt_rn(x);
}
} // namespace precise
namespace fast {
__device__ inline float divide(float a, float b) {
  return __fdividef(a, b);
}
} // namespace fast

// ---------------------------------------------------------------------------
// Barriers

enum class mem_flags : int { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
__device__ inline mem_flags operator|(mem_flags a, mem_flags b) {
  return mem_flags(int(a) | int(b));
}


__device__ inline void threadgroup_barrier(mem_flags f) {
  __syncthreads();
#ifdef BNC_CHECK_MEM_FLAGS
  bnc_check::barrier_flags((int(f) & int(mem_flags::mem_threadgroup)) != 0);
#else
  (void)f;
#endif
}
__device__ inline void simdgroup_barrier(mem_flags) {
  __syncwarp();
}

// ---------------------------------------------------------------------------
// Simdgroup collectives (full warp)

constexpr unsigned kFullWarp = 0xFFFFFFFFu;

// MSL's simdgroup functions involve the whole simdgroup here (full mask): a
// collective reached by part of a warp (lanes returned or diverged) is
// reported and the kernel traps (cudaErrorLaunchFailure names the kernel).
// Off with -DBNC_NO_SIMD_CHECK.
__device__ inline void check_full_simdgroup(const char* what) {
#ifndef BNC_NO_SIMD_CHECK
  const unsigned active = __activemask();
  if (active != kFullWarp) {
    printf("msl_cuda: %s reached by a partial simdgroup (active lanes 0x%08x) in block (%u, %u, %u)\n", what, active,
           blockIdx.x, blockIdx.y, blockIdx.z);
    __trap();
  }
#endif
}

// [[thread_index_in_simdgroup]]: the linear thread index modulo 32 (CUDA forms
// warps from consecutive linear indices, as Metal forms simdgroups).
__device__ inline unsigned lane_id() {
  return (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) & 31u;
}

namespace detail {
template <class T>
__device__ inline T shfl_xor(T v, int d) {
  return __shfl_xor_sync(kFullWarp, v, d);
}
template <class T>
__device__ inline T add(T a, T b) {
  if constexpr (std::is_same_v<T, bfloat>) {
    return T(float(a) + float(b)); // MSL computes bfloat arithmetic in float
  } else {
    return a + b;
  }
}
} // namespace detail

// Butterfly over lane distances 1, 2, ..., 16: lane l combines with l ^ d, so
// every lane ends with the same value (a + b == b + a) and the tree is the
// fiber harness's (adjacent pairs first).
template <class T>
__device__ inline T simd_sum(T x) {
  check_full_simdgroup("simd_sum");
  for (int d = 1; d < 32; d <<= 1) {
    T o = detail::shfl_xor(x, d);
    x = (lane_id() & unsigned(d)) ? detail::add(o, x) : detail::add(x, o);
  }
  return x;
}
template <class T>
__device__ inline T simd_max(T x) {
  check_full_simdgroup("simd_max");
  for (int d = 1; d < 32; d <<= 1) {
    T o = detail::shfl_xor(x, d);
    x = x < o ? o : x;
  }
  return x;
}
template <class T>
__device__ inline T simd_min(T x) {
  check_full_simdgroup("simd_min");
  for (int d = 1; d < 32; d <<= 1) {
    T o = detail::shfl_xor(x, d);
    x = o < x ? o : x;
  }
  return x;
}
template <class T>
__device__ inline T simd_shuffle(T x, ushort lane) {
  check_full_simdgroup("simd_shuffle");
  return __shfl_sync(kFullWarp, x, int(lane));
}
template <class T>
__device__ inline T simd_broadcast(T x, ushort lane) {
  check_full_simdgroup("simd_broadcast");
  return __shfl_sync(kFullWarp, x, int(lane));
}
template <class T>
__device__ inline T simd_shuffle_xor(T x, ushort mask) {
  check_full_simdgroup("simd_shuffle_xor");
  return __shfl_xor_sync(kFullWarp, x, int(mask));
}
template <class T>
__device__ inline T simd_shuffle_down(T x, ushort delta) {
  check_full_simdgroup("simd_shuffle_down");
  return __shfl_down_sync(kFullWarp, x, unsigned(delta));
}
template <class T>
__device__ inline T simd_shuffle_up(T x, ushort delta) {
  check_full_simdgroup("simd_shuffle_up");
  return __shfl_up_sync(kFullWarp, x, unsigned(delta));
}

// ---------------------------------------------------------------------------
// Atomics (device memory)

enum memory_order { memory_order_relaxed = 0 };

template <class T>
struct _atomic {
  T value;
};
typedef _atomic<uint> atomic_uint;
typedef _atomic<int> atomic_int;

template <class T>
__device__ inline T atomic_fetch_or_explicit(_atomic<T>* a, T v, memory_order) {
  return atomicOr(&a->value, v);
}
template <class T>
__device__ inline T atomic_fetch_add_explicit(_atomic<T>* a, T v, memory_order) {
  return atomicAdd(&a->value, v);
}
template <class T>
__device__ inline T atomic_fetch_max_explicit(_atomic<T>* a, T v, memory_order) {
  return atomicMax(&a->value, v);
}
template <class T>
__device__ inline void atomic_store_explicit(_atomic<T>* a, T v, memory_order) {
  atomicExch(&a->value, v);
}
template <class T>
__device__ inline T atomic_load_explicit(const _atomic<T>* a, memory_order) {
  return *reinterpret_cast<const volatile T*>(&a->value);
}

// ---------------------------------------------------------------------------
// simdgroup_matrix<T, 8, 8>, emulated per warp

// Lane l owns (r, c) and (r, c + 1) with r = 4 b4 + 2 b2 + b1, c = 4 b3 + 2 b0
// (b_i: bit i of l); the same layout as ../shim.h's simdgroup_lane_rc.
__device__ inline void simdgroup_lane_rc(unsigned lane, int& r, int& c) {
  r = int(((lane >> 4) & 1) * 4 + ((lane >> 2) & 1) * 2 + ((lane >> 1) & 1));
  c = int(((lane >> 3) & 1) * 4 + (lane & 1) * 2);
}
// The lane owning (r, c) (c even).
__device__ inline int simdgroup_owner(int r, int c) {
  return ((r >> 2) << 4) | ((c >> 2) << 3) | (((r >> 1) & 1) << 2) | ((r & 1) << 1) | ((c >> 1) & 1);
}

template <class T, int Cols, int Rows>
struct simdgroup_matrix {
  static_assert(Cols == 8 && Rows == 8, "msl_cuda: only 8x8 simdgroup matrices are emulated");
  T e[2];
  __device__ T* thread_elements() {
    return e;
  }
};

typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;
typedef simdgroup_matrix<bfloat, 8, 8> simdgroup_bfloat8x8;

template <class T, int Cols = 8, int Rows = 8>
__device__ inline simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T v) {
  simdgroup_matrix<T, Cols, Rows> m;
  m.e[0] = v;
  m.e[1] = v;
  return m;
}

template <class T, class U>
__device__ inline void simdgroup_load(
    simdgroup_matrix<T, 8, 8>& d, const U* src, ulong elements_per_row = 8, ulong2 origin = {0, 0},
    bool transpose = false) {
  int r, c;
  simdgroup_lane_rc(lane_id(), r, c);
  for (int j = 0; j < 2; ++j) {
    ulong row = ulong(r), col = ulong(c + j);
    ulong sr = transpose ? col : row, sc = transpose ? row : col; // origin is (column, row)
    d.e[j] = T(src[(origin.y + sr) * elements_per_row + origin.x + sc]);
  }
}

template <class T, class U>
__device__ inline void simdgroup_store(
    const simdgroup_matrix<T, 8, 8>& s, U* dst, ulong elements_per_row = 8, ulong2 origin = {0, 0},
    bool transpose = false) {
  int r, c;
  simdgroup_lane_rc(lane_id(), r, c);
  for (int j = 0; j < 2; ++j) {
    ulong row = ulong(r), col = ulong(c + j);
    ulong dr = transpose ? col : row, dc = transpose ? row : col;
    dst[(origin.y + dr) * elements_per_row + origin.x + dc] = U(s.e[j]);
  }
}

// d = a b + c: lane (r, c..c+1) gathers row r of a and columns c, c+1 of b
// with shuffles; acc = fma over k from 0, then + c (the harness's order).
template <class T>
__device__ inline void simdgroup_multiply_accumulate(
    simdgroup_matrix<T, 8, 8>& d, const simdgroup_matrix<T, 8, 8>& a, const simdgroup_matrix<T, 8, 8>& b,
    const simdgroup_matrix<T, 8, 8>& c) {
  int r, col;
  check_full_simdgroup("simdgroup_multiply_accumulate");
  simdgroup_lane_rc(lane_id(), r, col);
  float acc[2] = {0.0f, 0.0f};
  for (int k = 0; k < 8; ++k) {
    // a[r][k]: element k & 1 of the lane owning (r, k & ~1).
    const float a0 = float(__shfl_sync(kFullWarp, a.e[0], simdgroup_owner(r, k & ~1)));
    const float a1 = float(__shfl_sync(kFullWarp, a.e[1], simdgroup_owner(r, k & ~1)));
    const float ark = (k & 1) ? a1 : a0;
    // b[k][col + j]: element j of the lane owning (k, col).
    const float b0 = float(__shfl_sync(kFullWarp, b.e[0], simdgroup_owner(k, col)));
    const float b1 = float(__shfl_sync(kFullWarp, b.e[1], simdgroup_owner(k, col)));
    acc[0] = fmaf(ark, b0, acc[0]);
    acc[1] = fmaf(ark, b1, acc[1]);
  }
  for (int j = 0; j < 2; ++j) {
    d.e[j] = T(acc[j] + float(c.e[j]));
  }
}

template <class T>
__device__ inline void simdgroup_multiply(
    simdgroup_matrix<T, 8, 8>& d, const simdgroup_matrix<T, 8, 8>& a, const simdgroup_matrix<T, 8, 8>& b) {
  simdgroup_multiply_accumulate(d, a, b, make_filled_simdgroup_matrix<T, 8, 8>(T(0)));
}

} // namespace metal

// MSL constructs without a faithful CUDA mapping: a use fails the build with
// this name in the message.
#define float3 msl_cuda_unsupported_3_element_vector_float3
#define int3 msl_cuda_unsupported_3_element_vector_int3
#define half2 msl_cuda_unsupported_half_vector_half2
#define half4 msl_cuda_unsupported_half_vector_half4
#define bfloat2 msl_cuda_unsupported_bfloat_vector_bfloat2
#define bfloat4 msl_cuda_unsupported_bfloat_vector_bfloat4
