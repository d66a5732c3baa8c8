#include "ops.h"

#include "arg_checks.h"
#include "device_fallback.h"
#include "mlx/ops.h"
#include "primitives/bitlinear.h"
#include "primitives/packing.h"
#include "primitives/quantize.h"
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

std::pair<mx::array, mx::array> absmax_quantize(const mx::array& x, float eps, mx::StreamOrDevice sd) {
  auto s = resolve_stream(sd, "absmax_quantize");
  auto outputs = mx::array::make_arrays(
      absmax_quantize_shapes(x, eps), {mx::int8, mx::float32}, std::make_shared<AbsmaxQuantize>(s, eps), {x});
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
    mx::StreamOrDevice sd) {
  auto s = resolve_stream(sd, "bitlinear");
  auto shape = bitlinear_shape(x, wq, scale, bias ? &*bias : nullptr);
  std::vector<mx::array> inputs = {x, row_major(wq, s), mx::astype(scale, mx::float32, s)};
  if (bias) {
    inputs.push_back(mx::astype(*bias, mx::float32, s));
  }
  return mx::array(std::move(shape), x.dtype(), std::make_shared<BitLinear>(s, 1e-5f), inputs);
}

} // namespace bitnet_ext
