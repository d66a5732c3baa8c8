// The C++ API of bitnet_ext: functions that validate their arguments and
// build lazy MLX graph nodes. Nothing is evaluated here.
//
// Errors: bad arguments raise ArgumentError (a std::invalid_argument, i.e. a
// Python ValueError) or DTypeError (a Python TypeError), each naming the
// argument, what it got and what was expected.
#pragma once

#include <optional>
#include <stdexcept>
#include <utility>

#include "kernels.h" // cpu::ActRounding
#include "mlx/array.h"
#include "mlx/utils.h"

namespace bitnet_ext {

namespace mx = mlx::core;

struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct DTypeError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// codes: integer (N, K) with values in {-1, 0, 1}, K % 16 == 0 -> uint32 (N, K/16).
// Values are not inspected here (that needs evaluation): see the Python pack().
mx::array pack(const mx::array& codes, mx::StreamOrDevice s = {});

// wq: uint32 (N, K/16) -> int8 (N, K) in {-1, 0, 1}.
mx::array unpack(const mx::array& wq, mx::StreamOrDevice s = {});

// scale * W as `dtype`; scale is () / (1,) (per tensor) or (N,) (per row).
mx::array dequantize(
    const mx::array& wq,
    const mx::array& scale,
    mx::Dtype dtype = mx::float16,
    mx::StreamOrDevice s = {});

// w: float (N, K), K % 16 == 0 -> (wq uint32 (N, K/16), scale float32 () or (N,)).
std::pair<mx::array, mx::array> absmean_quantize(
    const mx::array& w,
    bool per_channel = false,
    float eps = 1e-5f,
    mx::StreamOrDevice s = {});

// x: float (..., K) -> (xq int8 (..., K), xscale float32 (..., 1)).
// rounding: see cpu::ActRounding (Transformers: CPU streams only).
std::pair<mx::array, mx::array> absmax_quantize(
    const mx::array& x,
    float eps = 1e-5f,
    mx::StreamOrDevice s = {},
    cpu::ActRounding rounding = cpu::ActRounding::Divide);

// transpose=true: x (..., K) -> x @ (diag(scale) W).T, shape (..., N).
// transpose=false: x (..., N) -> x @ diag(scale) W, shape (..., K).
mx::array ternary_matmul(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    bool transpose = true,
    mx::StreamOrDevice s = {});

// BitNet b1.58 W1.58A8 forward: x (..., K) -> (..., N) in x's dtype.
mx::array bitlinear(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    const std::optional<mx::array>& bias = std::nullopt,
    mx::StreamOrDevice s = {},
    cpu::ActRounding rounding = cpu::ActRounding::Divide);

// Dense float matmul (a model's float head): x (..., K) @ w.T -> (..., N) in
// x's dtype, w float32 / float16 / bfloat16 (N, K), float32 accumulation.
// CPU streams run bitnet_ext's kernels; GPU streams MLX's own matmul.
mx::array dense_matmul(const mx::array& x, const mx::array& w, mx::StreamOrDevice s = {});

// The opt-in int8 head: x (..., K) absmax-quantized per token, exact int32
// dot with wq int8 (N, K), y = (acc * xscale) * row_scale[n] in float32,
// returned in x's dtype. CPU streams only.
mx::array int8_matmul(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& row_scale,
    mx::StreamOrDevice s = {});

// Scaled dot-product attention, softmax(q k^T * scale [+ causal mask]) v,
// for queries (B, Hq, L, D) and keys / values (B, Hkv, S, D) (grouped-query
// attention: query head h uses key-value head h / (Hq / Hkv)). causal: query
// i sits at position S - L + i (the keys end with the queries' own). Returns
// (B, Hq, L, D) in the queries' dtype; float32 scores and softmax. CPU
// streams run bitnet_ext's kernel (keys and values read in place, e.g. a KV
// cache slice); GPU streams MLX's mx.fast.scaled_dot_product_attention.
mx::array attention(
    const mx::array& queries,
    const mx::array& keys,
    const mx::array& values,
    float scale,
    bool causal = false,
    mx::StreamOrDevice s = {});

// RMSNorm over the last axis, mx.fast.rms_norm(x, weight, eps) in one CPU
// node: x float (..., D), weight float (D,); the result has dtype
// result_type(x, weight). GPU streams run mx.fast.rms_norm itself.
mx::array rms_norm(const mx::array& x, const mx::array& weight, float eps, mx::StreamOrDevice s = {});

// relu(gate)^2 * up (BitNet's gated MLP activation) in one CPU op, bit-identical
// to MLX's maximum / square / multiply in the inputs' dtype. gate and up: one
// float dtype, one shape. GPU streams run MLX's three ops.
mx::array relu2_mul(const mx::array& gate, const mx::array& up, mx::StreamOrDevice s = {});

// Rotary position embedding, mx.fast.rope(x, dims, traditional=, base=,
// scale=, offset=) in one CPU node: x float (B, ..., T, D), offset integer,
// one position or one per B. GPU streams run mx.fast.rope itself.
mx::array rope(
    const mx::array& x,
    int dims,
    bool traditional,
    float base,
    float scale,
    const mx::array& offset,
    mx::StreamOrDevice s = {});

} // namespace bitnet_ext
