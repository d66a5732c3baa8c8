// See dispatch.h. UNVERIFIED on Apple hardware (docs/metal_backend.md).
#ifdef _METAL_

#include "gpu/metal/dispatch.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "gpu/metal/library.h"
#include "gpu/plan_arrays.h"
#include "mlx/backend/metal/device.h"

namespace bitnet_ext::metal {

namespace {

// Apple GPUs run simdgroups of 32 threads; the kernels' simd_sum /
// simdgroup_matrix code and the plans' thread counts assume it.
constexpr unsigned kSimdWidth = 32;

[[noreturn]] void plan_error(const char* op, const gpu::KernelLaunch& k, const std::string& what) {
  throw std::runtime_error(std::string("bitnet_ext: ") + op + ": kernel " + k.name + ": " + what);
}

size_t round_up_16(size_t n) {
  return (n + 15) / 16 * 16;
}

} // namespace

mx::array ensure_row_contiguous(const mx::array& a, const mx::Stream& s) {
  auto copy = gpu::row_contiguous_copy(a, s);
  if (!copy) {
    return a;
  }
  mx::metal::get_command_encoder(s).add_temporary(*copy);
  return *copy;
}

void run_plan(
    const char* op,
    const gpu::LaunchPlan& plan,
    const std::vector<mx::array>& inputs,
    std::vector<mx::array>& outputs,
    const mx::Stream& s) {
  if (!gpu::prepare_outputs(op, plan, inputs, outputs, s)) {
    return; // e.g. M == 0: outputs are empty
  }

  auto& d = mx::metal::device(s.device);
  auto& enc = mx::metal::get_command_encoder(s);

  // Temporaries: fresh buffers from MLX's allocator. They live in shared
  // (unified) memory and no GPU work uses a buffer the allocator hands out,
  // so zero-filling from the CPU here is safe and ordered before our kernels.
  std::vector<mx::array> temps;
  temps.reserve(plan.temporaries.size());
  for (const auto& t : plan.temporaries) {
    mx::array a = gpu::allocate_temporary(op, t);
    if (t.zero_init) {
      std::memset(a.data<uint8_t>(), 0, a.nbytes());
    }
    temps.push_back(std::move(a));
  }

  for (const auto& k : plan.kernels) {
    if (k.grid.x == 0 || k.grid.y == 0 || k.grid.z == 0) {
      continue; // nothing to run (Metal rejects empty dispatches)
    }
    MTL::ComputePipelineState* kernel = get_kernel(d, k.name);
    size_t threads = size_t(k.group.x) * k.group.y * k.group.z;
    if (threads == 0 || threads > kernel->maxTotalThreadsPerThreadgroup()) {
      plan_error(op, k, "the plan asks for " + std::to_string(threads) +
                            " threads per threadgroup, the pipeline allows " +
                            std::to_string(kernel->maxTotalThreadsPerThreadgroup()));
    }
    if (kernel->threadExecutionWidth() != kSimdWidth) {
      plan_error(op, k, "the GPU runs simdgroups of " + std::to_string(kernel->threadExecutionWidth()) +
                            " threads; the kernels assume 32");
    }
    enc.set_compute_pipeline_state(kernel);
    for (const auto& b : k.buffers) {
      switch (b.kind) {
        case gpu::ArgKind::Input:
          if (b.index < 0 || size_t(b.index) >= inputs.size()) {
            plan_error(op, k, "binds input " + std::to_string(b.index) + " of " + std::to_string(inputs.size()));
          }
          enc.set_input_array(inputs[b.index], b.slot);
          break;
        case gpu::ArgKind::Output:
          if (b.index < 0 || size_t(b.index) >= outputs.size()) {
            plan_error(op, k, "binds output " + std::to_string(b.index) + " of " + std::to_string(outputs.size()));
          }
          enc.set_output_array(outputs[b.index], b.slot);
          break;
        case gpu::ArgKind::Temp:
          if (b.index < 0 || size_t(b.index) >= temps.size()) {
            plan_error(op, k, "binds temporary " + std::to_string(b.index) + " of " + std::to_string(temps.size()));
          }
          // Registered as an output whether this kernel writes or reads it:
          // MLX's encoder then orders every later use after this one.
          enc.set_output_array(temps[b.index], b.slot);
          break;
      }
    }
    for (const auto& c : k.constants) {
      if (c.type == gpu::Constant::Type::Int32) {
        enc.set_bytes(c.i32, c.slot);
      } else {
        enc.set_bytes(c.f32, c.slot);
      }
    }
    for (const auto& t : k.threadgroup_memory) {
      enc.set_threadgroup_memory_length(round_up_16(t.bytes), t.slot);
    }
    enc.dispatch_threadgroups(
        MTL::Size(k.grid.x, k.grid.y, k.grid.z), MTL::Size(k.group.x, k.group.y, k.group.z));
  }
  enc.add_temporaries(std::move(temps));
}

} // namespace bitnet_ext::metal

#endif // _METAL_
