#include "primitives/relu2_mul.h"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <type_traits>

#include "arg_checks.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "ops.h"
#include "primitives/bf16_rows.h"
#include "primitives/common.h"
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

// One element: relu(g)^2 rounded to T, then times u rounded to T. bfloat16
// is handled as its bits (uint16_t, bf16_rows.h's bf16_relu2_mul); float16
// converts through MLX's half type.
template <class T>
struct Elements {
  using Bits = T;
  static T one(T g, T u) {
    const T squared = static_cast<T>(relu_squared(to_float(g)));
    return static_cast<T>(to_float(squared) * to_float(u));
  }
};
template <>
struct Elements<mx::bfloat16_t> {
  using Bits = uint16_t;
  static uint16_t one(uint16_t g, uint16_t u) { return bf16_relu2_mul(g, u); }
};

// out (row-contiguous) = relu2_mul(gate, up) for inputs of any strides: a
// flat loop when both are row-contiguous (the usual case), else row by row
// (relu2_mul() passes lazy views as they are rather than adding a copy node).
template <class T>
void relu2_mul_arrays(const mx::array& gate, const mx::array& up, mx::array& out) {
  using E = Elements<T>;
  using B = typename E::Bits;
  const auto* g = reinterpret_cast<const B*>(gate.data<T>());
  const auto* u = reinterpret_cast<const B*>(up.data<T>());
  auto* y = reinterpret_cast<B*>(out.data<T>());
  if (gate.flags().row_contiguous && up.flags().row_contiguous) {
    cpu::parallel_for(0, static_cast<int64_t>(out.size()), kElementsPerTask, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<T, mx::bfloat16_t>) {
        bf16_relu2_mul_row(g + b, u + b, y + b, e - b); // the same loop, built for this CPU's vector width
      } else {
        for (int64_t i = b; i < e; ++i) y[i] = E::one(g[i], u[i]);
      }
    });
    return;
  }
  const StridedRows gr(gate), ur(up);
  const int64_t D = gr.cols;
  cpu::parallel_for(0, gr.rows, std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(1, D)),
                    [&](int64_t r0, int64_t r1) {
                      for (int64_t r = r0; r < r1; ++r) {
                        const B* gp = g + gr.offset(r);
                        const B* up_row = u + ur.offset(r);
                        for (int64_t j = 0; j < D; ++j) {
                          y[r * D + j] = E::one(gp[j * gr.col_stride], up_row[j * ur.col_stride]);
                        }
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
    with_float_type(out.dtype(), "Relu2Mul", [&](auto t) { relu2_mul_arrays<decltype(t)>(gate, up, out); });
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
