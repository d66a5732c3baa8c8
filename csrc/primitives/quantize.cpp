#include "primitives/quantize.h"

#include "arg_checks.h"
#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "ops.h"
#include "primitives/common.h"
#include "primitives/cpu_buffers.h"

namespace bitnet_ext {

void AbsmeanQuantize::eval_cpu(
    const std::vector<mx::array>& inputs,
    std::vector<mx::array>& outputs) {
  check_eval_shapes("absmean_quantize", output_shapes(inputs), outputs);
  allocate(outputs[0]);
  allocate(outputs[1]);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([w = mx::array::unsafe_weak_copy(inputs[0]),
                    wq = mx::array::unsafe_weak_copy(outputs[0]),
                    scale = mx::array::unsafe_weak_copy(outputs[1]),
                    per_channel = per_channel_,
                    eps = eps_]() mutable {
    FloatRows wr = read_float_rows(w);
    // The kernel wants contiguous rows.
    std::vector<float> packed_rows;
    const float* data = wr.data;
    if (wr.ld != wr.cols) {
      packed_rows.resize(wr.rows * wr.cols);
      for (int64_t r = 0; r < wr.rows; ++r) {
        std::copy_n(wr.data + r * wr.ld, wr.cols, packed_rows.data() + r * wr.cols);
      }
      data = packed_rows.data();
    }
    cpu::absmean_quantize(
        data, eps, per_channel, wq.data<uint32_t>(), scale.data<float>(), wr.rows, wr.cols);
  });
}

std::vector<mx::array> AbsmeanQuantize::vjp(
    const std::vector<mx::array>&,
    const std::vector<mx::array>&,
    const std::vector<int>&,
    const std::vector<mx::array>&) {
  not_differentiable("absmean_quantize", "w (its outputs are packed integer codes)");
}

std::vector<mx::Shape> AbsmeanQuantize::output_shapes(const std::vector<mx::array>& inputs) {
  return absmean_quantize_shapes(inputs[0], per_channel_, eps_);
}

bool AbsmeanQuantize::is_equivalent(const mx::Primitive& other) const {
  const auto& o = static_cast<const AbsmeanQuantize&>(other);
  return per_channel_ == o.per_channel_ && eps_ == o.eps_;
}

void AbsmaxQuantize::eval_cpu(
    const std::vector<mx::array>& inputs,
    std::vector<mx::array>& outputs) {
  check_eval_shapes("absmax_quantize", output_shapes(inputs), outputs);
  allocate(outputs[0]);
  allocate(outputs[1]);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]),
                    xq = mx::array::unsafe_weak_copy(outputs[0]),
                    xscale = mx::array::unsafe_weak_copy(outputs[1]),
                    eps = eps_,
                    rounding = rounding_]() mutable {
    FloatRows xr = read_float_rows(x);
    if (xr.rows > 0) {
      cpu::absmax_quantize(
          xr.data, xr.ld, eps, xq.data<int8_t>(), xscale.data<float>(), xr.rows, xr.cols, rounding);
    }
  });
}

std::vector<mx::array> AbsmaxQuantize::vjp(
    const std::vector<mx::array>&,
    const std::vector<mx::array>&,
    const std::vector<int>&,
    const std::vector<mx::array>&) {
  throw ArgumentError(
      "absmax_quantize: no gradient (its outputs are int8 codes). For "
      "quantization-aware training use a straight-through estimator, e.g. "
      "bitnet_ext.nn.BitLinearQAT.");
}

std::pair<std::vector<mx::array>, std::vector<int>> AbsmaxQuantize::vmap(
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  // Per-token along the last axis: a vmapped last axis must not be quantized
  // together, so always bring the vmapped axis to the front first.
  auto x = x_with_vmap_axis_first("absmax_quantize", inputs, axes);
  auto [xq, xscale] = absmax_quantize(x, eps_, stream(), rounding_);
  return {{xq, xscale}, {0, 0}};
}

std::vector<mx::Shape> AbsmaxQuantize::output_shapes(const std::vector<mx::array>& inputs) {
  return absmax_quantize_shapes(inputs[0], eps_);
}

bool AbsmaxQuantize::is_equivalent(const mx::Primitive& other) const {
  const auto& o = static_cast<const AbsmaxQuantize&>(other);
  return eps_ == o.eps_ && rounding_ == o.rounding_;
}

} // namespace bitnet_ext
