// Small builders shared by the plan functions (launch_plan.cpp and the CUDA
// backend's launch_plan_cuda.cpp): grid sizes, 4-byte constants and buffer
// bindings of a KernelLaunch.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "gpu/launch_plan.h"

namespace bitnet_ext::gpu::plan_builders {

// ceil(a / b) as a grid dimension (std::invalid_argument past 32 bits).
inline uint32_t ceil_div(int64_t a, int64_t b) {
  const int64_t q = (a + b - 1) / b;
  if (q > int64_t(0xFFFFFFFFu)) {
    throw std::invalid_argument("bitnet_ext: grid too large for one dispatch");
  }
  return static_cast<uint32_t>(q);
}

inline int32_t i32(int64_t v, const char* what) {
  if (v < 0 || v > int64_t(0x7FFFFFFF)) {
    throw std::invalid_argument(std::string("bitnet_ext: ") + what + " does not fit in int32");
  }
  return static_cast<int32_t>(v);
}

inline Constant ci(const char* name, int slot, int64_t v) {
  Constant c{name, slot, Constant::Type::Int32};
  c.i32 = i32(v, name);
  return c;
}

inline Constant cf(const char* name, int slot, float v) {
  Constant c{name, slot, Constant::Type::Float32};
  c.f32 = v;
  return c;
}

inline BufferBinding in(int index, int slot) {
  return {ArgKind::Input, index, slot};
}
inline BufferBinding out(int index, int slot) {
  return {ArgKind::Output, index, slot};
}
inline BufferBinding tmp(int index, int slot) {
  return {ArgKind::Temp, index, slot};
}

} // namespace bitnet_ext::gpu::plan_builders
