// Small pieces shared by the primitives' autodiff and vmap rules.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "mlx/array.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// Error for a gradient that does not exist (packed or integer tensors).
[[noreturn]] void not_differentiable(const std::string& op, const std::string& what);

// vmap rule for ops whose only batchable input is inputs[0] (x, with any
// leading batch axes): moves the vmapped axis of x to the front, where the
// op keeps it. Raises for vmapped weights/scales/bias.
mx::array x_with_vmap_axis_first(
    const std::string& op,
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes);

// The derivatives of a node that computes what `fn` (MLX ops, on the node's
// stream) computes: MLX's own jvp / vjp of `fn` at the node's primals, for
// the inputs in `argnums` (tangents of the others are zero).
using MlxFunction = std::function<std::vector<mx::array>(const std::vector<mx::array>&)>;
std::vector<mx::array> jvp_through(
    const MlxFunction& fn,
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums,
    mx::Stream s);
std::vector<mx::array> vjp_through(
    const MlxFunction& fn,
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums);

// Sum `a` down to `shape` for a scale of () / (1,) (all of it) or (N,) (all
// axes but the last), as float32.
mx::array reduce_to_scale_shape(const mx::array& a, const mx::array& scale, mx::Stream s);

} // namespace bitnet_ext
