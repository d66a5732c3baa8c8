// The generated __global__ entry of every [[kernel]] (CUDA target of the
// shader harness): binds [[buffer(i)]], [[threadgroup(i)]] and the built-in
// indices to the kernel's parameters by their MSL attribute, which
// gen_bindings.py --target cuda encodes per kernel as BNC_PARAMS_<function>
// (the same parameter parser as the fiber harness's tables). Included by each
// generated translation unit before the shader source.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "msl_cuda.h"
#include "param_kind.h"
#include "registry.h"

namespace bnc {

// Parameter encoding (gen_bindings.py): int(bnh::ParamKind) * 256 + index.
using bnh::ParamKind;

__device__ inline uint3 u3(unsigned x, unsigned y, unsigned z) {
  return make_uint3(x, y, z);
}

template <class A>
__device__ inline A from_u3(uint3 v) {
  if constexpr (std::is_same_v<A, uint3>) {
    return v;
  } else if constexpr (std::is_same_v<A, uint2>) {
    return make_uint2(v.x, v.y);
  } else {
    static_assert(std::is_integral_v<A>, "msl_cuda: a built-in index must be an integer, uint2 or uint3");
    return A(v.x);
  }
}

template <class A, int Enc>
__device__ inline A bind(const KernelArgs& a) {
  constexpr ParamKind kind = ParamKind(Enc / 256);
  constexpr int index = Enc % 256;
  if constexpr (std::is_pointer_v<A> || std::is_reference_v<A>) {
    static_assert(kind == ParamKind::Buffer || kind == ParamKind::Threadgroup,
                  "msl_cuda: a built-in index parameter has a pointer or reference type");
    static_assert(!(kind == ParamKind::Buffer && std::is_reference_v<A>),
                  "msl_cuda: constants ([[buffer(i)]] references) are bound by Arg, not bind");
    void* p = kind == ParamKind::Buffer ? a.buffers[index] : bnc_threadgroup_memory + a.threadgroup_offset[index];
    if constexpr (std::is_pointer_v<A>) {
      return reinterpret_cast<A>(p);
    } else {
      return *reinterpret_cast<std::remove_reference_t<A>*>(p);
    }
  } else {
    static_assert(kind != ParamKind::Buffer && kind != ParamKind::Threadgroup, "msl_cuda: a buffer or threadgroup parameter has a value type");
    const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned threads = blockDim.x * blockDim.y * blockDim.z;
    if constexpr (kind == ParamKind::ThreadPositionInGrid) {
      return from_u3<A>(u3(blockIdx.x * blockDim.x + threadIdx.x, blockIdx.y * blockDim.y + threadIdx.y,
                           blockIdx.z * blockDim.z + threadIdx.z));
    } else if constexpr (kind == ParamKind::ThreadPositionInThreadgroup) {
      return from_u3<A>(threadIdx);
    } else if constexpr (kind == ParamKind::ThreadgroupPositionInGrid) {
      return from_u3<A>(blockIdx);
    } else if constexpr (kind == ParamKind::ThreadsPerThreadgroup) {
      return from_u3<A>(u3(blockDim.x, blockDim.y, blockDim.z));
    } else if constexpr (kind == ParamKind::ThreadgroupsPerGrid) {
      return from_u3<A>(u3(gridDim.x, gridDim.y, gridDim.z));
    } else if constexpr (kind == ParamKind::ThreadsPerGrid) {
      return from_u3<A>(u3(gridDim.x * blockDim.x, gridDim.y * blockDim.y, gridDim.z * blockDim.z));
    } else if constexpr (kind == ParamKind::ThreadIndexInThreadgroup) {
      return A(tid);
    } else if constexpr (kind == ParamKind::ThreadIndexInSimdgroup) {
      return A(tid % 32);
    } else if constexpr (kind == ParamKind::SimdgroupIndexInThreadgroup) {
      return A(tid / 32);
    } else if constexpr (kind == ParamKind::ThreadsPerSimdgroup) {
      return A(32);
    } else {
      static_assert(kind == ParamKind::SimdgroupsPerThreadgroup, "msl_cuda: unknown built-in");
      return A((threads + 31) / 32);
    }
  }
}

// One argument of the kernel call, alive until the call returns. A constant
// (`constant int& n [[buffer(i)]]`, set_bytes on Metal) is copied out of
// KernelArgs::constants[i] and the kernel gets a reference to that copy;
// everything else is what bind() returns.
template <class A, int Enc, bool IsConstant = ParamKind(Enc / 256) == ParamKind::Buffer && std::is_reference_v<A>>
struct Arg {
  __device__ explicit Arg(const KernelArgs& a) : value(bind<A, Enc>(a)) {}
  __device__ A get() {
    return value;
  }
  A value;
};
template <class A, int Enc>
struct Arg<A, Enc, true> {
  using T = std::remove_cv_t<std::remove_reference_t<A>>;
  static_assert(sizeof(T) == 4 && std::is_trivially_copyable_v<T>, "msl_cuda: a constant must be a 4-byte scalar");
  __device__ explicit Arg(const KernelArgs& a) {
    const uint32_t bits = a.constants[Enc % 256];
    memcpy(&value, &bits, 4);
  }
  __device__ A get() {
    return value;
  }
  T value;
};

template <auto F, class Sig, int... Enc>
struct Entry;
template <auto F, class... A, int... Enc>
struct Entry<F, void (*)(A...), Enc...> {
  static_assert(sizeof...(A) == sizeof...(Enc), "parameter table does not match the kernel signature");
  __device__ static void run(const KernelArgs& a) {
    F(Arg<A, Enc>(a).get()...);
  }
};

template <auto F, int... Enc>
__global__ void entry(KernelArgs a) {
#ifdef BNC_CHECK_MEM_FLAGS
  if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    bnc_check::snapshot = a.threadgroup_snapshot ? a.threadgroup_snapshot + size_t(block) * a.threadgroup_bytes : nullptr;
    bnc_check::bytes = a.threadgroup_bytes;
  }
  __syncthreads();
  bnc_check::barrier_flags(true); // the start: uninitialized memory, as the fiber harness's snapshot
#endif
  Entry<F, decltype(F), Enc...>::run(a);
}

} // namespace bnc

#define BNC_CAT2(a, b) a##b
#define BNC_CAT(a, b) BNC_CAT2(a, b)
// Registers the __global__ entry of func<targs...> under its host name.
#define instantiate_kernel(name, func, ...)                                            \
  static ::bnc::Registration BNC_CAT(bnc_reg_, __COUNTER__)(                           \
      name, BNC_SOURCE_FILE, reinterpret_cast<const void*>(&::bnc::entry<&func<__VA_ARGS__>, BNC_PARAMS_##func>), {BNC_PARAMS_##func});
#define bnc_register_plain_kernel(func)                                                \
  static ::bnc::Registration BNC_CAT(bnc_reg_, __COUNTER__)(                           \
      #func, BNC_SOURCE_FILE, reinterpret_cast<const void*>(&::bnc::entry<&func, BNC_PARAMS_##func>), {BNC_PARAMS_##func});
