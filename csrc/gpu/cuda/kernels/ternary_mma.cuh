// Device helpers of the hand-written CUDA kernels (sm_80+ warp-level MMA):
// decoding packed ternary words (kernels/ternary_utils.h's layout: W[n, k] in
// word k / 16 at bits 2 (k % 16), code = W + 1, code 3 reads as +2) straight
// into tensor-core operands, and the mma.sync / ldmatrix / cp.async wrappers.
//
// Tensor-core fragments (PTX ISA, "Matrix fragments for mma.m16n8k16/k32"):
// lane = 4 g + t (g = groupID 0..7, t = threadID_in_group 0..3).
//   m16n8k16 f16/bf16:  A 16x16: a0 (row g, k 2t..2t+1), a1 (row g+8, same k),
//                       a2 (row g, k 2t+8..), a3 (row g+8, k 2t+8..)
//                       B 16x8:  b0 (k 2t.., col g), b1 (k 2t+8.., col g)
//   m16n8k32 s8:        A 16x32: a0 (row g, k 4t..4t+3), a1 (row g+8), a2 (row g, k 4t+16..), a3
//                       B 32x8:  b0 (k 4t..4t+3, col g), b1 (k 4t+16.., col g)
//   C 16x8 (f32 or s32): c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, cols 2t, 2t+1)
// Only lanes with the same t share k-slots, so a kernel may give each k-slot
// any k of the problem as long as A and B agree: the GEMVs use that to feed
// codes in the order a word's bit fields come out of one LOP3 (no shuffles).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernel_args.cuh"


// Registers a __global__ kernel(bnc::KernelArgs) under its host name (the
// name the launch plans give, csrc/gpu/launch_plan_cuda.cpp). Template
// arguments with commas go in parentheses: BITNET_CUDA_REGISTER("n", (k<a, b>)).
#define BITNET_CUDA_CAT2(a, b) a##b
#define BITNET_CUDA_CAT(a, b) BITNET_CUDA_CAT2(a, b)
#define BITNET_CUDA_REGISTER(name, kernel)                                   \
  const bnc::Registration BITNET_CUDA_CAT(bitnet_cuda_reg_, __COUNTER__)(    \
      name, __FILE__, reinterpret_cast<const void*>(&kernel), {});

namespace bitnet_cuda {

// Word of 16 codes 1 (W = 0): what a missing word reads as (tails, rows past N).
constexpr uint32_t kZeroWord = 0x55555555u;

__device__ __forceinline__ uint32_t lop3_and_or(uint32_t a, uint32_t mask, uint32_t magic) {
  // (a & mask) | magic in one LOP3 (0xEA = (A & B) | C).
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "r"(mask), "r"(magic));
  return r;
}

__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) {
  return __byte_perm(a, b, sel);
}

// Bits of an exactly representable value in a 16-bit float with `mbits`
// mantissa bits and exponent bias `bias` (normal numbers only): the decode
// constants below are built at compile time, not converted at run time.
constexpr uint32_t half_bits(double v, int mbits, int bias) {
  uint32_t sign = 0;
  if (v < 0) {
    sign = 1;
    v = -v;
  }
  int e = 0;
  while (v >= 2.0) {
    v /= 2.0;
    ++e;
  }
  while (v < 1.0) {
    v *= 2.0;
    --e;
  }
  const uint32_t mant = static_cast<uint32_t>((v - 1.0) * double(1u << mbits));
  return (sign << 15) | (uint32_t(e + bias) << mbits) | mant;
}
constexpr uint32_t pair_bits(double v, int mbits, int bias) {
  return half_bits(v, mbits, bias) * 0x10001u;
}

static_assert(half_bits(-1025.0, 10, 15) == 0xE401u && half_bits(-5.0, 10, 15) == 0xC500u &&
                  half_bits(0.25, 10, 15) == 0x3400u && half_bits(-129.0, 7, 127) == 0xC301u &&
                  half_bits(0.0625, 7, 127) == 0x3D80u,
              "half_bits: wrong float16 / bfloat16 encoding");

__device__ __forceinline__ uint32_t fma_f16x2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t r;
  asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}
__device__ __forceinline__ uint32_t fma_bf16x2(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t r;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

// The ternary values (code - 1, exact) of one word as 8 pairs of 16-bit
// floats: pair j = (W[16 i + j], W[16 i + j + 8]) in (low, high) half, for
// j = 0..7. A code is masked into the mantissa of a magic constant with one
// LOP3 (h = 2^e + c 2^p, p the field's bit offset inside its half) and one
// FMA scales and shifts it to c - 1, exactly. f16 (10 mantissa bits, magic
// 1024): the fields at bits 0..9 of each half are used in place, the rest
// after one shift; bf16 (7 bits, magic 128): bits 0..5, then two shifts.
template <class T>
__device__ __forceinline__ void decode_pairs(uint32_t w, uint32_t (&out)[8]);

template <>
__device__ __forceinline__ void decode_pairs<__half>(uint32_t w, uint32_t (&out)[8]) {
  const uint32_t w8 = w >> 8;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int p = j < 5 ? 2 * j : 2 * j - 8;
    const uint32_t mask = (3u << p) | (3u << (p + 16));
    const uint32_t h = lop3_and_or(j < 5 ? w : w8, mask, 0x64006400u);
    const double inv = 1.0 / double(1 << p);
    out[j] = fma_f16x2(h, pair_bits(inv, 10, 15), pair_bits(-(1024.0 * inv + 1.0), 10, 15));
  }
}

