// Executing a backend-neutral LaunchPlan (csrc/gpu/launch_plan.h) on MLX's
// Metal device: the only place that turns plans into Metal commands.
//
// UNVERIFIED: written on Linux from MLX 0.32.4's headers and sources
// (mlx/backend/metal/device.h, quantized.cpp, examples/extensions/axpby); it
// has not been compiled or run on a Mac. See docs/metal_backend.md.
#pragma once

#ifdef _METAL_

#include <vector>

#include "gpu/launch_plan.h"
#include "mlx/array.h"
#include "mlx/stream.h"

namespace bitnet_ext::metal {

namespace mx = mlx::core;

// `a` itself when it is row-contiguous (C order, no gaps; any offset), else a
// row-contiguous copy encoded on stream `s` ahead of our kernels
// (gpu::row_contiguous_copy, csrc/gpu/plan_arrays.h) and kept alive until the
// command buffer completes.
mx::array ensure_row_contiguous(const mx::array& a, const mx::Stream& s);

// Allocates every output (row-contiguous, shapes and dtypes as the primitive
// set them), allocates the plan's temporaries (zero-filled where asked), and
// encodes the plan's kernels in order on stream `s`:
//   pipeline   = library.h get_kernel(launch.name)
//   buffers    = set_input_array / set_output_array(array, slot) in plan order
//                (outputs and temporaries are registered as outputs, so MLX's
//                encoder puts a barrier between a kernel writing them and a
//                later one reading them)
//   constants  = set_bytes(4-byte value, slot)
//   threadgroup memory = set_threadgroup_memory_length(bytes rounded up to 16, slot)
//   dispatch_threadgroups(grid, group)
// `inputs` must already be row-contiguous (ensure_row_contiguous). `op` names
// the primitive in error messages. With BITNET_EXT_PRINT_PLANS set, each plan
// is printed to stderr before it is encoded.
void run_plan(
    const char* op,
    const gpu::LaunchPlan& plan,
    const std::vector<mx::array>& inputs,
    std::vector<mx::array>& outputs,
    const mx::Stream& s);

} // namespace bitnet_ext::metal

#endif // _METAL_
