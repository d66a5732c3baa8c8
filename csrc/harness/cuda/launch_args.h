// Host side of every CUDA executor of the launch plans (the shader harness's,
// executor.cpp, and the MLX backend's, csrc/gpu/cuda/run_plan.cpp): one
// KernelLaunch of a plan turned into the argument block of the registered
// __global__ entry, checked the same way for both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "gpu/launch_plan.h"
#include "registry.h"

namespace bnc {

struct PackedLaunch {
  KernelArgs args{};
  size_t shared_bytes = 0; // dynamic shared memory: every [[threadgroup(i)]], 16-byte aligned
};

// The device pointer of inputs / outputs / temporaries [index], or nullptr
// when the plan names one that does not exist.
using PointerOf = std::function<void*(bitnet_ext::gpu::ArgKind kind, int index)>;

// Binds k's arrays, constants (their bits, KernelArgs::constants) and
// threadgroup memory for the kernel `info`. Throws std::runtime_error, naming
// the kernel, when the plan is malformed: threads per threadgroup not a
// multiple of 32 in 32..1024 (simdgroups are warps), a slot bound twice or out
// of range, a missing array, a [[buffer]] or [[threadgroup]] parameter of the
// kernel left unbound, or more than `max_shared_bytes` of threadgroup memory
// (`limit_name` says whose limit it is in the message).
PackedLaunch pack_launch(
    const bitnet_ext::gpu::KernelLaunch& k,
    const KernelInfo& info,
    const PointerOf& pointer_of,
    size_t max_shared_bytes,
    const char* limit_name);

// A plan constant as the 4 bytes set_bytes would copy.
uint32_t constant_bits(const bitnet_ext::gpu::Constant& c);

} // namespace bnc
