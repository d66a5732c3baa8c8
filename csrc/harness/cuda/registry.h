// Host side of the CUDA target: the kernel registry (filled by the generated
// translation units' static registrations, entry.cuh) and the argument block
// every generated __global__ entry receives.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace bnc {

constexpr int kMaxBuffers = 31;   // Metal's [[buffer(0..30)]]
constexpr int kMaxThreadgroup = 8; // [[threadgroup(0..7)]]

// Passed by value to the __global__ entry: buffers[i] binds an array at
// [[buffer(i)]] (a device pointer), constants[i] the 4-byte constant Metal
// would set with set_bytes at [[buffer(i)]] (int32 or float32 bits; carried
// in the argument block itself, so a launch needs no device memory for its
// constants, which matters inside a CUDA graph), [[threadgroup(i)]] starts
// threadgroup_offset[i] bytes into the block's dynamic shared memory.
struct KernelArgs {
  void* buffers[kMaxBuffers];
  uint32_t constants[kMaxBuffers];
  uint32_t threadgroup_offset[kMaxThreadgroup];
  // Debug build only (BNC_CHECK_MEM_FLAGS): threadgroup_bytes per block of
  // global scratch for the mem_flags check (msl_cuda.h's bnc_check).
  unsigned char* threadgroup_snapshot;
  uint32_t threadgroup_bytes;
};

struct KernelInfo {
  std::string name;        // [[host_name]]
  std::string file;        // the .metal source
  const void* entry;       // the __global__ function
  std::vector<int> params; // kind * 256 + index per parameter (entry.cuh's Kind)
};

void register_kernel(const char* name, const char* file, const void* entry, std::vector<int> params);
const std::vector<KernelInfo>& kernels();
const KernelInfo* find_kernel(const std::string& name);

struct Registration {
  Registration(const char* name, const char* file, const void* entry, std::vector<int> params) {
    register_kernel(name, file, entry, std::move(params));
  }
};

} // namespace bnc
