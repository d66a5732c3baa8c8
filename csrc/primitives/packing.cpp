#include "primitives/packing.h"

#include "arg_checks.h"
#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "primitives/cpu_buffers.h"

namespace bitnet_ext {

void TernaryPack::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("pack", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  // The op hands us a row-contiguous int8 array (see ops.cpp).
  encoder.dispatch([codes = mx::array::unsafe_weak_copy(inputs[0]),
                    out = mx::array::unsafe_weak_copy(out)]() mutable {
    // Values were validated by the Python pack(); an invalid code would still
    // be packed deterministically (as its low two bits after +1).
    cpu::pack_ternary(
        codes.data<int8_t>(), out.data<uint32_t>(), codes.shape(0), codes.shape(1));
  });
}

std::vector<mx::Shape> TernaryPack::output_shapes(const std::vector<mx::array>& inputs) {
  return {pack_shape(inputs[0])};
}

void TernaryUnpack::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("unpack", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([wq = mx::array::unsafe_weak_copy(inputs[0]),
                    out = mx::array::unsafe_weak_copy(out)]() mutable {
    cpu::unpack_ternary(wq.data<uint32_t>(), out.data<int8_t>(), wq.shape(0), wq.shape(1) * 16);
  });
}

std::vector<mx::Shape> TernaryUnpack::output_shapes(const std::vector<mx::array>& inputs) {
  return {unpack_shape(inputs[0])};
}

void TernaryDequantize::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("dequantize", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([wq = mx::array::unsafe_weak_copy(inputs[0]),
                    scale = mx::array::unsafe_weak_copy(inputs[1]),
                    out = mx::array::unsafe_weak_copy(out)]() mutable {
    std::vector<float> s = read_floats(scale);
    int64_t N = wq.shape(0);
    FloatBuffer scratch;
    float* dst = float_output(out, scratch);
    cpu::dequantize_ternary(wq.data<uint32_t>(), s.data(), s.size() > 1, dst, N, wq.shape(1) * 16);
    finish_float_output(out, scratch);
  });
}

std::vector<mx::Shape> TernaryDequantize::output_shapes(const std::vector<mx::array>& inputs) {
  // The output dtype is this node's own; validating the float output happens in the op.
  return {dequantize_shape(inputs[0], inputs[1], mx::float32)};
}

} // namespace bitnet_ext
