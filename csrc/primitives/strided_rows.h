// Row access for the row-wise CPU primitives (rms_norm, rope): an evaluated
// MLX array of any strides seen as rows along its last axis, without a copy
// (attention outputs and transposed heads arrive as strided views).
#pragma once

#include <bit>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "mlx/array.h"
#include "mlx/types/half_types.h"
#include "primitives/bf16_bits.h"

namespace bitnet_ext {

namespace mx = mlx::core;

struct StridedRows {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t col_stride = 1;
  const mx::array* a = nullptr;

  explicit StridedRows(const mx::array& arr) : a(&arr) {
    cols = arr.ndim() ? arr.shape(-1) : 1;
    rows = cols ? static_cast<int64_t>(arr.size()) / cols : 0;
    col_stride = arr.ndim() ? arr.strides().back() : 1;
  }

  // Element offset of row r's first element (rows in row-major order of the
  // leading axes).
  int64_t offset(int64_t r) const {
    if (a->flags().row_contiguous) {
      return r * cols;
    }
    int64_t off = 0;
    for (int axis = static_cast<int>(a->ndim()) - 2; axis >= 0; --axis) {
      const int64_t n = a->shape(axis);
      off += (r % n) * a->strides()[axis];
      r /= n;
    }
    return off;
  }
};

// Calls fn(T{}) with T the element type of a float dtype (float32, float16,
// bfloat16); the ops check dtypes before building a node, so anything else
// here is a bug.
template <class Fn>
void with_float_type(mx::Dtype dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case mx::float32:
      return fn(float{});
    case mx::float16:
      return fn(mx::float16_t{});
    case mx::bfloat16:
      return fn(mx::bfloat16_t{});
    default:
      throw std::logic_error(std::string("bitnet_ext: ") + op + " got a non-float array");
  }
}

// One element as float, for the three float dtypes.
template <class T>
inline float to_float(T v) {
  return static_cast<float>(v);
}
// bfloat16 through its bits (bf16_bits.h): the same value, in a form loops vectorize.
template <>
inline float to_float(mx::bfloat16_t v) {
  return bf16_to_float(std::bit_cast<uint16_t>(v));
}

// A float rounded to T as MLX rounds it (static_cast); bfloat16 through its
// bits, so that row loops vectorize (in files built with -fno-trapping-math,
// see CMakeLists.txt) instead of branching on NaN per element.
template <class T>
inline T from_float(float v) {
  return static_cast<T>(v);
}
template <>
inline mx::bfloat16_t from_float(float v) {
  return std::bit_cast<mx::bfloat16_t>(float_to_bf16(v));
}

} // namespace bitnet_ext
