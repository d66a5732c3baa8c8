#include "primitives/bitlinear.h"

#include "arg_checks.h"
#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "ops.h"
#include "primitives/common.h"
#include "primitives/cpu_buffers.h"

namespace bitnet_ext {

namespace {

std::optional<mx::array> bias_of(const std::vector<mx::array>& inputs) {
  return inputs.size() > 3 ? std::optional<mx::array>(inputs[3]) : std::nullopt;
}

} // namespace

void BitLinear::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("bitlinear", output_shapes(inputs)[0], out);
  allocate(out);
  std::optional<mx::array> bias;
  if (inputs.size() > 3) {
    bias = mx::array::unsafe_weak_copy(inputs[3]);
  }
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]),
                    wq = mx::array::unsafe_weak_copy(inputs[1]),
                    scale = mx::array::unsafe_weak_copy(inputs[2]),
                    bias = std::move(bias),
                    out = mx::array::unsafe_weak_copy(out),
                    eps = eps_,
                    rounding = rounding_]() mutable {
    FloatRows xr = read_float_rows(x);
    std::vector<float> s = read_floats(scale);
    std::vector<float> b = bias ? read_floats(*bias) : std::vector<float>{};
    int64_t N = wq.shape(0);
    int64_t K = wq.shape(1) * 16;
    std::vector<int8_t> xq(static_cast<size_t>(xr.rows * K));
    std::vector<float> xscale(static_cast<size_t>(xr.rows));
    FloatBuffer scratch;
    float* y = float_output(out, scratch);
    if (xr.rows > 0) {
      cpu::absmax_quantize(xr.data, xr.ld, eps, xq.data(), xscale.data(), xr.rows, K, rounding);
      cpu::bitlinear(
          xq.data(), xscale.data(), wq.data<uint32_t>(), s.data(), s.size() > 1,
          bias ? b.data() : nullptr, y, xr.rows, N, K);
    }
    finish_float_output(out, scratch);
  });
}

std::vector<mx::array> BitLinear::jvp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums) {
  const auto& x = primals[0];
  const auto& wq = primals[1];
  const auto& scale = primals[2];
  std::optional<mx::array> result;
  for (size_t i = 0; i < argnums.size(); ++i) {
    mx::array term = [&]() {
      switch (argnums[i]) {
        case 0: // straight-through: the quantizer acts as identity
          return ternary_matmul(tangents[i], wq, scale, true, stream());
        case 2:
          return mx::astype(bitlinear(x, wq, tangents[i], std::nullopt, stream(), rounding_), x.dtype(), stream());
        case 3:
          return mx::astype(
              mx::broadcast_to(tangents[i], output_shapes(primals)[0], stream()), x.dtype(), stream());
        default:
          not_differentiable("bitlinear", "the packed weights wq");
      }
    }();
    result = result ? mx::add(*result, term, stream()) : term;
  }
  return {*result};
}

std::vector<mx::array> BitLinear::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>&) {
  const auto& x = primals[0];
  const auto& wq = primals[1];
  const auto& scale = primals[2];
  const auto& g = cotangents[0];
  std::vector<mx::array> grads;
  for (int arg : argnums) {
    switch (arg) {
      case 0: // straight-through estimator for the activation quantizer
        grads.push_back(ternary_matmul(g, wq, scale, false, stream()));
        break;
      case 2: {
        // y = acc * xscale * s + b: ds = sum(g * acc * xscale), computed by
        // the same kernel with unit scales; float32 x keeps it in float32.
        auto x32 = mx::astype(x, mx::float32, stream());
        auto unscaled = bitlinear(x32, wq, mx::ones_like(scale, stream()), std::nullopt, stream(), rounding_);
        auto prod = mx::multiply(mx::astype(g, mx::float32, stream()), unscaled, stream());
        grads.push_back(mx::astype(reduce_to_scale_shape(prod, scale, stream()), scale.dtype(), stream()));
        break;
      }
      case 3: {
        auto bias = *bias_of(primals);
        grads.push_back(mx::astype(reduce_to_scale_shape(g, bias, stream()), bias.dtype(), stream()));
        break;
      }
      default:
        not_differentiable("bitlinear", "the packed weights wq");
    }
  }
  return grads;
}

std::pair<std::vector<mx::array>, std::vector<int>> BitLinear::vmap(
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  auto x = x_with_vmap_axis_first("bitlinear", inputs, axes);
  return {{bitlinear(x, inputs[1], inputs[2], bias_of(inputs), stream(), rounding_)}, {0}};
}

std::vector<mx::Shape> BitLinear::output_shapes(const std::vector<mx::array>& inputs) {
  auto bias = bias_of(inputs);
  return {bitlinear_shape(inputs[0], inputs[1], inputs[2], bias ? &*bias : nullptr)};
}

bool BitLinear::is_equivalent(const mx::Primitive& other) const {
  const auto& o = static_cast<const BitLinear&>(other);
  return eps_ == o.eps_ && rounding_ == o.rounding_;
}

} // namespace bitnet_ext
