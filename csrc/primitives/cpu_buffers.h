// Moving MLX arrays in and out of the plain float32 / int8 buffers the CPU
// kernels take. Called inside dispatched CPU tasks, where input data is ready.
#pragma once

#include <cstdint>
#include <vector>

#include "mlx/array.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// An array seen as a (rows x cols) float32 matrix, cols = last axis.
// Borrows the array's memory when it already is float32 with unit stride
// along the last axis and uniformly strided rows; otherwise converts
// (float16, bfloat16, float32, any strides) into owned storage.
struct FloatRows {
  const float* data = nullptr;
  int64_t ld = 0; // elements between consecutive rows
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> storage;
};
FloatRows read_float_rows(const mx::array& a);

// Same for a (rows x cols) int8 view of a contiguous int8 array (no copy).
// Scale vectors: the float32 values of a small array (any float dtype).
std::vector<float> read_floats(const mx::array& a);

// Allocates `out` (row-contiguous) and returns a float32 destination for the
// kernel: out's own memory when out is float32, else `scratch`, which the
// caller converts with finish_float_output().
float* float_output(mx::array& out, std::vector<float>& scratch);
void finish_float_output(mx::array& out, const std::vector<float>& scratch);

// Allocate a row-contiguous output buffer for `out`.
void allocate(mx::array& out);

} // namespace bitnet_ext
