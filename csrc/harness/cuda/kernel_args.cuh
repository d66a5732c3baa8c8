// Device-side access to the argument block (registry.h's KernelArgs) for
// hand-written CUDA kernels, which take `bnc::KernelArgs` directly instead of
// going through entry.cuh's MSL parameter binding. Both kinds of kernel are
// launched by the same executors from the same launch plans, so a plan's
// BufferBinding / Constant slots mean the same thing to both.
//
// Read constants only through constant_i32 / constant_f32: how a 4-byte
// constant travels (today: its bits in KernelArgs::constants[slot], inside
// the kernel's parameter block) is the executor's business and may change.
#pragma once

#include <cstdint>

#include "registry.h"

namespace bnc {

template <class T>
__device__ inline T* buffer(const KernelArgs& a, int slot) {
  return static_cast<T*>(a.buffers[slot]);
}

__device__ inline int32_t constant_i32(const KernelArgs& a, int slot) {
  return static_cast<int32_t>(a.constants[slot]);
}

__device__ inline float constant_f32(const KernelArgs& a, int slot) {
  return __uint_as_float(a.constants[slot]);
}

} // namespace bnc
