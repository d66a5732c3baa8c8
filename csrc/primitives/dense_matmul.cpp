#include "primitives/dense_matmul.h"

#include <algorithm>
#include <stdexcept>

#include "arg_checks.h"
#include "dense.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "ops.h"
#include "primitives/common.h"
#include "primitives/cpu_buffers.h"

namespace bitnet_ext {

namespace {

cpu::DenseType dense_type(mx::Dtype d) {
  switch (d) {
    case mx::float32:
      return cpu::DenseType::F32;
    case mx::float16:
      return cpu::DenseType::F16;
    case mx::bfloat16:
      return cpu::DenseType::BF16;
    default:
      // dense_matmul() only builds nodes for float weights; reaching this is a bug.
      throw std::logic_error("bitnet_ext: DenseMatmul got a non-float weight");
  }
}

} // namespace

void DenseMatmul::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("dense_matmul", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]),
                    w = mx::array::unsafe_weak_copy(inputs[1]),
                    out = mx::array::unsafe_weak_copy(out)]() mutable {
    FloatRows xr = read_float_rows(x);
    int64_t N = w.shape(0);
    int64_t K = w.shape(1);
    FloatBuffer scratch;
    float* y = float_output(out, scratch);
    if (K == 0) {
      // read_float_rows sees no rows in an (M, 0) x; the empty sums are 0.
      std::fill(y, y + out.size(), 0.0f);
    } else if (xr.rows > 0) {
      // w is row-contiguous (dense_matmul() makes it so); data<T>() includes its offset.
      cpu::dense_matmul(xr.data, xr.ld, w.data<uint8_t>(), dense_type(w.dtype()), y, xr.rows, N, K);
    }
    finish_float_output(out, scratch);
  });
}

void DenseMatmul::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  // dense_matmul() uses MLX's own matmul on GPU streams.
  throw std::logic_error("bitnet_ext: DenseMatmul has no GPU kernel; dense_matmul() uses mx.matmul on GPUs");
}

std::vector<mx::array> DenseMatmul::jvp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums) {
  std::optional<mx::array> result;
  for (size_t i = 0; i < argnums.size(); ++i) {
    // Bilinear: d(x @ W.T) = dx @ W.T + x @ dW.T.
    mx::array term = argnums[i] == 0 ? dense_matmul(tangents[i], primals[1], stream())
                                     : dense_matmul(primals[0], tangents[i], stream());
    result = result ? mx::add(*result, term, stream()) : term;
  }
  return {*result};
}

std::vector<mx::array> DenseMatmul::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>&) {
  const auto& x = primals[0];
  const auto& w = primals[1];
  const auto& g = cotangents[0];
  std::vector<mx::array> grads;
  for (int arg : argnums) {
    if (arg == 0) {
      // dx = g @ W, in x's dtype (MLX's matmul: the backward is not the hot path).
      grads.push_back(mx::astype(mx::matmul(g, mx::astype(w, g.dtype(), stream()), stream()), x.dtype(), stream()));
    } else {
      // dW = sum over the batch of g.T @ x, in float32 then W's dtype.
      int64_t N = w.shape(0), K = w.shape(1);
      auto g2 = mx::reshape(mx::astype(g, mx::float32, stream()), {-1, static_cast<int>(N)}, stream());
      auto x2 = mx::reshape(mx::astype(x, mx::float32, stream()), {-1, static_cast<int>(K)}, stream());
      grads.push_back(mx::astype(mx::matmul(mx::transpose(g2, stream()), x2, stream()), w.dtype(), stream()));
    }
  }
  return grads;
}

std::pair<std::vector<mx::array>, std::vector<int>> DenseMatmul::vmap(
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  auto x = x_with_vmap_axis_first("dense_matmul", inputs, axes);
  return {{dense_matmul(x, inputs[1], stream())}, {0}};
}

std::vector<mx::Shape> DenseMatmul::output_shapes(const std::vector<mx::array>& inputs) {
  return {dense_matmul_shape(inputs[0], inputs[1])};
}

} // namespace bitnet_ext
