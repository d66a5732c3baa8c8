#include "arg_checks.h"

#include <cmath>
#include <limits>
#include <sstream>

#include "ops.h"

namespace bitnet_ext {

namespace {

constexpr int64_t kMaxAxis = std::numeric_limits<int32_t>::max(); // MLX shapes are int32

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

[[noreturn]] void fail(const char* op, const std::string& message) {
  throw ArgumentError(std::string(op) + ": " + message);
}

bool is_float(mx::Dtype d) {
  return d == mx::float32 || d == mx::float16 || d == mx::bfloat16;
}

void require_float(const char* op, const char* arg, mx::Dtype dtype) {
  if (!is_float(dtype)) {
    throw DTypeError(
        std::string(op) + ": " + arg + " must be float16, bfloat16 or float32, got " + describe(dtype) + ".");
  }
}

struct Packed {
  int N;
  int K;
};

// wq must be uint32 (N, K/16), non-empty, with K = 16 * words representable
// as an MLX axis (int32): unpack and dequantize return (N, K) arrays.
Packed check_packed(const char* op, const mx::array& wq) {
  if (wq.dtype() != mx::uint32) {
    throw DTypeError(
        std::string(op) + ": wq must be uint32 (16 packed 2-bit codes per word, from bitnet_ext.pack or "
                          "absmean_quantize), got " + describe(wq.dtype()) + ".");
  }
  if (wq.ndim() != 2 || wq.shape(0) == 0 || wq.shape(1) == 0) {
    fail(op, "wq must be a non-empty 2-D array of shape (N, K/16), got shape " + describe(wq.shape()) + ".");
  }
  const int64_t K = int64_t{wq.shape(1)} * 16;
  if (K > kMaxAxis) {
    fail(op, "wq of shape " + describe(wq.shape()) + " holds K = " + std::to_string(K) +
             " codes per row, more than an MLX array axis can hold (" + std::to_string(kMaxAxis) +
             "); at most " + std::to_string(kMaxAxis / 16) + " words per row.");
  }
  return {wq.shape(0), static_cast<int>(K)};
}

// scale: float, () or (1,) per tensor, or (N,) per output row.
void check_scale(const char* op, const mx::array& scale, int N) {
  require_float(op, "scale", scale.dtype());
  bool per_tensor = scale.size() == 1 && scale.ndim() <= 1;
  bool per_row = scale.ndim() == 1 && scale.shape(0) == N;
  if (!per_tensor && !per_row) {
    fail(op, "scale must have shape () or (1,) (per tensor) or (" + std::to_string(N) +
             ",) (one per row of W), got " + describe(scale.shape()) + ".");
  }
}

void check_x(const char* op, const mx::array& x, int expected_last, const char* what) {
  require_float(op, "x", x.dtype());
  if (x.ndim() == 0) {
    fail(op, "x must have at least one axis (..., " + std::string(what) + "), got a scalar.");
  }
  if (x.shape(-1) != expected_last) {
    fail(op, "the last axis of x must be " + std::string(what) + " = " + std::to_string(expected_last) +
             " to match wq, got x of shape " + describe(x.shape()) + ".");
  }
}

void check_eps(const char* op, float eps) {
  if (!(eps > 0.0f) || !std::isfinite(eps)) {
    fail(op, "eps must be a positive finite number, got " + std::to_string(eps) + ".");
  }
}

mx::Shape with_last(mx::Shape shape, int last) {
  shape.back() = last;
  return shape;
}

} // namespace

mx::Shape pack_shape(const mx::array& codes) {
  const char* op = "pack";
  if (!mx::issubdtype(codes.dtype(), mx::integer)) {
    throw DTypeError(std::string(op) + ": codes must be an integer array with values in {-1, 0, 1}, got " +
                     describe(codes.dtype()) + ".");
  }
  if (codes.ndim() != 2) {
    fail(op, "codes must be 2-D (N, K), got shape " + describe(codes.shape()) + ".");
  }
  if (codes.shape(1) % 16 != 0 || codes.shape(1) == 0 || codes.shape(0) == 0) {
    fail(op, "codes must be non-empty with K a multiple of 16 (16 codes per uint32), got shape " +
             describe(codes.shape()) + ".");
  }
  return {codes.shape(0), codes.shape(1) / 16};
}

mx::Shape unpack_shape(const mx::array& wq) {
  auto [N, K] = check_packed("unpack", wq);
  return {N, K};
}

mx::Shape dequantize_shape(const mx::array& wq, const mx::array& scale, mx::Dtype dtype) {
  const char* op = "dequantize";
  auto [N, K] = check_packed(op, wq);
  check_scale(op, scale, N);
  if (!is_float(dtype)) {
    throw DTypeError(std::string(op) + ": dtype must be float16, bfloat16 or float32, got " +
                     describe(dtype) + ".");
  }
  return {N, K};
}

std::vector<mx::Shape> absmean_quantize_shapes(const mx::array& w, bool per_channel, float eps) {
  const char* op = "absmean_quantize";
  require_float(op, "w", w.dtype());
  check_eps(op, eps);
  if (w.ndim() != 2 || w.shape(0) == 0 || w.shape(1) == 0 || w.shape(1) % 16 != 0) {
    fail(op, "w must be a non-empty 2-D (N, K) array with K a multiple of 16, got shape " +
             describe(w.shape()) + ".");
  }
  mx::Shape scale_shape = per_channel ? mx::Shape{w.shape(0)} : mx::Shape{};
  return {{w.shape(0), w.shape(1) / 16}, scale_shape};
}

std::vector<mx::Shape> absmax_quantize_shapes(const mx::array& x, float eps) {
  const char* op = "absmax_quantize";
  require_float(op, "x", x.dtype());
  check_eps(op, eps);
  if (x.ndim() == 0) {
    fail(op, "x must have at least one axis (quantized per token along the last), got a scalar.");
  }
  if (x.shape(-1) == 0) {
    // The per-token maximum of nothing is undefined (the reference's mx.max raises too).
    fail(op, "the last axis of x (K, quantized per token) must not be empty, got x of shape " +
             describe(x.shape()) + ".");
  }
  return {x.shape(), with_last(x.shape(), 1)};
}

mx::Shape ternary_matmul_shape(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    bool transpose) {
  const char* op = "ternary_matmul";
  auto [N, K] = check_packed(op, wq);
  check_x(op, x, transpose ? K : N, transpose ? "K" : "N");
  check_scale(op, scale, N);
  return with_last(x.shape(), transpose ? N : K);
}

mx::Shape bitlinear_shape(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    const mx::array* bias) {
  const char* op = "bitlinear";
  auto [N, K] = check_packed(op, wq);
  if (K > kBitlinearMaxK) {
    fail(op, "K = " + std::to_string(K) + " (wq of shape " + describe(wq.shape()) +
             ") is larger than " + std::to_string(kBitlinearMaxK) +
             ", the largest K whose int32 accumulation of int8 activations times codes is exact; "
             "for larger K use ternary_matmul (float32 accumulation).");
  }
  check_x(op, x, K, "K");
  check_scale(op, scale, N);
  if (bias) {
    require_float(op, "bias", bias->dtype());
    if (bias->ndim() != 1 || bias->shape(0) != N) {
      fail(op, "bias must have shape (" + std::to_string(N) + ",) (one per output), got " +
               describe(bias->shape()) + ".");
    }
  }
  return with_last(x.shape(), N);
}

mx::Shape dense_matmul_shape(const mx::array& x, const mx::array& w) {
  const char* op = "dense_matmul";
  require_float(op, "x", x.dtype());
  require_float(op, "w", w.dtype());
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
  return with_last(x.shape(), w.shape(0));
}

mx::Shape attention_shape(const mx::array& q, const mx::array& k, const mx::array& v) {
  const char* op = "attention";
  require_float(op, "queries", q.dtype());
  require_float(op, "keys", k.dtype());
  require_float(op, "values", v.dtype());
  if (k.dtype() != v.dtype()) {
    throw DTypeError(std::string(op) + ": keys and values must have one dtype, got " + describe(k.dtype()) +
                     " and " + describe(v.dtype()) + ".");
  }
  if (q.ndim() != 4 || k.ndim() != 4 || v.ndim() != 4) {
    fail(op, "queries, keys and values must be 4-D, (B, Hq, L, D) and (B, Hkv, S, D), got shapes " +
                 describe(q.shape()) + ", " + describe(k.shape()) + " and " + describe(v.shape()) + ".");
  }
  if (k.shape() != v.shape()) {
    fail(op, "keys and values must have one shape (B, Hkv, S, D), got " + describe(k.shape()) + " and " +
                 describe(v.shape()) + ".");
  }
  if (q.shape(0) != k.shape(0) || q.shape(3) != k.shape(3)) {
    fail(op, "queries (B, Hq, L, D) and keys (B, Hkv, S, D) must agree on B and D, got " + describe(q.shape()) +
                 " and " + describe(k.shape()) + ".");
  }
  if (k.shape(1) == 0 || q.shape(1) % k.shape(1) != 0) {
    fail(op, "the query heads Hq = " + std::to_string(q.shape(1)) +
                 " must be a multiple of the key-value heads Hkv = " + std::to_string(k.shape(1)) + " (>= 1).");
  }
  return {q.shape(0), q.shape(2), q.shape(1), q.shape(3)};
}

mx::Shape int8_matmul_shape(const mx::array& x, const mx::array& wq, const mx::array& row_scale) {
  const char* op = "int8_matmul";
  if (wq.dtype() != mx::int8) {
    throw DTypeError(std::string(op) + ": wq must be int8 (from int8_quantize_rows), got " + describe(wq.dtype()) +
                     ".");
  }
  if (wq.ndim() != 2 || wq.shape(0) == 0 || wq.shape(1) == 0) {
    fail(op, "wq must be a non-empty 2-D array of shape (N, K), got shape " + describe(wq.shape()) + ".");
  }
  const int K = wq.shape(1);
  if (K > kInt8MatmulMaxK) {
    fail(op, "K = " + std::to_string(K) + " (wq of shape " + describe(wq.shape()) + ") is larger than " +
             std::to_string(kInt8MatmulMaxK) +
             ", the largest K whose int32 accumulation of int8 activations times int8 weights is exact.");
  }
  check_x(op, x, K, "K");
  require_float(op, "row_scale", row_scale.dtype());
  if (row_scale.ndim() != 1 || row_scale.shape(0) != wq.shape(0)) {
    fail(op, "row_scale must have shape (" + std::to_string(wq.shape(0)) + ",) (one per row of wq), got " +
             describe(row_scale.shape()) + ".");
  }
  return with_last(x.shape(), wq.shape(0));
}

mx::Shape rms_norm_shape(const mx::array& x, const mx::array& weight, float eps) {
  const char* op = "rms_norm";
  require_float(op, "x", x.dtype());
  require_float(op, "weight", weight.dtype());
  if (x.ndim() == 0 || x.shape(-1) == 0) {
    fail(op, "x must have a non-empty last axis (..., D), got shape " + describe(x.shape()) + ".");
  }
  if (weight.ndim() != 1 || weight.shape(0) != x.shape(-1)) {
    fail(op, "weight must have shape (" + std::to_string(x.shape(-1)) + ",) (one per element of x's last axis), "
             "got " + describe(weight.shape()) + ".");
  }
  if (!(eps >= 0.0f) || !std::isfinite(eps)) {
    fail(op, "eps must be a finite number >= 0, got " + std::to_string(eps) + ".");
  }
  return x.shape();
}

mx::Shape relu2_mul_shape(const mx::array& gate, const mx::array& up) {
  const char* op = "relu2_mul";
  require_float(op, "gate", gate.dtype());
  require_float(op, "up", up.dtype());
  if (gate.dtype() != up.dtype()) {
    throw DTypeError(std::string(op) + ": gate and up must have one dtype, got " + describe(gate.dtype()) +
                     " and " + describe(up.dtype()) + ".");
  }
  if (gate.shape() != up.shape()) {
    fail(op, "gate and up must have one shape, got " + describe(gate.shape()) + " and " + describe(up.shape()) +
                 ".");
  }
  return gate.shape();
}

mx::Shape rope_shape(const mx::array& x, int dims, const mx::array& offset) {
  const char* op = "rope";
  require_float(op, "x", x.dtype());
  if (x.ndim() < 3) {
    fail(op, "x must have at least 3 axes (B, ..., T, D), got shape " + describe(x.shape()) + ".");
  }
  if (dims <= 0 || dims % 2 != 0 || dims > x.shape(-1)) {
    fail(op, "dims must be even and in [2, " + std::to_string(x.shape(-1)) + "] (x's last axis), got " +
             std::to_string(dims) + ".");
  }
  if (!mx::issubdtype(offset.dtype(), mx::integer)) {
    throw DTypeError(std::string(op) + ": offset must be an integer or an integer array, got " +
                     describe(offset.dtype()) + ".");
  }
  if (offset.ndim() > 1 || (offset.size() != 1 && offset.size() != static_cast<size_t>(x.shape(0)))) {
    fail(op, "offset must be one position or one per batch entry (" + std::to_string(x.shape(0)) +
             "), got shape " + describe(offset.shape()) + ".");
  }
  return x.shape();
}

void check_eval_shape(const char* op, const mx::Shape& expected, const mx::array& out) {
  if (out.shape() != expected) {
    // Only a graph built around the ops can get here (the checks above run
    // when a node is built and when mx.compile reshapes it).
    fail(op, "the output node has shape " + describe(out.shape()) + " but its inputs give " +
             describe(expected) + "; refusing to evaluate.");
  }
}

void check_eval_shapes(
    const char* op,
    const std::vector<mx::Shape>& expected,
    const std::vector<mx::array>& outputs) {
  for (size_t i = 0; i < outputs.size(); ++i) {
    check_eval_shape(op, expected.at(i), outputs[i]);
  }
}

} // namespace bitnet_ext
