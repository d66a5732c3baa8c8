#include "primitives/int8_matmul.h"

#include <stdexcept>

#include "arg_checks.h"
#include "int8_head.h"
#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "ops.h"
#include "primitives/common.h"
#include "primitives/cpu_buffers.h"

namespace bitnet_ext {

namespace {

// The straight-through float weight: W[n, k] ~ wq[n, k] * row_scale[n].
mx::array dequantized(const mx::array& wq, const mx::array& row_scale, mx::Dtype dtype, mx::Stream s) {
  auto w = mx::multiply(mx::astype(wq, mx::float32, s), mx::reshape(row_scale, {-1, 1}, s), s);
  return mx::astype(w, dtype, s);
}

} // namespace

void Int8Matmul::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("int8_matmul", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]),
                    wq = mx::array::unsafe_weak_copy(inputs[1]),
                    row_scale = mx::array::unsafe_weak_copy(inputs[2]),
                    out = mx::array::unsafe_weak_copy(out)]() mutable {
    FloatRows xr = read_float_rows(x);
    std::vector<float> s = read_floats(row_scale);
    int64_t N = wq.shape(0);
    int64_t K = wq.shape(1);
    std::vector<int8_t> xq(static_cast<size_t>(xr.rows * K));
    std::vector<float> xscale(static_cast<size_t>(xr.rows));
    FloatBuffer scratch;
    float* y = float_output(out, scratch);
    if (xr.rows > 0) {
      // eps 1e-5: the same activation quantizer as bitlinear's.
      cpu::absmax_quantize(xr.data, xr.ld, 1e-5f, xq.data(), xscale.data(), xr.rows, K);
      // wq is row-contiguous (int8_matmul() makes it so); data<T>() includes its offset.
      cpu::int8_matmul(xq.data(), xscale.data(), wq.data<int8_t>(), s.data(), y, xr.rows, N, K);
    }
    finish_float_output(out, scratch);
  });
}

void Int8Matmul::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::logic_error("bitnet_ext: Int8Matmul has no GPU kernel; int8_matmul() accepts CPU streams only");
}

std::vector<mx::array> Int8Matmul::jvp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums) {
  std::optional<mx::array> result;
  for (size_t i = 0; i < argnums.size(); ++i) {
    if (argnums[i] != 0) {
      not_differentiable("int8_matmul", "the int8 weights and their row scales");
    }
    // Straight-through: the activation quantizer acts as identity.
    const auto& dx = tangents[i];
    auto term = dense_matmul(dx, dequantized(primals[1], primals[2], mx::float32, stream()), stream());
    result = result ? mx::add(*result, term, stream()) : term;
  }
  return {*result};
}

std::vector<mx::array> Int8Matmul::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>&) {
  std::vector<mx::array> grads;
  for (int arg : argnums) {
    if (arg != 0) {
      not_differentiable("int8_matmul", "the int8 weights and their row scales");
    }
    // Straight-through estimator: dx = g @ (wq * row_scale), in x's dtype.
    const auto& g = cotangents[0];
    auto w = dequantized(primals[1], primals[2], mx::float32, stream());
    auto dx = mx::matmul(mx::astype(g, mx::float32, stream()), w, stream());
    grads.push_back(mx::astype(dx, primals[0].dtype(), stream()));
  }
  return grads;
}

std::pair<std::vector<mx::array>, std::vector<int>> Int8Matmul::vmap(
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  auto x = x_with_vmap_axis_first("int8_matmul", inputs, axes);
  return {{int8_matmul(x, inputs[1], inputs[2], stream())}, {0}};
}

std::vector<mx::Shape> Int8Matmul::output_shapes(const std::vector<mx::array>& inputs) {
  return {int8_matmul_shape(inputs[0], inputs[1], inputs[2])};
}

} // namespace bitnet_ext
