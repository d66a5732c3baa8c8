// The zero-fill kernel of the CUDA backend (zero_fill.cu): its registry name
// and the launch that clears `bytes` bytes (a multiple of 16) of a temporary.
#pragma once

#include <cstddef>

#include "gpu/launch_plan.h"

namespace bitnet_ext::cuda {

inline constexpr char kZeroFillKernel[] = "bitnet_ext_zero_fill";

// Binds plan.temporaries[temp] at buffer(0); at most 1024 blocks of 256
// threads, each thread clearing 16 bytes per step.
inline gpu::KernelLaunch zero_fill_launch(int temp, size_t bytes) {
  const size_t units = bytes / 16;
  gpu::KernelLaunch k;
  k.name = kZeroFillKernel;
  k.group = {256, 1, 1};
  k.grid = {static_cast<uint32_t>(units == 0 ? 0 : units < 256 * 1024 ? (units + 255) / 256 : 1024), 1, 1};
  k.buffers = {{gpu::ArgKind::Temp, temp, 0}};
  gpu::Constant c;
  c.name = "units";
  c.slot = 1;
  c.type = gpu::Constant::Type::Int32;
  c.i32 = static_cast<int32_t>(units);
  k.constants = {c};
  return k;
}

} // namespace bitnet_ext::cuda
