#include "ops.h"

#include <sstream>
#include <variant>

#include "device_fallback.h"
#include "mlx/device.h"
#include "mlx/ops.h"
#include "primitives/bitlinear.h"
#include "primitives/dense_matmul.h"
#include "primitives/packing.h"
#include "primitives/quantize.h"
#include "primitives/ternary_matmul.h"

namespace bitnet_ext {

namespace {

std::string describe(const mx::Shape& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    os << (i ? ", " : "") << shape[i];
  }
  os << (shape.size() == 1 ? ",)" : ")");
  return os.str();
}

std::string describe(mx::Dtype dtype) {
  std::ostringstream os;
  os << dtype;
  return os.str();
}

[[noreturn]] void fail(const std::string& op, const std::string& message) {
  throw ArgumentError(op + ": " + message);
}

bool is_float(mx::Dtype d) {
  return d == mx::float32 || d == mx::float16 || d == mx::bfloat16;
}

void require_float(const std::string& op, const char* arg, const mx::array& a) {
  if (!is_float(a.dtype())) {
    throw DTypeError(
        op + ": " + arg + " must be float16, bfloat16 or float32, got " + describe(a.dtype()) + ".");
  }
}

// wq must be uint32 (N, K/16) and non-empty. Returns {N, K}.
std::pair<int, int> check_packed(const std::string& op, const mx::array& wq) {
  if (wq.dtype() != mx::uint32) {
    throw DTypeError(
        op + ": wq must be uint32 (16 packed 2-bit codes per word, from bitnet_ext.pack or "
             "absmean_quantize), got " + describe(wq.dtype()) + ".");
  }
  if (wq.ndim() != 2 || wq.shape(0) == 0 || wq.shape(1) == 0) {
    fail(op, "wq must be a non-empty 2-D array of shape (N, K/16), got shape " + describe(wq.shape()) + ".");
  }
  return {wq.shape(0), wq.shape(1) * 16};
}

// scale: float, () or (1,) per tensor, or (N,) per output row. Returns it as float32.
mx::array check_scale(const std::string& op, const mx::array& scale, int N, mx::Stream s) {
  require_float(op, "scale", scale);
  bool per_tensor = scale.size() == 1 && scale.ndim() <= 1;
  bool per_row = scale.ndim() == 1 && scale.shape(0) == N;
  if (!per_tensor && !per_row) {
    fail(op, "scale must have shape () or (1,) (per tensor) or (" + std::to_string(N) +
             ",) (one per row of W), got " + describe(scale.shape()) + ".");
  }
  return mx::astype(scale, mx::float32, s);
}

mx::array check_x(const std::string& op, const mx::array& x, int expected_last, const char* what) {
  require_float(op, "x", x);
  if (x.ndim() == 0) {
    fail(op, "x must have at least one axis (..., " + std::string(what) + "), got a scalar.");
  }
  if (x.shape(-1) != expected_last) {
    fail(op, "the last axis of x must be " + std::string(what) + " = " + std::to_string(expected_last) +
             " to match wq, got x of shape " + describe(x.shape()) + ".");
  }
  return x;
}

void check_eps(const std::string& op, float eps) {
  if (!(eps > 0.0f) || !std::isfinite(eps)) {
    fail(op, "eps must be a positive finite number, got " + std::to_string(eps) + ".");
  }
}

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
    fail(op, "rounding='transformers' runs on the CPU only (stream=mx.cpu); the GPU kernels round as "
             "rounding='divide'.");
  }
}

} // namespace

mx::array pack(const mx::array& codes, mx::StreamOrDevice sd) {
  const std::string op = "pack";
  auto s = resolve_stream(sd, op.c_str());
  if (!mx::issubdtype(codes.dtype(), mx::integer)) {
    throw DTypeError(op + ": codes must be an integer array with values in {-1, 0, 1}, got " +
                     describe(codes.dtype()) + ".");
  }
  if (codes.ndim() != 2) {
    fail(op, "codes must be 2-D (N, K), got shape " + describe(codes.shape()) + ".");
  }
  if (codes.shape(1) % 16 != 0 || codes.shape(1) == 0 || codes.shape(0) == 0) {
    fail(op, "codes must be non-empty with K a multiple of 16 (16 codes per uint32), got shape " +
             describe(codes.shape()) + ".");
  }
  auto int8_codes = row_major(mx::astype(codes, mx::int8, s), s);
  return mx::array(
      {codes.shape(0), codes.shape(1) / 16}, mx::uint32, std::make_shared<TernaryPack>(s), {int8_codes});
}

mx::array unpack(const mx::array& wq, mx::StreamOrDevice sd) {
  const std::string op = "unpack";
  auto s = resolve_stream(sd, op.c_str());
  auto [N, K] = check_packed(op, wq);
  return mx::array({N, K}, mx::int8, std::make_shared<TernaryUnpack>(s), {row_major(wq, s)});
}

mx::array dequantize(const mx::array& wq, const mx::array& scale, mx::Dtype dtype, mx::StreamOrDevice sd) {
  const std::string op = "dequantize";
  auto s = resolve_stream(sd, op.c_str());
  auto [N, K] = check_packed(op, wq);
  auto scale32 = check_scale(op, scale, N, s);
  if (!is_float(dtype)) {
    throw DTypeError(op + ": dtype must be float16, bfloat16 or float32, got " + describe(dtype) + ".");
  }
  return mx::array({N, K}, dtype, std::make_shared<TernaryDequantize>(s), {row_major(wq, s), scale32});
}

