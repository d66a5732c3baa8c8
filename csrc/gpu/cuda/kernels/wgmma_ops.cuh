// Hopper warpgroup MMA (wgmma.mma_async, sm_90a only) for the prefill GEMMs of
// wgmma_gemm.cu: A (64 rows of W, decoded to tensor-core fragments) from
// registers, B (N rows of x, K-major) from shared memory through a matrix
// descriptor, D (64 x N, float32 or int32 as raw 32-bit words) in registers.
//
// Fragments (PTX ISA, "Register fragments and shared memory matrix layouts" of
// wgmma): warp w of the warpgroup holds rows 16 w .. 16 w + 15; lane = 4 g + t.
//   A m64k16 f16/bf16: a0 (row g, k 2t..2t+1), a1 (row g+8), a2 (row g, k 2t+8..), a3 (row g+8)
//   A m64k32 s8:       a0 (row g, k 4t..4t+3), a1 (row g+8), a2 (row g, k 4t+16..), a3 (row g+8)
//   D m64nN:           d[4i], d[4i+1] (row g, cols 8i + 2t, +1), d[4i+2], d[4i+3] (row g+8)
// as the m16n8 fragments of mma.sync (ternary_mma.cuh), one per 8 columns.
//
// Only compiled into sm_90a code (__CUDA_ARCH_FEAT_SM90_ALL): other targets get
// an empty kernel that traps, and the plans never choose it there.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define BNC_HAS_WGMMA 1
#else
#define BNC_HAS_WGMMA 0
#endif

namespace bitnet_cuda {

// Descriptor of a K-major operand in the 128-byte swizzle (rows of 128 bytes,
// 16-byte chunk c of row r at chunk c ^ (r % 8), 8-row groups 1024 bytes apart,
// tile base 1024-byte aligned): start address >> 4 (bits 0..13), leading byte
// offset 16 (unused with this swizzle, bits 16..29), stride byte offset
// 1024 >> 4 (bits 32..45), layout 1 = 128-byte swizzle (bits 62..63). A step
// of 32 bytes along K inside the row adds 2 to the start address.
__device__ __forceinline__ uint64_t sw128_desc(const void* smem) {
  const uint32_t a = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return uint64_t((a & 0x3FFFFu) >> 4) | (uint64_t(1) << 16) | (uint64_t(1024 >> 4) << 32) | (uint64_t(1) << 62);
}

#if BNC_HAS_WGMMA
// Registers read or written by wgmma stay where they are across this point
// (the compiler sees a use and a definition), so an operand still read by an
// asynchronous wgmma is not reused for something else.
__device__ __forceinline__ void fence_operand(uint32_t& r) {
  asm volatile("" : "+r"(r)::"memory");
}
// Before the first wgmma after registers (A, D) were written by other instructions.
__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory");
}
// Shared memory written by the generic proxy (cp.async, st.shared) made visible
// to wgmma's reads (the async proxy).
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}

#define BNC_WGMMA_D128 \
  "{" "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15" ", " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" ", " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47" ", " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" "}"
#define BNC_WGMMA_TAIL128 ", {%64, %65, %66, %67}, %68, p"
#define BNC_WGMMA_SCALE128 "setp.ne.b32 p, %69, 0;\n"
#define BNC_WGMMA_D256 \
  "{" "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15" ", " \
  "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31" ", " \
  "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47" ", " \
  "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63" ", " \
  "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79" ", " \
  "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95" ", " \
  "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111" ", " \
  "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127" "}"
#define BNC_WGMMA_TAIL256 ", {%128, %129, %130, %131}, %132, p"
#define BNC_WGMMA_SCALE256 "setp.ne.b32 p, %133, 0;\n"
#define BNC_R4(d, i) "+r"(d[i]), "+r"(d[i + 1]), "+r"(d[i + 2]), "+r"(d[i + 3])
#define BNC_R16(d, i) BNC_R4(d, i), BNC_R4(d, i + 4), BNC_R4(d, i + 8), BNC_R4(d, i + 12)
#define BNC_R64(d, i) BNC_R16(d, i), BNC_R16(d, i + 16), BNC_R16(d, i + 32), BNC_R16(d, i + 48)
#define BNC_WGMMA_OUT128(d) BNC_R64(d, 0)
#define BNC_WGMMA_OUT256(d) BNC_R64(d, 0), BNC_R64(d, 64)
#define BNC_WGMMA_IN(a, desc) "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1)

// d += A (registers) * B (descriptor), one m64nNk16 (16-bit) or m64nNk32 (int8) step.
#define BNC_WGMMA_RS(N, op, suffix)                                                                        \
  asm volatile("{\n.reg .pred p;\n" BNC_WGMMA_SCALE##N op BNC_WGMMA_D##N BNC_WGMMA_TAIL##N suffix ";\n}\n" \
               : BNC_WGMMA_OUT##N(d)                                                                       \
               : BNC_WGMMA_IN(a, desc))

template <class E, int N>
__device__ __forceinline__ void wgmma_rs(uint32_t (&d)[N / 2], const uint32_t (&a)[4], uint64_t desc) {
  static_assert(N == 128 || N == 256, "wgmma_rs: N 128 or 256");
  if constexpr (std::is_same_v<E, int8_t>) {
    if constexpr (N == 256) {
      BNC_WGMMA_RS(256, "wgmma.mma_async.sync.aligned.m64n256k32.s32.s8.s8 ", "");
    } else {
      BNC_WGMMA_RS(128, "wgmma.mma_async.sync.aligned.m64n128k32.s32.s8.s8 ", "");
    }
  } else if constexpr (std::is_same_v<E, __half>) {
    if constexpr (N == 256) {
      BNC_WGMMA_RS(256, "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 ", ", 1, 1, 0");
    } else {
      BNC_WGMMA_RS(128, "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 ", ", 1, 1, 0");
    }
  } else {
    if constexpr (N == 256) {
      BNC_WGMMA_RS(256, "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 ", ", 1, 1, 0");
    } else {
      BNC_WGMMA_RS(128, "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 ", ", 1, 1, 0");
    }
  }
}
#endif // BNC_HAS_WGMMA

} // namespace bitnet_cuda
