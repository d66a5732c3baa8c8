// The argument rules of every op, in one place.
//
// The ops (ops.cpp) check them before building a graph node, and each
// primitive's output_shapes checks them again: mx.compile(shapeless=True)
// replays a traced graph on new input shapes through output_shapes alone,
// without calling the ops, and the kernels size every memory access from
// these shapes. The primitives' eval_cpu also compares its output with them
// before touching memory, so no path reaches a kernel with shapes that
// disagree.
//
// Each function checks dtypes and shapes and returns the output shape(s),
// or throws ArgumentError (ValueError) / DTypeError (TypeError) naming the
// op, the argument, what it got and what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mlx/array.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// bitlinear accumulates int8 activations (|xq| <= 127 for finite x) times
// codes (|w| <= 2: code 3 reads as +2) in int32. The sum is exact while
// 127 * 2 * K <= 2^31 - 1, i.e. K <= 8,454,660; the largest multiple of 16
// is 8,454,656. Larger K raises instead of wrapping.
constexpr int64_t kBitlinearMaxK = (int64_t{2147483647} / (127 * 2)) / 16 * 16;

mx::Shape pack_shape(const mx::array& codes);
mx::Shape unpack_shape(const mx::array& wq);
mx::Shape dequantize_shape(const mx::array& wq, const mx::array& scale, mx::Dtype dtype);
std::vector<mx::Shape> absmean_quantize_shapes(const mx::array& w, bool per_channel, float eps);
std::vector<mx::Shape> absmax_quantize_shapes(const mx::array& x, float eps);
mx::Shape ternary_matmul_shape(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    bool transpose);
// int8_matmul accumulates int8 activations (|xq| <= 128) times int8 weights
// (|wq| <= 127) in int32: exact while 128 * 127 * K <= 2^31 - 1, i.e.
// K <= 132,104. Larger K raises instead of wrapping.
constexpr int64_t kInt8MatmulMaxK = int64_t{2147483647} / (128 * 127);

mx::Shape bitlinear_shape(
    const mx::array& x,
    const mx::array& wq,
    const mx::array& scale,
    const mx::array* bias);

// dense_matmul: x float (..., K), w float (N, K) -> (..., N).
mx::Shape dense_matmul_shape(const mx::array& x, const mx::array& w);

// int8_matmul: x float (..., K), wq int8 (N, K), row_scale float (N,) -> (..., N).
mx::Shape int8_matmul_shape(const mx::array& x, const mx::array& wq, const mx::array& row_scale);

// attention: queries (B, Hq, L, D), keys and values (B, Hkv, S, D), all float,
// keys and values of one dtype, Hq a multiple of Hkv -> the node's output
// shape (B, L, Hq, D) (the op returns it transposed to (B, Hq, L, D)).
mx::Shape attention_shape(const mx::array& q, const mx::array& k, const mx::array& v);

// rms_norm: x float (..., D) with D >= 1, weight float (D,) -> x's shape
// (the dtype is mx::result_type(x, weight)).
mx::Shape rms_norm_shape(const mx::array& x, const mx::array& weight, float eps);
// relu2_mul: gate and up float, one dtype, one shape -> that shape
mx::Shape relu2_mul_shape(const mx::array& gate, const mx::array& up);

// rope: x float with >= 3 axes (B, ..., T, D), 0 < dims <= D, dims even;
// offset integer, one value or one per B -> x's shape.
mx::Shape rope_shape(const mx::array& x, int dims, const mx::array& offset);

// For eval_cpu: throws unless `expected` (the rules' shapes for the node's
// inputs) equals the shapes of the outputs about to be written.
void check_eval_shapes(
    const char* op,
    const std::vector<mx::Shape>& expected,
    const std::vector<mx::array>& outputs);
void check_eval_shape(const char* op, const mx::Shape& expected, const mx::array& out);

} // namespace bitnet_ext
