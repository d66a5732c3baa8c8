#include "primitives/common.h"

#include <stdexcept>

#include "mlx/ops.h"
#include "mlx/transforms.h"
#include "ops.h"

namespace bitnet_ext {

void not_differentiable(const std::string& op, const std::string& what) {
  throw ArgumentError(
      op + ": no gradient with respect to " + what +
      ". Packed ternary weights are not differentiable; to train, keep latent "
      "float weights and use bitnet_ext.fake_quantize (straight-through "
      "estimator), e.g. through bitnet_ext.nn.BitLinearQAT.");
}

std::vector<mx::array> jvp_through(
    const MlxFunction& fn,
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums,
    mx::Stream s) {
  std::vector<mx::array> all_tangents;
  for (const auto& p : primals) {
    all_tangents.push_back(mx::zeros_like(p, s));
  }
  for (size_t i = 0; i < argnums.size(); ++i) {
    all_tangents[argnums[i]] = tangents[i];
  }
  return mx::jvp(fn, primals, all_tangents).second;
}

std::vector<mx::array> vjp_through(
    const MlxFunction& fn,
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums) {
  auto grads = mx::vjp(fn, primals, cotangents).second;
  std::vector<mx::array> selected;
  for (int arg : argnums) {
    selected.push_back(grads[arg]);
  }
  return selected;
}

mx::array x_with_vmap_axis_first(
    const std::string& op,
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  for (size_t i = 1; i < axes.size(); ++i) {
    if (axes[i] >= 0) {
      throw ArgumentError(
          op + ": vmap over the weights, scale or bias is not supported; only "
               "the activations x can be batched.");
    }
  }
  const mx::array& x = inputs[0];
  int axis = axes[0];
  if (axis < 0 || axis == 0) {
    return x;
  }
  return mx::moveaxis(x, axis, 0);
}

mx::array reduce_to_scale_shape(const mx::array& a, const mx::array& scale, mx::Stream s) {
  mx::array a32 = mx::astype(a, mx::float32, s);
  if (scale.ndim() == 1 && scale.shape(0) == a.shape(-1) && a.ndim() >= 1) {
    std::vector<int> batch_axes;
    for (int i = 0; i < a.ndim() - 1; ++i) {
      batch_axes.push_back(i);
    }
    return batch_axes.empty() ? a32 : mx::sum(a32, batch_axes, false, s);
  }
  return mx::reshape(mx::sum(a32, false, s), scale.shape(), s);
}

} // namespace bitnet_ext
