#include "primitives/rope.h"

#include <cmath>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "arg_checks.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "ops.h"
#include "primitives/bf16_rows.h"
#include "primitives/cpu_buffers.h"
#include "primitives/strided_rows.h"
#include "thread_pool.h"

namespace bitnet_ext {

namespace {

constexpr int64_t kElementsPerTask = 1 << 15;

int32_t offset_at(const mx::array& offset, int64_t b) {
  const int32_t* p = offset.data<int32_t>();
  return offset.size() == 1 ? p[0] : p[b * offset.strides()[0]];
}

// cos and sin of every (offset group, position, pair): computed once per call
// and shared by all heads. Same float32 steps as MLX: inverse frequencies
// exp(-i * (log(base) / half)), positions (t + offset) * scale.
struct AngleTable {
  int64_t half = 0;
  int64_t T = 0;
  std::vector<float> cos_sin; // [group][t][i] -> (cos, sin)

  AngleTable(const mx::array& offset, int64_t T_, const RopeParams& p) : half(p.dims / 2), T(T_) {
    const int64_t groups = offset.size();
    std::vector<float> inv_freq(half);
    const float log_step = std::log(p.base) / static_cast<float>(half);
    for (int64_t i = 0; i < half; ++i) {
      inv_freq[i] = std::exp(static_cast<float>(-i) * log_step);
    }
    const float sign = p.forward ? 1.0f : -1.0f;
    cos_sin.resize(groups * T * half * 2);
    cpu::parallel_for(0, groups * T, std::max<int64_t>(1, 4096 / half), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float position = (static_cast<float>(r % T) + static_cast<float>(offset_at(offset, r / T))) * p.scale;
        float* cs = cos_sin.data() + r * half * 2;
        for (int64_t i = 0; i < half; ++i) {
          const float theta = position * inv_freq[i];
          cs[2 * i] = std::cos(theta);
          cs[2 * i + 1] = sign * std::sin(theta);
        }
      }
    });
  }

  const float* at(int64_t group, int64_t t) const {
    return cos_sin.data() + (group * T + t) * half * 2;
  }
};

template <class T>
void rope_rows(const mx::array& x, const mx::array& offset, mx::array& out, const RopeParams& p) {
  const StridedRows xr(x);
  const int64_t D = xr.cols;
  const int64_t Tn = x.shape(-2);
  const int64_t rows_per_batch = xr.rows / x.shape(0);
  const AngleTable table(offset, Tn, p);
  const int64_t half = table.half;
  // The pairs: (i, i + half), or (2i, 2i + 1) for the traditional layout.
  const int64_t first_step = p.traditional ? 2 : 1;
  const int64_t second_at = p.traditional ? 1 : half;
  const T* xp = x.data<T>();
  T* yp = out.data<T>();
  const int64_t cs = xr.col_stride;
  cpu::parallel_for(0, xr.rows, std::max<int64_t>(1, kElementsPerTask / D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* row = xp + xr.offset(r);
      T* y = yp + r * D;
      const float* angle = table.at(offset.size() == 1 ? 0 : r / rows_per_batch, r % Tn);
      if (std::is_same_v<T, mx::bfloat16_t> && cs == 1 && !p.traditional) { // built for this CPU's vector width
        bf16_rope_row(reinterpret_cast<const uint16_t*>(row), angle, reinterpret_cast<uint16_t*>(y), half);
      } else {
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = i * first_step;
          const int64_t b = a + second_at;
          const float x1 = to_float(row[a * cs]);
          const float x2 = to_float(row[b * cs]);
          const float c = angle[2 * i];
          const float s = angle[2 * i + 1];
          y[a] = from_float<T>(x1 * c - x2 * s);
          y[b] = from_float<T>(x1 * s + x2 * c);
        }
      }
      for (int64_t j = p.dims; j < D; ++j) {
        y[j] = row[j * cs];
      }
    }
  });
}

} // namespace

mx::array Rope::node(const mx::array& x, const mx::array& offset, RopeParams p, mx::Stream s) {
  // Arguments checked by the callers (rope(), or a node of the same shapes);
  // output_shapes checks them again at evaluation.
  mx::array off = mx::astype(offset, mx::int32, s);
  return mx::array(x.shape(), x.dtype(), std::make_shared<Rope>(s, p), {x, off});
}

namespace {

void require_x_only(const std::vector<int>& argnums) {
  if (argnums.size() != 1 || argnums[0] != 0) {
    throw ArgumentError("rope: no derivative with respect to offset (integer positions); only x has one.");
  }
}

} // namespace

void Rope::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("rope", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([x = mx::array::unsafe_weak_copy(inputs[0]),
                    offset = mx::array::unsafe_weak_copy(inputs[1]),
                    out = mx::array::unsafe_weak_copy(out),
                    p = p_]() mutable {
    if (out.size() == 0) {
      return;
    }
    with_float_type(out.dtype(), "Rope", [&](auto t) { rope_rows<decltype(t)>(x, offset, out, p); });
  });
}

void Rope::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::logic_error("bitnet_ext: Rope has no GPU kernel; rope() uses mx.fast.rope on GPUs");
}

std::vector<mx::array> Rope::jvp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums) {
  require_x_only(argnums);
  // Linear in x: the same rotation of the tangent.
  return {node(tangents[0], primals[1], p_, stream())};
}

std::vector<mx::array> Rope::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>&) {
  require_x_only(argnums);
  // A rotation's transpose is the rotation by the negative angle.
  RopeParams back = p_;
  back.forward = !p_.forward;
  return {node(cotangents[0], primals[1], back, stream())};
}

std::vector<mx::Shape> Rope::output_shapes(const std::vector<mx::array>& inputs) {
  return {rope_shape(inputs[0], p_.dims, inputs[1])};
}

} // namespace bitnet_ext
