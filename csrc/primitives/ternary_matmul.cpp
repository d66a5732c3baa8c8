#include "primitives/ternary_matmul.h"

#include "arg_checks.h"
#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "ops.h"
#include "primitives/common.h"
#include "primitives/cpu_buffers.h"

namespace bitnet_ext {

void TernaryMatmul::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("ternary_matmul", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]),
                    wq = mx::array::unsafe_weak_copy(inputs[1]),
                    scale = mx::array::unsafe_weak_copy(inputs[2]),
                    out = mx::array::unsafe_weak_copy(out),
                    transpose = transpose_]() mutable {
    FloatRows xr = read_float_rows(x);
    std::vector<float> s = read_floats(scale);
    int64_t N = wq.shape(0);
    int64_t K = wq.shape(1) * 16;
    bool per_row = s.size() > 1;
    FloatBuffer scratch;
    float* y = float_output(out, scratch);
    if (xr.rows > 0) {
      if (transpose) {
        cpu::ternary_matmul_t(
            xr.data, xr.ld, wq.data<uint32_t>(), s.data(), per_row, y, xr.rows, N, K);
      } else {
        cpu::ternary_matmul_n(
            xr.data, xr.ld, wq.data<uint32_t>(), s.data(), per_row, y, xr.rows, N, K);
      }
    }
    finish_float_output(out, scratch);
  });
}

std::vector<mx::array> TernaryMatmul::jvp(
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
        case 0:
          return ternary_matmul(tangents[i], wq, scale, transpose_, stream());
        case 2: // linear in the scale
          return ternary_matmul(x, wq, tangents[i], transpose_, stream());
        default:
          not_differentiable("ternary_matmul", "the packed weights wq");
      }
    }();
    result = result ? mx::add(*result, term, stream()) : term;
  }
  return {*result};
}

std::vector<mx::array> TernaryMatmul::vjp(
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
      case 0:
        // d/dx of x @ A is g @ A.T: the same packed W, the other orientation.
        grads.push_back(ternary_matmul(g, wq, scale, !transpose_, stream()));
        break;
      case 2: {
        // y = (x @ W.T) * s per output column (transpose) or
        // y = (x * s) @ W (not transpose); both give ds = sum(a * (b @ W.T)).
        auto ones = mx::ones_like(scale, stream());
        // Computed in float32 whatever x's dtype: it is summed over the batch.
        auto f32 = [&](const mx::array& a) { return mx::astype(a, mx::float32, stream()); };
        auto unscaled = ternary_matmul(f32(transpose_ ? x : g), wq, ones, true, stream());
        auto gx = mx::multiply(f32(transpose_ ? g : x), unscaled, stream());
        grads.push_back(mx::astype(reduce_to_scale_shape(gx, scale, stream()), scale.dtype(), stream()));
        break;
      }
      default:
        not_differentiable("ternary_matmul", "the packed weights wq");
    }
  }
  return grads;
}

std::pair<std::vector<mx::array>, std::vector<int>> TernaryMatmul::vmap(
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  auto x = x_with_vmap_axis_first("ternary_matmul", inputs, axes);
  return {{ternary_matmul(x, inputs[1], inputs[2], transpose_, stream())}, {0}};
}

std::vector<mx::Shape> TernaryMatmul::output_shapes(const std::vector<mx::array>& inputs) {
  return {ternary_matmul_shape(inputs[0], inputs[1], inputs[2], transpose_)};
}

bool TernaryMatmul::is_equivalent(const mx::Primitive& other) const {
  return transpose_ == static_cast<const TernaryMatmul&>(other).transpose_;
}

} // namespace bitnet_ext
