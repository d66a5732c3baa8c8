#include "ops.h"

#include <cmath>

#include "arg_checks.h"
#include "device_fallback.h"
#include "mlx/device.h"
#include "mlx/fast.h"
#include "mlx/ops.h"
#include "primitives/attention.h"
#include "primitives/bitlinear.h"
#include "primitives/dense_matmul.h"
#include "primitives/int8_matmul.h"
#include "primitives/packing.h"
#include "primitives/quantize.h"
#include "primitives/relu2_mul.h"
#include "primitives/rms_norm.h"
#include "primitives/rope.h"
#include "primitives/ternary_matmul.h"

namespace bitnet_ext {

namespace {

// The packed kernels read wq and codes as plain row-major memory. Only an
// evaluated array's flags are final (a lazy view may still turn out strided),
// so anything else goes through a contiguous node. Evaluated row-major
// weights, the common case, skip the extra node and its dispatch cost.
mx::array row_major(const mx::array& a, mx::Stream s) {
  if (a.is_available() && a.flags().row_contiguous) {
    return a;
  }
  return mx::contiguous(a, false, s);
}

// transformers' activation rounding exists in the CPU kernels only.
void check_rounding_device(const std::string& op, cpu::ActRounding rounding, const mx::Stream& s) {
  if (rounding != cpu::ActRounding::Divide && s.device.type != mx::Device::cpu) {
    throw ArgumentError(op + ": rounding='transformers' runs on the CPU only (stream=mx.cpu); the GPU kernels "
                             "round as rounding='divide'.");
  }
}

} // namespace

mx::array pack(const mx::array& codes, mx::StreamOrDevice sd) {
  auto s = resolve_stream(sd, "pack");
  auto shape = pack_shape(codes);
  auto int8_codes = row_major(mx::astype(codes, mx::int8, s), s);
  return mx::array(std::move(shape), mx::uint32, std::make_shared<TernaryPack>(s), {int8_codes});
}

mx::array unpack(const mx::array& wq, mx::StreamOrDevice sd) {
  auto s = resolve_stream(sd, "unpack");
  auto shape = unpack_shape(wq);
  return mx::array(std::move(shape), mx::int8, std::make_shared<TernaryUnpack>(s), {row_major(wq, s)});
}

mx::array dequantize(const mx::array& wq, const mx::array& scale, mx::Dtype dtype, mx::StreamOrDevice sd) {
  auto s = resolve_stream(sd, "dequantize");
  auto shape = dequantize_shape(wq, scale, dtype);
  return mx::array(
      std::move(shape), dtype, std::make_shared<TernaryDequantize>(s),
      {row_major(wq, s), mx::astype(scale, mx::float32, s)});
}

std::pair<mx::array, mx::array> absmean_quantize(
    const mx::array& w,
    bool per_channel,
    float eps,
    mx::StreamOrDevice sd) {
  auto s = resolve_stream(sd, "absmean_quantize");
  auto outputs = mx::array::make_arrays(
      absmean_quantize_shapes(w, per_channel, eps),
      {mx::uint32, mx::float32},
      std::make_shared<AbsmeanQuantize>(s, per_channel, eps),
      {w});
  return {outputs[0], outputs[1]};
}

std::pair<mx::array, mx::array> absmax_quantize(
    const mx::array& x,
    float eps,
    mx::StreamOrDevice sd,
    cpu::ActRounding rounding) {
  auto s = resolve_stream(sd, "absmax_quantize");
  check_rounding_device("absmax_quantize", rounding, s);
  auto outputs = mx::array::make_arrays(
      absmax_quantize_shapes(x, eps), {mx::int8, mx::float32}, std::make_shared<AbsmaxQuantize>(s, eps, rounding),
      {x});
  return {outputs[0], outputs[1]};
}

mx::array ternary_matmul(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    bool transpose,
    mx::StreamOrDevice sd) {
  auto s = resolve_stream(sd, "ternary_matmul");
  auto shape = ternary_matmul_shape(x, wq, scale, transpose);
  return mx::array(
      std::move(shape), x.dtype(), std::make_shared<TernaryMatmul>(s, transpose),
      {x, row_major(wq, s), mx::astype(scale, mx::float32, s)});
}

mx::array bitlinear(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    const std::optional<mx::array>& bias,
    mx::StreamOrDevice sd,
    cpu::ActRounding rounding) {
  auto s = resolve_stream(sd, "bitlinear");
  check_rounding_device("bitlinear", rounding, s);
  auto shape = bitlinear_shape(x, wq, scale, bias ? &*bias : nullptr);
  std::vector<mx::array> inputs = {x, row_major(wq, s), mx::astype(scale, mx::float32, s)};
  if (bias) {
    inputs.push_back(mx::astype(*bias, mx::float32, s));
  }
  return mx::array(std::move(shape), x.dtype(), std::make_shared<BitLinear>(s, 1e-5f, rounding), inputs);
}

// ---- dense_matmul: the float head (kept apart from the ternary ops above).

mx::array dense_matmul(const mx::array& x, const mx::array& w, mx::StreamOrDevice sd) {
  auto shape = dense_matmul_shape(x, w);
  mx::Device requested = requested_device(sd);
  if (requested.type == mx::Device::gpu && mx::is_available(requested)) {
    // Every MLX GPU backend has a fast matmul of its own. It takes one dtype:
    // x and w of different float dtypes are multiplied in float32 from their
    // exact values (as on the CPU), not after rounding w to x's dtype.
    auto s = mx::to_stream(sd);
    const mx::Dtype t = x.dtype() == w.dtype() ? x.dtype() : mx::float32;
    auto y = mx::matmul(mx::astype(x, t, s), mx::transpose(mx::astype(w, t, s), s), s);
    return mx::astype(y, x.dtype(), s);
  }
  auto s = resolve_stream(sd, "dense_matmul");
  return mx::array(std::move(shape), x.dtype(), std::make_shared<DenseMatmul>(s), {x, row_major(w, s)});
}

mx::array attention(
    const mx::array& queries,
    const mx::array& keys,
    const mx::array& values,
    float scale,
    bool causal,
    mx::StreamOrDevice sd) {
  attention_shape(queries, keys, values);
  mx::Device requested = requested_device(sd);
  if (requested.type == mx::Device::gpu && mx::is_available(requested)) {
    return mx::fast::scaled_dot_product_attention(
        queries, keys, values, scale, causal ? "causal" : "", {}, {}, false, mx::to_stream(sd));
  }
  auto s = resolve_stream(sd, "attention");
  // The node is (B, L, Hq, D): the layout an output projection reads.
  return mx::transpose(Attention::node(queries, keys, values, scale, causal, s), {0, 2, 1, 3}, s);
}

mx::array int8_matmul(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& row_scale,
    mx::StreamOrDevice sd) {
  auto s = resolve_stream(sd, "int8_matmul");
  if (s.device.type != mx::Device::cpu) {
    throw ArgumentError("int8_matmul: runs on the CPU only (stream=mx.cpu); on a GPU use dense_matmul.");
  }
  auto shape = int8_matmul_shape(x, wq, row_scale);
  return mx::array(
      std::move(shape), x.dtype(), std::make_shared<Int8Matmul>(s),
      {x, row_major(wq, s), mx::astype(row_scale, mx::float32, s)});
}

// ---- rms_norm and rope: the float ops of a transformer block that MLX runs
// on the CPU as many small ops.

mx::array rms_norm(const mx::array& x, const mx::array& weight, float eps, mx::StreamOrDevice sd) {
  auto shape = rms_norm_shape(x, weight, eps);
  const mx::Dtype t = mx::result_type(x, weight);
  mx::Device requested = requested_device(sd);
  if (requested.type == mx::Device::gpu && mx::is_available(requested)) {
    return mx::fast::rms_norm(x, weight, eps, mx::to_stream(sd));
  }
  auto s = resolve_stream(sd, "rms_norm");
  // Casting x to t is exact (t is x's dtype or wider); the weight is
  // multiplied in t, as MLX does. A row-major weight: the kernel indexes it.
  return mx::array(
      std::move(shape), t, std::make_shared<RmsNorm>(s, eps),
      {mx::astype(x, t, s), row_major(mx::astype(weight, t, s), s)});
}

mx::array relu2_mul(const mx::array& gate, const mx::array& up, mx::StreamOrDevice sd) {
  auto shape = relu2_mul_shape(gate, up);
  mx::Device requested = requested_device(sd);
  if (requested.type == mx::Device::gpu && mx::is_available(requested)) {
    return relu2_mul_mlx(gate, up, mx::to_stream(sd));
  }
  auto s = resolve_stream(sd, "relu2_mul");
  return mx::array(
      std::move(shape), gate.dtype(), std::make_shared<Relu2Mul>(s), {gate, up});
}

mx::array rope(
    const mx::array& x,
    int dims,
    bool traditional,
    float base,
    float scale,
    const mx::array& offset,
    mx::StreamOrDevice sd) {
  rope_shape(x, dims, offset);
  if (!(base > 0.0f) || !std::isfinite(base) || !std::isfinite(scale)) {
    throw ArgumentError("rope: base must be a finite number > 0 and scale finite, got base " + std::to_string(base) +
                        " and scale " + std::to_string(scale) + ".");
  }
  mx::Device requested = requested_device(sd);
  if (requested.type == mx::Device::gpu && mx::is_available(requested)) {
    return mx::fast::rope(x, dims, traditional, base, scale, offset, std::nullopt, mx::to_stream(sd));
  }
  auto s = resolve_stream(sd, "rope");
  return Rope::node(x, offset, RopeParams{dims, traditional, base, scale, true}, s);
}

} // namespace bitnet_ext