template <>
__device__ __forceinline__ void decode_pairs<__nv_bfloat16>(uint32_t w, uint32_t (&out)[8]) {
  const uint32_t w6 = w >> 6, w12 = w >> 12;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int p = j < 3 ? 2 * j : (j < 6 ? 2 * j - 6 : 2 * j - 12);
    const uint32_t mask = (3u << p) | (3u << (p + 16));
    const uint32_t h = lop3_and_or(j < 3 ? w : (j < 6 ? w6 : w12), mask, 0x43004300u);
    const double inv = 1.0 / double(1 << p);
    out[j] = fma_bf16x2(h, pair_bits(inv, 7, 127), pair_bits(-(128.0 * inv + 1.0), 7, 127));
  }
}

// The B-operand pairs matching decode_pairs: (x[j], x[j + 8]) from the 16
// activations of one word, given as lo = x[0..7] and hi = x[8..15] (4 packed
// pairs each, natural order).
__device__ __forceinline__ void pair_activations(const uint4& lo, const uint4& hi, uint32_t (&out)[8]) {
  const uint32_t l[4] = {lo.x, lo.y, lo.z, lo.w};
  const uint32_t h[4] = {hi.x, hi.y, hi.z, hi.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = prmt(l[i], h[i], 0x5410);     // (x[2i], x[2i + 8])
    out[2 * i + 1] = prmt(l[i], h[i], 0x7632); // (x[2i + 1], x[2i + 9])
  }
}

// The 16 codes (0..3, unsigned, not code - 1) of a word as int8 in the
// "quad" order of the int8 GEMV: register s holds codes (s, s + 4, s + 8,
// s + 12) in bytes 0..3, one LOP3 (and a shift) each.
__device__ __forceinline__ void decode_codes_quad(uint32_t w, uint32_t (&out)[4]) {
  out[0] = w & 0x03030303u;
  out[1] = (w >> 2) & 0x03030303u;
  out[2] = (w >> 4) & 0x03030303u;
  out[3] = (w >> 6) & 0x03030303u;
}

// Position of activation k inside its 16-group in the quad order:
// k % 16 = 4 q + s  ->  4 s + q (the order decode_codes_quad emits codes).
__device__ __forceinline__ int quad_position(int k) {
  const int j = k & 15;
  return (k & ~15) | ((j & 3) << 2) | (j >> 2);
}

// d += a * b, m16n8k16, f32 accumulation.
template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(
    float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// d += a * b, m16n8k32 int8, exact int32 accumulation.
__device__ __forceinline__ void mma_16832_s8(int (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices from shared memory (lanes 8 i .. 8 i + 7 give the row
// addresses of matrix i).
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16-byte asynchronous copy global -> shared; src_bytes = 0 zero-fills.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, int src_bytes) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(addr), "l"(gmem), "r"(src_bytes));
}
// 8-byte asynchronous copy (through L1: .cg takes 16 bytes only).
__device__ __forceinline__ void cp_async_8(void* smem, const void* gmem, int src_bytes) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" ::"r"(addr), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;");
}
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N));
}

// One 16-byte chunk of x into shared memory: cp.async (zero-filled when !ok), or, for x only
// 2-byte aligned (16-bit x), eight 2-byte loads and one 16-byte store.
template <bool Async>
__device__ __forceinline__ void copy_x_chunk(uint8_t* dst, const uint8_t* src, bool ok) {
  if constexpr (Async) {
    cp_async_16(dst, src, ok ? 16 : 0);
  } else {
    uint32_t v[4] = {0, 0, 0, 0};
    if (ok) {
      const uint16_t* s16 = reinterpret_cast<const uint16_t*>(src);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        v[j] = uint32_t(s16[2 * j]) | (uint32_t(s16[2 * j + 1]) << 16);
      }
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(v[0], v[1], v[2], v[3]);
  }
}

// Zeroes a warp's MMA accumulators (MT x NT fragments of 4).
template <class Acc, int MT, int NT>
__device__ __forceinline__ void zero_fragments(Acc (&acc)[MT][NT][4]) {
#pragma unroll
  for (int i = 0; i < MT; ++i) {
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0;
    }
  }
}

// The prologue of an S-stage cp.async ring: load(s) requests slab s into stage s for the
// first S - 1 slabs (of `slabs`), one commit group each (empty past the last slab).
template <int S, class Load>
__device__ __forceinline__ void cp_async_prologue(int slabs, Load&& load) {
#pragma unroll
  for (int s = 0; s < S - 1; ++s) {
    if (s < slabs) {
      load(s);
    }
    cp_async_commit();
  }
}

// Loads that bypass L1 allocation (W is streamed once).
__device__ __forceinline__ uint4 ld_stream(const uint4* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}
__device__ __forceinline__ uint32_t ld_stream(const uint32_t* p) {
  uint32_t v;
  asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

// Bit-pattern helpers of the NaN-propagating absmax (as kernels/ternary_utils.h).
__device__ __forceinline__ uint32_t abs_bits(float v) {
  return __float_as_uint(v) & 0x7FFFFFFFu;
}
__device__ __forceinline__ bool is_nan_bits(float v) {
  return abs_bits(v) > 0x7F800000u;
}

template <class T>
__device__ __forceinline__ float to_float(T v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ float to_float<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <class T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// BitLinear's epilogue, bit-identical to bitnet_ext.reference.bitlinear:
// T(((float(acc) * xscale) * s) + bias), each operation rounded on its own
// (the _rn intrinsics are never contracted into an FMA, whatever -fmad says).
template <class T>
__device__ __forceinline__ T bitlinear_epilogue(int acc, float xscale, float s, const float* bias, int has_bias, int n) {
  float v = __fmul_rn(__fmul_rn(static_cast<float>(acc), xscale), s);
  if (has_bias) {
    v = __fadd_rn(v, bias[n]);
  }
  return from_float<T>(v);
}

} // namespace bitnet_cuda
