// What a [[kernel]] parameter binds: its MSL attribute ([[buffer(i)]],
// [[threadgroup(i)]] or a built-in index). gen_bindings.py writes it per
// parameter for both targets (fibers: harness.h, CUDA: cuda/entry.cuh).
#pragma once

namespace bnh {

enum class ParamKind : int {
  Buffer,
  Threadgroup,
  ThreadPositionInGrid,
  ThreadPositionInThreadgroup,
  ThreadgroupPositionInGrid,
  ThreadsPerThreadgroup,
  ThreadgroupsPerGrid,
  ThreadsPerGrid,
  ThreadIndexInThreadgroup,
  ThreadIndexInSimdgroup,
  SimdgroupIndexInThreadgroup,
  ThreadsPerSimdgroup,
  SimdgroupsPerThreadgroup,
};

} // namespace bnh
