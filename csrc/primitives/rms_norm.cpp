#include "primitives/rms_norm.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <type_traits>

#include "arg_checks.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/fast.h"
#include "mlx/ops.h"
#include "ops.h"
#include "primitives/bf16_rows.h"
#include "primitives/common.h"
#include "primitives/cpu_buffers.h"
#include "primitives/strided_rows.h"
#include "thread_pool.h"

namespace bitnet_ext {

namespace {

// Rows of about 32 KiB of work per task: a decode row (M = 1) runs inline.
constexpr int64_t kElementsPerTask = 1 << 15;

template <class T>
void rms_norm_rows(const mx::array& x, const mx::array& w, mx::array& out, float eps) {
  const StridedRows xr(x);
  const int64_t D = xr.cols;
  const T* xp = x.data<T>();
  const T* wp = w.data<T>(); // contiguous (rms_norm() makes it so)
  T* yp = out.data<T>();
  const float inv_d = 1.0f / static_cast<float>(D);
  const int64_t grain = std::max<int64_t>(1, kElementsPerTask / D);
  cpu::parallel_for(0, xr.rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = xp + xr.offset(r);
      T* y = yp + r * D;
      // Both loops take the column stride as an argument; a unit stride (every
      // decode and prefill row) is passed as a compile-time constant so that
      // they vectorize (bfloat16 rows: bf16_rows.h's copies of these loops).
      const auto normalize = [&](auto stride) {
        // Eight running sums: independent chains the compiler can vectorize.
        float part[8] = {};
        int64_t j = 0;
        for (; j + 8 <= D; j += 8) {
          for (int l = 0; l < 8; ++l) {
            const float v = to_float(row[(j + l) * stride]);
            part[l] += v * v;
          }
        }
        float ss = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
        for (; j < D; ++j) {
          const float v = to_float(row[j * stride]);
          ss += v * v;
        }
        const float inv_rms = 1.0f / std::sqrt(ss * inv_d + eps);
        // MLX's two roundings: x * inv_rms to T, then the product with weight in T.
        for (int64_t c = 0; c < D; ++c) {
          const T normalized = from_float<T>(to_float(row[c * stride]) * inv_rms);
          y[c] = from_float<T>(to_float(normalized) * to_float(wp[c]));
        }
      };
      if (std::is_same_v<T, mx::bfloat16_t> && xr.col_stride == 1) { // built for this CPU's vector width
        const auto* bits = reinterpret_cast<const uint16_t*>(row);
        const float ss = bf16_sum_squares_row(bits, D);
        bf16_scale_row(bits, reinterpret_cast<const uint16_t*>(wp), 1.0f / std::sqrt(ss * inv_d + eps),
                       reinterpret_cast<uint16_t*>(y), D);
      } else if (xr.col_stride == 1) {
        normalize(std::integral_constant<int64_t, 1>{});
      } else {
        normalize(xr.col_stride);
      }
    }
  });
}

} // namespace

void RmsNorm::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("rms_norm", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]),
                    w = mx::array::unsafe_weak_copy(inputs[1]),
                    out = mx::array::unsafe_weak_copy(out),
                    eps = eps_]() mutable {
    if (out.size() == 0) {
      return;
    }
    with_float_type(out.dtype(), "RmsNorm", [&](auto t) { rms_norm_rows<decltype(t)>(x, w, out, eps); });
  });
}

void RmsNorm::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::logic_error("bitnet_ext: RmsNorm has no GPU kernel; rms_norm() uses mx.fast.rms_norm on GPUs");
}

namespace {

// The derivatives are MLX's own, of the same function: mx.fast.rms_norm on
// this node's stream (which MLX differentiates through its decomposition).
MlxFunction mlx_rms_norm(float eps, mx::Stream s) {
  return [eps, s](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{mx::fast::rms_norm(in[0], in[1], eps, s)};
  };
}

} // namespace

std::vector<mx::array> RmsNorm::jvp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums) {
  return jvp_through(mlx_rms_norm(eps_, stream()), primals, tangents, argnums, stream());
}

std::vector<mx::array> RmsNorm::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>&) {
  return vjp_through(mlx_rms_norm(eps_, stream()), primals, cotangents, argnums);
}

std::pair<std::vector<mx::array>, std::vector<int>> RmsNorm::vmap(
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  // The norm is per row of the last axis: a vmapped x only needs its mapped
  // axis out of the last place (moved to the front).
  auto x = x_with_vmap_axis_first("rms_norm", inputs, axes);
  return {{rms_norm(x, inputs[1], eps_, stream())}, {0}};
}

std::vector<mx::Shape> RmsNorm::output_shapes(const std::vector<mx::array>& inputs) {
  return {rms_norm_shape(inputs[0], inputs[1], eps_)};
}

} // namespace bitnet_ext
