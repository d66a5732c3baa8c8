#include "primitives/relu2_mul.h"

#include <cstdint>
#include <stdexcept>

#include "arg_checks.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "ops.h"
#include "primitives/common.h"
#include "primitives/bf16_bits.h"
#include "primitives/cpu_buffers.h"
#include "primitives/strided_rows.h"
#include "thread_pool.h"

namespace bitnet_ext {

namespace {

// Elements per task: a decode row (6912) runs inline.
constexpr int64_t kElementsPerTask = 1 << 15;

// relu(g)^2 in float. MLX's maximum keeps a NaN, and so does this form (a
// NaN is not < 0); with -fno-trapping-math (CMakeLists.txt) it is a vector
// compare and select.
inline float relu_squared(float g) {
  const float r = g < 0.0f ? 0.0f : g;
  return r * r;
}

template <class T>
void relu2_mul_elements(const T* gate, const T* up, T* out, int64_t n) {
  cpu::parallel_for(0, n, kElementsPerTask, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T squared = static_cast<T>(relu_squared(to_float(gate[i])));
      out[i] = static_cast<T>(to_float(squared) * to_float(up[i]));
    }
  });
}

template <>
void relu2_mul_elements<mx::bfloat16_t>(const mx::bfloat16_t* gate, const mx::bfloat16_t* up, mx::bfloat16_t* out,
                                        int64_t n) {
  const auto* g = reinterpret_cast<const uint16_t*>(gate);
  const auto* u = reinterpret_cast<const uint16_t*>(up);
  auto* y = reinterpret_cast<uint16_t*>(out);
  cpu::parallel_for(0, n, kElementsPerTask, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const float squared = bf16_to_float(float_to_bf16(relu_squared(bf16_to_float(g[i]))));
      y[i] = float_to_bf16(squared * bf16_to_float(u[i]));
    }
  });
}

} // namespace

mx::array relu2_mul_mlx(const mx::array& gate, const mx::array& up, mx::Stream s) {
  return mx::multiply(mx::square(mx::maximum(gate, mx::array(0, gate.dtype()), s), s), up, s);
}

void Relu2Mul::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("relu2_mul", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([gate = mx::array::unsafe_weak_copy(inputs[0]),
                    up = mx::array::unsafe_weak_copy(inputs[1]),
                    out = mx::array::unsafe_weak_copy(out)]() mutable {
    // relu2_mul() passes row-contiguous inputs, so flat indexing is exact.
    with_float_type(out.dtype(), "Relu2Mul", [&](auto t) {
      using T = decltype(t);
      relu2_mul_elements<T>(gate.data<T>(), up.data<T>(), out.data<T>(), static_cast<int64_t>(out.size()));
    });
  });
}

void Relu2Mul::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::logic_error("bitnet_ext: Relu2Mul has no GPU kernel; relu2_mul() uses MLX's ops on GPUs");
}

namespace {

MlxFunction mlx_relu2_mul(mx::Stream s) {
  return [s](const std::vector<mx::array>& in) { return std::vector<mx::array>{relu2_mul_mlx(in[0], in[1], s)}; };
}

} // namespace

std::vector<mx::array> Relu2Mul::jvp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums) {
  return jvp_through(mlx_relu2_mul(stream()), primals, tangents, argnums, stream());
}

std::vector<mx::array> Relu2Mul::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>&) {
  return vjp_through(mlx_relu2_mul(stream()), primals, cotangents, argnums);
}

std::pair<std::vector<mx::array>, std::vector<int>> Relu2Mul::vmap(
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  // Elementwise: both inputs with their vmapped axis first (an unmapped one
  // broadcast along it), then the op on equal shapes.
  const int n = axes[0] >= 0 ? inputs[0].shape(axes[0]) : inputs[1].shape(axes[1]);
  std::vector<mx::array> moved;
  for (int i = 0; i < 2; ++i) {
    mx::array a = inputs[i];
    if (axes[i] >= 0) {
      a = mx::moveaxis(a, axes[i], 0, stream());
    } else {
      auto shape = a.shape();
      shape.insert(shape.begin(), n);
      a = mx::broadcast_to(mx::expand_dims(a, 0, stream()), shape, stream());
    }
    moved.push_back(a);
  }
  return {{relu2_mul(moved[0], moved[1], stream())}, {0}};
}

std::vector<mx::Shape> Relu2Mul::output_shapes(const std::vector<mx::array>& inputs) {
  return {relu2_mul_shape(inputs[0], inputs[1])};
}

} // namespace bitnet_ext
