// Moving MLX arrays in and out of the plain float32 / int8 buffers the CPU
// kernels take. Called inside dispatched CPU tasks, where input data is ready.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "mlx/array.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// A float32 buffer that resize() does not zero (every use overwrites it):
// zeroing a prefill product's 14 MB output buffer took as long as filling it.
template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using FloatBuffer = std::vector<float, DefaultInitAllocator<float>>;

// An array seen as a (rows x cols) float32 matrix, cols = last axis.
// Borrows the array's memory when it already is float32 with unit stride
// along the last axis and uniformly strided rows; otherwise converts
// (float16, bfloat16, float32, any strides) into owned storage.
struct FloatRows {
  const float* data = nullptr;
  int64_t ld = 0; // elements between consecutive rows
  int64_t rows = 0;
  int64_t cols = 0;
  FloatBuffer storage;
};
FloatRows read_float_rows(const mx::array& a);

// Same for a (rows x cols) int8 view of a contiguous int8 array (no copy).
// Scale vectors: the float32 values of a small array (any float dtype).
std::vector<float> read_floats(const mx::array& a);

// Allocates `out` (row-contiguous) and returns a float32 destination for the
// kernel: out's own memory when out is float32, else `scratch`, which the
// caller converts with finish_float_output().
float* float_output(mx::array& out, FloatBuffer& scratch);
void finish_float_output(mx::array& out, const FloatBuffer& scratch);

// Allocate a row-contiguous output buffer for `out`.
void allocate(mx::array& out);

} // namespace bitnet_ext
