// The MLX-array side of executing a launch plan, shared by the GPU executors
// (csrc/gpu/metal/dispatch.cpp, csrc/gpu/cuda/run_plan.cpp): plan arguments
// from arrays, row-contiguous inputs, outputs and temporary sizes. Nothing
// here knows a GPU API; each executor adds the backend's encoder calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "gpu/launch_plan.h"
#include "mlx/array.h"
#include "mlx/stream.h"

namespace bitnet_ext::gpu {

namespace mx = mlx::core;

// gpu::Dtype of a float MLX dtype (float32, float16, bfloat16); throws
// std::invalid_argument naming `op` otherwise.
Dtype plan_dtype(mx::Dtype d, const char* op);

// Rows of x (..., D) once the leading axes are flattened (0 for a scalar or D = 0).
int64_t rows(const mx::array& x);

// A scale of more than one element is per row (per output channel).
bool per_row(const mx::array& scale);

// nullopt when `a` is row-contiguous (C order, no gaps; any offset) or empty;
// else a row-contiguous copy, already encoded on GPU stream `s` by MLX's own
// Contiguous primitive (evaluated here: MLX's copy_gpu is not exported to
// extensions), so that it runs ahead of the kernels encoded next. The caller
// keeps it alive until the GPU work completes (its encoder's add_temporary).
std::optional<mx::array> row_contiguous_copy(const mx::array& a, const mx::Stream& s);

// Gives an array (not yet allocated) memory of at least `bytes` bytes: an
// executor's own device allocation; empty means mx::allocator::malloc.
using SetData = std::function<void(mx::array&, size_t bytes)>;

// What every executor does before encoding a plan: allocates each output
// (through `set_data`, default mx::allocator::malloc), prints the plan
// to stderr when BITNET_EXT_PRINT_PLANS is set, and checks that every input is
// row-contiguous (std::logic_error otherwise: an internal error). Returns
// false when the plan has no kernels (e.g. M == 0: the outputs are empty).
bool prepare_outputs(
    const char* op,
    const LaunchPlan& plan,
    const std::vector<mx::array>& inputs,
    std::vector<mx::array>& outputs,
    const mx::Stream& s,
    const SetData& set_data = {});

// A plan temporary: a uint8 array (memory from `set_data`, default mx::allocator::malloc) of t.bytes
// rounded up to 16 (at least 16), not initialized (zero_init is the
// executor's job). Throws std::runtime_error naming `op` when it exceeds what
// an MLX array axis can hold.
mx::array allocate_temporary(const char* op, const Temporary& t, const SetData& set_data = {});

} // namespace bitnet_ext::gpu
