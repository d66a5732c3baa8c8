// Executes a backend-neutral LaunchPlan (csrc/gpu/launch_plan.h) on the CPU
// shader harness, the way the Metal eval_gpu does on a GPU.
#pragma once

#include <string>
#include <vector>

#include "gpu/launch_plan.h"
#include "runtime.h"

namespace bnh {

struct HostBuffer {
  void* data;
  size_t bytes;
};

// Runs every launch of `plan` in order. Inputs, outputs, temporaries and
// constants live in guarded copies: each buffer ends exactly at a PROT_NONE
// page (an access past the end faults), the bytes in front of it hold a canary
// checked after every launch (stray writes are reported); under ASan they are
// exact-size heap blocks instead. Outputs and non-zeroed temporaries start as
// garbage (0xCD bytes), as uninitialized GPU memory. Results are copied back
// into `outputs`.
void execute_plan(
    const bitnet_ext::gpu::LaunchPlan& plan,
    const std::vector<HostBuffer>& inputs,
    const std::vector<HostBuffer>& outputs,
    const LaunchOptions& options);

} // namespace bnh
