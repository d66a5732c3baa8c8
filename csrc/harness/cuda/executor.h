// Executes a backend-neutral LaunchPlan (csrc/gpu/launch_plan.h) on an NVIDIA
// GPU through the CUDA target of the shader harness, the way the Metal
// eval_gpu does on an Apple GPU: one launch per KernelLaunch, in order, on one
// stream, with the plan's grid, threadgroup size, bindings, constants (in the
// argument block, launch_args.h) and threadgroup memory.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "gpu/launch_plan.h"

namespace bnc {

struct HostBuffer {
  void* data;
  size_t bytes;
};

struct RunOptions {
  // Fill outputs and non-zeroed temporaries with 0xCD bytes (uninitialized
  // memory as garbage). Off under compute-sanitizer initcheck, which must see
  // them uninitialized.
  bool garbage = true;
  // > 0: after the checked run, time each kernel of the plan over `iters`
  // launches (after `warmup` launches) with CUDA events.
  int warmup = 0;
  int iters = 0;
  // > 1: timed launches cycle through this many device copies of the inputs,
  // so that weights larger in all than the L2 cache come from memory.
  int input_copies = 1;
  // Time a CUDA graph of the iters launches (replayed once after warmup /
  // iters warm replays) instead of launching them one by one from the host.
  bool graph = false;
};

// (kernel name, mean microseconds per launch) of each launch when timing.
using KernelTimes = std::vector<std::pair<std::string, double>>;

// Apple GPUs give a threadgroup at most 32 KiB of threadgroup memory; a plan
// asking for more is rejected before launch (CUDA itself would allow it).
constexpr size_t kAppleThreadgroupMemory = 32 * 1024;

KernelTimes execute_plan(
    const bitnet_ext::gpu::LaunchPlan& plan,
    const std::vector<HostBuffer>& inputs,
    const std::vector<HostBuffer>& outputs,
    const RunOptions& options);

std::vector<std::string> executed_kernels();
void reset_executed_kernels();
std::string device_name();

} // namespace bnc