std::pair<mx::array, mx::array> absmean_quantize(
    const mx::array& w,
    bool per_channel,
    float eps,
    mx::StreamOrDevice sd) {
  const std::string op = "absmean_quantize";
  auto s = resolve_stream(sd, op.c_str());
  require_float(op, "w", w);
  check_eps(op, eps);
  if (w.ndim() != 2 || w.shape(0) == 0 || w.shape(1) == 0 || w.shape(1) % 16 != 0) {
    fail(op, "w must be a non-empty 2-D (N, K) array with K a multiple of 16, got shape " +
             describe(w.shape()) + ".");
  }
  mx::Shape scale_shape = per_channel ? mx::Shape{w.shape(0)} : mx::Shape{};
  auto outputs = mx::array::make_arrays(
      {{w.shape(0), w.shape(1) / 16}, scale_shape},
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
  const std::string op = "absmax_quantize";
  auto s = resolve_stream(sd, op.c_str());
  check_rounding_device(op, rounding, s);
  require_float(op, "x", x);
  check_eps(op, eps);
  if (x.ndim() == 0) {
    fail(op, "x must have at least one axis (quantized per token along the last), got a scalar.");
  }
  mx::Shape scale_shape = x.shape();
  scale_shape.back() = 1;
  auto outputs = mx::array::make_arrays(
      {x.shape(), scale_shape}, {mx::int8, mx::float32}, std::make_shared<AbsmaxQuantize>(s, eps, rounding), {x});
  return {outputs[0], outputs[1]};
}

mx::array ternary_matmul(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    bool transpose,
    mx::StreamOrDevice sd) {
  const std::string op = "ternary_matmul";
  auto s = resolve_stream(sd, op.c_str());
  auto [N, K] = check_packed(op, wq);
  check_x(op, x, transpose ? K : N, transpose ? "K" : "N");
  auto scale32 = check_scale(op, scale, N, s);
  mx::Shape out_shape = x.shape();
  out_shape.back() = transpose ? N : K;
  return mx::array(
      out_shape, x.dtype(), std::make_shared<TernaryMatmul>(s, transpose), {x, row_major(wq, s), scale32});
}

mx::array bitlinear(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    const std::optional<mx::array>& bias,
    mx::StreamOrDevice sd,
    cpu::ActRounding rounding) {
  const std::string op = "bitlinear";
  auto s = resolve_stream(sd, op.c_str());
  check_rounding_device(op, rounding, s);
  auto [N, K] = check_packed(op, wq);
  check_x(op, x, K, "K");
  std::vector<mx::array> inputs = {x, row_major(wq, s), check_scale(op, scale, N, s)};
  if (bias) {
    require_float(op, "bias", *bias);
    if (bias->ndim() != 1 || bias->shape(0) != N) {
      fail(op, "bias must have shape (" + std::to_string(N) + ",) (one per output), got " +
               describe(bias->shape()) + ".");
    }
    inputs.push_back(mx::astype(*bias, mx::float32, s));
  }
  mx::Shape out_shape = x.shape();
  out_shape.back() = N;
  return mx::array(out_shape, x.dtype(), std::make_shared<BitLinear>(s, 1e-5f, rounding), inputs);
}

// ---- dense_matmul: the float head (kept apart from the ternary ops above).

namespace {

mx::Device requested_device(mx::StreamOrDevice sd) {
  if (auto* stream = std::get_if<mx::Stream>(&sd)) {
    return stream->device;
  }
  if (auto* device = std::get_if<mx::Device>(&sd)) {
    return *device;
  }
  return mx::default_device();
}

} // namespace

mx::array dense_matmul(const mx::array& x, const mx::array& w, mx::StreamOrDevice sd) {
  const std::string op = "dense_matmul";
  require_float(op, "x", x);
  require_float(op, "w", w);
  if (w.ndim() != 2) {
    fail(op, "w must be 2-D (N, K) (one row per output), got shape " + describe(w.shape()) + ".");
  }
  if (x.ndim() == 0) {
    fail(op, "x must have at least one axis (..., K), got a scalar.");
  }
  if (x.shape(-1) != w.shape(1)) {
    fail(op, "the last axis of x must be K = " + std::to_string(w.shape(1)) + " to match w of shape " +
             describe(w.shape()) + ", got x of shape " + describe(x.shape()) + ".");
  }
  mx::Device requested = requested_device(sd);
  if (requested.type == mx::Device::gpu && mx::is_available(requested)) {
    // Every MLX GPU backend has a fast matmul of its own.
    auto s = mx::to_stream(sd);
    auto y = mx::matmul(x, mx::transpose(mx::astype(w, x.dtype(), s), s), s);
    return mx::astype(y, x.dtype(), s);
  }
  auto s = resolve_stream(sd, op.c_str());
  mx::Shape out_shape = x.shape();
  out_shape.back() = w.shape(0);
  return mx::array(out_shape, x.dtype(), std::make_shared<DenseMatmul>(s), {x, row_major(w, s)});
}

} // namespace bitnet_ext
