// Executing a backend-neutral LaunchPlan (csrc/gpu/launch_plan.h) inside
// MLX's CUDA backend: the only place that turns plans into CUDA work. Each
// KernelLaunch becomes a kernel node of the stream's CUDA graph (MLX's
// command encoder, mlx/backend/cuda/device.h), so our kernels batch with
// MLX's own and run in order with them.
#pragma once

#ifdef BITNET_EXT_CUDA

#include <vector>

#include "gpu/launch_plan.h"
#include "mlx/array.h"
#include "mlx/stream.h"

namespace bitnet_ext::cuda {

namespace mx = mlx::core;

// `a` itself when it is row-contiguous (C order, no gaps; any offset), else a
// row-contiguous copy whose copy kernel joins stream `s`'s graph ahead of ours
// (gpu::row_contiguous_copy, csrc/gpu/plan_arrays.h), kept alive until the
// graph ran.
mx::array ensure_row_contiguous(const mx::array& a, const mx::Stream& s);

// Allocates every output (row-contiguous, the primitive's shapes and dtypes)
// and the plan's temporaries (zero_init ones cleared by a kernel node), then
// adds the plan's kernels in order to stream `s`'s graph:
//   function   = the registry's __global__ entry of launch.name
//                (csrc/harness/cuda/registry.h), as a CUfunction, cached
//   arguments  = one bnc::KernelArgs: array pointers, constants and
//                threadgroup offsets (csrc/harness/cuda/launch_args.h)
//   threadgroup memory = dynamic shared memory
//   dependencies: inputs registered with set_input_array, outputs and
//                temporaries with set_output_array (so a kernel reading a
//                temporary waits for the one that wrote it)
// `inputs` must already be row-contiguous. `op` names the primitive in error
// messages. With BITNET_EXT_PRINT_PLANS set, each plan is printed to stderr.
void run_plan(
    const char* op,
    const gpu::LaunchPlan& plan,
    const std::vector<mx::array>& inputs,
    std::vector<mx::array>& outputs,
    const mx::Stream& s);

} // namespace bitnet_ext::cuda

#endif // BITNET_EXT_CUDA
